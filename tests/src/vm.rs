//! Small VMs booting Debian 12's own kernel, for what the test machine's
//! kernel lacks (WireGuard, ipvlan, VLANs): `scripts/vm-image.sh` makes the
//! kernel and an initramfs around one program, QEMU runs it emulated
//! (TCG: correct, not fast), and the VM's console is the program's output.
//!
//! ```text
//!   VM a (10.0.0.1) ── eth0 ══ UDP datagrams on 127.0.0.1 ══ eth0 ── VM b (10.0.0.2)
//!                       └─ capture: every frame of a's link, as pcap
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A kernel and an initramfs to boot.
#[derive(Debug)]
pub struct Image {
    dir: tempfile::TempDir,
}

impl Image {
    /// Makes the image of `program` with `modules` loaded at boot; panics
    /// (with why) when it cannot, as when QEMU or the kernel package is
    /// missing: a test that needs a VM fails, never passes, without one.
    pub fn build(program: &Path, modules: &[&str]) -> Self {
        assert!(
            Command::new("qemu-system-x86_64")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "qemu-system-x86_64 is missing: scripts/test.sh installs qemu-system-x86"
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/vm-image.sh");
        let out = Command::new(script)
            .arg(dir.path())
            .arg(program)
            .args(modules)
            .output()
            .unwrap_or_else(|e| panic!("run scripts/vm-image.sh: {e}"));
        assert!(
            out.status.success(),
            "scripts/vm-image.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    /// Boots VM `index` (1..=254: eth0 10.0.0.INDEX/24) with `words` on
    /// its kernel command line; its link reaches the VM with index `peer`,
    /// and is captured to `capture` when given.
    pub fn boot(&self, index: u8, peer: u8, words: &str, capture: Option<&Path>) -> Vm {
        let console = self.dir.path().join(format!("console-{index}"));
        // Each VM's end of the link: a UDP port on loopback, by index.
        let port = |i: u8| 41000 + u16::from(i);
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args(["-m", "512", "-cpu", "max", "-accel", "tcg", "-nodefaults"])
            .args(["-no-reboot", "-display", "none"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-kernel")
            .arg(self.dir.path().join("vmlinuz"))
            .arg("-initrd")
            .arg(self.dir.path().join("initramfs.gz"))
            .arg("-append")
            .arg(format!(
                "console=ttyS0 panic=-1 quiet rn.ip=10.0.0.{index}/24 {words}"
            ))
            .arg("-netdev")
            .arg(format!(
                "dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port={},\
                 remote.type=inet,remote.host=127.0.0.1,remote.port={}",
                port(index),
                port(peer)
            ))
            .arg("-device")
            .arg(format!(
                "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:{index:02x}"
            ));
        if let Some(capture) = capture {
            command.arg("-object").arg(format!(
                "filter-dump,id=d0,netdev=n0,file={}",
                capture.display()
            ));
        }
        let log = self.dir.path().join(format!("qemu-{index}.log"));
        let stderr =
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("start qemu-system-x86_64: {e}"));
        Vm {
            child,
            console,
            log,
        }
    }
}

/// A running VM.
#[derive(Debug)]
pub struct Vm {
    child: Child,
    console: PathBuf,
    /// QEMU's own messages.
    log: PathBuf,
}

impl Vm {
    /// Waits until the VM powers off, at most `limit`, and returns its
    /// console; panics with what it printed if it does not stop in time.
    pub fn wait(mut self, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let console = std::fs::read_to_string(&self.console).unwrap_or_default();
                assert!(
                    status.success(),
                    "QEMU failed ({status}): {}\nthe console:\n{console}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
                return console;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the VM did not power off within {limit:?}; QEMU said:\n{}\nits console:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default(),
                    std::fs::read_to_string(&self.console).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `key=VALUE` among a VM program's words (its kernel
/// command line).
pub fn word(words: &[String], key: &str) -> Result<String, String> {
    words
        .iter()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .ok_or_else(|| format!("{key}= missing"))
}

/// Emulated machines are slow: the peer may boot half a minute later.
const DEADLINE: Duration = Duration::from_secs(120);
/// How long this end keeps answering after its own echo came back.
const LINGER: Duration = Duration::from_secs(15);

/// Sends `secret` to `there` until it comes back echoed, answers what the
/// peer sends the same way, and lingers a while after both, so that the
/// peer gets its echo too.
pub async fn exchange(
    socket: &tokio::net::UdpSocket,
    there: std::net::SocketAddr,
    secret: &str,
) -> Result<(), String> {
    let echo = format!("echo:{secret}");
    let start = tokio::time::Instant::now();
    let mut echoed_at = None;
    let mut answered = false;
    let mut buf = vec![0u8; 2048];
    loop {
        if answered && echoed_at.is_some_and(|at: tokio::time::Instant| at.elapsed() > LINGER) {
            return Ok(());
        }
        if start.elapsed() > DEADLINE {
            return Err(format!(
                "no echo of {secret} through the tunnel in {DEADLINE:?} (echoed: {}, answered: {answered})",
                echoed_at.is_some()
            ));
        }
        if echoed_at.is_none() {
            let _ = socket.send_to(secret.as_bytes(), there).await;
        }
        let Ok(received) =
            tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buf)).await
        else {
            continue;
        };
        let (n, from) = received.map_err(|e| format!("receive: {e}"))?;
        if from.ip() != there.ip() {
            continue;
        }
        let message = &buf[..n];
        if message == echo.as_bytes() {
            if echoed_at.is_none() {
                println!("rn: echo of {secret} after {:?}", start.elapsed());
                echoed_at = Some(tokio::time::Instant::now());
            }
        } else if !message.starts_with(b"echo:") {
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(message);
            let _ = socket.send_to(&reply, from).await;
            answered = true;
        }
    }
}

/// How many frames of a pcap file of Ethernet frames carry 802.1Q tag
/// `vlan` (pure).
pub fn tagged_frames(pcap: &[u8], vlan: u16) -> usize {
    frames(pcap)
        .filter(|frame| {
            frame.len() >= 16
                && frame[12..14] == [0x81, 0x00]
                && u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff == vlan
        })
        .count()
}

/// The frames of a pcap file, in order (pure).
fn frames(pcap: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = pcap.get(24..).unwrap_or_default();
    std::iter::from_fn(move || {
        let header = rest.get(..16)?;
        let length = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
        let frame = rest.get(16..16 + length)?;
        rest = &rest[16 + length..];
        Some(frame)
    })
}

/// One IPv4 UDP datagram of a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub source_port: u16,
    pub destination_port: u16,
    pub payload: Vec<u8>,
}

/// The IPv4 UDP datagrams of a pcap file of Ethernet frames (pure).
pub fn udp_datagrams(pcap: &[u8]) -> Vec<Datagram> {
    frames(pcap)
        .filter_map(|frame| {
            // Ethernet, IPv4 (EtherType 0x0800), UDP (protocol 17).
            if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[14 + 9] != 17 {
                return None;
            }
            let header = usize::from(frame[14] & 0x0f) * 4;
            let udp = frame.get(14 + header..).filter(|udp| udp.len() >= 8)?;
            Some(Datagram {
                source_port: u16::from_be_bytes([udp[0], udp[1]]),
                destination_port: u16::from_be_bytes([udp[2], udp[3]]),
                payload: udp[8..].to_vec(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_gives_its_udp_datagrams() {
        let mut pcap = vec![0u8; 24];
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
        ip.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&[0xca, 0x9f, 0x1b, 0x59, 0, 11, 0, 0, b'h', b'i', b'!']);
        for _ in 0..2 {
            pcap.extend_from_slice(&[0; 8]);
            let length = u32::try_from(frame.len()).unwrap().to_le_bytes();
            pcap.extend_from_slice(&length);
            pcap.extend_from_slice(&length);
            pcap.extend_from_slice(&frame);
        }
        let datagrams = udp_datagrams(&pcap);
        assert_eq!(datagrams.len(), 2);
        assert_eq!(
            datagrams[0],
            Datagram {
                source_port: 51871,
                destination_port: 7001,
                payload: b"hi!".to_vec()
            }
        );
        assert!(
            udp_datagrams(&pcap[..30]).is_empty(),
            "a cut record is no datagram"
        );
    }
}
