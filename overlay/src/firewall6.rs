//! rustnet's IPv6 rules (ip6tables), computed from its networks (pure):
//! for the networks with an IPv6 subnet, the same model as IPv4's
//! ([`crate::firewall`]) in chains of the same names in ip6tables' filter
//! and nat tables.
//!
//! Per network with an IPv6 subnet (bridge B, subnet S), in order:
//! - accept B -> B;
//! - drop between B and every other rustnet bridge and Docker's bridges,
//!   both ways;
//! - internal: drop everything else in or out of B;
//! - otherwise: accept published ports to their containers, replies to
//!   connections from B, and B's egress; drop the rest into B;
//! - nat: masquerade S leaving through another interface (the cluster's
//!   unique local addresses are not routed outside), DNAT published ports
//!   on the host's IPv6 addresses.
//!
//! Nothing of rustnet is in ip6tables while no network has an IPv6 subnet.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use crate::firewall::{
    DNAT_CHAIN, FILTER_CHAIN, Network, POSTROUTING_CHAIN, accept_published, dnat_published, hooked,
    network_rules, rules_in,
};

/// Whether any network has an IPv6 subnet (else rustnet has nothing in
/// ip6tables).
pub fn wanted(networks: &[Network]) -> bool {
    networks.iter().any(|n| n.ipv6.is_some())
}

/// The hooks into ip6tables' built-in chains: (table, chain, rule).
pub fn hooks() -> Vec<(&'static str, &'static str, String)> {
    vec![
        ("filter", "DOCKER-USER", format!("-j {FILTER_CHAIN}")),
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
    ]
}

/// The filter rules of the IPv6 networks among `networks`, isolated from
/// every other rustnet bridge (the `inherited` ones too), as `-A RUSTNET
/// ...` lines.
pub fn filter_rules(networks: &[Network], inherited: &[String]) -> Vec<String> {
    networks
        .iter()
        .filter_map(|n| n.ipv6.as_ref().map(|v6| (n, v6)))
        .flat_map(|(net, v6)| {
            let accepts = v6.published.iter().map(|p| {
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

/// The nat rules of the IPv6 networks among `networks`, as `-A CHAIN ...`
/// lines.
pub fn nat_rules(networks: &[Network]) -> Vec<String> {
    let mut rules = Vec::new();
    for (net, v6) in networks
        .iter()
        .filter(|n| !n.internal)
        .filter_map(|n| n.ipv6.as_ref().map(|v6| (n, v6)))
    {
        let b = &net.bridge;
        rules.push(format!(
            "-A {POSTROUTING_CHAIN} -s {} ! -o {b} -j MASQUERADE",
            v6.subnet
        ));
        for p in &v6.published {
            let to = SocketAddr::new(p.container_ip.into(), p.container_port);
            let host_ip = p.host_ip.map(IpAddr::V6);
            rules.push(dnat_published(b, &p.proto, host_ip, p.host_port, to));
        }
    }
    rules
}

/// Input for `ip6tables-restore --noflush`: declaring rustnet's chains
/// flushes them, so this replaces all their rules in one transaction.
pub fn restore_script(networks: &[Network], inherited: &[String]) -> String {
    let mut script = format!("*filter\n:{FILTER_CHAIN} - [0:0]\n");
    for rule in filter_rules(networks, inherited) {
        let _ = writeln!(script, "{rule}");
    }
    let _ = writeln!(
        script,
        "COMMIT\n*nat\n:{POSTROUTING_CHAIN} - [0:0]\n:{DNAT_CHAIN} - [0:0]"
    );
    for rule in nat_rules(networks) {
        let _ = writeln!(script, "{rule}");
    }
    script.push_str("COMMIT\n");
    script
}

/// Whether `saved` (`ip6tables-save` of the filter and nat tables) still
/// holds every rule and hook of `networks`.
pub fn intact(saved: &str, networks: &[Network], inherited: &[String]) -> bool {
    let filter = filter_rules(networks, inherited);
    let nat = nat_rules(networks);
    let expected = |chain: &str| {
        let rules = if chain == FILTER_CHAIN { &filter } else { &nat };
        rules_in(rules.iter().map(String::as_str), chain)
    };
    [FILTER_CHAIN, POSTROUTING_CHAIN, DNAT_CHAIN]
        .iter()
        .all(|c| rules_in(saved.lines(), c) == expected(c))
        && hooked(saved, "FORWARD", "DOCKER-USER")
        && hooks().iter().all(|(_, chain, rule)| {
            rule.rsplit_once("-j ")
                .is_some_and(|(_, target)| hooked(saved, chain, target))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{Ipv6Side, Published6};

    fn network(bridge: &str, subnet6: Option<&str>, internal: bool) -> Network {
        Network {
            bridge: bridge.into(),
            subnet: "10.0.42.0/24".parse().ok(),
            internal,
            published: vec![],
            dns: vec![],
            legacy_sources: vec![],
            lan: false,
            ipv6: subnet6.map(|s| Ipv6Side {
                subnet: s.parse().unwrap(),
                published: vec![],
            }),
        }
    }

    #[test]
    fn only_networks_with_ipv6_get_rules_isolated_from_every_bridge() {
        let nets = [
            network("rn-a", Some("fd00:1::/64"), false),
            network("rn-b", None, false),
        ];
        assert!(wanted(&nets));
        assert!(!wanted(&nets[1..]));
        let rules = filter_rules(&nets, &["rn-old".into()]);
        assert_eq!(rules[0], "-A RUSTNET -i rn-a -o rn-a -j ACCEPT");
        for rule in [
            "-A RUSTNET -i rn-a -o rn-b -j DROP",
            "-A RUSTNET -i rn-b -o rn-a -j DROP",
            "-A RUSTNET -i rn-old -o rn-a -j DROP",
            "-A RUSTNET -i docker0 -o rn-a -j DROP",
        ] {
            assert!(rules.contains(&rule.to_owned()), "{rule}: {rules:?}");
        }
        assert!(
            !rules
                .iter()
                .any(|r| r.starts_with("-A RUSTNET -i rn-b -o rn-b"))
        );
        assert_eq!(
            &rules[rules.len() - 3..],
            [
                "-A RUSTNET -o rn-a -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
                "-A RUSTNET -i rn-a -j ACCEPT",
                "-A RUSTNET -o rn-a -j DROP",
            ]
        );
        assert_eq!(
            nat_rules(&nets),
            ["-A RUSTNET-POSTROUTING -s fd00:1::/64 ! -o rn-a -j MASQUERADE"]
        );
    }

    #[test]
    fn internal_has_no_egress_and_published_ports_are_dnatted() {
        let internal = network("rn-i", Some("fd00:2::/64"), true);
        let rules = filter_rules(std::slice::from_ref(&internal), &[]);
        assert_eq!(
            &rules[rules.len() - 2..],
            ["-A RUSTNET -i rn-i -j DROP", "-A RUSTNET -o rn-i -j DROP"]
        );
        assert!(nat_rules(&[internal]).is_empty());
        let mut net = network("rn-a", Some("fd00:1::/64"), false);
        if let Some(v6) = net.ipv6.as_mut() {
            v6.published = vec![Published6 {
                proto: "tcp".into(),
                host_ip: Some("fd99::1".parse().unwrap()),
                host_port: 8080,
                container_ip: "fd00:1::2".parse().unwrap(),
                container_port: 80,
            }];
        }
        let nets = [net];
        assert!(filter_rules(&nets, &[]).contains(
            &"-A RUSTNET -d fd00:1::2/128 -o rn-a -p tcp -m tcp --dport 80 -j ACCEPT".to_owned()
        ));
        assert_eq!(
            nat_rules(&nets)[1],
            "-A RUSTNET-DNAT -d fd99::1/128 ! -i rn-a -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00:1::2]:80"
        );
        let script = restore_script(&nets, &[]);
        assert!(
            script.starts_with("*filter\n:RUSTNET - [0:0]\n"),
            "{script}"
        );
        assert!(script.ends_with("COMMIT\n"), "{script}");
    }

    #[test]
    fn intact_notices_a_flush_and_a_lost_hook() {
        let nets = [network("rn-a", Some("fd00:1::/64"), false)];
        let mut saved: Vec<String> = filter_rules(&nets, &[])
            .into_iter()
            .chain(nat_rules(&nets))
            .collect();
        saved.push("-A FORWARD -j DOCKER-USER".into());
        for (_, chain, rule) in hooks() {
            saved.push(format!("-A {chain} {rule}"));
        }
        let text = saved.join("\n");
        assert!(intact(&text, &nets, &[]));
        let flushed: String = text
            .lines()
            .filter(|l| !l.starts_with("-A RUSTNET "))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!intact(&flushed, &nets, &[]));
        let unhooked = text.replace("-A POSTROUTING -j RUSTNET-POSTROUTING", "");
        assert!(!intact(&unhooked, &nets, &[]));
    }
}
