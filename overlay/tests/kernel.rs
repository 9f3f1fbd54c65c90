//! Kernel tests: the netlink and iptables executors against a real kernel,
//! each test in a fresh network namespace of its own thread. They need
//! root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and fail, never pass, without it.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::process::Command;

use ipnet::IpNet;
use nix::sched::{CloneFlags, unshare};
use rustnet_overlay::firewall::{Network, Published, ResolverAddress};
use rustnet_overlay::{Desired, Gateway, Iptables, Kernel, LinkKind, Netlink, Port, plan};

/// Runs `test` on a thread of its own inside a new network namespace, with
/// a tokio runtime entered there (netlink sockets belong to the namespace
/// of the thread that opens them).
fn in_fresh_netns<F, Fut>(test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    in_fresh_netns_on(tokio::runtime::Builder::new_current_thread, test)
}

/// As [`in_fresh_netns`], on a runtime made by `builder`. Only the thread
/// running `test` is in the namespace: a multi-threaded runtime's workers
/// may run only tasks that touch no namespace (the netlink connection,
/// whose socket was opened in it).
fn in_fresh_netns_on<F, Fut>(builder: fn() -> tokio::runtime::Builder, test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let thread = std::thread::spawn(move || {
        if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
            panic!(
                "kernel tests need root (unshare(CLONE_NEWNET) failed: {e}); run them with scripts/test.sh as root"
            );
        }
        let runtime = builder().enable_all().build().unwrap();
        runtime.block_on(test());
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn desired() -> Desired {
    Desired {
        gateways: vec![Gateway {
            name: "rn-test".into(),
            addresses: vec![net("10.0.42.1/24")],
            mtu: 1400,
            mac: Some([2, 0x52, 0x4e, 0, 0x10, 1]),
            vxlan: None,
        }],
        ports: vec![Port {
            host: "rnhtest".into(),
            peer: "rnctest".into(),
            link: "rnm-test".into(),
            gateway: "rn-test".into(),
            mtu: 1400,
            mac: [2, 0x42, 0, 0, 0, 9],
            required: true,
        }],
        ..Default::default()
    }
}

/// Panics unless every one of `lines` is in `rules` exactly once.
fn assert_each_once<'a>(rules: &str, lines: impl IntoIterator<Item = &'a str>) {
    for line in lines {
        assert_eq!(rules.matches(line).count(), 1, "{line} once in:\n{rules}");
    }
}

async fn converge(netlink: &Netlink, desired: &Desired) -> usize {
    let ops = plan(desired, &netlink.observe().await.unwrap()).unwrap();
    for op in &ops {
        netlink
            .apply(op)
            .await
            .unwrap_or_else(|e| panic!("{op}: {e}"));
    }
    let again = plan(desired, &netlink.observe().await.unwrap()).unwrap();
    assert_eq!(again, vec![], "kernel did not converge after {ops:?}");
    ops.len()
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it"]
fn bridge_and_veth_are_built_as_planned_and_seen_as_built() {
    in_fresh_netns(|| async {
        let netlink = Netlink::connect("kernel-test").unwrap();
        assert_eq!(converge(&netlink, &desired()).await, 7);
        let observed = netlink.observe().await.unwrap();
        let bridge = &observed.links["rn-test"];
        assert_eq!(
            (bridge.kind, bridge.mtu, bridge.up, bridge.owned),
            (LinkKind::Bridge, 1400, true, true)
        );
        assert!(
            bridge.addresses.contains(&net("10.0.42.1/24")),
            "{:?}",
            bridge.addresses
        );
        let host = &observed.links["rnhtest"];
        assert_eq!(
            (host.kind, host.master.as_deref(), host.owned),
            (LinkKind::Veth, Some("rn-test"), true)
        );
        assert!(sh("ip -o link show rnctest").contains("link/ether 02:42:00:00:00:09"));
        assert!(sh("ip -o link show rn-test").contains("link/ether 02:52:4e:00:10:01"));
        // The same desired state again: nothing to do.
        assert_eq!(converge(&netlink, &desired()).await, 0);
        // Under another data path id (the state directory replaced), the
        // links are inherited: neither owned nor deleted as leftovers.
        let other = Netlink::connect("another-state").unwrap();
        let observed = other.observe().await.unwrap();
        let bridge = &observed.links["rn-test"];
        assert_eq!((bridge.owned, bridge.inherited), (false, true));
        // The container end is here, not in a container: a leftover pair,
        // the only thing to go (the bridge goes once it has no port).
        assert_eq!(
            plan(&Desired::default(), &observed).unwrap(),
            vec![rustnet_overlay::Op::DeleteLink {
                name: "rnctest".into()
            }]
        );
    });
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it"]
fn leftovers_are_removed_and_foreign_links_left_alone() {
    in_fresh_netns(|| async {
        let netlink = Netlink::connect("kernel-test").unwrap();
        converge(&netlink, &desired()).await;
        sh("ip link add user0 type bridge");
        converge(&netlink, &Desired::default()).await;
        let links = sh("ip -o link show");
        assert!(
            !links.contains("rn-test") && !links.contains("rnhtest") && !links.contains("rnctest"),
            "{links}"
        );
        assert!(links.contains("user0"), "{links}");
    });
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it"]
fn a_deleted_bridge_is_rebuilt_and_its_ports_reattached() {
    in_fresh_netns(|| async {
        let netlink = Netlink::connect("kernel-test").unwrap();
        converge(&netlink, &desired()).await;
        sh("ip link del rn-test");
        let mut after_reboot = desired();
        after_reboot.ports[0].required = false;
        converge(&netlink, &after_reboot).await;
        assert!(sh("ip -o link show rnhtest").contains("master rn-test"));
        assert!(sh("ip -o addr show rn-test").contains("10.0.42.1/24"));
    });
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it"]
fn the_resolver_address_goes_to_rustnet_while_it_runs_and_to_the_host_otherwise() {
    in_fresh_netns(|| async {
        let iptables = Iptables;
        let resolver = ResolverAddress {
            addr: "169.254.53.53".parse().unwrap(),
            port: Some(40002),
            upstream: Some("10.99.0.254".parse().unwrap()),
            local_upstream: Some("127.0.0.53".parse().unwrap()),
            v6: None,
        };
        iptables.apply_resolver(Some(&resolver)).await.unwrap();
        iptables.apply_resolver(Some(&resolver)).await.unwrap();
        let rules = sh("iptables-save -t nat");
        assert_each_once(
            &rules,
            [
                "-A PREROUTING -d 169.254.53.53/32 -j RUSTNET-RESOLVER",
                "-A OUTPUT -d 169.254.53.53/32 -j RUSTNET-RESOLVER-OUT",
                "-A RUSTNET-RESOLVER -d 169.254.53.53/32 -p udp -m udp --dport 53 -m socket --transparent -j REDIRECT --to-ports 40002",
                "-A RUSTNET-RESOLVER -d 169.254.53.53/32 -p tcp -m tcp --dport 53 -m socket --transparent -j REDIRECT --to-ports 40002",
                "-A RUSTNET-RESOLVER -d 169.254.53.53/32 -p udp -m udp --dport 53 -j DNAT --to-destination 10.99.0.254:53",
                "-A RUSTNET-RESOLVER-OUT -d 169.254.53.53/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.53:53",
            ],
        );
        assert!(iptables.intact(&[], &[], None, Some(&resolver)).await);
        sh("iptables -t nat -F RUSTNET-RESOLVER");
        assert!(!iptables.intact(&[], &[], None, Some(&resolver)).await);
        // The host's resolver changed: the fallback follows.
        let moved = ResolverAddress {
            upstream: Some("10.99.0.1".parse().unwrap()),
            ..resolver
        };
        iptables.apply_resolver(Some(&moved)).await.unwrap();
        let rules = sh("iptables-save -t nat");
        assert!(rules.contains("--to-destination 10.99.0.1:53"), "{rules}");
        assert!(
            !rules.contains("--to-destination 10.99.0.254:53"),
            "{rules}"
        );
        assert!(
            !sh("ip6tables-save -t nat").contains("RUSTNET"),
            "no IPv6 resolver address asked for, nothing in ip6tables"
        );
        // With an IPv6 network on the host: the IPv6 resolver address too.
        let dual = ResolverAddress {
            v6: Some(rustnet_overlay::firewall::Resolver6 {
                addr: "fd53::53".parse().unwrap(),
                port: Some(40004),
            }),
            ..moved
        };
        iptables.apply_resolver(Some(&dual)).await.unwrap();
        iptables.apply_resolver(Some(&dual)).await.unwrap();
        let rules6 = sh("ip6tables-save -t nat");
        assert_each_once(
            &rules6,
            [
                "-A PREROUTING -d fd53::53/128 -j RUSTNET-RESOLVER",
                "-A RUSTNET-RESOLVER -d fd53::53/128 -p udp -m udp --dport 53 -m socket --transparent -j REDIRECT --to-ports 40004",
                "-A RUSTNET-RESOLVER -d fd53::53/128 -p tcp -m tcp --dport 53 -m socket --transparent -j REDIRECT --to-ports 40004",
            ],
        );
        assert!(iptables.intact(&[], &[], None, Some(&dual)).await);
        sh("ip6tables -t nat -F RUSTNET-RESOLVER");
        assert!(!iptables.intact(&[], &[], None, Some(&dual)).await);
        iptables.apply_resolver(Some(&moved)).await.unwrap();
        assert!(!sh("ip6tables-save -t nat").contains("RUSTNET"));
        iptables.apply_resolver(None).await.unwrap();
        let rules = sh("iptables-save -t nat");
        assert!(!rules.contains("RUSTNET-RESOLVER"), "{rules}");
    });
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it"]
fn iptables_chains_hold_exactly_the_rules_and_vanish_with_the_last_network() {
    in_fresh_netns(|| async {
        let iptables = Iptables;
        let network = Network {
            bridge: "rn-test".into(),
            subnet: "10.0.42.0/24".parse().ok(),
            internal: false,
            published: vec![Published {
                proto: "tcp".into(),
                host_ip: None,
                host_port: 8080,
                container_ip: "10.0.42.2".parse().unwrap(),
                container_port: 80,
            }],
            dns: vec![rustnet_overlay::firewall::DnsRedirect {
                upstream: "10.99.0.254".parse().unwrap(),
                to: "10.0.42.1:40001".parse().unwrap(),
                guarded: true,
            }],
            legacy_sources: vec![],
            lan: false,
            ipv6: None,
        };
        iptables
            .apply(std::slice::from_ref(&network), &[])
            .await
            .unwrap();
        iptables
            .apply(std::slice::from_ref(&network), &[])
            .await
            .unwrap();
        let rules = sh("iptables-save");
        assert_each_once(
            &rules,
            [
                "-A FORWARD -j DOCKER-USER",
                "-A DOCKER-USER -j RUSTNET",
                "-A RUSTNET -i rn-test -o rn-test -j ACCEPT",
                "-A POSTROUTING -j RUSTNET-POSTROUTING",
                "-A RUSTNET-DNAT ! -i rn-test -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.42.2:80",
                "-A PREROUTING -j RUSTNET-DNS",
                "-A RUSTNET-DNS -d 10.99.0.254/32 -i rn-test -p udp -m udp --dport 53 -m socket --transparent -j DNAT --to-destination 10.0.42.1:40001",
            ],
        );
        // CVE-2020-8558: with route_localnet, nothing from outside reaches 127/8.
        assert!(rules.contains("-A INPUT -j RUSTNET-INPUT"), "{rules}");
        assert!(
            rules.contains("-A RUSTNET-INPUT ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"),
            "{rules}"
        );
        let networks = std::slice::from_ref(&network);
        assert!(iptables.intact(networks, &[], None, None).await);
        sh("iptables -F RUSTNET");
        assert!(
            !iptables.intact(networks, &[], None, None).await,
            "a flush is noticed"
        );
        iptables.apply(networks, &[]).await.unwrap();
        assert!(iptables.intact(networks, &[], None, None).await);
        // The state directory is lost: rn-test is inherited, its rules stay
        // beside a new network's, isolated from it.
        let before = sh("iptables-save");
        let inherited = ["rn-test".to_owned()];
        iptables.apply(&[], &inherited).await.unwrap();
        assert!(iptables.intact(&[], &inherited, None, None).await);
        let new = Network {
            bridge: "rn-new".into(),
            subnet: "10.0.43.0/24".parse().ok(),
            internal: false,
            published: vec![],
            dns: vec![],
            legacy_sources: vec![],
            lan: false,
            ipv6: None,
        };
        iptables
            .apply(std::slice::from_ref(&new), &inherited)
            .await
            .unwrap();
        assert!(
            iptables
                .intact(std::slice::from_ref(&new), &inherited, None, None)
                .await
        );
        let rules = sh("iptables-save");
        assert_each_once(
            &rules,
            before
                .lines()
                .filter(|l| l.starts_with("-A RUSTNET") && l.contains("rn-test")),
        );
        assert_each_once(
            &rules,
            [
                "-A RUSTNET -i rn-new -o rn-test -j DROP",
                "-A RUSTNET -i rn-test -o rn-new -j DROP",
                "-A RUSTNET-POSTROUTING -s 10.0.43.0/24 ! -o rn-new -j MASQUERADE",
            ],
        );
        iptables.apply(&[], &[]).await.unwrap();
        let rules = sh("iptables-save");
        assert!(!rules.contains("RUSTNET"), "{rules}");
    });
}

fn overlay(remotes: Vec<rustnet_overlay::Remote>) -> Desired {
    Desired {
        gateways: vec![Gateway {
            name: "rn-ov".into(),
            addresses: vec![net("10.0.50.1/24")],
            mtu: 1450,
            mac: Some([2, 0x52, 0x4e, 0, 0x10, 0]),
            vxlan: None,
        }],
        vxlans: vec![rustnet_overlay::Vxlan {
            name: "rnx4096".into(),
            vni: 4096,
            local: "127.0.0.1".parse().unwrap(),
            port: 4789,
            mtu: 1450,
            gateway: "rn-ov".into(),
            gateway_prefix: [2, 0x52, 0x4e],
        }],
        ports: vec![],
        remotes,
        floods: vec![],
        lans: vec![],
    }
}

fn remote(last: u8) -> rustnet_overlay::Remote {
    rustnet_overlay::Remote {
        device: "rnx4096".into(),
        mac: [2, 0x42, 0, 0, 0, last],
        ip: format!("10.0.70.{last}").parse().ok(),
        ip6: Some(format!("fd00:70::{last}").parse().unwrap()),
        vtep: format!("192.0.2.{last}").parse().unwrap(),
    }
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it"]
fn vxlan_ports_carry_exactly_the_static_entries_of_remote_endpoints() {
    in_fresh_netns(|| async {
        sh("ip link set lo up");
        let netlink = Netlink::connect("kernel-test").unwrap();
        converge(&netlink, &overlay(vec![remote(2), remote(3)])).await;
        let link = sh("ip -d -o link show rnx4096");
        assert!(
            link.contains("vxlan id 4096") && link.contains("nolearning") && link.contains("proxy"),
            "{link}"
        );
        assert!(link.contains("master rn-ov"), "{link}");
        let fdb = sh("bridge fdb show dev rnx4096");
        assert!(
            fdb.contains("02:42:00:00:00:02 dst 192.0.2.2 self permanent"),
            "{fdb}"
        );
        assert!(
            sh("ip neigh show dev rnx4096")
                .contains("10.0.70.3 lladdr 02:42:00:00:00:03 PERMANENT")
        );
        assert!(
            sh("ip -6 neigh show dev rnx4096")
                .contains("fd00:70::3 lladdr 02:42:00:00:00:03 PERMANENT"),
            "an IPv6 address has its static entry too"
        );
        // A peer leaves: its entries go, the other's stay.
        converge(&netlink, &overlay(vec![remote(2)])).await;
        let fdb = sh("bridge fdb show dev rnx4096");
        assert!(!fdb.contains("02:42:00:00:00:03"), "{fdb}");
        assert!(fdb.contains("02:42:00:00:00:02 dst 192.0.2.2"), "{fdb}");
        assert!(!sh("ip neigh show dev rnx4096").contains("10.0.70.3"));
        assert!(!sh("ip -6 neigh show dev rnx4096").contains("fd00:70::3"));
    });
}

/// What device `name` sent and dropped, in packets.
fn sent(name: &str) -> (u64, u64) {
    let stats = sh(&format!("ip -s -o link show {name}"));
    let numbers: Vec<u64> = stats
        .split("TX:")
        .nth(1)
        .and_then(|tx| tx.split('\\').nth(1))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(numbers.len() >= 4, "{stats}");
    (numbers[1], numbers[3])
}

/// The overlay of [`overlay`] as this release builds it: no bridge, the
/// gateway and each container a macvlan link of the VXLAN device.
fn macvlan_overlay(remotes: Vec<rustnet_overlay::Remote>, endpoints: &[(&str, bool)]) -> Desired {
    let mut desired = overlay(remotes);
    desired.gateways[0].vxlan = Some("rnx4096".into());
    desired.ports = endpoints
        .iter()
        .map(|(id, required)| Port {
            host: format!("rnh{id}"),
            peer: format!("rnc{id}"),
            link: format!("rnm{id}"),
            gateway: "rn-ov".into(),
            mtu: 1450,
            mac: [2, 0x42, 0, 0, 0, 0x21],
            required: *required,
        })
        .collect();
    desired
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it"]
fn an_overlay_puts_its_gateway_and_containers_on_macvlan_links_of_its_vxlan_device() {
    in_fresh_netns(|| async {
        sh("ip link set lo up");
        let netlink = Netlink::connect("kernel-test").unwrap();
        // Its host at 127.0.0.2: what the device sends goes out by lo.
        let remote = rustnet_overlay::Remote {
            ip: "10.0.50.7".parse().ok(),
            vtep: "127.0.0.2".parse().unwrap(),
            ..remote(7)
        };
        let wanted = macvlan_overlay(vec![remote.clone()], &[("ep1", true)]);
        converge(&netlink, &wanted).await;
        let gateway = sh("ip -d -o link show rn-ov");
        assert!(
            gateway.contains("@rnx4096")
                && gateway.contains("macvlan mode bridge")
                && gateway.contains("link/ether 02:52:4e:00:10:00"),
            "{gateway}"
        );
        assert!(sh("ip -o addr show rn-ov").contains("10.0.50.1/24"));
        let vxlan = sh("ip -d -o link show rnx4096");
        assert!(!vxlan.contains("master"), "on no bridge: {vxlan}");
        let guard = sh("tc filter show dev rnx4096 egress");
        assert!(
            guard.contains("bpf") && guard.contains("direct-action"),
            "{guard}"
        );
        let link = sh("ip -d -o link show rnmep1");
        assert!(
            link.contains("@rnx4096") && link.contains("macvlan mode bridge"),
            "{link}"
        );
        // In a container: it reaches the gateway, and the VXLAN device
        // answers its ARP for a remote endpoint from the static entries.
        sh("ip netns add rn-kt-ov 2>/dev/null || true; ip link set rnmep1 netns rn-kt-ov");
        sh("ip -n rn-kt-ov addr add 10.0.50.2/24 dev rnmep1 && ip -n rn-kt-ov link set rnmep1 up");
        let joined = macvlan_overlay(vec![remote], &[("ep1", false)]);
        assert_eq!(converge(&netlink, &joined).await, 0);
        let ping_from_container = |target: &str, wait: &str| {
            let args = [
                "netns", "exec", "rn-kt-ov", "busybox", "ping", "-c1", wait, target,
            ];
            Command::new("ip").args(args).output().unwrap()
        };
        let ping = ping_from_container("10.0.50.1", "-W2");
        let remote_ping = ping_from_container("10.0.50.7", "-W1");
        let neighbours = sh("ip -n rn-kt-ov neigh show 10.0.50.7");
        let from_container = sent("rnx4096");
        // The host itself, from the gateway MAC: dropped at the device.
        let _ = Command::new("busybox")
            .args(["ping", "-c2", "-W1", "10.0.50.7"])
            .output()
            .unwrap();
        let from_host = sent("rnx4096");
        sh("ip netns del rn-kt-ov");
        assert!(
            ping.status.success(),
            "the gateway answers: {}",
            String::from_utf8_lossy(&ping.stdout)
        );
        // No reply (no host 192.0.2.7 here), but its MAC was answered.
        assert!(!remote_ping.status.success());
        assert!(
            neighbours.contains("lladdr 02:42:00:00:00:07"),
            "{neighbours}"
        );
        assert!(
            from_container.0 >= 1,
            "the container's ping left: {from_container:?}"
        );
        assert_eq!(from_host.0, from_container.0, "the host's did not");
        assert!(from_host.1 >= from_container.1 + 2, "{from_host:?}");
        // The overlay gone: its links go.
        converge(&netlink, &Desired::default()).await;
        let observed = netlink.observe().await.unwrap();
        assert!(!observed.links.contains_key("rn-ov"));
        assert!(!observed.links.contains_key("rnx4096"));
    });
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it"]
fn an_overlay_with_multicast_floods_to_each_host_with_endpoints() {
    in_fresh_netns(|| async {
        sh("ip link set lo up");
        let netlink = Netlink::connect("kernel-test").unwrap();
        let flood = |last: u8| rustnet_overlay::Flood {
            device: "rnx4096".into(),
            vtep: format!("192.0.2.{last}").parse().unwrap(),
        };
        let with = |floods| Desired {
            floods,
            ..overlay(vec![remote(2), remote(3)])
        };
        converge(&netlink, &with(vec![flood(2), flood(3)])).await;
        let fdb = sh("bridge fdb show dev rnx4096");
        for vtep in ["192.0.2.2", "192.0.2.3"] {
            assert!(
                fdb.contains(&format!("00:00:00:00:00:00 dst {vtep} self permanent")),
                "one all-zero entry per host: {fdb}"
            );
        }
        assert!(fdb.contains("02:42:00:00:00:02 dst 192.0.2.2"), "{fdb}");
        // One host goes: its copy only.
        converge(&netlink, &with(vec![flood(3)])).await;
        let fdb = sh("bridge fdb show dev rnx4096");
        assert!(!fdb.contains("00:00:00:00:00:00 dst 192.0.2.2"), "{fdb}");
        assert!(fdb.contains("00:00:00:00:00:00 dst 192.0.2.3"), "{fdb}");
        // Multicast off again: no copies, the static entries stay.
        converge(&netlink, &with(vec![])).await;
        let fdb = sh("bridge fdb show dev rnx4096");
        assert!(!fdb.contains("00:00:00:00:00:00"), "{fdb}");
        assert!(fdb.contains("02:42:00:00:00:03 dst 192.0.2.3"), "{fdb}");
    });
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it"]
fn an_overlay_runs_over_an_ipv6_underlay() {
    in_fresh_netns(|| async {
        sh("ip link set lo up");
        let netlink = Netlink::connect("kernel-test").unwrap();
        // An IPv6 VTEP, one dual-stack remote and one IPv6-only remote
        // (on an IPv6-only overlay), flooding to both hosts.
        let mut desired = overlay(vec![
            rustnet_overlay::Remote {
                vtep: "fd99::2".parse().unwrap(),
                ..remote(2)
            },
            rustnet_overlay::Remote {
                ip: None,
                vtep: "fd99::3".parse().unwrap(),
                ..remote(3)
            },
        ]);
        desired.vxlans[0].local = "::1".parse().unwrap();
        desired.floods = ["fd99::2", "fd99::3"]
            .map(|vtep| rustnet_overlay::Flood {
                device: "rnx4096".into(),
                vtep: vtep.parse().unwrap(),
            })
            .to_vec();
        converge(&netlink, &desired).await;
        let link = sh("ip -d -o link show rnx4096");
        assert!(link.contains("local ::1"), "the tunnel's source: {link}");
        let fdb = sh("bridge fdb show dev rnx4096");
        for want in [
            "02:42:00:00:00:02 dst fd99::2 self permanent",
            "02:42:00:00:00:03 dst fd99::3 self permanent",
            "00:00:00:00:00:00 dst fd99::2 self permanent",
            "00:00:00:00:00:00 dst fd99::3 self permanent",
        ] {
            assert!(fdb.contains(want), "{want} in:\n{fdb}");
        }
        let neigh = sh("ip neigh show dev rnx4096");
        assert!(neigh.contains("10.0.70.2 lladdr"), "{neigh}");
        assert!(!neigh.contains("10.0.70.3"), "IPv6-only: {neigh}");
        assert!(
            sh("ip -6 neigh show dev rnx4096")
                .contains("fd00:70::3 lladdr 02:42:00:00:00:03 PERMANENT")
        );
        // Read back as written: a second pass changes nothing.
        let ops = plan(&desired, &netlink.observe().await.unwrap()).unwrap();
        assert!(ops.is_empty(), "{ops:?}");
        // A host goes: its entries go, the other's stay.
        desired.remotes.truncate(1);
        desired.floods.truncate(1);
        converge(&netlink, &desired).await;
        let fdb = sh("bridge fdb show dev rnx4096");
        assert!(!fdb.contains("fd99::3"), "{fdb}");
        assert!(fdb.contains("00:00:00:00:00:00 dst fd99::2"), "{fdb}");
    });
}

/// The kernel runs one dump at a time per netlink socket and refuses a
/// second with EBUSY: reads through one connection at once (a pass's read
/// beside a network's MTU lookup), on a multi-threaded runtime as the
/// daemon's, must all succeed.
#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it"]
fn reads_at_once_through_one_connection_all_succeed() {
    in_fresh_netns_on(tokio::runtime::Builder::new_multi_thread, || async {
        let netlink = Netlink::connect("kernel-test").unwrap();
        converge(&netlink, &desired()).await;
        // Enough links that a dump takes several reads to finish.
        sh(
            "for i in $(seq 1 120); do echo link add d$i type bridge; echo addr add 10.1.$((i / 200)).$((i % 200))/32 dev d$i; echo link set d$i up; done | ip -batch -",
        );
        let underlay: std::net::IpAddr = "10.0.42.1".parse().unwrap();
        for _ in 0..5 {
            let observes = (0..4).map(|_| netlink.observe());
            let mtus = (0..4).map(|_| netlink.mtu_of(underlay));
            let (observed, mtus) = futures::future::join(
                futures::future::join_all(observes),
                futures::future::join_all(mtus),
            )
            .await;
            for o in observed {
                assert!(o.unwrap().links.contains_key("rn-test"));
            }
            for mtu in mtus {
                assert_eq!(mtu.unwrap(), Some(1400));
            }
        }
    });
}

/// The tunnel runs the kernel's WireGuard where the kernel has it and
/// userspace where not, saying why (this test machine's kernel has none:
/// the VM test `kernel_wireguard` runs the kernel's end to end); asked for
/// the kernel's where there is none, it refuses; asked for userspace, it
/// runs userspace.
#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it"]
fn the_tunnel_runs_the_kernels_wireguard_or_says_why_not() {
    use rustnet_overlay::tunnel::{Implementation, Kind, Tunnel, TunnelSpec};
    in_fresh_netns(|| async {
        let kernel_has_it = Command::new("ip")
            .args(["link", "add", "rn-wgprobe", "type", "wireguard"])
            .output()
            .unwrap()
            .status
            .success();
        if kernel_has_it {
            sh("ip link del rn-wgprobe");
        }
        let spec = |n: u8| TunnelSpec {
            device: format!("rn-wg{n}"),
            address: std::net::Ipv4Addr::new(169, 254, 192, n + 1),
            prefix: 18,
            mtu: 1420,
            port: 51871 + u16::from(n),
            vxlan_port: 7951,
        };
        let auto = Tunnel::start(spec(0), [1; 32], Implementation::Auto)
            .await
            .unwrap();
        let link = sh("ip -d -o link show rn-wg0");
        assert!(link.contains("mtu 1420") && link.contains(",UP"), "{link}");
        let kernel = Tunnel::start(spec(1), [2; 32], Implementation::Kernel).await;
        if kernel_has_it {
            assert_eq!(auto.kind(), Kind::Kernel);
            assert!(link.contains("wireguard"), "{link}");
            assert_eq!(kernel.unwrap().kind(), Kind::Kernel);
        } else {
            assert_eq!(auto.kind(), Kind::Userspace);
            assert_eq!(
                auto.kernel_unavailable(),
                Some("the kernel has no WireGuard")
            );
            assert!(
                link.contains("type tap") && link.contains("vnet_hdr on"),
                "a TAP device with the virtio-net header: {link}"
            );
            assert!(link.contains("NOARP"), "it answers no ARP: {link}");
            let refused = kernel.unwrap_err().to_string();
            assert!(refused.contains("the kernel has no WireGuard"), "{refused}");
        }
        let userspace = Tunnel::start(spec(2), [3; 32], Implementation::Userspace)
            .await
            .unwrap();
        assert_eq!(userspace.kind(), Kind::Userspace);
        assert_eq!(userspace.kernel_unavailable(), None, "not tried");
    });
}

fn lan_network(links: &[(&str, bool)], routes: &[&str]) -> Desired {
    Desired {
        lans: vec![rustnet_overlay::Lan {
            name: "rnslan".into(),
            kind: rustnet_overlay::LanKind::Macvlan,
            parent: "lan0".into(),
            vlan: None,
            mtu: 1500,
            shim: Some(rustnet_overlay::Shim {
                name: "rnslan".into(),
                address: net("192.168.50.64/32"),
                routes: routes.iter().map(|r| r.parse().unwrap()).collect(),
            }),
            links: links
                .iter()
                .map(|(name, required)| rustnet_overlay::LanLink {
                    name: (*name).into(),
                    mac: Some([2, 0x42, 0, 0, 0, 0x41]),
                    required: *required,
                })
                .collect(),
        }],
        ..Default::default()
    }
}

#[test]
#[ignore = "needs root and network namespaces: scripts/test.sh runs it"]
fn a_macvlan_network_gets_its_links_shim_and_host_routes_on_the_parent() {
    in_fresh_netns(|| async {
        sh(
            "ip link add lan0 type veth peer name lan0p && ip link set lan0 up && ip link set lan0p up",
        );
        let netlink = Netlink::connect("kernel-test").unwrap();
        let wanted = lan_network(&[("rnmaaaa", true)], &["192.168.50.65"]);
        converge(&netlink, &wanted).await;
        let observed = netlink.observe().await.unwrap();
        let link = &observed.links["rnmaaaa"];
        assert_eq!(
            (link.kind, link.owned, link.up),
            (LinkKind::Macvlan, true, false)
        );
        assert_eq!(link.mac, Some([2, 0x42, 0, 0, 0, 0x41]));
        assert!(sh("ip -d link show rnmaaaa").contains("macvlan mode bridge"));
        let shim = &observed.links["rnslan"];
        assert_eq!((shim.kind, shim.up), (LinkKind::Macvlan, true));
        assert!(shim.addresses.contains(&net("192.168.50.64/32")));
        assert!(
            sh("ip route show dev rnslan").contains("192.168.50.65 proto static scope link"),
            "{}",
            sh("ip route")
        );
        assert!(
            observed
                .routes
                .contains(&("rnslan".to_owned(), "192.168.50.65".parse().unwrap()))
        );
        // Docker moved the link into the container: not re-created once
        // no longer required; the container gone: its route goes.
        sh("ip netns add lan-test-ct 2>/dev/null || true; ip link set rnmaaaa netns lan-test-ct");
        let joined = lan_network(&[("rnmaaaa", false)], &["192.168.50.65"]);
        assert_eq!(converge(&netlink, &joined).await, 0);
        sh("ip netns del lan-test-ct");
        converge(&netlink, &lan_network(&[], &[])).await;
        assert!(!sh("ip route show dev rnslan").contains("192.168.50.65"));
        // The network gone: shim gone, parent kept.
        converge(&netlink, &Desired::default()).await;
        let observed = netlink.observe().await.unwrap();
        assert!(!observed.links.contains_key("rnslan"));
        assert!(observed.links.contains_key("lan0"));
    });
}
