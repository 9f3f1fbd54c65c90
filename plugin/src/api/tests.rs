//! The plugin API over a real Unix socket, with a real one-node store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use rustnet_ipam::store::Store;
use serde_json::{Value, json};
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::client::PluginClient;
use crate::daemon::serve;
use crate::service::{Service, StoreState};

struct Harness {
    client: PluginClient,
    _dir: tempfile::TempDir,
    _store_tx: watch::Sender<StoreState>,
}

/// A server on a fresh socket; with `store`, backed by a fresh store.
async fn harness(store: bool) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("rustnet.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let (tx, rx) = watch::channel(StoreState::Opening);
    if store {
        let store = Store::open(
            &dir.path().join("state"),
            "127.0.0.1:0",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        tx.send_replace(StoreState::Open(store));
    }
    let defaults = vec!["10.128.0.0/9:24".parse().unwrap()];
    let service = Arc::new(Service::new(rx, defaults, Duration::from_secs(2)));
    tokio::spawn(serve(listener, service, std::future::pending()));
    Harness {
        client: PluginClient::new(&socket),
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

    async fn status(&self) -> Value {
        self.ok("/Rustnet.Status", json!({})).await
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
            json!({"RequiresMACAddress": false, "RequiresRequestReplay": false}),
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
async fn unknown_paths_are_404_and_network_calls_say_not_yet() {
    let h = harness(false).await;
    let (status, reply) = h.call("/VolumeDriver.Create", "{}").await;
    assert_eq!(
        (status, reply),
        (
            StatusCode::NOT_FOUND,
            json!({"Err": "unknown endpoint /VolumeDriver.Create"})
        )
    );
    let (status, reply) = h.call("/NetworkDriver.CreateNetwork", "{}").await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert!(
        reply["Err"]
            .as_str()
            .unwrap()
            .contains("not implemented yet")
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
}
