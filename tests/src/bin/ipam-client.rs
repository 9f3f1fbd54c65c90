//! Drives a rustnet daemon's IPAM over its socket as Docker would, for the
//! multi-host tests:
//!
//!     ipam-client SOCKET pool CIDR          request a pool
//!     ipam-client SOCKET storm POOL N TAG   N RequestAddress calls, one line each:
//!                                           "ok ADDRESS MS" or "err MS MESSAGE"
//!                                           (MS: how long the call took)

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    let socket = arg(1);
    match arg(2) {
        "pool" => {
            let body = format!(
                r#"{{"AddressSpace":"rustnet-local","Pool":"{}","SubPool":"","Options":{{}},"V6":false}}"#,
                arg(3)
            );
            match call(socket, "/IpamDriver.RequestPool", &body) {
                Ok(reply) => println!("{reply}"),
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
        }
        "storm" => {
            let count: usize = arg(4).parse().unwrap_or(10);
            for i in 0..count {
                let body = format!(
                    r#"{{"PoolID":"{}","Address":"","Options":{{"com.docker.network.endpoint.name":"{}-{i}"}}}}"#,
                    arg(3),
                    arg(5)
                );
                let started = std::time::Instant::now();
                let answer = call(socket, "/IpamDriver.RequestAddress", &body);
                let ms = started.elapsed().as_millis();
                match answer {
                    Ok(reply) => {
                        let address = reply.split('"').nth(3).unwrap_or_default().to_owned();
                        println!("ok {address} {ms}");
                    }
                    Err(e) => println!("err {ms} {}", e.replace('\n', " ")),
                }
                let _ = std::io::stdout().flush();
            }
        }
        _ => {
            eprintln!("usage: ipam-client SOCKET pool CIDR | ipam-client SOCKET storm POOL N TAG");
            std::process::exit(2);
        }
    }
}

/// One POST on a fresh connection (a daemon may die between calls).
fn call(socket: &str, path: &str, body: &str) -> Result<String, String> {
    let mut conn = UnixStream::connect(socket).map_err(|e| format!("connect {socket}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nHost: plugin\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(conn);
    let mut status = String::new();
    reader.read_line(&mut status).map_err(|e| e.to_string())?;
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
