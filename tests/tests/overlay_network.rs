//! An overlay that behaves like one network, on three simulated hosts:
//! usable everywhere at once, names and aliases across hosts, one
//! interface with the overlay's own gateway on every host, egress and `-p`
//! on the container's host, network connect and disconnect of a running
//! container, its stop, start and restart, and all of it through a plugin
//! kill -9 and a dockerd restart. On every engine of the matrix (20.10, 26,
//! 28), each host set up as the README says (on 28, daemon.json's `dns`
//! names rustnet's resolver address).

// Each end-to-end scenario reads as one story, start to finish; it runs as
// a test per engine (on_every_engine!), where a failed expect is a failure.
#![allow(clippy::too_many_lines, clippy::expect_used, clippy::unwrap_used)]

use rustnet_tests::{
    Cases, Engine, IMAGE, SimHost, UPSTREAM_ADDR, UPSTREAM_NAME, docker_ok, on_every_engine, run,
    wait_until,
};

const UDP_ECHO: &str = env!("CARGO_BIN_EXE_udp-echo");

fn lookup(host: &SimHost, container: &str, name: &str) -> Result<Vec<String>, String> {
    host.lookup(container, name)
}

/// Whether `host`'s rustnet has learned which container `name` is.
fn learned(host: &SimHost, name: &str) -> bool {
    let status = host.status();
    status["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|n| n["endpoints"].as_array().into_iter().flatten())
        .any(|e| e["container"] == name)
}

fn resolves_to(host: &SimHost, container: &str, name: &str, ip: &str) -> bool {
    lookup(host, container, name).is_ok_and(|ips| ips == [ip])
}

/// Endpoint links in `host`'s own namespace: those of containers are in
/// the containers' namespaces, so none at rest.
fn loose_links(host: &SimHost) -> Vec<String> {
    run(host.cmd("ip").args(["-o", "link", "show"]))
        .expect("ip link")
        .lines()
        .filter(|l| [": rnm", ": rnh", ": rnc"].iter().any(|p| l.contains(p)))
        .map(str::to_owned)
        .collect()
}

/// Waits until `container` (on `near`) and web1 (on `far`) reach and
/// resolve each other over "ov"; the container's address there.
fn meets_web1(near: &SimHost, far: &SimHost, container: &str, step: &str) -> String {
    let ip = near.ip_of(container, "ov");
    let web1 = far.ip_of("web1", "ov");
    wait_until(&format!("{step}: {container} resolves web1"), 10, || {
        resolves_to(near, container, "web1", &web1)
    });
    near.assert_pings(container, "web1");
    wait_until(&format!("{step}: web1 reaches {container}"), 10, || {
        far.pings_within("web1", &ip, 1)
    });
    wait_until(&format!("{step}: web1 resolves {container}"), 10, || {
        resolves_to(far, "web1", container, &ip)
    });
    ip
}

/// Panics unless web1 (on `far`) has lost `container`, which was at `ip`:
/// no reply from there, and its name no longer resolves.
fn gone_from_web1(far: &SimHost, container: &str, ip: &str) {
    assert!(
        !far.pings_within("web1", ip, 1),
        "{ip} of {container} still answers"
    );
    wait_until(&format!("{container} forgotten by web1"), 5, || {
        lookup(far, "web1", container).is_err()
    });
}

on_every_engine!(an_overlay_is_one_network_across_hosts);

fn an_overlay_is_one_network_across_hosts(engine: Engine) {
    let start = || SimHost::spec().engine(engine).tools(&[UDP_ECHO]).start();
    let (h1, h2, h3) = (start(), start(), start());
    let joining = h1.start_cluster(&[&h2, &h3]);
    let mut cases = Cases::new(|| {});

    cases.run(
        "a network created on one host takes containers on the others at once",
        || {
            h1.create_overlay("ov", "10.0.70.0/24", &[]);
            // No waiting for a poll: the change drives every host's Docker.
            wait_until("ov on h2 and h3", 2, || {
                h2.has_network("ov") && h3.has_network("ov")
            });
            h2.run_container("web1", "ov", &["--network-alias", "www"], &[]);
            h1.run_container("c1", "ov", &[], &[]);
            h3.run_container("c3", "ov", &[], &[]);
        },
    );

    cases.run(
        "an overlay container has one interface and the overlay's gateway on every host",
        || {
            let links = docker_ok(h1.exec("c1", &["ls", "/sys/class/net"]), "links");
            assert_eq!(links.split_whitespace().collect::<Vec<_>>(), ["eth0", "lo"]);
            let route = docker_ok(h1.exec("c1", &["ip", "route"]), "route");
            assert!(route.contains("default via 10.0.70.1 dev eth0"), "{route}");
            for host in [&h1, &h2, &h3] {
                assert!(
                    run(host.cmd("ip").args(["link", "show", "docker_gwbridge"])).is_err(),
                    "docker_gwbridge on {}",
                    host.netns
                );
            }
            // The same gateway MAC, answered locally, on both hosts.
            let gateway_mac = |host: &SimHost, c: &str| {
                host.assert_pings(c, "10.0.70.1");
                docker_ok(host.exec(c, &["ip", "neigh", "show", "10.0.70.1"]), "neigh")
            };
            let (m1, m2) = (gateway_mac(&h1, "c1"), gateway_mac(&h2, "web1"));
            assert!(m1.contains("lladdr 02:52:4e:"), "{m1}");
            assert_eq!(m1, m2);
            // Egress is NATed out of the host's own underlay: the underlay
            // gateway has no route to the overlay.
            h1.assert_pings("c1", "10.99.0.254");
            // The gateway never speaks across VXLAN: what h1 itself sends
            // to a container on h2 (from the gateway MAC that h2's gateway
            // holds too) never arrives there. Had it arrived, the
            // container's replies would go to h2's own gateway, where this
            // rule counts them; h2's own ping shows that it counts.
            let web1 = h2.ip_of("web1", "ov");
            let rule = [
                "INPUT",
                "-s",
                &web1,
                "-p",
                "icmp",
                "--icmp-type",
                "echo-reply",
                "-j",
                "ACCEPT",
            ];
            run(h2.cmd("iptables").arg("-I").args(rule)).expect("counting rule on h2");
            let counted = || {
                let listing = run(h2
                    .cmd("iptables")
                    .args(["-L", "INPUT", "1", "-v", "-n", "-x"]))
                .expect("iptables -L");
                listing
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("no counter in {listing}"))
            };
            let from_h1 = run(h1
                .cmd("busybox")
                .args(["ping", "-c", "3", "-W", "1", &web1]));
            let after_h1 = counted();
            let from_h2 = run(h2
                .cmd("busybox")
                .args(["ping", "-c", "1", "-W", "2", &web1]));
            let after_h2 = counted();
            run(h2.cmd("iptables").arg("-D").args(rule)).expect("counting rule removed");
            assert!(
                from_h1.is_err(),
                "h1 reached a container on h2 from its gateway"
            );
            assert_eq!(after_h1, 0, "gateway frames crossed VXLAN");
            assert!(
                from_h2.is_ok() && after_h2 >= 1,
                "the rule counts: {after_h2}"
            );
        },
    );

    cases.run(
        "containers resolve each other by name, alias and name.network across hosts",
        || {
            let web1 = h2.ip_of("web1", "ov");
            let c3 = h3.ip_of("c3", "ov");
            wait_until("web1 resolves on h1", 10, || {
                resolves_to(&h1, "c1", "web1", &web1)
            });
            let short_id =
                docker_ok(h2.docker(&["inspect", "-f", "{{.Id}}", "web1"]), "id")[..12].to_owned();
            for name in ["www", "web1.ov", "www.ov", &short_id] {
                assert_eq!(lookup(&h1, "c1", name), Ok(vec![web1.clone()]), "{name}");
            }
            wait_until("c3 resolves on h2", 10, || {
                resolves_to(&h2, "web1", "c3", &c3)
            });
            h1.assert_pings("c1", "web1");
            h3.assert_pings("c3", "www");
            // Names rustnet does not know: the host's resolver, unchanged.
            assert_eq!(
                lookup(&h1, "c1", UPSTREAM_NAME),
                Ok(vec![UPSTREAM_ADDR.to_string()])
            );
            assert!(lookup(&h1, "c1", "nowhere.test").is_err());
            // An explicit --dns upstream is followed too.
            h1.run_container("dnsc", "ov", &["--dns", "10.99.0.254"], &[]);
            wait_until("web1 with --dns", 10, || {
                resolves_to(&h1, "dnsc", "web1", &web1)
            });
            assert_eq!(
                lookup(&h1, "dnsc", UPSTREAM_NAME),
                Ok(vec![UPSTREAM_ADDR.to_string()])
            );
            let _ = h1.docker(&["rm", "-f", "dnsc"]);
        },
    );

    cases.run(
        "names of networks a container is not on never resolve; other networks' DNS is unchanged",
        || {
            h1.create_overlay("other", "10.0.71.0/24", &[]);
            wait_until("other on h3", 5, || h3.has_network("other"));
            h3.run_container("secret", "other", &[], &[]);
            let secret = h3.ip_of("secret", "other");
            wait_until("secret learned", 10, || learned(&h3, "secret"));
            assert!(lookup(&h1, "c1", "secret").is_err(), "secret leaked to ov");
            assert!(lookup(&h1, "c1", "secret.other").is_err());
            // A container on one of Docker's own networks: as before.
            docker_ok(
                h1.docker(&["network", "create", "--subnet", "10.2.70.0/24", "plain"]),
                "plain",
            );
            h1.run_container("pl", "plain", &[], &[]);
            assert!(lookup(&h1, "pl", "web1").is_err());
            assert_eq!(
                lookup(&h1, "pl", UPSTREAM_NAME),
                Ok(vec![UPSTREAM_ADDR.to_string()])
            );
            let _ = h1.docker(&["rm", "-f", "pl"]);
            let _ = h1.docker(&["network", "rm", "plain"]);
            // A host-network container: as the host resolves.
            let host_net = h1.docker(&[
                "run",
                "--rm",
                "--network",
                "host",
                IMAGE,
                "nslookup",
                UPSTREAM_NAME,
            ]);
            assert!(
                host_net
                    .as_ref()
                    .is_ok_and(|out| out.contains(&UPSTREAM_ADDR.to_string())),
                "{host_net:?}"
            );
            // And on a rustnet bridge network beside the overlays.
            h1.create_network("rustnet", "rnbr", &["--subnet", "10.3.70.0/24"]);
            h1.run_container("br1", "rnbr", &[], &[]);
            h1.run_container("br2", "rnbr", &[], &[]);
            let br2 = h1.ip_of("br2", "rnbr");
            assert_eq!(lookup(&h1, "br1", "br2"), Ok(vec![br2]), "Docker's own DNS");
            assert!(lookup(&h1, "br1", "web1").is_err());
            assert_eq!(
                lookup(&h1, "br1", UPSTREAM_NAME),
                Ok(vec![UPSTREAM_ADDR.to_string()])
            );
            for c in ["br1", "br2"] {
                let _ = h1.docker(&["rm", "-f", c]);
            }
            let _ = h1.docker(&["network", "rm", "rnbr"]);
            let _ = h3.docker(&["rm", "-f", "secret"]);
            assert!(!secret.is_empty());
        },
    );

    cases.run("an address in use names its container and host", || {
        let web1 = h2.ip_of("web1", "ov");
        let err = h3
            .docker(&[
                "run",
                "-d",
                "--name",
                "dup",
                "--network",
                "ov",
                "--ip",
                &web1,
                IMAGE,
                "sleep",
                "60",
            ])
            .unwrap_err();
        let _ = h3.docker(&["rm", "-f", "dup"]);
        assert!(
            err.contains(&format!(
                "address {web1} is already in use by container web1 on"
            )),
            "{err}"
        );
        assert!(learned(&h2, "web1"), "rustnet status names web1");
    });

    cases.run(
        "-p publishes tcp and udp on the container's host, for other hosts and its 127.0.0.1",
        || {
            let serve = "udp-echo serve 53 & mkdir -p /www && echo overlay-web > /www/index.html && httpd -f -p 80 -h /www";
            h1.run_container("pub", "ov", &["-p", "8090:80", "-p", "9053:53/udp"], &["sh", "-c", serve]);
            let url = format!("http://{}:8090/", h1.addr);
            wait_until("wget from h2", 15, || {
                run(h2.cmd("timeout").args(["5", "busybox", "wget", "-qO-", &url])).is_ok_and(|b| b == "overlay-web")
            });
            wait_until("wget 127.0.0.1 on h1", 15, || {
                run(h1.cmd("timeout").args(["5", "busybox", "wget", "-qO-", "http://127.0.0.1:8090/"]))
                    .is_ok_and(|b| b == "overlay-web")
            });
            let target = format!("{}:9053", h1.addr);
            wait_until("udp from h2", 15, || {
                run(h2.cmd(UDP_ECHO).args(["ask", &target, "ping"])).is_ok_and(|b| b == "pong:ping")
            });
            // Published on the container's host only.
            let elsewhere = format!("http://{}:8090/", h3.addr);
            assert!(run(h2.cmd("timeout").args(["3", "busybox", "wget", "-qO-", &elsewhere])).is_err());
            // Docker does not show a remote driver's ports; rustnet status
            // does, with the container's name once it has learned it (in
            // the background, a moment after the container started).
            wait_until("h1 learns pub", 10, || learned(&h1, "pub"));
            let shown = docker_ok(
                run(h1.cmd(&rustnet_tests::rustnet_bin().display().to_string()).args(["status", "--socket", &h1.socket()])),
                "rustnet status",
            );
            assert!(shown.contains(" pub ") && shown.contains("8090->80/tcp") && shown.contains("9053->53/udp"), "{shown}");
            let _ = h1.docker(&["rm", "-f", "pub"]);
        },
    );

    cases.run(
        "an --internal overlay has names across hosts, no egress and no default route",
        || {
            h1.create_overlay("inner", "10.0.72.0/24", &["--internal"]);
            wait_until("inner on h2", 5, || h2.has_network("inner"));
            h1.run_container("i1", "inner", &[], &[]);
            h2.run_container("i2", "inner", &[], &[]);
            let i2 = h2.ip_of("i2", "inner");
            wait_until("i1 reaches i2", 15, || h1.pings_within("i1", &i2, 1));
            let route = docker_ok(h1.exec("i1", &["ip", "route"]), "route");
            assert!(!route.contains("default"), "{route}");
            assert!(!h1.pings_within("i1", "10.99.0.254", 1));
            // Names across hosts, and no query leaves the network.
            wait_until("i2 resolves on h1", 10, || {
                resolves_to(&h1, "i1", "i2", &i2)
            });
            assert!(lookup(&h1, "i1", UPSTREAM_NAME).is_err());
            let links = docker_ok(h1.exec("i1", &["ls", "/sys/class/net"]), "links");
            assert_eq!(links.split_whitespace().collect::<Vec<_>>(), ["eth0", "lo"]);
            let _ = h1.docker(&["rm", "-f", "i1"]);
            let _ = h2.docker(&["rm", "-f", "i2"]);
        },
    );

    cases.run(
        "removed and renamed containers are followed everywhere",
        || {
            h3.run_container("brief", "ov", &[], &[]);
            let brief = h3.ip_of("brief", "ov");
            wait_until("brief resolves", 10, || {
                resolves_to(&h1, "c1", "brief", &brief)
            });
            docker_ok(h3.docker(&["rm", "-f", "brief"]), "rm brief");
            wait_until("brief forgotten within 2 s", 3, || {
                lookup(&h1, "c1", "brief").is_err()
            });
            docker_ok(h3.docker(&["rename", "c3", "c3-renamed"]), "rename");
            let c3 = h3.ip_of("c3-renamed", "ov");
            wait_until("the new name resolves", 10, || {
                resolves_to(&h1, "c1", "c3-renamed", &c3)
            });
            assert!(lookup(&h1, "c1", "c3").is_err(), "the old name is gone");
        },
    );

    cases.run(
        "network connect and disconnect a running container, nothing left behind",
        || {
            assert_eq!(loose_links(&h1), Vec::<String>::new(), "before");
            h1.create_overlay("side", "10.0.73.0/24", &[]);
            h1.run_container("mover", "side", &[], &[]);
            for round in 0..2 {
                docker_ok(h1.docker(&["network", "connect", "ov", "mover"]), "connect");
                // One more interface (Docker's older engines name it eth2
                // on the second connect), holding the overlay's address.
                let links = docker_ok(h1.exec("mover", &["ls", "/sys/class/net"]), "links");
                assert_eq!(
                    links.split_whitespace().count(),
                    3,
                    "round {round}: {links}"
                );
                let mover = meets_web1(&h1, &h2, "mover", &format!("round {round}"));
                assert!(mover.starts_with("10.0.70."), "{mover}");
                let addresses = docker_ok(h1.exec("mover", &["ip", "-o", "addr"]), "addresses");
                assert!(
                    addresses.contains(&format!("inet {mover}/24")),
                    "{addresses}"
                );
                docker_ok(
                    h1.docker(&["network", "disconnect", "ov", "mover"]),
                    "disconnect",
                );
                let links = docker_ok(h1.exec("mover", &["ls", "/sys/class/net"]), "links");
                assert_eq!(
                    links.split_whitespace().collect::<Vec<_>>(),
                    ["eth0", "lo"],
                    "round {round}"
                );
                assert_eq!(
                    loose_links(&h1),
                    Vec::<String>::new(),
                    "after disconnect, round {round}"
                );
                gone_from_web1(&h2, "mover", &mover);
                assert!(
                    lookup(&h1, "mover", "web1").is_err(),
                    "mover still resolves ov's names"
                );
                h1.assert_pings("mover", "10.0.73.1");
            }
            docker_ok(h1.docker(&["rm", "-f", "mover"]), "rm mover");
            docker_ok(h1.docker(&["network", "rm", "side"]), "rm side");
            assert_eq!(loose_links(&h1), Vec::<String>::new(), "after rm");
        },
    );

    cases.run(
        "docker stop, start and restart of an overlay container, seen from another host",
        || {
            h1.run_container("cycled", "ov", &[], &[]);
            let first = meets_web1(&h1, &h2, "cycled", "run");
            docker_ok(h1.docker(&["stop", "-t", "0", "cycled"]), "stop");
            assert_eq!(loose_links(&h1), Vec::<String>::new(), "after stop");
            gone_from_web1(&h2, "cycled", &first);
            docker_ok(h1.docker(&["start", "cycled"]), "start");
            meets_web1(&h1, &h2, "cycled", "start");
            docker_ok(h1.docker(&["restart", "-t", "0", "cycled"]), "restart");
            meets_web1(&h1, &h2, "cycled", "restart");
            let links = docker_ok(h1.exec("cycled", &["ls", "/sys/class/net"]), "links");
            assert_eq!(links.split_whitespace().collect::<Vec<_>>(), ["eth0", "lo"]);
            docker_ok(h1.docker(&["rm", "-f", "cycled"]), "rm cycled");
            assert_eq!(loose_links(&h1), Vec::<String>::new(), "after rm");
        },
    );

    cases.run(
        "a plugin kill -9 keeps the data path; a dockerd restart brings names back",
        || {
            let web1 = h2.ip_of("web1", "ov");
            let c1 = h1.ip_of("c1", "ov");
            h2.kill_rustnet();
            h2.assert_pings("web1", &c1);
            h2.assert_pings("web1", "10.99.0.254");
            h1.assert_pings("c1", &web1);
            // Every name outside rustnet still resolves, on overlays and
            // Docker's own networks alike.
            assert_eq!(
                lookup(&h2, "web1", UPSTREAM_NAME),
                Ok(vec![UPSTREAM_ADDR.to_string()]),
                "an overlay container while rustnet is down"
            );
            docker_ok(
                h2.docker(&["network", "create", "--subnet", "10.2.71.0/24", "plain2"]),
                "plain2",
            );
            h2.run_container("pl2", "plain2", &[], &[]);
            assert_eq!(
                lookup(&h2, "pl2", UPSTREAM_NAME),
                Ok(vec![UPSTREAM_ADDR.to_string()]),
                "a container on Docker's own network while rustnet is down"
            );
            let _ = h2.docker(&["rm", "-f", "pl2"]);
            let _ = h2.docker(&["network", "rm", "plain2"]);
            h2.start_rustnet(&joining.env());
            wait_until("names again on h2", 10, || {
                resolves_to(&h2, "web1", "c1", &c1)
            });
            h3.restart_dockerd(&[]);
            h3.run_container("after", "ov", &[], &[]);
            wait_until("names from the restarted host", 15, || {
                resolves_to(&h3, "after", "web1", &web1)
            });
            let after = h3.ip_of("after", "ov");
            wait_until("and of it", 15, || resolves_to(&h1, "c1", "after", &after));
        },
    );

    cases.finish();
}
