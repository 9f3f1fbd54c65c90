//! `/Rustnet.*`: the admin API that `rustnet status` and `rustnet cluster`
//! use, on the same root-only socket as Docker's protocols.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;

use super::parse;
use super::wire::{Empty, KeyReply, RawRemove, TokenReply};
use crate::error::ApiError;
use crate::service::Service;

pub(super) fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/Rustnet.Status", post(status).get(status))
        .route("/Rustnet.Remove", post(remove_node))
        .route("/Rustnet.Token", post(join_token))
        .route("/Rustnet.RotateToken", post(rotate_join_token))
        .route("/Rustnet.RotateCa", post(rotate_ca))
        .route("/Rustnet.RotateKey", post(rotate_key))
}

/// `rustnet cluster rotate-key`: a new WireGuard key for this host.
async fn rotate_key(State(service): State<Arc<Service>>) -> Result<Json<KeyReply>, ApiError> {
    Ok(Json(KeyReply {
        key: service.rotate_tunnel_key().await?,
    }))
}

/// `rustnet cluster remove|leave`.
async fn remove_node(
    State(service): State<Arc<Service>>,
    body: Bytes,
) -> Result<Json<Empty>, ApiError> {
    let raw = parse::<RawRemove>(&body)?;
    service.remove_node(raw.node).await?;
    Ok(Json(Empty {}))
}

/// `rustnet status --token`: the cluster's join token (the socket is
/// root-only).
async fn join_token(State(service): State<Arc<Service>>) -> Result<Json<TokenReply>, ApiError> {
    let token = service.cluster().await?.membership().join_token().await?;
    Ok(Json(TokenReply {
        token: token.reveal().to_owned(),
    }))
}

/// `rustnet cluster rotate-token`: a new join token; the old one stops
/// admitting hosts.
async fn rotate_join_token(
    State(service): State<Arc<Service>>,
) -> Result<Json<TokenReply>, ApiError> {
    let token = service
        .cluster()
        .await?
        .membership()
        .rotate_join_token()
        .await?;
    tracing::info!("join token rotated");
    Ok(Json(TokenReply {
        token: token.reveal().to_owned(),
    }))
}

/// `rustnet cluster rotate-ca`: a new cluster CA; members renew under it
/// within seconds. The join token's CA pin changes: the new token.
async fn rotate_ca(State(service): State<Arc<Service>>) -> Result<Json<TokenReply>, ApiError> {
    let cluster = service.cluster().await?;
    cluster.signing().rotate_ca().await?;
    let token = cluster.membership().join_token().await?;
    Ok(Json(TokenReply {
        token: token.reveal().to_owned(),
    }))
}

/// `rustnet status`: this host, and every pool with who holds what.
async fn status(
    State(service): State<Arc<Service>>,
) -> Result<Json<crate::status::Status>, ApiError> {
    Ok(Json(service.status().await?))
}
