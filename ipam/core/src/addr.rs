//! Address arithmetic shared by IPv4 and IPv6: addresses as integers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The address as an integer, for ordering and stepping.
pub(crate) fn to_int(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of the same family as `like` whose integer value is `value`.
/// `value` always comes from a subnet of that family, so it fits.
pub(crate) fn from_int(like: IpAddr, value: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(value).unwrap_or(u32::MAX))),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// The addresses of `subnet` that may be handed out, as an inclusive integer
/// range: for IPv4 the network and broadcast addresses are excluded (except in
/// /31 and /32, RFC 3021), for IPv6 the subnet-router anycast address is.
pub(crate) fn usable(subnet: IpNet) -> Option<(u128, u128)> {
    let first = to_int(subnet.network());
    let last = to_int(subnet.broadcast());
    let (lo, hi) = match subnet {
        IpNet::V4(n) if n.prefix_len() >= 31 => (first, last),
        IpNet::V4(_) => (first + 1, last.checked_sub(1)?),
        IpNet::V6(n) if n.prefix_len() == 128 => (first, last),
        IpNet::V6(_) => (first + 1, last),
    };
    (lo <= hi).then_some((lo, hi))
}

/// Whether two subnets share any address.
pub(crate) fn overlaps(a: IpNet, b: IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn usable_excludes_network_and_broadcast() {
        let (lo, hi) = usable(net("10.0.0.0/24")).unwrap();
        assert_eq!(
            from_int("0.0.0.0".parse().unwrap(), lo),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            from_int("0.0.0.0".parse().unwrap(), hi),
            "10.0.0.254".parse::<IpAddr>().unwrap()
        );
        assert_eq!(usable(net("10.0.0.0/31")).map(|(l, h)| h - l + 1), Some(2));
        assert_eq!(usable(net("10.0.0.0/30")).map(|(l, h)| h - l + 1), Some(2));
        assert_eq!(usable(net("fd00::/126")).map(|(l, h)| h - l + 1), Some(3));
    }

    #[test]
    fn overlap_is_symmetric_and_exact() {
        assert!(overlaps(net("10.0.0.0/16"), net("10.0.42.0/24")));
        assert!(overlaps(net("10.0.42.0/24"), net("10.0.0.0/16")));
        assert!(!overlaps(net("10.0.42.0/24"), net("10.0.43.0/24")));
    }
}
