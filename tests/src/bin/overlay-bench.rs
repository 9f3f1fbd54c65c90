//! Overlay benchmark on two simulated Docker hosts, rustnet's overlay
//! beside Docker's swarm overlay, in one run:
//!
//! - reachability: from `docker run -d` returning on host A until a
//!   container on host B gets a ping reply from the new container (p50,
//!   p99), through a prober started before (an address on its stdin);
//! - `docker run -d` latency on a rustnet overlay vs Docker's bridge;
//! - name lookup: a container resolving a container on the other host
//!   (rustnet's resolver) vs one on its own host (Docker's embedded DNS);
//! - network propagation: from `docker network create` returning on host A
//!   until host B's Docker has the network;
//! - iperf3 TCP throughput between containers on the two hosts, rustnet vs
//!   swarm overlay vs the underlay itself, at underlay MTU 1500 and 9000;
//! - routed containers, the overlay's own ceiling: a namespace on a bridge
//!   in each host, routed between the hosts over the underlay (no VXLAN,
//!   no Docker), iperf3 between them beside the overlay's;
//! - an encrypted rustnet overlay (`-o encrypted`: VXLAN inside userspace
//!   WireGuard) beside the same overlay unencrypted: reachability and
//!   iperf3, alternated with the others.
//!
//! Every measure is repeated and alternated with the one it is compared
//! with; the last line, `RESULT {...}`, holds every sample as JSON (for
//! `bench-report`).
//!
//! ```text
//! cargo build --release -p rustnet -p rustnet-tests --bins
//! RUSTNET_BIN=$PWD/target/release/rustnet target/release/overlay-bench [RUNS]
//! ```

// The benchmark reads as one story, start to finish.
#![allow(clippy::too_many_lines)]

use std::time::{Duration, Instant};

use rustnet_tests::report::iperf_gbits;
use rustnet_tests::{IMAGE, SimHost, UNDERLAY_GATEWAY, iperf3_installed, run};

fn docker(host: &SimHost, args: &[&str]) -> String {
    host.docker(args)
        .unwrap_or_else(|e| panic!("docker {args:?} on {}: {e}", host.netns))
}

fn percentile(samples: &mut [Duration], per_mille: usize) -> Duration {
    samples.sort();
    samples[(samples.len() - 1) * per_mille / 1000]
}

/// A shell in a prober container on host B, started once: given an
/// address on its stdin, it pings it until a reply comes and says `ok`.
/// Measuring through it leaves out what starting a probe costs (`docker
/// inspect` for the address, `docker exec`: about 60 ms of the old figure).
struct Prober {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Prober {
    fn start(host: &SimHost, container: &str) -> Self {
        let script = "while read ip; do \
                      until ping -c 1 -W 1 \"$ip\" >/dev/null 2>&1; do :; done; echo ok; done";
        let mut child = std::process::Command::new("docker")
            .env("DOCKER_HOST", host.docker_host())
            .args(["exec", "-i", container, "sh", "-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("prober in {container}: {e}"));
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            panic!("prober in {container}: no pipes");
        };
        let stdout = std::io::BufReader::new(stdout);
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// Pings `ip` until it answers.
    fn reach(&mut self, ip: &str) {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{ip}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("prober stdin: {e}"));
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("prober stdout: {e}"));
        assert_eq!(line.trim(), "ok", "the prober ended: {line:?}");
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// From `docker run -d --ip IP` returning on `a` until `prober` on host B
/// gets a ping reply from the new container.
fn reachability(a: &SimHost, net: &str, ip: &str, prober: &mut Prober, i: usize) -> Duration {
    let name = format!("reach-{net}-{i}");
    docker(
        a,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            net,
            "--ip",
            ip,
            IMAGE,
            "sleep",
            "600",
        ],
    );
    let started = Instant::now();
    prober.reach(ip);
    let elapsed = started.elapsed();
    docker(a, &["rm", "-f", &name]);
    elapsed
}

/// `runs` lookups of `name` from inside `container`, each timed there
/// (dns-probe: one A query at a time to Docker's embedded DNS, or to
/// `server`).
fn lookups(
    host: &SimHost,
    container: &str,
    name: &str,
    runs: usize,
    server: Option<&str>,
) -> Vec<Duration> {
    let runs = runs.to_string();
    let mut args = vec!["exec", container, "dns-probe", name, &runs];
    args.extend(server);
    docker(host, &args)
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .map(Duration::from_micros)
        .collect()
}

/// From `docker network create` returning on `a` until `b`'s Docker has it.
fn propagation(a: &SimHost, b: &SimHost, i: usize) -> Duration {
    let name = format!("prop{i}");
    let subnet = format!("10.3.{i}.0/24");
    a.create_overlay(&name, &subnet, &[]);
    let started = Instant::now();
    while b.docker(&["network", "inspect", &name]).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name} did not reach host B"
        );
    }
    let elapsed = started.elapsed();
    docker(a, &["network", "rm", &name]);
    elapsed
}

fn run_latency(host: &SimHost, net: &str, i: usize) -> Duration {
    host.time_run(net, &format!("lat-{net}-{i}"))
}

/// iperf3 from a container on `b` to a server container on `a`, in Gbit/s.
fn throughput(a: &SimHost, b: &SimHost, net: &str) -> f64 {
    let server = format!("iperf-s-{net}");
    docker(
        a,
        &[
            "run",
            "-d",
            "--name",
            &server,
            "--network",
            net,
            IMAGE,
            "iperf3",
            "-s",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let ip = a.ip_of(&server, net);
    let out = docker(
        b,
        &[
            "run",
            "--rm",
            "--network",
            net,
            IMAGE,
            "iperf3",
            "-c",
            &ip,
            "-t",
            "5",
            "-f",
            "g",
        ],
    );
    docker(a, &["rm", "-f", &server]);
    iperf_gbits(&out)
}

/// A container's data path without an overlay: a network namespace on a
/// bridge of its host (veth, as Docker's containers), routed to the other
/// host's over the underlay, no encapsulation. What the kernel gives a
/// container at all between the hosts: the overlay's own ceiling.
struct RoutedContainer<'h> {
    host: &'h SimHost,
    netns: String,
    address: String,
}

impl<'h> RoutedContainer<'h> {
    /// On `host` (the `k`th, 1 or 2), subnet 10.250.k.0/24, routed to the
    /// other one's through `peer`'s underlay address, at `mtu`. Dropped, it
    /// takes what it added to the host with it.
    fn add(host: &'h SimHost, k: u8, peer: &SimHost, mtu: u32) -> Self {
        let netns = format!("{}-rc", host.netns);
        let address = format!("10.250.{k}.1");
        let other = 3 - k;
        let plain = |args: &[&str]| {
            run(std::process::Command::new(args[0]).args(&args[1..]))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        };
        // From this mount namespace, where the container's namespace is
        // named (the host's own mount namespace does not see its name).
        let on_host = |args: &[&str]| {
            let mut full = vec!["ip", "netns", "exec", &host.netns];
            full.extend(args);
            plain(&full);
        };
        let mtu = mtu.to_string();
        plain(&["ip", "netns", "add", &netns]);
        // Taken at once: its namespace goes with it, whatever fails next.
        let container = Self {
            host,
            netns,
            address,
        };
        on_host(&["ip", "link", "add", "rcbr0", "mtu", &mtu, "type", "bridge"]);
        on_host(&[
            "ip",
            "addr",
            "add",
            &format!("10.250.{k}.254/24"),
            "dev",
            "rcbr0",
        ]);
        on_host(&["ip", "link", "set", "rcbr0", "up"]);
        on_host(&[
            "ip",
            "link",
            "add",
            "rch0",
            "mtu",
            &mtu,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "mtu",
            &mtu,
            "netns",
            &container.netns,
        ]);
        on_host(&["ip", "link", "set", "rch0", "master", "rcbr0", "up"]);
        on_host(&[
            "ip",
            "route",
            "add",
            &format!("10.250.{other}.0/24"),
            "via",
            &peer.addr,
        ]);
        // Docker's FORWARD policy is DROP: its users' chain lets these by.
        for direction in ["-s", "-d"] {
            // In the host's mount namespace: dockerd's xtables lock.
            run(host.cmd("iptables").args([
                "-I",
                "DOCKER-USER",
                direction,
                "10.250.0.0/16",
                "-j",
                "ACCEPT",
            ]))
            .unwrap_or_else(|e| panic!("iptables on {}: {e}", host.netns));
        }
        for args in [
            vec!["ip", "link", "set", "lo", "up"],
            vec![
                "ip",
                "addr",
                "add",
                &format!("{}/24", container.address),
                "dev",
                "eth0",
            ],
            vec!["ip", "link", "set", "eth0", "up"],
            vec![
                "ip",
                "route",
                "add",
                "default",
                "via",
                &format!("10.250.{k}.254"),
            ],
        ] {
            let mut full = vec!["ip", "netns", "exec", &container.netns];
            full.extend(args);
            plain(&full);
        }
        container
    }

    fn cmd(&self, program: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.netns, program]);
        cmd
    }
}

impl Drop for RoutedContainer<'_> {
    fn drop(&mut self) {
        let _ = run(std::process::Command::new("ip").args(["netns", "del", &self.netns]));
        for args in [
            &["ip", "link", "del", "rcbr0"][..],
            &["ip", "route", "flush", "root", "10.250.0.0/16"][..],
            &[
                "iptables",
                "-D",
                "DOCKER-USER",
                "-s",
                "10.250.0.0/16",
                "-j",
                "ACCEPT",
            ][..],
            &[
                "iptables",
                "-D",
                "DOCKER-USER",
                "-d",
                "10.250.0.0/16",
                "-j",
                "ACCEPT",
            ][..],
        ] {
            let _ = run(self.host.cmd(args[0]).args(&args[1..]));
        }
    }
}

/// iperf3 (5 s) from `client` to a server started by `server` at
/// `address`, in Gbit/s.
fn iperf(
    server: &mut std::process::Command,
    client: &mut std::process::Command,
    address: &str,
) -> f64 {
    let mut listening = server
        .args(["-s", "-1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{server:?}: {e}"));
    std::thread::sleep(Duration::from_millis(500));
    let out = run(client.args(["-c", address, "-t", "5", "-f", "g"])).unwrap_or_default();
    let _ = listening.wait();
    iperf_gbits(&out)
}

/// iperf3 between the hosts themselves: the ceiling.
fn underlay_throughput(a: &SimHost, b: &SimHost) -> f64 {
    iperf(&mut a.cmd("iperf3"), &mut b.cmd("iperf3"), &a.addr)
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let iperf3 = iperf3_installed();
    // Built beside this benchmark (`cargo build -p rustnet-tests --bins`).
    let probe = std::env::current_exe()
        .map(|exe| exe.with_file_name("dns-probe"))
        .unwrap_or_default();
    assert!(
        probe.is_file(),
        "{} not found: build it with `cargo build --release -p rustnet-tests --bins`",
        probe.display()
    );
    let probe = probe.display().to_string();
    let a = SimHost::spec().tools(&[&iperf3, &probe]).start();
    let b = SimHost::spec().tools(&[&iperf3, &probe]).start();
    // Swarm's overlay takes UDP 4789; rustnet's moves aside.
    a.start_rustnet(&[("RUSTNET_VXLAN_PORT", "4790")]);
    let join = format!("{}:7950", a.addr);
    let token = a.join_token();
    b.start_rustnet(&[
        ("RUSTNET_VXLAN_PORT", "4790"),
        ("RUSTNET_JOIN", &join),
        ("RUSTNET_JOIN_TOKEN", &token),
    ]);
    docker(
        &a,
        &[
            "swarm",
            "init",
            "--advertise-addr",
            &a.addr,
            "--listen-addr",
            &format!("{}:2377", a.addr),
        ],
    );
    let token = docker(&a, &["swarm", "join-token", "-q", "worker"]);
    docker(
        &b,
        &[
            "swarm",
            "join",
            "--token",
            &token,
            "--advertise-addr",
            &b.addr,
            &format!("{}:2377", a.addr),
        ],
    );

    println!("two simulated hosts, {runs} runs per measurement, alternated");
    let mut result = serde_json::Map::new();
    let ms = |samples: &[Duration]| -> Vec<f64> {
        samples.iter().map(|d| d.as_secs_f64() * 1e3).collect()
    };
    // iperf3 runs take seconds each: fewer of them, still several.
    let iperf_runs = runs.clamp(3, 5);
    for mtu in [1500u32, 9000] {
        a.set_underlay_mtu(mtu);
        b.set_underlay_mtu(mtu);
        let overlay_mtu = (mtu - 50).to_string();
        let mtu_opt = format!("com.docker.network.driver.mtu={overlay_mtu}");
        let (rn, sw, enc) = (
            format!("rnov{mtu}"),
            format!("swov{mtu}"),
            format!("rnenc{mtu}"),
        );
        let third = if mtu == 1500 { 97 } else { 98 };
        a.create_overlay(&rn, &format!("10.0.{third}.0/24"), &["-o", &mtu_opt]);
        // The encrypted overlay's own MTU: WireGuard's 60 bytes more.
        a.create_overlay(&enc, &format!("10.3.{third}.0/24"), &["-o", "encrypted"]);
        docker(
            &a,
            &[
                "network",
                "create",
                "-d",
                "overlay",
                "--attachable",
                "-o",
                &mtu_opt,
                "--subnet",
                &format!("10.1.{third}.0/24"),
                &sw,
            ],
        );
        let start = Instant::now();
        while b.docker(&["network", "inspect", &rn]).is_err()
            || b.docker(&["network", "inspect", &enc]).is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{rn} did not reach host B"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        println!("underlay MTU {mtu} (overlay MTU {overlay_mtu}):");
        if mtu == 1500 {
            docker(
                &b,
                &[
                    "run",
                    "-d",
                    "--name",
                    "probe-rn",
                    "--network",
                    &rn,
                    IMAGE,
                    "sleep",
                    "3600",
                ],
            );
            docker(
                &b,
                &[
                    "run",
                    "-d",
                    "--name",
                    "probe-sw",
                    "--network",
                    &sw,
                    IMAGE,
                    "sleep",
                    "3600",
                ],
            );
            docker(
                &b,
                &[
                    "run",
                    "-d",
                    "--name",
                    "probe-enc",
                    "--network",
                    &enc,
                    IMAGE,
                    "sleep",
                    "3600",
                ],
            );
            let (mut r, mut s, mut e) = (Vec::new(), Vec::new(), Vec::new());
            let mut probe_rn = Prober::start(&b, "probe-rn");
            let mut probe_sw = Prober::start(&b, "probe-sw");
            let mut probe_enc = Prober::start(&b, "probe-enc");
            for i in 0..runs {
                // A new address each time: nothing cached from the last run.
                let last = 100 + i % 150;
                let ip = |net: u8| format!("10.{net}.{third}.{last}");
                r.push(reachability(&a, &rn, &ip(0), &mut probe_rn, i));
                s.push(reachability(&a, &sw, &ip(1), &mut probe_sw, i));
                e.push(reachability(&a, &enc, &ip(3), &mut probe_enc, i));
            }
            drop((probe_rn, probe_sw, probe_enc));
            result.insert("reach_rustnet_ms".into(), ms(&r).into());
            result.insert("reach_swarm_ms".into(), ms(&s).into());
            result.insert("reach_encrypted_ms".into(), ms(&e).into());
            println!(
                "  reachability after docker run -d: rustnet p50 {:?} p99 {:?}; swarm p50 {:?} p99 {:?}; rustnet encrypted p50 {:?} p99 {:?}",
                percentile(&mut r, 500),
                percentile(&mut r, 990),
                percentile(&mut s, 500),
                percentile(&mut s, 990),
                percentile(&mut e, 500),
                percentile(&mut e, 990)
            );
            docker(
                &a,
                &[
                    "network",
                    "create",
                    "--subnet",
                    "10.2.0.0/24",
                    "localbridge",
                ],
            );
            a.create_network("rustnet", "rnbridge", &["--subnet", "10.2.1.0/24"]);
            let (mut o, mut rb, mut l) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..runs {
                o.push(run_latency(&a, &rn, i));
                rb.push(run_latency(&a, "rnbridge", i));
                l.push(run_latency(&a, "localbridge", i));
            }
            result.insert("run_overlay_ms".into(), ms(&o).into());
            result.insert("run_rustnet_bridge_ms".into(), ms(&rb).into());
            result.insert("run_docker_bridge_ms".into(), ms(&l).into());
            let (o50, b50, l50) = (
                percentile(&mut o, 500),
                percentile(&mut rb, 500),
                percentile(&mut l, 500),
            );
            println!(
                "  docker run -d: rustnet overlay p50 {o50:?}, rustnet bridge p50 {b50:?}, Docker bridge p50 {l50:?}, ratios {:.2} / {:.2}",
                o50.as_secs_f64() / l50.as_secs_f64(),
                b50.as_secs_f64() / l50.as_secs_f64()
            );
            // probe-rn (on B) looks up a container on A and one beside it.
            for (host, name) in [(&a, "far"), (&b, "near")] {
                docker(
                    host,
                    &[
                        "run",
                        "-d",
                        "--name",
                        name,
                        "--network",
                        &rn,
                        IMAGE,
                        "sleep",
                        "3600",
                    ],
                );
            }
            let far_ip = a.ip_of("far", &rn);
            let start = Instant::now();
            while !b
                .docker(&["exec", "probe-rn", "nslookup", "far"])
                .is_ok_and(|out| out.contains(&far_ip))
            {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "far never resolved on B"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let (mut far, mut near, mut direct) = (Vec::new(), Vec::new(), Vec::new());
            // The host's resolver, which rustnet's rules send to rustnet's
            // resolver when asked from an overlay: rustnet's own share of
            // a lookup, without Docker's forwarding.
            let upstream = UNDERLAY_GATEWAY.to_string();
            for _ in 0..runs {
                far.extend(lookups(&b, "probe-rn", "far", 5, None));
                near.extend(lookups(&b, "probe-rn", "near", 5, None));
                direct.extend(lookups(&b, "probe-rn", "far", 5, Some(&upstream)));
            }
            result.insert("lookup_far_ms".into(), ms(&far).into());
            result.insert("lookup_near_ms".into(), ms(&near).into());
            result.insert("lookup_direct_ms".into(), ms(&direct).into());
            println!(
                "  name lookup straight to rustnet's resolver (no Docker forwarding): p50 {:?} p99 {:?}",
                percentile(&mut direct, 500),
                percentile(&mut direct, 990)
            );
            println!(
                "  name lookup: other host (rustnet) p50 {:?} p99 {:?}; same host (Docker) p50 {:?} p99 {:?}; ratio p50 {:.2}",
                percentile(&mut far, 500),
                percentile(&mut far, 990),
                percentile(&mut near, 500),
                percentile(&mut near, 990),
                percentile(&mut far, 500).as_secs_f64() / percentile(&mut near, 500).as_secs_f64()
            );
            for (host, name) in [(&a, "far"), (&b, "near")] {
                let _ = host.docker(&["rm", "-f", name]);
            }
            let mut p: Vec<Duration> = (0..runs).map(|i| propagation(&a, &b, i)).collect();
            result.insert("propagation_ms".into(), ms(&p).into());
            println!(
                "  network propagation (create on A until B's Docker has it): p50 {:?} p99 {:?}",
                percentile(&mut p, 500),
                percentile(&mut p, 990)
            );
        }
        let (mut t_rn, mut t_sw, mut t_ul) = (Vec::new(), Vec::new(), Vec::new());
        let (mut t_enc, mut t_rc) = (Vec::new(), Vec::new());
        {
            let (rc_a, rc_b) = (
                RoutedContainer::add(&a, 1, &b, mtu),
                RoutedContainer::add(&b, 2, &a, mtu),
            );
            for _ in 0..iperf_runs {
                t_rn.push(throughput(&a, &b, &rn));
                t_sw.push(throughput(&a, &b, &sw));
                t_ul.push(underlay_throughput(&a, &b));
                t_enc.push(throughput(&a, &b, &enc));
                t_rc.push(iperf(
                    &mut rc_a.cmd("iperf3"),
                    &mut rc_b.cmd("iperf3"),
                    &rc_a.address,
                ));
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        result.insert(format!("iperf_rustnet_gbits_{mtu}"), t_rn.clone().into());
        result.insert(format!("iperf_swarm_gbits_{mtu}"), t_sw.clone().into());
        result.insert(format!("iperf_underlay_gbits_{mtu}"), t_ul.clone().into());
        result.insert(format!("iperf_encrypted_gbits_{mtu}"), t_enc.clone().into());
        result.insert(format!("iperf_routed_gbits_{mtu}"), t_rc.clone().into());
        let (m_rn, m_sw, m_ul) = (median(&mut t_rn), median(&mut t_sw), median(&mut t_ul));
        let (m_enc, m_rc) = (median(&mut t_enc), median(&mut t_rc));
        println!(
            "  iperf3 TCP, median of {iperf_runs}: rustnet {m_rn:.2} Gbit/s, swarm {m_sw:.2} Gbit/s, underlay {m_ul:.2} Gbit/s (rustnet/swarm {:.2}, rustnet/underlay {:.2})",
            m_rn / m_sw,
            m_rn / m_ul
        );
        println!(
            "  iperf3 TCP, routed containers (no overlay): {m_rc:.2} Gbit/s ({:.2} of the underlay; rustnet overlay/routed {:.2})",
            m_rc / m_ul,
            m_rn / m_rc
        );
        println!(
            "  iperf3 TCP, encrypted rustnet overlay: {m_enc:.2} Gbit/s ({:.2} of the unencrypted overlay, {:.2} of the underlay)",
            m_enc / m_rn,
            m_enc / m_ul
        );
        for c in ["probe-rn", "probe-sw", "probe-enc"] {
            let _ = a.docker(&["rm", "-f", c]);
            let _ = b.docker(&["rm", "-f", c]);
        }
    }
    let _ = b.docker(&["swarm", "leave", "--force"]);
    let _ = a.docker(&["swarm", "leave", "--force"]);
    println!("RESULT {}", serde_json::Value::Object(result));
}
