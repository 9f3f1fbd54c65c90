//! A small client for the plugin socket, as Docker speaks to it: used by
//! `rustnet status`, the benchmark and the tests.

use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyperlocal::{UnixClientExt, UnixConnector, Uri};

/// A connection pool on one plugin socket.
#[derive(Debug, Clone)]
pub(crate) struct PluginClient {
    socket: std::path::PathBuf,
    client: Client<UnixConnector, Full<Bytes>>,
}

impl PluginClient {
    pub(crate) fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_owned(),
            client: Client::unix(),
        }
    }

    /// POSTs `body` to `path` the way Docker does (no Content-Type) and
    /// returns the status and the raw reply.
    pub(crate) async fn post(
        &self,
        path: &str,
        body: impl Into<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(Uri::new(&self.socket, path))
            .header("Accept", "application/vnd.docker.plugins.v1.2+json")
            .body(Full::new(body.into()))?;
        let response = self.client.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// POSTs and parses the reply as JSON.
    pub(crate) async fn call(
        &self,
        path: &str,
        body: impl Into<Bytes>,
    ) -> anyhow::Result<(StatusCode, serde_json::Value)> {
        let (status, body) = self.post(path, body).await?;
        let value = serde_json::from_slice(&body).map_err(|e| {
            anyhow::anyhow!(
                "reply to {path} is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        })?;
        Ok((status, value))
    }
}
