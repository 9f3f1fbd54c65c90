//! Docker's own macvlan driver with rustnet's IPAM on three simulated
//! hosts whose underlay is the macvlan parent: the same `docker network
//! create` run on every host gives one address space for the whole LAN.

// Each end-to-end scenario reads as one story, start to finish.
#![allow(clippy::too_many_lines, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;

use rustnet_tests::{Cases, Engine, SimHost, docker_ok, on_every_engine, wait_until};
use serde_json::Value;

const SUBNET: &str = "10.99.0.0/24";
/// The underlay's router, on the bridge the hosts' `ul0` hang from.
const ROUTER: &str = "10.99.0.254";
/// Aux addresses: one outside the range, one the range's first address
/// (which would be handed out first if it were not reserved).
const AUX: [&str; 2] = ["10.99.0.253", "10.99.0.64"];

/// `docker network create -d macvlan -o parent=ul0 --ipam-driver rustnet
/// ... lan` as a user runs it on every host.
fn create_lan(host: &SimHost) -> Result<String, String> {
    host.docker(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=ul0",
        "--ipam-driver",
        "rustnet",
        "--subnet",
        SUBNET,
        "--ip-range",
        "10.99.0.64/26",
        "--gateway",
        ROUTER,
        "--aux-address",
        &format!("router={}", AUX[0]),
        "--aux-address",
        &format!("printer={}", AUX[1]),
        "lan",
    ])
}

/// The cluster's pool on the LAN's subnet, from `rustnet status`.
fn lan_pool(host: &SimHost) -> Option<Value> {
    host.status()["pools"]
        .as_array()?
        .iter()
        .find(|p| p["pool"] == SUBNET)
        .cloned()
}

/// Who holds each address of the pool, as status says it.
fn holders(host: &SimHost) -> Vec<(String, String)> {
    let pool = lan_pool(host).unwrap_or_default();
    pool["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            (
                a["address"].as_str().unwrap_or_default().to_owned(),
                a["holder"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn reserved(host: &SimHost) -> BTreeSet<String> {
    holders(host)
        .into_iter()
        .filter(|(_, holder)| holder.starts_with("the network's"))
        .map(|(address, _)| address)
        .collect()
}

fn run_on_lan(host: &SimHost, name: &str, extra: &[&str]) -> Result<String, String> {
    let args = [
        &["run", "-d", "--name", name, "--network", "lan"],
        extra,
        &[rustnet_tests::IMAGE, "sleep", "3600"],
    ]
    .concat();
    host.docker(&args)
}

on_every_engine!(docker_macvlan_shares_one_pool_across_hosts);

fn docker_macvlan_shares_one_pool_across_hosts(engine: Engine) {
    let h1 = SimHost::start_on(engine);
    let h2 = SimHost::start_on(engine);
    let h3 = SimHost::start_on(engine);
    let joining = h1.start_cluster(&[&h2, &h3]);
    let hosts = [&h1, &h2, &h3];
    let every_reservation: BTreeSet<String> = AUX
        .iter()
        .chain(&[ROUTER])
        .map(|a| (*a).to_owned())
        .collect();
    let mut cases = Cases::new(|| {});

    cases.run(
        "the same network create succeeds on every host, one pool for all",
        || {
            for host in hosts {
                docker_ok(create_lan(host), &format!("create lan on {}", host.netns));
            }
            let refs = |host: &SimHost| {
                lan_pool(host).map_or(0, |p| {
                    p["hosts"].as_object().map_or(0, serde_json::Map::len)
                })
            };
            wait_until("every host holds the pool", 10, || refs(&h2) == 3);
            // The router and the aux addresses are reserved once, for all.
            assert_eq!(reserved(&h3), every_reservation, "{:?}", holders(&h3));
            assert_eq!(holders(&h3).len(), 3, "{:?}", holders(&h3));
            // A second create on the same host is Docker's own refusal.
            assert!(create_lan(&h1).is_err());
        },
    );

    cases.run(
        "containers started on every host at once get distinct addresses and talk directly",
        || {
            std::thread::scope(|scope| {
                for (k, host) in hosts.iter().enumerate() {
                    for i in 0..3 {
                        scope.spawn(move || {
                            docker_ok(run_on_lan(host, &format!("m{k}-{i}"), &[]), "run");
                        });
                    }
                }
            });
            let mut ips = BTreeSet::new();
            for (k, host) in hosts.iter().enumerate() {
                for i in 0..3 {
                    let ip = host.ip_of(&format!("m{k}-{i}"), "lan");
                    assert!(!every_reservation.contains(&ip), "{ip} is reserved");
                    assert!(ip.starts_with("10.99.0."), "{ip}");
                    let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
                    assert!((65..128).contains(&last), "{ip} outside the range");
                    assert!(ips.insert(ip.clone()), "duplicate address {ip}");
                }
            }
            // Straight over the LAN: to the other hosts' containers, the
            // other hosts themselves and the router. No VXLAN anywhere.
            h1.assert_pings("m0-0", &h2.ip_of("m1-0", "lan"));
            h3.assert_pings("m2-1", &h1.ip_of("m0-2", "lan"));
            h2.assert_pings("m1-2", &h3.addr);
            h1.assert_pings("m0-1", ROUTER);
            let vxlan =
                rustnet_tests::run(h1.cmd("ip").args(["-o", "link", "show", "type", "vxlan"]))
                    .unwrap_or_default();
            assert!(vxlan.trim().is_empty(), "{vxlan}");
        },
    );

    cases.run(
        "an address taken on one host is refused on another, with its holder",
        || {
            docker_ok(
                run_on_lan(&h1, "fixed", &["--ip", "10.99.0.100"]),
                "run --ip",
            );
            let err = run_on_lan(&h2, "thief", &["--ip", "10.99.0.100"]).unwrap_err();
            assert!(
                err.contains("address 10.99.0.100 is already in use by"),
                "{err}"
            );
            let err = run_on_lan(&h3, "printer", &["--ip", AUX[1]]).unwrap_err();
            assert!(
                err.contains("the network's --aux-address reservation"),
                "{err}"
            );
            for (host, name) in [(&h2, "thief"), (&h3, "printer")] {
                let _ = host.docker(&["rm", "-f", name]);
            }
            // Learned in the background: the holder is named.
            wait_until("10.99.0.100 named after its container", 15, || {
                holders(&h3)
                    .iter()
                    .any(|(a, h)| a == "10.99.0.100" && h.starts_with("container fixed on "))
            });
        },
    );

    cases.run(
        "a plugin kill -9 and a dockerd restart keep the pool whole",
        || {
            h2.kill_rustnet();
            h2.start_rustnet(&joining.env());
            docker_ok(run_on_lan(&h2, "after-kill", &[]), "run after kill");
            docker_ok(
                run_on_lan(&h3, "always", &["--restart", "always"]),
                "run --restart always",
            );
            let before = h3.ip_of("always", "lan");
            h3.restart_dockerd(&[]);
            wait_until("always runs again on h3", 30, || {
                h3.docker(&["inspect", "-f", "{{.State.Running}}", "always"])
                    .is_ok_and(|r| r == "true")
            });
            let after = h3.ip_of("always", "lan");
            assert!(!every_reservation.contains(&after), "{after}");
            let mut ips = BTreeSet::new();
            for (k, host) in hosts.iter().enumerate() {
                let names = docker_ok(host.docker(&["ps", "-q", "--filter", "network=lan"]), "ps");
                for id in names.lines() {
                    assert!(ips.insert(host.ip_of(id, "lan")), "duplicate on host {k}");
                }
            }
            h2.assert_pings("after-kill", &after);
            eprintln!("always: {before} before the restart, {after} after");
            assert_eq!(reserved(&h1), every_reservation);
        },
    );

    cases.run(
        "removing the network on one host leaves the pool to the others",
        || {
            let ids = docker_ok(h1.docker(&["ps", "-aq"]), "ps");
            for id in ids.lines() {
                let _ = h1.docker(&["rm", "-f", id]);
            }
            docker_ok(h1.docker(&["network", "rm", "lan"]), "network rm on h1");
            let h1_id = h1.status()["host"].to_string();
            wait_until("h1 lets go of the pool", 10, || {
                lan_pool(&h2).is_some_and(|p| p["hosts"].get(&h1_id).is_none())
            });
            assert_eq!(reserved(&h2), every_reservation, "{:?}", holders(&h2));
            docker_ok(run_on_lan(&h2, "late", &[]), "run after h1 left");
            let late = h2.ip_of("late", "lan");
            assert!(!every_reservation.contains(&late), "{late}");
            h3.assert_pings("always", &late);
            // The host comes back with the same command.
            docker_ok(create_lan(&h1), "create lan again on h1");
            for host in hosts {
                let ids = docker_ok(host.docker(&["ps", "-aq"]), "ps");
                for id in ids.lines() {
                    let _ = host.docker(&["rm", "-f", id]);
                }
                docker_ok(host.docker(&["network", "rm", "lan"]), "network rm");
            }
            wait_until("the pool is gone", 10, || lan_pool(&h1).is_none());
        },
    );

    cases.finish();
}
