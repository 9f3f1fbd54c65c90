//! `/NetworkDriver.*`: Docker's remote network-driver protocol
//! (moby drivers/remote/api). Requests become validated values before the
//! service sees them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use ipnet::IpNet;
use rustnet_ipam::{Mac, Mode, Multicast, PortBinding, Proto};
use serde_json::Value;

use super::ipam::{GLOBAL_SPACE, LOCAL_SPACE};
use super::parse;
use super::wire::{
    DriverCapabilities, Empty, EndpointInfo, EndpointReply, InterfaceName, InterfaceReply,
    JoinReply, RawCreateEndpoint, RawCreateNetwork, RawIds, RawIpamData, RawPortBinding,
    StaticRoute,
};
use crate::driver::Driver;
use crate::error::ApiError;
use crate::request::{EndpointRequest, NetworkRequest};
use crate::service::Service;

/// `-o` keys rustnet understands (design: network options).
pub(super) const OPT_MODE: &str = "mode";
pub(super) const OPT_MTU: &str = "com.docker.network.driver.mtu";
pub(super) const OPT_VNI: &str = "vni";
pub(super) const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
/// Set by rustnet when it creates an overlay on another host: the
/// cluster-wide key of the overlay the new local network binds to.
pub(super) const OPT_OVERLAY: &str = "rustnet.overlay";
pub(super) const OPT_MULTICAST: &str = "multicast";
/// Swarm's name: `-o encrypted` (empty) or `-o encrypted=true|false`.
pub(super) const OPT_ENCRYPTED: &str = "encrypted";
/// A macvlan or ipvlan network's parent interface (as Docker's drivers).
pub(super) const OPT_PARENT: &str = "parent";
/// A macvlan or ipvlan network's host shim: `true` (the default) or `false`.
pub(super) const OPT_HOST_ACCESS: &str = "host_access";
const VALID_OPTIONS: [&str; 9] = [
    OPT_MODE,
    OPT_MTU,
    OPT_VNI,
    OPT_BRIDGE_NAME,
    OPT_OVERLAY,
    OPT_MULTICAST,
    OPT_ENCRYPTED,
    OPT_PARENT,
    OPT_HOST_ACCESS,
];

/// Keys libnetwork puts in CreateNetwork/CreateEndpoint/Join options
/// (moby libnetwork/netlabel).
const GENERIC: &str = "com.docker.network.generic";
const INTERNAL: &str = "com.docker.network.internal";
/// Docker 28 and later: `false` for an IPv6-only network (`--ipv4=false`).
const ENABLE_IPV4: &str = "com.docker.network.enable_ipv4";
const PORTMAP: &str = "com.docker.network.portmap";
const DNS_SERVERS: &str = "com.docker.network.endpoint.dnsservers";

pub(super) fn routes() -> Router<Arc<Service>> {
    Router::new()
        .route("/NetworkDriver.GetCapabilities", post(capabilities))
        .route("/NetworkDriver.CreateNetwork", post(create_network))
        .route("/NetworkDriver.DeleteNetwork", post(delete_network))
        .route("/NetworkDriver.CreateEndpoint", post(create_endpoint))
        .route("/NetworkDriver.DeleteEndpoint", post(delete_endpoint))
        .route("/NetworkDriver.EndpointOperInfo", post(endpoint_info))
        .route("/NetworkDriver.Join", post(join))
        .route("/NetworkDriver.Leave", post(leave))
        .route("/NetworkDriver.ProgramExternalConnectivity", post(nothing))
        .route("/NetworkDriver.RevokeExternalConnectivity", post(nothing))
        .route("/NetworkDriver.DiscoverNew", post(nothing))
        .route("/NetworkDriver.DiscoverDelete", post(nothing))
        .route("/NetworkDriver.AllocateNetwork", post(swarm_only))
        .route("/NetworkDriver.FreeNetwork", post(swarm_only))
}

/// Scope `local`: a `global` remote driver makes `docker network create`
/// fail outside swarm ("This node is not a swarm manager", Docker 20.10).
/// ConnectivityScope `global`: networks can span hosts.
async fn capabilities() -> Json<DriverCapabilities> {
    Json(DriverCapabilities {
        scope: "local",
        connectivity_scope: "global",
    })
}

/// Published ports are programmed at Join; discovery is swarm's business.
async fn nothing() -> Json<Empty> {
    Json(Empty {})
}

async fn swarm_only() -> ApiError {
    ApiError::Unsupported(
        "rustnet networks are not swarm-scoped; AllocateNetwork is not used".to_owned(),
    )
}

impl TryFrom<RawCreateNetwork> for NetworkRequest {
    type Error = ApiError;

    fn try_from(raw: RawCreateNetwork) -> Result<Self, ApiError> {
        let id = docker_id("NetworkID", raw.network_id)?;
        let options = raw.options.unwrap_or_default();
        let ipv6_only = options
            .get(ENABLE_IPV4)
            .is_some_and(|v| v == &Value::Bool(false) || v == "false");
        let generic = generic_options(options.get(GENERIC))?;
        if let Some(key) = generic
            .keys()
            .find(|k| !VALID_OPTIONS.contains(&k.as_str()))
        {
            return Err(ApiError::invalid(
                "option",
                key.clone(),
                format!("unknown -o key; valid keys: {}", VALID_OPTIONS.join(", ")),
            ));
        }
        let mode = mode_of(&generic)?;
        let internal = options
            .get(INTERNAL)
            .is_some_and(|v| v == &Value::Bool(true) || v == "true");
        let (parent, host_access) = lan_options(mode, &generic, internal)?;
        let multicast = match generic.get(OPT_MULTICAST).map(String::as_str) {
            None | Some("off") => Multicast::Off,
            Some("flood") => Multicast::Flood,
            Some(other) => {
                return Err(ApiError::invalid(
                    "option multicast",
                    other,
                    "valid values: flood (copies to every host with containers on the overlay), \
                     off (the default)",
                ));
            }
        };
        let encrypted = match generic.get(OPT_ENCRYPTED).map(String::as_str) {
            None | Some("false") => false,
            Some("" | "true") => true,
            Some(other) => {
                return Err(ApiError::invalid(
                    "option encrypted",
                    other,
                    "valid values: true (or no value), false",
                ));
            }
        };
        let vni = generic.get(OPT_VNI).map(|v| vni(v)).transpose()?;
        if mode != Mode::Bridge {
            // With Docker's default IPAM every host would hand out the same
            // addresses: the IPAM data then names Docker's address space.
            let data = if ipv6_only {
                &raw.ipv6_data
            } else {
                &raw.ipv4_data
            };
            let space = data
                .as_ref()
                .and_then(|d| d.first())
                .map(|d| d.address_space.as_str());
            if !matches!(space, Some(LOCAL_SPACE | GLOBAL_SPACE)) {
                return Err(ApiError::Unsupported(format!(
                    "mode={mode} needs --ipam-driver rustnet: with Docker's default IPAM every host \
                     would hand out the same addresses"
                )));
            }
        }
        let mtu = generic.get(OPT_MTU).map(|m| mtu(m)).transpose()?;
        let bridge = generic
            .get(OPT_BRIDGE_NAME)
            .map(|b| bridge_name(b))
            .transpose()?;
        let (subnet, gateway) = ipam_data(raw.ipv4_data.as_deref(), "IPv4Data")?;
        let (subnet6, gateway6) = ipam_data(raw.ipv6_data.as_deref(), "IPv6Data")?;
        if ipv6_only && subnet6.is_none() {
            return Err(ApiError::Unsupported(
                "an IPv6-only network (--ipv4=false) needs --ipv6".to_owned(),
            ));
        }
        if subnet6.is_some_and(|s| !matches!(s, IpNet::V6(_))) {
            return Err(ApiError::invalid(
                "IPv6Data",
                subnet6.map(|s| s.to_string()).unwrap_or_default(),
                "not an IPv6 subnet",
            ));
        }
        if mode.is_lan() && !matches!(subnet, Some(IpNet::V4(_))) {
            return Err(ApiError::Unsupported(format!(
                "mode={mode} needs an IPv4 subnet (--subnet): the host shim and the LAN's router \
                 are IPv4"
            )));
        }
        Ok(Self {
            id,
            mode,
            parent,
            host_access,
            vni,
            overlay: generic.get(OPT_OVERLAY).cloned(),
            multicast,
            encrypted,
            bridge,
            mtu,
            internal,
            subnet,
            gateway,
            subnet6,
            gateway6,
        })
    }
}

/// `-o mode=`, and the options only some modes take.
fn mode_of(generic: &HashMap<String, String>) -> Result<Mode, ApiError> {
    let mode = match generic.get(OPT_MODE).map(String::as_str) {
        None | Some("bridge") => Mode::Bridge,
        Some("overlay") => Mode::Overlay,
        Some("macvlan") => Mode::Macvlan,
        Some("ipvlan") => Mode::Ipvlan,
        Some(other) => {
            return Err(ApiError::invalid(
                "option mode",
                other,
                "valid modes: bridge, overlay, macvlan, ipvlan",
            ));
        }
    };
    let overlay_only = [OPT_VNI, OPT_MULTICAST, OPT_ENCRYPTED]
        .into_iter()
        .find(|k| generic.contains_key(*k));
    if let (Mode::Bridge | Mode::Macvlan | Mode::Ipvlan, Some(key)) = (mode, overlay_only) {
        return Err(ApiError::invalid(
            "option",
            key,
            format!("{key} applies to mode=overlay only"),
        ));
    }
    if let (Mode::Bridge, true) = (mode, generic.contains_key(OPT_OVERLAY)) {
        return Err(ApiError::invalid(
            "option",
            OPT_OVERLAY,
            format!("{OPT_OVERLAY} applies to mode=overlay, macvlan and ipvlan only"),
        ));
    }
    Ok(mode)
}

/// `-o parent=` and `-o host_access=`: a macvlan or ipvlan network needs
/// the first; both apply to those modes only.
fn lan_options(
    mode: Mode,
    generic: &HashMap<String, String>,
    internal: bool,
) -> Result<(Option<String>, bool), ApiError> {
    if !mode.is_lan() {
        if let Some(key) = [OPT_PARENT, OPT_HOST_ACCESS]
            .into_iter()
            .find(|k| generic.contains_key(*k))
        {
            return Err(ApiError::invalid(
                "option",
                key,
                format!("{key} applies to mode=macvlan and mode=ipvlan only"),
            ));
        }
        return Ok((None, false));
    }
    if generic.contains_key(OPT_BRIDGE_NAME) {
        return Err(ApiError::invalid(
            "option",
            OPT_BRIDGE_NAME,
            format!("{OPT_BRIDGE_NAME} does not apply to mode={mode}: it has no bridge"),
        ));
    }
    if internal {
        return Err(ApiError::Unsupported(format!(
            "--internal is not supported with mode={mode}: its containers are on the parent's LAN"
        )));
    }
    let parent = generic.get(OPT_PARENT).ok_or_else(|| {
        ApiError::Unsupported(format!(
            "mode={mode} needs -o parent=IFACE: the interface on the LAN its containers join"
        ))
    })?;
    crate::lan::interface_name(parent).map_err(|why| ApiError::invalid(OPT_PARENT, parent, why))?;
    let host_access = match generic.get(OPT_HOST_ACCESS).map(String::as_str) {
        None | Some("" | "true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(ApiError::invalid(
                "option host_access",
                other,
                "valid values: true (the default: a shim on the parent reaches the host's \
                 containers and carries their names across hosts), false",
            ));
        }
    };
    Ok((Some(parent.clone()), host_access))
}

/// The user's `-o` options: a string map (values of other types are refused).
fn generic_options(value: Option<&Value>) -> Result<HashMap<String, String>, ApiError> {
    let Some(Value::Object(map)) = value else {
        return Ok(HashMap::new());
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            other => Err(ApiError::invalid(
                "option",
                k.clone(),
                format!("value {other} is not a string"),
            )),
        })
        .collect()
}

fn mtu(text: &str) -> Result<u32, ApiError> {
    match text.parse::<u32>() {
        Ok(m) if (68..=65535).contains(&m) => Ok(m),
        _ => Err(ApiError::invalid(
            OPT_MTU,
            text,
            "an MTU is a number from 68 to 65535",
        )),
    }
}

fn vni(text: &str) -> Result<u32, ApiError> {
    match text.parse::<u32>() {
        Ok(v) if (1..=rustnet_ipam::MAX_VNI).contains(&v) => Ok(v),
        _ => Err(ApiError::invalid(
            OPT_VNI,
            text,
            format!("a VNI is a number from 1 to {}", rustnet_ipam::MAX_VNI),
        )),
    }
}

fn bridge_name(name: &str) -> Result<String, ApiError> {
    let valid = !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(ApiError::invalid(
            OPT_BRIDGE_NAME,
            name,
            "1-15 letters, digits, '-', '_' or '.'",
        ))
    }
}

fn ipam_data(
    data: Option<&[RawIpamData]>,
    field: &'static str,
) -> Result<(Option<IpNet>, Option<IpNet>), ApiError> {
    let Some(first) = data.and_then(<[RawIpamData]>::first) else {
        return Ok((None, None));
    };
    let pool: IpNet = first
        .pool
        .parse()
        .map_err(|e| ApiError::invalid(field, first.pool.clone(), e))?;
    let gateway = match first.gateway.as_str() {
        "" => None,
        text => Some(
            text.parse::<IpNet>()
                .map_err(|e| ApiError::invalid(field, text, e))?,
        ),
    };
    Ok((Some(pool), gateway))
}

/// Docker's 64-hex ids; rustnet names interfaces after their first 12.
fn docker_id(field: &'static str, id: String) -> Result<String, ApiError> {
    if id.len() >= 12 && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(id)
    } else {
        Err(ApiError::invalid(field, id, "not a Docker id"))
    }
}

impl TryFrom<RawCreateEndpoint> for EndpointRequest {
    type Error = ApiError;

    fn try_from(raw: RawCreateEndpoint) -> Result<Self, ApiError> {
        let interface = raw.interface.unwrap_or_default();
        let cidr = |field, text: &str| match text {
            "" => Ok(None),
            t => t
                .parse::<IpNet>()
                .map(Some)
                .map_err(|e| ApiError::invalid(field, t, e)),
        };
        let mac = match interface.mac_address.as_str() {
            "" => None,
            text => Some(
                text.parse::<Mac>()
                    .map_err(|e| ApiError::invalid("MacAddress", text, e))?,
            ),
        };
        Ok(Self {
            network_id: docker_id("NetworkID", raw.network_id)?,
            id: docker_id("EndpointID", raw.endpoint_id)?,
            address: cidr("Address", &interface.address)?,
            address6: cidr("AddressIPv6", &interface.address_ipv6)?,
            mac,
            ports: port_map(raw.options.as_ref().and_then(|o| o.get(PORTMAP)))?,
            dns: dns_servers(raw.options.as_ref().and_then(|o| o.get(DNS_SERVERS)))?,
        })
    }
}

/// `com.docker.network.endpoint.dnsservers`: the container's `--dns`, as
/// strings (Docker checks them; rustnet keeps the addresses).
fn dns_servers(value: Option<&Value>) -> Result<Vec<IpAddr>, ApiError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let servers: Vec<String> = serde_json::from_value(value.clone())
        .map_err(|e| ApiError::invalid("option", DNS_SERVERS, e))?;
    servers
        .iter()
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|e| ApiError::invalid(DNS_SERVERS, s.clone(), e))
        })
        .collect()
}

/// `com.docker.network.portmap`: `[{"Proto":6,"Port":80,"HostIP":"","HostPort":8080,...}]`.
fn port_map(value: Option<&Value>) -> Result<Vec<PortBinding>, ApiError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let raw: Vec<RawPortBinding> = serde_json::from_value(value.clone())
        .map_err(|e| ApiError::invalid("option", PORTMAP, e))?;
    raw.into_iter()
        .map(|p| {
            let proto = proto(p.proto).ok_or_else(|| {
                ApiError::invalid("port protocol", p.proto.to_string(), "tcp, udp or sctp")
            })?;
            if p.host_port == 0 {
                return Err(ApiError::Unsupported(format!(
                    "publishing {}/{proto} needs an explicit host port with rustnet (-p HOST:{})",
                    p.port, p.port
                )));
            }
            // Every address of the host, or one (`-p [::]:...` is IPv6's).
            let host_ip = match p.host_ip.as_str() {
                "" | "0.0.0.0" => None,
                text => Some(
                    text.parse::<IpAddr>()
                        .map_err(|e| ApiError::invalid("HostIP", text, e))?,
                ),
            };
            Ok(PortBinding {
                proto,
                container_port: p.port,
                host_ip,
                host_port: p.host_port,
            })
        })
        .collect()
}

async fn create_network(
    State(service): State<Arc<Service>>,
    body: Bytes,
) -> Result<Json<Empty>, ApiError> {
    let request = NetworkRequest::try_from(parse::<RawCreateNetwork>(&body)?)?;
    Driver::new(&service).create_network(request).await?;
    Ok(Json(Empty {}))
}

async fn delete_network(
    State(service): State<Arc<Service>>,
    body: Bytes,
) -> Result<Json<Empty>, ApiError> {
    let raw = parse::<RawIds>(&body)?;
    Driver::new(&service)
        .delete_network(docker_id("NetworkID", raw.network_id)?)
        .await?;
    Ok(Json(Empty {}))
}

async fn create_endpoint(
    State(service): State<Arc<Service>>,
    body: Bytes,
) -> Result<Json<EndpointReply>, ApiError> {
    let request = EndpointRequest::try_from(parse::<RawCreateEndpoint>(&body)?)?;
    // Docker refuses a reply that sets a field it already set ("driver
    // modified interface"): return the MAC only when rustnet chose it.
    let chosen = Driver::new(&service).create_endpoint(request).await?;
    Ok(Json(EndpointReply {
        interface: chosen.map(|mac| InterfaceReply {
            mac_address: mac.to_string(),
        }),
    }))
}

fn endpoint_id(raw: &RawIds) -> Result<String, ApiError> {
    let id = raw
        .endpoint_id
        .clone()
        .ok_or_else(|| ApiError::Body("missing field `EndpointID`".to_owned()))?;
    docker_id("NetworkID", raw.network_id.clone())?;
    docker_id("EndpointID", id)
}

async fn delete_endpoint(
    State(service): State<Arc<Service>>,
    body: Bytes,
) -> Result<Json<Empty>, ApiError> {
    let raw = parse::<RawIds>(&body)?;
    Driver::new(&service)
        .delete_endpoint(endpoint_id(&raw)?)
        .await?;
    Ok(Json(Empty {}))
}

async fn endpoint_info(body: Bytes) -> Result<Json<EndpointInfo>, ApiError> {
    let raw = parse::<RawIds>(&body)?;
    endpoint_id(&raw)?;
    Ok(Json(EndpointInfo { value: Empty {} }))
}

async fn join(
    State(service): State<Arc<Service>>,
    body: Bytes,
) -> Result<Json<JoinReply>, ApiError> {
    let raw = parse::<RawIds>(&body)?;
    let id = endpoint_id(&raw)?;
    let ports = port_map(raw.options.as_ref().and_then(|o| o.get(PORTMAP)))?;
    let joined = Driver::new(&service).join(id, ports).await?;
    Ok(Json(JoinReply {
        interface_name: InterfaceName {
            src_name: joined.interface,
            dst_prefix: "eth",
        },
        gateway: joined.gateway.map(|g| g.to_string()),
        gateway_ipv6: joined.gateway6.map(|g| g.to_string()),
        static_routes: joined
            .routes
            .iter()
            .map(|(to, via)| StaticRoute {
                destination: format!("{to}/32"),
                route_type: 0,
                next_hop: via.to_string(),
            })
            .collect(),
    }))
}

async fn leave(State(service): State<Arc<Service>>, body: Bytes) -> Result<Json<Empty>, ApiError> {
    let raw = parse::<RawIds>(&body)?;
    Driver::new(&service).leave(endpoint_id(&raw)?).await?;
    Ok(Json(Empty {}))
}

/// Docker's protocol numbers (moby libnetwork/types).
fn proto(number: u64) -> Option<Proto> {
    match number {
        6 => Some(Proto::Tcp),
        17 => Some(Proto::Udp),
        132 => Some(Proto::Sctp),
        _ => None,
    }
}
