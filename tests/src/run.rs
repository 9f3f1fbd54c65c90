//! Running commands, finding binaries, and running named cases.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::Command;

/// Panics unless running as root: these tests need namespaces, dockerd and
/// iptables, and must not pass silently without them.
pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(str::to_owned));
    assert_eq!(
        uid.as_deref(),
        Some("0"),
        "this test needs root (network namespaces, dockerd, iptables): run it with scripts/test.sh as root"
    );
    for tool in [
        "dockerd", "docker", "ip", "iptables", "nsenter", "unshare", "busybox",
    ] {
        assert!(
            which(tool).is_some(),
            "{tool} is missing: scripts/test.sh installs docker.io, busybox-static, iproute2, iptables"
        );
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The rustnet binary under test: `RUSTNET_BIN`, or the workspace's debug build.
pub fn rustnet_bin() -> PathBuf {
    let path = std::env::var_os("RUSTNET_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/rustnet"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "{} not found: run `cargo build -p rustnet` first",
        path.display()
    );
    path
}

/// The previous release's rustnet binary (the main branch before formats
/// were numbered, commit d6f0e30), built from the repository's history by
/// `scripts/previous-release.sh` once and cached under target/previous.
pub fn previous_release() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/previous-release.sh");
    let path = run(&mut Command::new(script)).unwrap_or_else(|e| {
        panic!("the previous release could not be built from the repository's history: {e}")
    });
    PathBuf::from(path.lines().last().unwrap_or_default())
}

/// Polls `f` every 250 ms until it holds; panics after `secs` seconds.
pub fn wait_until(what: &str, secs: u64, f: impl FnMut() -> bool) {
    assert!(within(secs, f), "{what}: not within {secs} s");
}

/// Polls `f` every 250 ms until it holds or `secs` seconds have passed;
/// whether it held (for a caller that says more when it did not).
pub fn within(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while !f() {
        if start.elapsed() >= std::time::Duration::from_secs(secs) {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    true
}

/// Runs a command; stdout on success, stderr (and stdout) on failure.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(format!(
            "{stderr}{}{stdout}",
            if stdout.is_empty() { "" } else { "\n" }
        ))
    }
}

/// The host's iperf3 for the benchmarks, installed with apt when missing:
/// its path.
pub fn iperf3_installed() -> String {
    if run(Command::new("iperf3").arg("--version")).is_err() {
        run_ok(Command::new("apt-get").args(["install", "-y", "-qq", "iperf3"]));
    }
    run_ok(Command::new("sh").args(["-c", "command -v iperf3"]))
}

/// Runs a command that must succeed.
pub fn run_ok(cmd: &mut Command) -> String {
    run(cmd).unwrap_or_else(|e| panic!("{cmd:?} failed: {e}"))
}

/// Unwraps a docker result with the command in the message.
pub fn docker_ok(result: Result<String, String>, what: &str) -> String {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Named cases run one after another against shared hosts; a failing case
/// is reported and the others still run. After each case, `reset` puts the
/// hosts back to a clean state, whether the case passed or not.
pub struct Cases<'a> {
    failed: Vec<String>,
    passed: usize,
    reset: Box<dyn Fn() + 'a>,
}

impl std::fmt::Debug for Cases<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cases")
            .field("failed", &self.failed)
            .field("passed", &self.passed)
            .finish()
    }
}

impl<'a> Cases<'a> {
    pub fn new(reset: impl Fn() + 'a) -> Self {
        Self {
            failed: Vec::new(),
            passed: 0,
            reset: Box::new(reset),
        }
    }

    pub fn run(&mut self, name: &str, case: impl FnOnce()) {
        eprintln!("--- case {name}");
        let result = catch_unwind(AssertUnwindSafe(case));
        (self.reset)();
        match result {
            Ok(()) => {
                self.passed += 1;
                eprintln!("--- ok {name}");
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                eprintln!("--- FAILED {name}: {message}");
                self.failed.push(format!("{name}: {message}"));
            }
        }
    }

    /// Panics listing every failed case.
    pub fn finish(self) {
        assert!(
            self.failed.is_empty(),
            "{} case(s) failed ({} passed):\n{}",
            self.failed.len(),
            self.passed,
            self.failed.join("\n")
        );
        assert!(self.passed > 0, "no case ran");
    }
}

/// `plugin_call`'s error when the connection ended before any reply.
pub const CLOSED_WITHOUT_REPLY: &str = "the connection closed without a reply";

/// One POST of `body` to `path` on the plugin socket `socket`, on a fresh
/// connection (a daemon may die between calls), as dockerd sends it: the
/// reply body on 200, else the status line and body.
pub fn plugin_call(
    socket: impl AsRef<std::path::Path>,
    path: &str,
    body: &str,
) -> Result<String, String> {
    use std::io::{BufRead, BufReader, Read, Write};
    let socket = socket.as_ref();
    let mut conn = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("connect {}: {e}", socket.display()))?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    // One write, head and body together, as Docker's client sends them.
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: plugin\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(conn);
    let mut status = String::new();
    reader.read_line(&mut status).map_err(|e| e.to_string())?;
    if status.is_empty() {
        // The daemon went away (killed, say) with the request in hand.
        return Err(CLOSED_WITHOUT_REPLY.to_owned());
    }
    let mut rest = String::new();
    reader
        .read_to_string(&mut rest)
        .map_err(|e| e.to_string())?;
    let reply = rest
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    if status.contains(" 200 ") {
        Ok(reply)
    } else {
        Err(format!("{} {reply}", status.trim()))
    }
}
