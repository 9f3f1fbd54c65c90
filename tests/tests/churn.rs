//! Churn without leaks: container create/remove cycles on three hosts at
//! once (each host its own share of the cycles), on bridge and overlay
//! networks by turns, with a plugin kill -9 (and a container removed while
//! it is down) and a dockerd restart on each host every so often;
//! afterwards no host holds a leaked address, endpoint, link, FDB or
//! neighbour entry, or firewall rule. The figures (what each host held and
//! its rustnet's RSS, before and after) are printed at the end.
//!
//! `RUSTNET_CHURN_CYCLES` sets the number of cycles: the suite runs 240,
//! `RUSTNET_BIN=target/release/rustnet RUSTNET_CHURN_CYCLES=10000 cargo test
//! -p rustnet-tests --test churn -- --include-ignored` is the long run
//! (docs/churn.md has its figures).

use std::time::{Duration, Instant};

use rustnet_tests::{IMAGE, SimHost, docker_ok, rss_kib, wait_until};

/// What a host holds of rustnet's, counted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Footprint {
    endpoints: usize,
    addresses: usize,
    /// Endpoint links in the host's namespace: veth ends (bridge
    /// networks) and macvlan links (overlays) not in a container.
    links: usize,
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
        links: count(
            host,
            "{ ip -o link show type veth; ip -o link show type macvlan; } | grep ': rn[hcm]'",
        ),
        fdb: count(host, "bridge fdb show | grep ' dev rnx' | grep dst"),
        neighbours: count(host, "ip neigh show | grep ' dev rnx'"),
        rules: count(host, "iptables-save | grep '^-A RUSTNET'"),
    }
}

/// One host's share of the churn: cycles `first`, `first + step`, ...
/// below `cycles`; the runs refused (right after a fault only).
fn churn(host: &SimHost, h: usize, cycles: usize, step: usize, env: &[(&str, &str)]) -> usize {
    // The container of this host's previous cycle.
    let mut previous: Option<String> = None;
    let mut refused = 0;
    for (n, c) in (h..cycles).step_by(step).enumerate() {
        let net = if n % 2 == 0 {
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
            refused += 1;
            let _ = host.docker(&["rm", "-f", &name]);
        }
        if let Some(old) = previous.take() {
            let _ = host.docker(&["rm", "-f", &old]);
        }
        if run.is_ok() {
            previous = Some(name.clone());
        }
        if n % 500 == 499 {
            eprintln!("churn: host {h}: {} cycles, {refused} refused", n + 1);
        }
        // Faults at other moments on each host.
        if (n + 7 * h) % 50 == 49 {
            // kill -9 this host's plugin, and remove its latest container
            // while it is down: Docker's first calls fail, and it retries
            // until the plugin is back (it does not wait its whole retry
            // window, 30 s and more, for nothing).
            host.kill_rustnet();
            std::thread::scope(|s| {
                let removal = previous.take().map(|old| {
                    s.spawn(move || {
                        let _ = host.docker_within(120, &["rm", "-f", &old]);
                    })
                });
                std::thread::sleep(Duration::from_secs(2));
                host.start_rustnet(env);
                if let Some(removal) = removal {
                    let _ = removal.join();
                }
            });
        }
        if (n + 11 * h) % 75 == 74 {
            if let Some(old) = previous.take() {
                let _ = host.docker(&["rm", "-f", &old]);
            }
            host.restart_dockerd(&[]);
        }
    }
    if let Some(old) = previous.take() {
        docker_ok(host.docker(&["rm", "-f", &old]), "rm");
    }
    refused
}

#[test]
#[ignore = "needs root, network namespaces and dockerd: scripts/test.sh runs it"]
fn container_churn_leaves_nothing_behind() {
    let cycles: usize = std::env::var("RUSTNET_CHURN_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(240);
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
        hosts.iter().all(|h| h.has_network("ov"))
    });
    let baseline: Vec<Footprint> = hosts.iter().map(footprint).collect();
    let rss_before: Vec<u64> = hosts
        .iter()
        .map(|h| h.rustnet_pid().and_then(rss_kib).unwrap_or(0))
        .collect();

    let started = Instant::now();
    let refused: usize = std::thread::scope(|s| {
        let runs: Vec<_> = hosts
            .iter()
            .enumerate()
            .map(|(h, host)| s.spawn(move || churn(host, h, cycles, 3, &env)))
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("a host's churn panicked"))
            .sum()
    });
    let took = started.elapsed();
    assert!(refused <= cycles / 10, "{refused} of {cycles} runs refused");
    let mut after = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        // Leaks of the kill -9 are released in the background (after
        // Docker has not shown them for 20 s).
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut now = footprint(host);
        while now != baseline[i] && Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            now = footprint(host);
        }
        assert_eq!(
            now, baseline[i],
            "host {i}: after the churn (left) and before (right)"
        );
        let left = host.docker(&["ps", "-aq"]).expect("docker ps");
        assert!(
            left.trim().is_empty(),
            "containers left on host {i}: {left}"
        );
        after.push(now);
    }
    eprintln!(
        "churn: {cycles} cycles in {:.0} s on 3 hosts at once, {refused} runs refused around faults, no leaks",
        took.as_secs_f64()
    );
    for (i, host) in hosts.iter().enumerate() {
        let rss_after = host.rustnet_pid().and_then(rss_kib).unwrap_or(0);
        eprintln!(
            "churn: host {i}: before {:?}, after {:?}; rustnet RSS {} KiB before, {} KiB after",
            baseline[i], after[i], rss_before[i], rss_after
        );
    }
}
