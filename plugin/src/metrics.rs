//! Prometheus metrics (`RUSTNET_METRICS_ADDR`, off by default): plugin
//! requests, replicated writes, reconcile passes, firewall rewrites and
//! the propagation and name-learning lags are counted as they happen; the
//! Raft figures, the pools and the endpoints are read from the store at
//! each scrape. Encoded by prometheus-client (OpenMetrics text).
//!
//! [`Metrics`] is a handle: the daemon makes one and hands it to the
//! service (which its callers reach it through) and to the server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State as Extract;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rustnet_ipam::store::{Store, WriteObserver, WriteOutcome};
use tokio::sync::watch;

use crate::store::{Replicated, StoreState, open_store};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    path: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Path {
    path: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Write {
    command: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    command: &'static str,
}

/// Seconds, from 0.5 ms to about 16 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// What is counted as it happens.
struct Counted {
    requests: Family<Request, Counter>,
    request_seconds: Family<Path, Histogram, fn() -> Histogram>,
    reconciles: Family<Outcome, Counter>,
    reconcile_seconds: Histogram,
    firewall_rewrites: Counter,
    writes: Family<Write, Counter>,
    write_seconds: Family<Kind, Histogram, fn() -> Histogram>,
    propagation_seconds: Histogram,
    name_learning_seconds: Histogram,
    /// When each endpoint created here was, until it is named.
    unnamed: Mutex<HashMap<String, Instant>>,
}

impl Default for Counted {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency),
            reconciles: Family::default(),
            reconcile_seconds: latency(),
            firewall_rewrites: Counter::default(),
            writes: Family::default(),
            write_seconds: Family::new_with_constructor(latency),
            propagation_seconds: latency(),
            name_learning_seconds: latency(),
            unnamed: Mutex::default(),
        }
    }
}

/// The process's metrics: a handle, cloned where something is counted.
#[derive(Clone, Default)]
pub(crate) struct Metrics(Arc<Counted>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Endpoints created here and not named yet that are remembered: beyond
/// it (endpoints deleted before Docker showed them), the list starts over.
const UNNAMED_KEPT: usize = 4096;

fn outcome(ok: bool) -> &'static str {
    if ok { "ok" } else { "error" }
}

impl Metrics {
    /// One plugin request to `path` (a path Docker calls, or `other`: no
    /// label per made-up path), answered `ok` or not, in `took`.
    pub(crate) fn request(&self, path: &str, ok: bool, took: Duration) {
        let counted = &self.0;
        counted
            .requests
            .get_or_create(&Request {
                path: path.to_owned(),
                outcome: outcome(ok),
            })
            .inc();
        counted
            .request_seconds
            .get_or_create(&Path {
                path: path.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// One reconcile pass; `firewall` when it rewrote the rules.
    pub(crate) fn reconcile(&self, ok: bool, firewall: bool, took: Duration) {
        let counted = &self.0;
        counted
            .reconciles
            .get_or_create(&Outcome {
                outcome: outcome(ok),
            })
            .inc();
        counted.reconcile_seconds.observe(took.as_secs_f64());
        if firewall {
            counted.firewall_rewrites.inc();
        }
    }

    /// Counts every replicated write by command and outcome, with its
    /// latency.
    pub(crate) fn write_observer(&self) -> WriteObserver {
        let counted = self.0.clone();
        Arc::new(move |command, outcome: WriteOutcome, took: Duration| {
            counted
                .writes
                .get_or_create(&Write {
                    command,
                    outcome: outcome.as_str(),
                })
                .inc();
            counted
                .write_seconds
                .get_or_create(&Kind { command })
                .observe(took.as_secs_f64());
        })
    }

    /// An overlay replicated to this host reached its Docker `took` after
    /// this host first had it.
    pub(crate) fn propagated(&self, took: Duration) {
        self.0.propagation_seconds.observe(took.as_secs_f64());
    }

    /// Endpoint `id` was created on this host now (its container's name is
    /// not known yet).
    pub(crate) fn endpoint_created(&self, id: &str) {
        let mut unnamed = crate::lock(&self.0.unnamed);
        if unnamed.len() >= UNNAMED_KEPT {
            unnamed.clear();
        }
        unnamed.insert(id.to_owned(), Instant::now());
    }

    /// Endpoint `id`'s container name was replicated: the name-learning
    /// lag, for an endpoint created by this process.
    pub(crate) fn endpoint_named(&self, id: &str) {
        if let Some(created) = crate::lock(&self.0.unnamed).remove(id) {
            self.0
                .name_learning_seconds
                .observe(created.elapsed().as_secs_f64());
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Role {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Peer {
    peer: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Pool {
    pool: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Endpoints {
    network: String,
    host: String,
}

/// The metrics counted as things happen (shared handles).
fn register_counted(registry: &mut Registry, counted: &Counted) {
    registry.register(
        "requests",
        "Plugin requests by path and outcome",
        counted.requests.clone(),
    );
    registry.register(
        "request_duration_seconds",
        "Plugin request latency by path",
        counted.request_seconds.clone(),
    );
    registry.register(
        "reconciles",
        "Reconcile passes by outcome",
        counted.reconciles.clone(),
    );
    registry.register(
        "reconcile_duration_seconds",
        "Reconcile pass duration",
        counted.reconcile_seconds.clone(),
    );
    registry.register(
        "firewall_rewrites",
        "Firewall rule sets written",
        counted.firewall_rewrites.clone(),
    );
    registry.register(
        "writes",
        "Replicated writes by command and outcome (ok, rejected, failed)",
        counted.writes.clone(),
    );
    registry.register(
        "write_duration_seconds",
        "Replicated write latency by command, from proposal to applied",
        counted.write_seconds.clone(),
    );
    registry.register(
        "propagation_lag_seconds",
        "From an overlay reaching this host's state to its network in this host's Docker",
        counted.propagation_seconds.clone(),
    );
    registry.register(
        "name_learning_lag_seconds",
        "From an endpoint's creation here to its container's name replicated",
        counted.name_learning_seconds.clone(),
    );
}

/// A registry for one scrape: the counted metrics (shared handles) and
/// the figures read from `store` now.
fn scrape(metrics: &Metrics, store: Option<&Store>) -> Registry {
    let mut registry = Registry::with_prefix("rustnet");
    register_counted(&mut registry, &metrics.0);
    let Some(store) = store else {
        return registry;
    };
    let raft = store.raft_view();
    let role = Family::<Role, Gauge>::default();
    for state in ["leader", "follower", "candidate", "learner", "shutdown"] {
        role.get_or_create(&Role { state })
            .set(i64::from(state == raft.state));
    }
    registry.register("raft_state", "1 for this member's Raft role", role);
    let gauge = |value: Option<u64>| {
        let g = Gauge::<i64>::default();
        g.set(value.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX)));
        g
    };
    registry.register("raft_term", "Current Raft term", gauge(Some(raft.term)));
    registry.register(
        "raft_has_leader",
        "1 while this member knows a leader",
        gauge(Some(u64::from(raft.leader.is_some()))),
    );
    registry.register(
        "raft_leader_id",
        "The leader's id (-1: none known)",
        gauge(raft.leader),
    );
    registry.register(
        "raft_last_log_index",
        "Last log index (-1: none)",
        gauge(raft.last_log_index),
    );
    registry.register(
        "raft_commit_index",
        "Committed index (-1: none)",
        gauge(raft.committed_index),
    );
    registry.register(
        "raft_applied_index",
        "Applied index (-1: none)",
        gauge(raft.applied_index),
    );
    let lag = Family::<Peer, Gauge>::default();
    for (peer, behind) in raft.behind() {
        lag.get_or_create(&Peer {
            peer: peer.to_string(),
        })
        .set(i64::try_from(behind).unwrap_or(i64::MAX));
    }
    registry.register(
        "raft_replication_lag_entries",
        "On the leader: log entries each peer is behind",
        lag,
    );
    let allocated = Family::<Pool, Gauge>::default();
    let free = Family::<Pool, Gauge>::default();
    let endpoints = Family::<Endpoints, Gauge>::default();
    store.local(|state| {
        for pool in state.pools() {
            let key = Pool { pool: pool.id() };
            let held = pool.addresses.len() as u128;
            let cap = |n: u128| i64::try_from(n).unwrap_or(i64::MAX);
            allocated.get_or_create(&key).set(cap(held));
            free.get_or_create(&key)
                .set(cap(pool.capacity().saturating_sub(held)));
        }
        for endpoint in state.tables().endpoints() {
            endpoints
                .get_or_create(&Endpoints {
                    network: endpoint.network_id.clone(),
                    host: state.host_name(endpoint.host),
                })
                .inc();
        }
    });
    registry.register(
        "pool_allocated_addresses",
        "Addresses held per pool",
        allocated,
    );
    registry.register("pool_free_addresses", "Addresses free per pool", free);
    registry.register("endpoints", "Endpoints per network and host", endpoints);
    registry
}

/// What the `/metrics` handler reads: the counted metrics and the store.
#[derive(Clone)]
struct Scraped {
    metrics: Metrics,
    store: watch::Receiver<StoreState>,
    timeout: Duration,
}

async fn serve_metrics(Extract(scraped): Extract<Scraped>) -> impl IntoResponse {
    let store = open_store(&scraped.store, scraped.timeout).await.ok();
    let raft = store.as_deref().and_then(Replicated::raft);
    let mut text = String::new();
    let _ = encode(&mut text, &scrape(&scraped.metrics, raft));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// Serves `/metrics` on `addr` until the process ends, with the figures
/// of `store` (waited for at most `timeout` at each scrape).
pub(crate) async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    store: watch::Receiver<StoreState>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving metrics");
    let router = Router::new()
        .route("/metrics", get(serve_metrics))
        .with_state(Scraped {
            metrics,
            store,
            timeout,
        });
    axum::serve(listener, router).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_metrics_are_encoded_and_move() {
        let metrics = Metrics::default();
        metrics.request("/IpamDriver.RequestAddress", true, Duration::from_millis(3));
        metrics.request(
            "/IpamDriver.RequestAddress",
            false,
            Duration::from_millis(1),
        );
        metrics.reconcile(true, true, Duration::from_millis(2));
        let observe = metrics.write_observer();
        observe(
            "request-address",
            WriteOutcome::Rejected,
            Duration::from_millis(4),
        );
        metrics.propagated(Duration::from_millis(30));
        metrics.endpoint_created("ep-metrics");
        metrics.endpoint_named("ep-metrics");
        // Named again, or never created here: no second observation.
        metrics.endpoint_named("ep-metrics");
        let mut text = String::new();
        encode(&mut text, &scrape(&metrics, None)).unwrap();
        assert!(
            text.contains(
                r#"rustnet_requests_total{path="/IpamDriver.RequestAddress",outcome="ok"} "#
            ),
            "{text}"
        );
        assert!(
            text.contains("rustnet_request_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(
            text.contains(r#"rustnet_reconciles_total{outcome="ok"} "#),
            "{text}"
        );
        assert!(text.contains("rustnet_firewall_rewrites_total "), "{text}");
        assert!(
            text.contains(
                r#"rustnet_writes_total{command="request-address",outcome="rejected"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"rustnet_write_duration_seconds_count{command="request-address"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("rustnet_propagation_lag_seconds_count 1\n"),
            "{text}"
        );
        assert!(
            text.contains("rustnet_name_learning_lag_seconds_count 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
