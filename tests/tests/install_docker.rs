//! rustnet installed the ways the README gives, on simulated hosts: the
//! managed plugin (`docker-plugin/install.sh`: create, settings, enable,
//! `disable -f`/`enable`, upgrade) and the host service, one cluster of
//! both; and dockerd restarted under rustnet networks in use, with and
//! without `--live-restore`.

// Each end-to-end scenario reads as one story, start to finish; it runs as
// a test per engine (on_every_engine!), where a failed expect is a failure.
#![allow(clippy::too_many_lines, clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use rustnet_tests::{
    Cases, Engine, SimHost, UPSTREAM_ADDR, UPSTREAM_NAME, docker_ok, on_every_engine, wait_until,
};

/// What `-d` and `--ipam-driver` take for a managed plugin named rustnet on
/// Docker 20.10 (see the README).
const MANAGED: &str = "rustnet:latest";
/// ... and for the host service.
const SERVICE: &str = "rustnet";
/// dockerd restarted with rustnet networks in use must not wait out
/// Docker's 30-second plugin retries.
const DOCKERD_START: Duration = Duration::from_secs(20);

fn cluster_id(host: &SimHost) -> String {
    host.status()["cluster"]["cluster"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn plugin_setting(host: &SimHost, name: &str) -> String {
    let env = docker_ok(
        host.docker(&[
            "plugin",
            "inspect",
            "-f",
            "{{range .Settings.Env}}{{println .}}{{end}}",
            "rustnet",
        ]),
        "plugin inspect",
    );
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_default()
        .to_owned()
}

fn state(host: &SimHost, container: &str) -> String {
    docker_ok(
        host.docker(&["inspect", "-f", "{{.State.Status}}", container]),
        "inspect",
    )
}

/// dockerd restarted with `--live-restore` (already on): containers keep
/// running, with the same addresses, and talk; new ones start.
fn live_restore(host: &SimHost, driver: &str, managed: bool) {
    host.create_network(driver, "lr", &["--subnet", "10.0.91.0/24"]);
    host.run_container("lr-a", "lr", &[], &[]);
    host.run_container("lr-b", "lr", &[], &[]);
    let before = [host.ip_of("lr-a", "lr"), host.ip_of("lr-b", "lr")];
    let took = host.restart_dockerd(&["--live-restore"]);
    assert!(took < DOCKERD_START, "dockerd took {took:?} to answer");
    if managed {
        host.wait_for_plugin();
    }
    for c in ["lr-a", "lr-b"] {
        assert_eq!(state(host, c), "running", "{c} after the restart");
    }
    let after = [host.ip_of("lr-a", "lr"), host.ip_of("lr-b", "lr")];
    assert_eq!(before, after);
    host.assert_pings("lr-b", "lr-a");
    host.run_container("lr-c", "lr", &[], &[]);
    host.assert_pings("lr-c", "lr-a");
    let c = host.ip_of("lr-c", "lr");
    assert!(!before.contains(&c), "lr-c got a held address {c}");
}

/// dockerd restarted without live-restore: containers stop with it and
/// come back (restart policy) on their networks: `--ip` ones with their
/// address, others with a free one, reachable by name.
fn plain_restart(host: &SimHost, driver: &str, managed: bool) {
    host.create_network(driver, "pr", &["--subnet", "10.0.92.0/24"]);
    let always = ["--restart", "always"];
    host.run_container(
        "pr-a",
        "pr",
        &[&always[..], &["--ip", "10.0.92.50"]].concat(),
        &[],
    );
    host.run_container("pr-b", "pr", &always, &[]);
    let took = host.restart_dockerd(&[]);
    assert!(took < DOCKERD_START, "dockerd took {took:?} to answer");
    if managed {
        host.wait_for_plugin();
    }
    wait_until("pr-a and pr-b running again", 30, || {
        state(host, "pr-a") == "running" && state(host, "pr-b") == "running"
    });
    assert_eq!(host.ip_of("pr-a", "pr"), "10.0.92.50");
    let b = host.ip_of("pr-b", "pr");
    assert!(b.starts_with("10.0.92."), "pr-b is at {b:?}");
    assert_ne!(b, "10.0.92.50");
    wait_until("pr-b reaches pr-a by name", 15, || {
        host.pings_within("pr-b", "pr-a", 1)
    });
    host.assert_pings("pr-a", "pr-b");
}

on_every_engine!(managed_plugin_host_service_and_dockerd_restarts);

fn managed_plugin_host_service_and_dockerd_restarts(engine: Engine) {
    // h1 and h3 resolve through systemd-resolved, as Ubuntu's do: as the
    // README says, their daemon.json names rustnet's resolver address,
    // whatever the engine.
    let resolved = || {
        SimHost::spec()
            .engine(engine)
            .systemd_resolved()
            .dns_setting(true)
            .start()
    };
    let h1 = resolved();
    let h2 = SimHost::start_on(engine);
    let h3 = resolved();
    h1.install_plugin(&[]);
    let join = format!("RUSTNET_JOIN={}:7950", h1.addr);
    let token = h1.join_token();
    h2.install_plugin(&[&join, &format!("RUSTNET_JOIN_TOKEN={token}")]);
    h3.start_rustnet(&[
        ("RUSTNET_JOIN", &format!("{}:7950", h1.addr)),
        ("RUSTNET_JOIN_TOKEN", &token),
    ]);
    let mut cases = Cases::new(|| {
        for host in [&h1, &h2, &h3] {
            host.reset();
        }
    });

    cases.run("the managed plugin answers to rustnet:latest", || {
        let plain = h1.docker(&[
            "network",
            "create",
            "-d",
            SERVICE,
            "--ipam-driver",
            SERVICE,
            "plain",
        ]);
        let error = plain.expect_err("Docker resolves -d rustnet only to a legacy plugin");
        assert!(error.contains("could not resolve driver"), "{error}");
        h1.create_network(MANAGED, "mp", &["--subnet", "10.0.90.0/24"]);
        h1.run_container("mp-a", "mp", &[], &[]);
        h1.run_container("mp-b", "mp", &[], &[]);
        h1.assert_pings("mp-b", "mp-a");
        assert_eq!(plugin_setting(&h1, "RUSTNET_ADVERTISE_ADDR"), h1.addr);
    });

    cases.run(
        "an overlay spans managed plugins and a host service",
        || {
            h1.create_network(
                MANAGED,
                "ov",
                &["-o", "mode=overlay", "--subnet", "10.0.93.0/24"],
            );
            for host in [&h2, &h3] {
                wait_until(&format!("ov on {}", host.netns), 20, || {
                    host.has_network("ov")
                });
            }
            let driver = |h: &SimHost| {
                docker_ok(
                    h.docker(&["network", "inspect", "-f", "{{.Driver}}", "ov"]),
                    "inspect",
                )
            };
            assert_eq!(driver(&h2), MANAGED);
            assert_eq!(driver(&h3), SERVICE);
            // No per-container flag anywhere.
            h1.run_container("ov-1", "ov", &[], &[]);
            h2.run_container("ov-2", "ov", &[], &[]);
            h3.run_container("ov-3", "ov", &[], &[]);
            let ip1 = h1.ip_of("ov-1", "ov");
            wait_until("ov-2 and ov-3 reach ov-1", 15, || {
                h2.pings_within("ov-2", &ip1, 1) && h3.pings_within("ov-3", &ip1, 1)
            });
            // Names across hosts, whether the host's resolver is plain or
            // systemd-resolved and rustnet managed or a host service.
            let ip3 = h3.ip_of("ov-3", "ov");
            let lookups = || {
                [
                    h2.lookup("ov-2", "ov-1"),
                    h1.lookup("ov-1", "ov-3"),
                    h3.lookup("ov-3", "ov-1"),
                ]
            };
            let wanted = [vec![ip1.clone()], vec![ip3.clone()], vec![ip1.clone()]].map(Ok);
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            let mut seen = lookups();
            while seen != wanted && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
                seen = lookups();
            }
            assert_eq!(seen, wanted, "ov-1 from h2, ov-3 from h1, ov-1 from h3");
            for (h, c) in [(&h1, "ov-1"), (&h2, "ov-2"), (&h3, "ov-3")] {
                assert_eq!(
                    h.lookup(c, UPSTREAM_NAME),
                    Ok(vec![UPSTREAM_ADDR.to_string()])
                );
            }
        },
    );

    cases.run(
        "docker plugin disable -f and enable keep containers talking",
        || {
            h1.create_network(MANAGED, "de", &["--subnet", "10.0.94.0/24"]);
            h1.run_container("de-a", "de", &[], &[]);
            h1.run_container("de-b", "de", &[], &[]);
            let disabled = h1.docker(&["plugin", "disable", "rustnet"]);
            assert!(disabled.is_err(), "disable without -f while in use");
            docker_ok(
                h1.docker(&["plugin", "disable", "-f", "rustnet"]),
                "disable -f",
            );
            h1.assert_pings("de-b", "de-a");
            docker_ok(h1.docker(&["plugin", "enable", "rustnet"]), "enable");
            h1.wait_for_plugin();
            h1.run_container("de-c", "de", &[], &[]);
            h1.assert_pings("de-c", "de-a");
            let ips = [
                h1.ip_of("de-a", "de"),
                h1.ip_of("de-b", "de"),
                h1.ip_of("de-c", "de"),
            ];
            assert!(ips[2] != ips[0] && ips[2] != ips[1], "{ips:?}");
        },
    );

    cases.run(
        "an upgrade keeps settings, state and running containers",
        || {
            h2.create_network(MANAGED, "up", &["--subnet", "10.0.95.0/24"]);
            h2.run_container("up-a", "up", &[], &[]);
            h2.run_container("up-a2", "up", &[], &[]);
            // An overlay from h1 with a container on h2, across the upgrade.
            h1.create_network(
                MANAGED,
                "upov",
                &["-o", "mode=overlay", "--subnet", "10.0.96.0/24"],
            );
            wait_until("upov on h2", 20, || h2.has_network("upov"));
            h1.run_container("upov-1", "upov", &[], &[]);
            h2.run_container("upov-2", "upov", &[], &[]);
            let ov1 = h1.ip_of("upov-1", "upov");
            wait_until("upov-2 reaches upov-1", 15, || {
                h2.pings_within("upov-2", &ov1, 1)
            });
            let cluster = cluster_id(&h2);
            let members = h2.status()["cluster"]["members"].clone();
            let before = h2.plugin_id();
            h2.upgrade_plugin();
            let after = h2.plugin_id();
            assert_ne!(before, after, "the plugin was not replaced");
            assert_eq!(plugin_setting(&h2, "RUSTNET_ADVERTISE_ADDR"), h2.addr);
            let state = docker_ok(
                h2.docker(&[
                    "plugin",
                    "inspect",
                    "-f",
                    "{{range .Settings.Mounts}}{{if eq .Name \"state\"}}{{.Source}}{{end}}{{end}}",
                    "rustnet",
                ]),
                "inspect",
            );
            assert_eq!(state, format!("{}/state", h2.dir().display()));
            assert_eq!(
                plugin_setting(&h2, "RUSTNET_JOIN"),
                format!("{}:7950", h1.addr)
            );
            assert_eq!(cluster_id(&h2), cluster);
            assert_eq!(h2.status()["cluster"]["members"], members);
            h2.assert_pings("up-a2", "up-a");
            h2.assert_pings("upov-2", &ov1);
            h2.run_container("up-b", "up", &[], &[]);
            h2.assert_pings("up-b", "up-a");
            assert_ne!(h2.ip_of("up-a", "up"), h2.ip_of("up-b", "up"));
        },
    );

    cases.run("managed plugin: dockerd restart with live-restore", || {
        // Live restore applies to containers started under a dockerd that has it.
        h1.restart_dockerd(&["--live-restore"]);
        h1.wait_for_plugin();
        live_restore(&h1, MANAGED, true);
    });
    cases.run(
        "managed plugin: dockerd restart without live-restore",
        || {
            h1.restart_dockerd(&[]);
            h1.wait_for_plugin();
            plain_restart(&h1, MANAGED, true);
        },
    );
    cases.run("host service: dockerd restart with live-restore", || {
        h3.restart_dockerd(&["--live-restore"]);
        live_restore(&h3, SERVICE, false);
    });
    cases.run("host service: dockerd restart without live-restore", || {
        h3.restart_dockerd(&[]);
        plain_restart(&h3, SERVICE, false);
    });
    cases.run("the join token is in no log", || {
        // A managed plugin logs into dockerd's log; the host service into its own.
        for host in [&h1, &h2, &h3] {
            for log in ["dockerd.log", "rustnet.log"] {
                let text = std::fs::read_to_string(host.dir().join(log)).unwrap_or_default();
                let secret = token.split('-').nth(1).unwrap_or(&token);
                assert!(
                    !text.contains(secret),
                    "the token is in {} {log}",
                    host.netns
                );
            }
        }
    });
    cases.finish();
}
