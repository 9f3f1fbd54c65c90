//! The commands the replicated IPAM state machine applies, and its answers.
//!
//! Commands carry everything `apply` needs (including the requesting host and
//! its default pools), so applying them is deterministic on every node.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize, de};

use crate::format::FORMAT;
use crate::{ClusterCa, Endpoint, HostId, IpamError, JoinToken, Network, PortBinding};

/// A block of address space from which networks created without `--subnet`
/// get subnets of `size` bits, like Docker's `default-address-pools`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultPool {
    pub base: IpNet,
    pub size: u8,
}

impl fmt::Display for DefaultPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.base, self.size)
    }
}

impl std::str::FromStr for DefaultPool {
    type Err = String;

    /// Parses `BASE/LEN:SIZE`, e.g. `10.128.0.0/9:24`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (base, size) = s.rsplit_once(':').ok_or_else(|| {
            format!("default pool {s:?} is not BASE/LEN:SIZE (e.g. 10.128.0.0/9:24)")
        })?;
        let base: IpNet = base
            .parse()
            .map_err(|e| format!("default pool {s:?}: base {base:?}: {e}"))?;
        let size: u8 = size
            .parse()
            .map_err(|e| format!("default pool {s:?}: size {size:?}: {e}"))?;
        if base != base.trunc() {
            return Err(format!(
                "default pool {s:?}: {base} is not a network address"
            ));
        }
        if size < base.prefix_len() || size > base.max_prefix_len() {
            return Err(format!(
                "default pool {s:?}: size /{size} must lie between /{} and /{}",
                base.prefix_len(),
                base.max_prefix_len()
            ));
        }
        Ok(Self { base, size })
    }
}

impl DefaultPool {
    /// The cluster's own IPv6 pool: a unique local /48 (RFC 4193, `fd` and
    /// a 40-bit global id) taken from the cluster's id, which is random and
    /// the same on every member, handed out as /64s, one per network.
    pub fn cluster_ula(cluster_id: &str) -> Self {
        // FNV-1a of the id: any id gives 40 well-mixed bits.
        let hash = cluster_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let global = u128::from(hash & 0xff_ffff_ffff);
        let base = (0xfd_u128 << 120) | (global << 80);
        Self {
            base: IpNet::V6(ipnet::Ipv6Net::new_assert(
                std::net::Ipv6Addr::from(base),
                48,
            )),
            size: 64,
        }
    }
}

/// What an address is held for: shown in errors ("in use by ...").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HolderKind {
    /// The network's gateway.
    Gateway,
    /// An address asked for by value with nothing said about it: Docker
    /// up to 28 sends `--ip` and `--aux-address` requests alike (no
    /// options); taken as this outside a network's creation.
    Static,
    /// An `--aux-address` (a router, a host on the subnet): asked for by
    /// value while the host's Docker creates the network. Like the gateway,
    /// one reservation for every host that created a network on the
    /// subnet, kept until the last of them releases it.
    Aux,
    /// A container endpoint, by the name Docker gives it (newer Dockers do).
    Endpoint { name: Option<String> },
    /// The host shim of a macvlan or ipvlan network: one address per host
    /// with such a network on the subnet, taken and released by the state
    /// machine with the host's network.
    Shim,
}

/// A change to the address space, proposed by `host`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Docker's RequestPool: an explicit `pool` (with an optional `range`
    /// inside it), or, without one, the first free subnet of `defaults`.
    RequestPool {
        host: HostId,
        pool: Option<IpNet>,
        range: Option<IpNet>,
        v6: bool,
        defaults: Vec<DefaultPool>,
    },
    /// Docker's ReleasePool: drops `host`'s reference; the last one frees it.
    ReleasePool { host: HostId, pool_id: String },
    /// Docker's RequestAddress: `address`, or the first free one of the range.
    RequestAddress {
        host: HostId,
        pool_id: String,
        address: Option<IpAddr>,
        kind: HolderKind,
    },
    /// Docker's CreateNetwork, on the network's host.
    CreateNetwork(Network),
    /// Docker's DeleteNetwork: for an overlay, removes it cluster-wide.
    DeleteNetwork { host: HostId, id: String },
    /// Takes back a CreateNetwork that failed on this host (its data path
    /// could not be built here): the host's record goes, the overlay it
    /// bound to stays for every other host.
    ForgetNetwork { host: HostId, id: String },
    /// Docker's CreateEndpoint.
    CreateEndpoint(Endpoint),
    /// Docker's DeleteEndpoint.
    DeleteEndpoint { host: HostId, id: String },
    /// Docker's Join (with the ports to publish) or Leave (`ports: None`).
    SetJoined {
        host: HostId,
        id: String,
        ports: Option<Vec<PortBinding>>,
    },
    /// Records which container uses `host`'s endpoint `id` (learned from
    /// the host's Docker); only the endpoint's host may say.
    NameEndpoint {
        host: HostId,
        id: String,
        container: crate::Container,
    },
    /// Records which container uses `host`'s `address` in an IPAM-only
    /// network (Docker's own driver with rustnet's IPAM), learned from the
    /// host's Docker; only the address's holder may say.
    NameAddress {
        host: HostId,
        address: IpAddr,
        container: String,
    },
    /// Frees everything a host removed from the cluster held: its
    /// addresses, its pool references, its networks and endpoints.
    ForgetHost { host: HostId },
    /// Records the name a host is shown by in errors and status, and its
    /// underlay address (its VXLAN tunnel endpoint).
    RegisterHost {
        host: HostId,
        name: String,
        #[serde(default)]
        addr: Option<IpAddr>,
    },
    /// Sets the cluster's join token unless it has one (at bootstrap, and
    /// for a cluster from before join tokens).
    InitJoinToken { token: JoinToken },
    /// Replaces the join token (`rustnet cluster rotate-token`).
    RotateJoinToken { token: JoinToken },
    /// Sets the cluster's CA unless it has one (at bootstrap). This release
    /// sends the certificate alone; releases of format 1 sent the key too,
    /// which stays in the state until [`Command::SealCa`].
    InitCa { ca: ClusterCa },
    /// Drops the CA key that a state from before kept (written by the
    /// leader once it holds the key itself).
    SealCa,
    /// Admits a member's certificate (by fingerprint) for peer RPCs; a
    /// host has one at a time. Replacing it is the host's own business
    /// (renewal); anyone else may only give a freshly enrolled id its first.
    AdmitCert {
        host: HostId,
        fingerprint: String,
        /// The fingerprint of the CA that issued it (none from members
        /// from before CA rotation).
        #[serde(default)]
        issuer: Option<String>,
        /// When it became valid (unix seconds): a certificate of the same
        /// host valid from later is newer, and admitted by a replica that
        /// has yet to learn of it.
        #[serde(default)]
        not_before: Option<u64>,
    },
    /// Replaces the cluster's CA by `ca` (`rustnet cluster rotate-ca`);
    /// `cross_pem` is `ca`'s certificate signed by the CA before. Refused
    /// while a rotation is under way.
    RotateCa { ca: ClusterCa, cross_pem: String },
    /// Stops trusting the CA `previous` once every member renewed under
    /// the new one (written by the leader a little after).
    RetireCa { previous: String },
    /// Hands out a fresh host id to a host enrolling at `at` (unix seconds,
    /// the enrolling member's clock): the cluster, not the caller, names it.
    AssignHostId { at: u64 },
    /// The enrolled `host` joined: its certificate no longer expires with
    /// the enrollment window.
    Joined { host: HostId },
    /// Records the Docker name of overlay `key`.
    NameOverlay { key: String, name: String },
    /// Every member reads `format` now: commands of that format may be
    /// written (by the leader, once each member said so; never lowered).
    RaiseFormat { format: u32 },
    /// Docker's ReleaseAddress: only the holding host may release.
    ReleaseAddress {
        host: HostId,
        pool_id: String,
        address: IpAddr,
    },
    /// Publishes `host`'s WireGuard public key (base64) and listen port for
    /// encrypted overlays; only the host itself may set or replace it.
    SetTunnelKey {
        host: HostId,
        key: String,
        port: u16,
    },
}

impl Command {
    /// The command's kind, as its text form starts (`request-address`,
    /// `name` for both namings): a label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RequestPool { .. } => "request-pool",
            Self::ReleasePool { .. } => "release-pool",
            Self::RequestAddress { .. } => "request-address",
            Self::CreateNetwork(_) => "create-network",
            Self::DeleteNetwork { .. } => "delete-network",
            Self::ForgetNetwork { .. } => "forget-network",
            Self::CreateEndpoint(_) => "create-endpoint",
            Self::DeleteEndpoint { .. } => "delete-endpoint",
            Self::SetJoined { ports: Some(_), .. } => "join",
            Self::SetJoined { ports: None, .. } => "leave",
            Self::NameEndpoint { .. } | Self::NameAddress { .. } => "name",
            Self::ForgetHost { .. } => "forget-host",
            Self::RegisterHost { .. } => "register-host",
            Self::InitJoinToken { .. } => "init-join-token",
            Self::RotateJoinToken { .. } => "rotate-join-token",
            Self::InitCa { .. } => "init-ca",
            Self::AdmitCert { .. } => "admit-cert",
            Self::RotateCa { .. } => "rotate-ca",
            Self::RetireCa { .. } => "retire-ca",
            Self::SealCa => "seal-ca",
            Self::AssignHostId { .. } => "assign-host-id",
            Self::Joined { .. } => "joined",
            Self::NameOverlay { .. } => "name-overlay",
            Self::ReleaseAddress { .. } => "release-address",
            Self::RaiseFormat { .. } => "raise-format",
            Self::SetTunnelKey { .. } => "set-tunnel-key",
        }
    }
}

impl Command {
    /// The host whose things the command changes, for commands that change
    /// one host's things only: only that host may send it.
    pub fn host(&self) -> Option<HostId> {
        match self {
            Self::RequestPool { host, .. }
            | Self::ReleasePool { host, .. }
            | Self::RequestAddress { host, .. }
            | Self::DeleteNetwork { host, .. }
            | Self::ForgetNetwork { host, .. }
            | Self::DeleteEndpoint { host, .. }
            | Self::SetJoined { host, .. }
            | Self::NameEndpoint { host, .. }
            | Self::NameAddress { host, .. }
            | Self::RegisterHost { host, .. }
            | Self::ReleaseAddress { host, .. }
            | Self::SetTunnelKey { host, .. }
            | Self::ForgetHost { host } => Some(*host),
            Self::CreateNetwork(network) => Some(network.host),
            Self::CreateEndpoint(endpoint) => Some(endpoint.host),
            Self::AdmitCert { .. }
            | Self::AssignHostId { .. }
            | Self::Joined { .. }
            | Self::InitJoinToken { .. }
            | Self::RotateJoinToken { .. }
            | Self::InitCa { .. }
            | Self::RotateCa { .. }
            | Self::RetireCa { .. }
            | Self::SealCa
            | Self::RaiseFormat { .. }
            | Self::NameOverlay { .. } => None,
        }
    }

    /// The format a member must read for this command to be written: 1
    /// for the commands every release has known, 2 for those added with
    /// format 2 (members of format 1 cannot decode them), 3 for a network
    /// with multicast or IPv6 (members of format 2 would drop the setting
    /// or refuse the network), 4 for encryption (tunnel keys, encrypted
    /// overlays: members of format 3 would carry them in clear), 5 for
    /// macvlan and ipvlan networks (members of format 4 read no such mode).
    pub fn format(&self) -> u32 {
        match self {
            Self::CreateNetwork(network) if network.mode.is_lan() => 5,
            Self::SetTunnelKey { .. } => 4,
            Self::CreateNetwork(network) if network.encrypted => 4,
            Self::CreateNetwork(network)
                if !network.multicast.is_off() || network.subnet6.is_some() =>
            {
                3
            }
            Self::ForgetNetwork { .. }
            | Self::NameEndpoint { .. }
            | Self::NameAddress { .. }
            | Self::SealCa
            | Self::RotateCa { .. }
            | Self::RetireCa { .. }
            | Self::AssignHostId { .. }
            | Self::Joined { .. }
            | Self::RaiseFormat { .. } => 2,
            Self::RequestAddress {
                kind: HolderKind::Aux,
                ..
            } => 2,
            Self::RequestPool { .. }
            | Self::ReleasePool { .. }
            | Self::RequestAddress { .. }
            | Self::CreateNetwork(_)
            | Self::DeleteNetwork { .. }
            | Self::CreateEndpoint(_)
            | Self::DeleteEndpoint { .. }
            | Self::SetJoined { .. }
            | Self::ForgetHost { .. }
            | Self::RegisterHost { .. }
            | Self::InitJoinToken { .. }
            | Self::RotateJoinToken { .. }
            | Self::InitCa { .. }
            | Self::AdmitCert { .. }
            | Self::NameOverlay { .. }
            | Self::ReleaseAddress { .. } => 1,
        }
    }
}

/// A successful answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Pool { pool_id: String, subnet: IpNet },
    Address { address: IpNet },
    Host { id: HostId },
    Done,
}

/// What applying a command yields; replicated to the proposer.
pub type CommandResult = Result<Response, IpamError>;

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RequestPool {
                host, pool, range, ..
            } => {
                let pool = pool.map_or_else(|| "default".to_owned(), |p| p.to_string());
                match range {
                    Some(range) => write!(f, "request-pool {pool} range {range} by host {host}"),
                    None => write!(f, "request-pool {pool} by host {host}"),
                }
            }
            Self::ReleasePool { host, pool_id } => {
                write!(f, "release-pool {pool_id} by host {host}")
            }
            Self::RequestAddress {
                host,
                pool_id,
                address,
                ..
            } => match address {
                Some(a) => write!(f, "request-address {a} in {pool_id} by host {host}"),
                None => write!(f, "request-address in {pool_id} by host {host}"),
            },
            Self::RegisterHost { host, name, .. } => write!(f, "register-host {host} as {name}"),
            Self::NameOverlay { key, name } => write!(f, "name-overlay {key} {name}"),
            Self::ForgetHost { host } => write!(f, "forget-host {host}"),
            Self::InitJoinToken { .. } => write!(f, "init-join-token"),
            Self::RotateJoinToken { .. } => write!(f, "rotate-join-token"),
            Self::InitCa { ca } => write!(f, "init-ca {}", ca.fingerprint),
            Self::AdmitCert {
                host, fingerprint, ..
            } => {
                write!(f, "admit-cert {fingerprint} of host {host}")
            }
            Self::RotateCa { ca, .. } => write!(f, "rotate-ca to {}", ca.fingerprint),
            Self::RetireCa { previous } => write!(f, "retire-ca {previous}"),
            Self::SealCa => write!(f, "seal-ca"),
            Self::RaiseFormat { format } => write!(f, "raise-format to {format}"),
            Self::SetTunnelKey { host, key, port } => {
                write!(f, "set-tunnel-key {key} port {port} of host {host}")
            }
            Self::AssignHostId { at } => write!(f, "assign-host-id at {at}"),
            Self::Joined { host } => write!(f, "joined {host}"),
            Self::CreateNetwork(n) => write!(f, "create-network {} by host {}", n.id, n.host),
            Self::DeleteNetwork { host, id } => write!(f, "delete-network {id} by host {host}"),
            Self::ForgetNetwork { host, id } => write!(f, "forget-network {id} by host {host}"),
            Self::CreateEndpoint(e) => write!(f, "create-endpoint {} by host {}", e.id, e.host),
            Self::DeleteEndpoint { host, id } => write!(f, "delete-endpoint {id} by host {host}"),
            Self::NameEndpoint {
                host,
                id,
                container,
            } => write!(f, "name {id} {} by host {host}", container.name),
            Self::NameAddress {
                host,
                address,
                container,
            } => write!(f, "name {address} {container} by host {host}"),
            Self::SetJoined { host, id, ports } => {
                let what = if ports.is_some() { "join" } else { "leave" };
                write!(f, "{what} {id} by host {host}")
            }
            Self::ReleaseAddress {
                host,
                pool_id,
                address,
            } => {
                write!(f, "release-address {address} in {pool_id} by host {host}")
            }
        }
    }
}

/// A command as it travels through Raft: with an id chosen by the proposer
/// and kept across its retries, so a write retried after a lost reply (a
/// leader change, a forwarding timeout) is applied once. Id 0 means "no
/// id": log entries written before ids existed were bare commands.
///
/// Written as `{"v", "id", "command", "by"}`, `v` the oldest format that
/// reads it ([`Proposal::format`]) and first, so a reader refuses an entry
/// of a later format before it meets a command it does not know (releases
/// of format 1 skip `v`, as any unknown field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub id: u64,
    pub command: Command,
    /// The member that forwarded this write to the leader, as its
    /// certificate names it (set by the leader, never by the sender);
    /// `None` when the leader's own code proposed it.
    pub by: Option<HostId>,
}

impl Serialize for Proposal {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("v", &self.format())?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("command", &self.command)?;
        if let Some(by) = self.by {
            map.serialize_entry("by", &by)?;
        }
        map.end()
    }
}

impl Proposal {
    /// The oldest format that reads this entry: its command's, and at
    /// least 2 (format 1 wrote no `v`).
    pub fn format(&self) -> u32 {
        self.command.format().clamp(2, FORMAT)
    }

    /// A write proposed by this member's own code.
    pub fn new(id: u64, command: Command) -> Self {
        Self {
            id,
            command,
            by: None,
        }
    }
}

/// What a log entry may hold: a proposal, or a bare command from before
/// proposals had ids. The first key tells them apart (a proposal's is one
/// of its fields, `id` as written; a bare command's, its name), and it is
/// decoded as it is read: an untagged enum, which this once was, copies
/// every value whole into serde's buffer first and decodes that (in a
/// profile at 64 clients, two thirds of the time spent decoding
/// proposals: each follower decodes every entry, the leader every
/// forwarded write).
impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ProposalVisitor)
    }
}

struct ProposalVisitor;

impl<'de> de::Visitor<'de> for ProposalVisitor {
    type Value = Proposal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a proposal or a command")
    }

    /// A bare command without fields (`"SealCa"`).
    fn visit_str<E: de::Error>(self, name: &str) -> Result<Proposal, E> {
        Command::deserialize(de::IntoDeserializer::<E>::into_deserializer(name))
            .map(|command| Proposal::new(0, command))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Proposal, A::Error> {
        let Some(first) = map.next_key::<Key>()? else {
            return Err(de::Error::invalid_length(0, &self));
        };
        if let Key::Other(variant) = first {
            // `{"ReleasePool": {...}}`: the key already read names the
            // command; it is handed back to the command's decoder.
            let rest = Prepend {
                key: Some(variant),
                map,
            };
            return Command::deserialize(de::value::MapAccessDeserializer::new(rest))
                .map(|command| Proposal::new(0, command));
        }
        let (mut id, mut command, mut by) = (None, None, None);
        let mut key = Some(first);
        while let Some(field) = key {
            match field {
                Key::Id if id.is_some() => return Err(de::Error::duplicate_field("id")),
                Key::Command if command.is_some() => {
                    return Err(de::Error::duplicate_field("command"));
                }
                Key::Format => {
                    let found: u32 = map.next_value()?;
                    crate::format::check("a log entry", found).map_err(de::Error::custom)?;
                }
                Key::Id => id = Some(map.next_value()?),
                Key::Command => command = Some(map.next_value()?),
                Key::By => by = map.next_value()?,
                // As a derived decoder does: fields it does not know of
                // (from a later version) are skipped.
                Key::Other(_) => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
            key = map.next_key()?;
        }
        Ok(Proposal {
            id: id.ok_or_else(|| de::Error::missing_field("id"))?,
            command: command.ok_or_else(|| de::Error::missing_field("command"))?,
            by,
        })
    }
}

/// A key of a proposal's map; any other is a command's name (or a field
/// to skip).
enum Key {
    Format,
    Id,
    Command,
    By,
    Other(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl de::Visitor<'_> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field or a command name")
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "v" => Key::Format,
                    "id" => Key::Id,
                    "command" => Key::Command,
                    "by" => Key::By,
                    other => Key::Other(other.to_owned()),
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// A map with its first key, already read, put back in front.
struct Prepend<A> {
    key: Option<String>,
    map: A,
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Prepend<A> {
    type Error = A::Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        match self.key.take() {
            Some(key) => seed
                .deserialize(de::IntoDeserializer::<A::Error>::into_deserializer(key))
                .map(Some),
            None => self.map.next_key_seed(seed),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (proposal {:016x})", self.command, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commands_kind_is_how_its_text_starts() {
        let address: IpAddr = "10.0.0.5".parse().unwrap();
        let commands = [
            Command::ReleasePool {
                host: 1,
                pool_id: "p".into(),
            },
            Command::RequestAddress {
                host: 1,
                pool_id: "p".into(),
                address: None,
                kind: HolderKind::Static,
            },
            Command::DeleteNetwork {
                host: 1,
                id: "n".into(),
            },
            Command::DeleteEndpoint {
                host: 1,
                id: "e".into(),
            },
            Command::SetJoined {
                host: 1,
                id: "e".into(),
                ports: Some(Vec::new()),
            },
            Command::SetJoined {
                host: 1,
                id: "e".into(),
                ports: None,
            },
            Command::NameAddress {
                host: 1,
                address,
                container: "c".into(),
            },
            Command::ForgetHost { host: 2 },
            Command::NameOverlay {
                key: "k".into(),
                name: "ov".into(),
            },
            Command::ReleaseAddress {
                host: 1,
                pool_id: "p".into(),
                address,
            },
        ];
        for command in commands {
            let text = command.to_string();
            assert!(
                text.starts_with(&format!("{} ", command.kind())),
                "{text} / {}",
                command.kind()
            );
        }
    }

    #[test]
    fn proposals_decode_in_every_form_they_were_written() {
        let decode = |json: &str| serde_json::from_str::<Proposal>(json);
        let release = Command::ReleasePool {
            host: 1,
            pool_id: "p".into(),
        };
        let written = |p: &Proposal| serde_json::to_string(p).unwrap();
        // As written now, with and without the forwarding member.
        let mut proposal = Proposal::new(7, release.clone());
        assert_eq!(decode(&written(&proposal)).unwrap(), proposal);
        proposal.by = Some(3);
        assert_eq!(decode(&written(&proposal)).unwrap(), proposal);
        // Bare commands from before ids, with fields and without.
        let bare = serde_json::to_string(&release).unwrap();
        assert_eq!(decode(&bare).unwrap(), Proposal::new(0, release.clone()));
        let seal = serde_json::to_string(&Command::SealCa).unwrap();
        assert_eq!(decode(&seal).unwrap(), Proposal::new(0, Command::SealCa));
        // The fields in any order after a first one of its own; one it
        // does not know of (from a later version) is skipped.
        let json =
            r#"{"command":{"ReleasePool":{"host":1,"pool_id":"p"}},"later":[1,{"x":2}],"id":7}"#;
        assert_eq!(decode(json).unwrap(), Proposal::new(7, release));
    }

    #[test]
    fn a_malformed_proposal_is_an_error_that_says_what() {
        let decode = |json: &str| {
            serde_json::from_str::<Proposal>(json)
                .unwrap_err()
                .to_string()
        };
        let release = r#"{"ReleasePool":{"host":1,"pool_id":"p"}}"#;
        assert!(decode(r#"{"id":1}"#).contains("missing field `command`"));
        assert!(decode(&format!(r#"{{"command":{release}}}"#)).contains("missing field `id`"));
        assert!(
            decode(&format!(r#"{{"id":1,"id":2,"command":{release}}}"#))
                .contains("duplicate field `id`")
        );
        assert!(decode(r#"{"NoSuchCommand":{}}"#).contains("unknown variant `NoSuchCommand`"));
        assert!(decode(r#"{"ReleasePool":{"host":1}}"#).contains("missing field `pool_id`"));
        // A bare command is one key, nothing after it.
        let two = decode(r#"{"ReleasePool":{"host":1,"pool_id":"p"},"x":1}"#);
        assert!(two.contains("line 1 column 40"), "{two}");
        // Every cut short: an error, never a panic or a proposal.
        let whole = serde_json::to_string(&Proposal {
            by: Some(2),
            ..Proposal::new(5, Command::SealCa)
        })
        .unwrap();
        for cut in 0..whole.len() {
            assert!(serde_json::from_str::<Proposal>(&whole[..cut]).is_err());
        }
        assert!(decode("{}").contains("a proposal or a command"));
        assert!(decode("[1]").contains("a proposal or a command"));
    }
}
