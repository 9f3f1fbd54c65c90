//! The plugin distributed through a registry, as the README gives it:
//! `docker-plugin/push.sh REF` once, into Debian's docker-registry running
//! on a simulated host, then `docker plugin install --alias rustnet REF
//! SETTING=VALUE...` on three hosts, which form one cluster with an overlay
//! across them.

// The scenario runs as a test per engine, where a failed expect or unwrap
// is a failure.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustnet_tests::{Engine, SimHost, docker_ok, run, rustnet_bin, wait_until};

const PUSH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-plugin/push.sh");
const INSTALL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-plugin/install.sh");
/// The simulated hosts' dockerds reach the registry over plain HTTP, as
/// `insecure-registries` in daemon.json allows.
const INSECURE: &str = "--insecure-registry=10.99.0.0/24";

/// Debian's docker-registry serving `host.addr:5000`, its storage in the
/// host's directory. Killed when dropped.
struct Registry(Child);

impl Registry {
    fn start(host: &SimHost) -> Self {
        assert!(
            Command::new("docker-registry")
                .arg("--version")
                .output()
                .is_ok(),
            "docker-registry is missing: scripts/test.sh installs Debian's docker-registry"
        );
        let config = host.dir().join("registry.yml");
        let storage = host.dir().join("registry");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {}:5000\n",
                storage.display(),
                host.addr
            ),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        let log = std::fs::File::create(host.dir().join("registry.log"))
            .unwrap_or_else(|e| panic!("registry.log: {e}"));
        let child = host
            .cmd("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn docker-registry: {e}"));
        let addr = format!("{}:5000", host.addr);
        let started = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "docker-registry not answering on {addr}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self(child)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `docker plugin install --grant-all-permissions --alias rustnet REF
/// SETTINGS...` on `host`, its state directory made first (as the README
/// says), pointed at the host's own state and Docker socket.
fn install(host: &SimHost, reference: &str, settings: &[&str]) {
    let state = host.dir().join("state");
    std::fs::create_dir_all(&state).unwrap_or_else(|e| panic!("mkdir {}: {e}", state.display()));
    let own = [
        format!("RUSTNET_ADVERTISE_ADDR={}", host.addr),
        format!("state.source={}", state.display()),
        format!("docker-socket.source={}/docker.sock", host.dir().display()),
    ];
    let mut args = vec![
        "plugin",
        "install",
        "--grant-all-permissions",
        "--alias",
        "rustnet",
        reference,
    ];
    args.extend(own.iter().map(String::as_str));
    args.extend(settings);
    docker_ok(
        host.docker(&args),
        &format!("docker plugin install on {}", host.netns),
    );
    host.wait_for_plugin();
}

#[test]
#[ignore = "needs root, network namespaces and dockerd: scripts/test.sh runs it"]
fn the_plugin_installs_from_a_registry_on_three_hosts_on_docker_20_10() {
    the_plugin_installs_from_a_registry_on_three_hosts(Engine::Bookworm);
}

#[test]
#[ignore = "needs root, network namespaces and dockerd: scripts/test.sh runs it"]
fn the_plugin_installs_from_a_registry_on_three_hosts_on_docker_28() {
    the_plugin_installs_from_a_registry_on_three_hosts(Engine::Sid);
}

fn the_plugin_installs_from_a_registry_on_three_hosts(engine: Engine) {
    let start = || {
        SimHost::spec()
            .engine(engine)
            .dockerd_args(&[INSECURE])
            .start()
    };
    let (h1, h2, h3) = (start(), start(), start());
    let _registry = Registry::start(&h1);
    let reference = format!("{}:5000/rustnet:e2e", h1.addr);

    // Pushed once, from h1, with the script the README gives.
    let folder = PathBuf::from(format!("{}/push-folder", h1.dir().display()));
    let pushed = run(Command::new(PUSH)
        .env("DOCKER_HOST", h1.docker_host())
        .env("RUSTNET_BIN", rustnet_bin())
        .arg("--dir")
        .arg(&folder)
        .arg(&reference));
    let pushed = docker_ok(pushed, "docker-plugin/push.sh");
    assert!(pushed.contains(&format!("pushed {reference}")), "{pushed}");
    // The pushing host keeps no plugin of that name.
    let left = docker_ok(
        h1.docker(&["plugin", "ls", "--format", "{{.Name}}"]),
        "plugin ls",
    );
    assert!(left.trim().is_empty(), "left on h1 after the push: {left}");

    // Installed from the registry on every host, settings as arguments.
    install(&h1, &reference, &[]);
    let token = h1.join_token();
    let join = format!("RUSTNET_JOIN={}:7950", h1.addr);
    let token_setting = format!("RUSTNET_JOIN_TOKEN={token}");
    for host in [&h2, &h3] {
        install(host, &reference, &[&join, &token_setting]);
    }
    for host in [&h1, &h2, &h3] {
        let from = docker_ok(
            host.docker(&[
                "plugin",
                "inspect",
                "-f",
                "{{.Name}} {{.PluginReference}} {{.Enabled}}",
                "rustnet",
            ]),
            "plugin inspect",
        );
        assert_eq!(from, format!("rustnet:latest {reference} true"));
    }
    wait_until("three members in one cluster", 20, || {
        h1.status()["cluster"]["members"]
            .as_array()
            .is_some_and(|m| m.len() == 3)
    });
    let cluster = h1.status()["cluster"]["cluster"].clone();
    for host in [&h2, &h3] {
        assert_eq!(host.status()["cluster"]["cluster"], cluster);
    }

    // An overlay made on h2 appears on the others; containers on all three
    // reach each other by name.
    h2.create_network(
        "rustnet:latest",
        "ov",
        &["-o", "mode=overlay", "--subnet", "10.0.97.0/24"],
    );
    for host in [&h1, &h3] {
        wait_until(&format!("ov on {}", host.netns), 20, || {
            host.has_network("ov")
        });
    }
    h1.run_container("c1", "ov", &[], &[]);
    h2.run_container("c2", "ov", &[], &[]);
    h3.run_container("c3", "ov", &[], &[]);
    wait_until("c1 reaches c2 and c3 by name", 20, || {
        h1.pings_within("c1", "c2", 1) && h1.pings_within("c1", "c3", 1)
    });
    h3.assert_pings("c3", "c1");

    // A new release pushed under another tag; h3 upgrades to it as the
    // README says: settings, state and running containers stay.
    let newer = format!("{}:5000/rustnet:e2e-next", h1.addr);
    docker_ok(
        run(Command::new(PUSH)
            .env("DOCKER_HOST", h1.docker_host())
            .arg("--dir")
            .arg(&folder)
            .arg(&newer)),
        "docker-plugin/push.sh (second tag)",
    );
    docker_ok(
        run(Command::new(INSTALL)
            .env("DOCKER_HOST", h3.docker_host())
            .args(["--from", &newer])),
        "docker-plugin/install.sh --from",
    );
    h3.wait_for_plugin();
    // The release is read from the plugin's rootfs, where push.sh wrote it.
    let release = h3.dir().join(format!(
        "data/plugins/{}/rootfs/etc/rustnet-plugin",
        h3.plugin_id()
    ));
    let release = std::fs::read_to_string(&release)
        .unwrap_or_else(|e| panic!("read {}: {e}", release.display()));
    assert!(
        release.contains(&format!("reference={newer}\n")),
        "{release}"
    );
    let env = docker_ok(
        h3.docker(&[
            "plugin",
            "inspect",
            "-f",
            "{{range .Settings.Env}}{{println .}}{{end}}",
            "rustnet",
        ]),
        "plugin inspect",
    );
    assert!(env.contains(&join), "settings kept: {env}");
    assert_eq!(h3.status()["cluster"]["cluster"], cluster);
    h3.assert_pings("c3", "c2");
    h3.run_container("c4", "ov", &[], &[]);
    h3.assert_pings("c4", "c1");
}
