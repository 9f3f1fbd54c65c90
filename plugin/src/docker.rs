//! A few Docker Engine API calls over its Unix socket (hyperlocal): what
//! overlay propagation needs. Only ever used from background tasks, never
//! inside a plugin request (dockerd may be waiting on that very request).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyperlocal::{UnixClientExt, UnixConnector, Uri};
use serde_json::{Value, json};

/// The local dockerd's API.
#[derive(Debug, Clone)]
pub(crate) struct Docker {
    socket: PathBuf,
    /// The name this plugin answers to in Docker, for the networks it creates.
    driver: String,
    client: Client<UnixConnector, Full<Bytes>>,
}

impl Docker {
    pub(crate) fn new(socket: &Path, driver: &str) -> Self {
        Self {
            socket: socket.to_owned(),
            driver: driver.to_owned(),
            client: Client::unix(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method.clone())
            .uri(Uri::new(&self.socket, path))
            .header("Content-Type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let response =
            tokio::time::timeout(Duration::from_secs(10), self.client.request(request)).await??;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!(
                "docker {method} {path}: {status}: {}",
                value["message"].as_str().unwrap_or_default()
            );
        }
        Ok(value)
    }

    /// The name of the network with id `id`.
    pub(crate) async fn network_name(&self, id: &str) -> anyhow::Result<String> {
        let network = self
            .call(Method::GET, &format!("/networks/{id}"), None)
            .await?;
        network["Name"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("network {id} has no name"))
    }

    /// `docker network create -d DRIVER --ipam-driver DRIVER -o mode=overlay ...`
    pub(crate) async fn create_overlay(
        &self,
        name: &str,
        options: Value,
        subnet: &str,
        gateway: Option<String>,
    ) -> anyhow::Result<()> {
        let mut config = json!({ "Subnet": subnet });
        if let Some(gateway) = gateway {
            config["Gateway"] = json!(gateway);
        }
        let body = json!({
            "Name": name,
            "Driver": self.driver,
            "CheckDuplicate": true,
            "IPAM": { "Driver": self.driver, "Config": [config] },
            "Options": options,
        });
        self.call(Method::POST, "/networks/create", Some(body))
            .await
            .map(drop)
    }

    /// `docker network rm ID`.
    pub(crate) async fn remove_network(&self, id: &str) -> anyhow::Result<()> {
        self.call(Method::DELETE, &format!("/networks/{id}"), None)
            .await
            .map(drop)
    }
}
