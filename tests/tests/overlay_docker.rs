//! Overlay networks on three simulated Docker hosts, one rustnet cluster:
//! created once, usable everywhere, VXLAN with static entries, removed from
//! everywhere, resynchronised after a plugin outage.

// Each end-to-end scenario reads as one story, start to finish.
#![allow(clippy::too_many_lines, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rustnet_tests::{Cases, Engine, IMAGE, SimHost, docker_ok, on_every_engine, run, wait_until};

on_every_engine!(overlay_networks_across_three_hosts);

fn overlay_networks_across_three_hosts(engine: Engine) {
    let h1 = SimHost::start_on(engine);
    let h2 = SimHost::start_on(engine);
    let h3 = SimHost::start_on(engine);
    // Swarm's overlay, started later beside rustnet's, takes UDP 4789.
    let port = ("RUSTNET_VXLAN_PORT", "4790");
    h1.start_rustnet(&[port]);
    let join = format!("{}:7950", h1.addr);
    let token = h1.join_token();
    let joining = [
        port,
        ("RUSTNET_JOIN", &join),
        ("RUSTNET_JOIN_TOKEN", &token),
    ];
    h2.start_rustnet(&joining);
    h3.start_rustnet(&joining);
    let hosts = [&h1, &h2, &h3];
    let mut cases = Cases::new(|| {});

    cases.run(
        "an overlay created on one host appears on every host",
        || {
            h1.create_overlay("ov1", "10.0.80.0/24", &[]);
            for host in &hosts[1..] {
                wait_until(&format!("ov1 on {}", host.netns), 20, || {
                    host.has_network("ov1")
                });
            }
        },
    );

    cases.run(
        "containers on different hosts reach each other; MTU is the underlay's minus 50",
        || {
            h1.run_container("c1", "ov1", &[], &[]);
            h2.run_container("c2", "ov1", &[], &[]);
            h3.run_container("c3", "ov1", &[], &[]);
            let ips = [
                h1.ip_of("c1", "ov1"),
                h2.ip_of("c2", "ov1"),
                h3.ip_of("c3", "ov1"),
            ];
            assert_eq!(ips.iter().collect::<BTreeSet<_>>().len(), 3, "{ips:?}");
            wait_until("c1 reaches c2", 15, || h1.pings_within("c1", &ips[1], 1));
            h2.assert_pings("c2", &ips[2]);
            h3.assert_pings("c3", &ips[0]);
            assert_eq!(
                docker_ok(h2.exec("c2", &["cat", "/sys/class/net/eth0/mtu"]), "mtu"),
                "1450"
            );
            // Static entries on the VXLAN device, none learned.
            let vxlan = run(h1
                .cmd("ip")
                .args(["-d", "-o", "link", "show", "type", "vxlan"]))
            .unwrap_or_default();
            assert!(
                vxlan.contains("nolearning") && vxlan.contains("proxy"),
                "{vxlan}"
            );
            let fdb = run(h1.cmd("bridge").args(["fdb", "show"])).unwrap_or_default();
            assert!(
                fdb.contains(&format!("dst {}", h2.addr))
                    && fdb.contains(&format!("dst {}", h3.addr)),
                "{fdb}"
            );
        },
    );

    cases.run(
        "addresses stay unique when many containers start at once on every host",
        || {
            let batches: Vec<_> = hosts
                .iter()
                .enumerate()
                .map(|(k, host)| {
                    let host: &SimHost = host;
                    let names: Vec<String> = (0..4).map(|i| format!("m{k}-{i}")).collect();
                    (host, names)
                })
                .collect();
            std::thread::scope(|scope| {
                for (host, names) in &batches {
                    for name in names {
                        scope.spawn(move || host.run_container(name, "ov1", &[], &[]));
                    }
                }
            });
            let mut ips = BTreeSet::new();
            for (host, names) in &batches {
                for name in names {
                    assert!(
                        ips.insert(host.ip_of(name, "ov1")),
                        "duplicate address for {name}"
                    );
                }
            }
            h3.assert_pings("m2-0", &h1.ip_of("m0-3", "ov1"));
        },
    );

    cases.run("egress and -p from an overlay container", || {
        let web = "mkdir -p /www && echo overlay-web > /www/index.html && httpd -f -p 80 -h /www";
        h1.run_container("web", "ov1", &["-p", "8090:80"], &["sh", "-c", web]);
        h1.assert_pings("web", &h2.addr);
        let url = format!("http://{}:8090/", h1.addr);
        let start_wait = Instant::now();
        let body = loop {
            match run(h2
                .cmd("timeout")
                .args(["5", "busybox", "wget", "-qO-", &url]))
            {
                Ok(body) => break body,
                Err(e) => assert!(
                    start_wait.elapsed() < Duration::from_secs(15),
                    "wget {url}: {e}"
                ),
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        assert_eq!(body, "overlay-web");
    });

    cases.run(
        "a host whose plugin was down resynchronises its entries",
        || {
            h1.create_overlay("ov2", "10.0.81.0/24", &[]);
            for host in &hosts[1..] {
                wait_until(&format!("ov2 on {}", host.netns), 20, || {
                    host.has_network("ov2")
                });
            }
            h2.run_container("gone", "ov2", &[], &[]);
            let gone_mac = docker_ok(
                h2.docker(&[
                    "inspect",
                    "-f",
                    "{{.NetworkSettings.Networks.ov2.MacAddress}}",
                    "gone",
                ]),
                "mac",
            );
            h3.run_container("watcher", "ov2", &[], &[]);
            h3.kill_rustnet();
            h2.run_container("fresh", "ov2", &[], &[]);
            docker_ok(h2.docker(&["rm", "-f", "gone"]), "rm gone");
            h3.start_rustnet(&[port, ("RUSTNET_JOIN", &join)]);
            let fresh = h2.ip_of("fresh", "ov2");
            wait_until("watcher reaches fresh", 20, || {
                h3.pings_within("watcher", &fresh, 1)
            });
            // rustnet's static entries are the VXLAN device's own ("dst VTEP");
            // the bridge may still remember the MAC it saw, until it ages out.
            let fdb = run(h3.cmd("bridge").args(["fdb", "show"])).expect("bridge fdb");
            let stale: Vec<&str> = fdb
                .lines()
                .filter(|l| l.contains(&gone_mac) && l.contains(" dst "))
                .collect();
            assert!(
                stale.is_empty(),
                "stale VXLAN entry for a removed endpoint: {stale:?}"
            );
            let neigh =
                run(h3.cmd("ip").args(["neigh", "show", "nud", "permanent"])).expect("ip neigh");
            assert!(!neigh.contains(&gone_mac), "stale neighbour entry: {neigh}");
        },
    );

    cases.run(
        "docker network rm on one host removes the overlay everywhere, once unused",
        || {
            for (host, names) in [
                (&h1, vec!["c1", "web", "m0-0", "m0-1", "m0-2", "m0-3"]),
                (&h3, vec!["c3", "m2-0", "m2-1", "m2-2", "m2-3"]),
            ] {
                for name in names {
                    let _ = host.docker(&["rm", "-f", name]);
                }
            }
            for name in ["m1-0", "m1-1", "m1-2", "m1-3"] {
                let _ = h2.docker(&["rm", "-f", name]);
            }
            docker_ok(h1.docker(&["network", "rm", "ov1"]), "network rm ov1");
            wait_until("ov1 gone from h3", 20, || !h3.has_network("ov1"));
            // h2 still runs c2 on it: the network stays, working, and takes no
            // new containers.
            assert!(h2.has_network("ov1"));
            let err = h2
                .docker(&[
                    "run",
                    "-d",
                    "--name",
                    "late",
                    "--network",
                    "ov1",
                    IMAGE,
                    "sleep",
                    "60",
                ])
                .unwrap_err();
            assert!(err.contains("is being removed"), "{err}");
            let _ = h2.docker(&["rm", "-f", "late"]);
            docker_ok(h2.docker(&["rm", "-f", "c2"]), "rm c2");
            wait_until("ov1 gone from h2", 20, || !h2.has_network("ov1"));
            std::thread::sleep(Duration::from_secs(3));
            assert!(
                hosts.iter().all(|h| !h.has_network("ov1")),
                "ov1 was re-created"
            );
        },
    );

    cases.run("an overlay on Docker's default IPAM is refused", || {
        let err = h1
            .docker(&[
                "network",
                "create",
                "-d",
                "rustnet",
                "-o",
                "mode=overlay",
                "bad",
            ])
            .unwrap_err();
        assert!(
            err.contains("mode=overlay needs --ipam-driver rustnet"),
            "{err}"
        );
    });

    cases.run(
        "an underlay MTU of 9000 gives overlays an MTU of 8950",
        || {
            // Read when the overlay is created: no restart needed.
            h1.set_underlay_mtu(9000);
            h1.create_overlay("ov9", "10.0.82.0/24", &[]);
            h1.run_container("big", "ov9", &[], &[]);
            let mtu = h1.exec("big", &["cat", "/sys/class/net/eth0/mtu"]);
            let _ = h1.docker(&["rm", "-f", "big"]);
            h1.set_underlay_mtu(1500);
            assert_eq!(docker_ok(mtu, "mtu"), "8950");
        },
    );

    cases.run(
        "rustnet overlays, Docker's bridges and swarm's overlay coexist",
        || {
            let init = [
                "swarm",
                "init",
                "--advertise-addr",
                &h1.addr,
                "--listen-addr",
                &format!("{}:2377", h1.addr),
            ];
            docker_ok(h1.docker(&init), "swarm init");
            let token = docker_ok(h1.docker(&["swarm", "join-token", "-q", "worker"]), "token");
            let manager = format!("{}:2377", h1.addr);
            docker_ok(
                h2.docker(&[
                    "swarm",
                    "join",
                    "--token",
                    &token,
                    "--advertise-addr",
                    &h2.addr,
                    &manager,
                ]),
                "join",
            );
            let swarm = [
                "network",
                "create",
                "-d",
                "overlay",
                "--attachable",
                "--subnet",
                "10.1.90.0/24",
                "swov",
            ];
            docker_ok(h1.docker(&swarm), "swarm overlay");
            h1.create_overlay("ovc", "10.0.90.0/24", &[]);
            wait_until("ovc on h2", 20, || h2.has_network("ovc"));
            docker_ok(
                h2.docker(&["network", "create", "--subnet", "10.2.90.0/24", "plain"]),
                "bridge",
            );
            h1.run_container("sw1", "swov", &[], &[]);
            h2.run_container("sw2", "swov", &[], &[]);
            h1.run_container("rn1", "ovc", &[], &[]);
            h2.run_container("rn2", "ovc", &[], &[]);
            h2.run_container("pl2", "plain", &[], &[]);
            let sw1 = h1.ip_of("sw1", "swov");
            wait_until("swarm overlay across hosts", 20, || {
                h2.pings_within("sw2", &sw1, 1)
            });
            let rn1 = h1.ip_of("rn1", "ovc");
            wait_until("rustnet overlay across hosts", 20, || {
                h2.pings_within("rn2", &rn1, 1)
            });
            h2.assert_pings("pl2", &h1.addr);
            for (host, name) in [
                (&h1, "sw1"),
                (&h2, "sw2"),
                (&h1, "rn1"),
                (&h2, "rn2"),
                (&h2, "pl2"),
            ] {
                let _ = host.docker(&["rm", "-f", name]);
            }
            let _ = h2.docker(&["swarm", "leave", "--force"]);
            let _ = h1.docker(&["swarm", "leave", "--force"]);
        },
    );

    let vxlan_rules = |host: &SimHost| {
        run(host.cmd("iptables").args(["-S", "RUSTNET-VXLAN"])).expect("iptables -S")
    };
    cases.run(
        "VXLAN from outside the cluster is dropped while members' traffic flows",
        || {
            h1.create_overlay("ovx", "10.0.86.0/24", &[]);
            wait_until("ovx on h2", 20, || h2.has_network("ovx"));
            h1.run_container("x1", "ovx", &[], &[]);
            h2.run_container("x2", "ovx", &[], &[]);
            let x1 = h1.ip_of("x1", "ovx");
            wait_until("x2 reaches x1", 15, || h2.pings_within("x2", &x1, 1));
            let rules = vxlan_rules(&h1);
            for member in [&h1, &h2, &h3] {
                assert!(rules.contains(&format!("-s {}/32", member.addr)), "{rules}");
            }
            // A host on the underlay that is not a member sends VXLAN frames
            // of that overlay to h1.
            let intruder = SimHost::start_on(engine);
            intruder.add_vxlan_sender(&h1.vxlan_vni(), None, &h1.addr, port.1, "10.0.86.250/24");
            let dropped = || h1.vxlan_ingress_packets("iptables", "DROP");
            let before = dropped();
            intruder.assert_no_reply_from(&x1, "a non-member");
            assert!(dropped() > before, "h1 dropped nothing from the intruder");
            h2.assert_pings("x2", &x1);
        },
    );

    cases.run(
        "a foreign interface with rustnet's name on one host costs only that overlay there",
        || {
            run(h2
                .cmd("ip")
                .args(["link", "add", "rnx5555", "type", "bridge"]))
            .unwrap_or_else(|e| panic!("foreign bridge on h2: {e}"));
            let pinned = [
                "-o",
                "mode=overlay",
                "--subnet",
                "10.0.92.0/24",
                "-o",
                "vni=5555",
            ];
            h1.create_network("rustnet", "ovf", &pinned);
            wait_until("ovf on h3", 20, || h3.has_network("ovf"));
            h1.run_container("f1", "ovf", &[], &[]);
            h3.run_container("f3", "ovf", &[], &[]);
            let f1 = h1.ip_of("f1", "ovf");
            wait_until("f3 reaches f1", 15, || h3.pings_within("f3", &f1, 1));
            // h2 cannot build it over the foreign link; everyone else keeps
            // it, and h2's other networks are built as usual.
            h1.create_overlay("ovg", "10.0.93.0/24", &[]);
            wait_until("ovg on h2", 20, || h2.has_network("ovg"));
            h2.run_container("g2", "ovg", &[], &[]);
            h1.run_container("g1", "ovg", &[], &[]);
            h2.assert_pings("g2", &h1.ip_of("g1", "ovg"));
            assert!(
                !h2.has_network("ovf"),
                "ovf built on h2 over a foreign rnx5555"
            );
            assert!(h1.has_network("ovf") && h3.has_network("ovf"));
            let link =
                run(h2.cmd("ip").args(["-d", "link", "show", "rnx5555"])).unwrap_or_default();
            assert!(
                link.contains("bridge"),
                "the foreign link was touched: {link}"
            );
            h1.run_container("f1b", "ovf", &[], &[]);
            // The conflict gone, h2 gets the overlay by itself.
            run(h2.cmd("ip").args(["link", "del", "rnx5555"]))
                .unwrap_or_else(|e| panic!("remove the foreign bridge: {e}"));
            wait_until("ovf on h2 once the conflict is gone", 30, || {
                h2.has_network("ovf")
            });
            h2.run_container("f2", "ovf", &[], &[]);
            h2.assert_pings("f2", &f1);
        },
    );

    cases.run(
        "a host removed from the cluster has its entries removed everywhere",
        || {
            h1.create_overlay("ovr", "10.0.91.0/24", &[]);
            wait_until("ovr on h3", 20, || h3.has_network("ovr"));
            h3.run_container("r3", "ovr", &[], &[]);
            let dst = format!("dst {}", h3.addr);
            let entries =
                |host: &SimHost| run(host.cmd("bridge").args(["fdb", "show"])).expect("bridge fdb");
            wait_until("h3's entry on h1", 20, || entries(&h1).contains(&dst));
            let id = h3.status()["host"].to_string();
            h3.kill_rustnet();
            let remove = ["cluster", "remove", id.as_str(), "--socket", &h1.socket()];
            run(h1
                .cmd(&rustnet_tests::rustnet_bin().display().to_string())
                .args(remove))
            .unwrap_or_else(|e| panic!("cluster remove: {e}"));
            for host in [&h1, &h2] {
                wait_until("h3's entries gone", 20, || !entries(host).contains(&dst));
                wait_until("h3 no longer admitted to VXLAN", 20, || {
                    !vxlan_rules(host).contains(&format!("-s {}/32", h3.addr))
                });
            }
            // A plugin that answers (with errors, fast) keeps h3's teardown
            // from waiting on Docker's 30 s retries for a missing socket.
            h3.spawn_rustnet(&[port, ("RUSTNET_REQUEST_TIMEOUT", "1")]);
        },
    );

    cases.finish();
}
