//! One host of a macvlan or ipvlan network on a VLAN parent, for the test
//! that boots a real kernel in a VM (this machine's kernel has neither
//! ipvlan nor 802.1Q). Runs rustnet's data path (the overlay crate's
//! planner and netlink executor) for one network: the VLAN parent
//! `eth0.50` it creates, the host shim, and one container's link, which it
//! then addresses as Docker would. Takes `rn.*` words from its arguments,
//! which are the kernel's command line:
//!
//! - `rn.me=N`, `rn.peer=M`: this end and the other (1..=254): the link's
//!   address 192.168.50.(10+N), the shim's 192.168.50.(100+N);
//! - `rn.kind=macvlan|ipvlan`;
//! - `rn.secret=TEXT`: sent to the peer's link until it echoes.
//!
//! Prints `rn: kinds ...` as the kernel reports the links, then, once the
//! peer echoed, removes the network and prints `rn: removed`; then
//! `rn: RESULT ok`, or `rn: RESULT failed: ...`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;

use rustnet_overlay::{
    Desired, Kernel, Lan, LanKind, LanLink, Netlink, Observed, Shim, Vlan, plan,
};
use rustnet_tests::vm::exchange;
use tokio::net::UdpSocket;

const VLAN: u16 = 50;
const ECHO_PORT: u16 = 7000;

#[derive(Debug)]
struct Args {
    me: u8,
    peer: u8,
    kind: LanKind,
    secret: String,
}

fn parse(words: &[String]) -> Result<Args, String> {
    let word = |key: &str| rustnet_tests::vm::word(words, key);
    let number = |key: &str| -> Result<u8, String> {
        word(key)?
            .parse::<u8>()
            .map_err(|e| format!("{key}: {e}"))
            .and_then(|n| match n {
                1..=100 => Ok(n),
                _ => Err(format!("{key}: {n} is not 1 to 100")),
            })
    };
    let kind = match word("rn.kind")?.as_str() {
        "macvlan" => LanKind::Macvlan,
        "ipvlan" => LanKind::Ipvlan,
        other => return Err(format!("rn.kind: {other}")),
    };
    Ok(Args {
        me: number("rn.me")?,
        peer: number("rn.peer")?,
        kind,
        secret: word("rn.secret")?,
    })
}

fn link_address(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 50, 10 + n)
}

/// The network as rustnet's host view makes it, with one container.
fn network(args: &Args) -> Desired {
    let parent = format!("eth0.{VLAN}");
    Desired {
        lans: vec![Lan {
            name: "rnslan".to_owned(),
            kind: args.kind,
            parent: parent.clone(),
            vlan: Some(Vlan {
                name: parent,
                base: "eth0".to_owned(),
                id: VLAN,
            }),
            mtu: 1500,
            shim: Some(Shim {
                name: "rnslan".to_owned(),
                address: IpAddr::V4(Ipv4Addr::new(192, 168, 50, 100 + args.me)).into(),
                routes: Vec::new(),
            }),
            links: vec![LanLink {
                name: "rnmct".to_owned(),
                mac: (args.kind == LanKind::Macvlan).then_some([2, 0x42, 0, 0, 0x50, args.me]),
                required: true,
            }],
        }],
        ..Desired::default()
    }
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

/// Plans and applies until the kernel holds `desired`; fails if a second
/// plan still finds something to do.
async fn converge(netlink: &Netlink, desired: &Desired) -> Result<Observed, String> {
    let observed = netlink.observe().await.map_err(|e| e.to_string())?;
    for op in plan(desired, &observed).map_err(|e| e.to_string())? {
        netlink.apply(&op).await.map_err(|e| format!("{op}: {e}"))?;
    }
    let observed = netlink.observe().await.map_err(|e| e.to_string())?;
    let left = plan(desired, &observed).map_err(|e| e.to_string())?;
    if !left.is_empty() {
        return Err(format!("not converged: {left:?}"));
    }
    Ok(observed)
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

async fn run(words: &[String]) -> Result<(), String> {
    let args = parse(words)?;
    let netlink = Netlink::connect("lan-peer").map_err(|e| e.to_string())?;
    let observed = converge(&netlink, &network(&args)).await?;
    let kind = |name: &str| observed.links.get(name).map(|l| (l.kind, l.owned));
    println!(
        "rn: kinds parent={:?} shim={:?} link={:?}",
        kind("eth0.50"),
        kind("rnslan"),
        kind("rnmct")
    );
    // What Docker does with the container's link (here without moving it
    // into a namespace of its own).
    let address = format!("{}/24", link_address(args.me));
    ip(&["addr", "add", &address, "dev", "rnmct"])?;
    ip(&["link", "set", "rnmct", "up"])?;
    let socket = UdpSocket::bind((link_address(args.me), ECHO_PORT))
        .await
        .map_err(|e| format!("bind {address}: {e}"))?;
    let there = SocketAddr::new(IpAddr::V4(link_address(args.peer)), ECHO_PORT);
    exchange(&socket, there, &args.secret).await?;
    drop(socket);
    let observed = converge(&netlink, &Desired::default()).await?;
    let left: Vec<&String> = ["eth0.50", "rnslan", "rnmct"]
        .iter()
        .filter_map(|n| observed.links.get_key_value(*n).map(|(k, _)| k))
        .collect();
    if !left.is_empty() {
        return Err(format!("left after the network went: {left:?}"));
    }
    println!("rn: removed");
    Ok(())
}
