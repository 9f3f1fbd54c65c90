//! The userspace tunnel's device (a TAP with the virtio-net header) and
//! its two halves, read and written by the tunnel's engine.

use std::fs::{File, OpenOptions};
use std::io;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use gotatun::packet::{Ip, Packet, PacketBufPool};
use tokio::io::unix::AsyncFd;

use super::offload;

/// The most packets one read of the TAP device hands over.
const RECV_BATCH: usize = 64;

/// The device: a TAP (the virtio-net header in front of every frame, so
/// that the kernel can hand over and take whole TCP bursts, see
/// [`offload`]), non-blocking on tokio. Not a TUN device: the kernel
/// refuses tunnel GSO written to one. It answers no ARP: the kernel
/// addresses every frame to the device's own MAC.
pub(super) struct Tap {
    file: Arc<AsyncFd<File>>,
    mac: [u8; 6],
    /// Whether the kernel takes GSO over UDP tunnels from the device
    /// (Linux 6.17 and later): without, one packet per read and write.
    offloads: bool,
}

/// The device's receiving half: it reads frames and cuts them into the
/// packets the wire carries.
pub(super) struct TapReader {
    file: Arc<AsyncFd<File>>,
    frame: Vec<u8>,
}

/// The device's sending half: it joins consecutive segments of a TCP
/// stream and writes the frames.
pub(super) struct TapWriter {
    file: Arc<AsyncFd<File>>,
    coalescer: offload::Coalescer,
}

impl Tap {
    /// Opens the TAP device `name` (creating it) with the offloads the
    /// kernel takes.
    pub(super) fn open(name: &str) -> io::Result<Self> {
        if name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "name too long"));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")?;
        let (file, mac, offloads) = attach_tap(file, name)?;
        Ok(Self {
            file: Arc::new(file),
            mac,
            offloads,
        })
    }

    /// The device's two halves; the writer joins TCP segments of VXLAN
    /// to `vxlan_port` where the kernel takes them joined.
    pub(super) fn split(self, vxlan_port: u16) -> (TapWriter, TapReader) {
        let joins = self.offloads.then_some(vxlan_port);
        let writer = TapWriter {
            file: Arc::clone(&self.file),
            coalescer: offload::Coalescer::new(self.mac, joins),
        };
        let reader = TapReader {
            file: self.file,
            frame: vec![0; offload::MAX_FRAME],
        };
        (writer, reader)
    }
}

/// Binds `file` (an open /dev/net/tun) to the TAP device `name`, creating
/// it, with the virtio-net header and the offloads the kernel takes, and
/// registers it with tokio's reactor. Gives back its MAC, and whether the
/// offloads were taken.
#[allow(unsafe_code)] // the TUN ioctls have no safe wrapper; tokio's registration is unsafe
fn attach_tap(file: File, name: &str) -> io::Result<(AsyncFd<File>, [u8; 6], bool)> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
    const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
    const IFF_VNET_HDR: libc::c_int = 0x4000;
    // TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_UDP_TUNNEL_GSO and
    // _CSUM: VXLAN sends a UDP checksum by default; cut, a packet has none.
    const OFFLOADS: libc::c_ulong = 0x01 | 0x02 | 0x04 | 0x80 | 0x100;
    let fd = file.as_raw_fd();
    // SAFETY: ifreq is plain data, for which all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = libc::c_char::from_ne_bytes([byte]);
    }
    request.ifr_ifru.ifru_flags =
        libc::c_short::try_from(libc::IFF_TAP | libc::IFF_NO_PI | IFF_VNET_HDR)
            .map_err(|_| io::Error::other("TAP flags"))?;
    // SAFETY: TUNSETIFF reads and writes the ifreq it is given, which
    // lives for the call; the descriptor is `file`'s, open.
    if unsafe { libc::ioctl(fd, TUNSETIFF, &raw mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let header_len = libc::c_int::try_from(offload::VNET_HDR_LEN).unwrap_or(24);
    // SAFETY: TUNSETVNETHDRSZ reads the int it points at, alive for the call.
    if unsafe { libc::ioctl(fd, TUNSETVNETHDRSZ, &raw const header_len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: TUNSETOFFLOAD takes its flags by value.
    let offloads = unsafe { libc::ioctl(fd, TUNSETOFFLOAD, OFFLOADS) } == 0;
    if !offloads {
        tracing::info!(
            error = %io::Error::last_os_error(),
            "the kernel takes no GSO over UDP tunnels from a TAP device: \
             userspace WireGuard moves one packet per read and write"
        );
    }
    // SAFETY: SIOCGIFHWADDR writes the device's address into the ifreq,
    // which lives for the call.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &raw mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFHWADDR has just set the union's address member.
    let address = unsafe { request.ifr_ifru.ifru_hwaddr }.sa_data;
    let mut mac = [0u8; 6];
    for (byte, value) in mac.iter_mut().zip(address) {
        *byte = value.to_ne_bytes()[0];
    }
    // SAFETY: the AsyncFd owns `file`: the descriptor stays open and is
    // not closed elsewhere while registered.
    let file = unsafe { AsyncFd::register(file) }.map_err(io::Error::from)?;
    Ok((file, mac, offloads))
}

impl TapWriter {
    /// Takes a decrypted packet: joined with those before it where it
    /// continues their TCP stream, else written after them.
    pub(super) fn push(&mut self, packet: &[u8]) {
        let file = &self.file;
        self.coalescer.push(packet, &mut |frame| write(file, frame));
    }

    /// Writes what is still being joined.
    pub(super) fn flush(&mut self) {
        let file = &self.file;
        self.coalescer.flush(&mut |frame| write(file, frame));
    }
}

/// Writes `frame` to the device. A TAP device takes every write at once
/// (it never blocks); a frame it refuses is dropped, as a NIC would.
fn write(file: &AsyncFd<File>, frame: &[u8]) {
    let mut device: &File = file.get_ref();
    if let Err(e) = device.write(frame) {
        tracing::debug!(error = %e, len = frame.len(), "TAP write refused");
    }
}

impl TapReader {
    /// Waits for the device and appends the packets of every frame it
    /// holds now, up to [`RECV_BATCH`]: one wakeup for a burst, not one
    /// per packet.
    pub(super) async fn read(
        &mut self,
        pool: &mut PacketBufPool,
        packets: &mut Vec<Packet<Ip>>,
    ) -> io::Result<()> {
        while packets.is_empty() {
            let mut guard = self.file.readable().await?;
            while packets.len() < RECV_BATCH {
                let frame = &mut self.frame;
                match guard.try_io(|file| file.get_ref().read(frame)) {
                    Ok(Ok(n)) => {
                        let cut = offload::segment(&self.frame[..n], |bytes| {
                            let mut packet = pool.get();
                            if bytes.len() > packet.len() {
                                return;
                            }
                            packet[..bytes.len()].copy_from_slice(bytes);
                            packet.truncate(bytes.len());
                            if let Ok(ip) = packet.try_into_ip() {
                                packets.push(ip);
                            }
                        });
                        if let Err(why) = cut {
                            tracing::trace!(?why, "frame from the TAP device dropped");
                        }
                    }
                    Ok(Err(e)) => return Err(e),
                    // Drained: the readiness is cleared for the next wait.
                    Err(_would_block) => break,
                }
            }
        }
        Ok(())
    }
}
