//! Churn without leaks: container create/remove cycles across three hosts
//! on bridge and overlay networks, with a plugin kill -9 (and a container
//! removed while it is down) and a dockerd restart on some host every so
//! often; afterwards no host holds a leaked address, endpoint, link, FDB or
//! neighbour entry, or firewall rule.
//!
//! `RUSTNET_CHURN_CYCLES` sets the number of cycles: the suite runs 100,
//! `RUSTNET_CHURN_CYCLES=10000 cargo test -p rustnet-tests --test churn -- --include-ignored`
//! is the long run.

use rustnet_tests::{IMAGE, SimHost, docker_ok, wait_until};

/// What a host holds of rustnet's, counted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Footprint {
    endpoints: usize,
    addresses: usize,
    veths: usize,
    fdb: usize,
    neighbours: usize,
    rules: usize,
}

fn count(host: &SimHost, script: &str) -> usize {
    let out = host
        .sh(&format!("{script} | wc -l"))
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    out.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{script}: {out:?}: {e}"))
}

fn footprint(host: &SimHost) -> Footprint {
    let status = host.status();
    let all = |key: &str, inner: &str| {
        status[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| x[inner].as_array().map_or(0, Vec::len))
            .sum()
    };
    Footprint {
        endpoints: all("networks", "endpoints"),
        addresses: all("pools", "addresses"),
        veths: count(host, "ip -o link show type veth | grep 'rn[hc]'"),
        fdb: count(host, "bridge fdb show | grep ' dev rnx' | grep dst"),
        neighbours: count(host, "ip neigh show | grep ' dev rnx'"),
        rules: count(host, "iptables-save | grep '^-A RUSTNET'"),
    }
}

#[test]
#[ignore = "needs root, network namespaces and dockerd: scripts/test.sh runs it"]
fn container_churn_leaves_nothing_behind() {
    let cycles: usize = std::env::var("RUSTNET_CHURN_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100);
    let hosts = [SimHost::start(), SimHost::start(), SimHost::start()];
    hosts[0].start_rustnet(&[]);
    let join = format!("{}:7950", hosts[0].addr);
    let token = hosts[0].join_token();
    let env = [
        ("RUSTNET_JOIN", join.as_str()),
        ("RUSTNET_JOIN_TOKEN", token.as_str()),
    ];
    for host in &hosts[1..] {
        host.start_rustnet(&env);
    }
    for (i, host) in hosts.iter().enumerate() {
        host.create_network(
            "rustnet",
            &format!("b{i}"),
            &["--subnet", &format!("10.60.{i}.0/24")],
        );
    }
    hosts[0].create_overlay("ov", "10.61.0.0/24", &[]);
    wait_until("ov on every host", 10, || {
        hosts
            .iter()
            .all(|h| h.docker(&["network", "inspect", "ov"]).is_ok())
    });
    let baseline: Vec<Footprint> = hosts.iter().map(footprint).collect();

    // (host, container) of the container of the previous cycle.
    let mut previous: Option<(usize, String)> = None;
    let mut refused = 0;
    for c in 0..cycles {
        let h = c % hosts.len();
        let host = &hosts[h];
        let net = if c % 2 == 0 {
            "ov".to_owned()
        } else {
            format!("b{h}")
        };
        let name = format!("c{c}");
        let run = host.docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &net,
            IMAGE,
            "sleep",
            "3600",
        ]);
        if run.is_err() {
            // Only right after a fault (the plugin or dockerd restarting).
            refused += 1;
            let _ = host.docker(&["rm", "-f", &name]);
        }
        if let Some((ph, pname)) = previous.take() {
            let _ = hosts[ph].docker(&["rm", "-f", &pname]);
        }
        if run.is_ok() {
            previous = Some((h, name.clone()));
        }
        if c % 50 == 49 {
            // kill -9 the plugin of the host that runs the latest
            // container, and remove that container while it is down.
            let (vh, vname) = previous.take().unwrap_or((h, name.clone()));
            hosts[vh].kill_rustnet();
            let _ = hosts[vh].docker_within(120, &["rm", "-f", &vname]);
            hosts[vh].start_rustnet(&env);
        }
        if c % 75 == 74 {
            let vh = (c / 75) % hosts.len();
            if let Some((ph, pname)) = previous.take() {
                let _ = hosts[ph].docker(&["rm", "-f", &pname]);
            }
            hosts[vh].restart_dockerd(&[]);
        }
    }
    if let Some((ph, pname)) = previous.take() {
        docker_ok(hosts[ph].docker(&["rm", "-f", &pname]), "rm");
    }
    assert!(refused <= cycles / 10, "{refused} of {cycles} runs refused");
    for (i, host) in hosts.iter().enumerate() {
        // Leaks of the kill -9 are released in the background (after
        // Docker has not shown them for 20 s).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        let mut now = footprint(host);
        while now != baseline[i] && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_secs(1));
            now = footprint(host);
        }
        assert_eq!(
            now, baseline[i],
            "host {i}: after the churn (left) and before (right)"
        );
        let left = host.docker(&["ps", "-aq"]).unwrap_or_default();
        assert!(
            left.trim().is_empty(),
            "containers left on host {i}: {left}"
        );
    }
    eprintln!("churn: {cycles} cycles, {refused} runs refused around faults, no leaks");
}
