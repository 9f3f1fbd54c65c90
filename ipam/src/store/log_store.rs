//! The Raft log and vote in redb.
//!
//! openraft's rule: a vote or an entry is on disk before `save_vote` returns
//! or the append callback fires; otherwise a crash could elect two leaders in
//! one term or lose an acknowledged entry. Every write here is one redb
//! transaction committed with immediate durability (fsync).

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use redb::{ReadableDatabase, ReadableTable};

use super::TypeConfig;
use super::db::{Db, KEY_COMMITTED, KEY_PURGED, KEY_VOTE, LOG};

type Entry = EntryOf<TypeConfig>;
type LogId = LogIdOf<TypeConfig>;
type Vote = VoteOf<TypeConfig>;

/// The log store; clones share the database and serve as log readers.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Db,
}

impl LogStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    fn last_entry(&self) -> io::Result<Option<Entry>> {
        let txn = self.db.database().begin_read().map_err(io::Error::other)?;
        let table = txn.open_table(LOG).map_err(io::Error::other)?;
        match table.last().map_err(io::Error::other)? {
            Some((_, v)) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(io::Error::other),
            None => Ok(None),
        }
    }

    /// Deletes every entry whose index lies in `range`, durably.
    fn delete(&self, range: impl RangeBounds<u64>) -> io::Result<()> {
        let txn = self.db.database().begin_write().map_err(io::Error::other)?;
        {
            let mut table = txn.open_table(LOG).map_err(io::Error::other)?;
            table
                .retain_in(range, |_, _| false)
                .map_err(io::Error::other)?;
        }
        txn.commit().map_err(io::Error::other)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let txn = self.db.database().begin_read().map_err(io::Error::other)?;
        let table = txn.open_table(LOG).map_err(io::Error::other)?;
        let bounds = (
            clone_bound(range.start_bound()),
            clone_bound(range.end_bound()),
        );
        let mut entries = Vec::new();
        for item in table.range::<u64>(bounds).map_err(io::Error::other)? {
            let (_, value) = item.map_err(io::Error::other)?;
            entries.push(serde_json::from_slice(value.value()).map_err(io::Error::other)?);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.db.get_meta(KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.db.get_meta(KEY_PURGED)?;
        let last_log_id = match self.last_entry()? {
            Some(entry) => Some(entry.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.db.put_meta(KEY_VOTE, vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // No fsync of its own: it is on disk with the next appended entries,
        // and one lost in a crash leaves an older committed index, which is
        // still true (the state machine then re-applies a little less on
        // start and catches up from the leader).
        self.db.put_meta_lazily(KEY_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.db.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let txn = self.db.database().begin_write().map_err(io::Error::other)?;
        {
            let mut table = txn.open_table(LOG).map_err(io::Error::other)?;
            for entry in entries {
                let bytes = serde_json::to_vec(&entry).map_err(io::Error::other)?;
                table
                    .insert(entry.log_id.index, bytes.as_slice())
                    .map_err(io::Error::other)?;
            }
        }
        // Durable (fsync) before openraft is told the entries are flushed.
        let result = txn.commit().map_err(io::Error::other);
        let reported = result
            .as_ref()
            .map(|_| ())
            .map_err(|e| io::Error::other(e.to_string()));
        callback.io_completed(reported);
        result
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        self.delete(from..)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // Record the purge point first: a crash in between leaves entries
        // that are merely redundant, never a hole.
        self.db.put_meta(KEY_PURGED, &log_id)?;
        self.delete(..=log_id.index)
    }
}

fn clone_bound(bound: Bound<&u64>) -> Bound<u64> {
    match bound {
        Bound::Included(v) => Bound::Included(*v),
        Bound::Excluded(v) => Bound::Excluded(*v),
        Bound::Unbounded => Bound::Unbounded,
    }
}

#[cfg(test)]
mod tests {
    use openraft::StorageError;
    use openraft::testing::log::{StoreBuilder, Suite};
    use openraft::type_config::TypeConfigExt;

    use super::*;
    use crate::store::StateMachine;

    struct Builder;

    fn storage_error(e: &(impl std::error::Error + 'static)) -> StorageError<TypeConfig> {
        StorageError::read(TypeConfig::err_from_error(e))
    }

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
            let dir = tempfile::tempdir().map_err(|e| storage_error(&e))?;
            let db = Db::open(&dir.path().join("raft.redb")).map_err(|e| storage_error(&e))?;
            let sm = StateMachine::open(db.clone()).map_err(|e| storage_error(&e))?;
            Ok((dir, LogStore::new(db), sm))
        }
    }

    /// openraft's storage conformance suite against the redb store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openraft_storage_suite() {
        Suite::test_all(Builder).await.unwrap();
    }
}
