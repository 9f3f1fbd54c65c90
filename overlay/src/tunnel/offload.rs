//! Offloads across the userspace tunnel's device: whole TCP bursts cross
//! the kernel boundary in one read or write instead of one per packet.
//!
//! The device is a TAP with a virtio-net header in front of every frame.
//! Reading, the kernel hands over a VXLAN packet with up to 64 KB of inner
//! TCP in it (GSO over a UDP tunnel); [`segment`] cuts it into the packets
//! the wire would carry, each with its headers and checksums, for
//! WireGuard to seal one by one. Writing, [`Coalescer`] joins consecutive
//! decrypted VXLAN packets of one TCP stream back into one such packet, as
//! a NIC's receive offload would, so the kernel decapsulates and delivers
//! one packet, not forty.
//!
//! Pure byte work: no device, no I/O; the offsets and fields are those of
//! `include/uapi/linux/virtio_net.h` (`virtio_net_hdr_v1_hash_tunnel`).

use gotatun::packet::checksum;

/// The virtio-net header in front of every frame: version 1, the hash
/// report fields (unused), and the two tunnel offsets.
pub(super) const VNET_HDR_LEN: usize = 24;

/// An Ethernet header: the device is a TAP.
pub(super) const ETH_LEN: usize = 14;

/// The largest frame one read returns: 64 KB of GSO payload and headers.
pub(super) const MAX_FRAME: usize = VNET_HDR_LEN + ETH_LEN + 65_535;

const NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_TUNNEL_IPV4: u8 = 0x20;
const GSO_UDP_TUNNEL_IPV6: u8 = 0x40;
const GSO_ECN: u8 = 0x80;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const TCP: u8 = 6;
const UDP: u8 = 17;
const VXLAN_LEN: usize = 8;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;

/// The largest packet coalescing builds: its IP length fields are 16 bits.
const MAX_COALESCED: usize = 65_000;

/// The fields of a virtio-net header this device uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct VnetHdr {
    pub(super) flags: u8,
    pub(super) gso_type: u8,
    pub(super) hdr_len: u16,
    pub(super) gso_size: u16,
    pub(super) csum_start: u16,
    pub(super) csum_offset: u16,
    pub(super) outer_th: u16,
    pub(super) inner_nh: u16,
}

impl VnetHdr {
    /// Reads the header at the front of `frame`.
    pub(super) fn parse(frame: &[u8]) -> Option<Self> {
        let word = |at: usize| Some(u16::from_le_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
        Some(Self {
            flags: *frame.first()?,
            gso_type: *frame.get(1)?,
            hdr_len: word(2)?,
            gso_size: word(4)?,
            csum_start: word(6)?,
            csum_offset: word(8)?,
            outer_th: word(20)?,
            inner_nh: word(22)?,
        })
    }

    /// Writes the header into `out`, [`VNET_HDR_LEN`] bytes.
    pub(super) fn write(&self, out: &mut [u8]) {
        out[..VNET_HDR_LEN].fill(0);
        out[0] = self.flags;
        out[1] = self.gso_type;
        for (at, value) in [
            (2, self.hdr_len),
            (4, self.gso_size),
            (6, self.csum_start),
            (8, self.csum_offset),
            (20, self.outer_th),
            (22, self.inner_nh),
        ] {
            out[at..at + 2].copy_from_slice(&value.to_le_bytes());
        }
    }
}

/// Why a frame read from the device was not passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dropped {
    /// Not IPv4 or IPv6 (the device answers no ARP; nothing else is sent).
    NotIp,
    /// A header or offset that does not fit the frame.
    Malformed,
    /// A kind of GSO the device never asks for (UDP, or an IPv6 outer header).
    UnknownGso(u8),
}

fn get16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn put16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

fn get32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn put32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

fn len16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

/// Sets an IPv4 header's checksum (the header starts `packet`).
fn ipv4_header_checksum(packet: &mut [u8]) {
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    put16(packet, 10, 0);
    let sum = checksum(&[&packet[..ihl]]);
    put16(packet, 10, sum);
}

/// The IPv4 or IPv6 pseudo-header of the transport segment of `length`
/// bytes after the IP header at `ip`.
fn pseudo_header(packet: &[u8], ip: usize, length: usize) -> ([u8; 40], usize) {
    let mut pseudo = [0u8; 40];
    if packet[ip] >> 4 == 4 {
        pseudo[..8].copy_from_slice(&packet[ip + 12..ip + 20]);
        pseudo[9] = TCP;
        put16(&mut pseudo, 10, len16(length));
        (pseudo, 12)
    } else {
        pseudo[..32].copy_from_slice(&packet[ip + 8..ip + 40]);
        put32(&mut pseudo, 32, u32::try_from(length).unwrap_or(u32::MAX));
        pseudo[39] = TCP;
        (pseudo, 40)
    }
}

/// Sets the TCP checksum of the segment at `th` (IP header at `ip`).
fn tcp_checksum(packet: &mut [u8], ip: usize, th: usize) {
    let (pseudo, len) = pseudo_header(packet, ip, packet.len() - th);
    put16(packet, th + 16, 0);
    let sum = checksum(&[&pseudo[..len], &packet[th..]]);
    put16(packet, th + 16, sum);
}

/// Passes on the IP packets in `frame` (a virtio-net header, Ethernet, IP)
/// to `emit`, one call per packet the wire carries: a GSO frame is cut at
/// `gso_size`, and a checksum left to the device is filled in.
pub(super) fn segment(frame: &[u8], mut emit: impl FnMut(&[u8])) -> Result<(), Dropped> {
    let hdr = VnetHdr::parse(frame).ok_or(Dropped::Malformed)?;
    let frame = &frame[VNET_HDR_LEN..];
    if frame.len() <= ETH_LEN {
        return Err(Dropped::Malformed);
    }
    if !matches!(get16(frame, 12), ETH_P_IP | ETH_P_IPV6) {
        return Err(Dropped::NotIp);
    }
    let kind = hdr.gso_type & !GSO_ECN;
    if kind == GSO_NONE {
        if hdr.flags & NEEDS_CSUM == 0 {
            emit(&frame[ETH_LEN..]);
            return Ok(());
        }
        let start = usize::from(hdr.csum_start);
        let field = start + usize::from(hdr.csum_offset);
        if start < ETH_LEN || field + 2 > frame.len() {
            return Err(Dropped::Malformed);
        }
        let mut packet = frame[ETH_LEN..].to_vec();
        let (start, field) = (start - ETH_LEN, field - ETH_LEN);
        // The field holds the pseudo-header's sum; the rest is ours to add.
        let sum = checksum(&[&packet[start..]]);
        put16(&mut packet, field, sum);
        emit(&packet);
        return Ok(());
    }
    let tunnel = kind & GSO_UDP_TUNNEL_IPV4 != 0;
    if kind & GSO_UDP_TUNNEL_IPV6 != 0
        || !matches!(kind & !GSO_UDP_TUNNEL_IPV4, GSO_TCPV4 | GSO_TCPV6)
    {
        return Err(Dropped::UnknownGso(hdr.gso_type));
    }
    // Offsets from here on are within the IP packet (no Ethernet).
    let packet = &frame[ETH_LEN..];
    let inner_ip = if tunnel {
        usize::from(hdr.inner_nh)
            .checked_sub(ETH_LEN)
            .ok_or(Dropped::Malformed)?
    } else {
        0
    };
    let outer_udp = usize::from(hdr.outer_th).saturating_sub(ETH_LEN);
    let th = usize::from(hdr.csum_start)
        .checked_sub(ETH_LEN)
        .ok_or(Dropped::Malformed)?;
    if th + 20 > packet.len() || inner_ip >= th || (tunnel && outer_udp + 8 > inner_ip) {
        return Err(Dropped::Malformed);
    }
    let headers = th + usize::from(packet[th + 12] >> 4) * 4;
    let mss = usize::from(hdr.gso_size);
    if headers > packet.len() || mss == 0 {
        return Err(Dropped::Malformed);
    }
    let inner_v4 = packet[inner_ip] >> 4 == 4;
    if inner_v4 != (kind & !GSO_UDP_TUNNEL_IPV4 == GSO_TCPV4) {
        return Err(Dropped::Malformed);
    }
    let payload = &packet[headers..];
    let seq = get32(packet, th + 4);
    let flags = packet[th + 13];
    let inner_id = get16(packet, inner_ip + 4);
    let outer_id = get16(packet, 4);
    let count = payload.len().div_ceil(mss).max(1);
    let mut out = Vec::with_capacity(headers + mss);
    for (i, chunk) in payload.chunks(mss).enumerate() {
        out.clear();
        out.extend_from_slice(&packet[..headers]);
        out.extend_from_slice(chunk);
        let len = out.len();
        let step = u16::try_from(i).unwrap_or(u16::MAX);
        if tunnel {
            put16(&mut out, 2, len16(len));
            put16(&mut out, 4, outer_id.wrapping_add(step));
            ipv4_header_checksum(&mut out);
            put16(&mut out, outer_udp + 4, len16(len - outer_udp));
            // No outer UDP checksum (optional over IPv4): WireGuard's
            // seal covers every byte of the packet.
            put16(&mut out, outer_udp + 6, 0);
        }
        if inner_v4 {
            put16(&mut out, inner_ip + 2, len16(len - inner_ip));
            put16(&mut out, inner_ip + 4, inner_id.wrapping_add(step));
            ipv4_header_checksum(&mut out[inner_ip..]);
        } else {
            put16(&mut out, inner_ip + 4, len16(len - inner_ip - 40));
        }
        let offset = u32::try_from(i * mss).unwrap_or(u32::MAX);
        put32(&mut out, th + 4, seq.wrapping_add(offset));
        let mut segment_flags = flags;
        if i + 1 < count {
            segment_flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            segment_flags &= !TCP_CWR;
        }
        out[th + 13] = segment_flags;
        tcp_checksum(&mut out, inner_ip, th);
        emit(&out);
    }
    Ok(())
}

/// Where the headers of a VXLAN packet carrying TCP lie.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// The inner IP header.
    ip: usize,
    /// The TCP header.
    th: usize,
    /// The first byte of TCP payload.
    payload: usize,
}

/// Where the headers lie if `packet` is VXLAN (to `vxlan_port`, outer IPv4
/// without options, its UDP checksum not looked at: WireGuard has just
/// verified every byte) carrying a TCP segment with payload and no flag but
/// ACK and PSH: the packets [`Coalescer`] may join.
fn vxlan_tcp(packet: &[u8], vxlan_port: Option<u16>) -> Option<Layout> {
    const OUTER: usize = 20;
    let vxlan_port = vxlan_port?;
    let inner_eth = OUTER + 8 + VXLAN_LEN;
    let ip = inner_eth + ETH_LEN;
    if packet.len() < ip + 40
        || packet[0] != 0x45
        || usize::from(get16(packet, 2)) != packet.len()
        || get16(packet, 6) & 0x3fff != 0
        || packet[9] != UDP
        || get16(packet, OUTER + 2) != vxlan_port
        || usize::from(get16(packet, OUTER + 4)) != packet.len() - OUTER
    {
        return None;
    }
    let th = match get16(packet, inner_eth + 12) {
        ETH_P_IP
            if packet[ip] == 0x45
                && usize::from(get16(packet, ip + 2)) == packet.len() - ip
                && get16(packet, ip + 6) & 0x3fff == 0
                && packet[ip + 9] == TCP =>
        {
            ip + 20
        }
        ETH_P_IPV6
            if packet[ip] >> 4 == 6
                && usize::from(get16(packet, ip + 4)) == packet.len() - ip - 40
                && packet[ip + 6] == TCP =>
        {
            ip + 40
        }
        _ => return None,
    };
    if th + 20 > packet.len() {
        return None;
    }
    let payload = th + usize::from(packet[th + 12] >> 4) * 4;
    let flags = packet[th + 13];
    (payload < packet.len() && payload >= th + 20 && flags & !(TCP_ACK | TCP_PSH) == 0)
        .then_some(Layout { ip, th, payload })
}

/// Whether `next` continues the stream of `first` with nothing but its
/// sequence number, lengths, IDs and checksums told apart.
fn same_stream(first: &[u8], next: &[u8], layout: Layout) -> bool {
    let Layout { ip, th, payload } = layout;
    let same = |from: usize, to: usize| first[from..to] == next[from..to];
    // Outer: addresses, TTL, protocol; UDP ports; VXLAN; inner Ethernet.
    let outer = first[1] == next[1] && same(8, 10) && same(12, 24) && same(28, ip);
    let inner = if first[ip] >> 4 == 4 {
        first[ip + 1] == next[ip + 1] && same(ip + 6, ip + 10) && same(ip + 12, ip + 20)
    } else {
        same(ip, ip + 4) && same(ip + 6, ip + 40)
    };
    // TCP: ports, acknowledgement, header length and flags but PSH,
    // window, urgent pointer, options (timestamps included).
    outer
        && inner
        && next.len() > payload
        && next[th + 12] == first[th + 12]
        && same(th, th + 4)
        && same(th + 8, th + 12)
        && next[th + 13] & !TCP_PSH == first[th + 13] & !TCP_PSH
        && same(th + 14, th + 16)
        && same(th + 18, payload)
}

/// Joins consecutive VXLAN packets of one TCP stream into one frame for
/// the device (virtio-net header, Ethernet, the joined packet); packets
/// that cannot join go out as frames of their own, in order.
#[derive(Debug)]
pub(super) struct Coalescer {
    /// The port of the VXLAN it joins; none: it joins nothing (a kernel
    /// that takes no GSO over UDP tunnels from the device).
    vxlan_port: Option<u16>,
    /// The Ethernet header in front of every frame (to the device's MAC).
    ethernet: [u8; ETH_LEN],
    /// The frame being built: header space, Ethernet, the first packet,
    /// and the payloads joined to it.
    frame: Vec<u8>,
    /// The first packet's layout, while the frame can take more.
    open: Option<Open>,
}

#[derive(Debug, Clone, Copy)]
struct Open {
    layout: Layout,
    /// The payload length of the first packet: every joined packet but
    /// the last has exactly this much.
    mss: usize,
    /// The sequence number the next packet must have.
    next_seq: u32,
    /// How many packets the frame holds.
    count: usize,
    /// Whether the last one joined was shorter than `mss` or pushed.
    closed: bool,
}

impl Coalescer {
    /// A coalescer for frames to a device with MAC `mac`, joining VXLAN
    /// to `vxlan_port` if given.
    pub(super) fn new(mac: [u8; 6], vxlan_port: Option<u16>) -> Self {
        let mut ethernet = [0u8; ETH_LEN];
        ethernet[..6].copy_from_slice(&mac);
        ethernet[6..12].copy_from_slice(&mac);
        Self {
            vxlan_port,
            ethernet,
            frame: Vec::with_capacity(MAX_FRAME),
            open: None,
        }
    }

    /// Adds `packet` (IPv4 or IPv6); the frames it completes go to `write`.
    pub(super) fn push(&mut self, packet: &[u8], write: &mut impl FnMut(&[u8])) {
        let layout = vxlan_tcp(packet, self.vxlan_port);
        if let Some(open) = self.open
            && layout.is_some()
            && !open.closed
            && self.frame.len() + packet.len() - open.layout.payload <= MAX_COALESCED
        {
            let first = &self.frame[VNET_HDR_LEN + ETH_LEN..];
            let Layout { th, payload, .. } = open.layout;
            let length = packet.len().saturating_sub(payload);
            if packet.len() > payload
                && length <= open.mss
                && get32(packet, th + 4) == open.next_seq
                && same_stream(first, packet, open.layout)
            {
                let pushed = packet[th + 13] & TCP_PSH != 0;
                self.frame.extend_from_slice(&packet[payload..]);
                let at = VNET_HDR_LEN + ETH_LEN + th + 13;
                self.frame[at] |= packet[th + 13] & TCP_PSH;
                self.open = Some(Open {
                    next_seq: open
                        .next_seq
                        .wrapping_add(u32::try_from(length).unwrap_or(0)),
                    count: open.count + 1,
                    closed: pushed || length < open.mss,
                    ..open
                });
                return;
            }
        }
        self.flush(write);
        self.start(packet, layout);
        if self.open.is_none() {
            self.flush(write);
        }
    }

    /// Writes out the frame being built, if any.
    pub(super) fn flush(&mut self, write: &mut impl FnMut(&[u8])) {
        if self.frame.is_empty() {
            return;
        }
        let header = match self.open.take() {
            Some(open) if open.count > 1 => self.finish(open),
            _ => VnetHdr::default(),
        };
        header.write(&mut self.frame);
        write(&self.frame);
        self.frame.clear();
    }

    /// Begins a frame with `packet`, open to more if it may be joined
    /// (`layout`: where its headers lie, if it may).
    fn start(&mut self, packet: &[u8], layout: Option<Layout>) {
        self.frame.clear();
        self.frame.resize(VNET_HDR_LEN, 0);
        let mut ethernet = self.ethernet;
        let ethertype = if packet.first().is_some_and(|b| b >> 4 == 6) {
            ETH_P_IPV6
        } else {
            ETH_P_IP
        };
        put16(&mut ethernet, 12, ethertype);
        self.frame.extend_from_slice(&ethernet);
        self.frame.extend_from_slice(packet);
        self.open = layout.map(|layout| {
            let mss = packet.len() - layout.payload;
            Open {
                layout,
                mss,
                next_seq: get32(packet, layout.th + 4)
                    .wrapping_add(u32::try_from(mss).unwrap_or(0)),
                count: 1,
                closed: packet[layout.th + 13] & TCP_PSH != 0,
            }
        });
    }

    /// Sets the joined packet's lengths and checksums, and the header that
    /// tells the kernel to treat it as `count` segments of `mss`.
    fn finish(&mut self, open: Open) -> VnetHdr {
        let Layout { ip, th, payload } = open.layout;
        let packet = &mut self.frame[VNET_HDR_LEN + ETH_LEN..];
        let len = packet.len();
        put16(packet, 2, len16(len));
        ipv4_header_checksum(packet);
        put16(packet, 24, len16(len - 20));
        // No outer UDP checksum, as when cut (see `segment`).
        put16(packet, 26, 0);
        let inner_v4 = packet[ip] >> 4 == 4;
        if inner_v4 {
            put16(packet, ip + 2, len16(len - ip));
            ipv4_header_checksum(&mut packet[ip..]);
        } else {
            put16(packet, ip + 4, len16(len - ip - 40));
        }
        // The checksum is left to the kernel (it is never computed on
        // local delivery): the field holds the pseudo-header's sum.
        let (pseudo, pseudo_len) = pseudo_header(packet, ip, len - th);
        put16(packet, th + 16, !checksum(&[&pseudo[..pseudo_len]]));
        let at = |offset: usize| len16(ETH_LEN + offset);
        VnetHdr {
            flags: NEEDS_CSUM,
            gso_type: GSO_UDP_TUNNEL_IPV4 | if inner_v4 { GSO_TCPV4 } else { GSO_TCPV6 },
            hdr_len: at(payload),
            gso_size: len16(open.mss),
            csum_start: at(th),
            csum_offset: 16,
            outer_th: at(20),
            inner_nh: at(ip),
        }
    }
}

#[cfg(test)]
mod tests;
