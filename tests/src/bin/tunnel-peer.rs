//! One end of rustnet's WireGuard tunnel, for the tests that boot a real
//! kernel in a VM (`scripts/vm-image.sh` makes it the VM's program). Takes
//! `rn.*` words from its arguments, which are the kernel's command line:
//!
//! - `rn.me=N`, `rn.peer=M`: this end and the other (1..=254): private key
//!   N repeated, tunnel address 169.254.192.N, underlay address 10.0.0.N;
//! - `rn.wg=auto|kernel|userspace`: which WireGuard (`RUSTNET_WIREGUARD`);
//! - `rn.secret=TEXT`: sent to the peer inside the tunnel until it echoes;
//! - `rn.control=TEXT`: sent once in clear to the peer's underlay address,
//!   so that a capture of the wire shows it can see clear text;
//! - `rn.busy` (alone): WireGuard's port is taken first; the kernel's
//!   WireGuard must be refused and leave no link behind (`rn: no link
//!   left`), and `auto` then run userspace under the same name.
//!
//! Prints `rn: kind=...`; once the peer echoed the secret (and this end
//! echoed the peer's), both ends take new keys (key N + 100, as `rustnet
//! cluster rotate-key` does) and do it again; then `rn: RESULT ok`, or
//! `rn: RESULT failed: ...`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use rustnet_overlay::tunnel::{Implementation, Tunnel, TunnelPeer, TunnelSpec, public_key};
use rustnet_tests::vm::exchange;
use tokio::net::UdpSocket;

const WIREGUARD_PORT: u16 = 51871;
const ECHO_PORT: u16 = 7000;

#[derive(Debug)]
struct Args {
    me: u8,
    peer: u8,
    wg: Implementation,
    secret: String,
    control: String,
}

fn parse(words: &[String]) -> Result<Args, String> {
    let word = |key: &str| rustnet_tests::vm::word(words, key);
    let number = |key: &str| -> Result<u8, String> {
        word(key)?
            .parse()
            .map_err(|e| format!("{key}: {e}"))
            .and_then(|n| {
                if n == 0 {
                    Err(format!("{key}: 0"))
                } else {
                    Ok(n)
                }
            })
    };
    Ok(Args {
        me: number("rn.me")?,
        peer: number("rn.peer")?,
        wg: word("rn.wg")?.parse()?,
        secret: word("rn.secret")?,
        control: word("rn.control")?,
    })
}

fn tunnel_address(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(169, 254, 192, n)
}

fn underlay_address(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let words: Vec<String> = std::env::args().skip(1).collect();
    match run(&words).await {
        Ok(()) => {
            println!("rn: RESULT ok");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            println!("rn: RESULT failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(words: &[String]) -> Result<(), String> {
    let args = parse(words)?;
    let spec = TunnelSpec {
        device: "rn-wg0".to_owned(),
        address: tunnel_address(args.me),
        prefix: 18,
        mtu: 1420,
        port: WIREGUARD_PORT,
        vxlan_port: 4789,
    };
    if words.iter().any(|w| w == "rn.busy") {
        return busy_port(&spec, args.me).await;
    }
    let tunnel = Tunnel::start(spec, [args.me; 32], args.wg)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "rn: kind={} kernel_unavailable={:?}",
        tunnel.kind(),
        tunnel.kernel_unavailable()
    );
    let peer = TunnelPeer {
        key: public_key([args.peer; 32]),
        endpoint: SocketAddr::new(IpAddr::V4(underlay_address(args.peer)), WIREGUARD_PORT),
        address: tunnel_address(args.peer),
    };
    tunnel
        .set_peers(std::slice::from_ref(&peer))
        .await
        .map_err(|e| e.to_string())?;

    let clear = UdpSocket::bind((underlay_address(args.me), 0))
        .await
        .map_err(|e| format!("bind underlay: {e}"))?;
    let _ = clear
        .send_to(args.control.as_bytes(), (underlay_address(args.peer), 7001))
        .await;

    let socket = UdpSocket::bind((tunnel_address(args.me), ECHO_PORT))
        .await
        .map_err(|e| format!("bind tunnel address: {e}"))?;
    let there = SocketAddr::new(IpAddr::V4(tunnel_address(args.peer)), ECHO_PORT);
    exchange(&socket, there, &args.secret).await?;
    show_peers(&tunnel).await?;

    // Both ends take new keys (rustnet cluster rotate-key), and know each
    // other's: the tunnel carries on under them.
    tunnel
        .set_key([args.me.wrapping_add(100); 32])
        .await
        .map_err(|e| format!("new key: {e}"))?;
    let rotated = TunnelPeer {
        key: public_key([args.peer.wrapping_add(100); 32]),
        ..peer
    };
    tunnel
        .set_peers(&[rotated])
        .await
        .map_err(|e| format!("the peer's new key: {e}"))?;
    println!("rn: keys rotated");
    exchange(&socket, there, &format!("{}-rotated", args.secret)).await?;
    show_peers(&tunnel).await
}

/// With WireGuard's port taken, the kernel's WireGuard is refused and
/// leaves no half-made link behind, and `auto` falls back to userspace
/// (which binds the port only once it has peers) under the same name.
async fn busy_port(spec: &TunnelSpec, me: u8) -> Result<(), String> {
    let _taken = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, WIREGUARD_PORT))
        .map_err(|e| format!("take the port: {e}"))?;
    let left = || {
        std::process::Command::new("ip")
            .args(["link", "show", &spec.device])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    match Tunnel::start(spec.clone(), [me; 32], Implementation::Kernel).await {
        Ok(tunnel) => {
            return Err(format!(
                "the kernel's WireGuard started ({}) on a taken port",
                tunnel.kind()
            ));
        }
        Err(e) => println!("rn: Kernel refused: {e}"),
    }
    if left() {
        return Err(format!(
            "the kernel's WireGuard left {} behind",
            spec.device
        ));
    }
    println!("rn: no link left");
    let tunnel = Tunnel::start(spec.clone(), [me; 32], Implementation::Auto)
        .await
        .map_err(|e| format!("auto: {e}"))?;
    println!(
        "rn: Auto fell back: kind={} kernel_unavailable={:?}",
        tunnel.kind(),
        tunnel.kernel_unavailable()
    );
    Ok(())
}

/// Prints the tunnel's peers; fails if one never had a handshake.
async fn show_peers(tunnel: &Tunnel) -> Result<(), String> {
    for state in tunnel.peer_states().await {
        println!(
            "rn: peer endpoint={:?} handshake_age={:?} rx={} tx={}",
            state.endpoint, state.handshake_age, state.rx_bytes, state.tx_bytes
        );
        if state.handshake_age.is_none() {
            return Err("the peer shows no handshake".to_owned());
        }
    }
    Ok(())
}
