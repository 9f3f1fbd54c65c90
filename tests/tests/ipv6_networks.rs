//! Dual-stack rustnet networks (`--ipv6`) on three simulated hosts whose
//! underlay has IPv6 too (fd99::K): on a bridge network, containers talk
//! over IPv6 by name, two networks stay apart, `--internal` keeps its
//! containers in, egress is masqueraded, `-p` publishes on the host's IPv6
//! address; on an overlay, containers on different hosts talk over IPv6
//! (ping and TCP) and find each other's IPv6 address by name; on Docker 28,
//! IPv6-only bridge and overlay networks work.
//! On every engine of the matrix (20.10, 26, 28).

// Each end-to-end scenario reads as one story, start to finish; it runs as
// a test per engine (on_every_engine!), where a failed expect is a failure.
#![allow(clippy::too_many_lines, clippy::expect_used, clippy::unwrap_used)]

use std::net::Ipv6Addr;

use rustnet_tests::{Cases, Engine, SimHost, docker_ok, on_every_engine, run, wait_until, within};

fn pings6(host: &SimHost, container: &str, target: &str) -> bool {
    host.exec(container, &["ping", "-6", "-c", "1", "-W", "2", target])
        .is_ok()
}

/// `container` reaches `target` over IPv6 within 10 s.
fn reaches6(host: &SimHost, container: &str, target: &str) {
    assert!(
        host.pings6_within(container, target, 10),
        "{container} -> {target} over IPv6: not within 10 s"
    );
}

fn create(host: &SimHost, name: &str, extra: &[&str]) {
    host.create_network("rustnet", name, &[&["--ipv6"], extra].concat());
}

on_every_engine!(dual_stack_networks_carry_ipv6_like_ipv4);

fn dual_stack_networks_carry_ipv6_like_ipv4(engine: Engine) {
    let start = || SimHost::spec().engine(engine).start();
    let (h1, h2, h3) = (start(), start(), start());
    for host in [&h1, &h2, &h3] {
        host.add_underlay6();
    }
    h1.start_cluster(&[&h2, &h3]);
    let mut cases = Cases::new(|| {});

    cases.run(
        "containers of a dual-stack bridge network talk over IPv6, by name too",
        || {
            create(&h1, "br6", &["--subnet", "10.0.95.0/24"]);
            h1.run_container("a1", "br6", &[], &[]);
            h1.run_container("a2", "br6", &[], &[]);
            let a2 = h1.ip6_of("a2", "br6");
            assert!(a2.starts_with("fd"), "a unique local address: {a2}");
            reaches6(&h1, "a1", &a2);
            reaches6(&h1, "a1", "a2");
        },
    );

    cases.run(
        "egress over IPv6 is masqueraded; --internal keeps its containers in",
        || {
            let h2_underlay = h2.underlay6();
            reaches6(&h1, "a1", &h2_underlay);
            create(
                &h1,
                "in6",
                &[
                    "--internal",
                    "--subnet",
                    "10.0.97.0/24",
                    "--subnet",
                    "fd00:97::/64",
                ],
            );
            h1.run_container("i1", "in6", &[], &[]);
            h1.run_container("i2", "in6", &[], &[]);
            reaches6(&h1, "i1", &h1.ip6_of("i2", "in6"));
            assert!(
                !pings6(&h1, "i1", &h2_underlay),
                "out of an internal network"
            );
        },
    );

    cases.run("two IPv6 networks stay apart", || {
        create(&h1, "other6", &["--subnet", "10.0.98.0/24"]);
        h1.run_container("o1", "other6", &[], &[]);
        // o1 works (its address is in use), and yet not towards br6.
        reaches6(&h1, "o1", &h2.underlay6());
        let a2 = h1.ip6_of("a2", "br6");
        assert!(!pings6(&h1, "o1", &a2), "other6 -> br6");
        assert!(
            !pings6(&h1, "a1", &h1.ip6_of("o1", "other6")),
            "br6 -> other6"
        );
    });

    cases.run("-p publishes on the host's IPv6 address too", || {
        h1.run_container(
            "web6",
            "br6",
            &["-p", "8086:80"],
            &[
                "sh",
                "-c",
                "mkdir -p /www && echo over-ipv6 > /www/index.html && httpd -f -p 80 -h /www",
            ],
        );
        let url = format!("http://[{}]:8086/", h1.underlay6());
        let served = within(10, || {
            run(h2
                .cmd("timeout")
                .args(["5", "busybox", "wget", "-qO-", &url]))
            .is_ok_and(|page| page.contains("over-ipv6"))
        });
        let rules = run(&mut h1.cmd("ip6tables-save")).unwrap_or_default();
        assert!(
            served,
            "the page over IPv6 from h2, {url}; h1's ip6tables: {rules}"
        );
    });

    cases.run(
        "IPv6-only networks where the engine has them (28), bridge and overlay",
        || {
            if engine != Engine::Sid {
                // --ipv4=false arrived with Docker 28: an older engine
                // ignores it, and the network has IPv4 as well.
                h1.assert_ipv4_false_ignored("v6only", &[]);
                return;
            }
            create(&h1, "v6only", &["--ipv4=false"]);
            h1.run_container("s1", "v6only", &[], &[]);
            h1.run_container("s2", "v6only", &[], &[]);
            h1.assert_no_ipv4("s1");
            reaches6(&h1, "s1", "s2");
            reaches6(&h1, "s1", &h2.underlay6());
            assert!(
                !pings6(&h1, "s1", &h1.ip6_of("a2", "br6")),
                "isolated from br6"
            );
            // An IPv6-only overlay, over this IPv4 underlay.
            create(&h1, "ov6only", &["--ipv4=false", "-o", "mode=overlay"]);
            wait_until("ov6only on h2 and h3", 10, || {
                h2.has_network("ov6only") && h3.has_network("ov6only")
            });
            h2.run_container("t2", "ov6only", &[], &[]);
            h3.run_container("t3", "ov6only", &[], &[]);
            reaches6(&h3, "t3", &h2.ip6_of("t2", "ov6only"));
            reaches6(&h3, "t3", "t2");
        },
    );

    cases.run(
        "on a dual-stack overlay, containers on different hosts talk over IPv6 and find each other's IPv6 address by name",
        || {
            create(
                &h1,
                "ov6",
                &["-o", "mode=overlay", "--subnet", "10.0.96.0/24"],
            );
            wait_until("ov6 on h2 and h3", 5, || {
                h2.has_network("ov6")
                    && h3.has_network("ov6")
            });
            let serve = "mkdir -p /www && echo overlay-ipv6 > /www/index.html && httpd -f -p 80 -h /www";
            h2.run_container("w2", "ov6", &[], &["sh", "-c", serve]);
            h3.run_container("c3", "ov6", &[], &[]);
            let w2 = h2.ip6_of("w2", "ov6");
            let c3 = h3.ip6_of("c3", "ov6");
            let prefix = |ip: &str| ip.parse::<Ipv6Addr>().unwrap().segments()[..4].to_vec();
            assert_eq!(prefix(&w2), prefix(&c3), "one /64 on every host: {w2}, {c3}");
            wait_until("c3 -> w2 over IPv6", 10, || pings6(&h3, "c3", &w2));
            let page = docker_ok(
                h3.exec("c3", &["timeout", "5", "wget", "-qO-", &format!("http://[{w2}]/")]),
                "TCP over IPv6 across hosts",
            );
            assert!(page.contains("overlay-ipv6"), "{page}");
            wait_until("w2 by name, over IPv6, from h3", 10, || {
                pings6(&h3, "c3", "w2")
            });
            let gateway = docker_ok(h3.exec("c3", &["ip", "-6", "route"]), "route");
            assert!(gateway.contains("default via "), "{gateway}");
        },
    );
    cases.finish();
}
