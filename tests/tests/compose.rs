//! The compose example (`contrib/compose/docker-compose.yml`) with Debian
//! 12's docker-compose against a real dockerd: a rustnet bridge network
//! that compose creates and an existing overlay, services reaching each
//! other (and a container on another host) by name, a service scaled, and
//! nothing left after `down`.

// Scenarios run as a test per engine (on_every_engine!), where a failed
// expect or unwrap is a failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

use rustnet_tests::{Engine, IMAGE, SimHost, on_every_engine, run, wait_until};

const COMPOSE_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../contrib/compose/docker-compose.yml"
);

fn compose(host: &SimHost, args: &[&str]) -> Result<String, String> {
    run(Command::new("docker-compose")
        .env("DOCKER_HOST", host.docker_host())
        .env("IMAGE", IMAGE)
        .args(["-f", COMPOSE_FILE, "-p", "demo"])
        .args(args))
}

fn ok(result: Result<String, String>, what: &str) -> String {
    result.unwrap_or_else(|e| panic!("docker-compose {what}: {e}"))
}

on_every_engine!(the_compose_example_runs_on_rustnet_networks);

fn the_compose_example_runs_on_rustnet_networks(engine: Engine) {
    assert!(
        run(Command::new("docker-compose").arg("version")).is_ok(),
        "docker-compose is missing: scripts/test.sh installs Debian's docker-compose"
    );
    let h1 = SimHost::start_on(engine);
    let h2 = SimHost::start_on(engine);
    h1.start_rustnet(&[]);
    let join = format!("{}:7950", h1.addr);
    let token = h1.join_token();
    h2.start_rustnet(&[
        ("RUSTNET_JOIN", join.as_str()),
        ("RUSTNET_JOIN_TOKEN", &token),
    ]);
    h1.create_overlay("ov", "10.0.80.0/24", &[]);
    wait_until("ov on h2", 10, || h2.has_network("ov"));
    h2.run_container("far", "ov", &[], &[]);

    ok(compose(&h1, &["up", "-d"]), "up");
    let driver = h1
        .docker(&[
            "network",
            "inspect",
            "-f",
            "{{.Driver}} {{.IPAM.Driver}}",
            "demo_front",
        ])
        .unwrap_or_else(|e| panic!("inspect demo_front: {e}"));
    assert_eq!(driver, "rustnet rustnet");
    let ping = |from: &str, target: &str| {
        compose(
            &h1,
            &["exec", "-T", from, "ping", "-c", "1", "-W", "2", target],
        )
    };
    ok(ping("client", "web"), "client pings web");
    ok(ping("edge", "client"), "edge pings client over the overlay");
    wait_until("edge resolves far on h2", 15, || {
        ping("edge", "far").is_ok()
    });

    ok(compose(&h1, &["up", "-d", "--scale", "web=2"]), "scale");
    let webs = ok(compose(&h1, &["ps", "-q", "web"]), "ps");
    assert_eq!(webs.lines().count(), 2, "{webs}");
    for name in ["demo_web_1", "demo_web_2"] {
        ok(ping("client", name), "client pings each replica");
    }

    ok(compose(&h1, &["down"]), "down");
    let left = h1.docker(&["ps", "-aq"]).expect("docker ps");
    assert!(left.trim().is_empty(), "containers left: {left}");
    assert!(
        h1.docker(&["network", "inspect", "demo_front"]).is_err(),
        "demo_front left"
    );
    let status = h1.status();
    let endpoints: usize = status["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n["endpoints"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(endpoints, 0, "{status}");
    let pools: Vec<&str> = status["pools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["pool"].as_str())
        .collect();
    assert_eq!(
        pools,
        ["10.0.80.0/24"],
        "only the overlay's pool stays: {status}"
    );
}
