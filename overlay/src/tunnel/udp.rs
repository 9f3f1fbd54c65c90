//! The userspace tunnel's UDP socket: gotatun's, with big buffers, sending
//! runs of datagrams to one peer with UDP GSO.

use std::io;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gotatun::packet::Packet;
use gotatun::udp::socket::{UdpSocket, UdpSocketFactory};
use gotatun::udp::{UdpSend, UdpTransportFactory, UdpTransportFactoryParams};
use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, setsockopt, sockopt};
use tokio::io::Interest;

/// The UDP socket's buffers: a burst of a fast sender must not overflow
/// them (at the default 208 KiB, one datagram in ten of an iperf3 stream
/// was dropped at the receiver, and TCP inside slowed to a crawl).
const UDP_BUFFER: usize = 8 << 20;

/// gotatun's UDP socket, with buffers set past `net.core.rmem_max` and
/// `wmem_max` (`SO_RCVBUFFORCE`, as root): the host's limits stay as they are.
#[derive(Debug, Default)]
pub(super) struct BigBuffers(UdpSocketFactory);

impl UdpTransportFactory for BigBuffers {
    type Send = GsoSend;
    type Recv = <UdpSocketFactory as UdpTransportFactory>::Recv;

    async fn bind(
        &mut self,
        params: &UdpTransportFactoryParams,
    ) -> io::Result<(Self::Send, Self::Recv)> {
        let (send, recv) = self.0.bind(params).await?;
        let socket = send.socket();
        for (what, result) in [
            (
                "SO_RCVBUFFORCE",
                setsockopt(socket, sockopt::RcvBufForce, &UDP_BUFFER),
            ),
            (
                "SO_SNDBUFFORCE",
                setsockopt(socket, sockopt::SndBufForce, &UDP_BUFFER),
            ),
        ] {
            if let Err(e) = result {
                tracing::warn!(option = what, error = %e, "WireGuard socket buffer left as it was");
            }
        }
        Ok((
            GsoSend {
                socket: send,
                gso: Arc::new(AtomicBool::new(true)),
            },
            recv,
        ))
    }
}

/// The most datagrams one send with UDP GSO carries (the kernel's
/// `UDP_MAX_SEGMENTS` before 6.x), and the most bytes.
const MAX_SEGMENTS: usize = 64;
const MAX_RUN_BYTES: usize = 65_000;

/// gotatun's UDP socket, sending each run of equal datagrams to one peer
/// (the sealed segments of one TCP burst) as one `sendmsg` with
/// `UDP_SEGMENT`: one trip through the host's stack, not one per datagram.
/// Where the kernel or the route cannot (`EIO`), it stops trying and sends
/// them one by one (`sendmmsg`).
#[derive(Clone)]
pub(super) struct GsoSend {
    socket: UdpSocket,
    /// Cleared when the kernel refuses UDP GSO.
    gso: Arc<AtomicBool>,
}

/// How many datagrams from the front of `datagrams` (length, destination)
/// one GSO send can carry: one destination, all of the first's length but
/// the last, which may be shorter.
fn run_len(datagrams: impl IntoIterator<Item = (usize, SocketAddr)>) -> usize {
    let mut datagrams = datagrams.into_iter();
    let Some((size, to)) = datagrams.next() else {
        return 0;
    };
    let (mut count, mut bytes) = (1, size);
    for (len, destination) in datagrams {
        if destination != to || len > size || count == MAX_SEGMENTS || bytes + len > MAX_RUN_BYTES {
            break;
        }
        count += 1;
        bytes += len;
        if len < size {
            break;
        }
    }
    count
}

impl GsoSend {
    /// Sends `datagrams` (one destination, see [`run_len`]) in one call.
    async fn send_run(&self, datagrams: &[(Packet, SocketAddr)]) -> io::Result<()> {
        let socket = self.socket.socket();
        let fd = socket.as_raw_fd();
        let size = u16::try_from(datagrams[0].0.len()).map_err(io::Error::other)?;
        let slices: Vec<IoSlice<'_>> = datagrams.iter().map(|(p, _)| IoSlice::new(p)).collect();
        let destination = SockaddrStorage::from(datagrams[0].1);
        socket
            .async_io(Interest::WRITABLE, || {
                nix::sys::socket::sendmsg(
                    fd,
                    &slices,
                    &[ControlMessage::UdpGsoSegments(&size)],
                    MsgFlags::MSG_DONTWAIT,
                    Some(&destination),
                )
                .map_err(io::Error::from)
            })
            .await
            .map(drop)
    }
}

impl UdpSend for GsoSend {
    type SendManyBuf = <UdpSocket as UdpSend>::SendManyBuf;

    async fn send_to(&self, packet: Packet, destination: SocketAddr) -> io::Result<()> {
        self.socket.send_to(packet, destination).await
    }

    fn max_number_of_packets_to_send(&self) -> usize {
        self.socket.max_number_of_packets_to_send()
    }

    async fn send_many_to(
        &self,
        buf: &mut Self::SendManyBuf,
        packets: &mut Vec<(Packet, SocketAddr)>,
    ) -> io::Result<()> {
        // A run one peer's route refuses does not hold up the others':
        // the first error is told after the rest went.
        let (mut start, mut refused) = (0, None);
        while start < packets.len() && self.gso.load(Ordering::Relaxed) {
            let len = run_len(packets[start..].iter().map(|(p, to)| (p.len(), *to)));
            let sent = if len < 2 {
                let (packet, destination) = &packets[start];
                self.socket
                    .socket()
                    .send_to(packet, *destination)
                    .await
                    .map(drop)
            } else {
                self.send_run(&packets[start..start + len]).await
            };
            match sent {
                Ok(()) => {}
                Err(e) if len >= 2 && e.raw_os_error() == Some(libc::EIO) => {
                    tracing::info!(error = %e, "no UDP GSO here: WireGuard sends datagram by datagram");
                    self.gso.store(false, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    refused.get_or_insert(e);
                }
            }
            start += len;
        }
        packets.drain(..start);
        if !packets.is_empty() {
            self.socket.send_many_to(buf, packets).await?;
        }
        refused.map_or(Ok(()), Err)
    }

    fn local_addr(&self) -> io::Result<Option<SocketAddr>> {
        UdpSend::local_addr(&self.socket)
    }

    fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        UdpSend::set_fwmark(&self.socket, mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_one_destination_and_one_size_but_a_shorter_last() {
        let a: SocketAddr = "10.0.0.2:51871".parse().unwrap();
        let b: SocketAddr = "10.0.0.3:51871".parse().unwrap();
        assert_eq!(run_len([]), 0);
        assert_eq!(run_len([(1400, a)]), 1);
        assert_eq!(run_len([(1400, a), (1400, a), (200, a), (1400, a)]), 3);
        assert_eq!(run_len([(1400, a), (1400, b)]), 1);
        assert_eq!(run_len([(200, a), (1400, a)]), 1);
        assert_eq!(run_len(vec![(100, a); 100]), MAX_SEGMENTS);
        assert_eq!(run_len(vec![(1400, a); 60]), MAX_RUN_BYTES / 1400);
    }

    /// A datagram the kernel refuses at once (to the broadcast address,
    /// without `SO_BROADCAST`: `EACCES`) is told, and the datagrams after
    /// it, to another peer, still go. Loopback only.
    #[tokio::test]
    async fn a_refused_datagram_does_not_hold_up_the_others() {
        let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = receiver.local_addr().unwrap();
        let params = UdpTransportFactoryParams {
            addr: Some(std::net::Ipv4Addr::LOCALHOST.into()),
            port: 0,
            fwmark: None,
        };
        let (send, _receive) = BigBuffers::default().bind(&params).await.unwrap();
        let refused: SocketAddr = "255.255.255.255:9".parse().unwrap();
        let datagram = |bytes: &[u8]| Packet::copy_from(bytes);
        let mut batch = vec![
            (datagram(b"one"), refused),
            (datagram(b"two"), refused),
            (datagram(b"three"), to),
        ];
        let mut buf = Default::default();
        let told = send.send_many_to(&mut buf, &mut batch).await;
        assert_eq!(told.map_err(|e| e.raw_os_error()), Err(Some(libc::EACCES)));
        let mut got = [0u8; 16];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), receiver.recv(&mut got))
            .await
            .expect("the datagram to the other peer never came")
            .unwrap();
        assert_eq!(&got[..n], b"three");
    }
}
