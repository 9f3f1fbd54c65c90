//! `/NetworkDriver.*`: Docker's remote network-driver protocol
//! (moby drivers/remote/api).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::Uri;
use axum::routing::post;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::service::Service;

/// Every network-driver method Docker may call besides GetCapabilities.
const METHODS: &[&str] = &[
    "CreateNetwork",
    "DeleteNetwork",
    "AllocateNetwork",
    "FreeNetwork",
    "CreateEndpoint",
    "DeleteEndpoint",
    "EndpointOperInfo",
    "Join",
    "Leave",
    "ProgramExternalConnectivity",
    "RevokeExternalConnectivity",
    "DiscoverNew",
    "DiscoverDelete",
];

pub(super) fn routes() -> Router<Arc<Service>> {
    METHODS.iter().fold(
        Router::new().route("/NetworkDriver.GetCapabilities", post(capabilities)),
        |router, method| router.route(&format!("/NetworkDriver.{method}"), post(not_yet)),
    )
}

/// Scope `local`: a `global` remote driver makes `docker network create`
/// fail outside swarm ("This node is not a swarm manager", Docker 20.10).
/// ConnectivityScope `global`: networks can span hosts.
async fn capabilities() -> Json<Value> {
    Json(json!({ "Scope": "local", "ConnectivityScope": "global" }))
}

async fn not_yet(uri: Uri) -> ApiError {
    ApiError::NotImplemented(format!(
        "{}: rustnet's network driver is not implemented yet; use Docker's bridge driver with --ipam-driver rustnet",
        uri.path().trim_start_matches('/')
    ))
}
