//! The host's upstream resolvers, found as Docker 20.10 finds them: the
//! `nameserver` lines of /etc/resolv.conf, or of systemd-resolved's own
//! file when the host points at its stub (127.0.0.53).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

const RESOLV_CONF: &str = "/etc/resolv.conf";
const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";
/// The same file as the managed plugin sees it (its `host-run` mount).
const SYSTEMD_RESOLV_CONF_IN_PLUGIN: &str = "/host/run/systemd/resolve/resolv.conf";
const SYSTEMD_STUB: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);

/// The IPv4 `nameserver`s of a resolv.conf text, in order.
pub(crate) fn nameservers(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => addr.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .collect()
}

/// The host's resolvers, as its resolv.conf files name them now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Servers {
    /// /etc/resolv.conf's, as the host's own processes use them.
    own: Vec<Ipv4Addr>,
    /// systemd-resolved's upstreams, when /etc/resolv.conf names only its
    /// stub.
    behind_stub: Vec<Ipv4Addr>,
}

impl Servers {
    /// Read from this host's files.
    pub(crate) fn of_host() -> Self {
        let read = |path: &str| std::fs::read_to_string(Path::new(path)).ok();
        let systemd = read(SYSTEMD_RESOLV_CONF).or_else(|| read(SYSTEMD_RESOLV_CONF_IN_PLUGIN));
        Self::from_texts(
            &read(RESOLV_CONF).unwrap_or_default(),
            &systemd.unwrap_or_default(),
        )
    }

    /// From the texts of /etc/resolv.conf and systemd-resolved's file.
    pub(crate) fn from_texts(resolv_conf: &str, systemd: &str) -> Self {
        let own = nameservers(resolv_conf);
        let behind_stub = if own == [SYSTEMD_STUB] {
            nameservers(systemd)
        } else {
            Vec::new()
        };
        Self { own, behind_stub }
    }

    /// The ones a container or a routed packet can reach, as Docker finds
    /// them (up to 27 it asks these from inside the container): not
    /// loopback (the stub's upstreams in its place).
    pub(crate) fn routed(&self) -> Vec<Ipv4Addr> {
        let mut servers = if self.behind_stub.is_empty() {
            self.own.clone()
        } else {
            self.behind_stub.clone()
        };
        servers.retain(|s| !s.is_loopback());
        servers
    }

    /// The ones the host's own processes ask, in order.
    pub(crate) fn local(&self) -> Vec<Ipv4Addr> {
        self.own.clone()
    }

    /// Where rustnet (in the host's namespace) forwards, in turn: as the
    /// host resolves, then the routed ones it has not tried.
    pub(crate) fn forward(&self) -> Vec<Ipv4Addr> {
        let mut servers = self.own.clone();
        for routed in self.routed() {
            if !servers.contains(&routed) {
                servers.push(routed);
            }
        }
        servers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_lines_in_order_ipv4_only() {
        let text = "# comment\nsearch example.org\nnameserver 10.255.255.53\n\
                    nameserver fe80::1\nnameserver   192.0.2.1  \noptions ndots:0\nnameserver bogus\n";
        assert_eq!(
            nameservers(text),
            [Ipv4Addr::new(10, 255, 255, 53), Ipv4Addr::new(192, 0, 2, 1)]
        );
    }

    #[test]
    fn behind_systemd_resolved_the_stub_is_asked_first_and_routed_packets_go_upstream() {
        let servers = Servers::from_texts("nameserver 127.0.0.53\n", "nameserver 192.0.2.9\n");
        let upstream = Ipv4Addr::new(192, 0, 2, 9);
        assert_eq!(servers.routed(), [upstream]);
        assert_eq!(servers.local(), [SYSTEMD_STUB]);
        assert_eq!(servers.forward(), [SYSTEMD_STUB, upstream]);
    }

    #[test]
    fn a_plain_host_uses_its_own_servers_everywhere_and_loopback_ones_only_locally() {
        let servers = Servers::from_texts(
            "nameserver 127.0.0.1\nnameserver 10.0.0.2\n",
            "nameserver 192.0.2.9\n",
        );
        let (lo, lan) = (Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(servers.routed(), [lan]);
        assert_eq!(servers.local(), [lo, lan]);
        assert_eq!(servers.forward(), [lo, lan]);
        assert!(Servers::from_texts("", "").forward().is_empty());
    }
}
