//! ipvlan and macvlan networks on a VLAN parent, in two small VMs booting
//! Debian 12's own kernel (this machine's kernel has neither ipvlan nor
//! 802.1Q VLANs): each runs rustnet's data path for one network
//! (`lan-peer`): it creates the VLAN parent `eth0.50`, the host shim and a
//! container's link, the two VMs' links reach each other, and a capture of
//! the wire between them shows their frames tagged with VLAN 50; then the
//! network goes and takes the VLAN with it.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::time::Duration;

use rustnet_tests::vm::{Image, tagged_frames};

/// Two emulated VMs on two cores: boot, build, echo, linger, power off.
const LIMIT: Duration = Duration::from_secs(240);

#[test]
#[ignore = "needs root, QEMU and Debian's kernel package: scripts/test.sh runs it"]
fn an_ipvlan_and_a_macvlan_host_talk_over_a_vlan_parent_rustnet_made() {
    let image = Image::build(
        Path::new(env!("CARGO_BIN_EXE_lan-peer")),
        &["virtio_pci", "virtio_net", "8021q", "ipvlan", "macvlan"],
    );
    let capture = tempfile::NamedTempFile::new().unwrap();
    let secret = format!("LAN-{}", std::process::id());
    let words = |me: u8, peer: u8, kind: &str| {
        format!("rn.me={me} rn.peer={peer} rn.kind={kind} rn.secret={secret}")
    };
    let a = image.boot(5, 6, &words(5, 6, "ipvlan"), Some(capture.path()));
    let b = image.boot(6, 5, &words(6, 5, "macvlan"), None);
    let console_b = b.wait(LIMIT);
    let console_a = a.wait(LIMIT);
    for (name, console, kind) in [("a", &console_a, "Ipvlan"), ("b", &console_b, "Macvlan")] {
        assert!(
            console.contains("rn: RESULT ok"),
            "VM {name} did not reach its peer over the network:\n{console}"
        );
        assert!(
            console.contains(&format!(
                "rn: kinds parent=Some((Vlan, true)) shim=Some(({kind}, true)) link=Some(({kind}, true))"
            )),
            "VM {name}: rustnet's VLAN parent, shim and link, of the kinds asked for:\n{console}"
        );
        assert!(
            console.contains(&format!("rn: echo of {secret}")),
            "VM {name}: no echo:\n{console}"
        );
        assert!(console.contains("rn: removed"), "VM {name}:\n{console}");
    }
    let tagged = tagged_frames(&std::fs::read(capture.path()).unwrap(), 50);
    assert!(
        tagged >= 4,
        "frames tagged with VLAN 50 on the wire: {tagged}"
    );
}
