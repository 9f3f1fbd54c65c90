//! The replicated IPAM state machine: every pool of the cluster.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::addr::{overlaps, usable};
use crate::members::{Admission, CaRotation, Enrollments, PeerCert};
use crate::network::Tables;
use crate::pool::{HostNames, host_name};
use crate::recent::Recent;
use crate::{ClusterCa, JoinToken};
use crate::{
    Command, CommandResult, DefaultPool, Endpoint, Holder, HolderKind, HostId, IpamError, Pool,
    Proposal, Response,
};

/// All pools of the cluster, keyed by subnet. Changed only by [`State::apply`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pools: BTreeMap<IpNet, Pool>,
    /// How each host is named in messages.
    hosts: HostNames,
    /// Networks and endpoints of rustnet's network driver.
    tables: Tables,
    /// Each host's underlay address: where its VXLAN traffic goes.
    #[serde(default)]
    vteps: BTreeMap<HostId, IpAddr>,
    /// The results of the latest proposals, by id, oldest first: a proposal
    /// seen again (a retry) gets its first result instead of a second apply.
    #[serde(default)]
    recent: Recent,
    /// The secret a host presents to join.
    #[serde(default)]
    join_token: Option<JoinToken>,
    /// The cluster's certificate authority.
    #[serde(default)]
    ca: Option<ClusterCa>,
    /// Each member's certificate fingerprint: the peers that are admitted.
    #[serde(default)]
    certs: BTreeMap<HostId, String>,
    /// The ids handed out and the enrollments not yet joined.
    #[serde(default)]
    enrollments: Enrollments,
    /// Each member's certificate before its latest renewal, admitted until
    /// it expires or the next renewal: the renewing member switches to the
    /// new one a little after admitting it, once every replica knows it.
    #[serde(default)]
    previous_certs: BTreeMap<HostId, String>,
    /// A rotation of the CA under way, or finished and not yet retired.
    #[serde(default)]
    ca_rotation: Option<CaRotation>,
    /// When each member's certificate became valid (unix seconds).
    #[serde(default)]
    cert_times: BTreeMap<HostId, u64>,
    /// The format every member reads (none: 1, a cluster of releases from
    /// before formats were numbered): commands of a later one wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<u32>,
    /// Each member's WireGuard public key and port, for encrypted overlays.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tunnel_keys: BTreeMap<HostId, TunnelKey>,
}

/// A member's WireGuard identity: its public key (base64 of 32 bytes),
/// the UDP port it listens on at its underlay address, and its slot: a
/// small number unique in the cluster, kept across keys (its tunnel
/// address is made from it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelKey {
    pub key: String,
    pub port: u16,
    pub slot: u32,
}

/// The most hosts with tunnel keys at once.
pub const MAX_TUNNEL_SLOT: u32 = 16_382;

/// Whether `key` reads as a WireGuard key: base64 of 32 bytes, 44
/// characters ending in one `=` (pure; the key itself is checked where it
/// is used).
fn is_tunnel_key(key: &str) -> bool {
    key.len() == 44
        && key.ends_with('=')
        && key[..43]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

impl State {
    /// Applies a proposal once: a retried proposal (same id) returns the
    /// first result and changes nothing.
    /// A forwarded proposal the sender may not make is refused
    /// ([`State::authorize`]).
    pub fn apply_once(&mut self, proposal: &Proposal) -> CommandResult {
        let apply = |state: &mut Self| {
            if let Some(by) = proposal.by {
                state.authorize(by, &proposal.command)?;
            }
            state.apply(&proposal.command)
        };
        if proposal.id == 0 {
            return apply(self);
        }
        if let Some(result) = self.recent.get(proposal.id) {
            return result.clone();
        }
        let result = apply(self);
        self.recent.insert(proposal.id, result.clone());
        result
    }

    /// Applies one command. A refused command changes nothing.
    #[allow(clippy::too_many_lines)] // one arm per command: the dispatch table
    pub fn apply(&mut self, command: &Command) -> CommandResult {
        match command {
            Command::RequestPool {
                host,
                pool,
                range,
                v6,
                defaults,
            } => match pool {
                Some(subnet) => self.request_subnet(*host, *subnet, *range),
                None => match range {
                    Some(sub_pool) => Err(IpamError::SubPoolWithoutPool {
                        sub_pool: *sub_pool,
                    }),
                    None => self.request_default(*host, *v6, defaults),
                },
            },
            Command::ReleasePool { host, pool_id } => self.release_pool(*host, pool_id),
            Command::RegisterHost { host, name, addr } => {
                self.hosts.insert(*host, name.clone());
                if let Some(addr) = addr {
                    self.vteps.insert(*host, *addr);
                }
                Ok(Response::Done)
            }
            Command::SetTunnelKey { host, key, port } => {
                if !is_tunnel_key(key) {
                    return Err(IpamError::BadTunnelKey { key: key.clone() });
                }
                if !self.hosts.contains_key(host) {
                    return Err(IpamError::UnknownHost { host: *host });
                }
                // A host keeps its slot (its tunnel address) across keys.
                let slot = match self.tunnel_keys.get(host) {
                    Some(existing) => existing.slot,
                    None => (1..=MAX_TUNNEL_SLOT)
                        .find(|s| !self.tunnel_keys.values().any(|k| k.slot == *s))
                        .ok_or(IpamError::NoTunnelSlot)?,
                };
                self.tunnel_keys.insert(
                    *host,
                    TunnelKey {
                        key: key.clone(),
                        port: *port,
                        slot,
                    },
                );
                Ok(Response::Done)
            }
            Command::NameOverlay { key, name } => {
                self.tables.name_overlay(key, name)?;
                Ok(Response::Done)
            }
            Command::InitJoinToken { token } => {
                self.join_token.get_or_insert_with(|| token.clone());
                Ok(Response::Done)
            }
            Command::RotateJoinToken { token } => {
                self.join_token = Some(token.clone());
                Ok(Response::Done)
            }
            Command::InitCa { ca } => {
                // The key a release of format 1 sent stays until the voters
                // hold it and the leader seals it; in a cluster of format 2
                // (where every member keeps the key in its own db) a key
                // is never kept.
                let format_1 = self.cluster_format() < 2;
                self.ca
                    .get_or_insert_with(|| if format_1 { ca.clone() } else { ca.public() });
                Ok(Response::Done)
            }
            Command::RaiseFormat { format } => {
                self.format = Some(self.cluster_format().max(*format));
                Ok(Response::Done)
            }
            Command::SealCa => {
                if let Some(ca) = &mut self.ca {
                    ca.key_pem.clear();
                }
                Ok(Response::Done)
            }
            Command::AdmitCert {
                host,
                fingerprint,
                issuer,
                not_before,
            } => {
                let admitted = self.admit_cert(*host, fingerprint, issuer.as_deref())?;
                if let Some(at) = not_before {
                    self.cert_times.insert(*host, *at);
                }
                Ok(admitted)
            }
            Command::RotateCa { ca, cross_pem } => self.rotate_ca(ca, cross_pem),
            Command::RetireCa { previous } => self.retire_ca(previous),
            Command::AssignHostId { at } => self.assign_host_id(*at),
            Command::Joined { host } => {
                self.enrollments.settle(*host);
                Ok(Response::Done)
            }
            Command::ForgetHost { host } => {
                self.forget(*host);
                Ok(Response::Done)
            }
            Command::CreateNetwork(network) => {
                let new = self.tables.network(&network.id).is_none();
                self.tables.create_network(network)?;
                if let Err(e) = self.hold_shim(network.host, &network.id) {
                    if new {
                        self.tables.forget_network(network.host, &network.id);
                    }
                    return Err(e);
                }
                Ok(Response::Done)
            }
            Command::DeleteNetwork { host, id } => {
                let subnet = self.tables.network(id).and_then(|n| n.subnet);
                self.tables.delete_network(*host, id);
                self.drop_shim(*host, subnet);
                Ok(Response::Done)
            }
            Command::ForgetNetwork { host, id } => {
                let subnet = self.tables.network(id).and_then(|n| n.subnet);
                self.tables.forget_network(*host, id);
                self.drop_shim(*host, subnet);
                Ok(Response::Done)
            }
            Command::CreateEndpoint(endpoint) => {
                self.tables
                    .create_endpoint(endpoint)
                    .map_err(|e| self.name_the_host(e))?;
                Ok(Response::Done)
            }
            Command::DeleteEndpoint { host, id } => {
                self.tables.delete_endpoint(*host, id);
                Ok(Response::Done)
            }
            Command::NameEndpoint {
                host,
                id,
                container,
            } => {
                self.tables.name_endpoint(*host, id, container)?;
                Ok(Response::Done)
            }
            Command::NameAddress {
                host,
                address,
                container,
            } => {
                self.name_address(*host, *address, container)?;
                Ok(Response::Done)
            }
            Command::SetJoined { host, id, ports } => {
                self.tables.set_joined(*host, id, ports.as_deref())?;
                Ok(Response::Done)
            }
            Command::RequestAddress {
                host,
                pool_id,
                address,
                kind,
            } => {
                let pool = find_mut(&mut self.pools, pool_id)?;
                let holder = Holder {
                    host: *host,
                    kind: kind.clone(),
                    container: None,
                };
                let address = match address {
                    Some(address) => pool
                        .take(*address, holder, &self.hosts)
                        .map_err(|e| self.name_the_container(e))?,
                    None => pool.take_any(holder)?,
                };
                Ok(Response::Address { address })
            }
            Command::ReleaseAddress {
                host,
                pool_id,
                address,
            } => {
                find_mut(&mut self.pools, pool_id)?.release(*address, *host, &self.hosts)?;
                Ok(Response::Done)
            }
        }
    }

    /// Gives `host` an address of the subnet of its network `id` for the
    /// host shim, where that network is a LAN one with host access and the
    /// host holds none yet.
    fn hold_shim(&mut self, host: HostId, id: &str) -> Result<(), IpamError> {
        let Some(network) = self.tables.network(id) else {
            return Ok(());
        };
        let (true, true, Some(subnet)) =
            (network.mode.is_lan(), network.host_access, network.subnet)
        else {
            return Ok(());
        };
        if self.shim_of(host, subnet).is_some() {
            return Ok(());
        }
        let pool = self
            .pools
            .get_mut(&subnet.trunc())
            .ok_or_else(|| IpamError::UnknownPool {
                pool_id: subnet.trunc().to_string(),
            })?;
        pool.take_any(Holder {
            host,
            kind: HolderKind::Shim,
            container: None,
        })?;
        Ok(())
    }

    /// Frees `host`'s shim address on `subnet` once none of its networks
    /// there needs it.
    fn drop_shim(&mut self, host: HostId, subnet: Option<IpNet>) {
        let Some(subnet) = subnet else { return };
        let needed = self
            .tables
            .networks_of(host)
            .any(|n| n.mode.is_lan() && n.host_access && n.subnet == Some(subnet));
        let Some(address) = self.shim_of(host, subnet).filter(|_| !needed) else {
            return;
        };
        if let Some(pool) = self.pools.get_mut(&subnet.trunc()) {
            // Held by `host`, just found: nothing to refuse.
            let _ = pool.release(address, host, &self.hosts);
        }
    }

    /// The address of `host`'s shim on `subnet`, if it has one.
    pub fn shim_of(&self, host: HostId, subnet: IpNet) -> Option<IpAddr> {
        self.pools
            .get(&subnet.trunc())?
            .addresses
            .iter()
            .find(|(_, h)| h.host == host && h.kind == HolderKind::Shim)
            .map(|(a, _)| *a)
    }

    /// An error naming a host by id, with its name instead.
    fn name_the_host(&self, error: crate::NetworkError) -> crate::NetworkError {
        match error {
            crate::NetworkError::MacInUse { mac, holder, host } => {
                let name = host.parse().map_or(host, |id| host_name(&self.hosts, id));
                crate::NetworkError::MacInUse {
                    mac,
                    holder,
                    host: name,
                }
            }
            other => other,
        }
    }

    /// The format every member of the cluster reads: what may be written.
    pub fn cluster_format(&self) -> u32 {
        self.format.unwrap_or(crate::format::OLDEST_FORMAT)
    }

    /// The underlay address of `host`.
    pub fn vtep(&self, host: HostId) -> Option<IpAddr> {
        self.vteps.get(&host).copied()
    }

    /// `host`'s WireGuard key and port, once it published them.
    pub fn tunnel_key(&self, host: HostId) -> Option<&TunnelKey> {
        self.tunnel_keys.get(&host)
    }

    /// Every host that published a WireGuard key, with it.
    pub fn hosts_with_tunnel_keys(&self) -> impl Iterator<Item = (HostId, &TunnelKey)> + '_ {
        self.tunnel_keys.iter().map(|(host, key)| (*host, key))
    }

    /// Every member's underlay address.
    pub fn vteps(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.vteps.values().copied()
    }

    /// The cluster's join token (none in a cluster from before tokens
    /// until a member sets one).
    pub fn join_token(&self) -> Option<&JoinToken> {
        self.join_token.as_ref()
    }

    /// The cluster's certificate authority, once bootstrapped with one.
    pub fn ca(&self) -> Option<&ClusterCa> {
        self.ca.as_ref()
    }

    /// Whether a peer presenting the certificate with `fingerprint` at
    /// `now` (unix seconds) is admitted, and as whom: a current member's
    /// certificate, unless its host enrolled and did not join within the
    /// enrollment window.
    pub fn admission(&self, fingerprint: &str, now: u64) -> Admission {
        if self.certs.is_empty() {
            return Admission::AnyOfTheCa;
        }
        let current = self.certs.iter().find(|(_, f)| *f == fingerprint);
        let previous = || {
            self.previous_certs
                .iter()
                .find(|(h, f)| *f == fingerprint && self.certs.contains_key(h))
        };
        match current.or_else(previous) {
            Some((host, _)) if self.enrollments.in_window(*host, now) => Admission::Member(*host),
            _ => Admission::Refused,
        }
    }

    /// Whether a peer presenting `cert` at `now` is admitted, and as whom:
    /// as [`State::admission`] says; or, on a replica `catching_up` (one
    /// that does not yet know its own host's certificate: a new host fed
    /// an older snapshot), as the member the certificate names when it is
    /// newer than the one this replica knows for that member. A member's
    /// certificate from before its latest known one is never admitted.
    pub fn admission_of(&self, cert: &PeerCert, now: u64, catching_up: bool) -> Admission {
        let by_fingerprint = self.admission(&cert.fingerprint, now);
        if by_fingerprint != Admission::Refused || !catching_up {
            return by_fingerprint;
        }
        let (Some(host), Some(not_before)) = (cert.host, cert.not_before) else {
            return Admission::Refused;
        };
        match self.cert_times.get(&host) {
            Some(known) if not_before > *known && self.enrollments.in_window(host, now) => {
                Admission::Member(host)
            }
            _ => Admission::Refused,
        }
    }

    /// Whether `host` has enrolled and not yet joined.
    pub fn is_pending(&self, host: HostId) -> bool {
        self.enrollments.is_pending(host)
    }

    /// The fingerprints of the members' certificates admitted now: each
    /// member's latest, and the one before it while that is admitted too.
    pub fn admitted_certs(&self) -> Vec<String> {
        let previous = self
            .previous_certs
            .iter()
            .filter(|(host, _)| self.certs.contains_key(host));
        self.certs
            .values()
            .chain(previous.map(|(_, fingerprint)| fingerprint))
            .cloned()
            .collect()
    }

    /// The fingerprint of `host`'s certificate.
    pub fn cert_of(&self, host: HostId) -> Option<&str> {
        self.certs.get(&host).map(String::as_str)
    }

    /// Whether member `by` may send `command` (forwarded to the leader):
    /// a command about one host's things only from that host; a
    /// certificate only for itself or as the first of a freshly enrolled
    /// id; anything cluster-wide (token, CA, overlay names, enrollment)
    /// from any member.
    pub fn authorize(&self, by: HostId, command: &Command) -> Result<(), IpamError> {
        let allowed = match (command.host(), command) {
            (Some(host), _) => host == by,
            (None, Command::AdmitCert { host, .. }) => {
                *host == by
                    || (self.enrollments.is_pending(*host) && !self.certs.contains_key(host))
            }
            (None, _) => true,
        };
        if allowed {
            return Ok(());
        }
        Err(IpamError::NotAuthorized {
            by: host_name(&self.hosts, by),
            command: command.to_string(),
        })
    }

    /// Binds the certificate `fingerprint` to `host` (replacing the one it
    /// had); a certificate is never bound to two hosts.
    fn admit_cert(
        &mut self,
        host: HostId,
        fingerprint: &str,
        issuer: Option<&str>,
    ) -> CommandResult {
        if let Some((other, _)) = self
            .certs
            .iter()
            .find(|(h, f)| **h != host && *f == fingerprint)
        {
            return Err(IpamError::CertInUse {
                fingerprint: fingerprint.to_owned(),
                host: host_name(&self.hosts, *other),
            });
        }
        if let Some(old) = self.certs.insert(host, fingerprint.to_owned())
            && old != fingerprint
        {
            self.previous_certs.insert(host, old);
        }
        let current = self.ca.as_ref().map(|ca| ca.fingerprint.as_str());
        if let Some(rotation) = &mut self.ca_rotation
            && issuer.is_some()
            && issuer == current
        {
            rotation.pending.remove(&host);
        }
        Ok(Response::Done)
    }

    /// Makes `ca` the cluster's CA; the one before stays trusted, and
    /// `cross_pem` (`ca` signed by it) presented, until every member that
    /// holds a certificate now has renewed under `ca`.
    fn rotate_ca(&mut self, ca: &ClusterCa, cross_pem: &str) -> CommandResult {
        if let Some(rotation) = self.ca_rotation.as_ref().filter(|r| !r.pending.is_empty()) {
            return Err(IpamError::CaRotationUnderWay {
                pending: rotation.pending.len(),
            });
        }
        let Some(previous) = self.ca.take() else {
            return Err(IpamError::NoCa);
        };
        self.ca = Some(ca.public());
        self.ca_rotation = Some(CaRotation {
            previous_pem: previous.cert_pem,
            previous_fingerprint: previous.fingerprint,
            cross_pem: cross_pem.to_owned(),
            pending: self.certs.keys().copied().collect(),
        });
        Ok(Response::Done)
    }

    /// Stops trusting the CA `previous` of a finished rotation.
    fn retire_ca(&mut self, previous: &str) -> CommandResult {
        match &self.ca_rotation {
            Some(r) if r.previous_fingerprint == previous && !r.pending.is_empty() => {
                Err(IpamError::CaRotationUnderWay {
                    pending: r.pending.len(),
                })
            }
            Some(r) if r.previous_fingerprint == previous => {
                self.ca_rotation = None;
                Ok(Response::Done)
            }
            // Retired already, or another rotation since: nothing to do.
            _ => Ok(Response::Done),
        }
    }

    /// The rotation of the CA under way (or finished, not yet retired).
    pub fn ca_rotation(&self) -> Option<&CaRotation> {
        self.ca_rotation.as_ref()
    }

    /// The CA certificates a member trusts, as PEM: the cluster's CA, and
    /// during a rotation the one before.
    pub fn trusted_cas(&self) -> Option<String> {
        let ca = self.ca.as_ref()?;
        Some(match &self.ca_rotation {
            Some(r) => format!("{}{}", ca.cert_pem, r.previous_pem),
            None => ca.cert_pem.clone(),
        })
    }

    /// A host's certificate is gone: it no longer holds up a rotation.
    fn drop_cert(&mut self, host: HostId) {
        self.certs.remove(&host);
        self.cert_times.remove(&host);
        self.previous_certs.remove(&host);
        if let Some(rotation) = &mut self.ca_rotation {
            rotation.pending.remove(&host);
        }
    }

    /// A fresh id for an enrolling host; enrollments past their window go
    /// with their certificates.
    fn assign_host_id(&mut self, at: u64) -> CommandResult {
        let known = self
            .certs
            .keys()
            .chain(self.hosts.keys())
            .chain(self.vteps.keys())
            .copied();
        let known: Vec<HostId> = known.collect();
        let (id, expired) = self.enrollments.assign(at, known.into_iter());
        for host in expired {
            self.drop_cert(host);
        }
        match id {
            Some(id) => Ok(Response::Host { id }),
            None => Err(IpamError::TooManyEnrollments {
                pending: self.enrollments.pending(),
            }),
        }
    }

    /// The network and endpoint tables.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// Every pool, in subnet order.
    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.values()
    }

    /// The pool Docker knows as `pool_id`.
    pub fn pool(&self, pool_id: &str) -> Option<&Pool> {
        pool_id
            .parse::<IpNet>()
            .ok()
            .and_then(|s| self.pools.get(&s))
    }

    /// Who holds `address`, if anyone.
    pub fn holder(&self, address: IpAddr) -> Option<&Holder> {
        self.pools
            .values()
            .find(|p| p.subnet.contains(&address))
            .and_then(|p| p.addresses.get(&address))
    }

    /// Records that `container` uses `address`, which `host` must hold
    /// (never a gateway).
    fn name_address(
        &mut self,
        host: HostId,
        address: IpAddr,
        container: &str,
    ) -> Result<(), IpamError> {
        let names = &self.hosts;
        let pool = self
            .pools
            .values_mut()
            .find(|p| p.subnet.contains(&address));
        let Some(holder) = pool.and_then(|p| p.addresses.get_mut(&address)) else {
            return Err(IpamError::NotHeld { address });
        };
        if holder.host != host || holder.kind == HolderKind::Gateway {
            return Err(IpamError::NotHolder {
                address,
                holder: holder.describe(names),
                host: host_name(names, host),
            });
        }
        holder.container = Some(container.to_owned());
        Ok(())
    }

    /// Drops every trace of `host`: a host removed from the cluster.
    fn forget(&mut self, host: HostId) {
        self.hosts.remove(&host);
        self.vteps.remove(&host);
        self.tunnel_keys.remove(&host);
        self.drop_cert(host);
        self.enrollments.settle(host);
        self.tables.forget(host);
        for pool in self.pools.values_mut() {
            pool.forget(host);
        }
        self.pools.retain(|_, pool| !pool.refs.is_empty());
    }

    /// How many addresses are held, all pools together: the measure of the
    /// state's size.
    pub fn held_addresses(&self) -> usize {
        self.pools.values().map(|p| p.addresses.len()).sum()
    }

    /// Every host that holds something, with what it holds: (addresses,
    /// networks), for status.
    pub fn allocations(&self) -> BTreeMap<HostId, usize> {
        let mut counts = BTreeMap::new();
        for holder in self.pools.values().flat_map(|p| p.addresses.values()) {
            *counts.entry(holder.host).or_insert(0) += 1;
        }
        counts
    }

    /// The name `host` is shown by.
    pub fn host_name(&self, host: HostId) -> String {
        host_name(&self.hosts, host)
    }

    /// Who holds the address, as a user reads it.
    /// An "address in use" names the container that holds it, where its
    /// host's Docker told who that is.
    fn name_the_container(&self, error: IpamError) -> IpamError {
        let IpamError::AddressInUse { address, holder } = error else {
            return error;
        };
        let holder = match self.tables.endpoint_at(address) {
            Some(Endpoint {
                container: Some(c),
                host,
                ..
            }) => format!("container {} on {}", c.name, host_name(&self.hosts, *host)),
            _ => holder,
        };
        IpamError::AddressInUse { address, holder }
    }

    pub fn describe(&self, holder: &Holder) -> String {
        holder.describe(&self.hosts)
    }

    fn request_subnet(
        &mut self,
        host: HostId,
        subnet: IpNet,
        range: Option<IpNet>,
    ) -> CommandResult {
        validate(subnet, range)?;
        if let Some(pool) = self.pools.get_mut(&subnet) {
            if pool.range != range {
                return Err(IpamError::RangeMismatch {
                    subnet,
                    existing: describe_range(pool.range),
                    requested: describe_range(range),
                });
            }
            if pool.refs.contains_key(&host) {
                return Err(IpamError::AlreadyHeld { subnet });
            }
            pool.refs.insert(host, 1);
            return Ok(pool_response(pool));
        }
        if let Some(existing) = self.pools.values().find(|p| overlaps(p.subnet, subnet)) {
            return Err(IpamError::Overlap {
                requested: subnet,
                existing: existing.subnet,
                holders: existing.holders(&self.hosts),
            });
        }
        let pool = Pool::new(subnet, range, host);
        let response = pool_response(&pool);
        self.pools.insert(subnet, pool);
        Ok(response)
    }

    fn request_default(
        &mut self,
        host: HostId,
        v6: bool,
        defaults: &[DefaultPool],
    ) -> CommandResult {
        let family: Vec<&DefaultPool> = defaults
            .iter()
            .filter(|d| matches!(d.base, IpNet::V6(_)) == v6)
            .collect();
        let free = family.iter().find_map(|d| {
            d.base
                .subnets(d.size)
                .ok()?
                .find(|s| !self.pools.keys().any(|p| overlaps(*p, *s)))
        });
        let Some(subnet) = free else {
            let pools: Vec<String> = family.iter().map(ToString::to_string).collect();
            return Err(IpamError::DefaultPoolsExhausted {
                family: if v6 { "IPv6" } else { "IPv4" }.to_owned(),
                pools: if pools.is_empty() {
                    "none configured".to_owned()
                } else {
                    pools.join(", ")
                },
            });
        };
        self.request_subnet(host, subnet, None)
    }

    fn release_pool(&mut self, host: HostId, pool_id: &str) -> CommandResult {
        let pool = find_mut(&mut self.pools, pool_id)?;
        let Some(refs) = pool.refs.get_mut(&host) else {
            return Err(IpamError::PoolNotHeld {
                pool_id: pool_id.to_owned(),
                host: host_name(&self.hosts, host),
            });
        };
        *refs -= 1;
        if *refs == 0 {
            pool.refs.remove(&host);
        }
        if pool.refs.is_empty() {
            let subnet = pool.subnet;
            self.pools.remove(&subnet);
        }
        Ok(Response::Done)
    }
}

fn find_mut<'a>(
    pools: &'a mut BTreeMap<IpNet, Pool>,
    pool_id: &str,
) -> Result<&'a mut Pool, IpamError> {
    pool_id
        .parse::<IpNet>()
        .ok()
        .and_then(|s| pools.get_mut(&s))
        .ok_or_else(|| IpamError::UnknownPool {
            pool_id: pool_id.to_owned(),
        })
}

fn validate(subnet: IpNet, range: Option<IpNet>) -> Result<(), IpamError> {
    for net in std::iter::once(subnet).chain(range) {
        if net != net.trunc() {
            return Err(IpamError::NotNetworkAddress { subnet: net });
        }
    }
    if usable(subnet).is_none() {
        return Err(IpamError::SubnetTooSmall { subnet });
    }
    if let Some(range) = range
        && !subnet.contains(&range)
    {
        return Err(IpamError::RangeOutsideSubnet { range, subnet });
    }
    Ok(())
}

fn describe_range(range: Option<IpNet>) -> String {
    range.map_or_else(|| "none".to_owned(), |r| r.to_string())
}

fn pool_response(pool: &Pool) -> Response {
    Response::Pool {
        pool_id: pool.id(),
        subnet: pool.subnet,
    }
}

impl HolderKind {
    /// An endpoint holder named as Docker names it.
    pub fn endpoint(name: impl Into<String>) -> Self {
        Self::Endpoint {
            name: Some(name.into()),
        }
    }

    /// Whether every host of a shared subnet holds this address together
    /// (the gateway, `--aux-address`es) rather than one host for one
    /// container.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Gateway | Self::Aux)
    }
}

mod invariants;
#[cfg(test)]
mod tests;
