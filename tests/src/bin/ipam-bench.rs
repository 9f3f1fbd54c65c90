//! RequestAddress latency over the plugin socket, as Docker calls it.
//!
//! Starts its own `rustnet daemon` on a temporary socket and state dir
//! (no dockerd needed), creates a pool, then times N RequestAddress calls
//! on one kept-alive connection and prints median and p99.
//!
//! The last line, `RESULT {...}`, holds the samples as JSON (for
//! `bench-report`).
//!
//!     cargo build --release -p rustnet && cargo run --release -p rustnet-tests --bin ipam-bench [N]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map_or(Ok(2000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("rustnet.sock");
    let bin = std::env::var("RUSTNET_BIN")
        .unwrap_or_else(|_| format!("{}/../target/release/rustnet", env!("CARGO_MANIFEST_DIR")));
    let mut daemon = Command::new(&bin)
        .arg("daemon")
        .env("RUSTNET_SOCKET", &socket)
        .env("RUSTNET_STATE_DIR", dir.path().join("state"))
        .env("RUSTNET_LOG", "warn")
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| anyhow::anyhow!("start {bin}: {e}"))?;
    let result = bench(&socket, n);
    let _ = daemon.kill();
    let _ = daemon.wait();
    let mut samples = result?;
    samples.sort();
    // Nearest-rank percentile: the sample at or above `per_mille` of the run.
    let pct = |per_mille: usize| samples[(samples.len() - 1) * per_mille / 1000];
    println!(
        "RequestAddress over the plugin socket, {n} calls: median {:?}, p99 {:?}, max {:?}",
        pct(500),
        pct(990),
        samples[samples.len() - 1]
    );
    let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    println!("RESULT {}", serde_json::json!({ "samples_ms": ms }));
    Ok(())
}

fn bench(socket: &std::path::Path, n: usize) -> anyhow::Result<Vec<Duration>> {
    let started = Instant::now();
    let mut conn = loop {
        match UnixStream::connect(socket) {
            Ok(conn) => break conn,
            Err(_) if started.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => anyhow::bail!("connect {}: {e}", socket.display()),
        }
    };
    let pool = r#"{"AddressSpace":"rustnet-local","Pool":"10.60.0.0/16","SubPool":"","Options":{},"V6":false}"#;
    call(&mut conn, "/IpamDriver.RequestPool", pool)?;
    let request = r#"{"PoolID":"10.60.0.0/16","Address":"","Options":null}"#;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        call(&mut conn, "/IpamDriver.RequestAddress", request)?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

/// One HTTP/1.1 POST on a kept-alive connection; fails on a non-200 reply.
fn call(conn: &mut UnixStream, path: &str, body: &str) -> anyhow::Result<String> {
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nHost: plugin.moby.localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse()?;
        }
    }
    let mut reply = vec![0; length];
    reader.read_exact(&mut reply)?;
    let reply = String::from_utf8(reply)?;
    anyhow::ensure!(status.contains(" 200 "), "{path}: {status}{reply}");
    Ok(reply)
}
