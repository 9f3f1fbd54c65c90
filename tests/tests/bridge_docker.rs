//! rustnet's bridge mode on a real dockerd: `docker network create -d rustnet
//! --ipam-driver rustnet`, driven with the docker CLI on simulated hosts.

// Each end-to-end scenario reads as one story, start to finish.
#![allow(clippy::too_many_lines, clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rustnet_tests::{Cases, Engine, SimHost, docker_ok, on_every_engine, run, wait_until};

const UDP_ECHO: &str = env!("CARGO_BIN_EXE_udp-echo");

fn assert_no_ping(host: &SimHost, container: &str, target: &str) {
    assert!(
        !host.pings_within(container, target, 2),
        "{container} can ping {target}, which must be isolated"
    );
}

/// Retries `f` for up to 10 s (a server in a fresh container needs a moment).
fn eventually(what: &str, mut f: impl FnMut() -> Result<String, String>) -> String {
    let start = Instant::now();
    loop {
        match f() {
            Ok(out) => return out,
            Err(e) if start.elapsed() > Duration::from_secs(10) => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Links and firewall rules left by rustnet on `host`, but the resolver
/// address's (host-wide, kept while rustnet is installed: see
/// [`resolver_rules`]).
fn leftovers(host: &SimHost) -> Vec<String> {
    let links = run(host.cmd("ip").args(["-o", "link", "show"])).expect("ip link");
    let rules = run(&mut host.cmd("iptables-save")).expect("iptables-save");
    links
        .lines()
        .filter(|l| {
            l.contains(": rn-")
                || l.contains(": rnh")
                || l.contains(": rnc")
                || l.contains("alias rustnet")
        })
        .chain(
            rules
                .lines()
                .filter(|l| l.contains("RUSTNET") && !l.contains("RUSTNET-RESOLVER")),
        )
        .map(str::to_owned)
        .collect()
}

/// The resolver address's rules on `host`.
fn resolver_rules(host: &SimHost) -> Vec<String> {
    let rules = run(host.cmd("iptables-save").args(["-t", "nat"])).expect("iptables-save");
    rules
        .lines()
        .filter(|l| l.starts_with("-A") && l.contains("RUSTNET-RESOLVER"))
        .map(str::to_owned)
        .collect()
}

on_every_engine!(bridge_mode_on_a_real_dockerd);

fn bridge_mode_on_a_real_dockerd(engine: Engine) {
    let host = SimHost::spec().engine(engine).tools(&[UDP_ECHO]).start();
    let peer = SimHost::start_on(engine);
    host.start_rustnet(&[]);
    let mut cases = Cases::new(|| host.reset());

    cases.run(
        "containers talk by address, name and name.network; MTU and MAC as asked",
        || {
            host.create_network(
                "rustnet",
                "br1",
                &[
                    "--subnet",
                    "10.0.60.0/24",
                    "-o",
                    "com.docker.network.driver.mtu=1400",
                ],
            );
            host.run_container("ca", "br1", &[], &[]);
            host.run_container("cb", "br1", &[], &[]);
            host.assert_pings("cb", &host.ip_of("ca", "br1"));
            host.assert_pings("cb", "ca");
            host.assert_pings("ca", "cb.br1");
            assert_eq!(
                docker_ok(host.exec("ca", &["cat", "/sys/class/net/eth0/mtu"]), "mtu"),
                "1400"
            );
            // The MAC rustnet chose is what Docker reports and eth0 carries.
            let mac = docker_ok(
                host.docker(&[
                    "inspect",
                    "-f",
                    "{{.NetworkSettings.Networks.br1.MacAddress}}",
                    "cb",
                ]),
                "mac",
            );
            assert_eq!(
                docker_ok(
                    host.exec("cb", &["cat", "/sys/class/net/eth0/address"]),
                    "eth0 mac"
                ),
                mac
            );
            assert_eq!(
                u8::from_str_radix(&mac[..2], 16).map(|b| b & 3),
                Ok(2),
                "{mac}: locally administered"
            );
            let gateway = docker_ok(
                host.exec("ca", &["ip", "route", "show", "default"]),
                "route",
            );
            assert!(gateway.contains("via 10.0.60.1 dev eth0"), "{gateway}");
        },
    );

    cases.run(
        "networks are isolated from each other and from Docker's bridges",
        || {
            host.create_network("rustnet", "iso1", &["--subnet", "10.0.61.0/24"]);
            host.create_network("rustnet", "iso2", &["--subnet", "10.0.62.0/24"]);
            docker_ok(
                host.docker(&["network", "create", "--subnet", "10.0.63.0/24", "dockernet"]),
                "docker network",
            );
            host.run_container("c1", "iso1", &[], &[]);
            host.run_container("c2", "iso2", &[], &[]);
            host.run_container("c3", "dockernet", &[], &[]);
            host.run_container("c4", "bridge", &[], &[]);
            let (ip2, ip3, ip4) = (
                host.ip_of("c2", "iso2"),
                host.ip_of("c3", "dockernet"),
                host.ip_of("c4", "bridge"),
            );
            let ip1 = host.ip_of("c1", "iso1");
            assert_no_ping(&host, "c1", &ip2);
            assert_no_ping(&host, "c2", &ip1);
            assert_no_ping(&host, "c1", &ip3);
            assert_no_ping(&host, "c1", &ip4);
            assert_no_ping(&host, "c3", &ip1);
            assert_no_ping(&host, "c4", &ip1);
            // On both networks, c1 gets eth1 and reaches c2; disconnected, not.
            docker_ok(
                host.docker(&["network", "connect", "iso2", "c1"]),
                "connect",
            );
            let eth1 = docker_ok(
                host.exec("c1", &["ip", "-4", "-o", "addr", "show", "eth1"]),
                "eth1",
            );
            assert!(eth1.contains("10.0.62."), "{eth1}");
            host.assert_pings("c1", &ip2);
            host.assert_pings("c1", "c2");
            docker_ok(
                host.docker(&["network", "disconnect", "iso2", "c1"]),
                "disconnect",
            );
            assert!(
                host.exec("c1", &["ip", "link", "show", "eth1"]).is_err(),
                "eth1 still there"
            );
            assert_no_ping(&host, "c1", &ip2);
        },
    );

    cases.run(
        "egress is masqueraded, but not from --internal networks",
        || {
            host.create_network("rustnet", "out", &["--subnet", "10.0.64.0/24"]);
            host.create_network(
                "rustnet",
                "inside",
                &["--subnet", "10.0.65.0/24", "--internal"],
            );
            host.run_container("o1", "out", &[], &[]);
            host.run_container("i1", "inside", &[], &[]);
            host.run_container("i2", "inside", &[], &[]);
            // The peer host has no route back to 10.0.64.0/24: only NAT answers.
            host.assert_pings("o1", &peer.addr);
            assert_no_ping(&host, "i1", &peer.addr);
            host.assert_pings("i1", "i2");
            let routes = docker_ok(host.exec("i1", &["ip", "route"]), "routes");
            assert!(
                !routes.contains("default"),
                "internal network has a default route: {routes}"
            );
        },
    );

    cases.run("-p publishes tcp and udp on the host's addresses until the container stops", || {
        host.create_network("rustnet", "pub", &["--subnet", "10.0.66.0/24"]);
        let web = "mkdir -p /www && echo hello-from-rustnet > /www/index.html && httpd -f -p 80 -h /www";
        let serve = format!("udp-echo serve 53 & {web}");
        host.run_container("web", "pub", &["-p", "8080:80", "-p", "9053:53/udp"], &["sh", "-c", &serve]);
        let url = format!("http://{}:8080/", host.addr);
        let from_peer = eventually("wget from the peer host", || run(peer.cmd("timeout").args(["5", "busybox", "wget", "-qO-", &url])));
        assert_eq!(from_peer, "hello-from-rustnet");
        let local = eventually("wget 127.0.0.1 on the host", || {
            run(host.cmd("timeout").args(["5", "busybox", "wget", "-qO-", "http://127.0.0.1:8080/"]))
        });
        assert_eq!(local, "hello-from-rustnet");
        let udp = eventually("udp from the peer host", || {
            run(peer.cmd(UDP_ECHO).args(["ask", &format!("{}:9053", host.addr), "ping"]))
        });
        assert_eq!(udp, "pong:ping");
        // route_localnet is on: nothing from outside may reach 127.0.0.0/8.
        let rules = || run(&mut host.cmd("iptables-save")).unwrap_or_default();
        assert!(rules().contains("-A RUSTNET-INPUT ! -s 127.0.0.0/8 -d 127.0.0.0/8"), "{}", rules());
        // Rules flushed by something else come back by themselves.
        let count = |text: &str| text.lines().filter(|l| l.starts_with("-A RUSTNET")).count();
        let before = count(&rules());
        run(host.cmd("iptables").args(["-F", "RUSTNET"])).unwrap();
        run(host.cmd("iptables").args(["-t", "nat", "-F", "RUSTNET-DNAT"])).unwrap();
        assert!(count(&rules()) < before);
        wait_until("the flushed rules back", 15, || count(&rules()) == before);
        let again = eventually("wget from the peer host after the flush", || run(peer.cmd("timeout").args(["5", "busybox", "wget", "-qO-", &url])));
        assert_eq!(again, "hello-from-rustnet");
        docker_ok(host.docker(&["stop", "-t", "0", "web"]), "stop");
        let after = run(peer.cmd("timeout").args(["5", "busybox", "wget", "-qO-", &url]));
        assert!(after.is_err(), "still answering after stop: {after:?}");
    });

    cases.run(
        "a killed plugin leaves containers talking; restarted, it serves and rebuilds",
        || {
            host.create_network("rustnet", "keep", &["--subnet", "10.0.67.0/24"]);
            host.run_container("k1", "keep", &[], &[]);
            host.run_container("k2", "keep", &[], &[]);
            host.kill_rustnet();
            host.assert_pings("k1", "k2");
            host.start_rustnet(&[]);
            host.run_container("k3", "keep", &[], &[]);
            host.assert_pings("k3", "k1");
            docker_ok(host.docker(&["rm", "-f", "k2"]), "rm after restart");
            // The bridge vanishes behind rustnet's back (as after a reboot):
            // the next Join rebuilds it and re-attaches the others.
            let bridge = format!(
                "rn-{}",
                &docker_ok(
                    host.docker(&["network", "inspect", "-f", "{{.Id}}", "keep"]),
                    "id"
                )[..12]
            );
            run(host.cmd("ip").args(["link", "del", &bridge]))
                .unwrap_or_else(|e| panic!("delete {bridge}: {e}"));
            host.run_container("k4", "keep", &[], &[]);
            host.assert_pings("k4", "k1");
            host.assert_pings("k3", "k4");
        },
    );

    cases.run("unknown -o keys and overlays on Docker's IPAM are refused", || {
        let err = host.docker(&["network", "create", "-d", "rustnet", "-o", "colour=blue", "bad"]).unwrap_err();
        assert!(err.contains("invalid option \"colour\": unknown -o key; valid keys: mode, com.docker.network.driver.mtu, vni, com.docker.network.bridge.name, rustnet.overlay"), "{err}");
        let err = host.docker(&["network", "create", "-d", "rustnet", "-o", "mode=overlay", "ov"]).unwrap_err();
        assert!(err.contains("mode=overlay needs --ipam-driver rustnet"), "{err}");
        assert!(host.docker(&["network", "inspect", "bad"]).is_err() && host.docker(&["network", "inspect", "ov"]).is_err());
    });

    cases.run(
        "nothing of rustnet remains once its networks are gone",
        || {
            host.create_network(
                "rustnet",
                "tmp",
                &[
                    "--subnet",
                    "10.0.68.0/24",
                    "-o",
                    "com.docker.network.bridge.name=rntest0",
                ],
            );
            host.run_container("t1", "tmp", &["-p", "8081:80"], &[]);
            assert!(!leftovers(&host).is_empty(), "nothing was built");
            docker_ok(host.docker(&["rm", "-f", "t1"]), "rm");
            docker_ok(host.docker(&["network", "rm", "tmp"]), "network rm");
            let links = run(host.cmd("ip").args(["-o", "link", "show"])).expect("ip link");
            assert!(!links.contains("rntest0"), "{links}");
            assert_eq!(leftovers(&host), Vec::<String>::new());
            // The resolver address stays, so that a container whose
            // daemon.json names it resolves with or without rustnet.
            let resolver = resolver_rules(&host);
            assert!(
                resolver.iter().any(|r| r.contains("-d 169.254.53.53/32 -p udp -m udp --dport 53 -j DNAT --to-destination 10.99.0.254:53")),
                "{resolver:?}"
            );
        },
    );

    cases.finish();
}
