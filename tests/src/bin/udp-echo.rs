//! A tiny UDP tool for the end-to-end tests (busybox here has no UDP
//! server): `udp-echo serve PORT` answers every datagram with "pong:" and
//! the datagram; `udp-echo ask HOST:PORT MESSAGE` prints the answer or fails
//! after 2 s; `udp-echo listen PORT [GROUP]` prints every datagram to PORT
//! (having joined multicast GROUP); `udp-echo send ADDR:PORT MESSAGE COUNT`
//! sends MESSAGE COUNT times, 100 ms apart, to any address (broadcast and
//! multicast too).

use std::io::Write;
use std::net::{Ipv4Addr, UdpSocket};
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
        Some("listen") => {
            let port = args.get(2).map_or("9000", String::as_str);
            let socket = UdpSocket::bind(format!("0.0.0.0:{port}"))?;
            if let Some(group) = args.get(3) {
                let group: Ipv4Addr = group.parse().map_err(std::io::Error::other)?;
                socket.join_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED)?;
            }
            let mut buf = [0u8; 1500];
            let mut out = std::io::stdout();
            loop {
                let (n, from) = socket.recv_from(&mut buf)?;
                writeln!(
                    out,
                    "{} from {}",
                    String::from_utf8_lossy(&buf[..n]),
                    from.ip()
                )?;
                out.flush()?;
            }
        }
        Some("send") => {
            let target = args.get(2).map_or("127.0.0.1:9000", String::as_str);
            let message = args.get(3).map_or("ping", String::as_str);
            let count: u32 = args.get(4).and_then(|c| c.parse().ok()).unwrap_or(1);
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.set_broadcast(true)?;
            for i in 0..count {
                if i > 0 {
                    std::thread::sleep(Duration::from_millis(100));
                }
                socket.send_to(message.as_bytes(), target)?;
            }
            Ok(())
        }
        _ => {
            eprintln!(
                "usage: udp-echo serve PORT | ask HOST:PORT MESSAGE | listen PORT [GROUP] | \
                 send ADDR:PORT MESSAGE COUNT"
            );
            std::process::exit(2);
        }
    }
}
