//! Who a container may find by name (pure): the containers of the
//! overlays it is on, on every host, by name, alias and `name.network`, as
//! Docker's embedded DNS resolves same-host ones.

use std::net::{IpAddr, Ipv4Addr};

use rustnet_ipam::{Endpoint, HostId, Mode, State};

/// What a query asks, as far as the directory answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Question {
    A(String),
    Aaaa(String),
    /// A reverse lookup of an IPv4 address.
    Ptr(Ipv4Addr),
    Other,
}

/// The directory's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Of the asked family: IPv4 for A, IPv6 for AAAA.
    Addresses(Vec<IpAddr>),
    /// The name is known, with no address of the asked family.
    NoData,
    /// The name of an address (`name.network`).
    Name(String),
    /// Not a name of the client's overlays: the upstream answers it.
    Forward,
    /// Not a name of the client's overlays, and the client is on an
    /// `--internal` one: nothing leaves it, not even a query
    /// (CVE-2024-29018).
    Refuse,
}

/// One name record of an overlay.
#[derive(Debug)]
struct Record<'a> {
    network: &'a str,
    endpoint: &'a Endpoint,
    /// `None` on an IPv6-only overlay.
    ip: Option<Ipv4Addr>,
}

/// [`resolve_for`] for a client that is a container endpoint's address.
#[cfg(test)]
pub(crate) fn resolve(
    state: &State,
    host: HostId,
    client: IpAddr,
    question: &Question,
) -> Option<Answer> {
    resolve_for(state, host, client, None, question)
}

/// Answers `question` for the container at `client` on this `host`, or
/// for container `owner` asking from an address that is no endpoint's (its
/// second interface, on docker_gwbridge, from a release before
/// one-interface overlays); `None` when neither is a container endpoint
/// here (nobody else may use the resolver).
pub(crate) fn resolve_for(
    state: &State,
    host: HostId,
    client: IpAddr,
    owner: Option<&str>,
    question: &Question,
) -> Option<Answer> {
    let (records, internal) = records_for(state, host, client, owner)?;
    let answer = match question {
        Question::A(name) => match find(&records, name) {
            found if found.is_empty() => Answer::Forward,
            found => match addresses(&found, |r| r.ip.map(IpAddr::V4)) {
                ips if ips.is_empty() => Answer::NoData,
                ips => Answer::Addresses(ips),
            },
        },
        Question::Aaaa(name) => match find(&records, name) {
            found if found.is_empty() => Answer::Forward,
            found => match addresses(&found, |r| r.endpoint.ipv6().map(IpAddr::V6)) {
                ips if ips.is_empty() => Answer::NoData,
                ips => Answer::Addresses(ips),
            },
        },
        Question::Ptr(ip) => records
            .iter()
            .find(|r| r.ip == Some(*ip))
            .and_then(|r| {
                Some(format!(
                    "{}.{}",
                    r.endpoint.container.as_ref()?.name,
                    r.network
                ))
            })
            .map_or(Answer::Forward, Answer::Name),
        Question::Other => Answer::Forward,
    };
    Some(match answer {
        Answer::Forward if internal => Answer::Refuse,
        answer => answer,
    })
}

/// The records of every overlay the client's container is on, and
/// whether the client asks from an `--internal` network.
fn records_for<'s>(
    state: &'s State,
    host: HostId,
    client: IpAddr,
    owner: Option<&str>,
) -> Option<(Vec<Record<'s>>, bool)> {
    let tables = state.tables();
    let local = |e: &&Endpoint| e.host == host;
    let of_owner =
        |e: &&Endpoint| owner.is_some_and(|id| e.container.as_ref().is_some_and(|c| c.id == id));
    let me = tables
        .endpoints()
        .filter(local)
        .find(|e| {
            [e.address, e.address6]
                .iter()
                .flatten()
                .any(|a| a.addr() == client)
        })
        .or_else(|| tables.endpoints().filter(local).find(of_owner))?;
    let internal = tables.network(&me.network_id).is_none_or(|n| n.internal);
    // The container's endpoints here; just the one while Docker has not
    // been asked who it is.
    let mine: Vec<&Endpoint> = match &me.container {
        Some(c) => tables
            .endpoints()
            .filter(local)
            .filter(|e| e.container.as_ref().is_some_and(|o| o.id == c.id))
            .collect(),
        None => vec![me],
    };
    let mut records = Vec::new();
    for endpoint in mine {
        let Some(network) = tables.network(&endpoint.network_id) else {
            continue;
        };
        let Some(key) = network
            .overlay
            .as_ref()
            .filter(|_| network.mode != Mode::Bridge)
        else {
            continue;
        };
        let Some(overlay) = tables.overlay(key) else {
            continue;
        };
        let name = overlay.name.as_deref().unwrap_or(key);
        for bound in tables.bound_to(key) {
            records.extend(
                tables
                    .endpoints_of(&bound.id)
                    .filter(|e| e.joined && e.container.is_some())
                    .filter(|e| e.address.is_some() || e.address6.is_some())
                    .map(|e| Record {
                        network: name,
                        endpoint: e,
                        ip: e.ipv4(),
                    }),
            );
        }
    }
    Some((records, internal))
}

/// The records of `name`: a name or alias on any of the networks, or
/// `prefix.network` for each way of splitting it (names and network names
/// may hold dots), as Docker tries them.
fn find<'r, 's>(records: &'r [Record<'s>], name: &str) -> Vec<&'r Record<'s>> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let mut found: Vec<&Record<'_>> = records
        .iter()
        .filter(|r| answers_to(r.endpoint, &name))
        .collect();
    if found.is_empty() {
        for (dot, _) in name.match_indices('.') {
            let (prefix, network) = (&name[..dot], &name[dot + 1..]);
            found.extend(
                records
                    .iter()
                    .filter(|r| r.network.eq_ignore_ascii_case(network))
                    .filter(|r| answers_to(r.endpoint, prefix)),
            );
            if !found.is_empty() {
                break;
            }
        }
    }
    found
}

/// The addresses `address` gives of the `found` records, sorted, once each.
fn addresses(
    found: &[&Record<'_>],
    address: impl Fn(&Record<'_>) -> Option<IpAddr>,
) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = found.iter().filter_map(|r| address(r)).collect();
    ips.sort_unstable();
    ips.dedup();
    ips
}

fn answers_to(endpoint: &Endpoint, name: &str) -> bool {
    endpoint.container.as_ref().is_some_and(|c| {
        c.name.eq_ignore_ascii_case(name) || c.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
mod tests;
