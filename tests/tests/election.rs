//! Leadership under a slow member: a follower starved of CPU (stopped for
//! several election timeouts, let run, stopped again) must not unseat a
//! live leader when it wakes. It asks first (pre-vote) without raising its
//! term, and the other members, still hearing from the leader, refuse; so
//! the leader and the term stay, and the starved member follows again.

use std::process::Command;
use std::time::Duration;

use rustnet_tests::{BareHost, run, run_ok, rustnet_bin, wait_until};
use serde_json::Value;

fn status(host: &BareHost) -> Option<Value> {
    let out = run(Command::new(rustnet_bin())
        .args(["status", "--json", "--socket"])
        .arg(host.socket()))
    .ok()?;
    serde_json::from_str(&out).ok()
}

/// (leader, term) as `host` sees them.
fn leadership(host: &BareHost) -> Option<(u64, u64)> {
    let status = status(host)?;
    let cluster = &status["cluster"];
    Some((cluster["leader"].as_u64()?, cluster["term"].as_u64()?))
}

fn signal(pid: u32, signal: &str) {
    run_ok(Command::new("kill").args([signal, &pid.to_string()]));
}

#[test]
fn a_starved_follower_does_not_unseat_the_leader() {
    let mut hosts: Vec<BareHost> = (0..3).map(|_| BareHost::add()).collect();
    hosts[0].spawn(&[]);
    hosts[0].wait_ready(60);
    let token = run_ok(
        Command::new(rustnet_bin())
            .args(["status", "--token", "--socket"])
            .arg(hosts[0].socket()),
    );
    let join = format!("{}:7950", hosts[0].addr);
    let env = [
        ("RUSTNET_JOIN", join.as_str()),
        ("RUSTNET_JOIN_TOKEN", token.trim()),
    ];
    for host in &mut hosts[1..] {
        host.spawn(&env);
    }
    for host in &hosts[1..] {
        host.wait_ready(60);
    }
    wait_until("three voters", 60, || {
        status(&hosts[0]).is_some_and(|s| {
            s["cluster"]["members"]
                .as_array()
                .is_some_and(|m| m.iter().filter(|m| m["voter"] == true).count() == 3)
        })
    });
    let (leader, term) = leadership(&hosts[0]).expect("the cluster has a leader");
    let starved = hosts
        .iter()
        .find(|h| status(h).and_then(|s| s["host"].as_u64()) != Some(leader))
        .expect("a follower");
    let pid = starved.pid().expect("the follower runs");

    // Stopped for 2 s (three times the longest election timeout), then a
    // moment to run, five times over.
    for _ in 0..5 {
        signal(pid, "-STOP");
        std::thread::sleep(Duration::from_secs(2));
        signal(pid, "-CONT");
        std::thread::sleep(Duration::from_millis(700));
    }
    // Time for any election the wake-ups would have started to finish.
    std::thread::sleep(Duration::from_secs(3));
    for host in &hosts {
        assert_eq!(
            leadership(host),
            Some((leader, term)),
            "on {}: the leader or the term changed:\n{}",
            host.addr,
            host.log_tail()
        );
    }
}
