//! The replicated [`State`] as an openraft state machine.
//!
//! The state lives in memory behind a lock that readers share; snapshots are
//! written to redb, and on start the last one is loaded before openraft
//! re-applies the committed log that follows it.

use std::io;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};

use super::TypeConfig;
use super::db::{Db, KEY_SNAPSHOT};
use crate::State;

type LogId = LogIdOf<TypeConfig>;
type StoredMembership = StoredMembershipOf<TypeConfig>;
type SnapshotMeta = SnapshotMetaOf<TypeConfig>;
type Snapshot = SnapshotOf<TypeConfig, Vec<u8>>;

/// What has been applied: the state and where in the log it stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Applied {
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
    pub(crate) state: State,
}

/// A snapshot as stored in redb.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The state machine; clones share the state and serve as snapshot builders.
#[derive(Debug, Clone)]
pub struct StateMachine {
    db: Db,
    applied: Arc<RwLock<Applied>>,
}

impl StateMachine {
    /// Opens the state machine at its last snapshot.
    pub fn open(db: Db) -> io::Result<Self> {
        let applied = match db.get_meta::<StoredSnapshot>(KEY_SNAPSHOT)? {
            Some(snapshot) => decode(&snapshot.meta, &snapshot.data)?,
            None => Applied::default(),
        };
        Ok(Self {
            db,
            applied: Arc::new(RwLock::new(applied)),
        })
    }

    /// The applied state, for reads.
    pub(crate) fn state(&self) -> io::Result<RwLockReadGuard<'_, Applied>> {
        self.applied.read().map_err(|_| poisoned())
    }

    fn state_mut(&self) -> io::Result<RwLockWriteGuard<'_, Applied>> {
        self.applied.write().map_err(|_| poisoned())
    }
}

fn poisoned() -> io::Error {
    io::Error::other("state machine lock poisoned")
}

fn decode(meta: &SnapshotMeta, data: &[u8]) -> io::Result<Applied> {
    Ok(Applied {
        last_applied: meta.last_log_id,
        membership: meta.last_membership.clone(),
        state: serde_json::from_slice(data).map_err(io::Error::other)?,
    })
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (meta, data) = {
            let applied = self.state()?;
            let data = serde_json::to_vec(&applied.state).map_err(io::Error::other)?;
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
            };
            (meta, data)
        };
        let stored = StoredSnapshot { meta, data };
        self.db.put_meta(KEY_SNAPSHOT, &stored)?;
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: stored.data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let applied = self.state()?;
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let result = {
                let mut applied = self.state_mut()?;
                applied.last_applied = Some(entry.log_id);
                match &entry.payload {
                    EntryPayload::Blank => None,
                    EntryPayload::Normal(proposal) => Some(applied.state.apply_once(proposal)),
                    EntryPayload::Membership(membership) => {
                        applied.membership =
                            StoredMembership::new(Some(entry.log_id), membership.clone());
                        None
                    }
                }
            };
            if let Some(responder) = responder {
                // Blank and membership entries have no caller waiting for a
                // command result; openraft still wants an answer.
                responder.send(result.unwrap_or(Ok(crate::Response::Done)));
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let applied = decode(meta, &snapshot)?;
        self.db.put_meta(
            KEY_SNAPSHOT,
            &StoredSnapshot {
                meta: meta.clone(),
                data: snapshot,
            },
        )?;
        *self.state_mut()? = applied;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self
            .db
            .get_meta::<StoredSnapshot>(KEY_SNAPSHOT)?
            .map(|s| Snapshot {
                meta: s.meta,
                snapshot: s.data,
            }))
    }
}
