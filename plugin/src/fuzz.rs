//! Docker's socket API in process, for fuzzing: the cargo fuzz target
//! `api_bodies` (in `fuzz/`) and the test suite's short run both send
//! arbitrary bodies to every path through [`Api::call`], which checks the
//! protocol's promise on every answer.

use std::sync::Arc;

use axum::body::Body;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use hyper::Request;
use rustnet_overlay::{Report, Want};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::datapath::DataPath;
use crate::error::ApiError;
use crate::store::StoreState;

/// Every path the plugin socket serves.
pub const PATHS: &[&str] = crate::api::PATHS;

/// The plugin's router over a store in memory and a data path that
/// touches nothing.
#[derive(Debug)]
pub struct Api {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    _store: watch::Sender<StoreState>,
}

/// A data path that computes what is wanted and keeps none of it.
#[derive(Debug)]
struct NullPath;

impl DataPath for NullPath {
    fn mtu_of(&self, _address: std::net::IpAddr) -> BoxFuture<'_, Option<u32>> {
        Box::pin(async { None })
    }

    fn link_mtu<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Option<u32>> {
        Box::pin(async { None })
    }

    fn has_link<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    fn reconcile<'a>(
        &'a self,
        want: BoxFuture<'a, Result<Want, ApiError>>,
    ) -> BoxFuture<'a, Result<Report, ApiError>> {
        Box::pin(async move {
            want.await?;
            Ok(Report::default())
        })
    }
}

impl Api {
    /// A service over a store in memory.
    pub fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let (service, tx) = crate::fixture::service(true, Arc::new(NullPath));
        Ok(Self {
            runtime,
            router: crate::api::router(service),
            _store: tx,
        })
    }

    /// Posts `body` to `PATHS[path % PATHS.len()]` and returns the status
    /// and the reply; an error when the answer breaks the protocol: a reply
    /// that is not JSON, or a failure without a non-empty `{"Err": "..."}`.
    /// (A handler that panics panics here too.)
    pub fn call(&self, path: usize, body: &[u8]) -> Result<(u16, serde_json::Value), String> {
        let path = PATHS[path % PATHS.len()];
        let request = Request::post(path)
            .body(Body::from(body.to_vec()))
            .map_err(|e| format!("{path}: request: {e}"))?;
        let (status, bytes) = self.runtime.block_on(async {
            let Ok(response) = self.router.clone().oneshot(request).await;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{path}: body: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, bytes))
        })?;
        let reply: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{path}: reply is not JSON ({e}): {bytes:?}"))?;
        if status != 200 && reply["Err"].as_str().is_none_or(str::is_empty) {
            return Err(format!("{path}: {status} without an error: {reply}"));
        }
        Ok((status, reply))
    }
}
