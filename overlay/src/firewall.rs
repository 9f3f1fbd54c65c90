//! rustnet's firewall rules, computed from its networks (pure).
//!
//! Docker sets the FORWARD policy to DROP, and with bridge-nf-call-iptables
//! that applies to frames crossing any bridge, so rustnet must accept its own
//! traffic explicitly. Its rules live in its own chains, entered from
//! DOCKER-USER (which Docker keeps first in FORWARD, for third parties) and
//! from the nat table's POSTROUTING, PREROUTING and OUTPUT; the chains are
//! rewritten atomically with `iptables-restore --noflush` each time.
//!
//! Per network (bridge B, subnet S), in order:
//! - accept B -> B (containers of one network);
//! - drop between B and every other rustnet bridge and Docker's bridges
//!   (docker0, br-*, docker_gwbridge), both ways;
//! - internal: drop everything else in or out of B;
//! - otherwise: accept published ports to their containers, replies to
//!   connections from B, and B's egress; drop the rest into B;
//! - nat: masquerade S leaving through another interface, DNAT published
//!   ports on the host's addresses (also 127.0.0.1, with route_localnet);
//!   DNS queries from B to each upstream resolver go to rustnet's own
//!   resolver on B's gateway, at a port that names the upstream (so it can
//!   forward what it does not answer to where the query was going), while
//!   rustnet holds that upstream's liveness token (below).
//!
//! Host-wide, the resolver address ([`ResolverAddress`], the `dns` entry
//! that engines from 28 on need in daemon.json): queries to it go to
//! rustnet's resolver while rustnet runs, and straight to the host's own
//! upstream when it does not, so no name outside rustnet ever depends on
//! rustnet running.
//!
//! Liveness tokens: rustnet binds a transparent socket (`IP_TRANSPARENT`)
//! to each address:53 whose queries it takes. Such a socket receives
//! nothing (the address is not local), but `-m socket --transparent` finds
//! it for a query to that address, and only while the process that holds
//! it lives: a rule guarded by it stops matching the moment rustnet dies,
//! without anyone removing it.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The filter chain jumped to from DOCKER-USER.
pub const FILTER_CHAIN: &str = "RUSTNET";
/// The nat chain jumped to from POSTROUTING.
pub const POSTROUTING_CHAIN: &str = "RUSTNET-POSTROUTING";
/// The nat chain jumped to from PREROUTING and OUTPUT for local addresses.
pub const DNAT_CHAIN: &str = "RUSTNET-DNAT";

/// The filter chain jumped to from INPUT: with `route_localnet` on for
/// 127.0.0.1 publishing, packets to 127.0.0.0/8 from outside the host are
/// dropped (CVE-2020-8558), as kube-proxy and newer Dockers do.
pub const INPUT_CHAIN: &str = "RUSTNET-INPUT";

/// The nat chain jumped to from PREROUTING for DNS queries.
pub const DNS_CHAIN: &str = "RUSTNET-DNS";

/// The nat chain jumped to from PREROUTING for the resolver address.
pub const RESOLVER_CHAIN: &str = "RUSTNET-RESOLVER";
/// The nat chain jumped to from OUTPUT for the resolver address.
pub const RESOLVER_OUT_CHAIN: &str = "RUSTNET-RESOLVER-OUT";

/// The filter chain jumped to from INPUT for the VXLAN port.
pub const VXLAN_CHAIN: &str = "RUSTNET-VXLAN";
/// Encrypted overlays' VXLAN that arrives outside the tunnel (filter
/// table, from INPUT).
pub const SEAL_IN_CHAIN: &str = "RUSTNET-SEAL-IN";
/// Encrypted overlays' VXLAN about to leave outside the tunnel (filter
/// table, from OUTPUT).
pub const SEAL_OUT_CHAIN: &str = "RUSTNET-SEAL-OUT";

/// Who may send VXLAN to this host: the cluster members' underlay
/// addresses, on rustnet's VXLAN port. With it goes the gateway guard:
/// every host's bridge of an overlay holds the same gateway MAC, so a frame
/// the host itself sends into an overlay (its ARP, its packets to another
/// host's container) must never leave through a VXLAN device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanIngress {
    pub port: u16,
    /// Every member's underlay address, of either family.
    pub members: Vec<IpAddr>,
    /// The VXLAN devices, as an ebtables interface pattern (`rnx+`).
    pub devices: String,
    /// The first three bytes of every gateway MAC.
    pub gateway_prefix: [u8; 3],
    /// Where encrypted overlays' VXLAN may travel, while this host has one.
    pub seal: Option<Seal>,
}

/// Encrypted overlays' VXLAN (UDP to `port`) travels through the tunnel
/// device only: what arrives or would leave through any other interface
/// is dropped. The rules stay while rustnet is down, so that a tunnel
/// device gone with the process never lets the VXLAN out in clear by the
/// default route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub port: u16,
    /// The tunnel device.
    pub device: String,
}

impl Seal {
    /// The hooks: from INPUT and OUTPUT, UDP to the sealed port only.
    pub fn hooks(&self) -> [(&'static str, &'static str, String); 2] {
        let hook = |chain, target| {
            (
                "filter",
                chain,
                format!("-p udp --dport {} -j {target}", self.port),
            )
        };
        [hook("INPUT", SEAL_IN_CHAIN), hook("OUTPUT", SEAL_OUT_CHAIN)]
    }

    /// Input for `iptables-restore --noflush` of each chain, as `hooks`.
    pub fn restore_scripts(&self) -> [String; 2] {
        let script = |chain: &str, side: &str| {
            format!(
                "*filter\n:{chain} - [0:0]\n-A {chain} {side} {} -j RETURN\n-A {chain} -j DROP\nCOMMIT\n",
                self.device
            )
        };
        [script(SEAL_IN_CHAIN, "-i"), script(SEAL_OUT_CHAIN, "-o")]
    }

    /// Whether `saved` (`iptables-save`) holds both chains, hooked.
    pub fn intact_in(&self, saved: &str) -> bool {
        [("INPUT", SEAL_IN_CHAIN), ("OUTPUT", SEAL_OUT_CHAIN)]
            .iter()
            .all(|(from, chain)| rules_in(saved.lines(), chain) == 2 && hooked(saved, from, chain))
    }
}

impl VxlanIngress {
    /// The ebtables rule (filter table, OUTPUT chain) that drops what the
    /// host sends from a gateway MAC through a VXLAN device.
    pub fn gateway_guard(&self) -> Vec<String> {
        let [a, b, c] = self.gateway_prefix;
        [
            "-o",
            &self.devices,
            "-s",
            &format!("{a:02x}:{b:02x}:{c:02x}:00:00:00/ff:ff:ff:00:00:00"),
            "-j",
            "DROP",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// The hook from INPUT: only UDP to the VXLAN port enters the chain.
    pub fn hook(&self) -> (&'static str, &'static str, String) {
        (
            "filter",
            "INPUT",
            format!("-p udp --dport {} -j {VXLAN_CHAIN}", self.port),
        )
    }

    /// Input for `iptables-restore --noflush`: accept the IPv4 members,
    /// drop the rest.
    pub fn restore_script(&self) -> String {
        self.script(false)
    }

    /// Input for `ip6tables-restore --noflush`: accept the IPv6 members,
    /// drop the rest.
    pub fn restore_script6(&self) -> String {
        self.script(true)
    }

    /// Whether VXLAN may come over IPv6: a member advertises an IPv6
    /// address (the IPv4 chain stays, dropping all there is to drop).
    pub fn wants_ipv6(&self) -> bool {
        self.members.iter().any(IpAddr::is_ipv6)
    }

    fn script(&self, v6: bool) -> String {
        let mut script = format!("*filter\n:{VXLAN_CHAIN} - [0:0]\n");
        for member in self.members.iter().filter(|m| m.is_ipv6() == v6) {
            let len = if v6 { 128 } else { 32 };
            let _ = writeln!(script, "-A {VXLAN_CHAIN} -s {member}/{len} -j RETURN");
        }
        let _ = writeln!(script, "-A {VXLAN_CHAIN} -j DROP\nCOMMIT");
        script
    }

    /// Whether `saved` (`iptables-save`, or `ip6tables-save` for `v6`)
    /// holds the chain with its rules, hooked from INPUT.
    pub fn intact_in(&self, saved: &str, v6: bool) -> bool {
        let members = self.members.iter().filter(|m| m.is_ipv6() == v6).count();
        rules_in(saved.lines(), VXLAN_CHAIN) == members + 1 && hooked(saved, "INPUT", VXLAN_CHAIN)
    }
}

/// The gateway guards in `ebtables -L OUTPUT`'s listing: rules that drop a
/// 24-bit MAC prefix leaving through an interface pattern, the only kind
/// rustnet writes there.
pub fn gateway_guards(listing: &str) -> Vec<Vec<String>> {
    listing
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|t| {
            matches!(t.as_slice(), ["-s", mac, "-o", dev, "-j", "DROP"]
                if mac.ends_with("/ff:ff:ff:00:00:00") && dev.ends_with('+'))
        })
        .map(|t| t.into_iter().map(str::to_owned).collect())
        .collect()
}

/// Docker's own bridges, isolated from rustnet's like Docker isolates its
/// networks from each other.
const DOCKER_BRIDGES: &[&str] = &["docker0", "br-+", "docker_gwbridge"];

/// A published port: host side to container side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// `tcp`, `udp` or `sctp`.
    pub proto: String,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

/// DNS queries from a network's containers to `upstream` (port 53, UDP
/// and TCP) go to rustnet's resolver at `to` instead; when `guarded`, only
/// while rustnet holds `upstream`'s liveness token (otherwise they go on to
/// `upstream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsRedirect {
    pub upstream: Ipv4Addr,
    pub to: std::net::SocketAddrV4,
    pub guarded: bool,
}

/// The match that holds while rustnet holds the liveness token of the
/// packet's destination address and port.
const WHILE_RUSTNET_RUNS: &str = "-m socket --transparent";

/// The resolver address: a link-local address no host owns, which
/// daemon.json's `dns` names. From any interface, queries to it go to
/// rustnet's resolver (on this host, `port`) while rustnet holds its
/// liveness token, else to `upstream`, the host's first non-loopback
/// resolver; the host's own queries to it (host-network containers) go to
/// `local_upstream`, the first resolver of the host's resolv.conf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolverAddress {
    pub addr: Ipv4Addr,
    pub port: Option<u16>,
    pub upstream: Option<Ipv4Addr>,
    pub local_upstream: Option<Ipv4Addr>,
    /// The IPv6 resolver address, for containers without IPv4 (IPv6-only
    /// networks); `None` while no network of the host has IPv6.
    pub v6: Option<Resolver6>,
}

/// The IPv6 resolver address: a unique local address no host owns, the
/// second entry of daemon.json's `dns`, which an IPv6-only container's
/// queries go to (the first, IPv4, is unreachable from it). Its queries
/// go to rustnet's resolver (on this host, `port`) while rustnet holds its
/// liveness token; there is no fallback while rustnet is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolver6 {
    pub addr: Ipv6Addr,
    pub port: Option<u16>,
}

impl Resolver6 {
    /// The hook from the nat table's PREROUTING (ip6tables).
    pub fn hook(&self) -> (&'static str, &'static str, String) {
        let addr = self.addr;
        (
            "nat",
            "PREROUTING",
            format!("-d {addr}/128 -j {RESOLVER_CHAIN}"),
        )
    }

    /// The chain's rules, as `-A CHAIN ...` lines.
    pub fn rules(&self) -> Vec<String> {
        let Some(port) = self.port else {
            return Vec::new();
        };
        let addr = self.addr;
        ["udp", "tcp"]
            .map(|proto| {
                format!(
                    "-A {RESOLVER_CHAIN} -d {addr}/128 -p {proto} -m {proto} --dport 53 \
                     {WHILE_RUSTNET_RUNS} -j REDIRECT --to-ports {port}"
                )
            })
            .to_vec()
    }

    /// Input for `ip6tables-restore --noflush`: the chain, anew.
    pub fn restore_script(&self) -> String {
        let mut script = format!("*nat\n:{RESOLVER_CHAIN} - [0:0]\n");
        for rule in self.rules() {
            let _ = writeln!(script, "{rule}");
        }
        script.push_str("COMMIT\n");
        script
    }

    /// Whether `saved` (`ip6tables-save`) holds the chain's rules and hook.
    pub fn intact_in(&self, saved: &str) -> bool {
        let (_, chain, hook) = self.hook();
        rules_in(saved.lines(), RESOLVER_CHAIN) == self.rules().len()
            && saved.lines().any(|l| l == format!("-A {chain} {hook}"))
    }
}

impl ResolverAddress {
    /// The hooks from the nat table's PREROUTING and OUTPUT.
    pub fn hooks(&self) -> [(&'static str, &'static str, String); 2] {
        let addr = self.addr;
        [
            (
                "nat",
                "PREROUTING",
                format!("-d {addr}/32 -j {RESOLVER_CHAIN}"),
            ),
            (
                "nat",
                "OUTPUT",
                format!("-d {addr}/32 -j {RESOLVER_OUT_CHAIN}"),
            ),
        ]
    }

    /// The rules of both chains, as `-A CHAIN ...` lines.
    pub fn rules(&self) -> Vec<String> {
        let addr = self.addr;
        let mut rules = Vec::new();
        for proto in ["udp", "tcp"] {
            let query = format!("-d {addr}/32 -p {proto} -m {proto} --dport 53");
            if let Some(port) = self.port {
                rules.push(format!(
                    "-A {RESOLVER_CHAIN} {query} {WHILE_RUSTNET_RUNS} -j REDIRECT --to-ports {port}"
                ));
            }
            if let Some(upstream) = self.upstream {
                rules.push(format!(
                    "-A {RESOLVER_CHAIN} {query} -j DNAT --to-destination {upstream}:53"
                ));
            }
            if let Some(local) = self.local_upstream {
                rules.push(format!(
                    "-A {RESOLVER_OUT_CHAIN} {query} -j DNAT --to-destination {local}:53"
                ));
            }
        }
        rules
    }

    /// Input for `iptables-restore --noflush`: both chains, anew.
    pub fn restore_script(&self) -> String {
        let mut script =
            format!("*nat\n:{RESOLVER_CHAIN} - [0:0]\n:{RESOLVER_OUT_CHAIN} - [0:0]\n");
        for rule in self.rules() {
            let _ = writeln!(script, "{rule}");
        }
        script.push_str("COMMIT\n");
        script
    }
}

/// What the firewall needs to know of one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub bridge: String,
    /// `None` for an IPv6-only network.
    pub subnet: Option<Ipv4Net>,
    pub internal: bool,
    pub published: Vec<Published>,
    pub dns: Vec<DnsRedirect>,
    /// The network's containers that send their DNS queries from
    /// [`LEGACY_BRIDGE`] (a release from before one-interface overlays
    /// started them with a second interface there), by their address on
    /// it: their queries to the `dns` upstreams go to the resolver too.
    pub legacy_sources: Vec<Ipv4Addr>,
    /// The network's IPv6 subnet and published ports, when it has one
    /// (rules in ip6tables: [`crate::firewall6`]).
    pub ipv6: Option<Ipv6Side>,
    /// A macvlan or ipvlan network, `bridge` its host shim: only its DNS
    /// redirections; its containers' traffic never crosses this host's
    /// forwarding, so nothing of it is filtered, isolated or NATed here.
    pub lan: bool,
}

/// A network's IPv6 side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Side {
    pub subnet: Ipv6Net,
    pub published: Vec<Published6>,
}

/// A published port of a container's IPv6 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published6 {
    /// `tcp`, `udp` or `sctp`.
    pub proto: String,
    /// `None`: every IPv6 address of the host.
    pub host_ip: Option<Ipv6Addr>,
    pub host_port: u16,
    pub container_ip: Ipv6Addr,
    pub container_port: u16,
}

/// The bridge of the second interface that overlay containers of releases
/// before one-interface overlays have (their default route).
pub const LEGACY_BRIDGE: &str = "docker_gwbridge";

/// The hooks into the built-in chains: (table, chain, rule).
pub fn hooks() -> Vec<(&'static str, &'static str, String)> {
    vec![
        ("filter", "DOCKER-USER", format!("-j {FILTER_CHAIN}")),
        ("filter", "INPUT", format!("-j {INPUT_CHAIN}")),
        ("nat", "POSTROUTING", format!("-j {POSTROUTING_CHAIN}")),
        (
            "nat",
            "PREROUTING",
            format!("-m addrtype --dst-type LOCAL -j {DNAT_CHAIN}"),
        ),
        (
            "nat",
            "OUTPUT",
            format!("-m addrtype --dst-type LOCAL -j {DNAT_CHAIN}"),
        ),
        ("nat", "PREROUTING", format!("-j {DNS_CHAIN}")),
    ]
}

/// The filter rules of `networks`, in order, as `-A RUSTNET ...` lines.
pub fn filter_rules(networks: &[Network]) -> Vec<String> {
    filter_rules_among(networks, &[])
}

/// The filter rules of `networks`, isolated from the `inherited` bridges
/// too (rustnet's, from a lost or replaced state directory).
pub fn filter_rules_among(networks: &[Network], inherited: &[String]) -> Vec<String> {
    networks
        .iter()
        .filter(|net| !net.lan)
        .flat_map(|net| {
            let accepts = net.published.iter().map(|p| {
                accept_published(
                    &net.bridge,
                    &p.proto,
                    p.container_ip.into(),
                    p.container_port,
                )
            });
            network_rules(net, networks, inherited, accepts)
        })
        .collect()
}

/// The filter rules of one network, in order, as `-A RUSTNET ...` lines:
/// accepted within, isolated from every other rustnet bridge (`networks`
/// and `inherited`) and Docker's, and then closed (`--internal`) or open
/// to its egress, replies and the `published` rules (its ports).
pub(crate) fn network_rules(
    net: &Network,
    networks: &[Network],
    inherited: &[String],
    published: impl Iterator<Item = String>,
) -> Vec<String> {
    let b = &net.bridge;
    let mut rules = vec![format!("-i {b} -o {b} -j ACCEPT")];
    let others = networks
        .iter()
        .filter(|n| !n.lan)
        .map(|n| n.bridge.as_str())
        .chain(inherited.iter().map(String::as_str))
        .filter(|o| o != b);
    for other in others.chain(DOCKER_BRIDGES.iter().copied()) {
        rules.push(format!("-i {b} -o {other} -j DROP"));
        rules.push(format!("-i {other} -o {b} -j DROP"));
    }
    if net.internal {
        rules.push(format!("-i {b} -j DROP"));
        rules.push(format!("-o {b} -j DROP"));
    } else {
        rules.extend(published);
        rules.push(format!(
            "-o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        ));
        rules.push(format!("-i {b} -j ACCEPT"));
        rules.push(format!("-o {b} -j DROP"));
    }
    rules
        .into_iter()
        .map(|r| format!("-A {FILTER_CHAIN} {r}"))
        .collect()
}

/// The nat rules of `networks`, as `-A CHAIN ...` lines.
pub fn nat_rules(networks: &[Network]) -> Vec<String> {
    let mut rules = Vec::new();
    for net in networks {
        for redirect in &net.dns {
            let guard = if redirect.guarded {
                format!(" {WHILE_RUSTNET_RUNS}")
            } else {
                String::new()
            };
            for proto in ["udp", "tcp"] {
                rules.push(format!(
                    "-A {DNS_CHAIN} -d {}/32 -i {} -p {proto} -m {proto} --dport 53{guard} -j DNAT --to-destination {}",
                    redirect.upstream, net.bridge, redirect.to
                ));
                // To the port on docker_gwbridge's own address (REDIRECT):
                // the resolver's reply leaves from that address, which
                // is what the connection tracking expects back.
                for source in &net.legacy_sources {
                    rules.push(format!(
                        "-A {DNS_CHAIN} -s {source}/32 -d {}/32 -i {LEGACY_BRIDGE} -p {proto} -m {proto} --dport 53{guard} -j REDIRECT --to-ports {}",
                        redirect.upstream,
                        redirect.to.port()
                    ));
                }
            }
        }
    }
    for net in networks.iter().filter(|n| !n.internal && !n.lan) {
        let b = &net.bridge;
        if let Some(subnet) = net.subnet {
            rules.push(format!(
                "-A {POSTROUTING_CHAIN} -s {subnet} ! -o {b} -j MASQUERADE"
            ));
        }
        if net.published.is_empty() {
            continue;
        }
        // Connections to 127.0.0.1 leave with a loopback source: rewrite it.
        rules.push(format!(
            "-A {POSTROUTING_CHAIN} -o {b} -m addrtype --src-type LOCAL -j MASQUERADE"
        ));
        for p in &net.published {
            let to = SocketAddr::new(p.container_ip.into(), p.container_port);
            let host_ip = p.host_ip.map(IpAddr::V4);
            rules.push(dnat_published(b, &p.proto, host_ip, p.host_port, to));
        }
    }
    rules
}

/// The filter rule that lets a published port of `bridge` into its
/// container at `container`.
pub(crate) fn accept_published(bridge: &str, proto: &str, container: IpAddr, port: u16) -> String {
    format!(
        "-d {} -o {bridge} -p {proto} -m {proto} --dport {port} -j ACCEPT",
        IpNet::from(container)
    )
}

/// The nat rule that sends `host_port` on `host_ip` (every local address
/// when `None`) from outside `bridge` to the container at `to`.
pub(crate) fn dnat_published(
    bridge: &str,
    proto: &str,
    host_ip: Option<IpAddr>,
    host_port: u16,
    to: SocketAddr,
) -> String {
    let dest = host_ip
        .map(|ip| format!("-d {} ", IpNet::from(ip)))
        .unwrap_or_default();
    format!(
        "-A {DNAT_CHAIN} {dest}! -i {bridge} -p {proto} -m {proto} --dport {host_port} -j DNAT --to-destination {to}"
    )
}

/// The INPUT rule against CVE-2020-8558: nothing from outside reaches
/// the host's loopback addresses, DNATed published ports excepted.
pub fn localnet_rule() -> String {
    format!(
        "-A {INPUT_CHAIN} ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
    )
}

/// Input for `iptables-restore --noflush`: declaring rustnet's chains
/// flushes them, so this replaces all their rules in one transaction and
/// touches no other chain.
pub fn restore_script(networks: &[Network]) -> String {
    restore_script_with(networks, &[], &[])
}

/// Like [`restore_script`], with the `inherited` bridges isolated from
/// `networks` and their `carried` rules (see [`carried_rules`]) kept.
pub fn restore_script_with(
    networks: &[Network],
    inherited: &[String],
    carried: &[String],
) -> String {
    let in_chain = |chain: &str| {
        let prefix = format!("-A {chain} ");
        carried.iter().filter(move |l| l.starts_with(&prefix))
    };
    let mut script = String::new();
    let _ = writeln!(
        script,
        "*filter\n:{FILTER_CHAIN} - [0:0]\n:{INPUT_CHAIN} - [0:0]"
    );
    let filter = filter_rules_among(networks, inherited);
    for rule in filter.iter().chain(in_chain(FILTER_CHAIN)) {
        let _ = writeln!(script, "{rule}");
    }
    let _ = writeln!(script, "{}", localnet_rule());
    let _ = writeln!(
        script,
        "COMMIT\n*nat\n:{POSTROUTING_CHAIN} - [0:0]\n:{DNAT_CHAIN} - [0:0]\n:{DNS_CHAIN} - [0:0]"
    );
    let carried_nat = [POSTROUTING_CHAIN, DNAT_CHAIN, DNS_CHAIN]
        .into_iter()
        .flat_map(in_chain);
    let nat = nat_rules(networks);
    for rule in nat.iter().chain(carried_nat) {
        let _ = writeln!(script, "{rule}");
    }
    script.push_str("COMMIT\n");
    script
}

/// Whether a rule names one of `bridges` as an interface.
fn mentions(rule: &str, bridges: &[String]) -> bool {
    let words: Vec<&str> = rule.split_whitespace().collect();
    words
        .windows(2)
        .any(|w| matches!(w[0], "-i" | "-o") && bridges.iter().any(|b| b == w[1]))
}

/// The rules of the `inherited` bridges in rustnet's chains as
/// `iptables-save` printed them (`saved`): written under an earlier state
/// directory, they are kept while those bridges serve containers; the
/// rules that also name one of `networks` are written anew instead.
pub fn carried_rules(saved: &str, inherited: &[String], networks: &[Network]) -> Vec<String> {
    let ours: Vec<String> = networks.iter().map(|n| n.bridge.clone()).collect();
    let chains =
        [FILTER_CHAIN, POSTROUTING_CHAIN, DNAT_CHAIN, DNS_CHAIN].map(|c| format!("-A {c} "));
    saved
        .lines()
        .filter(|l| chains.iter().any(|c| l.starts_with(c.as_str())))
        .filter(|l| mentions(l, inherited) && !mentions(l, &ours))
        .map(str::to_owned)
        .collect()
}

/// How many of `lines` append to `chain` (`-A CHAIN ...`).
pub(crate) fn rules_in<'a>(lines: impl IntoIterator<Item = &'a str>, chain: &str) -> usize {
    let prefix = format!("-A {chain} ");
    lines.into_iter().filter(|l| l.starts_with(&prefix)).count()
}

/// Whether `saved` (`iptables-save`) holds a jump from `chain` to
/// `target`.
pub(crate) fn hooked(saved: &str, chain: &str, target: &str) -> bool {
    let (prefix, suffix) = (format!("-A {chain} "), format!(" -j {target}"));
    saved
        .lines()
        .any(|l| l.starts_with(&prefix) && l.ends_with(&suffix))
}

/// Whether `saved` (`iptables-save` of the filter and nat tables) still
/// holds everything of `networks` and `ingress`: each hook, and as many
/// rules in each of rustnet's chains as it should have. Something else
/// flushing them (`iptables -F`, a firewall service reloading) shows here.
pub fn intact(saved: &str, networks: &[Network], ingress: Option<&VxlanIngress>) -> bool {
    intact_among(saved, networks, &[], ingress, None)
}

/// Like [`intact`], beside the `inherited` bridges: their carried rules
/// are not counted (they cannot be written again once lost).
pub fn intact_among(
    saved: &str,
    networks: &[Network],
    inherited: &[String],
    ingress: Option<&VxlanIngress>,
    resolver: Option<&ResolverAddress>,
) -> bool {
    let kept: Vec<&str> = saved.lines().filter(|l| !mentions(l, inherited)).collect();
    let kept_in = |chain: &str| rules_in(kept.iter().copied(), chain);
    let mut ok = true;
    if !networks.is_empty() {
        let nat = nat_rules(networks);
        let nat_in = |chain: &str| rules_in(nat.iter().map(String::as_str), chain);
        let filter = filter_rules_among(networks, inherited);
        ok &= kept_in(FILTER_CHAIN) == filter.iter().filter(|r| !mentions(r, inherited)).count()
            && kept_in(INPUT_CHAIN) == 1
            && [POSTROUTING_CHAIN, DNAT_CHAIN, DNS_CHAIN]
                .iter()
                .all(|c| kept_in(c) == nat_in(c))
            && hooked(saved, "FORWARD", "DOCKER-USER")
            && hooks().iter().all(|(_, chain, rule)| {
                rule.rsplit_once("-j ")
                    .is_some_and(|(_, target)| hooked(saved, chain, target))
            });
    }
    if let Some(ingress) = ingress {
        ok &= ingress.intact_in(saved, false);
        if let Some(seal) = &ingress.seal {
            ok &= seal.intact_in(saved);
        }
    }
    if let Some(resolver) = resolver {
        let rules = resolver.rules();
        ok &= [RESOLVER_CHAIN, RESOLVER_OUT_CHAIN]
            .iter()
            .all(|c| kept_in(c) == rules_in(rules.iter().map(String::as_str), c))
            && hooked(saved, "PREROUTING", RESOLVER_CHAIN)
            && hooked(saved, "OUTPUT", RESOLVER_OUT_CHAIN);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vxlan_ingress_admits_members_only() {
        let ingress = VxlanIngress {
            port: 4790,
            members: vec![
                "10.99.0.1".parse().unwrap(),
                "10.99.0.2".parse().unwrap(),
                "fd99::3".parse().unwrap(),
            ],
            devices: "rnx+".into(),
            gateway_prefix: [0x02, 0x52, 0x4e],
            seal: None,
        };
        assert_eq!(
            ingress.restore_script(),
            "*filter\n:RUSTNET-VXLAN - [0:0]\n\
             -A RUSTNET-VXLAN -s 10.99.0.1/32 -j RETURN\n\
             -A RUSTNET-VXLAN -s 10.99.0.2/32 -j RETURN\n\
             -A RUSTNET-VXLAN -j DROP\nCOMMIT\n"
        );
        assert!(ingress.wants_ipv6());
        assert_eq!(
            ingress.restore_script6(),
            "*filter\n:RUSTNET-VXLAN - [0:0]\n\
             -A RUSTNET-VXLAN -s fd99::3/128 -j RETURN\n\
             -A RUSTNET-VXLAN -j DROP\nCOMMIT\n"
        );
        assert_eq!(ingress.hook().2, "-p udp --dport 4790 -j RUSTNET-VXLAN");
        assert_eq!(
            ingress.gateway_guard().join(" "),
            "-o rnx+ -s 02:52:4e:00:00:00/ff:ff:ff:00:00:00 -j DROP"
        );
        let listing = "Bridge table: filter\n\nBridge chain: OUTPUT, entries: 2, policy: ACCEPT\n\
                       -s 02:52:4e:00:00:00/ff:ff:ff:00:00:00 -o rnx+ -j DROP\n\
                       -s 02:00:00:00:00:01 -o eth0 -j DROP\n";
        assert_eq!(
            gateway_guards(listing),
            vec![
                [
                    "-s",
                    "02:52:4e:00:00:00/ff:ff:ff:00:00:00",
                    "-o",
                    "rnx+",
                    "-j",
                    "DROP"
                ]
                .map(str::to_owned)
                .to_vec()
            ],
            "only rustnet's guard, never someone else's rule"
        );
    }

    fn network(bridge: &str, subnet: &str, internal: bool) -> Network {
        Network {
            bridge: bridge.into(),
            subnet: subnet.parse().ok(),
            internal,
            published: vec![],
            dns: vec![],
            legacy_sources: vec![],
            lan: false,
            ipv6: None,
        }
    }

    #[test]
    fn a_lan_networks_shim_gets_its_dns_redirections_and_nothing_else() {
        let shim = Network {
            dns: vec![DnsRedirect {
                upstream: "10.99.0.254".parse().unwrap(),
                to: "192.168.50.64:40001".parse().unwrap(),
                guarded: false,
            }],
            lan: true,
            ..network("rnslan1", "192.168.50.0/24", false)
        };
        let bridge = network("rn-a", "10.0.42.0/24", false);
        let networks = [shim, bridge];
        let filter = filter_rules(&networks);
        assert!(filter.iter().all(|r| !r.contains("rnslan1")), "{filter:?}");
        let nat = nat_rules(&networks);
        let of_shim: Vec<&String> = nat.iter().filter(|r| r.contains("rnslan1")).collect();
        assert_eq!(
            of_shim,
            [
                "-A RUSTNET-DNS -d 10.99.0.254/32 -i rnslan1 -p udp -m udp --dport 53 -j DNAT --to-destination 192.168.50.64:40001",
                "-A RUSTNET-DNS -d 10.99.0.254/32 -i rnslan1 -p tcp -m tcp --dport 53 -j DNAT --to-destination 192.168.50.64:40001",
            ]
        );
        assert!(
            nat.iter().all(|r| !r.contains("192.168.50.0/24")),
            "no NAT: {nat:?}"
        );
    }

    #[test]
    fn one_network_accepts_itself_isolates_and_masquerades() {
        let rules = filter_rules(&[network("rn-a", "10.0.42.0/24", false)]);
        assert_eq!(rules[0], "-A RUSTNET -i rn-a -o rn-a -j ACCEPT");
        assert!(rules.contains(&"-A RUSTNET -i rn-a -o docker0 -j DROP".to_owned()));
        assert!(rules.contains(&"-A RUSTNET -i br-+ -o rn-a -j DROP".to_owned()));
        assert_eq!(
            &rules[rules.len() - 3..],
            [
                "-A RUSTNET -o rn-a -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                "-A RUSTNET -i rn-a -j ACCEPT",
                "-A RUSTNET -o rn-a -j DROP",
            ]
        );
        assert_eq!(
            nat_rules(&[network("rn-a", "10.0.42.0/24", false)]),
            ["-A RUSTNET-POSTROUTING -s 10.0.42.0/24 ! -o rn-a -j MASQUERADE"]
        );
    }

    #[test]
    fn two_networks_drop_each_other_before_any_accept() {
        let nets = [
            network("rn-a", "10.0.42.0/24", false),
            network("rn-b", "10.0.43.0/24", false),
        ];
        let rules = filter_rules(&nets);
        let pos = |r: &str| {
            rules
                .iter()
                .position(|x| x == r)
                .unwrap_or_else(|| panic!("{r} missing"))
        };
        assert!(pos("-A RUSTNET -i rn-a -o rn-b -j DROP") < pos("-A RUSTNET -i rn-a -j ACCEPT"));
        assert!(pos("-A RUSTNET -i rn-b -o rn-a -j DROP") < pos("-A RUSTNET -i rn-b -j ACCEPT"));
    }

    #[test]
    fn internal_networks_get_no_egress_nat_or_ports() {
        let mut net = network("rn-i", "10.0.44.0/24", true);
        net.published.push(Published {
            proto: "tcp".into(),
            host_ip: None,
            host_port: 8080,
            container_ip: "10.0.44.2".parse().unwrap(),
            container_port: 80,
        });
        let rules = filter_rules(std::slice::from_ref(&net));
        assert_eq!(
            &rules[rules.len() - 2..],
            ["-A RUSTNET -i rn-i -j DROP", "-A RUSTNET -o rn-i -j DROP"]
        );
        assert!(nat_rules(&[net]).is_empty());
    }

    #[test]
    fn published_ports_are_dnatted_and_accepted() {
        let mut net = network("rn-a", "10.0.42.0/24", false);
        net.published = vec![
            Published {
                proto: "tcp".into(),
                host_ip: None,
                host_port: 8080,
                container_ip: "10.0.42.2".parse().unwrap(),
                container_port: 80,
            },
            Published {
                proto: "udp".into(),
                host_ip: Some("10.99.0.1".parse().unwrap()),
                host_port: 5353,
                container_ip: "10.0.42.2".parse().unwrap(),
                container_port: 53,
            },
        ];
        let nat = nat_rules(std::slice::from_ref(&net));
        assert_eq!(
            nat[1..],
            [
                "-A RUSTNET-POSTROUTING -o rn-a -m addrtype --src-type LOCAL -j MASQUERADE",
                "-A RUSTNET-DNAT ! -i rn-a -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.42.2:80",
                "-A RUSTNET-DNAT -d 10.99.0.1/32 ! -i rn-a -p udp -m udp --dport 5353 -j DNAT --to-destination 10.0.42.2:53",
            ]
        );
        let filter = filter_rules(&[net]);
        assert!(filter.contains(
            &"-A RUSTNET -d 10.0.42.2/32 -o rn-a -p tcp -m tcp --dport 80 -j ACCEPT".to_owned()
        ));
    }

    #[test]
    fn the_restore_script_declares_and_commits_both_tables() {
        let script = restore_script(&[]);
        assert_eq!(
            script,
            "*filter\n:RUSTNET - [0:0]\n:RUSTNET-INPUT - [0:0]\n-A RUSTNET-INPUT ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\nCOMMIT\n*nat\n:RUSTNET-POSTROUTING - [0:0]\n:RUSTNET-DNAT - [0:0]\n:RUSTNET-DNS - [0:0]\nCOMMIT\n"
        );
    }

    #[test]
    fn dns_queries_to_each_upstream_go_to_its_own_port_even_on_internal_networks() {
        let mut net = network("rn-o", "10.0.45.0/24", true);
        net.dns = vec![
            DnsRedirect {
                upstream: "10.99.0.254".parse().unwrap(),
                to: "10.0.45.1:40001".parse().unwrap(),
                guarded: true,
            },
            DnsRedirect {
                upstream: "10.99.0.7".parse().unwrap(),
                to: "10.0.45.1:40003".parse().unwrap(),
                guarded: false,
            },
        ];
        assert_eq!(
            nat_rules(&[net]),
            [
                "-A RUSTNET-DNS -d 10.99.0.254/32 -i rn-o -p udp -m udp --dport 53 -m socket --transparent -j DNAT --to-destination 10.0.45.1:40001",
                "-A RUSTNET-DNS -d 10.99.0.254/32 -i rn-o -p tcp -m tcp --dport 53 -m socket --transparent -j DNAT --to-destination 10.0.45.1:40001",
                "-A RUSTNET-DNS -d 10.99.0.7/32 -i rn-o -p udp -m udp --dport 53 -j DNAT --to-destination 10.0.45.1:40003",
                "-A RUSTNET-DNS -d 10.99.0.7/32 -i rn-o -p tcp -m tcp --dport 53 -j DNAT --to-destination 10.0.45.1:40003",
            ],
            "guarded: only while rustnet holds the upstream's token; an upstream of the host's own, always"
        );
    }

    #[test]
    fn queries_of_containers_with_a_legacy_second_interface_go_to_the_resolver_too() {
        let mut net = network("rn-o", "10.0.45.0/24", false);
        net.dns = vec![DnsRedirect {
            upstream: "10.99.0.254".parse().unwrap(),
            to: "10.0.45.1:40001".parse().unwrap(),
            guarded: true,
        }];
        net.legacy_sources = vec!["172.18.0.3".parse().unwrap()];
        let rules = nat_rules(&[net]);
        let dns: Vec<&String> = rules.iter().filter(|r| r.contains("RUSTNET-DNS")).collect();
        assert_eq!(
            dns,
            [
                "-A RUSTNET-DNS -d 10.99.0.254/32 -i rn-o -p udp -m udp --dport 53 -m socket --transparent -j DNAT --to-destination 10.0.45.1:40001",
                "-A RUSTNET-DNS -s 172.18.0.3/32 -d 10.99.0.254/32 -i docker_gwbridge -p udp -m udp --dport 53 -m socket --transparent -j REDIRECT --to-ports 40001",
                "-A RUSTNET-DNS -d 10.99.0.254/32 -i rn-o -p tcp -m tcp --dport 53 -m socket --transparent -j DNAT --to-destination 10.0.45.1:40001",
                "-A RUSTNET-DNS -s 172.18.0.3/32 -d 10.99.0.254/32 -i docker_gwbridge -p tcp -m tcp --dport 53 -m socket --transparent -j REDIRECT --to-ports 40001",
            ],
            "only those containers' queries, never another container's on docker_gwbridge"
        );
    }

    #[test]
    fn the_resolver_address_has_a_guarded_redirect_and_a_fallback_each_way() {
        let mut resolver = ResolverAddress {
            addr: Ipv4Addr::new(169, 254, 53, 53),
            port: Some(40002),
            upstream: Some(Ipv4Addr::new(10, 99, 0, 254)),
            local_upstream: Some(Ipv4Addr::new(127, 0, 0, 53)),
            v6: None,
        };
        assert_eq!(
            resolver.restore_script(),
            "*nat\n:RUSTNET-RESOLVER - [0:0]\n:RUSTNET-RESOLVER-OUT - [0:0]\n\
             -A RUSTNET-RESOLVER -d 169.254.53.53/32 -p udp -m udp --dport 53 -m socket --transparent -j REDIRECT --to-ports 40002\n\
             -A RUSTNET-RESOLVER -d 169.254.53.53/32 -p udp -m udp --dport 53 -j DNAT --to-destination 10.99.0.254:53\n\
             -A RUSTNET-RESOLVER-OUT -d 169.254.53.53/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.53:53\n\
             -A RUSTNET-RESOLVER -d 169.254.53.53/32 -p tcp -m tcp --dport 53 -m socket --transparent -j REDIRECT --to-ports 40002\n\
             -A RUSTNET-RESOLVER -d 169.254.53.53/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 10.99.0.254:53\n\
             -A RUSTNET-RESOLVER-OUT -d 169.254.53.53/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 127.0.0.53:53\n\
             COMMIT\n"
        );
        assert_eq!(
            resolver
                .hooks()
                .map(|(_, chain, rule)| format!("{chain} {rule}")),
            [
                "PREROUTING -d 169.254.53.53/32 -j RUSTNET-RESOLVER",
                "OUTPUT -d 169.254.53.53/32 -j RUSTNET-RESOLVER-OUT"
            ]
        );
        // A host that names no resolver: nothing to fall back to.
        resolver.port = None;
        resolver.upstream = None;
        resolver.local_upstream = None;
        assert!(resolver.rules().is_empty());
    }

    #[test]
    fn the_ipv6_resolver_address_goes_to_rustnet_while_it_runs() {
        let mut resolver = Resolver6 {
            addr: "fd53::53".parse().unwrap(),
            port: Some(40004),
        };
        let script = resolver.restore_script();
        assert_eq!(
            script,
            "*nat\n:RUSTNET-RESOLVER - [0:0]\n\
             -A RUSTNET-RESOLVER -d fd53::53/128 -p udp -m udp --dport 53 -m socket --transparent -j REDIRECT --to-ports 40004\n\
             -A RUSTNET-RESOLVER -d fd53::53/128 -p tcp -m tcp --dport 53 -m socket --transparent -j REDIRECT --to-ports 40004\n\
             COMMIT\n"
        );
        let hook = resolver.hook();
        assert_eq!(hook.2, "-d fd53::53/128 -j RUSTNET-RESOLVER");
        let mut saved: Vec<String> = script
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(str::to_owned)
            .collect();
        saved.push(format!("-A {} {}", hook.1, hook.2));
        assert!(resolver.intact_in(&saved.join("\n")));
        assert!(!resolver.intact_in(&saved[1..].join("\n")), "a rule lost");
        assert!(!resolver.intact_in(&saved[..2].join("\n")), "the hook lost");
        resolver.port = None;
        assert!(resolver.rules().is_empty(), "no resolver listening");
    }
}

#[cfg(test)]
mod seal_tests {
    use super::*;

    #[test]
    fn sealed_vxlan_passes_the_tunnel_device_only_both_ways() {
        let seal = Seal {
            port: 4790,
            device: "rn-wg0".into(),
        };
        let [inbound, outbound] = seal.restore_scripts();
        assert_eq!(
            inbound,
            "*filter\n:RUSTNET-SEAL-IN - [0:0]\n-A RUSTNET-SEAL-IN -i rn-wg0 -j RETURN\n\
             -A RUSTNET-SEAL-IN -j DROP\nCOMMIT\n"
        );
        assert_eq!(
            outbound,
            "*filter\n:RUSTNET-SEAL-OUT - [0:0]\n-A RUSTNET-SEAL-OUT -o rn-wg0 -j RETURN\n\
             -A RUSTNET-SEAL-OUT -j DROP\nCOMMIT\n"
        );
        let hooks = seal.hooks();
        assert_eq!(hooks[0].1, "INPUT");
        assert_eq!(hooks[0].2, "-p udp --dport 4790 -j RUSTNET-SEAL-IN");
        assert_eq!(hooks[1].1, "OUTPUT");
        assert_eq!(hooks[1].2, "-p udp --dport 4790 -j RUSTNET-SEAL-OUT");
        let mut saved: Vec<String> = inbound
            .lines()
            .chain(outbound.lines())
            .filter(|l| l.starts_with("-A "))
            .map(str::to_owned)
            .collect();
        saved.extend(
            hooks
                .iter()
                .map(|(_, from, rule)| format!("-A {from} {rule}")),
        );
        assert!(seal.intact_in(&saved.join("\n")));
        assert!(!seal.intact_in(&saved[1..].join("\n")), "a rule lost");
        assert!(
            !seal.intact_in(&saved[..saved.len() - 1].join("\n")),
            "the OUTPUT hook lost"
        );
    }
}

#[cfg(test)]
mod intact_tests {
    use super::*;

    /// What iptables-save would show after rustnet wrote `networks`.
    fn saved(networks: &[Network], ingress: Option<&VxlanIngress>) -> String {
        let mut lines: Vec<String> = restore_script(networks)
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(str::to_owned)
            .collect();
        lines.push("-A FORWARD -j DOCKER-USER".into());
        for (_, chain, rule) in hooks() {
            lines.push(format!("-A {chain} {rule}"));
        }
        if let Some(ingress) = ingress {
            lines.extend(
                ingress
                    .restore_script()
                    .lines()
                    .filter(|l| l.starts_with("-A "))
                    .map(str::to_owned),
            );
            lines.push(format!(
                "-A INPUT -p udp -m udp --dport {} -j {VXLAN_CHAIN}",
                ingress.port
            ));
        }
        lines.join("\n")
    }

    #[test]
    fn flushed_chains_and_lost_hooks_are_noticed() {
        let networks = [Network {
            bridge: "rn-a".into(),
            subnet: "10.0.42.0/24".parse().ok(),
            internal: false,
            published: vec![],
            dns: vec![],
            legacy_sources: vec![],
            lan: false,
            ipv6: None,
        }];
        let ingress = VxlanIngress {
            port: 4790,
            members: vec!["10.99.0.1".parse().unwrap()],
            devices: "rnx+".into(),
            gateway_prefix: [0x02, 0x52, 0x4e],
            seal: None,
        };
        let full = saved(&networks, Some(&ingress));
        assert!(intact(&full, &networks, Some(&ingress)));
        assert!(intact("", &[], None), "nothing expected, nothing missing");
        let flushed: String = full
            .lines()
            .filter(|l| !l.starts_with("-A RUSTNET "))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            !intact(&flushed, &networks, Some(&ingress)),
            "iptables -F RUSTNET"
        );
        let unhooked = full.replace("-A DOCKER-USER -j RUSTNET\n", "");
        assert!(!intact(&unhooked, &networks, Some(&ingress)));
        let no_vxlan = full.replace("-A RUSTNET-VXLAN -j DROP", "");
        assert!(!intact(&no_vxlan, &networks, Some(&ingress)));
    }
}
