//! What changed in Docker 28, as a user meets it on two simulated hosts
//! running it: without the daemon.json line names across hosts are missing
//! and `rustnet status` says so and for whom; with it they work; IPv6-only
//! bridge and overlay networks are created, the overlay on both hosts.

// The scenario reads as one story, start to finish.
#![allow(clippy::too_many_lines)]

use rustnet_tests::{
    Cases, Engine, RESOLVER_ADDR, SimHost, UPSTREAM_ADDR, UPSTREAM_NAME, docker_ok, run,
    rustnet_bin, wait_until,
};

/// Whether `host`'s rustnet has learned which container `name` is.
fn learned(host: &SimHost, name: &str) -> bool {
    host.status()["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|n| n["endpoints"].as_array().into_iter().flatten())
        .any(|e| e["container"] == name)
}

fn status_text(host: &SimHost) -> String {
    docker_ok(
        run(host.cmd(&rustnet_bin().display().to_string()).args([
            "status",
            "--socket",
            &host.socket(),
        ])),
        "rustnet status",
    )
}

#[test]
#[ignore = "needs root, network namespaces and dockerd: scripts/test.sh runs it"]
fn docker_28_needs_the_dns_line_and_says_so() {
    let engine = Engine::Sid;
    assert!(engine.needs_dns_setting(), "{engine} is older than 28");
    let start = || SimHost::spec().engine(engine).dns_setting(false).start();
    let (h1, h2) = (start(), start());
    h1.start_cluster(&[&h2]);
    let mut cases = Cases::new(|| {});

    cases.run(
        "without the line: same-host and outside names only, and status names who lacks it",
        || {
            h1.create_overlay("ov", "10.0.75.0/24", &[]);
            wait_until("ov on h2", 5, || h2.has_network("ov"));
            h2.run_container("web1", "ov", &[], &[]);
            h1.run_container("c1", "ov", &[], &[]);
            h1.run_container("c1b", "ov", &[], &[]);
            wait_until("web1 and c1 learned", 10, || {
                learned(&h1, "c1") && learned(&h2, "web1")
            });
            let c1b = h1.ip_of("c1b", "ov");
            assert_eq!(h1.lookup("c1", "c1b"), Ok(vec![c1b]), "Docker's own names");
            assert_eq!(
                h1.lookup("c1", UPSTREAM_NAME),
                Ok(vec![UPSTREAM_ADDR.to_string()])
            );
            let web1 = h2.ip_of("web1", "ov");
            h1.assert_pings("c1", &web1);
            assert!(
                h1.lookup("c1", "web1").is_err(),
                "Docker 28 asks the host's resolver from its own namespace"
            );
            let names = &h1.status()["names"];
            assert_eq!(names["needs_setting"], true, "{names}");
            assert_eq!(names["resolver_address"], RESOLVER_ADDR, "{names}");
            assert!(
                names["engine"]
                    .as_str()
                    .is_some_and(|v| v.starts_with(&format!("{}.", engine.major()))),
                "{names}"
            );
            assert_eq!(names["missing_for"], serde_json::json!(["c1", "c1b"]));
            let text = status_text(&h1);
            assert!(
                text.contains("MISSING SETTING")
                    && text.contains("add \"dns\": [\"169.254.53.53\"] to /etc/docker/daemon.json")
                    && text.contains(": c1, c1b"),
                "{text}"
            );
        },
    );

    cases.run(
        "with the line (and the containers started again), names across hosts",
        || {
            docker_ok(
                h1.sh(&format!(
                    "echo '{{\"dns\": [\"{RESOLVER_ADDR}\"]}}' > /etc/docker/daemon.json"
                )),
                "daemon.json",
            );
            h1.restart_dockerd(&[]);
            for c in ["c1", "c1b"] {
                let _ = h1.docker(&["rm", "-f", c]);
            }
            h1.run_container("c1", "ov", &[], &[]);
            let web1 = h2.ip_of("web1", "ov");
            wait_until("web1 resolves on h1", 15, || {
                h1.lookup("c1", "web1")
                    .is_ok_and(|ips| ips == [web1.clone()])
            });
            assert_eq!(
                h1.lookup("c1", UPSTREAM_NAME),
                Ok(vec![UPSTREAM_ADDR.to_string()])
            );
            wait_until("status content", 10, || {
                h1.status()["names"]["missing_for"] == serde_json::json!([])
            });
            let text = status_text(&h1);
            assert!(
                text.contains("every overlay container here has it"),
                "{text}"
            );
        },
    );

    cases.run(
        "IPv6-only networks are created, an overlay on both hosts without IPv4",
        || {
            let v6only = |name: &str, extra: &[&str]| {
                let options = [
                    &["--ipv4=false", "--ipv6", "--subnet", "fd00:75::/64"],
                    extra,
                ];
                h1.try_create_network("rustnet", name, &options.concat())
            };
            docker_ok(v6only("v6only", &[]), "an IPv6-only bridge network");
            docker_ok(h1.docker(&["network", "rm", "v6only"]), "removed");
            docker_ok(
                v6only("v6overlay", &["-o", "mode=overlay"]),
                "an IPv6-only overlay",
            );
            wait_until("v6overlay on h2", 10, || h2.has_network("v6overlay"));
            let shape = docker_ok(
                h2.docker(&[
                    "network",
                    "inspect",
                    "-f",
                    "{{.EnableIPv4}} {{.EnableIPv6}} {{range .IPAM.Config}}{{.Subnet}}{{end}}",
                    "v6overlay",
                ]),
                "inspect on h2",
            );
            assert_eq!(shape.trim(), "false true fd00:75::/64");
        },
    );

    cases.finish();
}
