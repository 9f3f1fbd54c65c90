//! Prometheus metrics of real daemons on two simulated hosts: a scrape
//! parses with Prometheus's own OpenMetrics parser (Python's
//! prometheus_client), and the figures move as requests are made.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

use rustnet_tests::cluster::{acked, start_storm};
use rustnet_tests::{SimHost, run, wait_until};

const CLIENT: &str = env!("CARGO_BIN_EXE_ipam-client");
const POOL: &str = "10.74.0.0/24";
const PORT: u16 = 9464;

/// The parser: one `name<TAB>labels as JSON<TAB>value` line per sample.
const PARSE: &str = r"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(s.name + '\t' + json.dumps(s.labels, sort_keys=True) + '\t' + repr(s.value))
";

/// Every sample of a scrape of `host`, by name and labels (as JSON).
fn scrape(host: &SimHost) -> BTreeMap<(String, String), f64> {
    let mut conn = std::net::TcpStream::connect((host.addr.as_str(), PORT))
        .unwrap_or_else(|e| panic!("connect to {}:{PORT}: {e}", host.addr));
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n"
    )
    .unwrap_or_else(|e| panic!("scrape: {e}"));
    let mut reply = String::new();
    conn.read_to_string(&mut reply)
        .unwrap_or_else(|e| panic!("scrape: {e}"));
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or_default();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let mut parser = Command::new("/usr/bin/python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("python3 (scripts/test.sh installs python3-prometheus-client): {e}")
        });
    if let Some(mut stdin) = parser.stdin.take() {
        stdin
            .write_all(body.as_bytes())
            .unwrap_or_else(|e| panic!("to the parser: {e}"));
    }
    let out = parser
        .wait_with_output()
        .unwrap_or_else(|e| panic!("the parser: {e}"));
    assert!(
        out.status.success(),
        "the scrape does not parse: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split('\t');
            let (name, labels, value) = (parts.next()?, parts.next()?, parts.next()?);
            Some(((name.to_owned(), labels.to_owned()), value.parse().ok()?))
        })
        .collect()
}

fn sample(samples: &BTreeMap<(String, String), f64>, name: &str, labels: &str) -> f64 {
    samples
        .get(&(name.to_owned(), labels.to_owned()))
        .copied()
        .unwrap_or_else(|| panic!("no {name}{labels} in {samples:?}"))
}

#[test]
#[ignore = "needs root, network namespaces and dockerd: scripts/test.sh runs it"]
fn a_real_scrape_parses_and_moves_with_requests() {
    let h1 = SimHost::start();
    let h2 = SimHost::start();
    let metrics = |h: &SimHost| format!("{}:{PORT}", h.addr);
    h1.start_rustnet(&[("RUSTNET_METRICS_ADDR", &metrics(&h1))]);
    let join = format!("{}:7950", h1.addr);
    let token = h1.join_token();
    h2.start_rustnet(&[
        ("RUSTNET_METRICS_ADDR", &metrics(&h2)),
        ("RUSTNET_JOIN", &join),
        ("RUSTNET_JOIN_TOKEN", &token),
    ]);
    wait_until("two members under one leader", 30, || {
        let (a, b) = (scrape(&h1), scrape(&h2));
        sample(&a, "rustnet_raft_state", r#"{"state": "leader"}"#) == 1.0
            && sample(&b, "rustnet_raft_state", r#"{"state": "follower"}"#) == 1.0
            && sample(&b, "rustnet_raft_has_leader", "{}") == 1.0
    });
    let before = scrape(&h2);
    let ok_requests = r#"{"outcome": "ok", "path": "/IpamDriver.RequestAddress"}"#;
    let count = |s: &BTreeMap<(String, String), f64>| {
        s.get(&("rustnet_requests_total".to_owned(), ok_requests.to_owned()))
            .copied()
            .unwrap_or(0.0)
    };
    run(h2.cmd(CLIENT).args([h2.socket().as_str(), "pool", POOL])).unwrap();
    let got = acked(start_storm(&h2, CLIENT, POOL, 5, "metrics"));
    assert_eq!(got.len(), 5, "{got:?}");
    let after = scrape(&h2);
    assert_eq!(count(&after) - count(&before), 5.0);
    // Each allocation was a replicated write from h2 (forwarded to the
    // leader), counted and timed there.
    let writes = r#"{"command": "request-address", "outcome": "ok"}"#;
    let timed = r#"{"command": "request-address"}"#;
    let moved = |name: &str, labels: &str| {
        let at = |s: &BTreeMap<(String, String), f64>| {
            s.get(&(name.to_owned(), labels.to_owned()))
                .copied()
                .unwrap_or(0.0)
        };
        at(&after) - at(&before)
    };
    assert_eq!(moved("rustnet_writes_total", writes), 5.0);
    assert_eq!(moved("rustnet_write_duration_seconds_count", timed), 5.0);
    let pool = format!(r#"{{"pool": "{POOL}"}}"#);
    // The pools are the cluster's: the leader counts what h2 took.
    wait_until("h1 counts h2's addresses", 10, || {
        sample(&scrape(&h1), "rustnet_pool_allocated_addresses", &pool) == 5.0
    });
    // A follower applies what it acknowledged a moment later.
    wait_until("h2 counts 249 free of 254", 10, || {
        sample(&scrape(&h2), "rustnet_pool_free_addresses", &pool) == 254.0 - 5.0
    });
    let leader = scrape(&h1);
    let lag: Vec<f64> = leader
        .iter()
        .filter(|((name, _), _)| name == "rustnet_raft_replication_lag_entries")
        .map(|(_, v)| *v)
        .collect();
    assert!(
        !lag.is_empty(),
        "no replication lag on the leader: {leader:?}"
    );
    assert!(sample(&leader, "rustnet_raft_applied_index", "{}") > 0.0);
    // A network with a container: its endpoint, and reconcile passes.
    h1.create_network("rustnet", "measured", &["--subnet", "10.75.0.0/24"]);
    h1.run_container("m1", "measured", &[], &[]);
    let h1_after = scrape(&h1);
    let endpoints: f64 = h1_after
        .iter()
        .filter(|((name, _), _)| name == "rustnet_endpoints")
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(endpoints, 1.0, "{h1_after:?}");
    assert!(
        sample(
            &h1_after,
            "rustnet_reconciles_total",
            r#"{"outcome": "ok"}"#
        ) > 0.0
    );
    assert!(sample(&h1_after, "rustnet_firewall_rewrites_total", "{}") > 0.0);
    // Docker's name for m1's endpoint, learned and replicated.
    wait_until("h1 measures name learning", 15, || {
        sample(
            &scrape(&h1),
            "rustnet_name_learning_lag_seconds_count",
            "{}",
        ) >= 1.0
    });
    // An overlay made on h1 reaches h2's Docker: h2 measures the lag.
    assert_eq!(
        sample(&scrape(&h2), "rustnet_propagation_lag_seconds_count", "{}"),
        0.0
    );
    h1.create_overlay("spread", "10.76.0.0/24", &[]);
    wait_until("h2 measures the overlay's propagation", 20, || {
        sample(&scrape(&h2), "rustnet_propagation_lag_seconds_count", "{}") == 1.0
    });
    assert!(h2.has_network("spread"));
}

/// `rustnet status` keeps the daemon's last errors, by where they happened.
#[test]
#[ignore = "needs root, network namespaces and dockerd: scripts/test.sh runs it"]
fn status_shows_the_last_errors() {
    let h1 = SimHost::start();
    h1.start_rustnet(&[]);
    let refused = h1.docker(&[
        "network",
        "create",
        "-d",
        "rustnet",
        "--ipam-driver",
        "rustnet",
        "--subnet",
        "10.77.0.0/24",
        "-o",
        "colour=blue",
        "refused",
    ]);
    assert!(refused.is_err(), "an unknown option was taken");
    let errors = h1.status()["errors"].clone();
    let found = errors.as_array().is_some_and(|e| {
        e.iter().any(|e| {
            e["source"] == "request /NetworkDriver.CreateNetwork"
                && e["message"].as_str().is_some_and(|m| m.contains("colour"))
                && e["count"] == 1
        })
    });
    assert!(found, "{errors}");
    let text = run(h1
        .cmd(rustnet_tests::rustnet_bin().to_str().unwrap_or("rustnet"))
        .args(["status", "--socket", &h1.socket()]))
    .unwrap_or_else(|e| panic!("rustnet status: {e}"));
    assert!(
        text.contains("last errors:\n") && text.contains("request /NetworkDriver.CreateNetwork: "),
        "{text}"
    );
}
