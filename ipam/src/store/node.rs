//! [`Store`]: this host's Raft node and the one door to the replicated state.

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Config, Raft, ReadPolicy, SnapshotPolicy};

use super::db::KEY_NODE_ID;
use super::{Db, LogStore, StateMachine, TypeConfig, Unreachable};
use crate::{Command, CommandResult, HostId, State};

/// Why the store could not answer. `Unavailable` is worth retrying (no
/// leader yet, no quorum, timeout); `Fatal` is not.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("open state in {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    #[error("store failed: {0}")]
    Fatal(String),
}

/// Raft timing for a loaded 2-core machine: openraft's defaults (50 ms
/// heartbeat, 150-300 ms election) cause spurious elections there.
pub fn raft_config() -> Result<Config, StoreError> {
    Config {
        cluster_name: "rustnet".to_owned(),
        heartbeat_interval: 500,
        election_timeout_min: 1500,
        election_timeout_max: 3000,
        install_snapshot_timeout: 10_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(500),
        max_in_snapshot_log_to_keep: 100,
        ..Default::default()
    }
    .validate()
    .map_err(|e| StoreError::Fatal(format!("raft config: {e}")))
}

/// This host's replica of the cluster state.
#[derive(Clone)]
pub struct Store {
    id: HostId,
    raft: Raft<TypeConfig, StateMachine>,
    state_machine: StateMachine,
    timeout: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the state in `dir` (creating it on first start) and starts the
    /// Raft node; a new store bootstraps a one-node cluster advertising
    /// `addr`. `timeout` bounds every read and write.
    pub async fn open(dir: &Path, addr: &str, timeout: Duration) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(open_err)?;
        let db = Db::open(&dir.join("raft.redb")).map_err(open_err)?;
        let id = node_id(&db).map_err(open_err)?;
        let state_machine = StateMachine::open(db.clone()).map_err(open_err)?;
        let config = Arc::new(raft_config()?);
        let raft = Raft::new(
            id,
            config,
            Unreachable,
            LogStore::new(db),
            state_machine.clone(),
        )
        .await
        .map_err(|e| StoreError::Fatal(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StoreError::Fatal(e.to_string()))?;
        if !initialized {
            let members = BTreeMap::from([(id, BasicNode::new(addr))]);
            raft.initialize(members)
                .await
                .map_err(|e| StoreError::Fatal(format!("bootstrap: {e}")))?;
        }
        Ok(Self {
            id,
            raft,
            state_machine,
            timeout,
        })
    }

    /// This host's id in the cluster.
    pub fn id(&self) -> HostId {
        self.id
    }

    /// Replicates `command` and returns what applying it yielded.
    pub async fn write(&self, command: Command) -> Result<CommandResult, StoreError> {
        let bounded = async {
            self.leader_known().await?;
            let reply = self.raft.client_write(command).await;
            reply.map_err(|e| StoreError::Unavailable(e.to_string()))
        };
        let reply = self.bounded(bounded).await?;
        Ok(reply.data)
    }

    /// Reads the state after making sure it is up to date with the leader.
    pub async fn read<T>(&self, f: impl FnOnce(&State) -> T) -> Result<T, StoreError> {
        self.bounded(async {
            self.leader_known().await?;
            let fresh = self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await;
            fresh.map_err(|e| StoreError::Unavailable(e.to_string()))
        })
        .await?;
        let applied = self
            .state_machine
            .state()
            .map_err(|e| StoreError::Fatal(e.to_string()))?;
        Ok(f(&applied.state))
    }

    /// Waits until some node is leader: right after start an election is
    /// still running and openraft would refuse with "forward to: none".
    async fn leader_known(&self) -> Result<(), StoreError> {
        self.raft
            .wait(None)
            .metrics(|m| m.current_leader.is_some(), "leader known")
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer from the cluster within {:?}",
                self.timeout
            ))),
        }
    }

    /// Stops the Raft node.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// The node id kept in the store, created once: a node's identity survives
/// its restarts. Random so that hosts bootstrapped apart never collide.
fn node_id(db: &Db) -> std::io::Result<HostId> {
    if let Some(id) = db.get_meta::<HostId>(KEY_NODE_ID)? {
        return Ok(id);
    }
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.write_u32(std::process::id());
    // Keep ids readable in logs and JSON-safe for scripts (< 2^53).
    let id = (hasher.finish() >> 11).max(1);
    db.put_meta(KEY_NODE_ID, &id)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HolderKind, Response};

    const TIMEOUT: Duration = Duration::from_secs(20);

    async fn request_address(store: &Store, name: &str) -> String {
        let cmd = Command::RequestAddress {
            host: store.id(),
            pool_id: "10.0.42.0/24".into(),
            address: None,
            kind: HolderKind::endpoint(name),
        };
        match store.write(cmd).await.unwrap() {
            Ok(Response::Address { address }) => address.to_string(),
            other => panic!("{other:?}"),
        }
    }

    /// Everything acknowledged before a restart is there after it, and the
    /// node keeps its identity; enough writes to pass a snapshot and purge.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn state_and_identity_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "127.0.0.1:0", TIMEOUT)
            .await
            .unwrap();
        let id = store.id();
        let pool = Command::RequestPool {
            host: id,
            pool: Some("10.0.42.0/24".parse().unwrap()),
            range: None,
            v6: false,
            defaults: vec![],
        };
        store.write(pool).await.unwrap().unwrap();
        for i in 0..120 {
            let got = request_address(&store, &format!("c{i}")).await;
            let release = Command::ReleaseAddress {
                host: id,
                pool_id: "10.0.42.0/24".into(),
                address: got.parse::<ipnet::IpNet>().unwrap().addr(),
            };
            if i % 2 == 0 {
                store.write(release).await.unwrap().unwrap();
            }
        }
        let before = store.read(|s| s.clone()).await.unwrap();
        store.raft.trigger().snapshot().await.unwrap();
        store.shutdown().await;
        drop(store);

        // openraft's tasks let go of the database shortly after shutdown.
        let mut attempts = 0;
        let store = loop {
            match Store::open(dir.path(), "127.0.0.1:0", TIMEOUT).await {
                Ok(store) => break store,
                Err(e) if attempts < 50 && e.to_string().contains("in use by another") => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("reopen: {e}"),
            }
        };
        assert_eq!(store.id(), id);
        assert_eq!(store.read(|s| s.clone()).await.unwrap(), before);
        assert_eq!(request_address(&store, "new").await, "10.0.42.61/24");
        store.shutdown().await;
    }
}
