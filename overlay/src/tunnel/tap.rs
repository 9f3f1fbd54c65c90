//! The userspace tunnel's device (a TAP with the virtio-net header) and
//! the two halves gotatun reads and writes through.

use std::fs::{File, OpenOptions};
use std::io;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use gotatun::packet::{Ip, Packet, PacketBufPool};
use gotatun::tun::{IpRecv, IpSend, MtuWatcher};
use tokio::io::unix::AsyncFd;

use super::offload;

/// The most packets one receive from the TAP device hands over.
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
    mtu: u16,
}

/// The device's sending half: packets go to a task on the tunnel's thread
/// that joins what it can and writes ([`write_frames`]).
#[derive(Clone)]
pub(super) struct TapWriter {
    packets: tokio::sync::mpsc::Sender<Packet<Ip>>,
}

/// How many decrypted packets wait for the writer at most.
const WRITE_QUEUE: usize = 1024;

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

    /// The device's two halves; the writer's task is spawned on the
    /// current runtime (the tunnel's thread) and ends with the writer.
    pub(super) fn split(self, mtu: u32, vxlan_port: u16) -> (TapWriter, TapReader) {
        let (packets, queue) = tokio::sync::mpsc::channel(WRITE_QUEUE);
        let joins = self.offloads.then_some(vxlan_port);
        let coalescer = offload::Coalescer::new(self.mac, joins);
        tokio::spawn(write_frames(Arc::clone(&self.file), queue, coalescer));
        let reader = TapReader {
            file: self.file,
            frame: vec![0; offload::MAX_FRAME],
            mtu: u16::try_from(mtu).unwrap_or(u16::MAX),
        };
        (TapWriter { packets }, reader)
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

impl IpSend for TapWriter {
    async fn send(&mut self, packet: Packet<Ip>) -> io::Result<()> {
        self.packets
            .send(packet)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the TAP writer ended"))
    }
}

/// Writes the packets queued for the device: each wakeup takes what is
/// queued, joins consecutive segments of a TCP stream, writes the frames.
/// A TAP device takes every write at once (it never blocks); a frame it
/// refuses is dropped, as a NIC would.
async fn write_frames(
    file: Arc<AsyncFd<File>>,
    mut queue: tokio::sync::mpsc::Receiver<Packet<Ip>>,
    mut coalescer: offload::Coalescer,
) {
    let mut batch = Vec::with_capacity(WRITE_QUEUE);
    let mut write = |frame: &[u8]| {
        let mut device: &File = file.get_ref();
        if let Err(e) = device.write(frame) {
            tracing::debug!(error = %e, len = frame.len(), "TAP write refused");
        }
    };
    while queue.recv_many(&mut batch, WRITE_QUEUE).await > 0 {
        for packet in batch.drain(..) {
            coalescer.push(&packet.into_bytes(), &mut write);
        }
        coalescer.flush(&mut write);
    }
}

impl IpRecv for TapReader {
    /// The packets of every frame the device holds now, up to
    /// [`RECV_BATCH`]: one wakeup for a burst, not one per packet.
    async fn recv<'a>(
        &'a mut self,
        pool: &mut PacketBufPool,
    ) -> io::Result<impl Iterator<Item = Packet<Ip>> + Send + 'a> {
        let mut packets = Vec::new();
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
        Ok(packets.into_iter())
    }

    fn mtu(&self) -> MtuWatcher {
        MtuWatcher::new(self.mtu)
    }
}
