//! The kernel's WireGuard, in two small VMs booting Debian 12's own kernel
//! (this machine's kernel has no WireGuard): each runs rustnet's tunnel
//! (`tunnel-peer`, the overlay crate's `Tunnel`) against its kernel, the
//! two reach each other through it, and a capture of the link between
//! them shows WireGuard and never the text sent inside, also after both
//! ends took new keys. Once with the
//! kernel on both ends (one chosen by `auto`), once with a kernel peer and
//! a userspace peer.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::Duration;

use rustnet_tests::vm::{Image, udp_datagrams};

const WIREGUARD_PORT: u16 = 51871;
/// Two emulated VMs on two cores: boot, handshake, echo, linger, power off.
const LIMIT: Duration = Duration::from_secs(240);

fn image() -> Image {
    Image::build(
        Path::new(env!("CARGO_BIN_EXE_tunnel-peer")),
        &["tun", "virtio_pci", "virtio_net", "wireguard"],
    )
}

/// Runs VMs `a` and `b` with WireGuard `wg_a` and `wg_b`; returns their
/// consoles and the capture of `a`'s link, having checked that both got
/// their echo and that the secret never crossed the wire in clear.
fn pair(a: u8, wg_a: &str, b: u8, wg_b: &str) -> (String, String) {
    let image = image();
    let capture = tempfile::NamedTempFile::new().unwrap();
    let secret = format!("SECRET-{}", std::process::id());
    let control = format!("CONTROL-{}", std::process::id());
    let words = |me: u8, peer: u8, wg: &str| {
        format!("rn.me={me} rn.peer={peer} rn.wg={wg} rn.secret={secret} rn.control={control}")
    };
    let vm_a = image.boot(a, b, &words(a, b, wg_a), Some(capture.path()));
    let vm_b = image.boot(b, a, &words(b, a, wg_b), None);
    let console_b = vm_b.wait(LIMIT);
    let console_a = vm_a.wait(LIMIT);
    for (name, console) in [("a", &console_a), ("b", &console_b)] {
        assert!(
            console.contains("rn: RESULT ok"),
            "VM {name} did not reach its peer through the tunnel:\n{console}"
        );
        assert!(
            console.contains(&format!("rn: echo of {secret}-rotated")),
            "VM {name}: no echo under the new keys:\n{console}"
        );
    }

    let datagrams = udp_datagrams(&std::fs::read(capture.path()).unwrap());
    let contains =
        |payload: &[u8], text: &str| payload.windows(text.len()).any(|w| w == text.as_bytes());
    assert!(
        datagrams.iter().any(|d| contains(&d.payload, &control)),
        "the capture sees clear text (the control datagram): {} datagrams",
        datagrams.len()
    );
    let wireguard = datagrams
        .iter()
        .filter(|d| d.source_port == WIREGUARD_PORT && d.destination_port == WIREGUARD_PORT)
        .count();
    assert!(
        wireguard >= 4,
        "a handshake and data, both ways, in WireGuard: {wireguard} datagrams"
    );
    assert!(
        !datagrams.iter().any(|d| contains(&d.payload, &secret)),
        "the secret crossed the wire in clear"
    );
    (console_a, console_b)
}

#[test]
#[ignore = "needs root, QEMU and Debian's kernel package: scripts/test.sh runs it"]
fn two_kernel_peers_carry_traffic_encrypted() {
    let (a, b) = pair(1, "auto", 2, "kernel");
    assert!(
        a.contains("rn: kind=kernel"),
        "auto chooses the kernel's WireGuard where the kernel has it:\n{a}"
    );
    assert!(b.contains("rn: kind=kernel"), "{b}");
}

#[test]
#[ignore = "needs root, QEMU and Debian's kernel package: scripts/test.sh runs it"]
fn a_kernel_peer_and_a_userspace_peer_talk() {
    let (a, b) = pair(3, "kernel", 4, "userspace");
    assert!(a.contains("rn: kind=kernel"), "{a}");
    assert!(
        b.contains("rn: kind=userspace"),
        "userspace, as asked, though the kernel has WireGuard:\n{b}"
    );
}

#[test]
#[ignore = "needs root, QEMU and Debian's kernel package: scripts/test.sh runs it"]
fn a_taken_port_refuses_the_tunnel_and_leaves_no_link() {
    let image = image();
    let words = "rn.me=7 rn.peer=8 rn.wg=kernel rn.secret=x rn.control=y rn.busy";
    let console = image.boot(7, 8, words, None).wait(LIMIT);
    assert!(
        console.contains("rn: Kernel refused: ") && console.contains("Address already in use"),
        "{console}"
    );
    assert!(console.contains("rn: no link left"), "{console}");
    // The name is free again: auto runs userspace there, and says why.
    assert!(
        console
            .contains("rn: Auto fell back: kind=userspace kernel_unavailable=Some(\"configure: "),
        "{console}"
    );
    assert!(console.contains("rn: RESULT ok"), "{console}");
}
