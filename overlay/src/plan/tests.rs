use ipnet::IpNet;

use super::*;
use crate::model::{Link, Remote};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn bridge(name: &str, gw: &str) -> Gateway {
    Gateway {
        name: name.into(),
        addresses: vec![net(gw)],
        mtu: 1500,
        mac: None,
        vxlan: None,
    }
}

fn veth(id: &str, bridge: &str, required: bool) -> Port {
    Port {
        host: format!("rnh{id}"),
        peer: format!("rnc{id}"),
        link: format!("rnm{id}"),
        gateway: bridge.into(),
        mtu: 1500,
        mac: [2, 0, 0, 0, 0, 1],
        required,
    }
}

fn converge(desired: &Desired, observed: &mut Observed) -> Vec<Op> {
    let ops = plan(desired, observed).unwrap();
    for op in &ops {
        crate::fake::simulate(observed, op).unwrap();
    }
    assert_eq!(
        plan(desired, observed).unwrap(),
        vec![],
        "not converged after {ops:?}"
    );
    ops
}

#[test]
fn first_network_creates_its_bridge_with_the_gateway() {
    let desired = Desired {
        gateways: vec![bridge("rn-aaaa", "10.0.42.1/24")],
        ports: vec![],
        ..Default::default()
    };
    let ops = converge(&desired, &mut Observed::default());
    assert_eq!(
        ops,
        vec![
            Op::CreateBridge {
                name: "rn-aaaa".into(),
                mtu: 1500
            },
            Op::AddAddress {
                link: "rn-aaaa".into(),
                address: net("10.0.42.1/24")
            },
            Op::SetUp {
                link: "rn-aaaa".into()
            },
        ]
    );
}

#[test]
fn second_endpoint_only_adds_its_pair() {
    let mut desired = Desired {
        gateways: vec![bridge("rn-aaaa", "10.0.42.1/24")],
        ports: vec![veth("e1", "rn-aaaa", true)],
        ..Default::default()
    };
    let mut observed = Observed::default();
    converge(&desired, &mut observed);
    desired.ports.push(veth("e2", "rn-aaaa", true));
    let ops = converge(&desired, &mut observed);
    assert_eq!(
        ops,
        vec![
            Op::CreateVeth {
                host: "rnhe2".into(),
                peer: "rnce2".into(),
                mtu: 1500,
                mac: [2, 0, 0, 0, 0, 1]
            },
            Op::SetMaster {
                link: "rnhe2".into(),
                master: "rn-aaaa".into()
            },
            Op::SetUp {
                link: "rnhe2".into()
            },
        ]
    );
}

#[test]
fn leftovers_after_a_restart_are_removed_and_foreign_links_kept() {
    let mut observed = Observed::default();
    let old = Desired {
        gateways: vec![
            bridge("rn-old", "10.0.9.1/24"),
            bridge("rn-keep", "10.0.42.1/24"),
        ],
        ports: vec![veth("gone", "rn-old", true), veth("kept", "rn-keep", true)],
        ..Default::default()
    };
    converge(&old, &mut observed);
    observed.links.insert(
        "eth0".into(),
        Link {
            kind: LinkKind::Other,
            mtu: 1500,
            up: true,
            master: None,
            addresses: vec![],
            owned: false,
            inherited: false,
            mac: None,
        },
    );
    // After the restart only rn-keep and its endpoint (whose container end
    // Docker has moved away) remain wanted.
    observed.links.remove("rnckept");
    let now = Desired {
        gateways: vec![bridge("rn-keep", "10.0.42.1/24")],
        ports: vec![veth("kept", "rn-keep", false)],
        ..Default::default()
    };
    let ops = converge(&now, &mut observed);
    assert_eq!(
        ops,
        vec![
            Op::DeleteLink {
                name: "rn-old".into()
            },
            Op::DeleteLink {
                name: "rncgone".into()
            },
            Op::DeleteLink {
                name: "rnhgone".into()
            },
        ]
    );
    assert!(observed.links.contains_key("eth0"));
}

#[test]
fn nothing_to_do_when_the_kernel_matches() {
    let desired = Desired {
        gateways: vec![bridge("rn-aaaa", "10.0.42.1/24")],
        ports: vec![veth("e1", "rn-aaaa", true)],
        ..Default::default()
    };
    let mut observed = Observed::default();
    converge(&desired, &mut observed);
    assert_eq!(plan(&desired, &observed).unwrap(), vec![]);
}

#[test]
fn a_bridge_gone_after_a_reboot_is_rebuilt_without_touching_endpoints() {
    let desired = Desired {
        gateways: vec![bridge("rn-aaaa", "10.0.42.1/24")],
        ports: vec![veth("e1", "rn-aaaa", false)],
        ..Default::default()
    };
    let ops = converge(&desired, &mut Observed::default());
    assert_eq!(ops.len(), 3, "{ops:?}");
    assert!(ops.iter().all(|op| !matches!(op, Op::CreateVeth { .. })));
}

#[test]
fn drifted_links_are_repaired() {
    let desired = Desired {
        gateways: vec![Gateway {
            mtu: 1400,
            ..bridge("rn-aaaa", "10.0.42.1/24")
        }],
        ..Default::default()
    };
    let mut observed = Observed::default();
    converge(&bridge_only("rn-aaaa"), &mut observed);
    let ops = converge(&desired, &mut observed);
    assert_eq!(
        ops,
        vec![
            Op::SetMtu {
                link: "rn-aaaa".into(),
                mtu: 1400
            },
            Op::AddAddress {
                link: "rn-aaaa".into(),
                address: net("10.0.42.1/24")
            },
        ]
    );
}

fn bridge_only(name: &str) -> Desired {
    Desired {
        gateways: vec![Gateway {
            name: name.into(),
            addresses: vec![],
            mtu: 1500,
            mac: None,
            vxlan: None,
        }],
        ..Default::default()
    }
}

#[test]
fn conflicts_are_refused() {
    let mut observed = Observed::default();
    observed.links.insert(
        "eth0".into(),
        Link {
            kind: LinkKind::Other,
            mtu: 1500,
            up: true,
            master: None,
            addresses: vec![],
            owned: false,
            inherited: false,
            mac: None,
        },
    );
    let desired = bridge_only("eth0");
    assert_eq!(
        plan(&desired, &observed),
        Err(PlanError::NotABridge {
            name: "eth0".into()
        })
    );
}

#[test]
fn a_link_of_ours_of_another_kind_at_a_veths_name_is_refused() {
    // A bridge rustnet made, at the name a container's veth wants: not
    // made a port of the network's bridge.
    let desired = Desired {
        gateways: vec![bridge("rn-aaaa", "10.0.42.1/24")],
        ports: vec![veth("ep1", "rn-aaaa", true)],
        ..Default::default()
    };
    let mut observed = Observed::default();
    crate::fake::simulate(
        &mut observed,
        &Op::CreateBridge {
            name: "rnhep1".into(),
            mtu: 1500,
        },
    )
    .unwrap();
    assert_eq!(
        plan(&desired, &observed),
        Err(PlanError::Foreign {
            name: "rnhep1".into()
        })
    );
}

fn overlay(remotes: Vec<Remote>) -> Desired {
    Desired {
        gateways: vec![Gateway {
            name: "rn-ov".into(),
            addresses: vec![],
            mtu: 1450,
            mac: None,
            vxlan: Some("rnx4096".into()),
        }],
        vxlans: vec![crate::Vxlan {
            name: "rnx4096".into(),
            vni: 4096,
            local: "10.99.0.1".parse().unwrap(),
            port: 4789,
            mtu: 1450,
            gateway: "rn-ov".into(),
            gateway_prefix: [2, 0x52, 0x4e],
        }],
        ports: vec![],
        remotes,
        floods: vec![],
        lans: vec![],
    }
}

fn remote(last: u8, vtep: &str) -> Remote {
    Remote {
        device: "rnx4096".into(),
        mac: [2, 0, 0, 0, 0, last],
        ip: format!("10.0.70.{last}").parse().ok(),
        ip6: None,
        vtep: vtep.parse().unwrap(),
    }
}

#[test]
fn first_overlay_network_is_built_on_macvlan_links_of_its_vxlan_device() {
    let mac = [2, 0x52, 0x4e, 0, 0x10, 0];
    let mut desired = overlay(vec![]);
    desired.gateways[0].mac = Some(mac);
    desired.gateways[0].addresses = vec![net("10.0.70.1/24")];
    for (id, required) in [("ep1", true), ("ep2", false)] {
        desired.ports.push(Port {
            mtu: 1450,
            ..veth(id, "rn-ov", required)
        });
    }
    let ops = converge(&desired, &mut Observed::default());
    let macvlan = |name: &str, mac: Option<[u8; 6]>| Op::CreateLan {
        name: name.into(),
        kind: LanKind::Macvlan,
        parent: "rnx4096".into(),
        mac,
        mtu: 1450,
    };
    assert_eq!(
        ops,
        [
            Op::CreateVxlan {
                name: "rnx4096".into(),
                vni: 4096,
                local: "10.99.0.1".parse().unwrap(),
                port: 4789,
                mtu: 1450
            },
            Op::GuardVxlan {
                device: "rnx4096".into(),
                prefix: [2, 0x52, 0x4e],
            },
            Op::SetUp {
                link: "rnx4096".into()
            },
            macvlan("rn-ov", Some(mac)),
            Op::AddAddress {
                link: "rn-ov".into(),
                address: net("10.0.70.1/24")
            },
            Op::SetUp {
                link: "rn-ov".into()
            },
            // The endpoint that needs its link now; the other's is in its
            // container.
            macvlan("rnmep1", Some([2, 0, 0, 0, 0, 1])),
        ]
    );
}

#[test]
fn an_overlay_keeps_the_bridge_an_earlier_release_built() {
    let mut observed = Observed::default();
    for op in [
        Op::CreateBridge {
            name: "rn-ov".into(),
            mtu: 1450,
        },
        Op::SetUp {
            link: "rn-ov".into(),
        },
        Op::CreateVxlan {
            name: "rnx4096".into(),
            vni: 4096,
            local: "10.99.0.1".parse().unwrap(),
            port: 4789,
            mtu: 1450,
        },
    ] {
        crate::fake::simulate(&mut observed, &op).unwrap();
    }
    let mut desired = overlay(vec![]);
    desired.ports.push(veth("ep2", "rn-ov", true));
    let ops = converge(&desired, &mut observed);
    assert_eq!(
        ops,
        [
            Op::SetMaster {
                link: "rnx4096".into(),
                master: "rn-ov".into()
            },
            Op::GuardVxlan {
                device: "rnx4096".into(),
                prefix: [2, 0x52, 0x4e],
            },
            Op::SetUp {
                link: "rnx4096".into()
            },
            Op::CreateVeth {
                host: "rnhep2".into(),
                peer: "rncep2".into(),
                mtu: 1500,
                mac: [2, 0, 0, 0, 0, 1],
            },
            Op::SetMaster {
                link: "rnhep2".into(),
                master: "rn-ov".into()
            },
            Op::SetUp {
                link: "rnhep2".into()
            },
        ]
    );
}

#[test]
fn a_bridge_network_does_not_take_an_overlays_gateway_for_its_bridge() {
    let mut observed = Observed::default();
    converge(&overlay(vec![]), &mut observed);
    assert_eq!(observed.links["rn-ov"].kind, LinkKind::Macvlan);
    assert_eq!(
        plan(&bridge_only("rn-ov"), &observed),
        Err(PlanError::NotABridge {
            name: "rn-ov".into()
        })
    );
}

#[test]
fn a_peer_joining_adds_its_fdb_and_neighbour_entries_only() {
    let mut observed = Observed::default();
    converge(&overlay(vec![remote(2, "10.99.0.2")]), &mut observed);
    let ops = converge(
        &overlay(vec![remote(2, "10.99.0.2"), remote(3, "10.99.0.3")]),
        &mut observed,
    );
    assert_eq!(
        ops,
        [
            Op::AddFdb {
                device: "rnx4096".into(),
                mac: [2, 0, 0, 0, 0, 3],
                vtep: "10.99.0.3".parse().unwrap()
            },
            Op::AddNeighbour {
                device: "rnx4096".into(),
                ip: "10.0.70.3".parse().unwrap(),
                mac: [2, 0, 0, 0, 0, 3]
            },
        ]
    );
}

#[test]
fn a_peer_leaving_removes_its_entries_only() {
    let mut observed = Observed::default();
    converge(
        &overlay(vec![remote(2, "10.99.0.2"), remote(3, "10.99.0.3")]),
        &mut observed,
    );
    let ops = converge(&overlay(vec![remote(2, "10.99.0.2")]), &mut observed);
    assert_eq!(
        ops,
        [
            Op::DelFdb {
                device: "rnx4096".into(),
                mac: [2, 0, 0, 0, 0, 3],
                vtep: "10.99.0.3".parse().unwrap()
            },
            Op::DelNeighbour {
                device: "rnx4096".into(),
                ip: "10.0.70.3".parse().unwrap(),
                mac: [2, 0, 0, 0, 0, 3]
            },
        ]
    );
}

fn flood(vtep: &str) -> crate::Flood {
    crate::Flood {
        device: "rnx4096".into(),
        vtep: vtep.parse().unwrap(),
    }
}

#[test]
fn flood_entries_follow_the_hosts_with_endpoints() {
    let mut observed = Observed::default();
    let with = |floods: Vec<crate::Flood>| Desired {
        floods,
        ..overlay(vec![remote(2, "10.99.0.2"), remote(3, "10.99.0.3")])
    };
    converge(&with(vec![flood("10.99.0.2")]), &mut observed);
    let ops = converge(
        &with(vec![flood("10.99.0.2"), flood("10.99.0.3")]),
        &mut observed,
    );
    assert_eq!(
        ops,
        [Op::AddFlood {
            device: "rnx4096".into(),
            vtep: "10.99.0.3".parse().unwrap()
        }]
    );
    let ops = converge(&with(vec![flood("10.99.0.3")]), &mut observed);
    assert_eq!(
        ops,
        [Op::DelFlood {
            device: "rnx4096".into(),
            vtep: "10.99.0.2".parse().unwrap()
        }],
        "a host without endpoints any more gets no copies; the static entries stay"
    );
}

#[test]
fn a_vxlan_device_going_away_takes_its_entries_along() {
    let mut observed = Observed::default();
    converge(&overlay(vec![remote(2, "10.99.0.2")]), &mut observed);
    let ops = plan(&Desired::default(), &observed).unwrap();
    assert_eq!(
        ops,
        [
            Op::DeleteLink {
                name: "rn-ov".into()
            },
            Op::DeleteLink {
                name: "rnx4096".into()
            },
        ]
    );
}

#[test]
fn a_conflict_costs_only_its_own_network_and_tears_nothing_down() {
    // rn-ov's VXLAN device name is taken by a foreign bridge; rn-ov's own
    // veth (a running container's) exists already.
    let mut desired = overlay(vec![]);
    desired.ports.push(veth("ep1", "rn-ov", false));
    desired.gateways.push(bridge("rn-aaaa", "10.0.42.1/24"));
    let mut observed = Observed::default();
    let mut ours = Observed::default();
    crate::fake::simulate(
        &mut ours,
        &Op::CreateBridge {
            name: "rn-ov".into(),
            mtu: 1450,
        },
    )
    .unwrap();
    crate::fake::simulate(
        &mut ours,
        &Op::CreateVeth {
            host: "rnhep1".into(),
            peer: "rncep1".into(),
            mtu: 1450,
            mac: [2, 0, 0, 0, 0, 1],
        },
    )
    .unwrap();
    observed.links = ours.links;
    let mut foreign = observed.links["rn-ov"].clone();
    foreign.owned = false;
    observed.links.insert("rnx4096".into(), foreign);

    let (ops, conflicts) = plan_isolated(&desired, &observed);
    assert_eq!(
        conflicts,
        [Conflict {
            bridge: "rn-ov".into(),
            error: PlanError::Foreign {
                name: "rnx4096".into()
            }
        }]
    );
    assert!(
        !ops.iter().any(|op| matches!(op, Op::DeleteLink { .. })),
        "the failed network's links stay: {ops:?}"
    );
    assert!(
        ops.iter().all(|op| op.to_string().contains("rn-aaaa")),
        "only the other network is planned: {ops:?}"
    );
    assert!(matches!(&ops[0], Op::CreateBridge { name, .. } if name == "rn-aaaa"));
    assert_eq!(
        plan(&desired, &observed),
        Err(PlanError::Foreign {
            name: "rnx4096".into()
        })
    );
}

#[test]
fn a_bridge_gets_its_fixed_mac_when_created_and_when_it_drifted() {
    let mac = [2, 0x52, 0x4e, 0, 0x10, 1];
    let desired = Desired {
        gateways: vec![Gateway {
            mac: Some(mac),
            ..bridge("rn-aaaa", "10.0.42.1/24")
        }],
        ..Default::default()
    };
    let ops = plan(&desired, &Observed::default()).unwrap();
    assert_eq!(
        ops[1],
        Op::SetMac {
            link: "rn-aaaa".into(),
            mac
        }
    );
    let mut observed = Observed::default();
    for op in &ops {
        crate::fake::simulate(&mut observed, op).unwrap();
    }
    assert_eq!(plan(&desired, &observed).unwrap(), vec![]);
    observed.links.get_mut("rn-aaaa").unwrap().mac = Some([2, 0, 0, 0, 0, 1]);
    assert_eq!(
        plan(&desired, &observed).unwrap(),
        vec![Op::SetMac {
            link: "rn-aaaa".into(),
            mac
        }]
    );
}

/// A desired state drawn from a few networks, endpoints and remotes, with
/// gateway MACs and MTUs that vary between draws.
/// Network `n`'s bridge (or an overlay's gateway): overlays and bridge
/// networks never share a name.
fn network_name(n: u8, overlay: bool) -> String {
    match overlay {
        true => format!("rn-o{n}"),
        false => format!("rn-n{n}"),
    }
}

fn arbitrary_desired() -> impl proptest::strategy::Strategy<Value = Desired> {
    use proptest::prelude::*;
    let network = (0u8..4, any::<bool>(), 1400u32..1501, any::<bool>());
    let networks = proptest::collection::btree_map(0u8..4, network, 0..4);
    let veths = proptest::collection::vec((0u8..4, 0u8..8, any::<bool>()), 0..6);
    let remotes = proptest::collection::vec((0u8..4, 1u8..20, 1u8..4), 0..8);
    let floods = proptest::collection::btree_set((0u8..4, 1u8..4), 0..6);
    (networks, veths, remotes, floods).prop_map(|(networks, veths, remotes, floods)| {
        let mut desired = Desired::default();
        for (n, (_, overlay, mtu, fixed_mac)) in &networks {
            let name = network_name(*n, *overlay);
            desired.gateways.push(Gateway {
                name: name.clone(),
                addresses: vec![net(&format!("10.0.{n}.1/24"))],
                mtu: *mtu,
                mac: fixed_mac.then_some([2, 0x52, 0x4e, 0, 0x10, *n]),
                vxlan: overlay.then(|| format!("rnx{}", 4096 + u32::from(*n))),
            });
            if *overlay {
                desired.vxlans.push(crate::Vxlan {
                    name: format!("rnx{}", 4096 + u32::from(*n)),
                    vni: 4096 + u32::from(*n),
                    local: "10.99.0.1".parse().unwrap(),
                    port: 4789,
                    mtu: *mtu,
                    gateway: name,
                    gateway_prefix: [2, 0x52, 0x4e],
                });
            }
        }
        for (n, e, required) in veths {
            let bridge = network_name(n, networks.get(&n).is_some_and(|net| net.1));
            let id = format!("{n}{e}");
            if networks.contains_key(&n)
                && !desired.ports.iter().any(|v| v.host == format!("rnh{id}"))
            {
                desired.ports.push(Port {
                    mtu: networks[&n].2,
                    ..veth(&id, &bridge, required)
                });
            }
        }
        for (n, last, vtep) in remotes {
            let device = format!("rnx{}", 4096 + u32::from(n));
            let ip = format!("10.0.{n}.{last}").parse().ok();
            let wanted = desired.vxlans.iter().any(|v| v.name == device);
            let taken = desired
                .remotes
                .iter()
                .any(|r| r.device == device && (r.ip == ip || r.mac[5] == last));
            if wanted && !taken {
                desired.remotes.push(Remote {
                    device,
                    mac: [2, 0, 0, 0, n, last],
                    ip,
                    ip6: (vtep == 2).then(|| format!("fd00:{n}::{last}").parse().unwrap()),
                    vtep: format!("10.99.0.{vtep}").parse().unwrap(),
                });
            }
        }
        for (n, vtep) in floods {
            let device = format!("rnx{}", 4096 + u32::from(n));
            if desired.vxlans.iter().any(|v| v.name == device) {
                desired.floods.push(crate::Flood {
                    device,
                    vtep: format!("10.99.0.{vtep}").parse().unwrap(),
                });
            }
        }
        desired
    })
}

proptest::proptest! {
    /// From whatever an earlier desired state left in the kernel (with a
    /// foreign link beside it), one plan reaches the next desired state:
    /// planning again finds nothing to do, and foreign links are kept.
    #[test]
    fn one_plan_converges_from_any_earlier_state(before in arbitrary_desired(), after in arbitrary_desired()) {
        let mut observed = Observed::default();
        observed.links.insert(
            "eth0".into(),
            Link {
                kind: crate::LinkKind::Other,
                mtu: 1500,
                up: true,
                master: None,
                addresses: vec![],
                owned: false,
                inherited: false,
                mac: None,
            },
        );
        for op in plan(&before, &observed).unwrap() {
            crate::fake::simulate(&mut observed, &op).unwrap();
        }
        let ops = plan(&after, &observed).unwrap();
        for op in &ops {
            crate::fake::simulate(&mut observed, op).unwrap();
        }
        proptest::prop_assert_eq!(plan(&after, &observed).unwrap(), vec![], "after {:?}", ops);
        proptest::prop_assert!(observed.links.contains_key("eth0"));
        for bridge in &after.gateways {
            let link = &observed.links[&bridge.name];
            proptest::prop_assert_eq!(link.mtu, bridge.mtu);
            if let Some(mac) = bridge.mac {
                proptest::prop_assert_eq!(link.mac, Some(mac));
            }
        }
    }
}

/// Links made under a lost or replaced state directory: left alone while
/// a container uses them, removed once only inherited VXLAN devices are
/// left on the bridge, and in conflict with a name the new state needs.
#[test]
fn inherited_links_stay_while_they_serve_containers() {
    let inherit = |link: &mut Link| {
        link.owned = false;
        link.inherited = true;
    };
    // The old state: a bridge with a container and an overlay bridge with
    // its VXLAN device only.
    let old = Desired {
        gateways: vec![
            bridge("rn-old", "10.0.42.1/24"),
            bridge("rn-ov", "10.0.70.1/24"),
        ],
        ports: vec![veth("ep1", "rn-old", true)],
        ..Default::default()
    };
    let mut observed = Observed::default();
    converge(&old, &mut observed);
    // Docker moved the container's end into the container.
    observed.links.remove("rncep1");
    let mut vxlan = observed.links["rnhep1"].clone();
    vxlan.kind = LinkKind::Vxlan;
    vxlan.master = Some("rn-ov".into());
    observed.links.insert("rnx4096".into(), vxlan);
    observed.links.values_mut().for_each(inherit);

    let ops = plan(&Desired::default(), &observed).unwrap();
    assert_eq!(
        ops,
        [
            Op::DeleteLink {
                name: "rnx4096".into()
            },
            Op::DeleteLink {
                name: "rn-ov".into()
            }
        ],
        "the bridge with a container stays, its veth too"
    );
    // The container went and Docker handed its end back: the pair goes.
    let mut back = observed.links["rnhep1"].clone();
    back.master = None;
    let mut gone = observed.clone();
    gone.links.insert("rncep1".into(), back);
    assert!(
        plan(&Desired::default(), &gone)
            .unwrap()
            .contains(&Op::DeleteLink {
                name: "rncep1".into()
            })
    );
    // The new state wants the VNI the old one had.
    let new = Desired {
        gateways: vec![bridge("rn-new", "10.0.71.1/24")],
        vxlans: vec![Vxlan {
            name: "rnx4096".into(),
            vni: 4096,
            local: "10.99.0.1".parse().unwrap(),
            port: 4789,
            mtu: 1450,
            gateway: "rn-new".into(),
            gateway_prefix: [2, 0x52, 0x4e],
        }],
        ..Default::default()
    };
    assert_eq!(
        plan(&new, &observed),
        Err(PlanError::Inherited {
            name: "rnx4096".into()
        })
    );
}

fn parent(observed: &mut Observed, name: &str, owned: bool) {
    observed.links.insert(
        name.into(),
        Link {
            kind: LinkKind::Other,
            mtu: 1500,
            up: true,
            master: None,
            addresses: vec![],
            owned,
            inherited: false,
            mac: None,
        },
    );
}

fn lan(parent: &str, routes: &[&str], links: &[(&str, bool)]) -> Lan {
    Lan {
        name: "rnsnet1".into(),
        kind: crate::LanKind::Macvlan,
        parent: parent.into(),
        vlan: None,
        mtu: 1500,
        shim: Some(crate::Shim {
            name: "rnsnet1".into(),
            address: net("192.168.50.64/32"),
            routes: routes.iter().map(|r| r.parse().unwrap()).collect(),
        }),
        links: links
            .iter()
            .map(|(name, required)| crate::LanLink {
                name: (*name).into(),
                mac: Some([2, 0, 0, 0, 0, 9]),
                required: *required,
            })
            .collect(),
    }
}

#[test]
fn a_lan_network_gets_its_shim_routes_and_the_links_endpoints_need() {
    let mut observed = Observed::default();
    parent(&mut observed, "eth0", false);
    let desired = Desired {
        lans: vec![lan(
            "eth0",
            &["192.168.50.65"],
            &[("rnmaaaa", true), ("rnmbbbb", false)],
        )],
        ..Default::default()
    };
    let ops = converge(&desired, &mut observed);
    let create = |name: &str, mac| Op::CreateLan {
        name: name.into(),
        kind: crate::LanKind::Macvlan,
        parent: "eth0".into(),
        mac,
        mtu: 1500,
    };
    assert_eq!(
        ops,
        vec![
            create("rnsnet1", None),
            Op::AddAddress {
                link: "rnsnet1".into(),
                address: net("192.168.50.64/32"),
            },
            Op::SetUp {
                link: "rnsnet1".into()
            },
            create("rnmaaaa", Some([2, 0, 0, 0, 0, 9])),
            Op::AddRoute {
                device: "rnsnet1".into(),
                ip: "192.168.50.65".parse().unwrap(),
            },
        ],
        "a link Docker moved away (not required) is not re-created"
    );
    // The container's link moved into its namespace: nothing to do; a
    // container gone: its route goes, and so does its link once back.
    observed.links.remove("rnmaaaa");
    let joined = Desired {
        lans: vec![lan("eth0", &["192.168.50.65"], &[("rnmaaaa", false)])],
        ..Default::default()
    };
    assert_eq!(plan(&joined, &observed).unwrap(), vec![]);
    let gone = Desired {
        lans: vec![lan("eth0", &[], &[])],
        ..Default::default()
    };
    let ops = converge(&gone, &mut observed);
    assert_eq!(
        ops,
        vec![Op::DelRoute {
            device: "rnsnet1".into(),
            ip: "192.168.50.65".parse().unwrap(),
        }]
    );
    // The network gone: its shim and routes go; the parent stays.
    let ops = converge(&Desired::default(), &mut observed);
    assert_eq!(
        ops,
        vec![Op::DeleteLink {
            name: "rnsnet1".into()
        }]
    );
    assert!(observed.links.contains_key("eth0"));
}

#[test]
fn a_lan_network_without_its_parent_is_refused_alone_and_a_vlan_parent_is_made() {
    let mut observed = Observed::default();
    parent(&mut observed, "eth0", false);
    let missing = lan("eth9", &[], &[("rnmaaaa", true)]);
    let (ops, conflicts) = plan_isolated(
        &Desired {
            lans: vec![missing],
            gateways: vec![bridge("rn-other", "10.0.9.1/24")],
            ..Default::default()
        },
        &observed,
    );
    assert_eq!(conflicts.len(), 1);
    assert_eq!(
        conflicts[0].error.to_string(),
        "parent interface eth9 does not exist (map the network's parent to this host's interface \
         with RUSTNET_PARENTS=NAME=IFACE)"
    );
    assert!(
        ops.iter().all(|op| !op.to_string().contains("macvlan")),
        "{ops:?}"
    );
    assert!(!ops.is_empty(), "the other network is still built");
    // A VLAN parent is created on its base, and removed with the network.
    let vlan = Lan {
        parent: "eth0.50".into(),
        vlan: Some(crate::Vlan {
            name: "eth0.50".into(),
            base: "eth0".into(),
            id: 50,
        }),
        ..lan("eth0.50", &[], &[])
    };
    let with_vlan = Desired {
        lans: vec![vlan.clone()],
        ..Default::default()
    };
    let ops = converge(&with_vlan, &mut observed);
    assert_eq!(
        ops[..2],
        [
            Op::CreateVlan {
                name: "eth0.50".into(),
                base: "eth0".into(),
                id: 50
            },
            Op::SetUp {
                link: "eth0.50".into()
            }
        ]
    );
    let ops = converge(&Desired::default(), &mut observed);
    assert!(ops.contains(&Op::DeleteLink {
        name: "eth0.50".into()
    }));
    // A VLAN without its base: refused, naming the base.
    let (_, conflicts) = plan_isolated(
        &Desired {
            lans: vec![Lan {
                parent: "eth7.50".into(),
                vlan: Some(crate::Vlan {
                    name: "eth7.50".into(),
                    base: "eth7".into(),
                    id: 50,
                }),
                ..vlan
            }],
            ..Default::default()
        },
        &observed,
    );
    assert_eq!(
        conflicts[0].error,
        PlanError::NoParent {
            parent: "eth7".into()
        }
    );
    // A user's link of the shim's name is not taken over.
    parent(&mut observed, "rnsnet1", false);
    assert_eq!(
        plan(&with_vlan, &observed).unwrap_err(),
        PlanError::Foreign {
            name: "rnsnet1".into()
        }
    );
}
