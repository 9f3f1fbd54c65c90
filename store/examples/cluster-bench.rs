//! Allocation throughput and latency on a 3-node cluster over loopback
//! gRPC, with 1, 16 and 64 concurrent clients spread over the nodes, and
//! failover time (leader killed -> first successful allocation).
//!
//! Those rows run their clients as fast as they go: each sends its next
//! request as soon as the last is answered, so the row measures the most
//! the cluster does and the latency at that rate. One more row, `paced`,
//! holds 64 clients to 10,000 allocations/s in all: each client sends on a
//! schedule, and a request's latency counts from when it was due (so a
//! client held up by a slow answer counts the wait too), or, when the
//! client had to sleep until then, from when it woke (the timer's
//! millisecond is not the cluster's).
//!
//! The last line, `RESULT {...}`, holds every figure and sample as JSON
//! (for `bench-report`).
//!
//! ```text
//! cargo run --release -p rustnet-store --example cluster-bench [ALLOCATIONS [CLIENTS...]]
//! ```
//!
//! ALLOCATIONS per row, 3,000 by default: a row of 64 clients then lasts a
//! fraction of a second. 20,000 lasts long enough for each member to take
//! a few snapshots while the clients wait. CLIENTS picks rows (1, 16, 64,
//! paced; 1 is both one-client rows) and leaves out failover: what
//! `scripts/profile.sh` records.
//!
//! Each row also gives the process's CPU time per allocation (the three
//! members and the clients, user and system): what the write path costs,
//! whatever else waits.

use std::time::{Duration, Instant};

use rustnet_ipam_core::{Command, HolderKind, Response};
use rustnet_store::{Store, StoreConfig, spawn_server};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const POOL: &str = "10.80.0.0/12";
/// Allocations per row, unless the first argument says otherwise.
const OPS: usize = 3000;
/// The rate of the paced row, allocations/s over all its clients.
const PACE: f64 = 10_000.0;

/// One row: how many clients, the node of the first (the rest go
/// round-robin over the nodes), and the pace they are held to, if any.
#[derive(Debug, Clone, Copy)]
struct Row {
    clients: usize,
    first: usize,
    pace: Option<f64>,
}

struct Node {
    store: Store,
    stop: Option<oneshot::Sender<()>>,
}

/// A node in `dir`; with `join`, enrolled through those seeds and joined.
async fn node(
    dir: &std::path::Path,
    join: Option<(&[String], &rustnet_ipam_core::JoinToken)>,
) -> anyhow::Result<Node> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let config = StoreConfig {
        join_patience: Duration::from_secs(10),
        ..StoreConfig::new(listener.local_addr()?.to_string())
    };
    if let Some((seeds, token)) = join {
        rustnet_store::enroll(dir, &config, seeds, Some(token)).await?;
    }
    let store = Store::open(dir, config).await?;
    let (tx, rx) = oneshot::channel::<()>();
    spawn_server(&store, listener, async {
        let _ = rx.await;
    });
    if let Some((seeds, _)) = join {
        store.membership().join(seeds).await?;
    }
    Ok(Node {
        store,
        stop: Some(tx),
    })
}

async fn allocate(store: &Store, name: String) -> anyhow::Result<()> {
    let command = Command::RequestAddress {
        host: store.id(),
        pool_id: POOL.to_owned(),
        address: None,
        kind: HolderKind::endpoint(name),
    };
    match store.write(command).await? {
        Response::Address { .. } => Ok(()),
        other => anyhow::bail!("allocation answered {other:?}"),
    }
}

/// Latencies in milliseconds, sorted.
fn millis(samples: &[Duration]) -> Vec<f64> {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// The CPU time this process has used so far (every thread, user and
/// system).
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the struct it is given and has no
    // other precondition.
    #[allow(unsafe_code)]
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.unsigned_abs())
            + Duration::from_micros(t.tv_usec.unsigned_abs())
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    sorted[(sorted.len() - 1) * per_mille / 1000]
}

/// When a paced client's `i`-th request is due: the row's requests evenly
/// spread at `pace` per second, client `c` taking every `clients`-th.
fn due(started: Instant, pace: f64, clients: usize, c: usize, i: usize) -> Instant {
    #[allow(clippy::cast_precision_loss)] // far below 2^52 requests
    let nth = (i * clients + c) as f64;
    started + Duration::from_secs_f64(nth / pace)
}

/// One row, `ops` allocations in all.
async fn measure(
    nodes: &[Node],
    leader: usize,
    row: Row,
    ops: usize,
) -> anyhow::Result<serde_json::Value> {
    let Row {
        clients,
        first,
        pace,
    } = row;
    let started = Instant::now();
    let cpu_before = cpu_time();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let n = (first + c) % 3;
        let store = nodes[n].store.clone();
        let per_client = ops / clients;
        let tag = pace.map_or("", |_| "p");
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let t = match pace.map(|pace| due(started, pace, clients, c, i)) {
                    Some(due) if due > Instant::now() => {
                        tokio::time::sleep_until(due.into()).await;
                        Instant::now()
                    }
                    // Behind schedule: the wait since it was due counts.
                    Some(due) => due,
                    None => Instant::now(),
                };
                allocate(&store, format!("c{clients}{tag}-{first}-{c}-{i}")).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok((n == leader, latencies))
        }));
    }
    let (mut all, mut on_leader, mut on_followers) = (Vec::new(), Vec::new(), Vec::new());
    for task in tasks {
        let (at_leader, latencies) = task.await??;
        all.extend(&latencies);
        if at_leader {
            on_leader.extend(latencies);
        } else {
            on_followers.extend(latencies);
        }
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let rate = all.len() as f64 / elapsed.as_secs_f64();
    let cpu_us = cpu.as_secs_f64() * 1e6 / all.len() as f64;
    let line = |samples: &mut Vec<Duration>| {
        samples.sort();
        format!(
            "p50 {:>8.2?}, p99 {:>8.2?}",
            percentile(samples, 500),
            percentile(samples, 990)
        )
    };
    let through = match (on_leader.is_empty(), on_followers.is_empty()) {
        (false, true) => " (through the leader)".to_owned(),
        (true, false) => " (through a follower)".to_owned(),
        _ => format!(
            "; through the leader {}, through followers {}",
            line(&mut on_leader),
            line(&mut on_followers)
        ),
    };
    let paced = pace.map_or_else(String::new, |p| format!(" paced at {p:.0}/s"));
    println!(
        "  {clients:>2} client(s){paced}: {rate:>7.0} allocations/s, {}{through}; CPU {cpu_us:.0} µs per allocation ({:.2} cores)",
        line(&mut all),
        cpu.as_secs_f64() / elapsed.as_secs_f64()
    );
    let via = match (on_leader.is_empty(), on_followers.is_empty()) {
        (false, true) => "leader",
        (true, false) => "follower",
        _ => "spread",
    };
    Ok(serde_json::json!({
        "clients": clients,
        "via": via,
        "paced": pace,
        "rate": rate,
        "cpu_us": cpu_us,
        "samples_ms": millis(&all),
        "leader_ms": millis(&on_leader),
        "followers_ms": millis(&on_followers),
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let ops = match args.next() {
        Some(n) => n
            .parse()
            .map_err(|e| anyhow::anyhow!("ALLOCATIONS {n}: {e}"))?,
        None => OPS,
    };
    let picked = args
        .map(|n| match n.as_str() {
            "1" | "16" | "64" | "paced" => Ok(n),
            _ => Err(anyhow::anyhow!("CLIENTS {n}: one of 1, 16, 64, paced")),
        })
        .collect::<anyhow::Result<Vec<String>>>()?;
    let root = tempfile::tempdir()?;
    let mut nodes = vec![node(&root.path().join("n0"), None).await?];
    nodes[0].store.membership().bootstrap(None).await?;
    let seed = nodes[0].store.addr().to_owned();
    let token = nodes[0].store.membership().join_token().await?;
    for i in 1..3 {
        let seeds = std::slice::from_ref(&seed);
        nodes.push(node(&root.path().join(format!("n{i}")), Some((seeds, &token))).await?);
    }
    while nodes[0].store.members().iter().filter(|m| m.voter).count() < 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pool = Command::RequestPool {
        host: nodes[0].store.id(),
        pool: Some(POOL.parse()?),
        range: None,
        v6: false,
        defaults: vec![],
    };
    let _ = nodes[0].store.write(pool).await?;
    println!(
        "3-node cluster on loopback gRPC, {ops} allocations per run, clients spread over the nodes"
    );
    let leader = nodes
        .iter()
        .position(|n| n.store.cluster_view().state == "leader")
        .unwrap_or(0);
    let mut rows = Vec::new();
    // One client on the leader, one on a follower, then clients spread
    // over every node, as fast as they go and paced.
    let row = |clients, first, pace| Row {
        clients,
        first,
        pace,
    };
    for row in [
        row(1, leader, None),
        row(1, (leader + 1) % 3, None),
        row(16, 0, None),
        row(64, 0, None),
        row(64, 0, Some(PACE)),
    ] {
        let name = match row.pace {
            Some(_) => "paced".to_owned(),
            None => row.clients.to_string(),
        };
        if picked.is_empty() || picked.contains(&name) {
            rows.push(measure(&nodes, leader, row, ops).await?);
        }
    }
    if !picked.is_empty() {
        println!("RESULT {}", serde_json::json!({ "rows": rows }));
        return Ok(());
    }
    // Failover: kill the leader, time the first allocation that succeeds.
    if let Some(stop) = nodes[leader].stop.take() {
        let _ = stop.send(());
    }
    nodes[leader].store.shutdown().await;
    let survivor = nodes[(leader + 1) % 3].store.clone();
    let killed = Instant::now();
    let watcher = survivor.clone();
    let old_leader = nodes[leader].store.id();
    let elected = tokio::spawn(async move {
        loop {
            let view = watcher.cluster_view();
            if view.leader.is_some_and(|l| l != old_leader) {
                return killed.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let mut i = 0;
    while allocate(&survivor, format!("failover-{i}")).await.is_err() {
        i += 1;
    }
    let allocated = killed.elapsed();
    let elected = elected.await?;
    println!(
        "  failover: leader killed -> new leader known in {elected:.2?}, first successful allocation in {allocated:.2?}"
    );
    let result = serde_json::json!({
        "rows": rows,
        "failover_ms": allocated.as_secs_f64() * 1e3,
        "elected_ms": elected.as_secs_f64() * 1e3,
    });
    println!("RESULT {result}");
    Ok(())
}
