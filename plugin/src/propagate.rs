//! Background duties that keep this host in step with the cluster:
//!
//! - [`follow_changes`]: every replicated change may concern this host
//!   (an endpoint joined an overlay elsewhere): reconcile the data path.
//! - [`propagate`]: an overlay created on any host appears in this host's
//!   Docker as soon as the change is applied here; one removed anywhere
//!   leaves it once no container uses it here. Through the Docker API, from
//!   the background only, retried (soon, then less often) while a step
//!   fails.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustnet_ipam::{Command, Mode, Network, Overlay};
use serde_json::json;

use crate::docker::{Docker, Pool};
use crate::naming::vxlan_name;
use crate::service::Service;

/// Reconciles after every batch of replicated changes (remote endpoints
/// come and go), and at least every few seconds.
pub(crate) async fn follow_changes(service: Arc<Service>) {
    let mut seen = None;
    loop {
        let Ok(store) = service.cluster().await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let changed = store.next_change(seen, Duration::from_secs(5)).await;
        if changed.is_some() {
            seen = changed;
        }
        if let Err(e) = service.reconcile_after_change().await {
            tracing::warn!(error = %e, "reconcile after a cluster change");
            // The store may be unable to answer (stopped, no quorum): no
            // tight loop of failures.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// What this host must do in Docker for one overlay.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The origin host learns the name Docker gave the overlay.
    Name {
        network_id: String,
    },
    /// Another host creates the overlay in its Docker.
    Create,
    /// The overlay is being removed and no container uses it here.
    Remove {
        network_id: String,
    },
    Nothing,
}

/// Decides the step for `overlay` on `host` (pure).
fn step(overlay: &Overlay, local: Option<&Network>, local_endpoints: usize, host: u64) -> Step {
    match local {
        Some(n) if overlay.removing && local_endpoints == 0 => Step::Remove {
            network_id: n.id.clone(),
        },
        Some(n) if overlay.name.is_none() && overlay.origin == host => Step::Name {
            network_id: n.id.clone(),
        },
        None if !overlay.removing && overlay.name.is_some() => Step::Create,
        _ => Step::Nothing,
    }
}

/// First retry of a failed step: the origin's Docker records the network's
/// name only after the plugin's CreateNetwork returned.
const RETRY_FIRST: Duration = Duration::from_millis(20);
/// Slowest retry of a step that keeps failing (a local fault).
const RETRY_LAST: Duration = Duration::from_secs(2);
/// Longest wait for a change before looking anyway.
const IDLE: Duration = Duration::from_secs(5);

/// Brings this host's Docker in line with the tables at every applied
/// change, forever.
pub(crate) async fn propagate(service: Arc<Service>, docker: Docker) {
    let mut seen = None;
    let mut retry = RETRY_FIRST;
    // Since when each overlay to create here has been in this host's state.
    let mut pending = HashMap::new();
    loop {
        let wait = match propagate_once(&service, &docker, &mut pending).await {
            Ok(true) => {
                retry = RETRY_FIRST;
                IDLE
            }
            Ok(false) => {
                let wait = retry;
                retry = (retry * 2).min(RETRY_LAST);
                wait
            }
            Err(e) => {
                tracing::debug!(error = %e, "overlay propagation; retrying");
                RETRY_LAST
            }
        };
        match service.cluster().await {
            Ok(store) => {
                if let Some(applied) = store.next_change(seen, wait).await {
                    seen = Some(applied);
                }
            }
            Err(_) => tokio::time::sleep(wait).await,
        }
    }
}

/// One look at every overlay; whether every step succeeded. `pending`
/// holds since when each overlay waiting to be created here has waited.
async fn propagate_once(
    service: &Service,
    docker: &Docker,
    pending: &mut HashMap<String, Instant>,
) -> anyhow::Result<bool> {
    let store = service.cluster().await?;
    let host = store.id();
    // This host's replica, as the change that woke this pass left it: a
    // linearizable read would cost the leader one per member and change.
    let plan: Vec<(Overlay, Step)> = store
        .local(|s| {
            let tables = s.tables();
            tables
                .overlays()
                .map(|o| {
                    let local = tables.bound_to(&o.key).find(|n| n.host == host);
                    let endpoints = local.map_or(0, |n| tables.endpoints_of(&n.id).count());
                    (o.clone(), step(o, local, endpoints, host))
                })
                .collect()
        })
        .ok_or_else(|| anyhow::anyhow!("the local replica cannot be read"))?;
    let now = Instant::now();
    pending.retain(|key, _| {
        plan.iter()
            .any(|(o, s)| &o.key == key && *s == Step::Create)
    });
    // Each overlay on its own: one that cannot be created here (a local
    // fault) must not hold up the others.
    let mut done = true;
    for (overlay, step) in plan {
        let naming = matches!(step, Step::Name { .. });
        let creating = step == Step::Create;
        if creating {
            pending.entry(overlay.key.clone()).or_insert(now);
        }
        let result = apply_step(&store, docker, &overlay, step).await;
        if creating
            && result.is_ok()
            && let Some(since) = pending.remove(&overlay.key)
        {
            service.metrics().propagated(since.elapsed());
        }
        if let Err(e) = result {
            done = false;
            // The origin's Docker names the network a moment after the
            // plugin's CreateNetwork returned: not worth a warning.
            if naming {
                tracing::debug!(overlay = %overlay.key, error = %format!("{e:#}"), "overlay not named yet");
            } else {
                tracing::warn!(overlay = %overlay.key, error = %format!("{e:#}"), "overlay propagation; retrying");
                service
                    .recent
                    .record(&format!("overlay {}", overlay.key), &format!("{e:#}"));
            }
        }
    }
    Ok(done)
}

async fn apply_step(
    store: &rustnet_ipam::store::Store,
    docker: &Docker,
    overlay: &Overlay,
    step: Step,
) -> anyhow::Result<()> {
    match step {
        Step::Name { network_id } => {
            let name = docker.network_name(&network_id).await?;
            store
                .write(Command::NameOverlay {
                    key: overlay.key.clone(),
                    name,
                })
                .await?;
        }
        Step::Create => {
            let name = overlay.name.clone().unwrap_or_default();
            let mut options = match overlay.mode {
                Mode::Macvlan | Mode::Ipvlan => json!({
                    "mode": overlay.mode.to_string(),
                    "rustnet.overlay": overlay.key,
                    "parent": overlay.parent.clone().unwrap_or_default(),
                    "host_access": overlay.host_access.to_string(),
                }),
                _ => json!({
                    "mode": "overlay",
                    "rustnet.overlay": overlay.key,
                    "vni": overlay.vni.to_string(),
                }),
            };
            if !overlay.multicast.is_off() {
                options["multicast"] = json!(overlay.multicast.to_string());
            }
            if overlay.encrypted {
                options["encrypted"] = json!("true");
            }
            let pools = [
                (Some(overlay.subnet), overlay.gateway),
                (overlay.subnet6, overlay.gateway6),
            ]
            .into_iter()
            .filter_map(|(subnet, gateway)| {
                let subnet = subnet?;
                // The pool's --ip-range: the same request on every host.
                let range = store
                    .local(|s| s.pool(&subnet.to_string()).and_then(|p| p.range))
                    .flatten();
                Some(Pool {
                    subnet: subnet.to_string(),
                    gateway: gateway.map(|g| g.addr().to_string()),
                    range: range.map(|r| r.to_string()),
                })
            })
            .collect();
            match overlay.mode {
                Mode::Overlay => {
                    tracing::info!(%name, vni = overlay.vni, device = %vxlan_name(overlay.vni), "creating overlay in the local Docker");
                }
                mode => {
                    tracing::info!(%name, %mode, parent = ?overlay.parent, "creating LAN network in the local Docker");
                }
            }
            docker.create_overlay(&name, options, pools).await?;
        }
        Step::Remove { network_id } => {
            tracing::info!(network = %network_id, "removing an overlay removed elsewhere");
            docker.remove_network(&network_id).await?;
        }
        Step::Nothing => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rustnet_ipam::Mode;

    use super::*;

    fn overlay(name: Option<&str>, removing: bool, origin: u64) -> Overlay {
        Overlay {
            key: "10.70.0.0/24".into(),
            subnet: "10.70.0.0/24".parse().unwrap(),
            gateway: None,
            vni: 4096,
            mtu: None,
            name: name.map(str::to_owned),
            removing,
            origin,
            multicast: rustnet_ipam::Multicast::Off,
            subnet6: None,
            gateway6: None,
            encrypted: false,
            mode: Mode::Overlay,
            parent: None,
            host_access: false,
        }
    }

    fn network() -> Network {
        Network {
            mode: Mode::Overlay,
            subnet: None,
            gateway: None,
            mtu: 1450,
            overlay: Some("10.70.0.0/24".into()),
            vni: Some(4096),
            ..rustnet_ipam_core::fixture::network("net1", 1)
        }
    }

    #[test]
    fn steps() {
        let n = network();
        let named = Step::Name {
            network_id: "net1".into(),
        };
        let remove = Step::Remove {
            network_id: "net1".into(),
        };
        assert_eq!(step(&overlay(None, false, 1), Some(&n), 0, 1), named);
        assert_eq!(
            step(&overlay(None, false, 1), None, 0, 2),
            Step::Nothing,
            "no name yet"
        );
        assert_eq!(
            step(&overlay(Some("ov"), false, 1), None, 0, 2),
            Step::Create
        );
        assert_eq!(
            step(&overlay(Some("ov"), false, 1), Some(&n), 3, 2),
            Step::Nothing
        );
        assert_eq!(
            step(&overlay(Some("ov"), true, 1), Some(&n), 1, 2),
            Step::Nothing,
            "still in use"
        );
        assert_eq!(step(&overlay(Some("ov"), true, 1), Some(&n), 0, 2), remove);
        assert_eq!(
            step(&overlay(Some("ov"), true, 1), None, 0, 2),
            Step::Nothing,
            "never re-created"
        );
    }
}
