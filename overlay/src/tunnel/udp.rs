//! The userspace tunnel's UDP socket: gotatun's, with big buffers, sending
//! runs of datagrams to one peer with UDP GSO.

use std::io;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use gotatun::packet::Packet;
use gotatun::udp::socket::{UdpSocket, UdpSocketFactory};
use gotatun::udp::{UdpSend, UdpTransportFactory, UdpTransportFactoryParams};
use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, setsockopt, sockopt};
use tokio::io::Interest;

/// The UDP socket's buffers: a burst of a fast sender must not overflow
/// them (at the default 208 KiB, one datagram in ten of an iperf3 stream
/// was dropped at the receiver, and TCP inside slowed to a crawl).
const UDP_BUFFER: usize = 8 << 20;

/// Binds WireGuard's socket on `port` (on `addr`, else every address of
/// both families): gotatun's, with UDP GRO, and buffers set past
/// `net.core.rmem_max` and `wmem_max` (`SO_RCVBUFFORCE`, as root: the
/// host's limits stay as they are). Gives back its sending half and its
/// receiving half.
pub(super) async fn bind(addr: Option<IpAddr>, port: u16) -> io::Result<(GsoSend, UdpSocket)> {
    let params = UdpTransportFactoryParams {
        addr,
        port,
        fwmark: None,
    };
    let (send, recv) = UdpSocketFactory::default().bind(&params).await?;
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
    let send = GsoSend {
        socket: send,
        gso: true,
        buf: Default::default(),
    };
    Ok((send, recv))
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
pub(super) struct GsoSend {
    socket: UdpSocket,
    /// Cleared when the kernel refuses UDP GSO.
    gso: bool,
    /// gotatun's buffers for sending datagram by datagram.
    buf: <UdpSocket as UdpSend>::SendManyBuf,
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
    /// Sends `packets`, in order, and empties it: runs of equal datagrams
    /// to one peer in one call each, the rest one by one. A run one
    /// peer's route refuses does not hold up the others': the first error
    /// is told after the rest went.
    pub(super) async fn send(&mut self, packets: &mut Vec<(Packet, SocketAddr)>) -> io::Result<()> {
        let (mut start, mut refused) = (0, None);
        while start < packets.len() && self.gso {
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
                    self.gso = false;
                    break;
                }
                Err(e) => {
                    refused.get_or_insert(e);
                }
            }
            start += len;
        }
        packets.drain(..start);
        // Without GSO: gotatun's `sendmmsg`, as many at a time as it takes.
        let most = self.socket.max_number_of_packets_to_send().max(1);
        while !packets.is_empty() {
            let mut batch: Vec<_> = packets.drain(..most.min(packets.len())).collect();
            if let Err(e) = self.socket.send_many_to(&mut self.buf, &mut batch).await {
                refused.get_or_insert(e);
            }
        }
        refused.map_or(Ok(()), Err)
    }

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
        let (mut send, _receive) = bind(Some(std::net::Ipv4Addr::LOCALHOST.into()), 0)
            .await
            .unwrap();
        let refused: SocketAddr = "255.255.255.255:9".parse().unwrap();
        let datagram = |bytes: &[u8]| Packet::copy_from(bytes);
        let mut batch = vec![
            (datagram(b"one"), refused),
            (datagram(b"two"), refused),
            (datagram(b"three"), to),
        ];
        let told = send.send(&mut batch).await;
        assert_eq!(told.map_err(|e| e.raw_os_error()), Err(Some(libc::EACCES)));
        let mut got = [0u8; 16];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), receiver.recv(&mut got))
            .await
            .expect("the datagram to the other peer never came")
            .unwrap();
        assert_eq!(&got[..n], b"three");
    }
}
