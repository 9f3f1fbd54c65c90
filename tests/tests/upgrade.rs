//! A rolling upgrade, as an operator does it: three hosts run the previous
//! release (the main branch before formats were numbered, commit d6f0e30,
//! built from the repository's history), with an overlay and a container
//! on each; then one host at a time is stopped and started on this
//! release. At every step each member answers, the running containers
//! keep talking, a new container starts on every host and no address is
//! held twice (and the first upgraded host, put back on the previous
//! release, is refused); after the last, the cluster writes this
//! release's format, names resolve across hosts (containers started
//! before included), the voters hold the CA key (a CA rotation goes
//! through and every member renews), a host of the previous release is
//! refused with a clear error and a host of this release enrolls.

// The scenario reads as one story, start to finish.
#![allow(clippy::too_many_lines, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;

use rustnet_tests::{Cases, SimHost, previous_release, require_root, run, wait_until, within};

const SUBNET: &str = "10.0.90.0/24";
/// The format this release writes (release 0.1 wrote format 1).
const FORMAT: u64 = 5;

/// Every container's address on the overlay, across `hosts`: none twice.
fn distinct_addresses(hosts: &[&SimHost], containers: &[(usize, String)]) {
    let mut seen = BTreeSet::new();
    for (host, name) in containers {
        let ip = hosts[*host].ip_of(name, "ov");
        assert!(seen.insert(ip.clone()), "{ip} held twice ({name})");
    }
}

/// Each running container reaches every other, across hosts.
fn all_talk(hosts: &[&SimHost], containers: &[(usize, String)]) {
    for (from_host, from) in containers {
        for (to_host, to) in containers {
            if from_host == to_host {
                continue;
            }
            let ip = hosts[*to_host].ip_of(to, "ov");
            assert!(
                hosts[*from_host].pings_within(from, &ip, 10),
                "{from} on host {from_host} cannot reach {to} ({ip}) on host {to_host}"
            );
        }
    }
}

fn upgrade_status(host: &SimHost) -> serde_json::Value {
    host.status()["upgrade"].clone()
}

#[test]
#[ignore = "needs root: simulated hosts with dockerd (scripts/test.sh runs it)"]
fn a_cluster_upgrades_one_host_at_a_time_from_the_previous_release() {
    require_root();
    let previous = previous_release();
    let (h1, h2, h3) = (SimHost::start(), SimHost::start(), SimHost::start());
    let hosts = [&h1, &h2, &h3];
    for host in hosts {
        host.use_rustnet(Some(previous.clone()));
    }
    h1.start_rustnet(&[]);
    let join = format!("{}:7950", h1.addr);
    let token = h1.join_token();
    let joining = [
        ("RUSTNET_JOIN", join.as_str()),
        ("RUSTNET_JOIN_TOKEN", &token),
    ];
    h2.start_rustnet(&joining);
    h3.start_rustnet(&joining);
    let mut containers: Vec<(usize, String)> = Vec::new();
    let mut cases = Cases::new(|| {});

    cases.run(
        "three hosts of the previous release share an overlay",
        || {
            h1.create_overlay("ov", SUBNET, &[]);
            wait_until("ov on every host", 20, || {
                hosts.iter().all(|h| h.has_network("ov"))
            });
            for (i, host) in hosts.iter().enumerate() {
                let name = format!("before{i}");
                host.run_container(&name, "ov", &[], &[]);
                containers.push((i, name));
            }
            all_talk(&hosts, &containers);
        },
    );

    for step in 0..3 {
        if step == 1 {
            cases.run(
                "a host put back on the previous release is refused, and comes back",
                || {
                    h1.stop_rustnet();
                    h1.use_rustnet(Some(previous.clone()));
                    h1.spawn_rustnet(&[]);
                    // Release 0.1 says it has no state store, and serves
                    // nothing from the state it cannot read.
                    let said = within(30, || {
                        let log = h1.log_tail("rustnet.log");
                        log.contains("no state store") && log.contains("Is a directory")
                    });
                    assert!(said, "{}", h1.log_tail("rustnet.log"));
                    h1.kill_rustnet();
                    let note =
                        std::fs::read_to_string(h1.dir().join("state/raft.redb/README")).unwrap();
                    assert!(note.contains("Downgrades are not supported"), "{note}");
                    // The others kept serving; this release takes over again.
                    all_talk(&hosts, &containers);
                    h1.use_rustnet(None);
                    h1.start_rustnet(&[]);
                    all_talk(&hosts, &containers);
                },
            );
        }
        cases.run(
            &format!(
                "with {} of 3 hosts upgraded, every member serves, containers talk, new ones start",
                step + 1
            ),
            || {
                let host = hosts[step];
                host.stop_rustnet();
                host.use_rustnet(None);
                host.start_rustnet(if step == 0 { &[] } else { &joining });
                for other in hosts {
                    wait_until("every member answers", 20, || other.try_status().is_ok());
                }
                all_talk(&hosts, &containers);
                for (i, host) in hosts.iter().enumerate() {
                    let name = format!("step{step}-{i}");
                    host.run_container(&name, "ov", &[], &[]);
                    containers.push((i, name));
                }
                distinct_addresses(&hosts, &containers);
                all_talk(&hosts, &containers);
                if step < 2 {
                    // The upgraded host says what waits, and who runs what.
                    let upgrade = upgrade_status(host);
                    assert_eq!(upgrade["cluster_format"], 1, "{upgrade}");
                    let waiting = upgrade["waiting"].as_str().unwrap_or_default();
                    assert!(waiting.contains("upgrade under way"), "{upgrade}");
                    let formats: Vec<u64> = upgrade["members"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| m["format"].as_u64().unwrap_or(0))
                        .collect();
                    assert_eq!(
                        formats.iter().filter(|f| **f == FORMAT).count(),
                        step + 1,
                        "{upgrade}"
                    );
                    assert_eq!(formats.len(), 3, "{upgrade}");
                }
            },
        );
    }

    cases.run(
        "once every host runs this release, the cluster writes its format",
        || {
            wait_until(
                "the cluster writes this release's format on every host",
                30,
                || {
                    hosts
                        .iter()
                        .all(|h| upgrade_status(h)["cluster_format"] == FORMAT)
                },
            );
            for host in hosts {
                let upgrade = upgrade_status(host);
                assert!(upgrade["waiting"].is_null(), "{upgrade}");
                let text = run(host.cmd(&host.rustnet_bin().display().to_string()).args([
                    "status",
                    "--socket",
                    &host.socket(),
                ]))
                .unwrap();
                assert_eq!(
                    text.matches(&format!("(format {FORMAT})")).count(),
                    3,
                    "every member's version: {text}"
                );
            }
        },
    );

    cases.run(
        "names resolve across hosts, containers started before the upgrade included",
        || {
            // Asked from a container an upgraded host started, and from
            // one release 0.1 started (which asks from its second
            // interface, on docker_gwbridge).
            let before1 = h2.ip_of("before1", "ov");
            let before2 = h3.ip_of("before2", "ov");
            let step0 = h3.ip_of("step0-2", "ov");
            let finds = |asker: &str, name: &str, ip: &str| {
                h1.lookup(asker, name).is_ok_and(|ips| ips == [ip])
            };
            let resolved = within(30, || {
                ["step0-0", "before0"].iter().all(|asker| {
                    finds(asker, "before1", &before1)
                        && finds(asker, "before2", &before2)
                        && finds(asker, "step0-2", &step0)
                })
            });
            assert!(
                resolved,
                "containers of h2 and h3 do not resolve on h1: {:?} {:?}\n{}",
                h1.lookup("step0-0", "before1"),
                h1.lookup("before0", "before1"),
                h1.log_tail("rustnet.log")
            );
            let step2 = h1.ip_of("step2-0", "ov");
            wait_until("a new container resolves on h3", 30, || {
                h3.lookup("step2-2", "step2-0")
                    .is_ok_and(|ips| ips == [step2.clone()])
            });
        },
    );

    cases.run(
        "the voters hold the CA key: a CA rotation goes through and every member renews",
        || {
            let ca = h1.status()["tls"]["ca"].clone();
            run(h1.cmd(&h1.rustnet_bin().display().to_string()).args([
                "cluster",
                "rotate-ca",
                "--socket",
                &h1.socket(),
            ]))
            .expect("rotate-ca on an upgraded voter");
            wait_until("every member renewed under the new CA", 60, || {
                hosts.iter().all(|h| {
                    let tls = h.status()["tls"].clone();
                    tls["ca"] != ca && tls["ca_rotation"].is_null()
                })
            });
            all_talk(&hosts, &containers);
            for host in hosts {
                let log = std::fs::read_to_string(host.dir().join("rustnet.log")).unwrap();
                assert!(
                    !log.contains("holds no key of the cluster's CA"),
                    "{}",
                    host.log_tail("rustnet.log")
                );
            }
        },
    );

    cases.run(
        "a host of the previous release is refused; one of this release enrolls",
        || {
            // The token names the CA, rotated above.
            let token = h1.join_token();
            let joining = [
                ("RUSTNET_JOIN", join.as_str()),
                ("RUSTNET_JOIN_TOKEN", &token),
            ];
            let h4 = SimHost::start();
            h4.use_rustnet(Some(previous.clone()));
            h4.spawn_rustnet(&[
                ("RUSTNET_JOIN", join.as_str()),
                ("RUSTNET_JOIN_TOKEN", &token),
                ("RUSTNET_JOIN_TIMEOUT", "5"),
            ]);
            let refused =
                format!("runs a release of format 1, and the cluster writes format {FORMAT}");
            let said = within(30, || {
                std::fs::read_to_string(h4.dir().join("rustnet.log"))
                    .is_ok_and(|log| log.contains(&refused))
            });
            assert!(said, "{}", h4.log_tail("rustnet.log"));
            h4.kill_rustnet();
            run(h4
                .cmd("rm")
                .args(["-rf", &h4.dir().join("state").display().to_string()]))
            .unwrap();
            h4.use_rustnet(None);
            h4.start_rustnet(&joining);
            wait_until("ov on h4", 20, || h4.has_network("ov"));
            h4.run_container("late", "ov", &[], &[]);
            let before0 = h1.ip_of("before0", "ov");
            assert!(h4.pings_within("late", &before0, 10));
            wait_until("before0 resolves on h4", 30, || {
                h4.lookup("late", "before0")
                    .is_ok_and(|ips| ips == [before0.clone()])
            });
        },
    );

    cases.finish();
}
