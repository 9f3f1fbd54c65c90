//! The userspace WireGuard's peers and their Noise sessions, without any
//! I/O: packets in, packets out. gotatun's [`Tunn`] does the protocol
//! (handshakes, keys, timers, ChaCha20-Poly1305); this finds the peer of
//! each packet and keeps what a device must: which peer has which session
//! index, which tunnel address, and where it is.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use gotatun::noise::errors::WireGuardError;
use gotatun::noise::handshake::parse_handshake_anon;
use gotatun::noise::index_table::IndexTable;
use gotatun::noise::rate_limiter::RateLimiter;
use gotatun::noise::{Tunn, TunnResult};
use gotatun::packet::{Ip, Packet, WgKind};
use gotatun::tun::MtuWatcher;
use gotatun::x25519::{PublicKey, StaticSecret};

use super::{PeerState, TunnelPeer};

/// Handshake initiations a second before the device answers with cookies
/// (gotatun's device's limit).
const HANDSHAKE_RATE_LIMIT: u64 = 100;

/// Datagrams to send, in order, each with where it goes.
pub(super) type Outgoing = Vec<(Packet, SocketAddr)>;

/// One host at the other end.
struct Peer {
    tunn: Tunn,
    /// Where it is: as configured, then where its last authenticated
    /// packet came from (WireGuard's roaming).
    endpoint: SocketAddr,
    /// As the cluster says; `address` is the only inner source it may use.
    configured: TunnelPeer,
}

/// This host's key and its peers' sessions.
pub(super) struct Sessions {
    private: StaticSecret,
    public: PublicKey,
    rate_limiter: Arc<RateLimiter>,
    /// Session indices, shared by every peer's sessions.
    indices: IndexTable,
    peers: HashMap<[u8; 32], Peer>,
    /// Peers by the session indices this host gave them in handshakes.
    by_index: HashMap<u32, [u8; 32]>,
    /// Peers by their tunnel address, the destination of what they get.
    by_address: HashMap<Ipv4Addr, [u8; 32]>,
    /// The tunnel's MTU, up to which packets are padded.
    mtu: MtuWatcher,
}

impl Sessions {
    /// No peers yet, this host's `private_key`, packets padded up to `mtu`.
    pub(super) fn new(private_key: [u8; 32], mtu: u16) -> Self {
        let private = StaticSecret::from(private_key);
        let public = PublicKey::from(&private);
        Self {
            rate_limiter: Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT)),
            private,
            public,
            indices: <IndexTable>::from_os_rng(),
            peers: HashMap::new(),
            by_index: HashMap::new(),
            by_address: HashMap::new(),
            mtu: MtuWatcher::new(mtu),
        }
    }

    /// Seals `packet`, read from the device, for the peer whose tunnel
    /// address it goes to (or starts a handshake with it, the packet
    /// waiting); a packet for no peer is dropped.
    pub(super) fn seal(&mut self, packet: Packet<Ip>, out: &mut Outgoing) {
        let Some(IpAddr::V4(to)) = packet.destination() else {
            return;
        };
        let Some(peer) = self.by_address.get(&to).and_then(|k| self.peers.get_mut(k)) else {
            return;
        };
        if let Some(sealed) = peer
            .tunn
            .handle_outgoing_packet(packet.into_bytes(), Some(&mut self.mtu))
        {
            queue(
                &mut self.by_index,
                out,
                peer.configured.key,
                sealed,
                peer.endpoint,
            );
        }
    }

    /// Opens `datagram`, received from `from`: a handshake is answered
    /// (with the packets that waited for it), data from a peer's own
    /// tunnel address goes to `deliver`, anything else is dropped.
    pub(super) fn open(
        &mut self,
        datagram: Packet,
        from: SocketAddr,
        out: &mut Outgoing,
        deliver: impl FnOnce(&[u8]),
    ) {
        let message = match self.rate_limiter.verify_packet(from, datagram) {
            Ok(message) => message,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                out.push((cookie.into(), from));
                return;
            }
            Err(_) => return,
        };
        let key = match &message {
            WgKind::HandshakeInit(p) => parse_handshake_anon(&self.private, &self.public, p)
                .ok()
                .map(|half| half.peer_static_public),
            WgKind::HandshakeResp(p) => self.by_index.get(&p.receiver_idx.get()).copied(),
            WgKind::CookieReply(p) => self.by_index.get(&p.receiver_idx.get()).copied(),
            WgKind::Data(p) => self.by_index.get(&p.header.receiver_idx.get()).copied(),
        };
        let Some(peer) = key.and_then(|k| self.peers.get_mut(&k)) else {
            return;
        };
        match peer.tunn.handle_incoming_packet(message) {
            TunnResult::Done | TunnResult::Err(_) => {}
            TunnResult::WriteToNetwork(reply) => {
                peer.endpoint = from;
                let key = peer.configured.key;
                queue(&mut self.by_index, out, key, reply, from);
                for queued in peer.tunn.get_queued_packets(&mut self.mtu) {
                    queue(&mut self.by_index, out, key, queued, from);
                }
            }
            TunnResult::WriteToTunnel(packet) => {
                peer.endpoint = from;
                // Empty: a keepalive. Else only from the peer's own tunnel
                // address, as its allowed IPs would say, without the
                // padding that sealing added.
                if let Some((source, packet)) = ipv4(&packet)
                    && source == peer.configured.address
                {
                    deliver(packet);
                }
            }
        }
    }

    /// Runs every peer's timers (handshake retries, rekeying, keepalives,
    /// the expiry of old sessions), what they send into `out`.
    pub(super) fn timers(&mut self, out: &mut Outgoing) {
        self.by_index.retain(|index, _| self.indices.in_use(*index));
        self.rate_limiter.try_reset_count();
        for peer in self.peers.values_mut() {
            match peer.tunn.update_timers() {
                Ok(Some(message)) => {
                    let key = peer.configured.key;
                    queue(&mut self.by_index, out, key, message, peer.endpoint);
                }
                Ok(None) | Err(WireGuardError::ConnectionExpired) => {}
                Err(e) => tracing::debug!(error = ?e, "WireGuard timers"),
            }
        }
    }

    /// Takes the peers to `wanted`: gone ones forgotten with their
    /// sessions, changed ones updated, new ones sent a handshake at once
    /// (after a restart every peer is new here, and would otherwise send
    /// into sessions this process no longer has until its own timers gave
    /// up on them, 15 s and more).
    pub(super) fn set_peers(&mut self, wanted: BTreeMap<[u8; 32], TunnelPeer>, out: &mut Outgoing) {
        let gone: Vec<[u8; 32]> = self
            .peers
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .copied()
            .collect();
        for key in gone {
            self.peers.remove(&key);
            self.by_index.retain(|_, k| *k != key);
            self.by_address.retain(|_, k| *k != key);
        }
        for (key, configured) in wanted {
            if let Some(peer) = self.peers.get_mut(&key) {
                if peer.configured != configured {
                    self.by_address.retain(|_, k| *k != key);
                    self.by_address.insert(configured.address, key);
                    peer.endpoint = configured.endpoint;
                    peer.configured = configured;
                }
                continue;
            }
            let mut tunn = Tunn::new(
                self.private.clone(),
                PublicKey::from(key),
                None,
                None,
                self.indices.clone(),
                Arc::clone(&self.rate_limiter),
            );
            if let Some(initiation) = tunn.format_handshake_initiation(false) {
                let to = configured.endpoint;
                queue(&mut self.by_index, out, key, initiation.into(), to);
            }
            self.by_address.insert(configured.address, key);
            let endpoint = configured.endpoint;
            self.peers.insert(
                key,
                Peer {
                    tunn,
                    endpoint,
                    configured,
                },
            );
        }
    }

    /// Replaces the static key: every session ends, and a handshake under
    /// the new key starts with every peer.
    pub(super) fn set_key(&mut self, private_key: [u8; 32], out: &mut Outgoing) {
        let private = StaticSecret::from(private_key);
        let public = PublicKey::from(&private);
        if public == self.public {
            return;
        }
        self.rate_limiter = Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT));
        for peer in self.peers.values_mut() {
            peer.tunn
                .set_static_private(private.clone(), public, Arc::clone(&self.rate_limiter));
            if let Some(initiation) = peer.tunn.format_handshake_initiation(true) {
                let key = peer.configured.key;
                queue(
                    &mut self.by_index,
                    out,
                    key,
                    initiation.into(),
                    peer.endpoint,
                );
            }
        }
        self.private = private;
        self.public = public;
    }

    /// Whether each of `keys` is a peer with a session now.
    pub(super) fn have_sessions(&self, keys: &[[u8; 32]]) -> bool {
        keys.iter().all(|k| {
            self.peers
                .get(k)
                .is_some_and(|p| p.tunn.has_active_session())
        })
    }

    /// Every peer's state, for status.
    pub(super) fn states(&self) -> Vec<PeerState> {
        self.peers
            .values()
            .map(|peer| {
                let (handshake, tx_bytes, rx_bytes, ..) = peer.tunn.stats();
                PeerState {
                    key: peer.configured.key,
                    endpoint: Some(peer.endpoint),
                    handshake_age: handshake.map(|d| d.as_secs()),
                    rx_bytes,
                    tx_bytes,
                    allowed: vec![(IpAddr::V4(peer.configured.address), 32)],
                }
            })
            .collect()
    }
}

/// Queues `message` for the peer `key` at `to`, remembering which peer a
/// handshake message is for: the answer comes back to its sender index.
fn queue(
    by_index: &mut HashMap<u32, [u8; 32]>,
    out: &mut Outgoing,
    key: [u8; 32],
    message: WgKind,
    to: SocketAddr,
) {
    let index = match &message {
        WgKind::HandshakeInit(p) => Some(p.sender_idx.get()),
        WgKind::HandshakeResp(p) => Some(p.sender_idx.get()),
        WgKind::CookieReply(_) | WgKind::Data(_) => None,
    };
    if let Some(index) = index {
        by_index.insert(index, key);
    }
    out.push((message.into(), to));
}

/// The source of an IPv4 packet and the packet itself, as long as its
/// header says (WireGuard pads what it seals to 16 bytes).
fn ipv4(packet: &[u8]) -> Option<(Ipv4Addr, &[u8])> {
    if packet.first()? >> 4 != 4 {
        return None;
    }
    let source: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
    let length = usize::from(u16::from_be_bytes(packet.get(2..4)?.try_into().ok()?));
    (length >= 20).then_some(())?;
    Some((Ipv4Addr::from(source), packet.get(..length)?))
}

#[cfg(test)]
mod tests;
