//! Drives a rustnet daemon's IPAM over its socket as Docker would, for the
//! multi-host tests:
//!
//!     ipam-client SOCKET pool CIDR          request a pool
//!     ipam-client SOCKET storm POOL N TAG   N RequestAddress calls, one line each:
//!                                           "ok ADDRESS MS" or "err MS MESSAGE"
//!                                           (MS: how long the call took)

use std::io::Write;

use rustnet_tests::plugin_call as call;

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
