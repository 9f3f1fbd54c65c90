//! The kernel's WireGuard: a `wireguard` link, configured over generic
//! netlink (the messages `wg(8)` sends).
//!
//! ```text
//!   rtnetlink: ip link add rn-wg0 type wireguard  (EOPNOTSUPP: no module)
//!   genetlink "wireguard": SET_DEVICE {private key, port, peers...}
//!                          GET_DEVICE (dump) -> peers, handshakes, bytes
//! ```
//!
//! The link outlives this process: a restart finds it, keeps its sessions
//! and only brings its key and peers to what they should be.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use futures::{StreamExt, TryStreamExt};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlMessage};
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAttribute,
    WireguardCmd, WireguardMessage, WireguardPeer, WireguardPeerAttribute, WireguardPeerFlags,
};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkDeserializable, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable,
};
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo};
use rtnetlink::proto::new_connection;
use rtnetlink::sys::{SocketAddr as NetlinkAddr, protocols::NETLINK_GENERIC};

use super::{PeerState, TunnelPeer};

/// `EOPNOTSUPP`: the kernel has no link kind of that name (no module).
const NOT_SUPPORTED: i32 = 95;

/// Why the kernel's WireGuard is not used.
#[derive(Debug)]
pub(super) enum Unavailable {
    /// The kernel has no WireGuard.
    NoModule,
    /// It has, but setting it up failed: why.
    Failed(String),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoModule => f.write_str("the kernel has no WireGuard"),
            Self::Failed(why) => f.write_str(why),
        }
    }
}

/// The kernel WireGuard link `device`, and its generic netlink family.
#[derive(Debug)]
pub(super) struct KernelWireGuard {
    device: String,
    family: u16,
    /// Made by this run (not one a run before left).
    pub(super) created: bool,
}

impl KernelWireGuard {
    /// Creates the link (or takes the one a run before left), and gives it
    /// `private_key` and `port`.
    pub(super) async fn create(
        handle: &rtnetlink::Handle,
        device: &str,
        private_key: [u8; 32],
        port: u16,
    ) -> Result<Self, Unavailable> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            Unavailable::Failed(format!("{device}: {what}: {e}"))
        };
        let created = match link_kind(handle, device)
            .await
            .map_err(|e| failed("look up", &e))?
        {
            Some(InfoKind::Wireguard) => false,
            Some(_) => {
                // The TAP device of a userspace run is gone with its process;
                // anything else of this name is not rustnet's to take.
                return Err(Unavailable::Failed(format!(
                    "{device} exists and is no WireGuard link"
                )));
            }
            None => {
                let add =
                    rtnetlink::LinkMessageBuilder::<rtnetlink::LinkUnspec>::new_with_info_kind(
                        InfoKind::Wireguard,
                    )
                    .name(device.to_owned())
                    .build();
                if let Err(e) = handle.link().add(add).execute().await {
                    return Err(match &e {
                        rtnetlink::Error::NetlinkError(m)
                            if m.code.map(|c| -c.get()) == Some(NOT_SUPPORTED) =>
                        {
                            Unavailable::NoModule
                        }
                        _ => failed("create", &e),
                    });
                }
                true
            }
        };
        let configured = async {
            let family = family_id(WireguardMessage::family_name())
                .await
                .map_err(|e| failed("generic netlink family", &e))?;
            let wg = Self {
                device: device.to_owned(),
                family,
                created,
            };
            wg.set(vec![
                WireguardAttribute::PrivateKey(private_key),
                WireguardAttribute::ListenPort(port),
            ])
            .await
            .map_err(|e| failed("set key and port", &e))?;
            Ok(wg)
        }
        .await;
        let wg = match configured {
            Ok(wg) => wg,
            Err(e) => {
                // A link made just now and left unconfigured would hold the
                // name a userspace fallback needs.
                if created {
                    delete_link(handle, device).await;
                }
                return Err(e);
            }
        };
        Ok(wg)
    }

    /// Makes the link's peers exactly `wanted`, by what the kernel holds
    /// now (a run before may have left others).
    pub(super) async fn set_peers(&self, wanted: &[TunnelPeer]) -> Result<(), String> {
        let present = self.peer_states().await?;
        let changes = peer_changes(&present, wanted);
        if changes.is_empty() {
            return Ok(());
        }
        self.set(vec![WireguardAttribute::Peers(changes)]).await
    }

    /// Replaces the link's static key; the kernel ends every session made
    /// under the key before, and the next packet to a peer starts one.
    pub(super) async fn set_key(&self, private_key: [u8; 32]) -> Result<(), String> {
        self.set(vec![WireguardAttribute::PrivateKey(private_key)])
            .await
    }

    /// Every peer of the link, as the kernel has it.
    pub(super) async fn peer_states(&self) -> Result<Vec<PeerState>, String> {
        let answers = self
            .ask(WireguardCmd::GetDevice, Vec::new(), NLM_F_DUMP)
            .await
            .map_err(|e| format!("get {}: {e}", self.device))?;
        Ok(answers
            .into_iter()
            .flat_map(|m| m.attributes)
            .filter_map(|a| match a {
                WireguardAttribute::Peers(list) => Some(list),
                _ => None,
            })
            .flatten()
            .filter_map(|peer| peer_state(&peer))
            .collect())
    }

    /// One SET_DEVICE of the link with `attributes`, answered.
    async fn set(&self, attributes: Vec<WireguardAttribute>) -> Result<(), String> {
        self.ask(WireguardCmd::SetDevice, attributes, NLM_F_ACK)
            .await
            .map(drop)
            .map_err(|e| format!("set {}: {e}", self.device))
    }

    /// `command` for the link with `attributes` (its name first).
    async fn ask(
        &self,
        command: WireguardCmd,
        mut attributes: Vec<WireguardAttribute>,
        flags: u16,
    ) -> Result<Vec<WireguardMessage>, String> {
        attributes.insert(0, WireguardAttribute::IfName(self.device.clone()));
        let mut message = GenlMessage::from_payload(WireguardMessage {
            cmd: command,
            attributes,
        });
        message.set_resolved_family_id(self.family);
        ask(message, flags).await
    }
}

/// Sends `message` (a request, with `flags` besides) over a generic
/// netlink socket of its own; the payloads answered, or the kernel's
/// error.
async fn ask<F>(message: GenlMessage<F>, flags: u16) -> Result<Vec<F>, String>
where
    F: std::fmt::Debug + Send + Unpin + 'static,
    GenlMessage<F>: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug + Unpin + Send,
{
    let (connection, handle, _) = new_connection::<GenlMessage<F>>(NETLINK_GENERIC)
        .map_err(|e| format!("generic netlink: {e}"))?;
    tokio::spawn(connection);
    let mut request = NetlinkMessage::from(message);
    request.header.flags = NLM_F_REQUEST | flags;
    request.finalize();
    let mut replies = handle
        .request(request, NetlinkAddr::new(0, 0))
        .map_err(|e| format!("generic netlink: {e}"))?;
    let mut answers = Vec::new();
    while let Some(reply) = replies.next().await {
        match reply.payload {
            NetlinkPayload::InnerMessage(m) => answers.push(m.payload),
            NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io().to_string()),
            _ => {}
        }
    }
    Ok(answers)
}

/// The kind of link `device` is, if it exists.
/// Deletes link `device` if it exists; a failure is only logged (the
/// caller is already failing).
pub(super) async fn delete_link(handle: &rtnetlink::Handle, device: &str) {
    let mut links = handle.link().get().match_name(device.to_owned()).execute();
    if let Ok(Some(link)) = futures::TryStreamExt::try_next(&mut links).await
        && let Err(e) = handle.link().del(link.header.index).execute().await
    {
        tracing::warn!(device, error = %e, "could not delete the unconfigured WireGuard link");
    }
}

async fn link_kind(handle: &rtnetlink::Handle, device: &str) -> Result<Option<InfoKind>, String> {
    let found = handle
        .link()
        .get()
        .match_name(device.to_owned())
        .execute()
        .try_next()
        .await;
    let link = match found {
        Ok(Some(link)) => link,
        Ok(None) => return Ok(None),
        Err(rtnetlink::Error::NetlinkError(m))
            if m.code.map(|c| -c.get()) == Some(libc::ENODEV) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e.to_string()),
    };
    let kind = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(kind) => Some(kind.clone()),
            _ => None,
        }),
        _ => None,
    });
    // A link without a kind (a TUN or TAP device shows "tun") is some other kind.
    Ok(Some(kind.unwrap_or(InfoKind::Other(String::new()))))
}

/// The id the kernel gave the generic netlink family `name`.
async fn family_id(name: &str) -> Result<u16, String> {
    let message = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(name.to_owned())],
    });
    let answers = ask(message, 0)
        .await
        .map_err(|e| format!("family {name}: {e}"))?;
    answers
        .iter()
        .flat_map(|m| &m.nlas)
        .find_map(|a| match a {
            GenlCtrlAttrs::FamilyId(id) => Some(*id),
            _ => None,
        })
        .ok_or_else(|| format!("family {name}: no answer"))
}

/// One peer of a GET_DEVICE answer.
fn peer_state(peer: &WireguardPeer) -> Option<PeerState> {
    let mut state = PeerState {
        key: [0; 32],
        endpoint: None,
        handshake_age: None,
        rx_bytes: 0,
        tx_bytes: 0,
        allowed: Vec::new(),
    };
    let mut keyed = false;
    for attribute in peer.iter() {
        match attribute {
            WireguardPeerAttribute::PublicKey(key) => {
                state.key = *key;
                keyed = true;
            }
            WireguardPeerAttribute::Endpoint(endpoint) => state.endpoint = Some(*endpoint),
            WireguardPeerAttribute::LastHandshake(time) if time.seconds > 0 => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                state.handshake_age =
                    Some(now.saturating_sub(u64::try_from(time.seconds).unwrap_or(0)));
            }
            WireguardPeerAttribute::RxBytes(n) => {
                state.rx_bytes = usize::try_from(*n).unwrap_or(usize::MAX);
            }
            WireguardPeerAttribute::TxBytes(n) => {
                state.tx_bytes = usize::try_from(*n).unwrap_or(usize::MAX);
            }
            WireguardPeerAttribute::AllowedIps(ips) => {
                state.allowed.extend(ips.iter().filter_map(allowed_ip));
            }
            _ => {}
        }
    }
    keyed.then_some(state)
}

fn allowed_ip(ip: &WireguardAllowedIp) -> Option<(IpAddr, u8)> {
    let address = ip.iter().find_map(|a| match a {
        WireguardAllowedIpAttr::IpAddr(address) => Some(*address),
        _ => None,
    })?;
    let prefix = ip.iter().find_map(|a| match a {
        WireguardAllowedIpAttr::Cidr(prefix) => Some(*prefix),
        _ => None,
    })?;
    Some((address, prefix))
}

/// What a SET_DEVICE must say to take the link from `present` to `wanted`
/// (pure): a peer no longer wanted is removed; a new one, or one whose
/// endpoint or address changed, is set whole (its allowed IPs replaced);
/// the rest is left alone, sessions and all.
pub(super) fn peer_changes(present: &[PeerState], wanted: &[TunnelPeer]) -> Vec<WireguardPeer> {
    let present: BTreeMap<[u8; 32], &PeerState> = present.iter().map(|p| (p.key, p)).collect();
    let wanted_keys: BTreeMap<[u8; 32], &TunnelPeer> = wanted.iter().map(|p| (p.key, p)).collect();
    let mut changes: Vec<WireguardPeer> = present
        .keys()
        .filter(|key| !wanted_keys.contains_key(*key))
        .map(|key| {
            WireguardPeer(vec![
                WireguardPeerAttribute::PublicKey(*key),
                WireguardPeerAttribute::Flags(WireguardPeerFlags::RemoveMe),
            ])
        })
        .collect();
    for peer in wanted_keys.values() {
        let allowed = (IpAddr::V4(peer.address), 32);
        let same = present.get(&peer.key).is_some_and(|p| {
            p.endpoint == Some(peer.endpoint) && p.allowed.as_slice() == [allowed]
        });
        if same {
            continue;
        }
        changes.push(WireguardPeer(vec![
            WireguardPeerAttribute::PublicKey(peer.key),
            WireguardPeerAttribute::Endpoint(canonical(peer.endpoint)),
            WireguardPeerAttribute::Flags(WireguardPeerFlags::ReplaceAllowedIps),
            WireguardPeerAttribute::AllowedIps(vec![WireguardAllowedIp(vec![
                WireguardAllowedIpAttr::Family(WireguardAddressFamily::Ipv4),
                WireguardAllowedIpAttr::IpAddr(allowed.0),
                WireguardAllowedIpAttr::Cidr(allowed.1),
            ])]),
        ]));
    }
    changes
}

/// An endpoint as the kernel reports it back (IPv6 without flow info).
fn canonical(endpoint: SocketAddr) -> SocketAddr {
    SocketAddr::new(endpoint.ip(), endpoint.port())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn wanted(n: u8) -> TunnelPeer {
        TunnelPeer {
            key: [n; 32],
            endpoint: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 51871),
            address: Ipv4Addr::new(169, 254, 192, n),
        }
    }

    fn present(peer: &TunnelPeer) -> PeerState {
        PeerState {
            key: peer.key,
            endpoint: Some(peer.endpoint),
            handshake_age: Some(3),
            rx_bytes: 1,
            tx_bytes: 1,
            allowed: vec![(IpAddr::V4(peer.address), 32)],
        }
    }

    fn keys_and_flags(changes: &[WireguardPeer]) -> Vec<([u8; 32], bool)> {
        changes
            .iter()
            .map(|p| {
                let key = p
                    .iter()
                    .find_map(|a| match a {
                        WireguardPeerAttribute::PublicKey(k) => Some(*k),
                        _ => None,
                    })
                    .unwrap();
                let removed = p.iter().any(|a| {
                    matches!(a, WireguardPeerAttribute::Flags(f) if f.contains(WireguardPeerFlags::RemoveMe))
                });
                (key, removed)
            })
            .collect()
    }

    #[test]
    fn peers_in_place_are_left_alone() {
        let peers = [wanted(1), wanted(2)];
        let present: Vec<PeerState> = peers.iter().map(present).collect();
        assert!(peer_changes(&present, &peers).is_empty());
    }

    #[test]
    fn gone_peers_are_removed_and_new_or_moved_ones_set() {
        let (one, two, three) = (wanted(1), wanted(2), wanted(3));
        let mut moved = two.clone();
        moved.endpoint = "10.0.9.2:51871".parse().unwrap();
        let present = [present(&one), present(&two)];
        let changes = peer_changes(&present, &[moved, three]);
        assert_eq!(
            keys_and_flags(&changes),
            vec![([1; 32], true), ([2; 32], false), ([3; 32], false)]
        );
        let set = &changes[2];
        assert!(set.iter().any(|a| matches!(
            a,
            WireguardPeerAttribute::Flags(f) if f.contains(WireguardPeerFlags::ReplaceAllowedIps)
        )));
        assert!(set.iter().any(|a| matches!(
            a,
            WireguardPeerAttribute::AllowedIps(ips) if allowed_ip(&ips[0]) == Some((IpAddr::V4(Ipv4Addr::new(169, 254, 192, 3)), 32))
        )));
    }

    #[test]
    fn a_peer_with_other_allowed_ips_is_set_again() {
        let one = wanted(1);
        let mut stale = present(&one);
        stale.allowed.push((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
        assert_eq!(
            keys_and_flags(&peer_changes(&[stale], &[one])),
            vec![([1; 32], false)]
        );
    }
}
