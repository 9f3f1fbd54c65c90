//! The plugin API over a real Unix socket, with a real one-node store.

// Each test drives one Docker call sequence, start to finish.
#![allow(clippy::too_many_lines)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::{Value, json};
use tokio::net::UnixListener;
use tokio::sync::watch;

use super::PATHS;
use crate::client::PluginClient;
use crate::daemon::serve;
use crate::datapath::RecordingPath;
use crate::store::StoreState;

struct Harness {
    plane: Arc<RecordingPath>,
    socket: std::path::PathBuf,
    client: PluginClient,
    _dir: tempfile::TempDir,
    _store_tx: watch::Sender<StoreState>,
}

/// A server on a fresh socket; with `store`, backed by a fresh store.
async fn harness(store: bool) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("rustnet.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let plane = Arc::new(RecordingPath::default());
    let (service, tx) = crate::fixture::service(store, plane.clone());
    tokio::spawn(serve(listener, service, std::future::pending()));
    Harness {
        plane,
        client: PluginClient::new(&socket),
        socket,
        _dir: dir,
        _store_tx: tx,
    }
}

impl Harness {
    async fn call(&self, path: &str, body: &str) -> (StatusCode, Value) {
        self.client.call(path, body.to_owned()).await.unwrap()
    }

    async fn ok(&self, path: &str, body: Value) -> Value {
        let (status, reply) = self.call(path, &body.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{path} {body}: {reply}");
        reply
    }

    /// The status, without the daemon's last errors (not state: a refused
    /// request adds one).
    async fn status(&self) -> Value {
        let mut status = self.ok("/Rustnet.Status", json!({})).await;
        if let Some(status) = status.as_object_mut() {
            status.remove("errors");
        }
        status
    }
}

fn pool_request(pool: &str, sub_pool: &str) -> Value {
    json!({"AddressSpace": "rustnet-local", "Pool": pool, "SubPool": sub_pool, "Options": {}, "V6": false})
}

#[tokio::test]
async fn handshake_and_capabilities_answer_empty_bodies_without_a_store() {
    let h = harness(false).await;
    let started = Instant::now();
    let cases = [
        (
            "/Plugin.Activate",
            json!({"Implements": ["NetworkDriver", "IpamDriver"]}),
        ),
        (
            "/NetworkDriver.GetCapabilities",
            json!({"Scope": "local", "ConnectivityScope": "global"}),
        ),
        (
            "/IpamDriver.GetCapabilities",
            json!({"RequiresMACAddress": true, "RequiresRequestReplay": false}),
        ),
        (
            "/IpamDriver.GetDefaultAddressSpaces",
            json!({"LocalDefaultAddressSpace": "rustnet-local", "GlobalDefaultAddressSpace": "rustnet-global"}),
        ),
    ];
    for (path, want) in cases {
        assert_eq!(h.call(path, "").await, (StatusCode::OK, want), "{path}");
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    // Requests that need the store fail cleanly, bounded in time.
    let (status, reply) = h
        .call("/IpamDriver.RequestPool", &pool_request("", "").to_string())
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply["Err"].as_str().unwrap().contains("still opening"),
        "{reply}"
    );
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let h = harness(false).await;
    let (status, reply) = h.call("/VolumeDriver.Create", "{}").await;
    assert_eq!(
        (status, reply),
        (
            StatusCode::NOT_FOUND,
            json!({"Err": "unknown endpoint /VolumeDriver.Create"})
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipam_round_trip_as_docker_sends_it() {
    let h = harness(true).await;
    // Docker's bodies, as json.Encoder writes them (trailing newline).
    let pool = h
        .ok(
            "/IpamDriver.RequestPool",
            pool_request("10.0.42.0/24", "10.0.42.128/25"),
        )
        .await;
    assert_eq!(
        pool,
        json!({"PoolID": "10.0.42.0/24", "Pool": "10.0.42.0/24", "Data": {}})
    );
    let gateway = "{\"PoolID\":\"10.0.42.0/24\",\"Address\":\"\",\"Options\":{\"RequestAddressType\":\"com.docker.network.gateway\"}}\n";
    assert_eq!(
        h.call("/IpamDriver.RequestAddress", gateway).await.1["Address"],
        "10.0.42.128/24"
    );
    let aux = json!({"PoolID": "10.0.42.0/24", "Address": "10.0.42.129", "Options": null});
    h.ok("/IpamDriver.RequestAddress", aux).await;
    let endpoint = json!({"PoolID": "10.0.42.0/24", "Address": "", "Options": {"com.docker.network.endpoint.name": "web"}});
    assert_eq!(
        h.ok("/IpamDriver.RequestAddress", endpoint).await["Address"],
        "10.0.42.130/24"
    );
    let taken = json!({"PoolID": "10.0.42.0/24", "Address": "10.0.42.130", "Options": {"com.docker.network.endpoint.name": "db"}});
    let (status, reply) = h
        .call("/IpamDriver.RequestAddress", &taken.to_string())
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        reply["Err"]
            .as_str()
            .unwrap()
            .contains("already in use by container web"),
        "{reply}"
    );
    h.ok(
        "/IpamDriver.ReleaseAddress",
        json!({"PoolID": "10.0.42.0/24", "Address": "10.0.42.130"}),
    )
    .await;
    h.ok("/IpamDriver.ReleasePool", json!({"PoolID": "10.0.42.0/24"}))
        .await;
    assert_eq!(h.status().await["pools"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let h = harness(true).await;
    h.ok("/IpamDriver.RequestPool", pool_request("10.0.42.0/24", ""))
        .await;
    h.ok(
        "/IpamDriver.RequestAddress",
        json!({"PoolID": "10.0.42.0/24", "Address": "10.0.42.9", "Options": {}}),
    )
    .await;
    let before = h.status().await;
    let cases: &[(&str, &str, StatusCode, &str)] = &[
        (
            "/IpamDriver.RequestPool",
            "{\"AddressSpace\":",
            StatusCode::BAD_REQUEST,
            "bad request body: EOF while parsing",
        ),
        (
            "/IpamDriver.RequestPool",
            "true",
            StatusCode::BAD_REQUEST,
            "bad request body: invalid type: boolean `true`",
        ),
        (
            "/IpamDriver.RequestPool",
            r#"{"AddressSpace":"rustnet-local","Pool":"","SubPool":"","V6":"yes"}"#,
            StatusCode::BAD_REQUEST,
            "invalid type: string \"yes\", expected a boolean",
        ),
        (
            "/IpamDriver.RequestPool",
            r#"{"Pool":"10.1.0.0/16"}"#,
            StatusCode::BAD_REQUEST,
            "missing field `AddressSpace`",
        ),
        (
            "/IpamDriver.RequestPool",
            r#"{"AddressSpace":"rustnet-local","Pool":"10.1.0.300/16","SubPool":"","V6":false}"#,
            StatusCode::BAD_REQUEST,
            "invalid Pool \"10.1.0.300/16\": invalid IP address syntax",
        ),
        (
            "/IpamDriver.RequestPool",
            r#"{"AddressSpace":"rustnet-local","Pool":"10.0.0.0/16","SubPool":"","V6":false}"#,
            StatusCode::CONFLICT,
            "subnet 10.0.0.0/16 overlaps pool 10.0.42.0/24",
        ),
        (
            "/IpamDriver.RequestPool",
            r#"{"AddressSpace":"rustnet-local","Pool":"","SubPool":"10.3.0.0/24","V6":false}"#,
            StatusCode::CONFLICT,
            "a sub-pool (10.3.0.0/24) needs a pool (--subnet) to be given too",
        ),
        (
            "/IpamDriver.RequestPool",
            r#"{"AddressSpace":"rustnet-local","Pool":"10.4.0.0/16","SubPool":"","Options":{"foo":"bar"},"V6":false}"#,
            StatusCode::BAD_REQUEST,
            "invalid ipam option \"foo\"",
        ),
        (
            "/IpamDriver.RequestPool",
            r#"{"AddressSpace":"elsewhere","Pool":"10.4.0.0/16","SubPool":"","V6":false}"#,
            StatusCode::BAD_REQUEST,
            "invalid AddressSpace \"elsewhere\"",
        ),
        (
            "/IpamDriver.ReleaseAddress",
            r#"{"PoolID":"10.0.42.0/24","Address":"10.0.42.77"}"#,
            StatusCode::CONFLICT,
            "address 10.0.42.77 in pool 10.0.42.0/24 is not allocated",
        ),
        (
            "/IpamDriver.ReleaseAddress",
            r#"{"PoolID":"10.0.42.0/24","Address":"not-an-ip"}"#,
            StatusCode::BAD_REQUEST,
            "invalid Address \"not-an-ip\"",
        ),
        (
            "/IpamDriver.ReleaseAddress",
            r#"{"PoolID":"10.0.42.0/24"}"#,
            StatusCode::BAD_REQUEST,
            "missing field `Address`",
        ),
        (
            "/IpamDriver.RequestAddress",
            r#"{"PoolID":"10.9.9.0/24","Address":"","Options":{}}"#,
            StatusCode::CONFLICT,
            "no pool with id 10.9.9.0/24",
        ),
        (
            "/IpamDriver.RequestAddress",
            r#"{"PoolID":"LocalDefault/10.9.9.0/24","Address":""}"#,
            StatusCode::BAD_REQUEST,
            "not a pool id rustnet handed out",
        ),
        (
            "/IpamDriver.ReleasePool",
            r#"{"PoolID":"10.9.9.0/24"}"#,
            StatusCode::CONFLICT,
            "no pool with id 10.9.9.0/24",
        ),
        (
            "/IpamDriver.ReleasePool",
            r#"{"PoolID":7}"#,
            StatusCode::BAD_REQUEST,
            "invalid type: integer `7`",
        ),
    ];
    for (path, body, want_status, want_err) in cases {
        let (status, reply) = h.call(path, body).await;
        let err = reply["Err"].as_str().unwrap_or_default();
        assert_eq!(status, *want_status, "{path} {body}: {reply}");
        assert!(
            err.contains(want_err),
            "{path} {body}: {err:?} lacks {want_err:?}"
        );
    }
    assert_eq!(h.status().await, before);
    // Each refusal is among the daemon's last errors, by path.
    let errors = h.ok("/Rustnet.Status", json!({})).await["errors"].clone();
    assert!(
        errors.as_array().is_some_and(|e| e.iter().any(|e| {
            e["source"] == "request /IpamDriver.ReleasePool"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("invalid type: integer `7`"))
        })),
        "{errors}"
    );
}

const NET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const EP: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

/// CreateNetwork as Docker 20.10 sends it for
/// `docker network create -d rustnet --ipam-driver rustnet --subnet 10.0.42.0/24 [-o ...]`.
fn create_network(generic: Value, internal: bool) -> Value {
    let mut options = json!({
        "com.docker.network.enable_ipv6": false,
        "com.docker.network.generic": generic,
    });
    if internal {
        options["com.docker.network.internal"] = json!(true);
    }
    json!({
        "NetworkID": NET,
        "Options": options,
        "IPv4Data": [{"AddressSpace": "rustnet-local", "Pool": "10.0.42.0/24", "Gateway": "10.0.42.1/24", "AuxAddresses": null}],
        "IPv6Data": []
    })
}

fn create_endpoint(mac: &str, portmap: Value) -> Value {
    json!({
        "NetworkID": NET,
        "EndpointID": EP,
        "Interface": {"Address": "10.0.42.2/24", "AddressIPv6": "", "MacAddress": mac},
        "Options": {"com.docker.network.endpoint.exposedports": [], "com.docker.network.portmap": portmap}
    })
}

impl Harness {
    fn last_applied(
        &self,
    ) -> (
        rustnet_overlay::Desired,
        Vec<rustnet_overlay::firewall::Network>,
    ) {
        self.plane
            .applied
            .lock()
            .unwrap()
            .last()
            .map(|want| (want.links.clone(), want.firewall.clone()))
            .expect("nothing applied")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_driver_lifecycle_as_docker_calls_it() {
    let h = harness(true).await;
    let generic = json!({"com.docker.network.driver.mtu": "1400"});
    h.ok(
        "/NetworkDriver.CreateNetwork",
        create_network(generic, false),
    )
    .await;
    let (desired, _) = h.last_applied();
    assert_eq!(desired.gateways[0].name, "rn-0123456789ab");
    assert_eq!(desired.gateways[0].mtu, 1400);
    assert_eq!(
        desired.gateways[0].addresses,
        ["10.0.42.1/24".parse::<ipnet::IpNet>().unwrap()]
    );

    let portmap = json!([{"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080}]);
    let reply = h
        .ok(
            "/NetworkDriver.CreateEndpoint",
            create_endpoint("", portmap),
        )
        .await;
    let mac = reply["Interface"]["MacAddress"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = u8::from_str_radix(&mac[..2], 16).unwrap();
    assert_eq!(first & 0x03, 0x02, "{mac}: locally administered unicast");
    let (desired, firewall) = h.last_applied();
    assert_eq!(desired.ports[0].host, "rnhfedcba987654");
    assert!(desired.ports[0].required);
    assert!(
        firewall[0].published.is_empty(),
        "ports open only once joined"
    );

    let join = json!({"NetworkID": NET, "EndpointID": EP, "SandboxKey": "/var/run/docker/netns/abc", "Options": {}});
    let reply = h.ok("/NetworkDriver.Join", join).await;
    assert_eq!(
        reply,
        json!({"InterfaceName": {"SrcName": "rncfedcba987654", "DstPrefix": "eth"}, "Gateway": "10.0.42.1"})
    );
    let (_, firewall) = h.last_applied();
    assert_eq!(firewall[0].published.len(), 1);
    assert_eq!(firewall[0].published[0].host_port, 8080);

    let ids = json!({"NetworkID": NET, "EndpointID": EP});
    assert_eq!(
        h.ok("/NetworkDriver.EndpointOperInfo", ids.clone()).await,
        json!({"Value": {}})
    );
    h.ok("/NetworkDriver.Leave", ids.clone()).await;
    assert!(h.last_applied().1[0].published.is_empty());
    h.ok("/NetworkDriver.DeleteEndpoint", ids).await;
    assert!(h.last_applied().0.ports.is_empty());
    h.ok("/NetworkDriver.DeleteNetwork", json!({"NetworkID": NET}))
        .await;
    assert_eq!(
        h.last_applied(),
        (rustnet_overlay::Desired::default(), vec![])
    );
    assert_eq!(h.status().await["networks"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_chosen_macs_are_kept_and_internal_networks_get_no_gateway() {
    let h = harness(true).await;
    h.ok(
        "/NetworkDriver.CreateNetwork",
        create_network(json!({}), true),
    )
    .await;
    let reply = h
        .ok(
            "/NetworkDriver.CreateEndpoint",
            create_endpoint("02:42:0a:00:2a:02", json!(null)),
        )
        .await;
    assert_eq!(reply, json!({"Interface": null}));
    let join = json!({"NetworkID": NET, "EndpointID": EP, "SandboxKey": "/x", "Options": null});
    let reply = h.ok("/NetworkDriver.Join", join).await;
    assert_eq!(
        reply,
        json!({"InterfaceName": {"SrcName": "rncfedcba987654", "DstPrefix": "eth"}})
    );
    assert!(h.last_applied().1[0].internal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_network_requests_are_refused_clearly_and_change_nothing() {
    let h = harness(true).await;
    h.ok(
        "/NetworkDriver.CreateNetwork",
        create_network(json!({}), false),
    )
    .await;
    let before = h.status().await;
    let other = |generic: Value| {
        let mut body = create_network(generic, false);
        body["NetworkID"] =
            json!("1111111111111111111111111111111111111111111111111111111111111111");
        body["IPv4Data"][0]["Pool"] = json!("10.0.50.0/24");
        body.to_string()
    };
    let default_ipam = |generic: Value| {
        let mut body: Value = serde_json::from_str(&other(generic)).unwrap();
        body["IPv4Data"][0]["AddressSpace"] = json!("LocalDefault");
        body.to_string()
    };
    let port0 = create_endpoint(
        "",
        json!([{"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 0, "HostPortEnd": 0}]),
    );
    let mut on_unknown = create_endpoint("", json!(null));
    on_unknown["NetworkID"] =
        json!("2222222222222222222222222222222222222222222222222222222222222222");
    let ipv6_of_ipv4 = {
        let mut body: Value = serde_json::from_str(&other(json!({}))).unwrap();
        body["IPv6Data"] = json!([{"AddressSpace": "rustnet-local", "Pool": "10.9.0.0/24"}]);
        body.to_string()
    };
    // Docker 28's `docker network create --ipv4=false --ipv6 ...`: no
    // IPv4 data at all; here with Docker's default IPAM.
    let ipv6_only = {
        let mut body: Value = serde_json::from_str(&other(json!({"mode": "overlay"}))).unwrap();
        body["Options"]["com.docker.network.enable_ipv4"] = json!(false);
        body["Options"]["com.docker.network.enable_ipv6"] = json!(true);
        body["IPv4Data"] = json!([]);
        body["IPv6Data"] = json!([{"AddressSpace": "LocalDefault", "Pool": "fd00:42::/64", "Gateway": "fd00:42::1/64"}]);
        body.to_string()
    };
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "/NetworkDriver.CreateNetwork",
            ipv6_only,
            StatusCode::BAD_REQUEST,
            "mode=overlay needs --ipam-driver rustnet: with Docker's default IPAM every host would hand out the same addresses",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            ipv6_of_ipv4,
            StatusCode::BAD_REQUEST,
            "invalid IPv6Data \"10.9.0.0/24\": not an IPv6 subnet",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(json!({"foo": "bar"})),
            StatusCode::BAD_REQUEST,
            "invalid option \"foo\": unknown -o key; valid keys: mode, com.docker.network.driver.mtu, vni, com.docker.network.bridge.name, rustnet.overlay, multicast, encrypted, parent, host_access",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(json!({"multicast": "flood"})),
            StatusCode::BAD_REQUEST,
            "multicast applies to mode=overlay only",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(json!({"encrypted": ""})),
            StatusCode::BAD_REQUEST,
            "encrypted applies to mode=overlay only",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(json!({"mode": "overlay", "encrypted": "yes"})),
            StatusCode::BAD_REQUEST,
            "invalid option encrypted \"yes\": valid values: true (or no value), false",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(json!({"mode": "overlay", "multicast": "snoop"})),
            StatusCode::BAD_REQUEST,
            "invalid option multicast \"snoop\": valid values: flood (copies to every host with containers on the overlay), off (the default)",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            default_ipam(json!({"mode": "overlay"})),
            StatusCode::BAD_REQUEST,
            "mode=overlay needs --ipam-driver rustnet: with Docker's default IPAM every host would hand out the same addresses",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(json!({"rustnet.overlay": "x"})),
            StatusCode::BAD_REQUEST,
            "applies to mode=overlay, macvlan and ipvlan only",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(json!({"mode": "mesh"})),
            StatusCode::BAD_REQUEST,
            "valid modes: bridge, overlay, macvlan, ipvlan",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(json!({"mode": "macvlan"})),
            StatusCode::BAD_REQUEST,
            "mode=macvlan needs -o parent=IFACE",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(json!({"mode": "ipvlan", "parent": "eth0/1"})),
            StatusCode::BAD_REQUEST,
            "invalid parent \"eth0/1\": \"eth0/1\" is not an interface name",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(json!({"parent": "eth0"})),
            StatusCode::BAD_REQUEST,
            "parent applies to mode=macvlan and mode=ipvlan only",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(json!({"mode": "macvlan", "parent": "eth0", "host_access": "yes"})),
            StatusCode::BAD_REQUEST,
            "invalid option host_access \"yes\"",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(json!({"mode": "macvlan", "parent": "eth0", "vni": "7"})),
            StatusCode::BAD_REQUEST,
            "vni applies to mode=overlay only",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(
                json!({"mode": "macvlan", "parent": "eth0", "com.docker.network.bridge.name": "br9"}),
            ),
            StatusCode::BAD_REQUEST,
            "does not apply to mode=macvlan: it has no bridge",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            default_ipam(json!({"mode": "macvlan", "parent": "eth0"})),
            StatusCode::BAD_REQUEST,
            "mode=macvlan needs --ipam-driver rustnet",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            {
                let mut body = create_network(json!({"mode": "macvlan", "parent": "eth0"}), true);
                body["NetworkID"] =
                    json!("3333333333333333333333333333333333333333333333333333333333333333");
                body.to_string()
            },
            StatusCode::BAD_REQUEST,
            "--internal is not supported with mode=macvlan",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(json!({"com.docker.network.driver.mtu": "9x"})),
            StatusCode::BAD_REQUEST,
            "an MTU is a number",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(json!({"vni": "42"})),
            StatusCode::BAD_REQUEST,
            "vni applies to mode=overlay only",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(json!({"com.docker.network.bridge.name": "a-name-far-too-long"})),
            StatusCode::BAD_REQUEST,
            "1-15 letters",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            other(json!({"com.docker.network.bridge.name": "rn-0123456789ab"})),
            StatusCode::CONFLICT,
            "bridge name rn-0123456789ab is already used by network 0123456789ab",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            "{\"NetworkID\":".to_owned(),
            StatusCode::BAD_REQUEST,
            "bad request body",
        ),
        (
            "/NetworkDriver.CreateNetwork",
            json!({"NetworkID": "x"}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid NetworkID \"x\": not a Docker id",
        ),
        (
            "/NetworkDriver.CreateEndpoint",
            port0.to_string(),
            StatusCode::BAD_REQUEST,
            "needs an explicit host port",
        ),
        (
            "/NetworkDriver.CreateEndpoint",
            on_unknown.to_string(),
            StatusCode::CONFLICT,
            "no network 2222222222222222",
        ),
        (
            "/NetworkDriver.CreateEndpoint",
            create_endpoint("zz", json!(null)).to_string(),
            StatusCode::BAD_REQUEST,
            "not a MAC address",
        ),
        (
            "/NetworkDriver.Join",
            json!({"NetworkID": NET, "EndpointID": EP}).to_string(),
            StatusCode::CONFLICT,
            "no endpoint fedcba",
        ),
        (
            "/NetworkDriver.Leave",
            json!({"NetworkID": NET}).to_string(),
            StatusCode::BAD_REQUEST,
            "missing field `EndpointID`",
        ),
        (
            "/NetworkDriver.AllocateNetwork",
            "{}".to_owned(),
            StatusCode::BAD_REQUEST,
            "not swarm-scoped",
        ),
    ];
    for (path, body, want_status, want_err) in cases {
        let (status, reply) = h.call(path, &body).await;
        let err = reply["Err"].as_str().unwrap_or_default();
        assert_eq!(status, want_status, "{path} {body}: {reply}");
        assert!(
            err.contains(want_err),
            "{path} {body}: {err:?} lacks {want_err:?}"
        );
    }
    assert_eq!(h.status().await, before);
}

/// Request bodies near what Docker sends: its keys, with values of any
/// type, valid-looking ids, addresses and CIDRs among them; and raw bytes.
fn body() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let text = prop_oneof![
        Just("10.0.42.0/24".to_owned()),
        Just("10.0.42.7".to_owned()),
        Just("10.0.42.7/24".to_owned()),
        Just("rustnet-local".to_owned()),
        Just("02:42:ac:11:00:02".to_owned()),
        Just("a".repeat(64)),
        Just("overlay".to_owned()),
        "[ -~]{0,20}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        text.prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let object = proptest::collection::btree_map(key(), value, 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()).to_string());
    prop_oneof![
        4 => object,
        1 => proptest::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

fn key() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::strategy::Strategy;
    proptest::sample::select(vec![
        "NetworkID",
        "EndpointID",
        "Options",
        "Interface",
        "Address",
        "AddressIPv6",
        "MacAddress",
        "IPv4Data",
        "IPv6Data",
        "Pool",
        "SubPool",
        "PoolID",
        "V6",
        "AddressSpace",
        "Gateway",
        "SandboxKey",
        "com.docker.network.generic",
        "com.docker.network.portmap",
        "com.docker.network.endpoint.dnsservers",
        "com.docker.network.internal",
        "RequestAddressType",
        "mode",
        "vni",
        "multicast",
        "flood",
        "encrypted",
        "Proto",
        "Port",
        "HostPort",
        "HostIP",
    ])
    .prop_map(str::to_owned)
}

/// Arbitrary bodies to every path: each gets an answer (a handler that
/// panicked would drop the connection), every failure is a non-200 with
/// `{"Err": "..."}`, and the daemon answers as before afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_bodies_get_an_answer_and_never_break_the_daemon() {
    use proptest::strategy::{Strategy, ValueTree};
    let h = harness(true).await;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = body();
    for round in 0..150 {
        for path in PATHS {
            let body = strategy.new_tree(&mut runner).unwrap().current();
            let (status, reply) = h.call(path, &body).await;
            if status != StatusCode::OK {
                assert!(
                    reply["Err"].as_str().is_some_and(|e| !e.is_empty()),
                    "round {round} {path} {body}: {status} {reply}"
                );
            }
        }
    }
    let status = h.status().await;
    assert!(status["host"].is_u64(), "{status}");
}

/// A client that sends its body a moment after the head, and asks for the
/// connection to be closed, gets the whole answer: every body is read
/// before its request is answered, so the server never closes with bytes
/// unread (which its client would see as a reset, or a broken pipe).
#[tokio::test]
async fn a_body_sent_after_the_head_is_read_before_the_answer() {
    let h = harness(true).await;
    for path in ["/Rustnet.Status", "/Plugin.Activate"] {
        let socket = h.socket.clone();
        let reply = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            use std::io::{Read, Write};
            let mut conn = std::os::unix::net::UnixStream::connect(&socket)?;
            conn.write_all(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: p\r\nConnection: close\r\nContent-Length: 2\r\n\r\n"
                )
                .as_bytes(),
            )?;
            std::thread::sleep(Duration::from_millis(300));
            conn.write_all(b"{}")?;
            let mut reply = String::new();
            conn.read_to_string(&mut reply)?;
            Ok(reply)
        })
        .await
        .unwrap();
        let reply = reply.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(reply.starts_with("HTTP/1.1 200"), "{path}: {reply}");
    }
}
