//! The Docker plugin protocol on HTTP: paths, JSON in, JSON out.
//!
//! Docker POSTs to `/<Subsystem>.<Method>` with no Content-Type and, for
//! Activate, GetCapabilities and GetDefaultAddressSpaces, an empty body, so
//! bodies are read as bytes and parsed here rather than by axum's `Json`
//! extractor (which answers 415). Requests become typed, validated values
//! before the service sees them.

mod admin;
mod ipam;
mod network;
mod wire;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::Uri;
use axum::response::IntoResponse;
use axum::routing::post;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::service::Service;

/// Every path the socket serves.
pub(crate) const PATHS: &[&str] = &[
    "/Plugin.Activate",
    "/NetworkDriver.GetCapabilities",
    "/NetworkDriver.CreateNetwork",
    "/NetworkDriver.DeleteNetwork",
    "/NetworkDriver.CreateEndpoint",
    "/NetworkDriver.DeleteEndpoint",
    "/NetworkDriver.EndpointOperInfo",
    "/NetworkDriver.Join",
    "/NetworkDriver.Leave",
    "/NetworkDriver.ProgramExternalConnectivity",
    "/NetworkDriver.AllocateNetwork",
    "/IpamDriver.GetCapabilities",
    "/IpamDriver.GetDefaultAddressSpaces",
    "/IpamDriver.RequestPool",
    "/IpamDriver.ReleasePool",
    "/IpamDriver.RequestAddress",
    "/IpamDriver.ReleaseAddress",
    "/Rustnet.Status",
];

/// Routes of both drivers and the plugin handshake; anything else is a 404.
/// The largest request body (axum's own limit for a body read whole).
const MAX_BODY: usize = 2 << 20;

pub(crate) fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/Plugin.Activate", post(activate))
        .merge(admin::routes())
        .merge(ipam::routes())
        .merge(network::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            in_span,
        ))
        .with_state(service)
}

/// One span per request, named by its path, so every log line of a request
/// says which Docker call it belongs to.
async fn in_span(
    axum::extract::State(service): axum::extract::State<Arc<Service>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let path = request.uri().path().to_owned();
    // Every body is read before the request is handled, whether its
    // handler wants it or not: a connection closed with bytes unread is
    // reset, and its client loses the answer.
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(e) => return ApiError::Body(format!("request body: {e}")).into_response(),
    };
    let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(body));
    let span = tracing::debug_span!("request", path = %path);
    let started = std::time::Instant::now();
    let response = next.run(request).instrument(span).await;
    let ok = response.status().is_success();
    service
        .metrics()
        .request(metric_path(&path), ok, started.elapsed());
    if ok {
        return response;
    }
    // Kept for `rustnet status`: the `Err` the reply carries.
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 64 << 10)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["Err"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    service.recent.record(&format!("request {path}"), &message);
    axum::response::Response::from_parts(parts, axum::body::Body::from(body))
}

/// The path a request is counted under: a path the socket serves, or
/// `other` (no label per made-up path).
fn metric_path(path: &str) -> &str {
    if PATHS.contains(&path) || path.starts_with("/Rustnet.") {
        path
    } else {
        "other"
    }
}

async fn activate() -> impl IntoResponse {
    axum::Json(wire::Activated {
        implements: ["NetworkDriver", "IpamDriver"],
    })
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_owned())
}

/// Parses a Docker request body; an empty body is `{}`.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    tracing::debug!(body = %String::from_utf8_lossy(body).trim_end(), "docker request");
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| ApiError::Body(e.to_string()))
}

#[cfg(test)]
mod tests;
