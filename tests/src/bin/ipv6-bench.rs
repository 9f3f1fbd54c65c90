//! IPv6 against IPv4 on one dual-stack rustnet overlay, on two simulated
//! Docker hosts, in one run: iperf3 TCP from a container on host B to a
//! server container on host A, to the server's IPv6 address and to its
//! IPv4 address, alternated, median of the runs.
//!
//! ```text
//! cargo build --release -p rustnet -p rustnet-tests --bins
//! RUSTNET_BIN=$PWD/target/release/rustnet target/release/ipv6-bench [RUNS]
//! ```
//!
//! The last line, `RESULT {...}`, holds every sample as JSON.

use std::time::Duration;

use rustnet_tests::report::iperf_gbits;
use rustnet_tests::{IMAGE, SimHost, docker_ok, iperf3_installed, wait_until};

/// iperf3 for 5 s from a new container on `b` to `server` at `ip`.
fn throughput(b: &SimHost, net: &str, ip: &str) -> f64 {
    let out = docker_ok(
        b.docker(&[
            "run",
            "--rm",
            "--network",
            net,
            IMAGE,
            "iperf3",
            "-c",
            ip,
            "-t",
            "5",
            "-f",
            "g",
        ]),
        "iperf3 client",
    );
    iperf_gbits(&out)
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let iperf3 = iperf3_installed();
    let a = SimHost::spec().tools(&[&iperf3]).start();
    let b = SimHost::spec().tools(&[&iperf3]).start();
    a.start_cluster(&[&b]);
    a.create_overlay("ov6", "10.0.96.0/24", &["--ipv6"]);
    wait_until("ov6 on host B", 30, || {
        b.docker(&["network", "inspect", "ov6"]).is_ok()
    });
    a.run_container("iperf-s", "ov6", &[], &["iperf3", "-s"]);
    std::thread::sleep(Duration::from_millis(500));
    let v4 = a.ip_of("iperf-s", "ov6");
    let format = "{{(index .NetworkSettings.Networks \"ov6\").GlobalIPv6Address}}";
    let v6 = docker_ok(a.docker(&["inspect", "-f", format, "iperf-s"]), "inspect");
    let v6 = v6.trim().to_owned();
    println!(
        "two simulated hosts, one dual-stack overlay, {runs} iperf3 runs per family, alternated"
    );
    let (mut t4, mut t6) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        t6.push(throughput(&b, "ov6", &v6));
        t4.push(throughput(&b, "ov6", &v4));
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (m6, m4) = (median(&t6), median(&t4));
    println!(
        "  iperf3 across hosts on the overlay: IPv6 {m6:.1} Gbit/s, IPv4 {m4:.1} Gbit/s, ratio {:.2}",
        m6 / m4
    );
    let result = serde_json::json!({ "iperf_ipv6_gbits": t6, "iperf_ipv4_gbits": t4 });
    println!("RESULT {result}");
}
