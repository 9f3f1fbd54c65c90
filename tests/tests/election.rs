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

use rustnet_tests::{BareHost, plugin_call, run_ok, wait_until};
use serde_json::json;

/// (leader, term) as `host` sees them.
fn leadership(host: &BareHost) -> Option<(u64, u64)> {
    let status = host.status()?;
    let cluster = &status["cluster"];
    Some((cluster["leader"].as_u64()?, cluster["term"].as_u64()?))
}

fn signal(pid: u32, signal: &str) {
    run_ok(Command::new("kill").args([signal, &pid.to_string()]));
}

#[test]
#[ignore = "needs root, network namespaces and dockerd: scripts/test.sh runs it"]
fn a_starved_follower_does_not_unseat_the_leader() {
    let (hosts, _) = BareHost::three_voters();
    let (leader, term) = leadership(&hosts[0]).expect("the cluster has a leader");
    let starved = hosts
        .iter()
        .find(|h| h.host_id() != Some(leader))
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
#[ignore = "needs root, network namespaces and dockerd: scripts/test.sh runs it"]
fn a_leader_killed_as_the_cluster_forms_comes_back() {
    const POOL: &str = "10.91.0.0/16";
    let (mut hosts, join) = BareHost::three_voters();
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
        .position(|h| h.host_id() == Some(leader))
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
        hosts.iter().all(|h| h.voters() == 3)
    });
}
