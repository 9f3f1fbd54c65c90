//! The netlink executor: observes links and performs planned operations,
//! deciding nothing itself.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{
    InfoKind, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::link::{IpVlanMode, MacVlanMode};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteScope};
use rtnetlink::{
    Handle, LinkBridge, LinkIpVlan, LinkMacVlan, LinkUnspec, LinkVeth, LinkVlan, LinkVxlan,
    RouteMessageBuilder,
};
use tokio::sync::Mutex;

use crate::model::{LanKind, Link, LinkKind, Observed, Op};
use crate::{Error, owner_alias, ownership};

/// What the service needs from the kernel; tests replace it with a fake.
pub trait Kernel: Send + Sync {
    fn observe(&self) -> impl Future<Output = Result<Observed, Error>> + Send;
    fn apply(&self, op: &Op) -> impl Future<Output = Result<(), Error>> + Send;
    /// The MTU of the interface holding `address` (the underlay), now.
    fn mtu_of(&self, address: IpAddr) -> impl Future<Output = Result<Option<u32>, Error>> + Send;
    /// Whether link `name` is in the namespace, now.
    fn has_link(&self, name: &str) -> impl Future<Output = Result<bool, Error>> + Send;
}

/// The kernel of the namespace this process runs in, through rtnetlink.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
    /// This data path's id (see [`crate::owner_alias`]).
    id: String,
    /// Held through each dump: the kernel runs one dump at a time per
    /// socket and refuses another started meanwhile with EBUSY, and
    /// netlink-proto, driven from several threads, can send the next
    /// request before the last dump is read to its end.
    dumping: Arc<Mutex<()>>,
}

impl Netlink {
    /// Opens a netlink connection for data path `id` (stable for a state
    /// directory); must run inside a tokio runtime.
    pub fn connect(id: &str) -> Result<Self, Error> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(Error::Connection)?;
        tokio::spawn(connection);
        Ok(Self {
            handle,
            id: id.to_owned(),
            dumping: Arc::default(),
        })
    }

    async fn index(&self, name: &str) -> Result<Option<u32>, Error> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|l| l.header.index)),
            // ENODEV: no such link.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -19 => Ok(None),
            Err(source) => Err(netlink_err(format!("find {name}"), source)),
        }
    }

    async fn required_index(&self, name: &str) -> Result<u32, Error> {
        self.index(name).await?.ok_or_else(|| Error::Command {
            command: format!("find link {name}"),
            message: "no such interface".to_owned(),
        })
    }

    async fn set(&self, what: String, message: LinkMessage) -> Result<(), Error> {
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|e| netlink_err(what, e))
    }

    async fn add(&self, what: String, message: LinkMessage) -> Result<(), Error> {
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(|e| netlink_err(what, e))
    }

    async fn mark_owned(&self, name: &str) -> Result<(), Error> {
        let message = LinkUnspec::new_with_name(name)
            .alias(owner_alias(&self.id))
            .build();
        self.set(format!("set alias of {name}"), message).await
    }
}

impl Netlink {
    /// Adds to `remotes` the permanent FDB (all-zero ones apart, as
    /// floods) and neighbour entries on rustnet's VXLAN devices.
    async fn observe_remotes(
        &self,
        vxlans: &BTreeMap<u32, String>,
        remotes: &mut Observed,
    ) -> Result<(), Error> {
        if vxlans.is_empty() {
            return Ok(());
        }
        let _dumping = self.dumping.lock().await;
        for family in [
            AddressFamily::Bridge,
            AddressFamily::Inet,
            AddressFamily::Inet6,
        ] {
            let mut request = self.handle.neighbours().get();
            request.message_mut().header.family = family;
            let mut entries = request.execute();
            while let Some(entry) = entries
                .try_next()
                .await
                .map_err(|e| netlink_err(format!("list {family:?} neighbours"), e))?
            {
                let Some(device) = vxlans.get(&entry.header.ifindex) else {
                    continue;
                };
                if entry.header.state != NeighbourState::Permanent {
                    continue;
                }
                let (mut mac, mut ip) = (None, None);
                for attribute in &entry.attributes {
                    match attribute {
                        NeighbourAttribute::LinkLayerAddress(lla) => {
                            mac = <[u8; 6]>::try_from(lla.as_slice()).ok()
                        }
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                            ip = Some(IpAddr::V4(*v4))
                        }
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                            ip = Some(IpAddr::V6(*v6))
                        }
                        // In an AF_BRIDGE dump the VTEP comes as raw bytes.
                        NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                            ip = vtep_of(bytes);
                        }
                        _ => {}
                    }
                }
                let (Some(mac), Some(ip)) = (mac, ip) else {
                    continue;
                };
                match family {
                    AddressFamily::Bridge if mac == FLOOD_MAC => {
                        remotes.floods.insert((device.clone(), ip));
                    }
                    AddressFamily::Bridge => {
                        remotes.fdb.insert((device.clone(), mac), ip);
                    }
                    _ => {
                        remotes.neighbours.insert((device.clone(), ip), mac);
                    }
                }
            }
        }
        Ok(())
    }

    /// Appends `vtep` to the all-zero FDB entry of `device` (or removes
    /// it): rtnetlink's request replaces the entry's one destination, and
    /// head-end replication needs one per host (NLM_F_APPEND).
    async fn flood(&self, add: bool, device: &str, vtep: IpAddr) -> Result<(), Error> {
        use rtnetlink::packet_core::{
            NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
        };
        use rtnetlink::packet_route::RouteNetlinkMessage;
        if !add {
            return self.fdb(false, device, &FLOOD_MAC, vtep).await;
        }
        let what = format!("add flood to {vtep} on {device}");
        let index = self.required_index(device).await?;
        let mut message = fdb_entry(index, &FLOOD_MAC, vtep);
        message.header.state = NeighbourState::Permanent;
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(message));
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
        let mut handle = self.handle.clone();
        let mut response = handle
            .request(request)
            .map_err(|e| netlink_err(what.clone(), e))?;
        while let Some(message) = futures::StreamExt::next(&mut response).await {
            if let NetlinkPayload::Error(e) = message.payload {
                // EEXIST: already there.
                if e.raw_code() == -17 {
                    return Ok(());
                }
                return Err(netlink_err(what, rtnetlink::Error::NetlinkError(e)));
            }
        }
        Ok(())
    }

    /// A permanent FDB entry (NTF_SELF: on the VXLAN device itself).
    async fn fdb(&self, add: bool, device: &str, mac: &[u8; 6], vtep: IpAddr) -> Result<(), Error> {
        let what = format!(
            "{} fdb {} on {device}",
            if add { "add" } else { "delete" },
            vtep
        );
        let index = self.required_index(device).await?;
        if add {
            let request = self
                .handle
                .neighbours()
                .add_bridge(index, mac)
                .destination(vtep);
            let request = request
                .flags(NeighbourFlags::Own)
                .state(NeighbourState::Permanent)
                .replace();
            return request.execute().await.map_err(|e| netlink_err(what, e));
        }
        let message = fdb_entry(index, mac, vtep);
        ignore_missing(self.handle.neighbours().del(message).execute().await)
            .map_err(|e| netlink_err(what, e))
    }

    /// A permanent neighbour entry: the VXLAN device answers ARP (IPv4)
    /// and neighbour solicitations (IPv6) with it.
    async fn neighbour(
        &self,
        add: bool,
        device: &str,
        ip: IpAddr,
        mac: &[u8; 6],
    ) -> Result<(), Error> {
        let what = format!(
            "{} neighbour {ip} on {device}",
            if add { "add" } else { "delete" }
        );
        let index = self.required_index(device).await?;
        if add {
            let request = self
                .handle
                .neighbours()
                .add(index, ip)
                .link_layer_address(mac);
            let request = request.state(NeighbourState::Permanent).replace();
            return request.execute().await.map_err(|e| netlink_err(what, e));
        }
        let mut message = NeighbourMessage::default();
        message.header.family = match ip {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        message.header.ifindex = index;
        message
            .attributes
            .push(NeighbourAttribute::Destination(ip.into()));
        ignore_missing(self.handle.neighbours().del(message).execute().await)
            .map_err(|e| netlink_err(what, e))
    }

    /// Adds to `observed` the host routes (main table, a whole address) on
    /// rustnet's macvlan and ipvlan links in this namespace (`shims`, by
    /// index).
    async fn observe_routes(
        &self,
        shims: &BTreeMap<u32, String>,
        observed: &mut Observed,
    ) -> Result<(), Error> {
        if shims.is_empty() {
            return Ok(());
        }
        let _dumping = self.dumping.lock().await;
        let requests = [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ];
        for request in requests {
            let mut routes = self.handle.route().get(request).execute();
            while let Some(route) = routes
                .try_next()
                .await
                .map_err(|e| netlink_err("list routes".to_owned(), e))?
            {
                if let Some(entry) = host_route(&route, shims) {
                    observed.routes.insert(entry);
                }
            }
        }
        Ok(())
    }

    /// The message creating a macvlan (bridge mode) or ipvlan (L2) link on
    /// `parent`.
    async fn lan_link(
        &self,
        name: &str,
        kind: LanKind,
        parent: &str,
        mac: Option<[u8; 6]>,
        mtu: u32,
    ) -> Result<LinkMessage, Error> {
        let parent = self.required_index(parent).await?;
        Ok(match kind {
            LanKind::Macvlan => {
                let builder = LinkMacVlan::new(name, parent, MacVlanMode::Bridge).mtu(mtu);
                match mac {
                    Some(mac) => builder.address(mac.to_vec()).build(),
                    None => builder.build(),
                }
            }
            LanKind::Ipvlan => LinkIpVlan::new(name, parent, IpVlanMode::L2)
                .mtu(mtu)
                .build(),
        })
    }

    /// Adds or deletes the host route to `ip` through `device`.
    async fn route(&self, add: bool, device: &str, ip: IpAddr) -> Result<(), Error> {
        let what = format!(
            "{} route {ip} dev {device}",
            if add { "add" } else { "delete" }
        );
        let index = self.required_index(device).await?;
        let message = match ip {
            IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(v4, 32)
                .output_interface(index)
                .scope(RouteScope::Link)
                .build(),
            IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(v6, 128)
                .output_interface(index)
                .build(),
        };
        if add {
            let request = self.handle.route().add(message).replace();
            return request.execute().await.map_err(|e| netlink_err(what, e));
        }
        ignore_missing(self.handle.route().del(message).execute().await)
            .map_err(|e| netlink_err(what, e))
    }

    /// The MTU of the interface holding `address`: the underlay's.
    async fn interface_mtu(&self, address: IpAddr) -> Result<Option<u32>, Error> {
        let (links, _) = self.observe_links().await?;
        Ok(links
            .values()
            .find(|l| l.addresses.iter().any(|a| a.addr() == address))
            .map(|l| l.mtu))
    }
}

/// The main table's whole-address route through one of `devices`, as
/// (device, address).
fn host_route(route: &RouteMessage, devices: &BTreeMap<u32, String>) -> Option<(String, IpAddr)> {
    const MAIN_TABLE: u8 = 254;
    let full = match route.header.address_family {
        AddressFamily::Inet => 32,
        AddressFamily::Inet6 => 128,
        _ => return None,
    };
    if route.header.table != MAIN_TABLE || route.header.destination_prefix_length != full {
        return None;
    }
    let (mut device, mut ip) = (None, None);
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Oif(index) => device = devices.get(index),
            RouteAttribute::Destination(RouteAddress::Inet(v4)) => ip = Some(IpAddr::V4(*v4)),
            RouteAttribute::Destination(RouteAddress::Inet6(v6)) => ip = Some(IpAddr::V6(*v6)),
            _ => {}
        }
    }
    Some((device?.clone(), ip?))
}

/// Deleting what is already gone is success (ENOENT, ESRCH).
fn ignore_missing(result: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match result {
        Err(rtnetlink::Error::NetlinkError(e)) if matches!(e.raw_code(), -2 | -3) => Ok(()),
        other => other,
    }
}

/// The MAC of the FDB entries that take every frame without one of its
/// own (broadcast, multicast, unknown unicast).
const FLOOD_MAC: [u8; 6] = [0; 6];

/// The FDB entry of `mac` behind `vtep` on the VXLAN device `index`
/// itself (NTF_SELF).
fn fdb_entry(index: u32, mac: &[u8; 6], vtep: IpAddr) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Bridge;
    message.header.ifindex = index;
    message.header.flags = NeighbourFlags::Own;
    message.attributes = vec![
        NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
        NeighbourAttribute::Destination(vtep.into()),
    ];
    message
}

/// A VTEP as an AF_BRIDGE dump gives it: 4 or 16 raw bytes.
fn vtep_of(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    <[u8; 16]>::try_from(bytes)
        .ok()
        .map(|v6| IpAddr::V6(Ipv6Addr::from(v6)))
}

/// The message creating a VXLAN device: learning off, ARP and neighbour
/// solicitations answered from its static entries (proxy).
fn vxlan_link(name: &str, vni: u32, local: IpAddr, port: u16, mtu: u32) -> LinkMessage {
    let message = LinkVxlan::new(name, vni);
    let message = match local {
        IpAddr::V4(v4) => message.local(v4),
        IpAddr::V6(v6) => message.local6(v6),
    };
    message
        .port(port)
        .learning(false)
        .proxy(true)
        .mtu(mtu)
        .build()
}

pub(crate) fn netlink_err(op: String, source: rtnetlink::Error) -> Error {
    Error::Netlink { op, source }
}

impl Kernel for Netlink {
    async fn observe(&self) -> Result<Observed, Error> {
        let (links, owned) = self.observe_links().await?;
        // rustnet's links of `kinds`, by index.
        let of_kind = |kinds: &[LinkKind]| -> BTreeMap<u32, String> {
            owned
                .iter()
                .filter(|(_, name)| links.get(*name).is_some_and(|l| kinds.contains(&l.kind)))
                .map(|(index, name)| (*index, name.clone()))
                .collect()
        };
        let vxlans = of_kind(&[LinkKind::Vxlan]);
        let shims = of_kind(&[LinkKind::Macvlan, LinkKind::Ipvlan]);
        let mut observed = Observed {
            links,
            ..Observed::default()
        };
        self.observe_remotes(&vxlans, &mut observed).await?;
        observed.guarded = {
            let _dumping = self.dumping.lock().await;
            crate::guard::observe(&self.handle, &vxlans).await?
        };
        self.observe_routes(&shims, &mut observed).await?;
        Ok(observed)
    }

    async fn apply(&self, op: &Op) -> Result<(), Error> {
        self.apply_op(op).await
    }

    async fn mtu_of(&self, address: IpAddr) -> Result<Option<u32>, Error> {
        self.interface_mtu(address).await
    }

    async fn has_link(&self, name: &str) -> Result<bool, Error> {
        Ok(self.index(name).await?.is_some())
    }
}

impl Netlink {
    /// The links of the namespace by name, and rustnet's own links by
    /// index.
    async fn observe_links(
        &self,
    ) -> Result<(BTreeMap<String, Link>, BTreeMap<u32, String>), Error> {
        // Each message is kept only as a small `Link`. (netlink-proto still
        // decodes a whole dump ahead of this loop, about 13 KB a link: that
        // burst is what the daemon's periodic trim gives back.)
        let mut read: Vec<(u32, String, Link, Option<u32>)> = Vec::new();
        let dumping = self.dumping.lock().await;
        // Without counters: nothing here reads them.
        let mut stream = self
            .handle
            .link()
            .get()
            .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::SkipStats])
            .execute();
        while let Some(m) = stream
            .try_next()
            .await
            .map_err(|e| netlink_err("list links".to_owned(), e))?
        {
            let Some(name) = name_of(&m) else { continue };
            let mut link = Link {
                kind: LinkKind::Other,
                mtu: 0,
                up: m.header.flags.contains(LinkFlags::Up),
                master: None,
                addresses: Vec::new(),
                owned: false,
                inherited: false,
                mac: None,
            };
            let mut master = None;
            for attribute in &m.attributes {
                match attribute {
                    LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
                    LinkAttribute::Controller(index) => master = Some(*index),
                    LinkAttribute::IfAlias(alias) => {
                        (link.owned, link.inherited) = ownership(alias, &self.id);
                    }
                    LinkAttribute::LinkInfo(infos) => link.kind = kind_of(infos),
                    LinkAttribute::Address(bytes) => {
                        link.mac = <[u8; 6]>::try_from(&bytes[..]).ok()
                    }
                    _ => {}
                }
            }
            read.push((m.header.index, name, link, master));
        }
        let names: BTreeMap<u32, String> = read
            .iter()
            .map(|(index, name, ..)| (*index, name.clone()))
            .collect();
        let mut addresses: BTreeMap<u32, Vec<IpNet>> = BTreeMap::new();
        let mut stream = self.handle.address().get().execute();
        while let Some(message) = stream
            .try_next()
            .await
            .map_err(|e| netlink_err("list addresses".to_owned(), e))?
        {
            let ip = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(net) = ip.and_then(|ip| IpNet::new(ip, message.header.prefix_len).ok()) {
                addresses.entry(message.header.index).or_default().push(net);
            }
        }
        drop(dumping);
        let mut links = BTreeMap::new();
        let mut owned = BTreeMap::new();
        for (index, name, mut link, master) in read {
            link.master = master.and_then(|m| names.get(&m).cloned());
            link.addresses = addresses.remove(&index).unwrap_or_default();
            if link.owned {
                owned.insert(index, name.clone());
            }
            links.insert(name, link);
        }
        Ok((links, owned))
    }

    async fn apply_op(&self, op: &Op) -> Result<(), Error> {
        tracing::debug!(%op, "netlink");
        match op {
            Op::CreateBridge { name, mtu } => {
                self.add(op.to_string(), LinkBridge::new(name).mtu(*mtu).build())
                    .await?;
                self.mark_owned(name).await
            }
            Op::CreateVeth {
                host,
                peer,
                mtu,
                mac,
            } => {
                self.add(op.to_string(), LinkVeth::new(host, peer).mtu(*mtu).build())
                    .await?;
                let peer_settings = LinkUnspec::new_with_name(peer)
                    .mtu(*mtu)
                    .address(mac.to_vec())
                    .build();
                self.set(format!("set mtu and mac of {peer}"), peer_settings)
                    .await?;
                self.mark_owned(host).await?;
                self.mark_owned(peer).await
            }
            Op::CreateVxlan {
                name,
                vni,
                local,
                port,
                mtu,
            } => {
                let message = vxlan_link(name, *vni, *local, *port, *mtu);
                self.add(op.to_string(), message).await?;
                self.mark_owned(name).await
            }
            Op::AddFdb { device, mac, vtep } => self.fdb(true, device, mac, *vtep).await,
            Op::DelFdb { device, mac, vtep } => self.fdb(false, device, mac, *vtep).await,
            Op::AddFlood { device, vtep } => self.flood(true, device, *vtep).await,
            Op::DelFlood { device, vtep } => self.flood(false, device, *vtep).await,
            Op::AddNeighbour { device, ip, mac } => self.neighbour(true, device, *ip, mac).await,
            Op::DelNeighbour { device, ip, mac } => self.neighbour(false, device, *ip, mac).await,
            Op::SetMtu { link, mtu } => {
                self.set(
                    op.to_string(),
                    LinkUnspec::new_with_name(link).mtu(*mtu).build(),
                )
                .await
            }
            Op::SetMaster { link, master } => {
                let index = self.required_index(master).await?;
                self.set(
                    op.to_string(),
                    LinkUnspec::new_with_name(link).controller(index).build(),
                )
                .await
            }
            Op::SetMac { link, mac } => {
                self.set(
                    op.to_string(),
                    LinkUnspec::new_with_name(link)
                        .address(mac.to_vec())
                        .build(),
                )
                .await
            }
            Op::AddAddress { link, address } => {
                let index = self.required_index(link).await?;
                let request = self
                    .handle
                    .address()
                    .add(index, address.addr(), address.prefix_len())
                    .replace();
                request
                    .execute()
                    .await
                    .map_err(|e| netlink_err(op.to_string(), e))
            }
            Op::SetUp { link } => {
                self.set(op.to_string(), LinkUnspec::new_with_name(link).up().build())
                    .await
            }
            Op::CreateLan {
                name,
                kind,
                parent,
                mac,
                mtu,
            } => {
                let message = self.lan_link(name, *kind, parent, *mac, *mtu).await?;
                self.add(op.to_string(), message).await?;
                self.mark_owned(name).await
            }
            Op::CreateVlan { name, base, id } => {
                let base = self.required_index(base).await?;
                self.add(op.to_string(), LinkVlan::new(name, base, *id).build())
                    .await?;
                self.mark_owned(name).await
            }
            Op::GuardVxlan { device, prefix } => {
                let index = self.required_index(device).await?;
                let installed = crate::guard::install(&self.handle, index, *prefix).await;
                installed.map_err(|e| netlink_err(op.to_string(), e))
            }
            Op::AddRoute { device, ip } => self.route(true, device, *ip).await,
            Op::DelRoute { device, ip } => self.route(false, device, *ip).await,
            Op::DeleteLink { name } => match self.index(name).await? {
                // Already gone (deleting one end of a pair deletes both).
                None => Ok(()),
                Some(index) => {
                    let result = self.handle.link().del(index).execute().await;
                    result.map_err(|e| netlink_err(op.to_string(), e))
                }
            },
        }
    }
}

fn name_of(message: &LinkMessage) -> Option<String> {
    message.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.clone()),
        _ => None,
    })
}

fn kind_of(infos: &[LinkInfo]) -> LinkKind {
    infos
        .iter()
        .find_map(|i| match i {
            LinkInfo::Kind(InfoKind::Bridge) => Some(LinkKind::Bridge),
            LinkInfo::Kind(InfoKind::Veth) => Some(LinkKind::Veth),
            LinkInfo::Kind(InfoKind::Vxlan) => Some(LinkKind::Vxlan),
            LinkInfo::Kind(InfoKind::MacVlan) => Some(LinkKind::Macvlan),
            LinkInfo::Kind(InfoKind::IpVlan) => Some(LinkKind::Ipvlan),
            LinkInfo::Kind(InfoKind::Vlan) => Some(LinkKind::Vlan),
            _ => None,
        })
        .unwrap_or(LinkKind::Other)
}
