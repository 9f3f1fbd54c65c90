//! The rustnet cluster across simulated hosts: the real binary in network
//! namespaces, one per host, forming one Raft cluster over the underlay.

// Each end-to-end scenario reads as one story, start to finish.
#![allow(clippy::too_many_lines)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Child;
use std::time::{Duration, Instant};

use rustnet_tests::cluster::{self, acked};
use rustnet_tests::{Cases, SimHost, docker_ok, run, rustnet_bin, wait_until};
use serde_json::Value;

const CLIENT: &str = env!("CARGO_BIN_EXE_ipam-client");
const POOL: &str = "10.70.0.0/16";

fn join_env(first: &SimHost) -> String {
    format!("{}:7950", first.addr)
}

fn client(host: &SimHost, args: &[&str]) -> Result<String, String> {
    run(host.cmd(CLIENT).arg(host.socket()).args(args))
}

/// A storm of `n` allocations on `host`, running in the background.
fn start_storm(host: &SimHost, n: usize, tag: &str) -> Child {
    cluster::start_storm(host, CLIENT, POOL, n, tag)
}

fn held(host: &SimHost) -> BTreeSet<String> {
    cluster::held(host, POOL)
}

/// Zero duplicates and zero lost acknowledged allocations.
fn check(acks: &[String], reader: &SimHost) {
    let unique: BTreeSet<&String> = acks.iter().collect();
    assert_eq!(unique.len(), acks.len(), "duplicate addresses acknowledged");
    let held = held(reader);
    let lost: Vec<&&String> = unique.iter().filter(|a| !held.contains(**a)).collect();
    assert!(lost.is_empty(), "acknowledged allocations lost: {lost:?}");
}

fn cluster(host: &SimHost) -> Value {
    host.status()["cluster"].clone()
}

fn voters(host: &SimHost) -> usize {
    let members = cluster(host)["members"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    members.iter().filter(|m| m["voter"] == true).count()
}

fn leader_index(hosts: &[&SimHost]) -> usize {
    let leader = cluster(hosts[0])["leader"].as_u64();
    hosts
        .iter()
        .position(|h| h.status()["host"].as_u64() == leader)
        .unwrap_or_else(|| panic!("leader {leader:?} is none of the hosts"))
}

fn cut(host: &SimHost, action: &str) {
    cluster::cut(host, action, 7950);
}

#[test]
#[ignore = "needs root, network namespaces and dockerd: scripts/test.sh runs it"]
fn a_cluster_of_simulated_hosts() {
    let h1 = SimHost::start();
    let h2 = SimHost::start();
    let h3 = SimHost::start();
    h1.start_rustnet(&[]);
    let join = join_env(&h1);
    let token = h1.join_token();
    let joining = [
        ("RUSTNET_JOIN", join.as_str()),
        ("RUSTNET_JOIN_TOKEN", &token),
    ];
    h2.start_rustnet(&joining);
    h3.start_rustnet(&joining);
    let hosts = [&h1, &h2, &h3];
    let mut cases = Cases::new(|| {});
    let mut acks: Vec<String> = Vec::new();

    cases.run("three hosts form one cluster of three voters", || {
        wait_until("3 voters", 30, || voters(&h1) == 3);
        let views: Vec<Value> = hosts.iter().map(|h| cluster(h)).collect();
        let ids: BTreeSet<String> = views.iter().map(|v| v["cluster"].to_string()).collect();
        assert_eq!(ids.len(), 1, "different clusters: {views:?}");
        // One CA; a certificate each, all different; the token pins the CA.
        let tls: Vec<Value> = hosts.iter().map(|h| h.status()["tls"].clone()).collect();
        let cas: BTreeSet<String> = tls.iter().map(|t| t["ca"].to_string()).collect();
        let certs: BTreeSet<String> = tls.iter().map(|t| t["certificate"].to_string()).collect();
        assert_eq!(cas.len(), 1, "{tls:?}");
        assert_eq!(certs.len(), 3, "{tls:?}");
        assert!(!certs.contains("null"), "{tls:?}");
        let ca = tls[0]["ca"].as_str().unwrap_or_default();
        assert!(
            token.ends_with(&format!("-{ca}")),
            "the token does not pin the CA"
        );
        client(&h1, &["pool", POOL]).unwrap_or_else(|e| panic!("pool: {e}"));
        // The pool made on h1 is usable from h3 at once.
        let out = client(&h3, &["storm", POOL, "3", "first"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out.lines().filter(|l| l.starts_with("ok ")).count(),
            3,
            "{out}"
        );
        acks.extend(
            out.lines()
                .filter_map(|l| l.strip_prefix("ok "))
                .map(|a| a.split('/').next().unwrap_or(a).to_owned()),
        );
    });

    cases.run(
        "kill -9 the leader during a storm of allocations from every host",
        || {
            let lead = leader_index(&hosts);
            let mut storms: Vec<Child> = hosts
                .iter()
                .enumerate()
                .map(|(i, h)| start_storm(h, 400, &format!("storm{i}")))
                .collect();
            std::thread::sleep(Duration::from_millis(500));
            let running = storms
                .iter_mut()
                .map(|s| s.try_wait())
                .filter(|w| matches!(w, Ok(None)))
                .count();
            assert_eq!(running, 3, "the storms ended before the leader was killed");
            hosts[lead].kill_rustnet();
            let before = acks.len();
            for storm in storms {
                acks.extend(acked(storm));
            }
            eprintln!(
                "storm: {} allocations acknowledged around the leader's death",
                acks.len() - before
            );
            assert!(
                acks.len() - before > 400,
                "the survivors should keep allocating"
            );
            hosts[lead].start_rustnet(&[("RUSTNET_JOIN", &join)]);
            let other = hosts[(lead + 1) % 3];
            check(&acks, other);
            check(&acks, hosts[lead]);
        },
    );

    cases.run(
        "a host cut off cannot allocate; healed, it catches up",
        || {
            let lead = leader_index(&hosts);
            let isolated = hosts[(lead + 1) % 3];
            let majority = hosts[(lead + 2) % 3];
            cut(isolated, "-I");
            let started = Instant::now();
            let out =
                client(isolated, &["storm", POOL, "1", "cut"]).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                out.starts_with("err ") && out.contains("cluster unavailable"),
                "{out}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(25),
                "took {:?}",
                started.elapsed()
            );
            let out = client(majority, &["storm", POOL, "5", "majority"])
                .unwrap_or_else(|e| panic!("{e}"));
            let during: Vec<String> = out
                .lines()
                .filter_map(|l| l.strip_prefix("ok "))
                .map(|a| a.split('/').next().unwrap_or(a).to_owned())
                .collect();
            assert_eq!(during.len(), 5, "{out}");
            acks.extend(during);
            cut(isolated, "-D");
            wait_until("the healed host to catch up", 30, || {
                let held = held(isolated);
                acks.iter().all(|a| held.contains(a))
            });
            check(&acks, isolated);
        },
    );

    cases.run("a restarted host keeps its identity and catches up", || {
        let id = h2.status()["host"].clone();
        h2.stop_rustnet();
        let out =
            client(&h1, &["storm", POOL, "5", "while-down"]).unwrap_or_else(|e| panic!("{e}"));
        acks.extend(
            out.lines()
                .filter_map(|l| l.strip_prefix("ok "))
                .map(|a| a.split('/').next().unwrap_or(a).to_owned()),
        );
        h2.start_rustnet(&[("RUSTNET_JOIN", &join)]);
        assert_eq!(h2.status()["host"], id);
        check(&acks, &h2);
    });

    let h4 = SimHost::start();
    cases.run("refused: nothing answers at the join address", || {
        h4.spawn_rustnet(&[
            ("RUSTNET_JOIN", "10.99.0.200:7950"),
            ("RUSTNET_JOIN_TIMEOUT", "3"),
        ]);
        let mut last = String::new();
        wait_until("the join to fail", 30, || {
            last = h4.try_status().err().unwrap_or_default();
            last.contains("cannot join the cluster")
        });
        h4.stop_rustnet();
        let _ = std::fs::remove_dir_all(h4.dir().join("state"));
    });

    cases.run(
        "refused: a host whose state belongs to another cluster",
        || {
            h4.start_rustnet(&[]);
            h4.stop_rustnet();
            h4.spawn_rustnet(&joining);
            let mut last = String::new();
            wait_until("the join to be refused", 30, || {
                last = h4.try_status().err().unwrap_or_default();
                last.contains("belongs to another cluster")
            });
            h4.stop_rustnet();
            let _ = std::fs::remove_dir_all(h4.dir().join("state"));
        },
    );

    let refused = |env: &[(&str, &str)], reason: &str| {
        h4.spawn_rustnet(env);
        let mut last = String::new();
        wait_until(&format!("the join to be refused: {reason}"), 30, || {
            last = h4.try_status().err().unwrap_or_default();
            last.contains(reason)
        });
        h4.stop_rustnet();
        let _ = std::fs::remove_dir_all(h4.dir().join("state"));
        let log = std::fs::read_to_string(h4.dir().join("rustnet.log")).unwrap_or_default();
        assert!(
            !log.contains(&token),
            "the token is in the joining host's log"
        );
        assert_eq!(cluster(&h1)["members"].as_array().map(Vec::len), Some(3));
    };
    cases.run(
        "refused: a join without the token, or with a wrong one",
        || {
            refused(&[("RUSTNET_JOIN", &join)], "needs the cluster's join token");
            let wrong = format!("rnt-{}", "0".repeat(32));
            refused(
                &[("RUSTNET_JOIN", &join), ("RUSTNET_JOIN_TOKEN", &wrong)],
                "wrong join token",
            );
            for host in [&h1, &h2, &h3] {
                let log =
                    std::fs::read_to_string(host.dir().join("rustnet.log")).unwrap_or_default();
                assert!(
                    !log.contains(&token),
                    "the token is in {}'s log",
                    host.netns
                );
            }
        },
    );

    let rotated = h1.join_token();
    cases.run(
        "rotate-token: the old token is refused, the new one admits",
        || {
            let socket = h2.socket();
            let new = docker_ok(
                run(h2.cmd(&rustnet_bin().display().to_string()).args([
                    "cluster",
                    "rotate-token",
                    "--socket",
                    &socket,
                ])),
                "rotate-token",
            );
            assert_ne!(new, token);
            assert_eq!(h1.join_token(), new, "the token is the cluster's");
            refused(
                &[("RUSTNET_JOIN", &join), ("RUSTNET_JOIN_TOKEN", &token)],
                "wrong join token",
            );
        },
    );
    cases.run(
        "rotate-ca: every member renews under the new CA, without downtime",
        || {
            let old_ca = h1.status()["tls"]["ca"].clone();
            let socket = h3.socket();
            let new = docker_ok(
                run(h3.cmd(&rustnet_bin().display().to_string()).args([
                    "cluster",
                    "rotate-ca",
                    "--socket",
                    &socket,
                ])),
                "rotate-ca",
            );
            assert_eq!(
                h1.join_token(),
                new,
                "rotate-ca printed the cluster's token"
            );
            let new_ca = h1.status()["tls"]["ca"].clone();
            assert_ne!(new_ca, old_ca, "the CA did not change");
            let mut round = 0;
            wait_until("the rotation to finish on every host", 60, || {
                // Allocations keep working through every host meanwhile.
                for host in [&h1, &h2, &h3] {
                    let out = client(host, &["storm", POOL, "1", &format!("rot{round}")])
                        .unwrap_or_else(|e| panic!("allocating during the rotation: {e}"));
                    assert!(
                        out.starts_with("ok ") && !out.contains("err "),
                        "an allocation failed during the rotation: {out}"
                    );
                }
                round += 1;
                [&h1, &h2, &h3].iter().all(|h| {
                    let tls = &h.status()["tls"];
                    tls["ca"] == new_ca && tls["ca_rotation"].is_null()
                })
            });
        },
    );
    let token = h1.join_token();
    assert_ne!(token, rotated, "rotate-token did not rotate");
    let joining = [
        ("RUSTNET_JOIN", join.as_str()),
        ("RUSTNET_JOIN_TOKEN", &token),
    ];

    cases.run(
        "a fourth host is a learner; a dead voter removed is replaced and its addresses freed",
        || {
            h4.start_rustnet(&joining);
            let id4 = h4.status()["host"].as_u64();
            let members = cluster(&h1)["members"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(
                members
                    .iter()
                    .any(|m| m["id"].as_u64() == id4 && m["voter"] == false),
                "{members:?}"
            );
            assert_eq!(held(&h4), held(&h1), "the learner has the full state");
            let dead = h3.status()["host"].as_u64().unwrap_or_default();
            let out =
                client(&h3, &["storm", POOL, "2", "doomed"]).unwrap_or_else(|e| panic!("{e}"));
            let doomed: Vec<String> = out
                .lines()
                .filter_map(|l| l.strip_prefix("ok "))
                .map(|a| a.split('/').next().unwrap_or(a).to_owned())
                .collect();
            h3.kill_rustnet();
            let out = run(h1
                .cmd(&rustnet_tests::rustnet_bin().display().to_string())
                .args([
                    "cluster",
                    "remove",
                    &dead.to_string(),
                    "--socket",
                    &h1.socket(),
                ]));
            out.unwrap_or_else(|e| panic!("cluster remove: {e}"));
            wait_until("the learner promoted", 30, || voters(&h1) == 3);
            let members: BTreeMap<u64, bool> = cluster(&h1)["members"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|m| Some((m["id"].as_u64()?, m["voter"] == true)))
                .collect();
            assert!(!members.contains_key(&dead), "{members:?}");
            assert_eq!(
                members.get(&id4.unwrap_or_default()),
                Some(&true),
                "{members:?}"
            );
            let held = held(&h1);
            assert!(
                doomed.iter().all(|a| !held.contains(a)),
                "the removed host's addresses are still held"
            );
            acks.retain(|a| !doomed.contains(a));
            let status = h1.status();
            let allocations = status["allocations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(
                allocations.iter().all(|a| a["host"].as_u64() != Some(dead)),
                "{allocations:?}"
            );
        },
    );

    cases.finish();
}
