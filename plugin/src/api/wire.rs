//! Both directions of the plugin's wire: the bodies Docker (and the
//! `rustnet` CLI) send, as read before they are validated into the
//! requests of `crate::request`, and the replies. Field names are
//! Docker's (moby's `ipams/remote/api` and `drivers/remote/api`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

// Requests.

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawIpamData {
    #[serde(default)]
    pub(super) address_space: String,
    pub(super) pool: String,
    #[serde(default)]
    pub(super) gateway: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawCreateNetwork {
    #[serde(rename = "NetworkID")]
    pub(super) network_id: String,
    #[serde(default)]
    pub(super) options: Option<HashMap<String, Value>>,
    #[serde(rename = "IPv4Data", default)]
    pub(super) ipv4_data: Option<Vec<RawIpamData>>,
    #[serde(rename = "IPv6Data", default)]
    pub(super) ipv6_data: Option<Vec<RawIpamData>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawIds {
    #[serde(rename = "NetworkID")]
    pub(super) network_id: String,
    #[serde(rename = "EndpointID", default)]
    pub(super) endpoint_id: Option<String>,
    #[serde(default)]
    pub(super) options: Option<HashMap<String, Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawInterface {
    #[serde(default)]
    pub(super) address: String,
    #[serde(rename = "AddressIPv6", default)]
    pub(super) address_ipv6: String,
    #[serde(default)]
    pub(super) mac_address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawCreateEndpoint {
    #[serde(rename = "NetworkID")]
    pub(super) network_id: String,
    #[serde(rename = "EndpointID")]
    pub(super) endpoint_id: String,
    #[serde(default)]
    pub(super) interface: Option<RawInterface>,
    #[serde(default)]
    pub(super) options: Option<HashMap<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawPortBinding {
    pub(super) proto: u64,
    pub(super) port: u16,
    #[serde(rename = "HostIP", default)]
    pub(super) host_ip: String,
    pub(super) host_port: u16,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawRequestPool {
    pub(super) address_space: String,
    pub(super) pool: String,
    pub(super) sub_pool: String,
    #[serde(default)]
    pub(super) options: Option<HashMap<String, String>>,
    #[serde(rename = "V6")]
    pub(super) v6: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawPoolId {
    #[serde(rename = "PoolID")]
    pub(super) pool_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawRequestAddress {
    #[serde(rename = "PoolID")]
    pub(super) pool_id: String,
    #[serde(default)]
    pub(super) address: String,
    #[serde(default)]
    pub(super) options: Option<HashMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawReleaseAddress {
    #[serde(rename = "PoolID")]
    pub(super) pool_id: String,
    pub(super) address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawRemove {
    pub(super) node: u64,
}

// Replies.

/// `{}`: the reply of a call that has nothing to say.
#[derive(Debug, Serialize)]
pub(super) struct Empty {}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Activated {
    pub(super) implements: [&'static str; 2],
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DriverCapabilities {
    pub(super) scope: &'static str,
    pub(super) connectivity_scope: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct IpamCapabilities {
    #[serde(rename = "RequiresMACAddress")]
    pub(super) requires_mac_address: bool,
    pub(super) requires_request_replay: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AddressSpaces {
    pub(super) local_default_address_space: &'static str,
    pub(super) global_default_address_space: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct PoolReply {
    #[serde(rename = "PoolID")]
    pub(super) pool_id: String,
    pub(super) pool: String,
    pub(super) data: Empty,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AddressReply {
    pub(super) address: String,
    pub(super) data: Empty,
}

/// CreateEndpoint's reply: the interface only when rustnet chose its MAC
/// (Docker refuses a reply that sets a field it set itself).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct EndpointReply {
    pub(super) interface: Option<InterfaceReply>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct InterfaceReply {
    pub(super) mac_address: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct EndpointInfo {
    pub(super) value: Empty,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct JoinReply {
    pub(super) interface_name: InterfaceName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) gateway: Option<String>,
    #[serde(rename = "GatewayIPv6", skip_serializing_if = "Option::is_none")]
    pub(super) gateway_ipv6: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) static_routes: Vec<StaticRoute>,
}

/// The interface Docker moves into the container, renamed `DstPrefix` N.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct InterfaceName {
    pub(super) src_name: String,
    pub(super) dst_prefix: &'static str,
}

/// A route in the container; `RouteType` 0: through a next hop (moby
/// libnetwork/types).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct StaticRoute {
    pub(super) destination: String,
    pub(super) route_type: u8,
    pub(super) next_hop: String,
}

/// The cluster's join token, for `rustnet status --token` and the
/// rotations.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TokenReply {
    pub(super) token: String,
}

/// `rustnet cluster rotate-key`: this host's new WireGuard public key.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct KeyReply {
    pub(super) key: String,
}
