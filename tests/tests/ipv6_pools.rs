//! IPv6 from rustnet's IPAM with Docker's own bridge driver on two
//! simulated hosts of one cluster: `--ipv6` without an IPv6 subnet gets a
//! /64 of the cluster's unique local /48, a different one per network,
//! whichever host creates it; an explicit IPv6 subnet is shared as an IPv4
//! one is.

// Each end-to-end scenario reads as one story, start to finish.
#![allow(clippy::too_many_lines, clippy::expect_used, clippy::unwrap_used)]

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use rustnet_tests::{Cases, Engine, SimHost, docker_ok, on_every_engine};

/// The IPv6 subnet of `net` on `host`, from `docker network inspect`.
fn subnet6(host: &SimHost, net: &str) -> Ipv6Net {
    let out = docker_ok(
        host.docker(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
            net,
        ]),
        "inspect network",
    );
    out.split_whitespace()
        .find_map(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no IPv6 subnet on {net}: {out:?}"))
}

/// A container's IPv6 address on `net`.
fn ip6_of(host: &SimHost, container: &str, net: &str) -> Ipv6Addr {
    let format = format!("{{{{(index .NetworkSettings.Networks \"{net}\").GlobalIPv6Address}}}}");
    let out = docker_ok(
        host.docker(&["inspect", "-f", &format, container]),
        "inspect container",
    );
    out.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{container}'s IPv6 address {out:?}: {e}"))
}

on_every_engine!(ipv6_pools_from_the_clusters_unique_local_prefix);

fn ipv6_pools_from_the_clusters_unique_local_prefix(engine: Engine) {
    let h1 = SimHost::start_on(engine);
    let h2 = SimHost::start_on(engine);
    h1.start_cluster(&[&h2]);
    let mut cases = Cases::new(|| {});

    cases.run(
        "networks without an IPv6 subnet get /64s of one unique local /48",
        || {
            let create = |host: &SimHost, name: &str| {
                docker_ok(
                    host.docker(&[
                        "network",
                        "create",
                        "--ipv6",
                        "--ipam-driver",
                        "rustnet",
                        name,
                    ]),
                    &format!("create {name}"),
                );
            };
            create(&h1, "v6a");
            create(&h2, "v6b");
            let (a, b) = (subnet6(&h1, "v6a"), subnet6(&h2, "v6b"));
            assert_eq!((a.prefix_len(), b.prefix_len()), (64, 64), "{a} {b}");
            assert_ne!(a, b, "two networks, two /64s");
            let ula: Ipv6Net = "fd00::/8".parse().unwrap();
            assert!(ula.contains(&a) && ula.contains(&b), "{a} {b}");
            let slash48 = |n: Ipv6Net| Ipv6Net::new(n.network(), 48).unwrap().trunc();
            assert_eq!(slash48(a), slash48(b), "one /48 for the cluster");
            // Containers get addresses of the network's /64, distinct.
            h1.run_container("c1", "v6a", &[], &[]);
            h1.run_container("c2", "v6a", &[], &[]);
            let (c1, c2) = (ip6_of(&h1, "c1", "v6a"), ip6_of(&h1, "c2", "v6a"));
            assert!(a.contains(&c1) && a.contains(&c2) && c1 != c2, "{c1} {c2}");
            h1.assert_pings("c1", &c2.to_string());
            // The cluster holds both pools, whoever asked.
            let pools = h2.status()["pools"].to_string();
            for net in [a, b] {
                assert!(pools.contains(&net.to_string()), "{net} in {pools}");
            }
        },
    );

    cases.run(
        "an explicit IPv6 subnet is one pool for the cluster",
        || {
            for (host, name) in [(&h1, "fixed6"), (&h2, "fixed6")] {
                docker_ok(
                    host.docker(&[
                        "network",
                        "create",
                        "--ipv6",
                        "--ipam-driver",
                        "rustnet",
                        "--subnet",
                        "10.0.66.0/24",
                        "--subnet",
                        "fd42:66::/64",
                        name,
                    ]),
                    "create fixed6",
                );
            }
            h1.run_container("f1", "fixed6", &["--ip6", "fd42:66::10"], &[]);
            assert_eq!(ip6_of(&h1, "f1", "fixed6").to_string(), "fd42:66::10");
            let err = h2
                .docker(&[
                    "run",
                    "-d",
                    "--name",
                    "f2",
                    "--network",
                    "fixed6",
                    "--ip6",
                    "fd42:66::10",
                    rustnet_tests::IMAGE,
                    "sleep",
                    "3600",
                ])
                .unwrap_err();
            assert!(
                err.contains("address fd42:66::10 is already in use by"),
                "{err}"
            );
        },
    );

    cases.finish();
}
