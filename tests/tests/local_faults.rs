//! Faults of one host: a daemon whose storage fails says so and exits
//! non-zero, so that its supervisor starts it again (it never sits
//! answering errors forever); what Docker removed while rustnet was down
//! is released once rustnet is back; a lost state directory leaves the
//! running containers' links and rules alone.

// Each end-to-end scenario reads as one story, start to finish.
#![allow(clippy::too_many_lines)]

use rustnet_tests::{Cases, SimHost, docker_ok, wait_until};

#[test]
#[ignore = "needs root, network namespaces and dockerd: scripts/test.sh runs it"]
fn local_faults_are_reported_and_repaired() {
    let host = SimHost::start();
    let state = host.dir().join("state");
    let mut cases = Cases::new(|| {});

    cases.run(
        "a corrupt state file: a clear error and a non-zero exit",
        || {
            std::fs::create_dir_all(&state).unwrap();
            std::fs::write(state.join("state.redb"), b"this is not a database").unwrap();
            host.spawn_rustnet(&[]);
            let status = host.rustnet_exit(30).expect("the daemon is still running");
            assert!(!status.success(), "{status}");
            let log = host.log_tail("rustnet.log");
            assert!(
                log.contains("the state store failed") && log.contains("state.redb"),
                "{log}"
            );
            std::fs::remove_dir_all(&state).unwrap();
        },
    );

    cases.run(
        "a full disk under a running daemon: it exits non-zero",
        || {
            std::fs::create_dir_all(&state).unwrap();
            let dir = state.display();
            host.sh(&format!("mount -t tmpfs -o size=8m tmpfs {dir}"))
                .unwrap();
            host.start_rustnet(&[]);
            host.create_network("rustnet", "before", &["--subnet", "10.4.0.0/24"]);
            // Leave the store no room at all, then make it write (Docker's
            // answer does not matter: the daemon's exit does).
            let _ = host.sh(&format!("dd if=/dev/zero of={dir}/filler bs=64k"));
            let mut exited = None;
            for i in 1..=50 {
                let (subnet, name) = (format!("10.4.{i}.0/24"), format!("full{i}"));
                let _ = host.docker_within(
                    5,
                    &[
                        "network",
                        "create",
                        "-d",
                        "rustnet",
                        "--ipam-driver",
                        "rustnet",
                        "--subnet",
                        &subnet,
                        &name,
                    ],
                );
                exited = host.rustnet_exit(1);
                if exited.is_some() {
                    break;
                }
            }
            let status = exited.expect("the daemon is still running on a full disk");
            assert!(!status.success(), "{status}");
            let log = std::fs::read_to_string(host.dir().join("rustnet.log")).unwrap_or_default();
            assert!(
                log.contains("the state store failed") && log.contains("No space left on device"),
                "{}",
                host.log_tail("rustnet.log")
            );
            // A fresh daemon, so that the networks can go.
            let _ = host.sh(&format!("umount {dir}"));
            let _ = std::fs::remove_dir_all(&state);
            host.start_rustnet(&[]);
        },
    );

    cases.run(
        "what Docker removed while rustnet was down is released when it is back",
        || {
            host.create_network("rustnet", "leaky", &["--subnet", "10.5.0.0/24"]);
            host.run_container("gone", "leaky", &["--ip", "10.5.0.9"], &[]);
            host.kill_rustnet();
            // Docker removes the container whatever the plugin answers.
            let _ = host.docker_within(120, &["rm", "-f", "gone"]);
            assert!(
                host.docker(&["inspect", "gone"]).is_err(),
                "gone is still there"
            );
            host.start_rustnet(&[]);
            let held = |status: &serde_json::Value| {
                let text = status.to_string();
                text.contains("\"10.5.0.9\"") || text.contains("10.5.0.9/24")
            };
            assert!(held(&host.status()), "the leak to repair");
            wait_until("the leaked endpoint and address released", 60, || {
                !held(&host.status())
            });
            host.run_container("again", "leaky", &["--ip", "10.5.0.9"], &[]);
            let _ = host.docker(&["rm", "-f", "again"]);
        },
    );

    cases.run(
        "a state directory lost under running containers: their links and rules stay until they go",
        || {
            host.create_network("rustnet", "kept", &["--subnet", "10.8.0.0/24"]);
            host.run_container("k1", "kept", &[], &[]);
            host.run_container("k2", "kept", &[], &[]);
            let id = docker_ok(
                host.docker(&["network", "inspect", "-f", "{{.Id}}", "kept"]),
                "id",
            );
            let bridge = format!("rn-{}", &id[..12]);
            let rules_of = |bridge: &str| {
                let saved = host.sh("iptables-save").expect("iptables-save");
                saved
                    .lines()
                    .filter(|l| l.starts_with("-A RUSTNET") && l.contains(bridge))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            };
            let rules = rules_of(&bridge);
            assert!(!rules.is_empty(), "no rules for {bridge}");
            host.kill_rustnet();
            let lost = host.dir().join("state.lost");
            std::fs::rename(&state, &lost).unwrap();
            // A fresh state: a new one-host cluster that knows nothing of
            // "kept".
            host.start_rustnet(&[]);
            host.create_network("rustnet", "fresh", &["--subnet", "10.9.0.0/24"]);
            host.run_container("f1", "fresh", &[], &[]);
            let k2 = host.ip_of("k2", "kept");
            for _ in 0..3 {
                std::thread::sleep(std::time::Duration::from_secs(1));
                host.assert_pings("k1", &k2);
                host.assert_pings("k1", "10.99.0.254");
                let now = rules_of(&bridge);
                let lost: Vec<&String> = rules.iter().filter(|r| !now.contains(r)).collect();
                assert!(lost.is_empty(), "inherited rules lost: {lost:?}");
            }
            host.assert_pings("f1", "10.99.0.254");
            assert!(!host.pings_within("f1", &k2, 1), "fresh reaches kept");
            // Once its containers are gone, the inherited bridge goes, and
            // its rules with it.
            docker_ok(host.docker(&["rm", "-f", "k1", "k2"]), "rm");
            wait_until("the inherited bridge removed", 30, || {
                host.sh(&format!("ip link show {bridge}")).is_err()
            });
            wait_until("its rules removed", 10, || rules_of(&bridge).is_empty());
            host.assert_pings("f1", "10.99.0.254");
            let _ = host.docker(&["rm", "-f", "f1"]);
            let _ = host.docker(&["network", "rm", "kept", "fresh"]);
            let _ = std::fs::remove_dir_all(&lost);
        },
    );

    cases.run("rustnet status --watch redraws in place", || {
        let out = host
            .cmd("timeout")
            .args(["3.5", &rustnet_tests::rustnet_bin().display().to_string()])
            .args(["status", "--watch", "1", "--socket", &host.socket()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let draws = text.matches("\x1b[H\x1b[2J").count();
        assert!((3..=5).contains(&draws), "{draws} draws: {text}");
        assert!(text.contains("leader"), "{text}");
    });

    cases.run("RUSTNET_LOG_FORMAT=json: one JSON object per line", || {
        host.stop_rustnet();
        let log = host.dir().join("rustnet.log");
        let from = std::fs::metadata(&log).map_or(0, |m| m.len());
        host.start_rustnet(&[("RUSTNET_LOG_FORMAT", "json")]);
        host.create_network("rustnet", "logged", &["--subnet", "10.6.0.0/24"]);
        let _ = host.docker(&["network", "rm", "logged"]);
        let text = std::fs::read(&log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text[usize::try_from(from).unwrap()..]).into_owned();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        assert!(
            lines
                .iter()
                .all(|l| l["level"].is_string() && l["timestamp"].is_string())
        );
        assert!(
            lines
                .iter()
                .any(|l| l["span"]["path"] == "/NetworkDriver.CreateNetwork"),
            "{text}"
        );
        assert!(lines.iter().any(|l| l["host"].is_u64()), "{text}");
    });

    cases.finish();
}
