//! `-o multicast=flood` on an overlay, on four simulated hosts: a
//! multicast stream and a broadcast ping from a container on one host reach
//! the containers on the others, no copy goes to a host without containers
//! on the overlay, a host that starts one later gets the stream, and an
//! overlay without the option keeps its broadcast and multicast on its
//! host. On every engine of the matrix (20.10, 26, 28).

// Each end-to-end scenario reads as one story, start to finish; it runs as
// a test per engine (on_every_engine!), where a failed expect is a failure.
#![allow(clippy::too_many_lines, clippy::expect_used, clippy::unwrap_used)]

use rustnet_tests::{Cases, Engine, SimHost, docker_ok, on_every_engine, run, wait_until};

const UDP_ECHO: &str = env!("CARGO_BIN_EXE_udp-echo");
const GROUP: &str = "239.1.2.3";
const PORT: &str = "5000";

/// A container on `net` printing every datagram to the port (having joined
/// the group), and answering broadcast pings.
fn listen(host: &SimHost, name: &str, net: &str) {
    host.run_container(
        name,
        net,
        &["--sysctl", "net.ipv4.icmp_echo_ignore_broadcasts=0"],
        &["udp-echo", "listen", PORT, GROUP],
    );
}

fn heard(host: &SimHost, name: &str) -> String {
    docker_ok(host.docker(&["logs", name]), "logs")
}

fn send(host: &SimHost, from: &str, to: &str, message: &str, count: u32) {
    let target = format!("{to}:{PORT}");
    let count = count.to_string();
    docker_ok(
        host.exec(from, &["udp-echo", "send", &target, message, &count]),
        "send",
    );
}

/// Counts the VXLAN packets that reach `host` (ahead of every other rule).
fn count_vxlan(host: &SimHost) {
    let rule = [
        "-t",
        "raw",
        "-I",
        "PREROUTING",
        "1",
        "-p",
        "udp",
        "--dport",
        "4789",
    ];
    run(host.cmd("iptables").args(rule)).expect("counting rule");
}

fn vxlan_packets(host: &SimHost) -> u64 {
    let listing =
        run(host
            .cmd("iptables")
            .args(["-t", "raw", "-L", "PREROUTING", "1", "-v", "-n", "-x"]))
        .expect("counting rule listed");
    listing
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {listing:?}"))
}

on_every_engine!(an_overlay_floods_multicast_to_the_hosts_with_containers);

fn an_overlay_floods_multicast_to_the_hosts_with_containers(engine: Engine) {
    let start = || SimHost::spec().engine(engine).tools(&[UDP_ECHO]).start();
    let (h1, h2, h3, h4) = (start(), start(), start(), start());
    let joining = h1.start_cluster(&[&h2, &h3, &h4]);
    let mut cases = Cases::new(|| {});

    cases.run(
        "-o multicast=flood is the overlay's on every host; a bad value is refused",
        || {
            h1.create_overlay("mc", "10.0.90.0/24", &["-o", "multicast=flood"]);
            h1.create_overlay("quiet", "10.0.91.0/24", &[]);
            wait_until("both overlays on every host", 5, || {
                [&h2, &h3, &h4]
                    .iter()
                    .all(|h| h.has_network("mc") && h.has_network("quiet"))
            });
            let options = docker_ok(
                h4.docker(&["network", "inspect", "-f", "{{json .Options}}", "mc"]),
                "options",
            );
            assert!(options.contains("\"multicast\":\"flood\""), "{options}");
            let options = [
                "--subnet",
                "10.0.92.0/24",
                "-o",
                "mode=overlay",
                "-o",
                "multicast=snoop",
            ];
            let refused = h1
                .try_create_network("rustnet", "bad", &options)
                .expect_err("an unknown multicast value");
            assert!(
                refused.contains("invalid option multicast \"snoop\": valid values: flood"),
                "{refused}"
            );
            assert!(h1.docker(&["network", "inspect", "bad"]).is_err());
        },
    );

    cases.run(
        "a multicast stream reaches the containers on the other hosts, and no copy a host without any",
        || {
            listen(&h2, "r2", "mc");
            listen(&h3, "r3", "mc");
            h1.run_container("s1", "mc", &[], &[]);
            count_vxlan(&h4);
            let sender = h1.ip_of("s1", "mc");
            wait_until("the stream on h2 and h3", 20, || {
                send(&h1, "s1", GROUP, "hello-group", 2);
                heard(&h2, "r2").contains(&format!("hello-group from {sender}"))
                    && heard(&h3, "r3").contains(&format!("hello-group from {sender}"))
            });
            assert_eq!(
                vxlan_packets(&h4),
                0,
                "h4 has no container on the overlay: no copy goes there"
            );
        },
    );

    cases.run("a broadcast ping is answered from every host", || {
        let out = docker_ok(
            h1.exec("s1", &["ping", "-c", "3", "-W", "3", "10.0.90.255"]),
            "broadcast ping",
        );
        for (host, name) in [(&h2, "r2"), (&h3, "r3")] {
            let ip = host.ip_of(name, "mc");
            assert!(out.contains(&format!("from {ip}:")), "{name}: {out}");
        }
        assert_eq!(vxlan_packets(&h4), 0);
    });

    cases.run(
        "a host that starts a container later gets the stream",
        || {
            listen(&h4, "r4", "mc");
            wait_until("the stream on h4", 20, || {
                send(&h1, "s1", GROUP, "second-wave", 2);
                heard(&h4, "r4").contains("second-wave")
            });
            assert!(heard(&h2, "r2").contains("second-wave"));
        },
    );

    cases.run(
        "an overlay without the option keeps broadcast and multicast on its host",
        || {
            listen(&h2, "q2", "quiet");
            h1.run_container("q1", "quiet", &[], &[]);
            let q2 = h2.ip_of("q2", "quiet");
            // Unicast after the multicast, on the same path: once it is
            // heard, the multicast before it would have been.
            wait_until("unicast on the quiet overlay", 20, || {
                send(&h1, "q1", GROUP, "not-for-h2", 1);
                send(&h1, "q1", "10.0.91.255", "not-for-h2", 1);
                send(&h1, "q1", &q2, "unicast-after", 1);
                heard(&h2, "q2").contains("unicast-after")
            });
            let heard = heard(&h2, "q2");
            assert!(!heard.contains("not-for-h2"), "{heard}");
        },
    );

    cases.run(
        "the flooding outlives a plugin kill -9 and a restart",
        || {
            h2.kill_rustnet();
            wait_until("the stream while rustnet is down", 20, || {
                send(&h1, "s1", GROUP, "while-down", 2);
                heard(&h2, "r2").contains("while-down")
            });
            h2.start_rustnet(&joining.env());
            let fdb = run(h2.cmd("bridge").args(["fdb", "show"])).expect("fdb");
            let floods = fdb
                .lines()
                .filter(|l| l.starts_with("00:00:00:00:00:00"))
                .count();
            assert_eq!(floods, 3, "one copy for each of h1, h3, h4: {fdb}");
            wait_until("the stream after the restart", 20, || {
                send(&h1, "s1", GROUP, "after-restart", 2);
                heard(&h2, "r2").contains("after-restart")
            });
        },
    );
    cases.finish();
}
