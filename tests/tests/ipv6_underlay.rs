//! Overlays over an IPv6 underlay: three simulated hosts advertise IPv6
//! addresses (fd99::K) only, form the cluster over IPv6 and carry VXLAN
//! over IPv6: containers on different hosts talk (ping, TCP, by name), the
//! overlay's MTU leaves room for the longer outer header, VXLAN from a
//! non-member's IPv6 address is dropped, and on Docker 28 an IPv6-only
//! overlay (`--ipv4=false`) runs IPv6 end to end. On every engine of the
//! matrix (20.10, 26, 28).

// Each end-to-end scenario reads as one story, start to finish; it runs as
// a test per engine (on_every_engine!), where a failed expect is a failure.
#![allow(clippy::too_many_lines, clippy::expect_used, clippy::unwrap_used)]

use rustnet_tests::{Cases, Engine, SimHost, docker_ok, on_every_engine, run, wait_until};

on_every_engine!(overlays_run_over_an_ipv6_underlay);

fn overlays_run_over_an_ipv6_underlay(engine: Engine) {
    let start = || SimHost::spec().engine(engine).start();
    let (h1, h2, h3) = (start(), start(), start());
    for host in [&h1, &h2, &h3] {
        host.add_underlay6();
    }
    let first = h1.underlay6();
    h1.start_rustnet(&[("RUSTNET_ADVERTISE_ADDR", &first)]);
    let join = format!("[{first}]:7950");
    let token = h1.join_token();
    for host in [&h2, &h3] {
        let own = host.underlay6();
        host.start_rustnet(&[
            ("RUSTNET_ADVERTISE_ADDR", &own),
            ("RUSTNET_JOIN", &join),
            ("RUSTNET_JOIN_TOKEN", &token),
        ]);
    }
    let mut cases = Cases::new(|| {});

    cases.run("the cluster forms over IPv6", || {
        wait_until("three members", 30, || {
            h1.try_status().is_ok_and(|s| {
                s["cluster"]["members"]
                    .as_array()
                    .is_some_and(|m| m.len() == 3)
            })
        });
        let status = h3.status();
        let addrs: Vec<&str> = status["cluster"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["addr"].as_str())
            .collect();
        for host in [&h1, &h2, &h3] {
            let addr = format!("[{}]:7950", host.underlay6());
            assert!(addrs.contains(&addr.as_str()), "{addr} in {addrs:?}");
        }
    });

    cases.run(
        "containers on different hosts talk through VXLAN over IPv6, by name too",
        || {
            h1.create_overlay("ov", "10.0.91.0/24", &[]);
            wait_until("ov on h2 and h3", 10, || {
                h2.has_network("ov")
                    && h3.has_network("ov")
            });
            let serve =
                "mkdir -p /www && echo over-ipv6-underlay > /www/index.html && httpd -f -p 80 -h /www";
            h2.run_container("w2", "ov", &[], &["sh", "-c", serve]);
            h3.run_container("c3", "ov", &[], &[]);
            let w2 = h2.ip_of("w2", "ov");
            assert!(h3.pings_within("c3", &w2, 10), "c3 -> w2 across hosts");
            let page = docker_ok(
                h3.exec("c3", &["timeout", "5", "wget", "-qO-", &format!("http://{w2}/")]),
                "TCP across hosts",
            );
            assert!(page.contains("over-ipv6-underlay"), "{page}");
            assert!(h3.pings_within("c3", "w2", 10), "w2 by name from h3");
            // It came over IPv6: h2 admitted h3's VXLAN by its IPv6 address
            // (the IPv4 chain admits no one: no member advertises IPv4).
            assert!(
                h2.vxlan_ingress_packets("ip6tables", &h3.underlay6()) > 0,
                "h2 took no VXLAN from h3 over IPv6: {}",
                run(h2.cmd("ip6tables").args(["-S", "RUSTNET-VXLAN"])).unwrap_or_default()
            );
            let ipv4 = run(h2.cmd("iptables").args(["-S", "RUSTNET-VXLAN"])).expect("iptables -S");
            assert!(!ipv4.contains("RETURN"), "{ipv4}");
            // VXLAN over IPv6 costs 70 bytes of the underlay's 1500.
            let mtu = docker_ok(h3.exec("c3", &["cat", "/sys/class/net/eth0/mtu"]), "mtu");
            assert_eq!(mtu.trim(), "1430");
        },
    );

    cases.run(
        "VXLAN from an IPv6 address outside the cluster is dropped",
        || {
            let details = h2.vxlan_details();
            assert!(
                details.contains(&format!("local {}", h2.underlay6())),
                "{details}"
            );
            let intruder = SimHost::start_on(engine);
            intruder.add_underlay6();
            intruder.add_vxlan_sender(
                &h2.vxlan_vni(),
                Some(&intruder.underlay6()),
                &h2.underlay6(),
                "4789",
                "10.0.91.250/24",
            );
            let before = h2.vxlan_ingress_packets("ip6tables", "DROP");
            let w2 = h2.ip_of("w2", "ov");
            intruder.assert_no_reply_from(&w2, "a non-member");
            assert!(
                h2.vxlan_ingress_packets("ip6tables", "DROP") > before,
                "h2 dropped nothing from the intruder"
            );
            assert!(h3.pings_within("c3", &w2, 5), "members still talk");
        },
    );

    cases.run(
        "an IPv6-only overlay where the engine has it (28) runs IPv6 end to end",
        || {
            if engine != Engine::Sid {
                // --ipv4=false arrived with Docker 28: an older engine
                // ignores it, and the network has IPv4 as well.
                h1.assert_ipv4_false_ignored("only6", &["-o", "mode=overlay"]);
                return;
            }
            h1.create_network(
                "rustnet",
                "only6",
                &["--ipv4=false", "--ipv6", "-o", "mode=overlay"],
            );
            wait_until("only6 on h2 and h3", 10, || {
                h2.has_network("only6") && h3.has_network("only6")
            });
            let serve =
                "mkdir -p /www && echo only-ipv6 > /www/index.html && httpd -f -p 80 -h /www";
            h2.run_container("s2", "only6", &[], &["sh", "-c", serve]);
            h3.run_container("s3", "only6", &[], &[]);
            h3.assert_no_ipv4("s3");
            let s2 = h2.ip6_of("s2", "only6");
            assert!(h3.pings6_within("s3", &s2, 10), "s3 -> s2 over IPv6");
            let page = docker_ok(
                h3.exec(
                    "s3",
                    &["timeout", "5", "wget", "-qO-", &format!("http://[{s2}]/")],
                ),
                "TCP over an IPv6-only overlay",
            );
            assert!(page.contains("only-ipv6"), "{page}");
            assert!(h3.pings6_within("s3", "s2", 10), "s2 by name from h3");
        },
    );
    cases.finish();
}
