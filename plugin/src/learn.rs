//! Learning who uses each endpoint: this host's Docker knows the container
//! (name, aliases) behind an endpoint; rustnet asks it in the background,
//! woken by Docker's events and at least every few seconds, and replicates
//! the answer with the endpoint (`Command::NameEndpoint`), so that every
//! host can resolve the name and errors can say whose an address is.
//!
//! Never from inside a plugin request: dockerd may be waiting on it.

use std::sync::Arc;
use std::time::Duration;

use rustnet_ipam::{Command, Container, Endpoint};
use tokio::sync::Notify;

use crate::docker::Docker;
use crate::service::Service;

/// How long the learner waits without events before it looks anyway.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Learns forever: a task follows Docker's events, another sweeps.
pub(crate) async fn learn(service: Arc<Service>, docker: Docker) {
    let wake = Arc::new(Notify::new());
    tokio::spawn(follow_events(docker.clone(), wake.clone()));
    loop {
        if let Err(e) = sweep(&service, &docker).await {
            tracing::debug!(error = %format!("{e:#}"), "learning container names; retrying");
        }
        let _ = tokio::time::timeout(SWEEP_EVERY, wake.notified()).await;
        // Let a burst of events (a container connecting to several
        // networks) settle into one sweep.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn follow_events(docker: Docker, wake: Arc<Notify>) {
    loop {
        if let Err(e) = docker.events(|| wake.notify_one()).await {
            tracing::debug!(error = %format!("{e:#}"), "docker events; reconnecting");
        }
        // Reconnected (dockerd restarted, say): look at once.
        wake.notify_one();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Asks Docker about every network of this host and records what changed.
async fn sweep(service: &Service, docker: &Docker) -> anyhow::Result<()> {
    let store = service.store().await?;
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
    for (network, ours) in endpoints.iter().filter(|(_, e)| !e.is_empty()) {
        let seen = match docker.network_containers(network).await {
            Ok(seen) => seen,
            Err(e) => {
                tracing::debug!(%network, error = %format!("{e:#}"), "inspect network");
                continue;
            }
        };
        for (container, name, endpoint_id) in seen {
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
            tracing::info!(endpoint = %endpoint_id, container = %learned.name, "learned who uses an endpoint");
            store
                .write(Command::NameEndpoint {
                    host,
                    id: endpoint_id,
                    container: learned,
                })
                .await?;
        }
    }
    Ok(())
}

/// Whether what the tables say of an endpoint's container is out of date
/// (never learned, or renamed since) (pure).
fn stale(known: Option<&Container>, id: &str, name: &str) -> bool {
    known.is_none_or(|c| c.id != id || c.name != name)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
