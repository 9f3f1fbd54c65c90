//! Leadership under a slow member: a follower starved of CPU (stopped for
//! several election timeouts, let run, stopped again) must not unseat a
//! live leader when it wakes. It asks first (pre-vote) without raising its
//! term, and the other members, still hearing from the leader, refuse; so
//! the leader and the term stay, and the starved member follows again.
//!
//! And a leader killed with SIGKILL a moment after the cluster formed comes
//! back as a member: it re-applies its log up to the committed index it
//! saved, and must know the members that joined (it admits peers by the
//! certificates in its state).

use std::process::Command;
use std::time::Duration;

use rustnet_tests::{BareHost, plugin_call, run, run_ok, rustnet_bin, wait_until};
use serde_json::{Value, json};

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

fn voters(host: &BareHost) -> usize {
    status(host).map_or(0, |s| {
        s["cluster"]["members"]
            .as_array()
            .map_or(0, |m| m.iter().filter(|m| m["voter"] == true).count())
    })
}

/// Three bare members, the first bootstrapped, the others joined through
/// it; returns them once all three vote, and the others' join settings.
fn three_voters() -> (Vec<BareHost>, Vec<(String, String)>) {
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
    wait_until("three voters", 60, || voters(&hosts[0]) == 3);
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    (hosts, env.collect())
}

#[test]
fn a_starved_follower_does_not_unseat_the_leader() {
    let (hosts, _) = three_voters();
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

#[test]
fn a_leader_killed_as_the_cluster_forms_comes_back() {
    const POOL: &str = "10.91.0.0/16";
    let (mut hosts, join) = three_voters();
    let allocate = |host: &BareHost| {
        let body = json!({"PoolID": POOL, "Address": "", "Options": {}}).to_string();
        plugin_call(host.socket(), "/IpamDriver.RequestAddress", &body)
    };
    for host in &hosts {
        let body = json!({"AddressSpace": "rustnet-local", "Pool": POOL, "SubPool": "", "Options": {}, "V6": false});
        plugin_call(host.socket(), "/IpamDriver.RequestPool", &body.to_string())
            .unwrap_or_else(|e| panic!("RequestPool on {}: {e}", host.addr));
        allocate(host).unwrap_or_else(|e| panic!("allocation on {}: {e}", host.addr));
    }
    let (leader, _) = leadership(&hosts[0]).expect("the cluster has a leader");
    let k = hosts
        .iter()
        .position(|h| status(h).and_then(|s| s["host"].as_u64()) == Some(leader))
        .expect("the leader is one of the three");
    hosts[k].kill();
    // The survivors elect a leader among themselves (one whose certificate
    // the killed member must know when it comes back).
    wait_until("an allocation through a survivor", 30, || {
        allocate(&hosts[(k + 1) % 3]).is_ok()
    });
    // Started again on its state dir, as it was first started.
    let join: Vec<(&str, &str)> = join.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let env: &[(&str, &str)] = if k == 0 { &[] } else { &join };
    hosts[k].spawn(env);
    wait_until("an allocation through the restarted member", 30, || {
        allocate(&hosts[k]).is_ok()
    });
    wait_until("three voters again", 30, || {
        hosts.iter().all(|h| voters(h) == 3)
    });
}
