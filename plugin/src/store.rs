//! The replicated store as the plugin sees it, and the seam between them.
//!
//! The store opens in the background (so the socket answers Docker within
//! a second of start whatever the cluster does), then is open or has
//! failed for good. What the driver and the IPAM need of it is small:
//! [`Replicated`] (write, read, read the local replica, this host's id).
//! The Raft store is one; [`MemoryStore`], one host's state in memory, is
//! the other, for the API tests and the fuzz target. What only a cluster
//! has (members, certificates, the join token) is reached through
//! [`Replicated::raft`].

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use rustnet_ipam::store::{Store, StoreError, Unavailable};
use rustnet_ipam::{Command, FORMAT, HostId, Response, State};
use tokio::sync::watch;

use crate::error::ApiError;

/// What the plugin needs of the replicated store.
pub(crate) trait Replicated: Send + Sync + Debug {
    /// This host's id in the cluster.
    fn id(&self) -> HostId;

    /// Replicates `command` and answers what applying it yielded; a
    /// command the state machine refuses is [`StoreError::Rejected`].
    fn write(&self, command: Command) -> BoxFuture<'_, Result<Response, StoreError>>;

    /// Runs `read` on the state once it reflects everything committed
    /// before the call (linearizable); callers say `store.read(f)`.
    fn read_with<'a>(
        &'a self,
        read: Box<dyn FnOnce(&State) + Send + 'a>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Runs `read` on this host's replica as it is, without asking the
    /// leader; `false` when there is none yet.
    fn local_with(&self, read: &mut dyn FnMut(&State)) -> bool;

    /// The Raft store behind, for what only a cluster has; `None` for a
    /// store in memory.
    fn raft(&self) -> Option<&Store>;
}

impl dyn Replicated + '_ {
    /// What `f` makes of the state, linearizably.
    pub(crate) async fn read<T: Send>(
        &self,
        f: impl FnOnce(&State) -> T + Send,
    ) -> Result<T, StoreError> {
        let mut out = None;
        self.read_with(Box::new(|state| out = Some(f(state))))
            .await?;
        out.ok_or_else(|| Unavailable::Raft("the read did not run".into()).into())
    }

    /// What `f` makes of this host's replica as it is.
    pub(crate) fn local<T>(&self, f: impl FnOnce(&State) -> T) -> Option<T> {
        let mut f = Some(f);
        let mut out = None;
        self.local_with(&mut |state| {
            if let Some(f) = f.take() {
                out = Some(f(state));
            }
        });
        out
    }
}

impl Replicated for Store {
    fn id(&self) -> HostId {
        Store::id(self)
    }

    fn write(&self, command: Command) -> BoxFuture<'_, Result<Response, StoreError>> {
        Box::pin(Store::write(self, command))
    }

    fn read_with<'a>(
        &'a self,
        read: Box<dyn FnOnce(&State) + Send + 'a>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(Store::read(self, read))
    }

    fn local_with(&self, read: &mut dyn FnMut(&State)) -> bool {
        Store::local(self, read).is_some()
    }

    fn raft(&self) -> Option<&Store> {
        Some(self)
    }
}

/// One host's state in memory: every command applied at once, in order,
/// as a one-node cluster would. For tests and the fuzz target.
#[derive(Debug)]
pub(crate) struct MemoryStore {
    id: HostId,
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty state, at this release's format, as host `id` sees it.
    pub(crate) fn new(id: HostId) -> Self {
        let mut state = State::default();
        // A fresh cluster raises its format at bootstrap.
        let _ = state.apply(&Command::RaiseFormat { format: FORMAT });
        Self {
            id,
            state: Mutex::new(state),
        }
    }
}

impl Replicated for MemoryStore {
    fn id(&self) -> HostId {
        self.id
    }

    fn write(&self, command: Command) -> BoxFuture<'_, Result<Response, StoreError>> {
        let result = crate::lock(&self.state).apply(&command);
        Box::pin(async move { Ok(result?) })
    }

    fn read_with<'a>(
        &'a self,
        read: Box<dyn FnOnce(&State) + Send + 'a>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        read(&crate::lock(&self.state));
        Box::pin(async { Ok(()) })
    }

    fn local_with(&self, read: &mut dyn FnMut(&State)) -> bool {
        read(&crate::lock(&self.state));
        true
    }

    fn raft(&self) -> Option<&Store> {
        None
    }
}

/// What the store is doing: opening, open, or failed for good.
#[derive(Debug, Clone)]
pub(crate) enum StoreState {
    Opening,
    Open(Arc<dyn Replicated>),
    Failed(String),
}

/// The open store, waiting at most `timeout` while it opens.
pub(crate) async fn open_store(
    rx: &watch::Receiver<StoreState>,
    timeout: Duration,
) -> Result<Arc<dyn Replicated>, ApiError> {
    let mut rx = rx.clone();
    let ready = rx.wait_for(|s| !matches!(s, StoreState::Opening));
    let state = match tokio::time::timeout(timeout, ready).await {
        Ok(Ok(state)) => state.clone(),
        Ok(Err(_)) => StoreState::Failed("store task ended".to_owned()),
        Err(_) => StoreState::Opening,
    };
    match state {
        StoreState::Open(store) => Ok(store),
        StoreState::Opening => Err(StoreError::from(Unavailable::Opening(timeout)).into()),
        StoreState::Failed(e) => Err(ApiError::NoStore(e)),
    }
}

/// The Raft store behind `store`, for what only a cluster has.
pub(crate) fn raft(store: &dyn Replicated) -> Result<&Store, ApiError> {
    store
        .raft()
        .ok_or_else(|| ApiError::NoStore("this store is no cluster (in memory)".to_owned()))
}

#[cfg(test)]
mod tests {
    use rustnet_ipam::HolderKind;

    use super::*;

    #[tokio::test]
    async fn a_store_in_memory_applies_reads_and_refuses_as_the_cluster_does() {
        let store: Arc<dyn Replicated> = Arc::new(MemoryStore::new(7));
        let pool = Command::RequestPool {
            host: 7,
            pool: Some("10.0.42.0/24".parse().unwrap()),
            range: None,
            v6: false,
            defaults: vec![],
        };
        store.write(pool.clone()).await.unwrap();
        let err = store.write(pool).await.unwrap_err();
        assert!(matches!(err, StoreError::Rejected(_)), "{err}");
        let address = Command::RequestAddress {
            host: 7,
            pool_id: "10.0.42.0/24".into(),
            address: None,
            kind: HolderKind::endpoint("web"),
        };
        store.write(address).await.unwrap();
        let held = store.read(State::held_addresses).await.unwrap();
        assert_eq!(held, 1);
        assert_eq!(store.local(|s| s.cluster_format()), Some(FORMAT));
        assert_eq!(store.id(), 7);
        assert!(store.raft().is_none());
    }
}
