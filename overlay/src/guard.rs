//! The gateway guard of a VXLAN device: every host's gateway of an overlay
//! has the same MAC, so a frame the host itself sends into the overlay (its
//! packets to another host's container, its multicast) must never leave
//! through the VXLAN device. A `clsact` qdisc on the device holds a
//! classic BPF filter on egress that drops frames from a gateway MAC and
//! lets every other frame by. Unlike the ebtables rule of the same
//! purpose, it holds where no bridge is (an overlay built on macvlan
//! links), and it needs no tc action module (the filter decides itself).

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use rtnetlink::Handle;
use rtnetlink::packet_core::{
    DefaultNla, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::tc::{
    TcAttribute, TcBpfFlags, TcFilterBpfOption, TcHandle, TcMessage, TcOption,
};

use crate::Error;

/// The `clsact` qdisc's handle and its parent.
const CLSACT: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0,
};
const CLSACT_PARENT: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0xfff1,
};
/// Its egress hook, where the filter sits.
const EGRESS: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0xfff3,
};
/// The filter's priority (`pref`).
const PRIORITY: u16 = 1;
/// `ETH_P_ALL`: every frame, whatever its protocol.
const ETH_P_ALL: u16 = 0x0003;
/// `TCA_BPF_OPS_LEN` and `TCA_BPF_OPS`: a classic BPF program inline.
const TCA_BPF_OPS_LEN: u16 = 4;
const TCA_BPF_OPS: u16 = 5;
/// What a direct-action filter returns: drop, or no verdict (on to the
/// next filter, and out).
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_UNSPEC: u32 = u32::MAX;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Instruction {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// The guard's program: the source MAC is the frame's bytes 6 to 11 (at
/// egress the frame starts with its Ethernet header); drop it when its
/// first three bytes are `prefix`.
pub(crate) fn program(prefix: [u8; 3]) -> [Instruction; 5] {
    const LD_W_ABS: u16 = 0x20;
    const AND_K: u16 = 0x54;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let op = |code, jt, jf, k| Instruction { code, jt, jf, k };
    let [a, b, c] = prefix;
    [
        op(LD_W_ABS, 0, 0, 6),
        op(AND_K, 0, 0, 0xffff_ff00),
        op(JEQ_K, 0, 1, u32::from_be_bytes([a, b, c, 0])),
        op(RET_K, 0, 0, TC_ACT_SHOT),
        op(RET_K, 0, 0, TC_ACT_UNSPEC),
    ]
}

/// The program as the kernel reads it: `struct sock_filter`s, native
/// byte order.
pub(crate) fn encode(program: &[Instruction]) -> Vec<u8> {
    program
        .iter()
        .flat_map(|i| {
            let mut bytes = Vec::with_capacity(8);
            bytes.extend_from_slice(&i.code.to_ne_bytes());
            bytes.extend_from_slice(&[i.jt, i.jf]);
            bytes.extend_from_slice(&i.k.to_ne_bytes());
            bytes
        })
        .collect()
}

/// The devices among `vxlans` (by index) that have a `clsact` qdisc: the
/// guard is put there with its qdisc, and only by rustnet on its own
/// devices.
pub(crate) async fn observe(
    handle: &Handle,
    vxlans: &BTreeMap<u32, String>,
) -> Result<BTreeSet<String>, Error> {
    let mut guarded = BTreeSet::new();
    if vxlans.is_empty() {
        return Ok(guarded);
    }
    let mut qdiscs = handle.qdisc().get().execute();
    while let Some(qdisc) = qdiscs
        .try_next()
        .await
        .map_err(|e| crate::netlink::netlink_err("list qdiscs".to_owned(), e))?
    {
        let clsact = qdisc
            .attributes
            .iter()
            .any(|a| matches!(a, TcAttribute::Kind(kind) if kind == "clsact"));
        let index = u32::try_from(qdisc.header.index).unwrap_or_default();
        if let (true, Some(device)) = (clsact, vxlans.get(&index)) {
            guarded.insert(device.clone());
        }
    }
    Ok(guarded)
}

/// Puts the guard on device `index`: its `clsact` qdisc, then the filter.
/// A filter the kernel refuses takes the qdisc away again, so that what
/// [`observe`] sees stays true.
pub(crate) async fn install(
    handle: &Handle,
    index: u32,
    prefix: [u8; 3],
) -> Result<(), rtnetlink::Error> {
    let index = i32::try_from(index).unwrap_or_default();
    let mut qdisc = TcMessage::with_index(index);
    qdisc.header.handle = CLSACT;
    qdisc.header.parent = CLSACT_PARENT;
    qdisc
        .attributes
        .push(TcAttribute::Kind("clsact".to_owned()));
    let created = RouteNetlinkMessage::NewQueueDiscipline(qdisc.clone());
    request(handle, created, NLM_F_CREATE | NLM_F_EXCL).await?;

    let ops = encode(&program(prefix));
    let count = u16::try_from(ops.len() / 8).unwrap_or_default();
    let mut filter = TcMessage::with_index(index);
    filter.header.parent = EGRESS;
    filter.header.info = u32::from(TcHandle {
        major: PRIORITY,
        minor: ETH_P_ALL.to_be(),
    });
    filter.attributes.push(TcAttribute::Kind("bpf".to_owned()));
    filter.attributes.push(TcAttribute::Options(vec![
        TcOption::Bpf(TcFilterBpfOption::Other(DefaultNla::new(
            TCA_BPF_OPS_LEN,
            count.to_ne_bytes().to_vec(),
        ))),
        TcOption::Bpf(TcFilterBpfOption::Other(DefaultNla::new(TCA_BPF_OPS, ops))),
        TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
    ]));
    let added = RouteNetlinkMessage::NewTrafficFilter(filter);
    if let Err(e) = request(handle, added, NLM_F_CREATE | NLM_F_EXCL).await {
        let _ = request(handle, RouteNetlinkMessage::DelQueueDiscipline(qdisc), 0).await;
        return Err(e);
    }
    Ok(())
}

/// Sends `message` and reads the kernel's answer to its end.
async fn request(
    handle: &Handle,
    message: RouteNetlinkMessage,
    flags: u16,
) -> Result<(), rtnetlink::Error> {
    let mut request = NetlinkMessage::from(message);
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut answers = handle.clone().request(request)?;
    while let Some(answer) = answers.next().await {
        if let NetlinkPayload::Error(e) = answer.payload
            && e.code.is_some()
        {
            return Err(rtnetlink::Error::NetlinkError(e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_drops_a_gateway_prefix_and_passes_the_rest() {
        let program = program([0x02, 0x52, 0x4e]);
        // Loads the source MAC's first four bytes, keeps three.
        assert_eq!((program[0].code, program[0].k), (0x20, 6));
        assert_eq!(program[1].k, 0xffff_ff00);
        // Equal: on to the next instruction (drop); else skip it (pass).
        assert_eq!(
            (program[2].k, program[2].jt, program[2].jf),
            (0x0252_4e00, 0, 1)
        );
        assert_eq!((program[3].code, program[3].k), (0x06, TC_ACT_SHOT));
        assert_eq!((program[4].code, program[4].k), (0x06, TC_ACT_UNSPEC));
        let bytes = encode(&program);
        assert_eq!(bytes.len(), 5 * 8, "one struct sock_filter each");
        let first: Vec<u8> = [&0x20u16.to_ne_bytes()[..], &[0, 0], &6u32.to_ne_bytes()].concat();
        assert_eq!(bytes[..8], first[..]);
    }
}
