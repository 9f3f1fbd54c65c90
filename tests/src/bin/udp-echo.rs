//! A tiny UDP tool for the end-to-end tests (busybox here has no UDP
//! server): `udp-echo serve PORT` answers every datagram with "pong:" and
//! the datagram; `udp-echo ask HOST:PORT MESSAGE` prints the answer or fails
//! after 2 s.

use std::net::UdpSocket;
use std::time::Duration;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => {
            let port = args.get(2).map_or("9000", String::as_str);
            let socket = UdpSocket::bind(format!("0.0.0.0:{port}"))?;
            let mut buf = [0u8; 1500];
            loop {
                let (n, from) = socket.recv_from(&mut buf)?;
                let mut reply = b"pong:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                socket.send_to(&reply, from)?;
            }
        }
        Some("ask") => {
            let target = args.get(2).map_or("127.0.0.1:9000", String::as_str);
            let message = args.get(3).map_or("ping", String::as_str);
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.set_read_timeout(Some(Duration::from_secs(2)))?;
            socket.send_to(message.as_bytes(), target)?;
            let mut buf = [0u8; 1500];
            let n = socket.recv(&mut buf)?;
            println!("{}", String::from_utf8_lossy(&buf[..n]));
            Ok(())
        }
        _ => {
            eprintln!("usage: udp-echo serve PORT | udp-echo ask HOST:PORT MESSAGE");
            std::process::exit(2);
        }
    }
}
