use std::collections::BTreeSet;

use crate::{Admission, ENROLLMENT_WINDOW_SECS, PeerCert};
use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;

use super::*;

const H1: HostId = 1;
const H2: HostId = 2;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn defaults() -> Vec<DefaultPool> {
    vec!["10.128.0.0/9:24".parse().unwrap()]
}

fn pool(state: &mut State, host: HostId, subnet: &str, range: Option<&str>) -> CommandResult {
    state.apply(&Command::RequestPool {
        host,
        pool: Some(net(subnet)),
        range: range.map(net),
        v6: false,
        defaults: defaults(),
    })
}

fn default_pool(state: &mut State, host: HostId) -> IpNet {
    let cmd = Command::RequestPool {
        host,
        pool: None,
        range: None,
        v6: false,
        defaults: defaults(),
    };
    match state.apply(&cmd) {
        Ok(Response::Pool { subnet, .. }) => subnet,
        other => panic!("expected a pool, got {other:?}"),
    }
}

fn request(
    state: &mut State,
    host: HostId,
    pool_id: &str,
    address: Option<&str>,
    kind: HolderKind,
) -> CommandResult {
    state.apply(&Command::RequestAddress {
        host,
        pool_id: pool_id.to_owned(),
        address: address.map(ip),
        kind,
    })
}

fn addr(result: CommandResult) -> String {
    match result {
        Ok(Response::Address { address }) => address.to_string(),
        other => panic!("expected an address, got {other:?}"),
    }
}

fn release(state: &mut State, host: HostId, pool_id: &str, address: &str) -> CommandResult {
    state.apply(&Command::ReleaseAddress {
        host,
        pool_id: pool_id.to_owned(),
        address: ip(address),
    })
}

#[test]
fn ip_range_without_gateway_starts_at_the_range() {
    let mut s = State::default();
    pool(&mut s, H1, "10.0.42.0/24", Some("10.0.42.128/25")).unwrap();
    let gw = addr(request(
        &mut s,
        H1,
        "10.0.42.0/24",
        None,
        HolderKind::Gateway,
    ));
    let first = addr(request(
        &mut s,
        H1,
        "10.0.42.0/24",
        None,
        HolderKind::endpoint("c1"),
    ));
    assert_eq!(
        (gw.as_str(), first.as_str()),
        ("10.0.42.128/24", "10.0.42.129/24")
    );
}

#[test]
fn subnet_without_range_starts_after_the_network_address() {
    let mut s = State::default();
    pool(&mut s, H1, "10.0.42.0/24", None).unwrap();
    assert_eq!(
        addr(request(
            &mut s,
            H1,
            "10.0.42.0/24",
            None,
            HolderKind::Gateway
        )),
        "10.0.42.1/24"
    );
    assert_eq!(
        addr(request(
            &mut s,
            H1,
            "10.0.42.0/24",
            None,
            HolderKind::endpoint("c1")
        )),
        "10.0.42.2/24"
    );
}

#[test]
fn explicit_gateway_and_aux_addresses_are_never_handed_out() {
    let mut s = State::default();
    pool(&mut s, H1, "10.0.42.0/29", None).unwrap();
    request(
        &mut s,
        H1,
        "10.0.42.0/29",
        Some("10.0.42.1"),
        HolderKind::Gateway,
    )
    .unwrap();
    request(
        &mut s,
        H1,
        "10.0.42.0/29",
        Some("10.0.42.2"),
        HolderKind::Static,
    )
    .unwrap();
    let got: Vec<String> = (0..4)
        .map(|i| {
            addr(request(
                &mut s,
                H1,
                "10.0.42.0/29",
                None,
                HolderKind::endpoint(format!("c{i}")),
            ))
        })
        .collect();
    assert_eq!(
        got,
        [
            "10.0.42.3/29",
            "10.0.42.4/29",
            "10.0.42.5/29",
            "10.0.42.6/29"
        ]
    );
    let err = request(&mut s, H1, "10.0.42.0/29", None, HolderKind::endpoint("c9")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pool 10.0.42.0/29 is exhausted: all 6 addresses of 10.0.42.0/29 are in use"
    );
}

#[test]
fn a_taken_address_names_its_holder_and_changes_nothing() {
    let mut s = State::default();
    let register = Command::RegisterHost {
        host: H1,
        name: "host-a (10.99.0.1)".into(),
        addr: Some("10.99.0.1".parse().unwrap()),
    };
    assert_eq!(s.apply(&register), Ok(Response::Done));
    pool(&mut s, H1, "10.0.42.0/24", None).unwrap();
    request(
        &mut s,
        H1,
        "10.0.42.0/24",
        Some("10.0.42.200"),
        HolderKind::endpoint("web1"),
    )
    .unwrap();
    let before = s.clone();
    let err = request(
        &mut s,
        H2,
        "10.0.42.0/24",
        Some("10.0.42.200"),
        HolderKind::endpoint("web2"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "address 10.0.42.200 is already in use by container web1 on host-a (10.99.0.1)"
    );
    assert_eq!(s, before);
}

#[test]
fn an_ipam_only_address_names_the_container_its_holder_learned() {
    let mut s = State::default();
    pool(&mut s, H1, "10.0.42.0/24", None).unwrap();
    request(
        &mut s,
        H1,
        "10.0.42.0/24",
        Some("10.0.42.1"),
        HolderKind::Gateway,
    )
    .unwrap();
    request(
        &mut s,
        H1,
        "10.0.42.0/24",
        Some("10.0.42.6"),
        HolderKind::Static,
    )
    .unwrap();
    let name = |host, address: &str| Command::NameAddress {
        host,
        address: ip(address),
        container: "fixed".into(),
    };
    let before = s.clone();
    // Only the holder may say, never of a gateway or of a free address.
    assert!(matches!(
        s.apply(&name(H2, "10.0.42.6")),
        Err(IpamError::NotHolder { .. })
    ));
    assert!(matches!(
        s.apply(&name(H1, "10.0.42.1")),
        Err(IpamError::NotHolder { .. })
    ));
    assert_eq!(
        s.apply(&name(H1, "10.0.42.7")),
        Err(IpamError::NotHeld {
            address: ip("10.0.42.7")
        })
    );
    assert_eq!(s, before);
    assert_eq!(s.apply(&name(H1, "10.0.42.6")), Ok(Response::Done));
    let err = request(
        &mut s,
        H2,
        "10.0.42.0/24",
        Some("10.0.42.6"),
        HolderKind::Static,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "address 10.0.42.6 is already in use by container fixed on host 1"
    );
    // Released and taken again: the name went with the old holder.
    release(&mut s, H1, "10.0.42.0/24", "10.0.42.6").unwrap();
    request(
        &mut s,
        H2,
        "10.0.42.0/24",
        Some("10.0.42.6"),
        HolderKind::Static,
    )
    .unwrap();
    assert_eq!(s.holder(ip("10.0.42.6")).unwrap().container, None);
}

#[test]
fn network_broadcast_and_foreign_addresses_are_refused() {
    let mut s = State::default();
    pool(&mut s, H1, "10.0.42.0/24", None).unwrap();
    for (a, msg) in [
        (
            "10.0.42.0",
            "address 10.0.42.0 is the network or broadcast address of 10.0.42.0/24",
        ),
        (
            "10.0.42.255",
            "address 10.0.42.255 is the network or broadcast address of 10.0.42.0/24",
        ),
        ("10.0.43.1", "address 10.0.43.1 is not in pool 10.0.42.0/24"),
    ] {
        let err = request(
            &mut s,
            H1,
            "10.0.42.0/24",
            Some(a),
            HolderKind::endpoint("c"),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), msg);
    }
}

#[test]
fn released_addresses_come_back_last_and_oldest_first() {
    let mut s = State::default();
    pool(&mut s, H1, "10.0.42.0/29", None).unwrap();
    let take = |s: &mut State| {
        addr(request(
            s,
            H1,
            "10.0.42.0/29",
            None,
            HolderKind::endpoint("c"),
        ))
    };
    for _ in 0..3 {
        take(&mut s);
    }
    release(&mut s, H1, "10.0.42.0/29", "10.0.42.2").unwrap();
    release(&mut s, H1, "10.0.42.0/29", "10.0.42.1").unwrap();
    // Fresh addresses first (.4 .5 .6), then the released ones, oldest first.
    let got: Vec<String> = (0..5).map(|_| take(&mut s)).collect();
    assert_eq!(
        got,
        [
            "10.0.42.4/29",
            "10.0.42.5/29",
            "10.0.42.6/29",
            "10.0.42.2/29",
            "10.0.42.1/29"
        ]
    );
    // An explicit request may take a quarantined address at once.
    release(&mut s, H1, "10.0.42.0/29", "10.0.42.5").unwrap();
    request(
        &mut s,
        H1,
        "10.0.42.0/29",
        Some("10.0.42.5"),
        HolderKind::Static,
    )
    .unwrap();
    assert!(s.pool("10.0.42.0/29").unwrap().released.is_empty());
}

#[test]
fn only_the_holder_releases_and_only_what_is_held() {
    let mut s = State::default();
    pool(&mut s, H1, "10.0.42.0/24", None).unwrap();
    request(
        &mut s,
        H1,
        "10.0.42.0/24",
        Some("10.0.42.7"),
        HolderKind::endpoint("c"),
    )
    .unwrap();
    let before = s.clone();
    assert_eq!(
        release(&mut s, H2, "10.0.42.0/24", "10.0.42.7")
            .unwrap_err()
            .to_string(),
        "address 10.0.42.7 is held by container c on host 1, not by host 2"
    );
    assert_eq!(
        release(&mut s, H1, "10.0.42.0/24", "10.0.42.8")
            .unwrap_err()
            .to_string(),
        "address 10.0.42.8 in pool 10.0.42.0/24 is not allocated"
    );
    assert_eq!(
        release(&mut s, H1, "10.9.0.0/24", "10.9.0.8")
            .unwrap_err()
            .to_string(),
        "no pool with id 10.9.0.0/24"
    );
    assert_eq!(s, before);
}

#[test]
fn overlapping_pools_are_refused_with_the_holder() {
    let mut s = State::default();
    pool(&mut s, H1, "10.0.42.0/24", None).unwrap();
    let before = s.clone();
    let cases = [
        (
            "10.0.0.0/16",
            None,
            H2,
            "subnet 10.0.0.0/16 overlaps pool 10.0.42.0/24, in use by host 1",
        ),
        (
            "10.0.42.0/24",
            None,
            H1,
            "pool 10.0.42.0/24 is already in use on this host",
        ),
        (
            "10.0.42.0/24",
            Some("10.0.42.0/25"),
            H2,
            "pool 10.0.42.0/24 exists with ip-range none; this request asked for 10.0.42.0/25",
        ),
        (
            "10.0.42.1/24",
            None,
            H2,
            "subnet 10.0.42.1/24 is not a network address (did you mean 10.0.42.0/24?)",
        ),
        (
            "10.1.0.0/24",
            Some("10.2.0.0/25"),
            H2,
            "ip-range 10.2.0.0/25 is not inside subnet 10.1.0.0/24",
        ),
    ];
    for (subnet, range, host, msg) in cases {
        assert_eq!(
            pool(&mut s, host, subnet, range).unwrap_err().to_string(),
            msg
        );
    }
    assert_eq!(s, before);
}

#[test]
fn the_same_subnet_from_another_host_is_shared_and_ref_counted() {
    let mut s = State::default();
    pool(&mut s, H1, "10.0.42.0/24", None).unwrap();
    pool(&mut s, H2, "10.0.42.0/24", None).unwrap();
    let a = addr(request(
        &mut s,
        H1,
        "10.0.42.0/24",
        None,
        HolderKind::endpoint("a"),
    ));
    let b = addr(request(
        &mut s,
        H2,
        "10.0.42.0/24",
        None,
        HolderKind::endpoint("b"),
    ));
    assert_ne!(a, b);
    let release_pool = |s: &mut State, host| {
        s.apply(&Command::ReleasePool {
            host,
            pool_id: "10.0.42.0/24".into(),
        })
    };
    release_pool(&mut s, H1).unwrap();
    assert!(s.pool("10.0.42.0/24").is_some());
    assert_eq!(
        release_pool(&mut s, H1).unwrap_err().to_string(),
        "host 1 holds no reference on pool 10.0.42.0/24"
    );
    release_pool(&mut s, H2).unwrap();
    assert!(s.pool("10.0.42.0/24").is_none());
}

#[test]
fn default_pools_are_distinct_and_skip_explicit_ones() {
    let mut s = State::default();
    pool(&mut s, H1, "10.128.1.0/24", None).unwrap();
    let got: Vec<String> = (0..3)
        .map(|_| default_pool(&mut s, H1).to_string())
        .collect();
    assert_eq!(got, ["10.128.0.0/24", "10.128.2.0/24", "10.128.3.0/24"]);
}

#[test]
fn exhausted_default_pools_and_sub_pool_without_pool_are_refused() {
    let mut s = State::default();
    let small = vec!["10.5.0.0/23:24".parse().unwrap()];
    let req = |v6| Command::RequestPool {
        host: H1,
        pool: None,
        range: None,
        v6,
        defaults: small.clone(),
    };
    s.apply(&req(false)).unwrap();
    s.apply(&req(false)).unwrap();
    assert_eq!(
        s.apply(&req(false)).unwrap_err().to_string(),
        "no free IPv4 pool left in the default pools (10.5.0.0/23:24); pass --subnet or add pools to RUSTNET_DEFAULT_POOLS"
    );
    assert!(
        s.apply(&req(true))
            .unwrap_err()
            .to_string()
            .contains("IPv6 pool")
    );
    let sub = Command::RequestPool {
        host: H1,
        pool: None,
        range: Some(net("10.6.0.0/25")),
        v6: false,
        defaults: small.clone(),
    };
    assert!(matches!(
        s.apply(&sub),
        Err(IpamError::SubPoolWithoutPool { .. })
    ));
}

#[test]
fn ipv6_pools_hand_out_addresses_after_the_anycast_one() {
    let mut s = State::default();
    pool(&mut s, H1, "fd00:42::/64", None).unwrap();
    assert_eq!(
        addr(request(
            &mut s,
            H1,
            "fd00:42::/64",
            None,
            HolderKind::Gateway
        )),
        "fd00:42::1/64"
    );
}

#[test]
fn default_pool_syntax() {
    let ok: DefaultPool = "fd00::/48:64".parse().unwrap();
    assert_eq!((ok.base, ok.size), (net("fd00::/48"), 64));
    for bad in [
        "10.0.0.0/8",
        "10.0.0.1/8:16",
        "10.0.0.0/16:8",
        "x:24",
        "10.0.0.0/8:x",
    ] {
        assert!(bad.parse::<DefaultPool>().is_err(), "{bad} parsed");
    }
}

/// One step of a random IPAM workload.
#[derive(Debug, Clone)]
enum Op {
    Any(HostId),
    Exact(HostId, u8),
    Release(HostId, u8),
    /// The host leaves the cluster: what it held is fresh again.
    Forget(HostId),
    /// The state through its snapshot form (a restarted replica).
    Reload,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1..3u64).prop_map(Op::Any),
        8 => (1..3u64, any::<u8>()).prop_map(|(h, o)| Op::Exact(h, o)),
        8 => (1..3u64, any::<u8>()).prop_map(|(h, o)| Op::Release(h, o)),
        1 => (1..3u64).prop_map(Op::Forget),
        1 => Just(Op::Reload),
    ]
}

/// What an allocation without an address must answer, by brute force:
/// the lowest address of the range neither held nor released, else the
/// oldest released one.
fn lowest_fresh_then_oldest(pool: &Pool, range: IpNet) -> Option<IpAddr> {
    let held = |a: &IpAddr| pool.addresses.contains_key(a);
    // Every address of the range (inside the subnet, its ends included).
    let (IpAddr::V4(first), IpAddr::V4(last)) = (range.network(), range.broadcast()) else {
        return None;
    };
    (u32::from(first)..=u32::from(last))
        .map(|a| IpAddr::from(std::net::Ipv4Addr::from(a)))
        .find(|a| !held(a) && !pool.released.contains(a))
        .or_else(|| {
            pool.released
                .iter()
                .copied()
                .find(|a| range.contains(a) && !held(a))
        })
}

proptest! {
    /// Whatever the sequence, a held address is never handed out again; the
    /// network and broadcast addresses and addresses outside the range never
    /// are; and released addresses come back.
    #[test]
    fn addresses_are_unique_and_inside_the_range(ops in proptest::collection::vec(op(), 1..200)) {
        let mut s = State::default();
        let id = "10.7.0.0/24";
        pool(&mut s, 1, id, Some("10.7.0.64/26")).unwrap();
        let mut held: BTreeSet<IpAddr> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Any(h) => {
                    let want = s.pool(id).and_then(|p| lowest_fresh_then_oldest(p, net("10.7.0.64/26")));
                    match request(&mut s, h, id, None, HolderKind::endpoint("x")) {
                    Ok(Response::Address { address }) => {
                        let a = address.addr();
                        prop_assert_eq!(Some(a), want);
                        prop_assert!(net("10.7.0.64/26").contains(&a));
                        prop_assert!(held.insert(a), "{a} handed out twice");
                    }
                    Err(IpamError::Exhausted { .. }) => prop_assert_eq!(held.iter().filter(|a| net("10.7.0.64/26").contains(*a)).count(), 64),
                    other => prop_assert!(false, "unexpected {other:?}"),
                    }
                }
                Op::Forget(h) => {
                    // The pool's creator stays, so the pool does.
                    if h != 1 {
                        s.apply(&Command::ForgetHost { host: h }).unwrap();
                        held.retain(|a| s.holder(*a).is_some());
                    }
                }
                Op::Reload => {
                    s = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
                }
                Op::Exact(h, o) => {
                    let a = IpAddr::from([10, 7, 0, o]);
                    let r = request(&mut s, h, id, Some(&a.to_string()), HolderKind::endpoint("y"));
                    prop_assert_eq!(r.is_ok(), o != 0 && o != 255 && !held.contains(&a));
                    if r.is_ok() { held.insert(a); }
                }
                Op::Release(h, o) => {
                    let a = IpAddr::from([10, 7, 0, o]);
                    let owner = s.holder(a).map(|x| x.host);
                    let r = release(&mut s, h, id, &a.to_string());
                    prop_assert_eq!(r.is_ok(), owner == Some(h));
                    if r.is_ok() { held.remove(&a); }
                }
            }
            prop_assert_eq!(s.invariants(), Ok(()));
        }
        let pool = s.pool(id).unwrap();
        prop_assert_eq!(pool.addresses.keys().copied().collect::<BTreeSet<_>>(), held);
    }

    /// Pools requested in any order never overlap.
    #[test]
    fn pools_never_overlap(reqs in proptest::collection::vec((0u8..4, 20u8..28, any::<bool>()), 1..40)) {
        let mut s = State::default();
        for (i, (third, len, explicit)) in reqs.into_iter().enumerate() {
            let host = (i % 3) as u64;
            if explicit {
                let subnet = IpNet::new(IpAddr::from([10, 128, third * 16, 0]), len).unwrap().trunc();
                let _ = pool(&mut s, host, &subnet.to_string(), None);
            } else {
                let _ = default_pool_opt(&mut s, host);
            }
        }
        let subnets: Vec<IpNet> = s.pools().map(|p| p.subnet).collect();
        for (i, a) in subnets.iter().enumerate() {
            for b in &subnets[i + 1..] {
                prop_assert!(!crate::addr::overlaps(*a, *b), "{a} overlaps {b}");
            }
        }
    }
}

fn default_pool_opt(state: &mut State, host: HostId) -> CommandResult {
    state.apply(&Command::RequestPool {
        host,
        pool: None,
        range: None,
        v6: false,
        defaults: defaults(),
    })
}

#[test]
fn hosts_of_a_shared_subnet_share_its_gateway() {
    let mut s = State::default();
    pool(&mut s, H1, "10.0.42.0/24", None).unwrap();
    pool(&mut s, H2, "10.0.42.0/24", None).unwrap();
    let gw1 = addr(request(
        &mut s,
        H1,
        "10.0.42.0/24",
        Some("10.0.42.1"),
        HolderKind::Gateway,
    ));
    let gw2 = addr(request(
        &mut s,
        H2,
        "10.0.42.0/24",
        Some("10.0.42.1"),
        HolderKind::Gateway,
    ));
    assert_eq!(gw1, gw2);
    release(&mut s, H2, "10.0.42.0/24", "10.0.42.1").unwrap();
    assert!(
        s.holder("10.0.42.1".parse().unwrap()).is_some(),
        "still the first host's"
    );
    assert!(
        request(
            &mut s,
            H2,
            "10.0.42.0/24",
            Some("10.0.42.1"),
            HolderKind::endpoint("x")
        )
        .is_err()
    );
}

/// Docker's own macvlan on three hosts, each running the same
/// `network create --gateway .254 --aux-address router=.253`.
fn lan(s: &mut State, host: HostId) {
    pool(s, host, "10.99.0.0/24", Some("10.99.0.64/26")).unwrap();
    request(
        s,
        host,
        "10.99.0.0/24",
        Some("10.99.0.254"),
        HolderKind::Gateway,
    )
    .unwrap();
    request(
        s,
        host,
        "10.99.0.0/24",
        Some("10.99.0.253"),
        HolderKind::Aux,
    )
    .unwrap();
}

const H3: HostId = 3;

#[test]
fn hosts_of_a_shared_subnet_share_its_aux_addresses() {
    let mut s = State::default();
    for host in [H1, H2, H3] {
        lan(&mut s, host);
    }
    let pool = s.pool("10.99.0.0/24").unwrap();
    assert_eq!(pool.addresses.len(), 2, "one gateway, one aux: {pool:?}");
    // Asked for by value as a container would be: refused, with the reason.
    let err = request(
        &mut s,
        H2,
        "10.99.0.0/24",
        Some("10.99.0.253"),
        HolderKind::Static,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--aux-address reservation on host 1"), "{err}");
    // The first host leaves: the reservations pass to the others.
    release(&mut s, H1, "10.99.0.0/24", "10.99.0.253").unwrap();
    release(&mut s, H1, "10.99.0.0/24", "10.99.0.254").unwrap();
    s.apply(&Command::ReleasePool {
        host: H1,
        pool_id: "10.99.0.0/24".into(),
    })
    .unwrap();
    for address in ["10.99.0.253", "10.99.0.254"] {
        let holder = s.holder(ip(address)).expect("still reserved");
        assert!(holder.kind.is_shared() && holder.host != H1, "{holder:?}");
    }
    // The second host's container cannot get them either.
    let got = addr(request(
        &mut s,
        H2,
        "10.99.0.0/24",
        None,
        HolderKind::endpoint("c"),
    ));
    assert_eq!(got, "10.99.0.64/24");
    // A removed host hands its share on too.
    s.apply(&Command::ForgetHost { host: H2 }).unwrap();
    assert_eq!(s.holder(ip("10.99.0.253")).map(|h| h.host), Some(H3));
    assert!(
        s.holder(ip("10.99.0.64")).is_none(),
        "H2's container is gone"
    );
    // The last host lets go: the pool is gone.
    release(&mut s, H3, "10.99.0.0/24", "10.99.0.253").unwrap();
    release(&mut s, H3, "10.99.0.0/24", "10.99.0.254").unwrap();
    s.apply(&Command::ReleasePool {
        host: H3,
        pool_id: "10.99.0.0/24".into(),
    })
    .unwrap();
    assert!(s.pool("10.99.0.0/24").is_none());
}

#[test]
fn a_shared_subnet_has_one_gateway() {
    let mut s = State::default();
    pool(&mut s, H1, "10.0.42.0/24", None).unwrap();
    pool(&mut s, H2, "10.0.42.0/24", None).unwrap();
    let first = addr(request(
        &mut s,
        H1,
        "10.0.42.0/24",
        None,
        HolderKind::Gateway,
    ));
    // The second host names none: it gets the first host's.
    let second = addr(request(
        &mut s,
        H2,
        "10.0.42.0/24",
        None,
        HolderKind::Gateway,
    ));
    assert_eq!(
        (first.as_str(), second.as_str()),
        ("10.0.42.1/24", "10.0.42.1/24")
    );
    // Another one is refused, and changes nothing.
    let before = s.clone();
    let err = request(
        &mut s,
        H2,
        "10.0.42.0/24",
        Some("10.0.42.9"),
        HolderKind::Gateway,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("has gateway 10.0.42.1") && err.contains("asked for 10.0.42.9"),
        "{err}"
    );
    assert_eq!(s, before);
}

#[test]
fn aux_reservations_need_format_2() {
    let aux = Command::RequestAddress {
        host: H1,
        pool_id: "10.0.42.0/24".into(),
        address: Some(ip("10.0.42.9")),
        kind: HolderKind::Aux,
    };
    assert_eq!(aux.format(), 2);
    let plain = Command::RequestAddress {
        host: H1,
        pool_id: "10.0.42.0/24".into(),
        address: Some(ip("10.0.42.9")),
        kind: HolderKind::Static,
    };
    assert_eq!(plain.format(), 1);
}

#[test]
fn an_ipv6_pool_without_a_subnet_is_a_64_of_the_clusters_ula() {
    let ula = DefaultPool::cluster_ula("2f1c0a9e4b7d6c11");
    assert_eq!(
        ula,
        DefaultPool::cluster_ula("2f1c0a9e4b7d6c11"),
        "the same on every member"
    );
    assert_ne!(ula.base, DefaultPool::cluster_ula("2f1c0a9e4b7d6c12").base);
    assert!(net("fd00::/8").contains(&ula.base) && ula.base.prefix_len() == 48);
    let mut s = State::default();
    let request = |s: &mut State, host| {
        s.apply(&Command::RequestPool {
            host,
            pool: None,
            range: None,
            v6: true,
            defaults: vec![defaults()[0], ula],
        })
    };
    let (Ok(Response::Pool { subnet: a, .. }), Ok(Response::Pool { subnet: b, .. })) =
        (request(&mut s, H1), request(&mut s, H2))
    else {
        panic!("no IPv6 pools");
    };
    assert!(
        ula.base.contains(&a) && ula.base.contains(&b) && a != b,
        "{a} {b}"
    );
    assert_eq!((a.prefix_len(), b.prefix_len()), (64, 64));
    // Without the cluster's pool, IPv6 needs --subnet, as before.
    let none = s.apply(&Command::RequestPool {
        host: H1,
        pool: None,
        range: None,
        v6: true,
        defaults: defaults(),
    });
    assert!(none.unwrap_err().to_string().contains("no free IPv6 pool"));
}

#[test]
fn a_retried_proposal_is_applied_once() {
    let mut s = State::default();
    pool(&mut s, H1, "10.0.42.0/24", None).unwrap();
    let proposal = Proposal::new(
        7,
        Command::RequestAddress {
            host: H1,
            pool_id: "10.0.42.0/24".into(),
            address: None,
            kind: HolderKind::endpoint("c"),
        },
    );
    let first = s.apply_once(&proposal);
    let again = s.apply_once(&proposal);
    assert_eq!(first, again);
    assert_eq!(s.pool("10.0.42.0/24").unwrap().addresses.len(), 1);
    let other = Proposal { id: 8, ..proposal };
    assert_ne!(s.apply_once(&other), first);
}

#[test]
fn log_entries_from_before_proposal_ids_still_decode() {
    let bare = serde_json::to_string(&Command::ReleasePool {
        host: H1,
        pool_id: "10.0.42.0/24".into(),
    })
    .unwrap();
    let proposal: Proposal = serde_json::from_str(&bare).unwrap();
    assert_eq!(proposal.id, 0);
    let new = Proposal {
        id: 9,
        ..proposal.clone()
    };
    let round: Proposal = serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
    assert_eq!(round, new);
    // Id 0 is never deduplicated.
    let mut s = State::default();
    pool(&mut s, H1, "10.0.42.0/24", None).unwrap();
    pool(&mut s, H2, "10.0.42.0/24", None).unwrap();
    assert!(s.apply_once(&proposal).is_ok());
    assert!(
        s.apply_once(&proposal).is_err(),
        "a second bare release is applied, and refused"
    );
}

#[test]
fn a_taken_address_names_the_container_its_host_learned() {
    let mut s = State::default();
    let register = Command::RegisterHost {
        host: H1,
        name: "host-a".into(),
        addr: None,
    };
    s.apply(&register).unwrap();
    pool(&mut s, H1, "10.0.42.0/24", None).unwrap();
    // Docker 20.10 sends `--ip` with no name: a plain reservation.
    request(
        &mut s,
        H1,
        "10.0.42.0/24",
        Some("10.0.42.9"),
        HolderKind::Static,
    )
    .unwrap();
    let network = crate::Network {
        gateway: None,
        ..crate::fixture::network("net1", H1)
    };
    s.apply(&Command::CreateNetwork(network)).unwrap();
    let endpoint = Endpoint {
        address: Some(net("10.0.42.9/24")),
        mac: crate::Mac::random(),
        ..crate::fixture::endpoint("ep1", "net1", H1)
    };
    s.apply(&Command::CreateEndpoint(endpoint.clone())).unwrap();
    let taken = |s: &mut State| {
        request(s, H2, "10.0.42.0/24", Some("10.0.42.9"), HolderKind::Static)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        taken(&mut s),
        "address 10.0.42.9 is already in use by an --ip or --aux-address reservation on host-a"
    );
    let web = crate::Container {
        id: "c0ffee".into(),
        name: "web1".into(),
        aliases: vec!["web".into()],
    };
    let name = |host| Command::NameEndpoint {
        host,
        id: "ep1".into(),
        container: web.clone(),
    };
    assert!(
        s.apply(&name(H2)).is_err(),
        "only the endpoint's host names it"
    );
    s.apply(&name(H1)).unwrap();
    assert_eq!(
        taken(&mut s),
        "address 10.0.42.9 is already in use by container web1 on host-a"
    );
    // Docker retrying CreateEndpoint is no conflict with what was learned.
    assert_eq!(
        s.apply(&Command::CreateEndpoint(endpoint)),
        Ok(Response::Done)
    );
}

/// One change to the network tables, from one of three hosts.
#[derive(Debug, Clone)]
enum TableOp {
    Network { host: HostId, n: u8, overlay: bool },
    DeleteNetwork { host: HostId, n: u8 },
    ForgetNetwork { host: HostId, n: u8 },
    Endpoint { host: HostId, n: u8, e: u8 },
    DeleteEndpoint { host: HostId, e: u8 },
    Join { host: HostId, e: u8, joined: bool },
    Name { host: HostId, e: u8 },
    ForgetHost { host: HostId },
}

fn table_op() -> impl Strategy<Value = TableOp> {
    let host = 1..4u64;
    prop_oneof![
        (host.clone(), 0..4u8, any::<bool>()).prop_map(|(host, n, overlay)| TableOp::Network {
            host,
            n,
            overlay
        }),
        (host.clone(), 0..4u8).prop_map(|(host, n)| TableOp::DeleteNetwork { host, n }),
        (host.clone(), 0..4u8).prop_map(|(host, n)| TableOp::ForgetNetwork { host, n }),
        (host.clone(), 0..4u8, 0..8u8).prop_map(|(host, n, e)| TableOp::Endpoint { host, n, e }),
        (host.clone(), 0..8u8).prop_map(|(host, e)| TableOp::DeleteEndpoint { host, e }),
        (host.clone(), 0..8u8, any::<bool>()).prop_map(|(host, e, joined)| TableOp::Join {
            host,
            e,
            joined
        }),
        (host.clone(), 0..8u8).prop_map(|(host, e)| TableOp::Name { host, e }),
        host.prop_map(|host| TableOp::ForgetHost { host }),
    ]
}

fn table_command(op: &TableOp) -> Command {
    let network_id = |host: HostId, n: u8| format!("net{host}{n}");
    match op.clone() {
        TableOp::Network { host, n, overlay } => Command::CreateNetwork(crate::Network {
            mode: if overlay {
                crate::Mode::Overlay
            } else {
                crate::Mode::Bridge
            },
            bridge: format!("rn-{host}{n}"),
            subnet: Some(net(&format!("10.0.{n}.0/24"))),
            gateway: Some(net(&format!("10.0.{n}.1/24"))),
            mtu: 1450,
            overlay: overlay.then(|| format!("10.0.{n}.0/24")),
            ..crate::fixture::network(&network_id(host, n), host)
        }),
        TableOp::DeleteNetwork { host, n } => Command::DeleteNetwork {
            host,
            id: network_id(host, n),
        },
        TableOp::ForgetNetwork { host, n } => Command::ForgetNetwork {
            host,
            id: network_id(host, n),
        },
        TableOp::Endpoint { host, n, e } => Command::CreateEndpoint(Endpoint {
            address: Some(net(&format!("10.0.{n}.{}/24", 10 + e))),
            mac: crate::Mac([2, 0, 0, 0, n, e]),
            ..crate::fixture::endpoint(&format!("ep{e}"), &network_id(host, n), host)
        }),
        TableOp::DeleteEndpoint { host, e } => Command::DeleteEndpoint {
            host,
            id: format!("ep{e}"),
        },
        TableOp::Join { host, e, joined } => Command::SetJoined {
            host,
            id: format!("ep{e}"),
            ports: joined.then(Vec::new),
        },
        TableOp::Name { host, e } => Command::NameEndpoint {
            host,
            id: format!("ep{e}"),
            container: crate::Container {
                id: format!("c{e}"),
                name: format!("web{e}"),
                aliases: vec![],
            },
        },
        TableOp::ForgetHost { host } => Command::ForgetHost { host },
    }
}

proptest! {
    /// Whatever the sequence of table changes from several hosts: every
    /// endpoint belongs to a network of its own host; a host never has two
    /// networks on one bridge; every overlay network is bound to a known
    /// overlay; a refused change changes nothing; and only an endpoint's
    /// own host changes it.
    #[test]
    fn the_network_tables_stay_consistent(ops in proptest::collection::vec(table_op(), 1..120)) {
        let mut s = State::default();
        for op in &ops {
            let before = s.clone();
            let command = table_command(op);
            let result = s.apply(&command);
            if result.is_err() {
                prop_assert_eq!(&s, &before, "refused {:?} changed the state", op);
            }
            if let (TableOp::Join { host, e, .. } | TableOp::Name { host, e }, Ok(_)) = (op, &result) {
                let id = format!("ep{e}");
                prop_assert_eq!(before.tables().endpoint(&id).map(|x| x.host), Some(*host));
            }
            prop_assert_eq!(s.invariants(), Ok(()));
            let tables = s.tables();
            for endpoint in tables.endpoints() {
                let network = tables.network(&endpoint.network_id);
                prop_assert!(network.is_some_and(|n| n.host == endpoint.host), "{:?} has no network of its host", endpoint);
            }
            for host in 1..4u64 {
                let bridges: Vec<&str> = tables.networks_of(host).map(|n| n.bridge.as_str()).collect();
                let unique: BTreeSet<&str> = bridges.iter().copied().collect();
                prop_assert_eq!(bridges.len(), unique.len());
                for network in tables.networks_of(host) {
                    if let Some(key) = &network.overlay {
                        prop_assert!(tables.overlay(key).is_some(), "{} bound to no overlay", network.id);
                    }
                }
            }
        }
    }
}

#[test]
fn a_forwarded_write_changes_only_what_its_senders_host_holds() {
    let mut s = State::default();
    pool(&mut s, H1, "10.0.42.0/24", None).unwrap();
    let take = Command::RequestAddress {
        host: H1,
        pool_id: "10.0.42.0/24".into(),
        address: None,
        kind: HolderKind::endpoint("c"),
    };
    let address = match s.apply_once(&Proposal {
        by: Some(H1),
        ..Proposal::new(1, take)
    }) {
        Ok(Response::Address { address }) => address.addr(),
        other => panic!("{other:?}"),
    };
    let before = s.clone();
    let attacks = [
        Command::ReleaseAddress {
            host: H1,
            pool_id: "10.0.42.0/24".into(),
            address,
        },
        Command::ReleasePool {
            host: H1,
            pool_id: "10.0.42.0/24".into(),
        },
        Command::ForgetHost { host: H1 },
        Command::NameAddress {
            host: H1,
            address,
            container: "evil".into(),
        },
        Command::AdmitCert {
            host: H1,
            fingerprint: "stolen".into(),
            issuer: None,
            not_before: None,
        },
    ];
    for (id, attack) in attacks.into_iter().enumerate() {
        let proposal = Proposal {
            by: Some(H2),
            ..Proposal::new(100 + id as u64, attack.clone())
        };
        let refused = s.apply_once(&proposal);
        assert!(
            matches!(refused, Err(IpamError::NotAuthorized { .. })),
            "{attack}: {refused:?}"
        );
        assert_eq!(
            without_recent(&s),
            without_recent(&before),
            "{attack} changed the state"
        );
    }
    // Its own host may; the leader's own code (no sender) may.
    let release = Command::ReleaseAddress {
        host: H1,
        pool_id: "10.0.42.0/24".into(),
        address,
    };
    assert!(
        s.apply_once(&Proposal {
            by: Some(H1),
            ..Proposal::new(200, release)
        })
        .is_ok()
    );
    assert!(
        s.apply_once(&Proposal::new(201, Command::ForgetHost { host: H2 }))
            .is_ok()
    );
}

#[test]
fn enrolled_ids_are_the_clusters_and_an_unjoined_certificate_expires() {
    let mut s = State::default();
    s.apply(&Command::AdmitCert {
        host: H1,
        fingerprint: "one".into(),
        issuer: None,
        not_before: None,
    })
    .unwrap();
    let Ok(Response::Host { id }) = s.apply(&Command::AssignHostId { at: 1000 }) else {
        panic!("no id");
    };
    assert!(id > H1);
    // Any member may give the fresh id its first certificate, once.
    let first = Proposal {
        by: Some(H1),
        ..Proposal::new(
            1,
            Command::AdmitCert {
                host: id,
                fingerprint: "new".into(),
                issuer: None,
                not_before: None,
            },
        )
    };
    assert!(s.apply_once(&first).is_ok());
    let again = Proposal {
        by: Some(H1),
        ..Proposal::new(
            2,
            Command::AdmitCert {
                host: id,
                fingerprint: "mine-now".into(),
                issuer: None,
                not_before: None,
            },
        )
    };
    assert!(matches!(
        s.apply_once(&again),
        Err(IpamError::NotAuthorized { .. })
    ));
    // Admitted within the window, refused after it unless joined.
    assert_eq!(s.admission("new", 1000 + 10), Admission::Member(id));
    assert_eq!(
        s.admission("new", 1000 + ENROLLMENT_WINDOW_SECS),
        Admission::Refused
    );
    assert_eq!(s.admission("unknown", 1000), Admission::Refused);
    s.apply(&Command::Joined { host: id }).unwrap();
    assert_eq!(s.admission("new", u64::MAX), Admission::Member(id));
    // Renewed: the one before stays admitted until the next renewal.
    s.apply(&Command::AdmitCert {
        host: id,
        fingerprint: "renewed".into(),
        issuer: None,
        not_before: None,
    })
    .unwrap();
    assert_eq!(s.admission("new", 1000), Admission::Member(id));
    s.apply(&Command::AdmitCert {
        host: id,
        fingerprint: "again".into(),
        issuer: None,
        not_before: None,
    })
    .unwrap();
    assert_eq!(s.admission("new", 1000), Admission::Refused);
    assert_eq!(s.admission("renewed", 1000), Admission::Member(id));
    // Removed: its certificate is worthless and its id never comes back.
    s.apply(&Command::ForgetHost { host: id }).unwrap();
    assert_eq!(s.admission("again", 1000), Admission::Refused);
    assert_eq!(s.admission("renewed", 1000), Admission::Refused);
    let Ok(Response::Host { id: next }) = s.apply(&Command::AssignHostId { at: 2000 }) else {
        panic!("no id");
    };
    assert!(next > id);
    // An expired enrollment's certificate goes at the next enrollment.
    let mut t = State::default();
    let Ok(Response::Host { id: stale }) = t.apply(&Command::AssignHostId { at: 0 }) else {
        panic!("no id");
    };
    t.apply(&Command::AdmitCert {
        host: stale,
        fingerprint: "stale".into(),
        issuer: None,
        not_before: None,
    })
    .unwrap();
    t.apply(&Command::AssignHostId {
        at: ENROLLMENT_WINDOW_SECS,
    })
    .unwrap();
    assert_eq!(t.cert_of(stale), None);
}

/// The state without its record of recent proposals (a refused proposal is
/// recorded there so that its retry gets the same answer).
fn without_recent(s: &State) -> State {
    let mut s = s.clone();
    s.recent.clear();
    s
}

fn test_ca(name: &str) -> crate::ClusterCa {
    crate::ClusterCa {
        cert_pem: format!("{name}-cert\n"),
        key_pem: String::new(),
        fingerprint: name.to_owned(),
    }
}

fn admit(s: &mut State, host: HostId, fingerprint: &str, issuer: &str) -> CommandResult {
    s.apply(&Command::AdmitCert {
        host,
        fingerprint: fingerprint.into(),
        issuer: Some(issuer.into()),
        not_before: None,
    })
}

#[test]
fn a_ca_rotation_lasts_until_every_member_renewed_under_the_new_ca() {
    let mut s = State::default();
    let rotate = |s: &mut State, to: &str| {
        s.apply(&Command::RotateCa {
            ca: test_ca(to),
            cross_pem: format!("{to}-cross"),
        })
    };
    assert_eq!(rotate(&mut s, "b"), Err(IpamError::NoCa));
    s.apply(&Command::InitCa { ca: test_ca("a") }).unwrap();
    for (host, fp) in [(H1, "one"), (H2, "two"), (3, "three")] {
        admit(&mut s, host, fp, "a").unwrap();
    }
    assert_eq!(s.trusted_cas().as_deref(), Some("a-cert\n"));
    rotate(&mut s, "b").unwrap();
    assert_eq!(s.ca().map(|c| c.fingerprint.as_str()), Some("b"));
    assert_eq!(s.trusted_cas().as_deref(), Some("b-cert\na-cert\n"));
    assert_eq!(
        rotate(&mut s, "c"),
        Err(IpamError::CaRotationUnderWay { pending: 3 })
    );
    // A renewal issued by the CA before (a race with the rotation) does
    // not count; one by the new CA does; a forgotten host no longer holds
    // the rotation up.
    admit(&mut s, H1, "one-again", "a").unwrap();
    admit(&mut s, H2, "two-new", "b").unwrap();
    s.apply(&Command::ForgetHost { host: 3 }).unwrap();
    let pending = |s: &State| s.ca_rotation().map(|r| r.pending.clone());
    assert_eq!(pending(&s), Some(BTreeSet::from([H1])));
    assert_eq!(
        s.apply(&Command::RetireCa {
            previous: "a".into()
        }),
        Err(IpamError::CaRotationUnderWay { pending: 1 })
    );
    admit(&mut s, H1, "one-new", "b").unwrap();
    assert_eq!(pending(&s), Some(BTreeSet::new()));
    // Retiring another CA changes nothing; retiring this one ends it.
    s.apply(&Command::RetireCa {
        previous: "x".into(),
    })
    .unwrap();
    assert!(s.ca_rotation().is_some());
    s.apply(&Command::RetireCa {
        previous: "a".into(),
    })
    .unwrap();
    assert!(s.ca_rotation().is_none());
    assert_eq!(s.trusted_cas().as_deref(), Some("b-cert\n"));
    assert_eq!(s.invariants(), Ok(()));
    // Any member may rotate (the command comes from its root-only socket).
    let by_member = Proposal {
        by: Some(H2),
        ..Proposal::new(
            7,
            Command::RotateCa {
                ca: test_ca("c"),
                cross_pem: String::new(),
            },
        )
    };
    assert!(s.apply_once(&by_member).is_ok());
}

#[test]
fn a_replica_behind_admits_a_newer_certificate_of_a_member_never_an_older_one() {
    let mut s = State::default();
    for (host, fp, at) in [(H1, "one", 1000), (H2, "two", 1000)] {
        s.apply(&Command::AdmitCert {
            host,
            fingerprint: fp.into(),
            issuer: None,
            not_before: Some(at),
        })
        .unwrap();
    }
    let peer = |fingerprint: &str, host: Option<HostId>, not_before: Option<u64>| PeerCert {
        fingerprint: fingerprint.into(),
        host,
        not_before,
    };
    let now = 5000;
    // Known by fingerprint.
    assert_eq!(
        s.admission_of(&peer("two", None, None), now, false),
        Admission::Member(H2)
    );
    // H2 renewed; this replica has not applied it yet. Only a replica
    // catching up (it does not know its own certificate yet) admits it.
    let renewed = peer("two-renewed", Some(H2), Some(2000));
    assert_eq!(s.admission_of(&renewed, now, false), Admission::Refused);
    assert_eq!(
        s.admission_of(&peer("two-renewed", Some(H2), Some(2000)), now, true),
        Admission::Member(H2)
    );
    // Older, or as old, as the one it knows: refused (a stolen old one).
    for at in [999, 1000] {
        assert_eq!(
            s.admission_of(&peer("two-older", Some(H2), Some(at)), now, true),
            Admission::Refused
        );
    }
    // Naming a host this replica does not know, or saying nothing.
    assert_eq!(
        s.admission_of(&peer("x", Some(9), Some(9000)), now, true),
        Admission::Refused
    );
    assert_eq!(
        s.admission_of(&peer("x", None, None), now, true),
        Admission::Refused
    );
    // A forgotten host's certificates are refused, however new.
    s.apply(&Command::ForgetHost { host: H2 }).unwrap();
    assert_eq!(
        s.admission_of(&peer("two-newest", Some(H2), Some(4000)), now, true),
        Admission::Refused
    );
}

#[test]
fn the_replicated_state_keeps_no_ca_key() {
    let keyed = |name: &str| crate::ClusterCa {
        key_pem: format!("{name}-key"),
        ..test_ca(name)
    };
    // A cluster of format 1 keeps the key its bootstrap sent (the voters
    // take it from there, then the leader seals it).
    let mut s = State::default();
    s.apply(&Command::InitCa { ca: keyed("a") }).unwrap();
    assert_eq!(s.ca(), Some(&keyed("a")));
    // A cluster of format 2 never keeps one.
    let mut s = State::default();
    s.apply(&Command::RaiseFormat { format: 2 }).unwrap();
    s.apply(&Command::InitCa { ca: keyed("a") }).unwrap();
    assert_eq!(s.ca(), Some(&test_ca("a")), "InitCa kept the key");
    s.apply(&Command::RotateCa {
        ca: keyed("b"),
        cross_pem: "x".into(),
    })
    .unwrap();
    assert_eq!(s.ca(), Some(&test_ca("b")), "RotateCa kept the key");
    let snapshot = serde_json::to_string(&s).unwrap();
    assert!(!snapshot.contains("-key"), "{snapshot}");

    // A state from before kept the key: SealCa drops it.
    let mut old: State = serde_json::from_str(&snapshot.replace(
        r#""fingerprint":"b""#,
        r#""key_pem":"b-key","fingerprint":"b""#,
    ))
    .unwrap();
    assert_eq!(old.ca(), Some(&keyed("b")));
    old.apply(&Command::SealCa).unwrap();
    assert_eq!(old.ca(), Some(&test_ca("b")));
    assert_eq!(old.authorize(7, &Command::SealCa), Ok(()));
}

#[test]
fn the_certificates_admitted_now_are_each_members_latest_and_the_one_before() {
    let mut s = State::default();
    admit(&mut s, 1, "one", "ca").unwrap();
    admit(&mut s, 2, "two", "ca").unwrap();
    admit(&mut s, 2, "two-renewed", "ca").unwrap();
    let mut admitted = s.admitted_certs();
    admitted.sort();
    assert_eq!(admitted, ["one", "two", "two-renewed"]);
    for fingerprint in &admitted {
        assert_ne!(
            s.admission(fingerprint, 0),
            Admission::Refused,
            "{fingerprint}"
        );
    }
}

#[test]
fn a_host_publishes_its_own_tunnel_key_and_loses_it_when_forgotten() {
    const KEY: &str = "bm90IGEgcmVhbCBrZXksIGJ1dCBvZiBpdHMgc2hhcGU=";
    let mut s = State::default();
    for (host, name) in [(H1, "host-a"), (H2, "host-b")] {
        s.apply(&Command::RegisterHost {
            host,
            name: name.into(),
            addr: Some(ip("192.0.2.1")),
        })
        .unwrap();
    }
    let set = |host, key: &str| Command::SetTunnelKey {
        host,
        key: key.into(),
        port: 51871,
    };
    // Only the host itself may set its key.
    assert_eq!(
        s.authorize(H2, &set(H1, KEY)).unwrap_err().to_string(),
        format!(
            "host-b may not set-tunnel-key {KEY} port 51871 of host 1: it changes only what its own host holds"
        )
    );
    s.authorize(H1, &set(H1, KEY)).unwrap();
    let before = s.clone();
    assert_eq!(
        s.apply(&set(H1, "short")).unwrap_err().to_string(),
        "\"short\" is not a WireGuard public key (base64 of 32 bytes)"
    );
    assert_eq!(
        s.apply(&set(9, KEY)).unwrap_err().to_string(),
        "host 9 is not a member of the cluster"
    );
    assert_eq!(s, before, "a refused key changes nothing");
    s.apply(&set(H1, KEY)).unwrap();
    assert_eq!(s.tunnel_key(H1).unwrap().key, KEY);
    assert_eq!(s.tunnel_key(H1).unwrap().port, 51871);
    assert_eq!(s.tunnel_key(H1).unwrap().slot, 1);
    s.apply(&set(H2, KEY)).unwrap();
    assert_eq!(s.tunnel_key(H2).unwrap().slot, 2, "one slot per host");
    let rotated = KEY.replace('b', "c");
    s.apply(&set(H1, &rotated)).unwrap();
    assert_eq!(s.tunnel_key(H1).unwrap().key, rotated);
    assert_eq!(
        s.tunnel_key(H1).unwrap().slot,
        1,
        "a new key keeps the slot"
    );
    assert_eq!(set(H1, KEY).format(), 4, "members of format 3 know no keys");
    s.apply(&Command::ForgetHost { host: H1 }).unwrap();
    assert!(
        s.tunnel_key(H1).is_none(),
        "a removed host's key goes with it"
    );
}

#[test]
fn every_host_of_a_lan_network_holds_one_shim_address_until_it_leaves() {
    let mut s = State::default();
    for host in [H1, H2] {
        s.apply(&Command::RegisterHost {
            host,
            name: format!("h{host}"),
            addr: None,
        })
        .unwrap();
        pool(&mut s, host, "192.168.50.0/24", Some("192.168.50.64/26")).unwrap();
    }
    let lan = |id: &str, host| crate::fixture::macvlan(id, host, "192.168.50.0/24");
    s.apply(&Command::CreateNetwork(lan("n1", H1))).unwrap();
    s.apply(&Command::CreateNetwork(lan("n1", H1))).unwrap();
    s.apply(&Command::CreateNetwork(lan("n2", H2))).unwrap();
    let subnet = net("192.168.50.0/24");
    assert_eq!(s.shim_of(H1, subnet), Some(ip("192.168.50.64")));
    assert_eq!(s.shim_of(H2, subnet), Some(ip("192.168.50.65")));
    let taken = request(
        &mut s,
        H1,
        "192.168.50.0/24",
        Some("192.168.50.65"),
        HolderKind::Static,
    );
    assert_eq!(
        taken.unwrap_err().to_string(),
        "address 192.168.50.65 is already in use by the host shim of h2"
    );
    // Without host access no shim.
    let closed = crate::Network {
        id: "n3".into(),
        bridge: "rn-n3".into(),
        overlay: Some("192.168.60.0/24".into()),
        subnet: Some(net("192.168.60.0/24")),
        host_access: false,
        ..lan("n3", H1)
    };
    pool(&mut s, H1, "192.168.60.0/24", None).unwrap();
    s.apply(&Command::CreateNetwork(closed)).unwrap();
    assert_eq!(s.shim_of(H1, net("192.168.60.0/24")), None);
    s.apply(&Command::DeleteNetwork {
        host: H1,
        id: "n1".into(),
    })
    .unwrap();
    assert_eq!(s.shim_of(H1, subnet), None, "released with the network");
    assert_eq!(s.shim_of(H2, subnet), Some(ip("192.168.50.65")));
    // A LAN network needs rustnet's pool: without one nothing is created.
    let orphan = crate::Network {
        id: "n4".into(),
        bridge: "rn-n4".into(),
        overlay: Some("192.168.70.0/24".into()),
        subnet: Some(net("192.168.70.0/24")),
        ..lan("n4", H1)
    };
    assert!(s.apply(&Command::CreateNetwork(orphan)).is_err());
    assert!(s.tables().network("n4").is_none());
    assert!(s.tables().overlay("192.168.70.0/24").is_none());
}

#[test]
fn a_macvlan_mac_is_unique_across_the_cluster() {
    let mut s = State::default();
    s.apply(&Command::RegisterHost {
        host: H1,
        name: "h1".into(),
        addr: None,
    })
    .unwrap();
    for host in [H1, H2] {
        pool(&mut s, host, "192.168.50.0/24", None).unwrap();
        let network = crate::fixture::macvlan(&format!("n{host}"), host, "192.168.50.0/24");
        s.apply(&Command::CreateNetwork(network)).unwrap();
    }
    let endpoint = |id: &str, network: &str, host| Endpoint {
        id: id.into(),
        network_id: network.into(),
        host,
        mac: "02:00:00:00:00:01".parse().unwrap(),
        ..crate::fixture::endpoint(id, network, host)
    };
    s.apply(&Command::CreateEndpoint(endpoint("e1", "n1", H1)))
        .unwrap();
    // The same request again is no conflict.
    s.apply(&Command::CreateEndpoint(endpoint("e1", "n1", H1)))
        .unwrap();
    let refused = s
        .apply(&Command::CreateEndpoint(endpoint("e2", "n2", H2)))
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "MAC 02:00:00:00:00:01 is already used by endpoint e1 on h1, on a macvlan network of the \
         cluster"
    );
    assert!(s.tables().endpoint("e2").is_none());
    assert_eq!(
        Command::CreateNetwork(crate::fixture::macvlan("n", H1, "192.168.50.0/24")).format(),
        5
    );
}
