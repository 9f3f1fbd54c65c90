use super::*;

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PORT: u16 = 7951;

/// A VXLAN packet (outer IPv4, inner Ethernet) carrying TCP with
/// `payload`, as the kernel builds it before segmenting: every length and
/// checksum set for the whole.
fn vxlan_tcp_packet(inner_v6: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut tcp = vec![0u8; 32];
    put16(&mut tcp, 0, 40_000);
    put16(&mut tcp, 2, 5201);
    put32(&mut tcp, 4, seq);
    put32(&mut tcp, 8, 77);
    tcp[12] = 8 << 4; // 32 bytes: a timestamp option
    tcp[13] = flags;
    put16(&mut tcp, 14, 500);
    tcp[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]);
    tcp.extend_from_slice(payload);
    let inner_ip = if inner_v6 {
        let mut ip = vec![0u8; 40];
        ip[0] = 0x60;
        put16(&mut ip, 4, len16(tcp.len()));
        ip[6] = TCP;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        ip[24..40].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
        ip
    } else {
        let mut ip = vec![0u8; 20];
        ip[0] = 0x45;
        put16(&mut ip, 2, len16(20 + tcp.len()));
        put16(&mut ip, 4, 1000);
        put16(&mut ip, 6, 0x4000);
        ip[8] = 64;
        ip[9] = TCP;
        ip[12..16].copy_from_slice(&[10, 9, 0, 2]);
        ip[16..20].copy_from_slice(&[10, 9, 0, 3]);
        ip
    };
    let mut inner = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 3, 0, 0];
    put16(&mut inner, 12, if inner_v6 { ETH_P_IPV6 } else { ETH_P_IP });
    inner.extend_from_slice(&inner_ip);
    inner.extend_from_slice(&tcp);
    let mut packet = vec![0u8; 36];
    packet[0] = 0x45;
    put16(&mut packet, 2, len16(36 + inner.len()));
    put16(&mut packet, 4, 300);
    packet[8] = 64;
    packet[9] = UDP;
    packet[12..16].copy_from_slice(&[169, 254, 192, 1]);
    packet[16..20].copy_from_slice(&[169, 254, 192, 2]);
    put16(&mut packet, 20, 51_000);
    put16(&mut packet, 22, PORT);
    put16(&mut packet, 24, len16(16 + inner.len()));
    packet[28] = 0x08;
    packet[33] = 42;
    packet.extend_from_slice(&inner);
    ipv4_header_checksum(&mut packet);
    if !inner_v6 {
        ipv4_header_checksum(&mut packet[50..]);
    }
    let th = if inner_v6 { 90 } else { 70 };
    tcp_checksum(&mut packet, 50, th);
    packet
}

/// `packet` as the device hands it over: a virtio-net header, Ethernet.
fn frame(header: VnetHdr, packet: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; VNET_HDR_LEN];
    header.write(&mut frame);
    frame.extend_from_slice(&MAC);
    frame.extend_from_slice(&MAC);
    let ethertype = if packet[0] >> 4 == 6 {
        ETH_P_IPV6
    } else {
        ETH_P_IP
    };
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(packet);
    frame
}

/// The header the kernel gives a GSO frame of `packet`.
fn gso_header(inner_v6: bool, mss: u16) -> VnetHdr {
    let th: u16 = if inner_v6 { 90 } else { 70 };
    VnetHdr {
        flags: NEEDS_CSUM,
        gso_type: GSO_UDP_TUNNEL_IPV4 | if inner_v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: 14 + th + 32,
        gso_size: mss,
        csum_start: 14 + th,
        csum_offset: 16,
        outer_th: 14 + 20,
        inner_nh: 14 + 50,
    }
}

fn segments(frame: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    segment(frame, |packet| out.push(packet.to_vec())).expect("segments");
    out
}

/// Checks lengths and checksums of one wire packet.
fn assert_valid(packet: &[u8], inner_v6: bool) {
    assert_eq!(usize::from(get16(packet, 2)), packet.len(), "outer length");
    assert_eq!(checksum(&[&packet[..20]]), 0, "outer header checksum");
    assert_eq!(
        usize::from(get16(packet, 24)),
        packet.len() - 20,
        "UDP length"
    );
    let th = if inner_v6 {
        assert_eq!(usize::from(get16(packet, 54)), packet.len() - 90);
        90
    } else {
        assert_eq!(usize::from(get16(packet, 52)), packet.len() - 50);
        assert_eq!(checksum(&[&packet[50..70]]), 0, "inner header checksum");
        70
    };
    let (pseudo, len) = pseudo_header(packet, 50, packet.len() - th);
    assert_eq!(
        checksum(&[&pseudo[..len], &packet[th..]]),
        0,
        "TCP checksum"
    );
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect()
}

#[test]
fn a_gso_frame_is_cut_into_valid_packets_of_the_segment_size() {
    for inner_v6 in [false, true] {
        let data = payload(3 * 1300 + 500);
        let whole = vxlan_tcp_packet(inner_v6, 1_000, TCP_ACK | TCP_PSH, &data);
        let packets = segments(&frame(gso_header(inner_v6, 1300), &whole));
        assert_eq!(packets.len(), 4);
        let th = if inner_v6 { 90 } else { 70 };
        let mut joined = Vec::new();
        for (i, packet) in packets.iter().enumerate() {
            assert_valid(packet, inner_v6);
            let seq = 1_000 + u32::try_from(i * 1300).unwrap();
            assert_eq!(get32(packet, th + 4), seq);
            let pushed = packet[th + 13] & TCP_PSH != 0;
            assert_eq!(pushed, i == 3, "only the last segment keeps PSH");
            assert_eq!(get16(packet, 4), 300 + u16::try_from(i).unwrap());
            joined.extend_from_slice(&packet[th + 32..]);
        }
        assert_eq!(joined, data);
        assert_eq!(packets[3].len(), th + 32 + 500);
    }
}

#[test]
fn a_frame_without_gso_is_passed_on_with_its_checksum_filled_in() {
    let mut packet = vxlan_tcp_packet(false, 5, TCP_ACK, &payload(100));
    let correct = get16(&packet, 86);
    // What the kernel leaves to the device: the pseudo-header's sum.
    let (pseudo, len) = pseudo_header(&packet, 50, packet.len() - 70);
    put16(&mut packet, 86, !checksum(&[&pseudo[..len]]));
    let header = VnetHdr {
        flags: NEEDS_CSUM,
        csum_start: 14 + 70,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    let out = segments(&frame(header, &packet));
    assert_eq!(out.len(), 1);
    assert_eq!(get16(&out[0], 86), correct);
    let plain = segments(&frame(VnetHdr::default(), &packet));
    assert_eq!(plain, vec![packet]);
}

#[test]
fn frames_that_are_not_ip_or_not_whole_are_dropped() {
    let packet = vxlan_tcp_packet(false, 5, TCP_ACK, &payload(100));
    let mut arp = frame(VnetHdr::default(), &packet);
    put16(&mut arp, VNET_HDR_LEN + 12, 0x0806);
    assert_eq!(segment(&arp, |_| ()), Err(Dropped::NotIp));
    assert_eq!(segment(&arp[..10], |_| ()), Err(Dropped::Malformed));
    let udp_gso = VnetHdr {
        gso_type: 5,
        ..gso_header(false, 1300)
    };
    let err = segment(&frame(udp_gso, &packet), |_| ());
    assert_eq!(err, Err(Dropped::UnknownGso(5)));
    let beyond = VnetHdr {
        csum_start: 60_000,
        ..gso_header(false, 1300)
    };
    assert_eq!(
        segment(&frame(beyond, &packet), |_| ()),
        Err(Dropped::Malformed)
    );
}

fn coalesce(packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    coalesce_joining(Some(PORT), packets)
}

/// The frames a coalescer joining VXLAN to `port` writes for `packets`.
fn coalesce_joining(port: Option<u16>, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut coalescer = Coalescer::new(MAC, port);
    let mut frames = Vec::new();
    let mut write = |frame: &[u8]| frames.push(frame.to_vec());
    for packet in packets {
        coalescer.push(packet, &mut write);
    }
    coalescer.flush(&mut write);
    frames
}

#[test]
fn consecutive_segments_are_joined_into_the_frame_they_were_cut_from() {
    for inner_v6 in [false, true] {
        let data = payload(5 * 1300 + 7);
        let whole = vxlan_tcp_packet(inner_v6, 9, TCP_ACK | TCP_PSH, &data);
        let packets = segments(&frame(gso_header(inner_v6, 1300), &whole));
        let frames = coalesce(&packets);
        assert_eq!(frames.len(), 1);
        let header = VnetHdr::parse(&frames[0]).unwrap();
        assert_eq!(header, gso_header(inner_v6, 1300));
        // Cut again, it gives the same packets, IDs aside.
        let again = segments(&frames[0]);
        assert_eq!(again.len(), packets.len());
        for (one, other) in again.iter().zip(&packets) {
            assert_valid(one, inner_v6);
            assert_eq!(one, other);
        }
    }
}

#[test]
fn what_cannot_join_goes_out_alone_and_in_order() {
    let data = payload(4 * 1000);
    let whole = vxlan_tcp_packet(false, 0, TCP_ACK, &data);
    let packets = segments(&frame(gso_header(false, 1000), &whole));
    // A gap: the third segment is missing.
    let gapped = [packets[0].clone(), packets[1].clone(), packets[3].clone()];
    let frames = coalesce(&gapped);
    assert_eq!(frames.len(), 2);
    assert_eq!(VnetHdr::parse(&frames[0]).unwrap().gso_size, 1000);
    assert_eq!(VnetHdr::parse(&frames[1]).unwrap(), VnetHdr::default());
    assert_eq!(frames[1][VNET_HDR_LEN + ETH_LEN..], packets[3][..]);
    // A packet of another kind (here, not VXLAN) between two segments.
    let mut other = packets[1].clone();
    put16(&mut other, 22, 4789);
    let frames = coalesce(&[packets[0].clone(), other.clone(), packets[1].clone()]);
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[1][VNET_HDR_LEN + ETH_LEN..], other[..]);
    // A packet shorter than the open frame's headers (here, a bare IPv4
    // header) goes out alone between two frames.
    let short = packets[3][..20].to_vec();
    let frames = coalesce(&[packets[0].clone(), short.clone(), packets[1].clone()]);
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[1][VNET_HDR_LEN + ETH_LEN..], short[..]);
    // A SYN never joins, and a pushed segment ends the frame.
    let syn = vxlan_tcp_packet(false, 0, 0x02, &payload(10));
    assert_eq!(coalesce(&[syn.clone(), syn]).len(), 2);
    let pushed = vxlan_tcp_packet(false, 0, TCP_ACK | TCP_PSH, &payload(1000));
    let next = vxlan_tcp_packet(false, 1000, TCP_ACK, &payload(1000));
    assert_eq!(coalesce(&[pushed, next]).len(), 2);
    // A different acknowledgement is another moment of the stream.
    let first = vxlan_tcp_packet(false, 0, TCP_ACK, &payload(1000));
    let mut second = vxlan_tcp_packet(false, 1000, TCP_ACK, &payload(1000));
    put32(&mut second, 78, 78);
    assert_eq!(coalesce(&[first, second]).len(), 2);
}

#[test]
fn without_a_port_nothing_is_joined() {
    let data = payload(3 * 1000);
    let whole = vxlan_tcp_packet(false, 0, TCP_ACK, &data);
    let packets = segments(&frame(gso_header(false, 1000), &whole));
    let frames = coalesce_joining(None, &packets);
    assert_eq!(frames.len(), 3);
    for (frame, packet) in frames.iter().zip(&packets) {
        assert_eq!(VnetHdr::parse(frame).unwrap(), VnetHdr::default());
        assert_eq!(frame[VNET_HDR_LEN + ETH_LEN..], packet[..]);
    }
}

#[test]
fn a_single_packet_goes_out_as_it_came_with_an_empty_header() {
    let packet = vxlan_tcp_packet(false, 0, TCP_ACK, &payload(10));
    let frames = coalesce(std::slice::from_ref(&packet));
    assert_eq!(frames.len(), 1);
    assert_eq!(VnetHdr::parse(&frames[0]).unwrap(), VnetHdr::default());
    assert_eq!(&frames[0][VNET_HDR_LEN..VNET_HDR_LEN + 6], &MAC);
    assert_eq!(frames[0][VNET_HDR_LEN + ETH_LEN..], packet[..]);
}
