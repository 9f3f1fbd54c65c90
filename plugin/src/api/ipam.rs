//! `/IpamDriver.*`: Docker's remote IPAM protocol (moby ipams/remote/api).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use ipnet::IpNet;
use rustnet_ipam::HolderKind;

use super::parse;
use super::wire::{
    AddressReply, AddressSpaces, Empty, IpamCapabilities, PoolReply, RawPoolId, RawReleaseAddress,
    RawRequestAddress, RawRequestPool,
};
use crate::error::ApiError;
use crate::request::{AddressRelease, AddressRequest, PoolRequest};
use crate::service::Service;

/// The address spaces rustnet answers GetDefaultAddressSpaces with. Both
/// name the one cluster-wide space.
pub(super) const LOCAL_SPACE: &str = "rustnet-local";
pub(super) const GLOBAL_SPACE: &str = "rustnet-global";

/// RequestAddress option keys Docker sets (moby ipamapi/labels.go, netlabel).
const REQUEST_ADDRESS_TYPE: &str = "RequestAddressType";
const GATEWAY_TYPE: &str = "com.docker.network.gateway";
const ENDPOINT_NAME: &str = "com.docker.network.endpoint.name";
const ENDPOINT_MAC: &str = "com.docker.network.endpoint.macaddress";

pub(super) fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/IpamDriver.GetCapabilities", post(capabilities))
        .route("/IpamDriver.GetDefaultAddressSpaces", post(address_spaces))
        .route("/IpamDriver.RequestPool", post(request_pool))
        .route("/IpamDriver.ReleasePool", post(release_pool))
        .route("/IpamDriver.RequestAddress", post(request_address))
        .route("/IpamDriver.ReleaseAddress", post(release_address))
}

async fn capabilities() -> Json<IpamCapabilities> {
    // State is persistent: Docker must not replay pools and addresses.
    // Asking for the MAC makes every container's request carry options
    // (the MAC), so that one by value with none is an --aux-address.
    Json(IpamCapabilities {
        requires_mac_address: true,
        requires_request_replay: false,
    })
}

async fn address_spaces() -> Json<AddressSpaces> {
    Json(AddressSpaces {
        local_default_address_space: LOCAL_SPACE,
        global_default_address_space: GLOBAL_SPACE,
    })
}

impl TryFrom<RawRequestPool> for PoolRequest {
    type Error = ApiError;

    fn try_from(raw: RawRequestPool) -> Result<Self, ApiError> {
        if raw.address_space != LOCAL_SPACE && raw.address_space != GLOBAL_SPACE {
            let reason = format!("rustnet serves {LOCAL_SPACE} and {GLOBAL_SPACE}");
            return Err(ApiError::invalid("AddressSpace", raw.address_space, reason));
        }
        if let Some(key) = raw.options.iter().flat_map(HashMap::keys).next() {
            return Err(ApiError::invalid(
                "ipam option",
                key.clone(),
                "rustnet's IPAM takes no --ipam-opt",
            ));
        }
        let pool = optional_cidr("Pool", &raw.pool)?;
        let range = optional_cidr("SubPool", &raw.sub_pool)?;
        for net in pool.iter().chain(&range) {
            if matches!(net, IpNet::V6(_)) != raw.v6 {
                let family = if raw.v6 { "an IPv6" } else { "an IPv4" };
                return Err(ApiError::invalid(
                    "Pool",
                    net.to_string(),
                    format!("Docker asked for {family} pool"),
                ));
            }
        }
        Ok(Self {
            pool,
            range,
            v6: raw.v6,
        })
    }
}

impl TryFrom<RawRequestAddress> for AddressRequest {
    type Error = ApiError;

    fn try_from(raw: RawRequestAddress) -> Result<Self, ApiError> {
        let address = match raw.address.as_str() {
            "" => None,
            text => Some(address("Address", text)?),
        };
        let options = raw.options.unwrap_or_default();
        let kind = if options.get(REQUEST_ADDRESS_TYPE).map(String::as_str) == Some(GATEWAY_TYPE) {
            HolderKind::Gateway
        } else if let Some(name) = options.get(ENDPOINT_NAME) {
            HolderKind::endpoint(name.as_str())
        } else if address.is_some() && !options.contains_key(ENDPOINT_MAC) {
            // An address by value with nothing said: an --aux-address, or
            // a container's --ip from a Docker that registered rustnet
            // before it asked for MACs (see `opening`).
            HolderKind::Static
        } else {
            HolderKind::Endpoint { name: None }
        };
        Ok(Self {
            pool_id: pool_id(raw.pool_id)?,
            address,
            kind,
        })
    }
}

impl TryFrom<RawReleaseAddress> for AddressRelease {
    type Error = ApiError;

    fn try_from(raw: RawReleaseAddress) -> Result<Self, ApiError> {
        Ok(Self {
            address: address("Address", &raw.address)?,
            pool_id: pool_id(raw.pool_id)?,
        })
    }
}

fn optional_cidr(field: &'static str, text: &str) -> Result<Option<IpNet>, ApiError> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e| ApiError::invalid(field, text, e))
}

/// An address as Docker sends it: bare, or in CIDR form.
fn address(field: &'static str, text: &str) -> Result<IpAddr, ApiError> {
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<IpNet>().map(|n| n.addr()))
        .map_err(|e| ApiError::invalid(field, text, e))
}

fn pool_id(text: String) -> Result<String, ApiError> {
    match text.parse::<IpNet>() {
        Ok(_) => Ok(text),
        Err(_) => Err(ApiError::invalid(
            "PoolID",
            text,
            "not a pool id rustnet handed out",
        )),
    }
}

async fn request_pool(
    State(service): State<Arc<Service>>,
    body: Bytes,
) -> Result<Json<PoolReply>, ApiError> {
    let request = PoolRequest::try_from(parse::<RawRequestPool>(&body)?)?;
    let (pool_id, subnet) = service.request_pool(request).await?;
    Ok(Json(PoolReply {
        pool_id,
        pool: subnet.to_string(),
        data: Empty {},
    }))
}

async fn release_pool(
    State(service): State<Arc<Service>>,
    body: Bytes,
) -> Result<Json<Empty>, ApiError> {
    let raw = parse::<RawPoolId>(&body)?;
    service.release_pool(pool_id(raw.pool_id)?).await?;
    Ok(Json(Empty {}))
}

async fn request_address(
    State(service): State<Arc<Service>>,
    body: Bytes,
) -> Result<Json<AddressReply>, ApiError> {
    let request = AddressRequest::try_from(parse::<RawRequestAddress>(&body)?)?;
    let address = service.request_address(request).await?;
    Ok(Json(AddressReply {
        address: address.to_string(),
        data: Empty {},
    }))
}

async fn release_address(
    State(service): State<Arc<Service>>,
    body: Bytes,
) -> Result<Json<Empty>, ApiError> {
    let release = AddressRelease::try_from(parse::<RawReleaseAddress>(&body)?)?;
    service.release_address(release).await?;
    Ok(Json(Empty {}))
}
