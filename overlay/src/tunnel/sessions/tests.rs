use super::*;

const A_KEY: [u8; 32] = [1; 32];
const B_KEY: [u8; 32] = [2; 32];
const MTU: u16 = 1420;

fn endpoint(host: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, host], 51871))
}

fn address(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(169, 254, 192, host)
}

/// The peer entry for host `host` with `private_key`.
fn peer(host: u8, private_key: [u8; 32]) -> BTreeMap<[u8; 32], TunnelPeer> {
    let key = PublicKey::from(&StaticSecret::from(private_key)).to_bytes();
    BTreeMap::from([(
        key,
        TunnelPeer {
            key,
            endpoint: endpoint(host),
            address: address(host),
        },
    )])
}

/// An IPv4 packet from `from` to `to` (UDP, no checksum) with `payload`.
fn ip_packet(from: Ipv4Addr, to: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0u8; 28];
    packet[0] = 0x45;
    let length = u16::try_from(packet.len() + payload.len()).unwrap();
    packet[2..4].copy_from_slice(&length.to_be_bytes());
    packet[8] = 64;
    packet[9] = 17;
    packet[12..16].copy_from_slice(&from.octets());
    packet[16..20].copy_from_slice(&to.octets());
    packet[20..22].copy_from_slice(&4789u16.to_be_bytes());
    packet[22..24].copy_from_slice(&7951u16.to_be_bytes());
    packet[24..26].copy_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

fn as_ip(bytes: &[u8]) -> Packet<Ip> {
    Packet::copy_from(bytes).try_into_ip().unwrap()
}

/// Hands `out` (sent by host `from`) to `to`: what it sends back, and
/// what it delivers to its device.
fn deliver_all(to: &mut Sessions, from: u8, out: Outgoing) -> (Outgoing, Vec<Vec<u8>>) {
    let (mut replies, mut delivered) = (Vec::new(), Vec::new());
    for (datagram, _) in out {
        to.open(datagram, endpoint(from), &mut replies, |packet| {
            delivered.push(packet.to_vec());
        });
    }
    (replies, delivered)
}

/// Host 1 (A) and host 2 (B), each with the other as its peer, with a
/// session started by A.
fn connected() -> (Sessions, Sessions) {
    let (mut a, mut b) = (Sessions::new(A_KEY, MTU), Sessions::new(B_KEY, MTU));
    let mut initiation = Vec::new();
    a.set_peers(peer(2, B_KEY), &mut initiation);
    b.set_peers(peer(1, A_KEY), &mut Vec::new());
    assert_eq!(
        initiation.len(),
        1,
        "a new peer is sent a handshake at once"
    );
    assert_eq!(initiation[0].1, endpoint(2));
    let (response, _) = deliver_all(&mut b, 1, initiation);
    assert_eq!(response.len(), 1, "the initiation is answered");
    let (confirmation, _) = deliver_all(&mut a, 2, response);
    deliver_all(&mut b, 1, confirmation);
    (a, b)
}

#[test]
fn a_packet_sealed_for_a_peer_opens_there_as_it_was() {
    let (mut a, mut b) = connected();
    let b_key = *peer(2, B_KEY).keys().next().unwrap();
    assert!(a.have_sessions(&[b_key]));
    let packet = ip_packet(address(1), address(2), b"the marker");
    let mut sealed = Vec::new();
    a.seal(as_ip(&packet), &mut sealed);
    assert_eq!(sealed.len(), 1);
    assert_eq!(sealed[0].1, endpoint(2));
    assert!(
        !sealed[0].0.windows(10).any(|w| w == b"the marker"),
        "sealed, the payload is not in clear"
    );
    let (_, delivered) = deliver_all(&mut b, 1, sealed);
    assert_eq!(delivered, vec![packet], "opened, without the padding");
}

#[test]
fn a_packet_before_the_session_waits_for_it() {
    let (mut a, mut b) = (Sessions::new(A_KEY, MTU), Sessions::new(B_KEY, MTU));
    let mut initiation = Vec::new();
    a.set_peers(peer(2, B_KEY), &mut initiation);
    b.set_peers(peer(1, A_KEY), &mut Vec::new());
    let packet = ip_packet(address(1), address(2), b"early");
    let mut held = Vec::new();
    a.seal(as_ip(&packet), &mut held);
    assert!(held.is_empty(), "no session yet: the packet waits");
    let (response, _) = deliver_all(&mut b, 1, initiation);
    let (after, _) = deliver_all(&mut a, 2, response);
    let (_, delivered) = deliver_all(&mut b, 1, after);
    assert_eq!(delivered, vec![packet]);
}

#[test]
fn a_peer_may_send_only_from_its_own_tunnel_address() {
    let (mut a, mut b) = connected();
    let mut sealed = Vec::new();
    // Sealed by A for B's address, but claiming another source.
    a.seal(
        as_ip(&ip_packet(address(9), address(2), b"spoofed")),
        &mut sealed,
    );
    assert_eq!(sealed.len(), 1);
    let (_, delivered) = deliver_all(&mut b, 1, sealed);
    assert!(delivered.is_empty());
}

#[test]
fn a_packet_for_no_peer_goes_nowhere() {
    let (mut a, _) = connected();
    let mut sealed = Vec::new();
    a.seal(as_ip(&ip_packet(address(1), address(7), b"x")), &mut sealed);
    assert!(sealed.is_empty());
}

#[test]
fn a_removed_peer_is_heard_no_more() {
    let (mut a, mut b) = connected();
    b.set_peers(BTreeMap::new(), &mut Vec::new());
    assert!(b.states().is_empty());
    let mut sealed = Vec::new();
    a.seal(as_ip(&ip_packet(address(1), address(2), b"x")), &mut sealed);
    let (replies, delivered) = deliver_all(&mut b, 1, sealed);
    assert!(delivered.is_empty() && replies.is_empty());
    // Nor may it start again: its handshakes go unanswered.
    let mut initiation = Vec::new();
    a.set_key([3; 32], &mut initiation);
    let (replies, _) = deliver_all(&mut b, 1, initiation);
    assert!(replies.is_empty());
}

#[test]
fn a_new_static_key_makes_new_sessions_with_every_peer() {
    let (mut a, mut b) = connected();
    let mut initiation = Vec::new();
    a.set_key([3; 32], &mut initiation);
    assert_eq!(initiation.len(), 1, "a handshake under the new key");
    // B learns A's new public key (through the cluster) before it answers.
    b.set_peers(peer(1, [3; 32]), &mut Vec::new());
    let (response, _) = deliver_all(&mut b, 1, initiation);
    assert_eq!(response.len(), 1);
    let (confirmation, _) = deliver_all(&mut a, 2, response);
    deliver_all(&mut b, 1, confirmation);
    let packet = ip_packet(address(1), address(2), b"rotated");
    let mut sealed = Vec::new();
    a.seal(as_ip(&packet), &mut sealed);
    let (_, delivered) = deliver_all(&mut b, 1, sealed);
    assert_eq!(delivered, vec![packet]);
    // The same key again changes nothing.
    let mut nothing = Vec::new();
    a.set_key([3; 32], &mut nothing);
    assert!(nothing.is_empty());
}

#[test]
fn a_peer_is_where_its_last_authenticated_packet_came_from() {
    let (mut a, mut b) = connected();
    let mut sealed = Vec::new();
    a.seal(as_ip(&ip_packet(address(1), address(2), b"x")), &mut sealed);
    let moved = SocketAddr::from(([10, 0, 0, 11], 40000));
    for (datagram, _) in sealed {
        b.open(datagram, moved, &mut Vec::new(), |_| {});
    }
    let states = b.states();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].endpoint, Some(moved));
    assert!(states[0].handshake_age.is_some());
    assert!(states[0].rx_bytes > 0);
    // A forged datagram from elsewhere moves nothing.
    let forged = Packet::copy_from(&[4u8, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0][..]);
    b.open(forged, endpoint(66), &mut Vec::new(), |_| {});
    assert_eq!(b.states()[0].endpoint, Some(moved));
}

#[test]
fn changed_peers_keep_their_sessions_and_take_their_new_address() {
    let (mut a, mut b) = connected();
    let mut moved = peer(1, A_KEY);
    for configured in moved.values_mut() {
        configured.address = address(5);
    }
    let mut out = Vec::new();
    b.set_peers(moved, &mut out);
    assert!(out.is_empty(), "no new handshake for a known peer");
    let mut sealed = Vec::new();
    let packet = ip_packet(address(5), address(2), b"from its new address");
    a.seal(as_ip(&packet), &mut sealed);
    let (_, delivered) = deliver_all(&mut b, 1, sealed);
    assert_eq!(delivered, vec![packet]);
}

#[test]
fn only_ipv4_packets_as_long_as_their_header_says_are_delivered() {
    let packet = ip_packet(address(1), address(2), b"abc");
    let mut padded = packet.clone();
    padded.resize(48, 0);
    assert_eq!(ipv4(&padded), Some((address(1), &packet[..])));
    assert_eq!(ipv4(&packet[..10]), None);
    let mut v6 = packet.clone();
    v6[0] = 0x60;
    assert_eq!(ipv4(&v6), None);
    let mut short = packet;
    short[2..4].copy_from_slice(&8u16.to_be_bytes());
    assert_eq!(ipv4(&short), None);
}
