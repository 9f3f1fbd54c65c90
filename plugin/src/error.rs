//! The one exit to Docker: every failure becomes a non-200 `{"Err": ...}`.
//!
//! Docker's network-driver client reads `Err`; its IPAM client reads `Error`
//! from a 200 reply but parses `Err` from a non-200 one, so a 500 with `Err`
//! works for both (moby pkg/plugins/client.go, ipams/remote/api).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rustnet_ipam::store::{StoreError, chain};
use rustnet_ipam::{IpamError, NetworkError};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The body is not the JSON Docker sends for this call.
    #[error("bad request body: {0}")]
    Body(String),
    /// A field has a value rustnet cannot use.
    #[error("invalid {field} {value:?}: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Store(StoreError),
    /// The store could not be opened; the daemon has no state to serve.
    #[error("state store failed: {0}")]
    NoStore(String),
    #[error("data path: {0}")]
    DataPath(#[from] rustnet_overlay::Error),
    #[error("{0}")]
    Unsupported(String),
    #[error("unknown endpoint {0}")]
    NotFound(String),
}

impl ApiError {
    pub(crate) fn invalid(
        field: &'static str,
        value: impl Into<String>,
        reason: impl ToString,
    ) -> Self {
        Self::Invalid {
            field,
            value: value.into(),
            reason: reason.to_string(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Body(_) | Self::Invalid { .. } => StatusCode::BAD_REQUEST,
            Self::Ipam(_) => StatusCode::CONFLICT,
            Self::Store(_) | Self::NoStore(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::DataPath(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unsupported(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }
}

/// A command the state machine refused is a conflict of the request, not
/// a failure of the store.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected(e) => Self::Ipam(e),
            other => Self::Store(other),
        }
    }
}

impl From<NetworkError> for ApiError {
    fn from(e: NetworkError) -> Self {
        Self::Ipam(IpamError::Network(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = chain(&self);
        tracing::warn!(error = %message, "request failed");
        (self.status(), Json(serde_json::json!({ "Err": message }))).into_response()
    }
}
