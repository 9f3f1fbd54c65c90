//! Failover and start on three rustnet daemons (bare members in their own
//! namespaces on the underlay, mutual TLS, fsync on), driven through their
//! plugin sockets as dockerd drives them:
//!
//! - failover: the leader is killed with SIGKILL; from then until an
//!   allocation through a surviving member succeeds;
//! - start: the killed daemon is started again on its state dir; from then
//!   until an allocation through it succeeds (the cluster has quorum).
//!
//! Every round kills whoever leads; p50, p99 and the worst over the rounds.
//! The last line, `RESULT {...}`, holds the samples as JSON (for
//! `bench-report`).
//!
//! ```text
//! cargo build --release -p rustnet -p rustnet-tests --bins
//! RUSTNET_BIN=$PWD/target/release/rustnet target/release/failover-bench [ROUNDS]
//! ```

use std::time::{Duration, Instant};

use rustnet_tests::{BareHost, plugin_call, wait_until};
use serde_json::json;

const POOL: &str = "10.90.0.0/16";

fn allocate(host: &BareHost) -> Result<(), String> {
    let body = json!({"PoolID": POOL, "Address": "", "Options": {}}).to_string();
    plugin_call(host.socket(), "/IpamDriver.RequestAddress", &body).map(drop)
}

/// Allocates through `host` until one succeeds; how long from `since`.
fn first_allocation(host: &BareHost, since: Instant) -> Duration {
    while let Err(e) = allocate(host) {
        assert!(
            since.elapsed() < Duration::from_secs(60),
            "no allocation through {} within 60 s: {e}",
            host.addr
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    since.elapsed()
}

fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    sorted[(sorted.len() - 1) * per_mille / 1000]
}

fn summary(name: &str, samples: &mut [Duration]) {
    samples.sort();
    println!(
        "| {name} | {:.0} ms | {:.0} ms | {:.0} ms | {} |",
        percentile(samples, 500).as_secs_f64() * 1e3,
        percentile(samples, 990).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    );
}

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(10, |s| {
        s.parse().unwrap_or_else(|e| panic!("ROUNDS {s}: {e}"))
    });
    let (mut hosts, join) = BareHost::three_voters();
    let join_env: Vec<(&str, &str)> = join.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for host in &hosts {
        let body = json!({"AddressSpace": "rustnet-local", "Pool": POOL, "SubPool": "", "Options": {}, "V6": false});
        plugin_call(host.socket(), "/IpamDriver.RequestPool", &body.to_string())
            .unwrap_or_else(|e| panic!("RequestPool on {}: {e}", host.addr));
    }

    let mut failover = Vec::new();
    let mut start = Vec::new();
    for round in 0..rounds {
        let leader = hosts[0]
            .status()
            .and_then(|s| s["cluster"]["leader"].as_u64())
            .unwrap_or_else(|| panic!("no leader known"));
        let k = hosts
            .iter()
            .position(|h| h.host_id() == Some(leader))
            .unwrap_or_else(|| panic!("the leader {leader} is none of the three"));
        // Allocations flow before the kill, as on a busy cluster.
        for host in &hosts {
            allocate(host).unwrap_or_else(|e| panic!("allocation before round {round}: {e}"));
        }
        hosts[k].kill();
        let killed = Instant::now();
        failover.push(first_allocation(&hosts[(k + 1) % 3], killed));

        // The first host bootstrapped: it starts again on its state as
        // the others do (a member's state, not a new cluster).
        let env: &[(&str, &str)] = if k == 0 { &[] } else { &join_env };
        let started = Instant::now();
        hosts[k].spawn(env);
        start.push(first_allocation(&hosts[k], started));
        wait_until("three voters again", 60, || {
            hosts.iter().all(|h| h.voters() == 3)
        });
        eprintln!(
            "round {round}: failover {:?}, start {:?}",
            failover[round], start[round]
        );
    }
    let ms = |samples: &[Duration]| -> Vec<f64> {
        samples.iter().map(|d| d.as_secs_f64() * 1e3).collect()
    };
    let result = json!({"failover_ms": ms(&failover), "start_ms": ms(&start)});
    println!("| measure | p50 | p99 | worst | rounds |");
    println!("|---|---|---|---|---|");
    summary(
        "failover: leader SIGKILL -> first allocation through a survivor",
        &mut failover,
    );
    summary(
        "start: daemon started again -> first allocation through it",
        &mut start,
    );
    println!("RESULT {result}");
}
