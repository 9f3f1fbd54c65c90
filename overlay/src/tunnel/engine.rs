//! The userspace WireGuard's device: one task on the tunnel's thread that
//! moves every packet between the TAP device and the UDP socket, the
//! peers' sessions ([`Sessions`]) sealing and opening them.
//!
//! ```text
//!   TAP readable ─► cut bursts (tap.rs) ─► peer by destination ─► seal
//!                 ─► runs of datagrams, one send each (udp.rs)
//!   UDP readable ─► datagrams (GRO) ─► peer by index ─► open
//!                 ─► source check ─► join TCP segments ─► TAP writes
//!   every 250 ms ─► WireGuard's timers (retries, rekeying, expiry)
//! ```
//!
//! A wakeup takes everything that is ready, so a burst is sealed or
//! opened with no hand-over between tasks and one peer lookup per packet.
//! gotatun's own device passes each packet through two or three channels
//! between its tasks and two locks: a fifth of the machine in a profile,
//! and iperf3 across an encrypted overlay went from 2.5 to 3.7 Gbit/s
//! without them.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use gotatun::packet::{Packet, PacketBufPool};
use gotatun::udp::UdpRecv;
use gotatun::udp::socket::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::sessions::{Outgoing, Sessions};
use super::tap::{TapReader, TapWriter};
use super::udp::{self, GsoSend};
use super::{PeerState, TunnelPeer};

/// How often WireGuard's timers run (gotatun's device's period).
const TIMER_PERIOD: Duration = Duration::from_millis(250);

/// Packet buffers kept for reuse (4 KB each): a burst read and sealed, a
/// batch received and opened.
const POOL: usize = 1024;

/// What the tunnel asks of its device.
pub(super) enum Command {
    /// Makes the peers exactly these; binds the port with the first.
    SetPeers(
        BTreeMap<[u8; 32], TunnelPeer>,
        oneshot::Sender<io::Result<()>>,
    ),
    /// Replaces this host's static key and starts new handshakes with it.
    SetKey([u8; 32], oneshot::Sender<()>),
    /// Every peer's state, for status.
    States(oneshot::Sender<Vec<PeerState>>),
    /// Whether each of these peers has a session now.
    Sessions(Vec<[u8; 32]>, oneshot::Sender<bool>),
}

/// The device, owned by its one task.
pub(super) struct Engine {
    sessions: Sessions,
    port: u16,
    /// The socket's sending half, once there are peers.
    udp: Option<GsoSend>,
    /// Datagrams waiting to be sent, in order.
    outgoing: Outgoing,
    tap: TapWriter,
}

impl Engine {
    /// A device with `private_key` and no peers, writing to `tap`, padding
    /// up to `mtu`; it listens on `port` once it has peers.
    pub(super) fn new(private_key: [u8; 32], port: u16, tap: TapWriter, mtu: u16) -> Self {
        Self {
            sessions: Sessions::new(private_key, mtu),
            port,
            udp: None,
            outgoing: Vec::new(),
            tap,
        }
    }

    /// Runs the device until the tunnel lets go of `commands` or the TAP
    /// device goes.
    pub(super) async fn run(
        mut self,
        mut reader: TapReader,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let pool = PacketBufPool::new(POOL);
        let (mut read_pool, mut recv_pool) = (pool.clone(), pool);
        let mut udp_rx: Option<UdpSocket> = None;
        let mut recv_buf = Default::default();
        let (mut read, mut received) = (Vec::new(), Vec::new());
        let mut timers = tokio::time::interval(TIMER_PERIOD);
        timers.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    if let Some(bound) = self.command(command).await {
                        udp_rx = Some(bound);
                    }
                }
                _ = timers.tick() => self.sessions.timers(&mut self.outgoing),
                result = reader.read(&mut read_pool, &mut read) => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "the tunnel's TAP device: its WireGuard stops");
                        return;
                    }
                    for packet in read.drain(..) {
                        self.sessions.seal(packet, &mut self.outgoing);
                    }
                }
                result = receive(udp_rx.as_mut(), &mut recv_buf, &mut recv_pool, &mut received) => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "WireGuard's socket");
                    }
                    for (datagram, from) in received.drain(..) {
                        let tap = &mut self.tap;
                        self.sessions.open(datagram, from, &mut self.outgoing, |packet| tap.push(packet));
                    }
                    self.tap.flush();
                }
            }
            self.send().await;
        }
    }

    /// Carries out `command`; gives back the socket's receiving half when
    /// it bound the port.
    async fn command(&mut self, command: Command) -> Option<UdpSocket> {
        let mut bound = None;
        match command {
            Command::SetPeers(wanted, reply) => {
                let result = match self.bind(&wanted).await {
                    Ok(receiver) => {
                        bound = receiver;
                        self.sessions.set_peers(wanted, &mut self.outgoing);
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            Command::SetKey(private_key, reply) => {
                self.sessions.set_key(private_key, &mut self.outgoing);
                let _ = reply.send(());
            }
            Command::States(reply) => {
                let _ = reply.send(self.sessions.states());
            }
            Command::Sessions(keys, reply) => {
                let _ = reply.send(self.sessions.have_sessions(&keys));
            }
        }
        bound
    }

    /// Binds WireGuard's port when the first peers come (a device without
    /// peers holds no port).
    async fn bind(
        &mut self,
        wanted: &BTreeMap<[u8; 32], TunnelPeer>,
    ) -> io::Result<Option<UdpSocket>> {
        if self.udp.is_some() || wanted.is_empty() {
            return Ok(None);
        }
        let (send, receive) = udp::bind(None, self.port).await?;
        self.udp = Some(send);
        Ok(Some(receive))
    }

    /// Sends what is waiting, in order. Without a socket (no peers yet)
    /// it is dropped.
    async fn send(&mut self) {
        let Some(udp) = &mut self.udp else {
            self.outgoing.clear();
            return;
        };
        if let Err(e) = udp.send(&mut self.outgoing).await {
            tracing::debug!(error = %e, "WireGuard's socket refused datagrams");
        }
    }
}

/// Receives what the socket has, or waits forever without one.
async fn receive(
    udp: Option<&mut UdpSocket>,
    buf: &mut <UdpSocket as UdpRecv>::RecvManyBuf,
    pool: &mut PacketBufPool,
    datagrams: &mut Vec<(Packet, SocketAddr)>,
) -> io::Result<()> {
    match udp {
        Some(udp) => udp.recv_many_from(buf, pool, datagrams).await,
        None => std::future::pending().await,
    }
}
