//! rustnet's own macvlan networks (`-o mode=macvlan`) on three simulated
//! hosts whose underlay interface `ul0` is the parent: created once and
//! found on every host, one pool and unique MACs across the cluster,
//! containers straight on the LAN, names across hosts and the host shim.

// Each end-to-end scenario reads as one story, start to finish.
#![allow(clippy::too_many_lines, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;

use rustnet_tests::{Cases, Engine, SimHost, docker_ok, on_every_engine, run, wait_until};

const SUBNET: &str = "10.99.0.0/24";
/// Where container addresses (and the hosts' shims) come from: clear of
/// the simulated hosts' own underlay addresses.
const RANGE: &str = "10.99.0.128/26";
/// The underlay's router, on the bridge the hosts' `ul0` hang from.
const ROUTER: &str = "10.99.0.254";

fn create_lan(host: &SimHost, name: &str, extra: &[&str]) -> Result<String, String> {
    let args = [
        &[
            "-o",
            "mode=macvlan",
            "-o",
            "parent=ul0",
            "--subnet",
            SUBNET,
            "--ip-range",
            RANGE,
            "--gateway",
            ROUTER,
        ],
        extra,
    ]
    .concat();
    host.try_create_network("rustnet", name, &args)
}

fn run_on(host: &SimHost, net: &str, name: &str, extra: &[&str]) -> Result<String, String> {
    let args = [
        &["run", "-d", "--name", name, "--network", net],
        extra,
        &[rustnet_tests::IMAGE, "sleep", "3600"],
    ]
    .concat();
    host.docker(&args)
}

fn mac_of(host: &SimHost, container: &str) -> String {
    docker_ok(
        host.docker(&[
            "inspect",
            "-f",
            "{{(index .NetworkSettings.Networks \"lan\").MacAddress}}",
            container,
        ]),
        "inspect mac",
    )
}

/// The address of `host`'s shim on the network, from its kernel.
fn shim_address(host: &SimHost) -> Option<String> {
    let out = run(host.cmd("ip").args(["-o", "-4", "addr", "show"])).unwrap_or_default();
    out.lines()
        .find(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|d| d.starts_with("rns"))
        })
        .and_then(|l| l.split_whitespace().nth(3))
        .map(|a| a.trim_end_matches("/32").to_owned())
}

on_every_engine!(a_macvlan_network_is_one_lan_across_hosts);

fn a_macvlan_network_is_one_lan_across_hosts(engine: Engine) {
    // The hosts' resolver is the LAN's router, on the network's subnet:
    // names across hosts take the resolver address in daemon.json on every
    // engine, as the README says.
    let start = || SimHost::spec().engine(engine).dns_setting(true).start();
    let (h1, h2, h3) = (start(), start(), start());
    let joining = h1.start_cluster(&[&h2, &h3]);
    let hosts = [&h1, &h2, &h3];
    let mut cases = Cases::new(|| {});

    cases.run("created once, the network comes up on every host", || {
        docker_ok(create_lan(&h1, "lan", &[]), "create lan on h1");
        for host in [&h2, &h3] {
            wait_until("lan propagated", 20, || host.has_network("lan"));
        }
        for host in hosts {
            wait_until("the host's shim is up", 20, || shim_address(host).is_some());
        }
        let shims: BTreeSet<String> = hosts.iter().filter_map(|h| shim_address(h)).collect();
        assert_eq!(shims.len(), 3, "one shim address per host: {shims:?}");
    });

    cases.run(
        "containers started on every host at once get distinct addresses and MACs and talk directly",
        || {
            std::thread::scope(|scope| {
                for (k, host) in hosts.iter().enumerate() {
                    for i in 0..3 {
                        scope.spawn(move || {
                            docker_ok(run_on(host, "lan", &format!("m{k}-{i}"), &[]), "run");
                        });
                    }
                }
            });
            let shims: BTreeSet<String> = hosts.iter().filter_map(|h| shim_address(h)).collect();
            let (mut ips, mut macs) = (BTreeSet::new(), BTreeSet::new());
            for (k, host) in hosts.iter().enumerate() {
                for i in 0..3 {
                    let name = format!("m{k}-{i}");
                    let ip = host.ip_of(&name, "lan");
                    let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
                    assert!((128..192).contains(&last), "{ip} outside {RANGE}");
                    assert!(!shims.contains(&ip), "{ip} is a shim's");
                    assert!(ips.insert(ip.clone()), "duplicate address {ip}");
                    let mac = mac_of(host, &name);
                    assert!(macs.insert(mac.clone()), "duplicate MAC {mac}");
                    let link = docker_ok(host.exec(&name, &["ip", "link", "show", "eth0"]), "ip");
                    assert!(link.contains(&mac), "{link}");
                }
            }
            // No veth pairs, no bridge: the containers' links are macvlan.
            for host in hosts {
                let links = run(host.cmd("ip").args(["-o", "link", "show"])).expect("ip link");
                assert!(!links.contains("rnh") && !links.contains("rn-"), "{links}");
                let macvlans =
                    run(host.cmd("ip").args(["-o", "link", "show", "type", "macvlan"])).unwrap_or_default();
                assert!(macvlans.contains("rns"), "the shim: {macvlans}");
            }
            h1.assert_pings("m0-0", &h2.ip_of("m1-0", "lan"));
            h3.assert_pings("m2-1", &h1.ip_of("m0-2", "lan"));
            // The LAN's other hosts and its router, directly.
            h2.assert_pings("m1-2", &h3.addr);
            h1.assert_pings("m0-1", ROUTER);
            let vxlan = run(h1.cmd("ip").args(["-o", "link", "show", "type", "vxlan"]))
                .unwrap_or_default();
            assert!(vxlan.trim().is_empty(), "{vxlan}");
        },
    );

    cases.run("containers find each other by name across hosts", || {
        let target = h2.ip_of("m1-0", "lan");
        wait_until("m1-0 resolves from h1", 20, || {
            h1.lookup("m0-0", "m1-0")
                .is_ok_and(|ips| ips == [target.clone()])
        });
        assert_eq!(h1.lookup("m0-0", "m1-0.lan"), Ok(vec![target]));
        h3.assert_pings("m2-0", "m0-1");
        assert!(h1.lookup("m0-0", "nobody-here").is_err());
    });

    cases.run(
        "the host reaches its own containers through its shim",
        || {
            let own = h1.ip_of("m0-0", "lan");
            run(h1.cmd("busybox").args(["ping", "-c", "1", "-W", "2", &own]))
                .unwrap_or_else(|e| panic!("h1 cannot reach its container {own}: {e}"));
            let route = run(h1.cmd("ip").args(["route", "get", &own])).unwrap_or_default();
            assert!(route.contains("dev rns"), "{route}");
        },
    );

    cases.run(
        "a MAC taken on one host is refused on another, with its holder",
        || {
            let taken = mac_of(&h1, "m0-0");
            // `--mac-address` as every engine takes it (the CLI sends it per
            // network, which Docker 20.10's API does not know).
            let create = serde_json::json!({
                "Image": rustnet_tests::IMAGE,
                "Cmd": ["sleep", "3600"],
                "MacAddress": taken,
                "HostConfig": {"NetworkMode": "lan"},
            });
            let (status, body) = h2
                .engine_api("POST", "/containers/create?name=thief", &create.to_string())
                .unwrap();
            assert_eq!(status, 201, "{body}");
            let (status, err) = h2
                .engine_api("POST", "/containers/thief/start", "")
                .unwrap();
            assert!(status >= 400, "started with a taken MAC: {status} {err}");
            assert!(
                err.contains(&format!("MAC {taken} is already used by")),
                "{err}"
            );
            assert!(err.contains("container m0-0 on "), "{err}");
            let _ = h2.docker(&["rm", "-f", "thief"]);
        },
    );

    cases.run("bad input is refused clearly and creates nothing", || {
        let err = h2
            .try_create_network(
                "rustnet",
                "lan2",
                &[
                    "-o",
                    "mode=macvlan",
                    "-o",
                    "parent=ul0",
                    "--subnet",
                    "10.95.0.0/24",
                ],
            )
            .unwrap_err();
        assert!(
            err.contains("parent interface ul0 is already used by macvlan network"),
            "{err}"
        );
        let err = h2
            .try_create_network(
                "rustnet",
                "nowhere",
                &[
                    "-o",
                    "mode=macvlan",
                    "-o",
                    "parent=nope0",
                    "--subnet",
                    "10.97.0.0/24",
                ],
            )
            .unwrap_err();
        assert!(err.contains("on host "), "{err}");
        assert!(
            err.contains("parent interface nope0 does not exist"),
            "{err}"
        );
        h1.create_overlay("ov", "10.96.0.0/24", &[]);
        let err = h3
            .try_create_network(
                "rustnet",
                "clash",
                &[
                    "-o",
                    "mode=macvlan",
                    "-o",
                    "parent=ul0",
                    "--subnet",
                    "10.96.0.0/16",
                ],
            )
            .unwrap_err();
        assert!(err.contains("overlaps"), "{err}");
        for host in hosts {
            for name in ["lan2", "nowhere", "clash"] {
                assert!(!host.has_network(name), "{name} on {}", host.netns);
            }
        }
        docker_ok(h1.docker(&["network", "rm", "ov"]), "rm ov");
    });

    cases.run(
        "a plugin kill -9 and a dockerd restart keep the LAN working",
        || {
            h2.kill_rustnet();
            // The data path is the kernel's: traffic goes on without rustnet.
            h1.assert_pings("m0-0", &h2.ip_of("m1-1", "lan"));
            h2.start_rustnet(&joining.env());
            docker_ok(run_on(&h2, "lan", "after-kill", &[]), "run after kill");
            h1.assert_pings("m0-0", &h2.ip_of("after-kill", "lan"));
            docker_ok(
                run_on(&h3, "lan", "always", &["--restart", "always"]),
                "run always",
            );
            h3.restart_dockerd(&[]);
            wait_until("always runs again on h3", 30, || {
                h3.docker(&["inspect", "-f", "{{.State.Running}}", "always"])
                    .is_ok_and(|r| r == "true")
            });
            let always = h3.ip_of("always", "lan");
            assert!(
                h2.pings_within("after-kill", &always, 5),
                "always unreachable"
            );
            wait_until("always resolves from h2", 20, || {
                h2.lookup("after-kill", "always")
                    .is_ok_and(|ips| ips == [always.clone()])
            });
        },
    );

    cases.run(
        "removed on one host, the network serves the others' containers until they leave",
        || {
            for id in docker_ok(h1.docker(&["ps", "-aq"]), "ps").lines() {
                let _ = h1.docker(&["rm", "-f", id]);
            }
            docker_ok(h1.docker(&["network", "rm", "lan"]), "network rm on h1");
            h2.assert_pings("after-kill", &h3.ip_of("always", "lan"));
            let err = run_on(&h2, "lan", "late", &[]).unwrap_err();
            assert!(err.contains("is being removed"), "{err}");
            let _ = h2.docker(&["rm", "-f", "late"]);
            for host in [&h2, &h3] {
                let ids = docker_ok(host.docker(&["ps", "-aq"]), "ps");
                for id in ids.lines() {
                    let _ = host.docker(&["rm", "-f", id]);
                }
            }
            for host in hosts {
                wait_until("lan gone", 20, || !host.has_network("lan"));
                wait_until("shim gone", 20, || shim_address(host).is_none());
            }
        },
    );

    cases.finish();
}
