//! The host's upstream resolvers, found as Docker 20.10 finds them: the
//! `nameserver` lines of /etc/resolv.conf, or of systemd-resolved's own
//! file when the host points at its stub (127.0.0.53).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

const RESOLV_CONF: &str = "/etc/resolv.conf";
const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";
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

/// The upstreams Docker forwards to from inside a container: loopback ones
/// are queried from dockerd's own namespace and never pass a network.
pub(crate) fn host_resolvers() -> Vec<Ipv4Addr> {
    let read = |path: &str| std::fs::read_to_string(Path::new(path)).unwrap_or_default();
    let mut servers = nameservers(&read(RESOLV_CONF));
    if servers == [SYSTEMD_STUB] {
        servers = nameservers(&read(SYSTEMD_RESOLV_CONF));
    }
    servers.retain(|s| !s.is_loopback());
    servers
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
}
