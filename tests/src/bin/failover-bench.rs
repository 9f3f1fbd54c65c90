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
//! Before the rounds, a loaded run without kills: allocations through all
//! three members while two busy loops take the machine's cores, for
//! [`LOAD`]; the elections in it (the term's growth) must be none.
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
/// How long the loaded run without kills lasts.
const LOAD: Duration = Duration::from_secs(30);

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

    let elections = loaded_run(&hosts);
    eprintln!("loaded run without kills: {elections} elections");

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
    let result = json!({
        "failover_ms": ms(&failover),
        "start_ms": ms(&start),
        "elections_loaded": elections,
    });
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
    println!(
        "| elections in a loaded run without kills ({} s) | {elections} | | | |",
        LOAD.as_secs()
    );
    println!("RESULT {result}");
}

/// The cluster's term as `host` sees it.
fn term(host: &BareHost) -> u64 {
    host.status()
        .and_then(|s| s["cluster"]["term"].as_u64())
        .unwrap_or_else(|| panic!("no term known on {}", host.addr))
}

/// Allocations through every member, one after another on a thread each,
/// while as many busy loops as the machine has cores run, for [`LOAD`]; how
/// many elections happened meanwhile.
fn loaded_run(hosts: &[BareHost]) -> u64 {
    let before = term(&hosts[0]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    std::thread::scope(|scope| {
        for _ in 0..cores {
            scope.spawn(|| {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            });
        }
        for host in hosts {
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = allocate(host);
                }
            });
        }
        std::thread::sleep(LOAD);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    term(&hosts[0]) - before
}
