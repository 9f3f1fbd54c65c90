//! A cluster at size: a few simulated Docker hosts (real dockerd) and many
//! bare members, filled with endpoints through the plugin sockets as
//! dockerd would make them (RequestPool, the gateway, CreateNetwork, then
//! RequestAddress and CreateEndpoint per endpoint); then a follower that
//! was down while the cluster moved on comes back, and a new member with
//! an empty state dir joins and allocates. What it measures is a
//! [`Report`]; the scale benchmark prints it, the test suite runs it small
//! and checks it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bare::{BareHost, rss_kib};
use crate::host::SimHost;
use crate::run::plugin_call;

/// The size of a run.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Simulated hosts with their own dockerd (at least 1; the first
    /// bootstraps the cluster).
    pub docker_hosts: usize,
    /// Bare members (a daemon in a namespace, no dockerd).
    pub bare_hosts: usize,
    /// Endpoints made across the bare members.
    pub endpoints: usize,
    /// Endpoints made while one follower is down.
    pub while_down: usize,
}

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    pub members: usize,
    /// Endpoints made: the fill, those while a follower was down, and the
    /// new member's.
    pub endpoints: usize,
    /// From the first daemon's start to every member answering.
    pub form: Duration,
    /// Making the endpoints (every member making its own at once).
    pub fill: Duration,
    /// Endpoint creations acknowledged per second during the fill.
    pub fill_rate: f64,
    /// Each daemon's resident set once the endpoints are made, KiB.
    pub rss_kib: Vec<(String, u64)>,
    /// The first member's state file (state.redb), bytes.
    pub state_bytes: u64,
    /// A follower killed, `while_down` endpoints made, started again:
    /// from its start to its first answer (linearizable: caught up).
    pub restarted_ready: Duration,
    /// A new member, empty state dir: from its start to its first answer.
    pub newcomer_ready: Duration,
    /// ... and to its first acknowledged allocation.
    pub newcomer_allocates: Duration,
    /// The snapshot the new member installed, bytes (from its log).
    pub snapshot_bytes: Option<u64>,
    /// The new member's resident set after catching up, KiB.
    pub newcomer_rss_kib: u64,
    /// Addresses each member's status counts once settled (all equal).
    pub allocations_seen: Vec<u64>,
    /// What they should count: an address per endpoint made and per
    /// member's gateway.
    pub allocations_expected: u64,
    /// Why members did not answer the last status asked for the count.
    pub status_errors: Vec<String>,
    /// Endpoint requests refused, with Docker's error.
    pub failed: Vec<String>,
}

fn post(socket: &std::path::Path, path: &str, body: &Value) -> Result<Value, String> {
    let reply = plugin_call(socket, path, &body.to_string())?;
    serde_json::from_str(&reply).map_err(|e| format!("{path}: not JSON ({e}): {reply}"))
}

/// A 64-hex-digit id, as Docker's, unique for `(a, b)` and differing in
/// its first digits (rustnet names an endpoint's veths after them, as
/// Docker's random ids allow).
fn docker_id(a: usize, b: usize) -> String {
    let unique = (a as u64) << 32 | b as u64;
    // Multiplying by an odd constant is a bijection on u64.
    let spread = unique.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("{spread:016x}{unique:016x}{:032x}", 0)
}

/// What one member's filler did.
#[derive(Debug, Default)]
struct Filled {
    made: usize,
    /// The requests refused (each endpoint is tried once, as dockerd would).
    failed: Vec<String>,
}

/// The bridge network of bare member `k` (subnet 10.(128+k).0.0/20, clear
/// of the underlay 10.99.0.0/24) and
/// `count` endpoints on it, as dockerd makes them; an endpoint whose
/// request fails is counted and the next one tried.
fn fill_one(
    socket: &std::path::Path,
    k: usize,
    count: usize,
    first: usize,
) -> Result<Filled, String> {
    let subnet = format!("10.{}.0.0/20", 128 + k);
    let network = docker_id(k, 0);
    let pool_id = if first == 0 {
        let pool = post(
            socket,
            "/IpamDriver.RequestPool",
            &json!({"AddressSpace": "rustnet-local", "Pool": subnet, "SubPool": "", "Options": {}, "V6": false}),
        )?;
        let pool_id = pool["PoolID"].as_str().unwrap_or_default().to_owned();
        let gateway = post(
            socket,
            "/IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}}),
        )?;
        post(
            socket,
            "/NetworkDriver.CreateNetwork",
            &json!({
                "NetworkID": network,
                "Options": {"com.docker.network.enable_ipv6": false, "com.docker.network.generic": {}},
                "IPv4Data": [{"AddressSpace": "rustnet-local", "Pool": subnet, "Gateway": gateway["Address"], "AuxAddresses": null}],
                "IPv6Data": []
            }),
        )?;
        pool_id
    } else {
        subnet.clone()
    };
    let mut filled = Filled::default();
    for j in first..first + count {
        let made = post(
            socket,
            "/IpamDriver.RequestAddress",
            &json!({"PoolID": pool_id, "Address": "", "Options": {}}),
        )
        .and_then(|address| {
            post(
                socket,
                "/NetworkDriver.CreateEndpoint",
                &json!({
                    "NetworkID": network,
                    "EndpointID": docker_id(k, j + 1),
                    "Interface": {"Address": address["Address"], "AddressIPv6": "", "MacAddress": ""},
                    "Options": {}
                }),
            )
        });
        match made {
            Ok(_) => filled.made += 1,
            Err(e) => filled.failed.push(e),
        }
    }
    Ok(filled)
}

/// The addresses `status` counts across every host.
fn allocations(status: &Value) -> u64 {
    status["allocations"]
        .as_array()
        .map(|a| a.iter().filter_map(|h| h["addresses"].as_u64()).sum())
        .unwrap_or(0)
}

fn status(socket: &std::path::Path) -> Result<Value, String> {
    post(socket, "/Rustnet.Status", &json!({}))
}

/// Runs a cluster of `scale` and measures it. Panics, with the logs of
/// what failed, when something does not work.
#[allow(clippy::too_many_lines)] // one run, start to finish
pub fn run(scale: Scale) -> Report {
    assert!(
        scale.docker_hosts >= 1 && scale.bare_hosts >= 2,
        "{scale:?}"
    );
    let started = Instant::now();
    let docker: Vec<SimHost> = (0..scale.docker_hosts).map(|_| SimHost::start()).collect();
    docker[0].start_rustnet(&[]);
    let join = format!("{}:7950", docker[0].addr);
    let token = docker[0].join_token();
    let env = [
        ("RUSTNET_JOIN", join.as_str()),
        ("RUSTNET_JOIN_TOKEN", token.as_str()),
        ("RUSTNET_JOIN_TIMEOUT", "120"),
    ];
    for host in &docker[1..] {
        host.start_rustnet(&env);
    }
    let mut bare: Vec<BareHost> = (0..scale.bare_hosts).map(|_| BareHost::add()).collect();
    // A few joins at a time: each is a membership change on the leader.
    for batch in bare.chunks_mut(5) {
        for host in batch.iter_mut() {
            host.spawn(&env);
        }
        for host in batch.iter() {
            host.wait_ready(180);
        }
    }
    let form = started.elapsed();
    let members = scale.docker_hosts + scale.bare_hosts;

    // Every bare member makes its share at once.
    let share = scale.endpoints.div_ceil(scale.bare_hosts);
    let fill_started = Instant::now();
    let made: Vec<Result<Filled, String>> = std::thread::scope(|s| {
        let tasks: Vec<_> = bare
            .iter()
            .enumerate()
            .map(|(k, host)| {
                let count = share.min(scale.endpoints.saturating_sub(k * share));
                let socket = host.socket();
                s.spawn(move || fill_one(&socket, k, count, 0))
            })
            .collect();
        tasks
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| Err("a filler panicked".into())))
            .collect()
    });
    let fill = fill_started.elapsed();
    let mut endpoints = 0;
    let mut failed = Vec::new();
    for filled in made {
        let filled = filled.unwrap_or_else(|e| panic!("creating a member's network: {e}"));
        endpoints += filled.made;
        failed.extend(filled.failed);
    }
    let rss_of = |name: String, pid: Option<u32>| (name, pid.and_then(rss_kib).unwrap_or(0));
    let mut rss: Vec<(String, u64)> = docker
        .iter()
        .map(|h| rss_of(h.addr.clone(), h.rustnet_pid()))
        .collect();
    rss.extend(bare.iter().map(|h| rss_of(h.addr.clone(), h.pid())));
    let state_bytes =
        std::fs::metadata(docker[0].dir().join("state/state.redb")).map_or(0, |m| m.len());

    // A follower down while the cluster moves on, then back.
    bare[1].kill();
    let down = fill_one(&bare[0].socket(), 0, scale.while_down, share)
        .unwrap_or_else(|e| panic!("endpoints while a follower is down: {e}"));
    endpoints += down.made;
    failed.extend(down.failed);
    bare[1].spawn(&env);
    let restarted_ready = bare[1].wait_ready(120);

    // A new member with an empty state dir.
    let mut newcomer = BareHost::add();
    let joined = Instant::now();
    newcomer.spawn(&env);
    let newcomer_ready = newcomer.wait_ready(120);
    let k = scale.bare_hosts; // its own subnet, after the others'
    let first = fill_one(&newcomer.socket(), k, 1, 0)
        .unwrap_or_else(|e| panic!("the new member's network: {e}"));
    assert_eq!(
        first.made, 1,
        "the new member's first allocation: {:?}",
        first.failed
    );
    endpoints += 1;
    let newcomer_allocates = joined.elapsed();
    let snapshot_bytes = newcomer
        .log()
        .lines()
        .filter(|l| l.contains("snapshot installed"))
        .filter_map(|l| l.split("bytes=").nth(1))
        .filter_map(|b| b.split_whitespace().next()?.parse().ok())
        .next_back();
    let newcomer_rss_kib = newcomer.pid().and_then(rss_kib).unwrap_or(0);

    // Every member agrees on what is held, once settled.
    let sockets: Vec<std::path::PathBuf> = bare
        .iter()
        .map(BareHost::socket)
        .chain(std::iter::once(newcomer.socket()))
        .collect();
    // Each endpoint made holds an address, and each member's gateway one.
    let want = (endpoints + scale.bare_hosts + 1) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (allocations_seen, status_errors) = loop {
        let answers: Vec<Result<u64, String>> = sockets
            .iter()
            .map(|s| status(s).map(|v| allocations(&v)))
            .collect();
        let agreed = answers.iter().all(|a| a.as_ref().is_ok_and(|n| *n == want));
        if agreed || Instant::now() > deadline {
            let seen = answers.iter().map(|a| *a.as_ref().unwrap_or(&0)).collect();
            let errors = answers.into_iter().filter_map(Result::err).collect();
            break (seen, errors);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    #[allow(clippy::cast_precision_loss)] // a rate for a report
    let fill_rate = (endpoints - scale.while_down - 1) as f64 / fill.as_secs_f64().max(1e-9);
    Report {
        members,
        endpoints,
        form,
        fill,
        fill_rate,
        rss_kib: rss,
        state_bytes,
        restarted_ready,
        newcomer_ready,
        newcomer_allocates,
        snapshot_bytes,
        newcomer_rss_kib,
        allocations_seen,
        allocations_expected: want,
        status_errors,
        failed,
    }
}
