//! Arbitrary command sequences against the replicated state machine: after
//! every command its invariants hold (one holder per address, consistent
//! references, nothing outside its pool, ...: `State::invariants`), and a
//! refused command changes nothing.
#![no_main]

use arbitrary::Arbitrary;
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use rustnet_ipam_core::{
    ClusterCa,
    Command, Container, DefaultPool, Endpoint, HolderKind, Mac, Mode, Network, Proposal, State,
};

/// Subnets that overlap and nest, so that conflicts come up.
const SUBNETS: [&str; 5] = [
    "10.0.0.0/24",
    "10.0.0.0/25",
    "10.0.0.128/25",
    "10.0.1.0/30",
    "10.0.1.0/31",
];

#[derive(Debug, Arbitrary)]
enum Op {
    Pool {
        host: u8,
        subnet: u8,
        range: Option<u8>,
    },
    DefaultPool {
        host: u8,
    },
    ReleasePool {
        host: u8,
        subnet: u8,
    },
    Request {
        host: u8,
        subnet: u8,
        octet: Option<u8>,
        kind: u8,
    },
    Release {
        host: u8,
        subnet: u8,
        octet: u8,
    },
    NameAddress {
        host: u8,
        octet: u8,
    },
    CreateNetwork {
        host: u8,
        network: u8,
        subnet: u8,
        overlay: bool,
        flood: bool,
        encrypted: bool,
        /// With `overlay`: a macvlan network (with a host shim) instead.
        lan: bool,
    },
    /// A host publishes a WireGuard key: a well-formed one, or not.
    SetTunnelKey {
        host: u8,
        key: u8,
    },
    DeleteNetwork {
        host: u8,
        network: u8,
    },
    ForgetNetwork {
        host: u8,
        network: u8,
    },
    CreateEndpoint {
        host: u8,
        endpoint: u8,
        network: u8,
        octet: u8,
    },
    DeleteEndpoint {
        host: u8,
        endpoint: u8,
    },
    Join {
        host: u8,
        endpoint: u8,
        joined: bool,
    },
    Name {
        host: u8,
        endpoint: u8,
    },
    ForgetHost {
        host: u8,
    },
    Enroll {
        at: u8,
    },
    AdmitCert {
        host: u8,
        fingerprint: u8,
        issuer: Option<u8>,
    },
    InitCa {
        ca: u8,
    },
    RotateCa {
        ca: u8,
    },
    RetireCa {
        ca: u8,
    },
    SealCa,
    Joined {
        host: u8,
    },
}

/// An operation and who sends it: the leader's own code, or a member whose
/// write was forwarded (then `State::authorize` decides).
#[derive(Debug, Arbitrary)]
struct Step {
    op: Op,
    by: Option<u8>,
}

fn host(h: u8) -> u64 {
    u64::from(h % 5) + 1
}

/// One of three CAs, told apart by their fingerprint.
fn ca(c: u8) -> ClusterCa {
    ClusterCa {
        cert_pem: format!("cert{}", c % 3),
        key_pem: String::new(),
        fingerprint: format!("ca{}", c % 3),
    }
}

fn subnet(i: u8) -> IpNet {
    SUBNETS[usize::from(i) % SUBNETS.len()]
        .parse()
        .expect("a subnet")
}

fn address(octet: u8) -> std::net::IpAddr {
    std::net::Ipv4Addr::new(10, 0, octet & 1, octet).into()
}

fn command(op: &Op) -> Command {
    match *op {
        Op::Pool {
            host: h,
            subnet: s,
            range,
        } => Command::RequestPool {
            host: host(h),
            pool: Some(subnet(s)),
            range: range.map(subnet),
            v6: false,
            defaults: vec![],
        },
        Op::DefaultPool { host: h } => Command::RequestPool {
            host: host(h),
            pool: None,
            range: None,
            v6: false,
            defaults: vec!["10.5.0.0/23:24".parse::<DefaultPool>().expect("pools")],
        },
        Op::ReleasePool { host: h, subnet: s } => Command::ReleasePool {
            host: host(h),
            pool_id: subnet(s).to_string(),
        },
        Op::Request {
            host: h,
            subnet: s,
            octet,
            kind,
        } => Command::RequestAddress {
            host: host(h),
            pool_id: subnet(s).to_string(),
            address: octet.map(address),
            kind: match kind % 3 {
                0 => HolderKind::Gateway,
                1 => HolderKind::Static,
                _ => HolderKind::Endpoint { name: None },
            },
        },
        Op::Release {
            host: h,
            subnet: s,
            octet,
        } => Command::ReleaseAddress {
            host: host(h),
            pool_id: subnet(s).to_string(),
            address: address(octet),
        },
        Op::NameAddress { host: h, octet } => Command::NameAddress {
            host: host(h),
            address: address(octet),
            container: format!("c{octet}"),
        },
        Op::CreateNetwork {
            host: h,
            network,
            subnet: s,
            overlay,
            flood,
            encrypted,
            lan,
        } => {
            let subnet = subnet(s);
            let mode = match (overlay, lan) {
                (false, _) => Mode::Bridge,
                (true, false) => Mode::Overlay,
                (true, true) => Mode::Macvlan,
            };
            Command::CreateNetwork(Network {
                id: format!("net{}", network % 4),
                host: host(h),
                mode,
                bridge: format!("rn-net{}", network % 4),
                subnet: Some(subnet),
                gateway: None,
                subnet6: None,
                gateway6: None,
                mtu: 1450,
                internal: false,
                overlay: overlay.then(|| subnet.to_string()),
                vni: None,
                multicast: if flood {
                    rustnet_ipam_core::Multicast::Flood
                } else {
                    rustnet_ipam_core::Multicast::Off
                },
                encrypted,
                parent: lan.then(|| "eth0".to_owned()),
                host_access: lan,
            })
        }
        Op::DeleteNetwork { host: h, network } => Command::DeleteNetwork {
            host: host(h),
            id: format!("net{}", network % 4),
        },
        Op::ForgetNetwork { host: h, network } => Command::ForgetNetwork {
            host: host(h),
            id: format!("net{}", network % 4),
        },
        Op::CreateEndpoint {
            host: h,
            endpoint,
            network,
            octet,
        } => Command::CreateEndpoint(Endpoint {
            id: format!("ep{}", endpoint % 8),
            network_id: format!("net{}", network % 4),
            host: host(h),
            address: IpNet::new(address(octet), 24).ok(),
            address6: None,
            mac: Mac([2, 0, 0, 0, 0, endpoint]),
            ports: vec![],
            joined: false,
            dns: vec![],
            container: None,
        }),
        Op::DeleteEndpoint { host: h, endpoint } => Command::DeleteEndpoint {
            host: host(h),
            id: format!("ep{}", endpoint % 8),
        },
        Op::Join {
            host: h,
            endpoint,
            joined,
        } => Command::SetJoined {
            host: host(h),
            id: format!("ep{}", endpoint % 8),
            ports: joined.then(Vec::new),
        },
        Op::Name { host: h, endpoint } => Command::NameEndpoint {
            host: host(h),
            id: format!("ep{}", endpoint % 8),
            container: Container {
                id: format!("c{endpoint}"),
                name: format!("web{endpoint}"),
                aliases: vec![],
            },
        },
        Op::ForgetHost { host: h } => Command::ForgetHost { host: host(h) },
        Op::Enroll { at } => Command::AssignHostId {
            at: u64::from(at) * 60,
        },
        Op::AdmitCert {
            host: h,
            fingerprint,
            issuer,
        } => Command::AdmitCert {
            host: host(h),
            fingerprint: format!("fp{}", fingerprint % 4),
            issuer: issuer.map(|i| format!("ca{}", i % 3)),
            not_before: Some(u64::from(fingerprint)),
        },
        Op::InitCa { ca: c } => Command::InitCa { ca: ca(c) },
        Op::RotateCa { ca: c } => Command::RotateCa {
            ca: ca(c),
            cross_pem: format!("cross{}", c % 3),
        },
        Op::RetireCa { ca: c } => Command::RetireCa {
            previous: format!("ca{}", c % 3),
        },
        Op::SealCa => Command::SealCa,
        Op::Joined { host: h } => Command::Joined { host: host(h) },
        Op::SetTunnelKey { host: h, key } => Command::SetTunnelKey {
            host: host(h),
            key: if key % 5 == 0 {
                "not a key".to_owned()
            } else {
                format!("{}=", char::from(b'A' + key % 26).to_string().repeat(43))
            },
            port: 51871,
        },
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let mut state = State::default();
    for step in &steps {
        let before = state.clone();
        let command = command(&step.op);
        let proposal = Proposal {
            by: step.by.map(host),
            ..Proposal::new(0, command.clone())
        };
        let result = state.apply_once(&proposal);
        if let Some(by) = proposal.by
            && command.host().is_some_and(|h| h != by)
        {
            assert!(result.is_err(), "{command} accepted from host {by}");
        }
        if result.is_err() {
            assert_eq!(state, before, "refused {command} changed the state");
        }
        if let Err(broken) = state.invariants() {
            panic!("after {command}: {broken}");
        }
    }
});
