//! Macvlan benchmark on three simulated Docker hosts in one rustnet
//! cluster: `docker run -d` on a follower, alternated, on
//!
//! - Docker's own macvlan with Docker's own IPAM (the baseline);
//! - Docker's own macvlan with `--ipam-driver rustnet`: the same driver,
//!   each address from the cluster's shared pool (through the leader);
//! - rustnet's own macvlan network (`-o mode=macvlan`): shared pool, MAC
//!   check, shim route.
//!
//! Docker's macvlan takes a parent once, so each network has a parent of
//! its own: veth pairs inside each host. The last line, `RESULT {...}`,
//! holds every sample as JSON (for `bench-report`).
//!
//! ```text
//! cargo build --release -p rustnet -p rustnet-tests --bins
//! RUSTNET_BIN=$PWD/target/release/rustnet target/release/lan-bench [RUNS]
//! ```

use std::time::{Duration, Instant};

use rustnet_tests::{SimHost, run};

fn docker(host: &SimHost, args: &[&str]) -> String {
    host.docker(args)
        .unwrap_or_else(|e| panic!("docker {args:?} on {}: {e}", host.netns))
}

/// `docker run -d` on `net`, timed, then removed.
fn run_latency(host: &SimHost, net: &str, i: usize) -> Duration {
    host.time_run(net, &format!("lat-{net}-{i}"))
}

fn median(samples: &[Duration]) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let hosts: Vec<SimHost> = (0..3).map(|_| SimHost::start()).collect();
    let others: Vec<&SimHost> = hosts[1..].iter().collect();
    let _joining = hosts[0].start_cluster(&others);
    for host in &hosts {
        for parent in ["mv1", "mv2", "mv3"] {
            run(host.cmd("ip").args([
                "link",
                "add",
                parent,
                "type",
                "veth",
                "peer",
                "name",
                &format!("{parent}p"),
            ]))
            .and_then(|_| run(host.cmd("ip").args(["link", "set", parent, "up"])))
            .unwrap_or_else(|e| panic!("parent {parent} on {}: {e}", host.netns));
        }
    }
    // The first host bootstrapped the cluster and leads; measure on another.
    let (leader, host) = (&hosts[0], &hosts[1]);
    let macvlan = |parent: &str, subnet: &str, name: &str, ipam: &[&str]| {
        let parent = format!("parent={parent}");
        let args = [
            &["network", "create", "-d", "macvlan", "-o", &parent][..],
            ipam,
            &["--subnet", subnet, name],
        ]
        .concat();
        docker(host, &args);
    };
    macvlan("mv1", "10.61.0.0/24", "docker-ipam", &[]);
    macvlan(
        "mv2",
        "10.62.0.0/24",
        "rustnet-ipam",
        &["--ipam-driver", "rustnet"],
    );
    docker(
        leader,
        &[
            "network",
            "create",
            "-d",
            "rustnet",
            "--ipam-driver",
            "rustnet",
            "-o",
            "mode=macvlan",
            "-o",
            "parent=mv3",
            "--subnet",
            "10.63.0.0/24",
            "rustnet-mode",
        ],
    );
    let start = Instant::now();
    while host
        .docker(&["network", "inspect", "rustnet-mode"])
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "rustnet-mode did not propagate"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // One untimed container on each first: images and caches warm.
    for net in ["docker-ipam", "rustnet-ipam", "rustnet-mode"] {
        run_latency(host, net, usize::MAX);
    }
    println!("three simulated hosts, docker run -d on a follower, {runs} runs each, alternated");
    let (mut docker_ipam, mut rustnet_ipam, mut rustnet_mode) =
        (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        docker_ipam.push(run_latency(host, "docker-ipam", i));
        rustnet_ipam.push(run_latency(host, "rustnet-ipam", i));
        rustnet_mode.push(run_latency(host, "rustnet-mode", i));
    }
    let (d, r, m) = (
        median(&docker_ipam),
        median(&rustnet_ipam),
        median(&rustnet_mode),
    );
    println!("  Docker's macvlan, Docker's IPAM:       {d:.1} ms");
    println!(
        "  Docker's macvlan, rustnet's IPAM:      {r:.1} ms ({:.2}x)",
        r / d
    );
    println!(
        "  rustnet's macvlan (mode=macvlan):      {m:.1} ms ({:.2}x)",
        m / d
    );
    let ms = |samples: &[Duration]| -> Vec<f64> {
        samples.iter().map(|d| d.as_secs_f64() * 1e3).collect()
    };
    let result = serde_json::json!({
        "run_docker_macvlan_ms": ms(&docker_ipam),
        "run_docker_macvlan_rustnet_ipam_ms": ms(&rustnet_ipam),
        "run_rustnet_macvlan_ms": ms(&rustnet_mode),
    });
    println!("RESULT {result}");
}
