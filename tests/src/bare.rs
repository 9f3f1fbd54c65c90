//! A bare cluster member: a rustnet daemon in its own network namespace on
//! the underlay, with no dockerd (its plugin socket is driven directly, as
//! dockerd would). Scale runs fill a cluster with many of these beside a
//! few [`crate::SimHost`]s.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::host::{Place, remove_place};
use crate::run::{run, run_ok, rustnet_bin, wait_until};

/// A rustnet daemon in a network namespace, its socket and state under
/// its directory. Dropping it stops the daemon and removes the namespace.
#[derive(Debug)]
pub struct BareHost {
    /// The host's underlay address (10.99.0.K).
    pub addr: String,
    netns: String,
    veth: String,
    underlay: String,
    dir: PathBuf,
    daemon: Option<Child>,
}

impl BareHost {
    /// A namespace on the underlay, no daemon yet.
    pub fn add() -> Self {
        let place = Place::add();
        Self {
            addr: place.addr,
            netns: place.netns,
            veth: place.veth,
            underlay: place.underlay,
            dir: place.dir,
            daemon: None,
        }
    }

    /// The plugin socket (reachable from the root namespace).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("rustnet.sock")
    }

    /// The host's directory (state, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `rustnet status --json` through this host's socket; `None` while it
    /// does not answer.
    pub fn status(&self) -> Option<Value> {
        let out = run(Command::new(rustnet_bin())
            .args(["status", "--json", "--socket"])
            .arg(self.socket()))
        .ok()?;
        serde_json::from_str(&out).ok()
    }

    /// This member's host id, as its status gives it; `None` while it
    /// does not answer.
    pub fn host_id(&self) -> Option<u64> {
        self.status().and_then(|s| s["host"].as_u64())
    }

    /// How many voters this host counts in the cluster (0 while it does
    /// not answer).
    pub fn voters(&self) -> usize {
        self.status().map_or(0, |s| {
            s["cluster"]["members"]
                .as_array()
                .map_or(0, |m| m.iter().filter(|m| m["voter"] == true).count())
        })
    }

    /// Three members, the first bootstrapped, the others joined through
    /// it; returned once all three vote, with the settings the others
    /// joined with (to start one of them again).
    pub fn three_voters() -> (Vec<Self>, Vec<(String, String)>) {
        let mut hosts: Vec<Self> = (0..3).map(|_| Self::add()).collect();
        hosts[0].spawn(&[]);
        hosts[0].wait_ready(60);
        let token = run_ok(
            Command::new(rustnet_bin())
                .args(["status", "--token", "--socket"])
                .arg(hosts[0].socket()),
        );
        let join = vec![
            ("RUSTNET_JOIN".to_owned(), format!("{}:7950", hosts[0].addr)),
            ("RUSTNET_JOIN_TOKEN".to_owned(), token.trim().to_owned()),
        ];
        let env: Vec<(&str, &str)> = join.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        for host in &mut hosts[1..] {
            host.spawn(&env);
        }
        for host in &hosts[1..] {
            host.wait_ready(60);
        }
        wait_until("three voters", 60, || hosts[0].voters() == 3);
        (hosts, join)
    }

    /// Starts the daemon with extra settings, without waiting for it.
    pub fn spawn(&mut self, env: &[(&str, &str)]) {
        assert!(
            self.daemon.is_none(),
            "rustnet already running on {}",
            self.netns
        );
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("rustnet.log"))
            .unwrap_or_else(|e| panic!("open rustnet.log: {e}"));
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(rustnet_bin())
            .arg("daemon")
            .env("RUSTNET_SOCKET", self.socket())
            .env("RUSTNET_STATE_DIR", self.dir.join("state"))
            // No dockerd: what rustnet asks Docker in the background
            // fails and is retried, as while a dockerd restarts.
            .env("RUSTNET_DOCKER_SOCKET", self.dir.join("no-docker.sock"))
            .env("RUSTNET_ADVERTISE_ADDR", &self.addr)
            .env("RUSTNET_LOG", "info,openraft=warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn rustnet: {e}"));
        self.daemon = Some(child);
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// Waits until `rustnet status` answers (the daemon is a member and
    /// has caught up: status reads linearizably); how long that took.
    pub fn wait_ready(&self, secs: u64) -> Duration {
        let started = Instant::now();
        loop {
            let out = Command::new(rustnet_bin())
                .args(["status", "--json", "--socket"])
                .arg(self.socket())
                .output();
            if out.as_ref().is_ok_and(|o| o.status.success()) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(secs),
                "rustnet on {} not ready after {secs} s:\n{}",
                self.netns,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the daemon with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last lines of the daemon's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("rustnet.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The daemon's whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("rustnet.log")).unwrap_or_default()
    }
}

impl Drop for BareHost {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("=== {} rustnet.log\n{}", self.netns, self.log_tail());
        }
        self.kill();
        remove_place(&self.netns, &self.veth, &self.underlay, &self.dir);
    }
}

/// The resident set size of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}
