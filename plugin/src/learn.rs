//! Learning who uses each endpoint: this host's Docker knows the container
//! (name, aliases) behind an endpoint; rustnet asks it in the background,
//! woken by Docker's events and at least every few seconds, and replicates
//! the answer with the endpoint (`Command::NameEndpoint`), so that every
//! host can resolve the name and errors can say whose an address is.
//!
//! The same look finds leaks: an endpoint of this host that Docker has
//! not shown on its network for [`LEAK_GRACE`] (its container went while
//! rustnet was down or cut off, so Docker's DeleteEndpoint and
//! ReleaseAddress never arrived) is deleted and its address released.
//!
//! Never from inside a plugin request: dockerd may be waiting on it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustnet_ipam::{Command, Container, Endpoint, HostId, State};
use tokio::sync::Notify;

use crate::docker::{Attached, Docker};
use crate::service::Service;

/// How long the learner waits without events before it looks anyway.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How long Docker must not show an endpoint before rustnet takes it for
/// a leak: far longer than Docker takes from CreateEndpoint to showing
/// the container on the network.
const LEAK_GRACE: Duration = Duration::from_secs(20);

/// Learns forever: a task follows Docker's events, another sweeps.
pub(crate) async fn learn(service: Arc<Service>, docker: Docker) {
    let wake = Arc::new(Notify::new());
    tokio::spawn(follow_events(service.clone(), docker.clone(), wake.clone()));
    let mut missing = Missing::default();
    loop {
        if let Err(e) = sweep(&service, &docker, &mut missing).await {
            tracing::debug!(error = %format!("{e:#}"), "learning container names; retrying");
        }
        let _ = tokio::time::timeout(SWEEP_EVERY, wake.notified()).await;
        // Let a burst of events (a container connecting to several
        // networks) settle into one sweep.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Follows Docker's events, noting the engine's version each time it
/// connects (dockerd may have been upgraded since).
async fn follow_events(service: Arc<Service>, docker: Docker, wake: Arc<Notify>) {
    loop {
        match docker.version().await {
            Ok(version) => service.set_engine(version),
            Err(e) => tracing::debug!(error = %format!("{e:#}"), "docker version"),
        }
        if let Err(e) = docker.events(|| wake.notify_one()).await {
            tracing::debug!(error = %format!("{e:#}"), "docker events; reconnecting");
        }
        // Reconnected (dockerd restarted, say): look at once.
        wake.notify_one();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Since when Docker has not shown each endpoint, by endpoint id.
#[derive(Debug, Default)]
struct Missing {
    since: BTreeMap<String, Instant>,
}

impl Missing {
    /// Records one look at `network`: `ours` are its endpoints in the
    /// tables, `seen` those Docker shows. The endpoints missing for longer
    /// than `grace` (pure, given `now`).
    fn look(
        &mut self,
        ours: &[Endpoint],
        seen: &BTreeSet<String>,
        now: Instant,
        grace: Duration,
    ) -> Vec<String> {
        let mut leaked = Vec::new();
        for endpoint in ours {
            if seen.contains(&endpoint.id) {
                self.since.remove(&endpoint.id);
                continue;
            }
            let since = *self.since.entry(endpoint.id.clone()).or_insert(now);
            if now.duration_since(since) >= grace {
                leaked.push(endpoint.id.clone());
            }
        }
        leaked
    }

    /// Forgets endpoints that are gone from the tables.
    fn keep(&mut self, known: &BTreeSet<&str>) {
        self.since.retain(|id, _| known.contains(id.as_str()));
    }
}

/// The commands that free a leaked endpoint of `host`: the endpoint, then
/// its addresses (pure).
fn release(state: &State, host: HostId, id: &str) -> Vec<Command> {
    let Some(endpoint) = state.tables().endpoint(id).filter(|e| e.host == host) else {
        return Vec::new();
    };
    let mut commands = vec![Command::DeleteEndpoint {
        host,
        id: id.to_owned(),
    }];
    for address in [endpoint.address, endpoint.address6].into_iter().flatten() {
        let address = address.addr();
        // Only what this host holds: the pool holding the address, once.
        let pool = state.pools().find(|p| p.subnet.contains(&address));
        if let Some(pool) =
            pool.filter(|p| p.addresses.get(&address).is_some_and(|h| h.host == host))
        {
            commands.push(Command::ReleaseAddress {
                host,
                pool_id: pool.id(),
                address,
            });
        }
    }
    commands
}

/// Asks Docker about every network of this host, records what changed,
/// and frees what Docker has not shown for a while.
async fn sweep(service: &Service, docker: &Docker, missing: &mut Missing) -> anyhow::Result<()> {
    let store = service.cluster().await?;
    let host = store.id();
    let endpoints: Vec<(String, Vec<Endpoint>)> = store
        .local(|s| {
            let tables = s.tables();
            tables
                .networks_of(host)
                .map(|n| (n.id.clone(), tables.endpoints_of(&n.id).cloned().collect()))
                .collect()
        })
        .unwrap_or_default();
    let known: BTreeSet<&str> = endpoints
        .iter()
        .flat_map(|(_, e)| e.iter().map(|e| e.id.as_str()))
        .collect();
    missing.keep(&known);
    // Which containers are on which of this host's networks, as Docker
    // shows them.
    let mut on: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (network, ours) in endpoints.iter().filter(|(_, e)| !e.is_empty()) {
        let seen = match docker.network_containers(network).await {
            Ok(seen) => seen,
            Err(e) => {
                // Nothing is taken for a leak while Docker does not answer.
                tracing::debug!(%network, error = %format!("{e:#}"), "inspect network");
                continue;
            }
        };
        for attached in &seen {
            on.entry(attached.container.clone())
                .or_default()
                .push(network.clone());
        }
        let shown: BTreeSet<String> = seen.iter().map(|a| a.endpoint.clone()).collect();
        for id in missing.look(ours, &shown, Instant::now(), LEAK_GRACE) {
            let commands = store.local(|s| release(s, host, &id)).unwrap_or_default();
            tracing::warn!(endpoint = %id, %network, "Docker no longer has this endpoint: releasing it");
            for command in commands {
                store.write(command).await?;
            }
        }
        for Attached {
            container,
            name,
            endpoint: endpoint_id,
            ..
        } in seen
        {
            let Some(endpoint) = ours.iter().find(|e| e.id == endpoint_id) else {
                continue;
            };
            if !stale(endpoint.container.as_ref(), &container, &name) {
                continue;
            }
            let aliases = docker.aliases(&container, &endpoint_id).await?;
            let learned = Container {
                id: container,
                name,
                aliases,
            };
            let command = Command::NameEndpoint {
                host,
                id: endpoint_id.clone(),
                container: learned,
            };
            // While a member of an older release cannot read it (an
            // upgrade under way, rustnet status says so): learned again
            // once every member can.
            if let Err(e) = store.admit_format(&command) {
                tracing::debug!(endpoint = %endpoint_id, error = %e, "naming waits");
                continue;
            }
            tracing::info!(endpoint = %endpoint_id, %command, "learned who uses an endpoint");
            store.write(command).await?;
            service.metrics().endpoint_named(&endpoint_id);
        }
    }
    note_legacy(service, docker, &on).await;
    name_addresses(service, docker).await
}

/// Finds the containers of this host's networks that also sit on
/// docker_gwbridge (started by a release before one-interface overlays:
/// their DNS queries leave from there) and tells the resolver.
async fn note_legacy(service: &Service, docker: &Docker, on: &BTreeMap<String, Vec<String>>) {
    // No container here, or no docker_gwbridge (the usual case): nobody
    // has a legacy interface.
    let gateways = if on.is_empty() {
        Vec::new()
    } else {
        docker
            .network_containers(rustnet_overlay::firewall::LEGACY_BRIDGE)
            .await
            .unwrap_or_default()
    };
    service.note_legacy(legacy(&gateways, on)).await;
}

/// The legacy interfaces of the containers `on` this host's networks,
/// from docker_gwbridge's containers (pure).
fn legacy(gateways: &[Attached], on: &BTreeMap<String, Vec<String>>) -> crate::dns::Legacy {
    let mut legacy = crate::dns::Legacy::default();
    for attached in gateways {
        let (Some(std::net::IpAddr::V4(address)), Some(networks)) =
            (attached.address, on.get(&attached.container))
        else {
            continue;
        };
        legacy.owners.insert(address, attached.container.clone());
        for network in networks {
            legacy
                .by_network
                .entry(network.clone())
                .or_default()
                .push(address);
        }
    }
    legacy
}

/// Names the holders of this host's addresses in IPAM-only networks
/// (Docker's bridge driver with rustnet's IPAM), so that "address in use"
/// can say which container: Docker 20.10's RequestAddress does not.
async fn name_addresses(service: &Service, docker: &Docker) -> anyhow::Result<()> {
    let store = service.cluster().await?;
    let host = store.id();
    // Nothing to ask Docker while every address of this host is named.
    if !store.local(|s| unnamed(s, host)).unwrap_or(false) {
        return Ok(());
    }
    for network in docker.ipam_only_networks().await? {
        let seen = docker.network_containers(&network).await?;
        let commands = store.local(|s| to_name(s, host, &seen)).unwrap_or_default();
        for command in commands {
            if store.admit_format(&command).is_err() {
                continue;
            }
            tracing::info!(%command, "learned who uses an address");
            store.write(command).await?;
        }
    }
    Ok(())
}

/// Whether `host` holds an address no container name is known for, the
/// gateways and rustnet's own endpoints aside (pure).
fn unnamed(state: &State, host: HostId) -> bool {
    let tables = state.tables();
    state.pools().any(|p| {
        p.addresses.iter().any(|(address, h)| {
            h.host == host
                && !h.kind.is_shared()
                && h.container.is_none()
                && tables.endpoint_at(*address).is_none()
        })
    })
}

/// The commands that name what `host` holds after what Docker shows on a
/// network, where the tables do not say it already (pure).
fn to_name(state: &State, host: HostId, seen: &[Attached]) -> Vec<Command> {
    seen.iter()
        .filter_map(|a| {
            let address = a.address?;
            let holder = state.holder(address)?;
            let wanted = holder.host == host
                && !holder.kind.is_shared()
                && holder.container.as_deref() != Some(a.name.as_str());
            wanted.then(|| Command::NameAddress {
                host,
                address,
                container: a.name.clone(),
            })
        })
        .collect()
}

/// Whether what the tables say of an endpoint's container is out of date
/// (never learned, or renamed since) (pure).
fn stale(known: Option<&Container>, id: &str, name: &str) -> bool {
    known.is_none_or(|c| c.id != id || c.name != name)
}

#[cfg(test)]
mod tests {
    use rustnet_ipam::{DefaultPool, HolderKind, Mac, Network, Response};

    use super::*;

    fn endpoint(id: &str) -> Endpoint {
        Endpoint {
            mac: Mac::random(),
            joined: true,
            ..rustnet_ipam_core::fixture::endpoint(id, "net1", 1)
        }
    }

    #[test]
    fn an_endpoint_docker_does_not_show_is_a_leak_only_after_the_grace() {
        let mut missing = Missing::default();
        let ours = [endpoint("a"), endpoint("b")];
        let t0 = Instant::now();
        let grace = Duration::from_secs(20);
        let seen_a = BTreeSet::from(["a".to_owned()]);
        assert!(missing.look(&ours, &seen_a, t0, grace).is_empty());
        assert!(
            missing
                .look(&ours, &seen_a, t0 + Duration::from_secs(19), grace)
                .is_empty()
        );
        assert_eq!(missing.look(&ours, &seen_a, t0 + grace, grace), ["b"]);
        // Seen again: the clock starts over.
        let both = BTreeSet::from(["a".to_owned(), "b".to_owned()]);
        assert!(missing.look(&ours, &both, t0 + grace, grace).is_empty());
        assert!(
            missing
                .look(&ours, &seen_a, t0 + grace * 2, grace)
                .is_empty()
        );
        missing.keep(&BTreeSet::from(["a"]));
        assert!(missing.since.is_empty());
    }

    #[test]
    fn a_leaked_endpoint_goes_with_its_address_and_only_this_hosts() {
        let mut state = State::default();
        let defaults: Vec<DefaultPool> = vec!["10.128.0.0/9:24".parse().unwrap()];
        let pool = Command::RequestPool {
            host: 1,
            pool: Some("10.0.42.0/24".parse().unwrap()),
            range: None,
            v6: false,
            defaults,
        };
        let Ok(Response::Pool { pool_id, .. }) = state.apply(&pool) else {
            panic!("pool");
        };
        let take = Command::RequestAddress {
            host: 1,
            pool_id: pool_id.clone(),
            address: Some("10.0.42.2".parse().unwrap()),
            kind: HolderKind::Static,
        };
        state.apply(&take).unwrap();
        let network = Network {
            gateway: None,
            ..rustnet_ipam_core::fixture::network("net1", 1)
        };
        state.apply(&Command::CreateNetwork(network)).unwrap();
        state
            .apply(&Command::CreateEndpoint(endpoint("a")))
            .unwrap();
        assert!(
            release(&state, 2, "a").is_empty(),
            "another host's endpoint"
        );
        let commands = release(&state, 1, "a");
        assert_eq!(
            commands,
            [
                Command::DeleteEndpoint {
                    host: 1,
                    id: "a".into()
                },
                Command::ReleaseAddress {
                    host: 1,
                    pool_id,
                    address: "10.0.42.2".parse().unwrap()
                }
            ]
        );
        for command in &commands {
            state.apply(command).unwrap();
        }
        assert!(state.tables().endpoint("a").is_none());
        assert!(state.holder("10.0.42.2".parse().unwrap()).is_none());
    }

    #[test]
    fn ipam_only_addresses_are_named_by_their_holder_once() {
        let mut state = State::default();
        let pool = Command::RequestPool {
            host: 1,
            pool: Some("10.0.43.0/29".parse().unwrap()),
            range: None,
            v6: false,
            defaults: vec![],
        };
        let Ok(Response::Pool { pool_id, .. }) = state.apply(&pool) else {
            panic!("pool");
        };
        for (address, kind) in [
            ("10.0.43.1", HolderKind::Gateway),
            ("10.0.43.6", HolderKind::Static),
        ] {
            let take = Command::RequestAddress {
                host: 1,
                pool_id: pool_id.clone(),
                address: Some(address.parse().unwrap()),
                kind,
            };
            state.apply(&take).unwrap();
        }
        let attached = |name: &str, address: &str| Attached {
            container: "c1".into(),
            name: name.into(),
            endpoint: "e1".into(),
            address: Some(address.parse().unwrap()),
        };
        assert!(unnamed(&state, 1));
        assert!(!unnamed(&state, 2), "host 2 holds nothing");
        let seen = [attached("fixed", "10.0.43.6"), attached("gw", "10.0.43.1")];
        assert!(to_name(&state, 2, &seen).is_empty(), "not host 2's");
        let commands = to_name(&state, 1, &seen);
        assert_eq!(
            commands,
            [Command::NameAddress {
                host: 1,
                address: "10.0.43.6".parse().unwrap(),
                container: "fixed".into()
            }],
            "never the gateway"
        );
        state.apply(&commands[0]).unwrap();
        assert!(!unnamed(&state, 1));
        assert!(to_name(&state, 1, &seen).is_empty(), "named already");
        assert_eq!(
            to_name(&state, 1, &[attached("renamed", "10.0.43.6")]).len(),
            1
        );
    }

    #[test]
    fn unknown_and_renamed_containers_are_looked_up_again() {
        let web = Container {
            id: "c1".into(),
            name: "web".into(),
            aliases: vec!["c1".into()],
        };
        assert!(stale(None, "c1", "web"));
        assert!(!stale(Some(&web), "c1", "web"));
        assert!(stale(Some(&web), "c1", "web-renamed"));
        assert!(stale(Some(&web), "c2", "web"));
    }

    #[test]
    fn containers_on_docker_gwbridge_and_a_network_here_have_a_legacy_interface() {
        let attached = |container: &str, address: &str| Attached {
            container: container.into(),
            name: container.into(),
            endpoint: format!("ep-{container}"),
            address: Some(address.parse().unwrap()),
        };
        let gateways = [
            attached("old", "172.18.0.3"),
            attached("swarm", "172.18.0.4"),
        ];
        let on = BTreeMap::from([("old".to_owned(), vec!["net1".to_owned(), "net2".to_owned()])]);
        let found = legacy(&gateways, &on);
        let old: std::net::Ipv4Addr = "172.18.0.3".parse().unwrap();
        // Only rustnet's containers: a swarm container there is not asked.
        assert_eq!(found.owners, BTreeMap::from([(old, "old".to_owned())]));
        assert_eq!(
            found.by_network,
            BTreeMap::from([
                ("net1".to_owned(), vec![old]),
                ("net2".to_owned(), vec![old])
            ])
        );
    }
}
