use rustnet_ipam::{Command, Container, Mac, Network};
use rustnet_ipam_core::fixture;

use super::*;

const H1: HostId = 1;
const H2: HostId = 2;

fn overlay(state: &mut State, host: HostId, id: &str, key: &str, name: &str) {
    overlay_with(state, host, id, key, name, false);
}

fn overlay_with(state: &mut State, host: HostId, id: &str, key: &str, name: &str, internal: bool) {
    let network = Network {
        internal,
        ..fixture::overlay(id, host, key)
    };
    state.apply(&Command::CreateNetwork(network)).unwrap();
    state
        .apply(&Command::NameOverlay {
            key: key.into(),
            name: name.into(),
        })
        .unwrap();
}

/// An endpoint of `network` at `ip`, joined, used by container `name`.
fn container(
    state: &mut State,
    host: HostId,
    network: &str,
    ip: &str,
    name: &str,
    aliases: &[&str],
) {
    let id = format!("ep-{network}-{name}");
    let endpoint = Endpoint {
        address: Some(format!("{ip}/24").parse().unwrap()),
        mac: Mac::random(),
        ..fixture::endpoint(&id, network, host)
    };
    state.apply(&Command::CreateEndpoint(endpoint)).unwrap();
    let join = Command::SetJoined {
        host,
        id: id.clone(),
        ports: Some(vec![]),
    };
    state.apply(&join).unwrap();
    let named = Command::NameEndpoint {
        host,
        id,
        container: Container {
            id: format!("id-{name}"),
            name: name.into(),
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
        },
    };
    state.apply(&named).unwrap();
}

/// Overlay `front` (10.0.80.0/24) on both hosts, overlay `back`
/// (10.0.81.0/24) on both; c1 on H1 in front, web1 on H2 in front (alias
/// www), db on H2 in back only.
fn cluster() -> State {
    let mut s = State::default();
    overlay(&mut s, H1, "f1", "10.0.80.0/24", "front");
    overlay(&mut s, H2, "f2", "10.0.80.0/24", "front");
    overlay(&mut s, H1, "b1", "10.0.81.0/24", "back");
    overlay(&mut s, H2, "b2", "10.0.81.0/24", "back");
    container(&mut s, H1, "f1", "10.0.80.2", "c1", &[]);
    container(
        &mut s,
        H2,
        "f2",
        "10.0.80.3",
        "web1",
        &["www", "0123456789ab"],
    );
    container(&mut s, H2, "b2", "10.0.81.3", "db", &[]);
    s
}

fn ask(s: &State, client: &str, q: Question) -> Option<Answer> {
    resolve(s, H1, client.parse::<IpAddr>().unwrap(), &q)
}

fn a(name: &str) -> Question {
    Question::A(name.into())
}

fn at(ip: &str) -> Answer {
    Answer::Addresses(vec![ip.parse().unwrap()])
}

#[test]
fn containers_on_other_hosts_resolve_by_name_alias_and_name_dot_network() {
    let s = cluster();
    for name in [
        "web1",
        "WEB1.",
        "www",
        "0123456789ab",
        "web1.front",
        "www.front",
    ] {
        assert_eq!(
            ask(&s, "10.0.80.2", a(name)),
            Some(at("10.0.80.3")),
            "{name}"
        );
    }
    assert_eq!(
        ask(&s, "10.0.80.2", Question::Aaaa("web1".into())),
        Some(Answer::NoData),
        "known name, no IPv6: answered empty, not forwarded"
    );
    assert_eq!(
        ask(&s, "10.0.80.2", Question::Ptr("10.0.80.3".parse().unwrap())),
        Some(Answer::Name("web1.front".into()))
    );
}

#[test]
fn names_of_networks_the_container_is_not_on_and_other_names_are_forwarded() {
    let s = cluster();
    for name in ["db", "db.back", "web1.back", "example.org", "web"] {
        assert_eq!(
            ask(&s, "10.0.80.2", a(name)),
            Some(Answer::Forward),
            "{name}"
        );
    }
    assert_eq!(ask(&s, "10.0.80.2", Question::Other), Some(Answer::Forward));
}

#[test]
fn only_local_container_endpoints_may_ask() {
    let s = cluster();
    assert_eq!(
        ask(&s, "10.0.80.3", a("web1")),
        None,
        "H2's container asks H2"
    );
    assert_eq!(ask(&s, "10.99.0.7", a("web1")), None, "not a container");
}

#[test]
fn a_container_on_two_overlays_finds_both_and_left_ones_vanish() {
    let mut s = cluster();
    // c1 connected to back too: the same container, a second endpoint.
    container(&mut s, H1, "b1", "10.0.81.2", "c1", &[]);
    assert_eq!(ask(&s, "10.0.80.2", a("db")), Some(at("10.0.81.3")));
    assert_eq!(ask(&s, "10.0.81.2", a("web1")), Some(at("10.0.80.3")));
    let leave = Command::SetJoined {
        host: H2,
        id: "ep-f2-web1".into(),
        ports: None,
    };
    s.apply(&leave).unwrap();
    assert_eq!(ask(&s, "10.0.80.2", a("web1")), Some(Answer::Forward));
}

#[test]
fn an_alias_shared_by_several_containers_gives_every_address() {
    let mut s = cluster();
    container(&mut s, H1, "f1", "10.0.80.4", "web2", &["www"]);
    assert_eq!(
        ask(&s, "10.0.80.2", a("www")),
        Some(Answer::Addresses(vec![
            "10.0.80.3".parse().unwrap(),
            "10.0.80.4".parse().unwrap()
        ]))
    );
}

#[test]
fn an_internal_overlay_resolves_its_names_and_lets_no_query_out() {
    let mut s = cluster();
    overlay_with(&mut s, H1, "i1", "10.0.82.0/24", "inner", true);
    overlay_with(&mut s, H2, "i2", "10.0.82.0/24", "inner", true);
    container(&mut s, H1, "i1", "10.0.82.2", "a", &[]);
    container(&mut s, H2, "i2", "10.0.82.3", "b", &[]);
    assert_eq!(ask(&s, "10.0.82.2", a("b")), Some(at("10.0.82.3")));
    assert_eq!(ask(&s, "10.0.82.2", a("example.org")), Some(Answer::Refuse));
    assert_eq!(ask(&s, "10.0.82.2", Question::Other), Some(Answer::Refuse));
}

#[test]
fn a_container_asking_from_its_legacy_second_interface_is_known_by_its_id() {
    let s = cluster();
    let legacy: Ipv4Addr = "172.18.0.3".parse().unwrap();
    // c1 (id-c1) asks from docker_gwbridge: the same answers as from its
    // overlay address.
    assert_eq!(
        resolve_for(&s, H1, legacy.into(), Some("id-c1"), &a("web1")),
        Some(at("10.0.80.3"))
    );
    assert_eq!(
        resolve_for(&s, H1, legacy.into(), Some("id-c1"), &a("db")),
        Some(Answer::Forward)
    );
    // Anyone else there, or a container of another host, is no client.
    assert_eq!(resolve_for(&s, H1, legacy.into(), None, &a("web1")), None);
    assert_eq!(
        resolve_for(&s, H1, legacy.into(), Some("id-web1"), &a("c1")),
        None
    );
}

#[test]
fn a_dual_stack_container_has_an_aaaa_record_across_hosts() {
    let mut s = State::default();
    overlay(&mut s, H1, "f1", "10.0.80.0/24", "front");
    overlay(&mut s, H2, "f2", "10.0.80.0/24", "front");
    container(&mut s, H1, "f1", "10.0.80.2", "c1", &[]);
    let endpoint = Endpoint {
        address: Some("10.0.80.3/24".parse().unwrap()),
        address6: Some("fd00:80::3/64".parse().unwrap()),
        mac: Mac::random(),
        ..fixture::endpoint("ep-web", "f2", H2)
    };
    s.apply(&Command::CreateEndpoint(endpoint)).unwrap();
    let join = Command::SetJoined {
        host: H2,
        id: "ep-web".into(),
        ports: Some(vec![]),
    };
    s.apply(&join).unwrap();
    let named = Command::NameEndpoint {
        host: H2,
        id: "ep-web".into(),
        container: Container {
            id: "id-web".into(),
            name: "web".into(),
            aliases: vec![],
        },
    };
    s.apply(&named).unwrap();
    assert_eq!(
        ask(&s, "10.0.80.2", Question::Aaaa("web.front".into())),
        Some(at("fd00:80::3"))
    );
    assert_eq!(ask(&s, "10.0.80.2", a("web")), Some(at("10.0.80.3")));
}

#[test]
fn an_ipv6_only_container_finds_others_by_their_ipv6_address() {
    let mut s = State::default();
    let key = "fd00:44::/64";
    for (host, id) in [(H1, "o1"), (H2, "o2")] {
        let network = Network {
            subnet: None,
            gateway: None,
            subnet6: key.parse().ok(),
            overlay: Some(key.into()),
            ..fixture::overlay(id, host, key)
        };
        state_apply(&mut s, Command::CreateNetwork(network));
    }
    for (host, network, ip, name) in [
        (H1, "o1", "fd00:44::2", "c1"),
        (H2, "o2", "fd00:44::3", "web1"),
    ] {
        let id = format!("ep-{name}");
        let endpoint = Endpoint {
            address: None,
            address6: Some(format!("{ip}/64").parse().unwrap()),
            mac: Mac::random(),
            ..fixture::endpoint(&id, network, host)
        };
        state_apply(&mut s, Command::CreateEndpoint(endpoint));
        state_apply(
            &mut s,
            Command::SetJoined {
                host,
                id: id.clone(),
                ports: Some(vec![]),
            },
        );
        let container = Container {
            id: format!("id-{name}"),
            name: name.into(),
            aliases: vec![],
        };
        state_apply(
            &mut s,
            Command::NameEndpoint {
                host,
                id,
                container,
            },
        );
    }
    assert_eq!(
        ask(&s, "fd00:44::2", Question::Aaaa("web1".into())),
        Some(Answer::Addresses(vec!["fd00:44::3".parse().unwrap()]))
    );
    assert_eq!(
        ask(&s, "fd00:44::2", a("web1")),
        Some(Answer::NoData),
        "no IPv4 to give"
    );
    assert_eq!(
        ask(&s, "fd00:44::2", a("example.com")),
        Some(Answer::Forward)
    );
    assert_eq!(
        ask(&s, "fd00:44::9", a("web1")),
        None,
        "not a container here"
    );
}

fn state_apply(s: &mut State, command: Command) {
    s.apply(&command).unwrap();
}
