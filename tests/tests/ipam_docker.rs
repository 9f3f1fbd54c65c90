//! rustnet's IPAM driver under a real dockerd, through the docker CLI, with
//! Docker's own bridge driver (`--ipam-driver rustnet`).

// Each end-to-end scenario reads as one story, start to finish.
#![allow(clippy::too_many_lines, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;

use ipnet::IpNet;
use rustnet_tests::{Cases, Engine, SimHost, docker_ok, on_every_engine, wait_until};
use serde_json::Value;

const IMAGE: &str = "rustnet-test/busybox:latest";

/// Gateway and subnet of a network, from `docker network inspect`.
fn network_ipam(host: &SimHost, net: &str) -> (String, String) {
    let out = docker_ok(
        host.docker(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}",
            net,
        ]),
        "inspect network",
    );
    let (gw, subnet) = out
        .split_once(' ')
        .unwrap_or_else(|| panic!("no IPAM config in {out:?}"));
    (gw.to_owned(), subnet.to_owned())
}

/// A container's address on `net`.
fn container_ip(host: &SimHost, container: &str, net: &str) -> String {
    container_field(host, container, net, "IPAddress")
}

fn container_field(host: &SimHost, container: &str, net: &str, field: &str) -> String {
    let format = format!("{{{{(index .NetworkSettings.Networks \"{net}\").{field}}}}}");
    docker_ok(
        host.docker(&["inspect", "-f", &format, container]),
        "inspect container",
    )
}

fn run_container(host: &SimHost, name: &str, net: &str, extra: &[&str]) -> Result<String, String> {
    let args = [
        &["run", "-d", "--name", name, "--network", net],
        extra,
        &[IMAGE, "sleep", "3600"],
    ]
    .concat();
    host.docker(&args)
}

/// Creates a network, runs one container, returns (gateway, container ip),
/// and removes both.
fn first_addresses(
    host: &SimHost,
    name: &str,
    ipam: &[&str],
    net_args: &[&str],
) -> (String, String) {
    let args = [&["network", "create"], ipam, net_args, &[name]].concat();
    docker_ok(host.docker(&args), "network create");
    let container = format!("{name}-c");
    docker_ok(run_container(host, &container, name, &[]), "docker run");
    // Docker's own IPAM leaves the network's Gateway blank unless --gateway
    // was given; the container's view is the same for both.
    let gateway = container_field(host, &container, name, "Gateway");
    let ip = container_ip(host, &container, name);
    docker_ok(host.docker(&["rm", "-f", &container]), "rm");
    docker_ok(host.docker(&["network", "rm", name]), "network rm");
    (gateway, ip)
}

fn pools(host: &SimHost) -> Vec<Value> {
    host.status()["pools"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn pool_ids(host: &SimHost) -> BTreeSet<String> {
    pools(host)
        .iter()
        .filter_map(|p| p["pool"].as_str().map(str::to_owned))
        .collect()
}

on_every_engine!(ipam_driver_on_a_real_dockerd);

fn ipam_driver_on_a_real_dockerd(engine: Engine) {
    let host = SimHost::start_on(engine);
    host.start_rustnet(&[]);
    let mut cases = Cases::new(|| host.reset());

    cases.run("same addresses as Docker's own IPAM", || {
        let rustnet: &[&str] = &["--ipam-driver", "rustnet"];
        for net_args in [
            &["--subnet", "10.0.42.0/24", "--ip-range", "10.0.42.128/25"][..],
            &[
                "--subnet",
                "10.0.42.0/24",
                "--ip-range",
                "10.0.42.128/25",
                "--gateway",
                "10.0.42.200",
            ],
            &["--subnet", "10.0.42.0/24"],
            &["--subnet", "10.0.42.0/24", "--gateway", "10.0.42.254"],
        ] {
            let docker = first_addresses(&host, "cmp-docker", &[], net_args);
            let ours = first_addresses(&host, "cmp-rustnet", rustnet, net_args);
            assert_eq!(ours, docker, "{net_args:?}: rustnet vs Docker's IPAM");
        }
        // The documented example, spelled out.
        let ours = first_addresses(
            &host,
            "cmp-rustnet",
            rustnet,
            &["--subnet", "10.0.42.0/24", "--ip-range", "10.0.42.128/25"],
        );
        assert_eq!(ours, ("10.0.42.128".to_owned(), "10.0.42.129".to_owned()));
    });

    cases.run("networks without --subnet get distinct subnets", || {
        let mut subnets = Vec::new();
        for i in 0..3 {
            let name = format!("auto{i}");
            docker_ok(
                host.docker(&["network", "create", "--ipam-driver", "rustnet", &name]),
                "network create",
            );
            let (gateway, subnet) = network_ipam(&host, &name);
            let subnet: IpNet = subnet.parse().unwrap();
            assert!(subnet.contains(&gateway.parse::<std::net::IpAddr>().unwrap()));
            subnets.push(subnet);
        }
        for (i, a) in subnets.iter().enumerate() {
            for b in &subnets[i + 1..] {
                assert!(
                    !a.contains(&b.network()) && !b.contains(&a.network()),
                    "{a} overlaps {b}"
                );
            }
        }
        for i in 0..3 {
            docker_ok(
                host.docker(&["network", "rm", &format!("auto{i}")]),
                "network rm",
            );
        }
        assert!(
            pool_ids(&host).is_empty(),
            "pools left: {:?}",
            pool_ids(&host)
        );
    });

    cases.run(
        "--ip is honoured, taken addresses name the holder, aux addresses are skipped",
        || {
            docker_ok(
                host.docker(&[
                    "network",
                    "create",
                    "--ipam-driver",
                    "rustnet",
                    "--subnet",
                    "10.0.43.0/29",
                    "--aux-address",
                    "a=10.0.43.2",
                    "--aux-address",
                    "b=10.0.43.4",
                    "ipnet",
                ]),
                "network create",
            );
            docker_ok(
                run_container(&host, "fixed", "ipnet", &["--ip", "10.0.43.6"]),
                "run --ip",
            );
            assert_eq!(container_ip(&host, "fixed", "ipnet"), "10.0.43.6");
            // Docker 20.10 does not name the container in IPAM requests;
            // rustnet learns it from Docker in the background, and the error
            // names the container and its host.
            let holder = |address: &str| {
                pools(&host)
                    .iter()
                    .flat_map(|p| p["addresses"].as_array().cloned().unwrap_or_default())
                    .find(|a| a["address"] == address)
                    .map(|a| a["holder"].as_str().unwrap_or_default().to_owned())
            };
            wait_until("10.0.43.6 named after its container", 10, || {
                holder("10.0.43.6").is_some_and(|h| h.starts_with("container fixed on "))
            });
            let err = run_container(&host, "thief", "ipnet", &["--ip", "10.0.43.6"]).unwrap_err();
            assert!(
                err.contains("address 10.0.43.6 is already in use by container fixed on "),
                "{err}"
            );
            assert!(err.contains(&format!("({})", host.addr)), "{err}");
            // Aux addresses are no container's.
            assert!(
                holder("10.0.43.2")
                    .is_some_and(|h| h.starts_with("the network's --aux-address reservation on ")),
                "{:?}",
                holder("10.0.43.2")
            );
            let _ = host.docker(&["rm", "-f", "thief"]);
            // Gateway .1, aux .2 and .4, fixed .6: the rest are .3 and .5.
            docker_ok(run_container(&host, "auto-a", "ipnet", &[]), "run");
            docker_ok(run_container(&host, "auto-b", "ipnet", &[]), "run");
            let got: BTreeSet<String> = ["auto-a", "auto-b"]
                .iter()
                .map(|c| container_ip(&host, c, "ipnet"))
                .collect();
            assert_eq!(
                got,
                BTreeSet::from(["10.0.43.3".to_owned(), "10.0.43.5".to_owned()])
            );
            let err = run_container(&host, "one-too-many", "ipnet", &[]).unwrap_err();
            assert!(err.contains("pool 10.0.43.0/29 is exhausted"), "{err}");
            for c in ["fixed", "auto-a", "auto-b", "one-too-many"] {
                let _ = host.docker(&["rm", "-f", c]);
            }
        },
    );

    cases.run("network rm releases the pool and its addresses", || {
        docker_ok(
            host.docker(&[
                "network",
                "create",
                "--ipam-driver",
                "rustnet",
                "--subnet",
                "10.0.43.0/29",
                "ipnet",
            ]),
            "network create",
        );
        for c in ["r1", "r2"] {
            docker_ok(run_container(&host, c, "ipnet", &[]), "run");
        }
        assert_eq!(
            pools(&host)[0]["addresses"].as_array().map(Vec::len),
            Some(3)
        );
        docker_ok(host.docker(&["rm", "-f", "r1", "r2"]), "rm");
        docker_ok(host.docker(&["network", "rm", "ipnet"]), "network rm");
        assert!(
            pool_ids(&host).is_empty(),
            "pools left: {:?}",
            pool_ids(&host)
        );
        // The same subnet can be had again, from the first address.
        let again = first_addresses(
            &host,
            "again",
            &["--ipam-driver", "rustnet"],
            &["--subnet", "10.0.43.0/29"],
        );
        assert_eq!(again, ("10.0.43.1".to_owned(), "10.0.43.2".to_owned()));
    });

    cases.run("a restarted plugin keeps every allocation", || {
        docker_ok(
            host.docker(&[
                "network",
                "create",
                "--ipam-driver",
                "rustnet",
                "--subnet",
                "10.0.44.0/24",
                "keep",
            ]),
            "network create",
        );
        for c in ["k1", "k2"] {
            docker_ok(run_container(&host, c, "keep", &[]), "run");
        }
        // Once rustnet has learned both holders' names (in the background).
        wait_until("k1 and k2 named", 10, || {
            let text = serde_json::to_string(&pools(&host)).unwrap_or_default();
            text.contains("container k1") && text.contains("container k2")
        });
        let before = pools(&host);
        host.kill_rustnet();
        host.start_rustnet(&[]);
        assert_eq!(pools(&host), before, "state after kill -9 and restart");
        docker_ok(run_container(&host, "k3", "keep", &[]), "run after restart");
        let ips: BTreeSet<String> = ["k1", "k2", "k3"]
            .iter()
            .map(|c| container_ip(&host, c, "keep"))
            .collect();
        assert_eq!(ips.len(), 3, "duplicate addresses: {ips:?}");
        assert_eq!(container_ip(&host, "k3", "keep"), "10.0.44.4");
        for c in ["k1", "k2", "k3"] {
            docker_ok(host.docker(&["rm", "-f", c]), "rm after restart");
        }
        docker_ok(
            host.docker(&["network", "rm", "keep"]),
            "network rm after restart",
        );
        assert!(
            pool_ids(&host).is_empty(),
            "pools left: {:?}",
            pool_ids(&host)
        );
    });

    cases.run("an exhausted pool gives a clear error", || {
        docker_ok(
            host.docker(&[
                "network",
                "create",
                "--ipam-driver",
                "rustnet",
                "--subnet",
                "10.0.45.0/30",
                "tiny",
            ]),
            "network create",
        );
        docker_ok(run_container(&host, "t1", "tiny", &[]), "run");
        let err = run_container(&host, "t2", "tiny", &[]).unwrap_err();
        assert!(
            err.contains(
                "pool 10.0.45.0/30 is exhausted: all 2 addresses of 10.0.45.0/30 are in use"
            ),
            "{err}"
        );
        for c in ["t1", "t2"] {
            let _ = host.docker(&["rm", "-f", c]);
        }
        docker_ok(host.docker(&["network", "rm", "tiny"]), "network rm");
    });

    cases.run("overlapping explicit subnets are refused", || {
        docker_ok(
            host.docker(&[
                "network",
                "create",
                "--ipam-driver",
                "rustnet",
                "--subnet",
                "10.0.46.0/24",
                "ov1",
            ]),
            "network create",
        );
        let err = host
            .docker(&[
                "network",
                "create",
                "--ipam-driver",
                "rustnet",
                "--subnet",
                "10.0.0.0/16",
                "ov2",
            ])
            .unwrap_err();
        assert!(
            err.contains("subnet 10.0.0.0/16 overlaps pool 10.0.46.0/24"),
            "{err}"
        );
        docker_ok(host.docker(&["network", "rm", "ov1"]), "network rm");
    });

    cases.finish();
}
