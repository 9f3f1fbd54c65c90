//! The Raft log and vote in redb, written by one thread of their own.
//!
//! openraft's rule: a vote or an entry is on disk before `save_vote` returns
//! or the append callback fires; otherwise a crash could elect two leaders in
//! one term or lose an acknowledged entry. Every write is a redb transaction
//! committed with immediate durability (fsync).
//!
//! ```text
//!   append ──► pending (readable at once) ──► writer thread: every append
//!              queued meanwhile in one transaction, one fsync ──► callbacks
//!   vote, truncate, purge ──► writer thread, in order ──► returns once durable
//! ```
//!
//! `append` returns as soon as its entries are readable: Raft's core goes on
//! (replicating them, taking more writes) while the disk works, and the
//! appends that arrive during one fsync share the next: group commit. The
//! writer is the only one to write; the callers of the runtime never wait
//! on the disk, except where openraft wants the write done on return.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use redb::{ReadableDatabase, ReadableTable};

use super::TypeConfig;
use super::db::{Db, KEY_COMMITTED, KEY_PURGED, KEY_VOTE, LOG};

type Entry = EntryOf<TypeConfig>;
type LogId = LogIdOf<TypeConfig>;
type Vote = VoteOf<TypeConfig>;

/// The log store; clones share the database and the writer, and serve as
/// log readers.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Db,
    writer: Arc<Writer>,
}

/// One write for the writer thread.
enum Job {
    /// Entries to make durable, then tell openraft.
    Append(Vec<Entry>, IOFlushed<TypeConfig>),
    /// Any other write, after every append queued before it; its result
    /// goes back if someone waits for it.
    Run(Write, Option<Reply>),
}

/// A write the writer thread runs in its turn.
type Write = Box<dyn FnOnce(&Db) -> io::Result<()> + Send>;

type Reply = tokio::sync::oneshot::Sender<io::Result<()>>;

/// The writer thread's end of the store.
struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    /// Appended entries not yet durable, by index: what readers see beside
    /// the database until the writer has committed them.
    pending: Arc<Mutex<BTreeMap<u64, Entry>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Drop for Writer {
    /// Lets the thread finish what is queued and close its hold on the
    /// database (a restart in the same process opens it again).
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(pending: &Mutex<BTreeMap<u64, Entry>>) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
    // Entries are inserted and removed whole: a panic elsewhere leaves the
    // map consistent.
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn writer_gone() -> io::Error {
    io::Error::other("the log writer stopped")
}

impl LogStore {
    pub fn new(db: Db) -> io::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        let pending = Arc::new(Mutex::new(BTreeMap::new()));
        let thread = {
            let db = db.clone();
            let pending = pending.clone();
            std::thread::Builder::new()
                .name("rustnet-log".to_owned())
                .spawn(move || write_loop(&db, &queue, &pending))?
        };
        Ok(Self {
            db,
            writer: Arc::new(Writer {
                jobs: Some(jobs),
                pending,
                thread: Some(thread),
            }),
        })
    }

    fn send(&self, job: Job) -> io::Result<()> {
        self.writer
            .jobs
            .as_ref()
            .ok_or_else(writer_gone)?
            .send(job)
            .map_err(|_| writer_gone())
    }

    /// Runs `write` on the writer thread after everything queued, and
    /// waits until it is done.
    async fn run(
        &self,
        write: impl FnOnce(&Db) -> io::Result<()> + Send + 'static,
    ) -> io::Result<()> {
        let (reply, done) = tokio::sync::oneshot::channel();
        self.send(Job::Run(Box::new(write), Some(reply)))?;
        done.await.map_err(|_| writer_gone())?
    }

    fn last_entry(&self) -> io::Result<Option<Entry>> {
        if let Some((_, entry)) = lock(&self.writer.pending).last_key_value() {
            return Ok(Some(entry.clone()));
        }
        let txn = self.db.database().begin_read().map_err(io::Error::other)?;
        let table = txn.open_table(LOG).map_err(io::Error::other)?;
        match table.last().map_err(io::Error::other)? {
            Some((_, v)) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(io::Error::other),
            None => Ok(None),
        }
    }
}

/// The writer thread: takes every job queued, commits the appends among
/// them in one transaction (before any other job that came after them),
/// and runs the other jobs in their turn. Ends when the store is dropped.
fn write_loop(db: &Db, queue: &mpsc::Receiver<Job>, pending: &Mutex<BTreeMap<u64, Entry>>) {
    while let Ok(first) = queue.recv() {
        let mut appends = Vec::new();
        for job in std::iter::once(first).chain(queue.try_iter()) {
            match job {
                Job::Append(entries, callback) => appends.push((entries, callback)),
                Job::Run(write, reply) => {
                    commit(db, pending, std::mem::take(&mut appends));
                    let result = write(db);
                    match reply {
                        Some(reply) => {
                            let _ = reply.send(result);
                        }
                        None => {
                            if let Err(e) = result {
                                tracing::warn!(error = %e, "log store write");
                            }
                        }
                    }
                }
            }
        }
        commit(db, pending, appends);
    }
}

/// Makes `appends` durable in one transaction, drops them from the pending
/// entries and tells openraft.
fn commit(
    db: &Db,
    pending: &Mutex<BTreeMap<u64, Entry>>,
    appends: Vec<(Vec<Entry>, IOFlushed<TypeConfig>)>,
) {
    if appends.is_empty() {
        return;
    }
    let result = write_entries(db, appends.iter().flat_map(|(entries, _)| entries));
    {
        let mut pending = lock(pending);
        for entry in appends.iter().flat_map(|(entries, _)| entries) {
            // A truncation may have replaced it meanwhile: only this one.
            if pending.get(&entry.log_id.index).map(|e| e.log_id) == Some(entry.log_id) {
                pending.remove(&entry.log_id.index);
            }
        }
    }
    for (_, callback) in appends {
        let reported = result
            .as_ref()
            .map(|_| ())
            .map_err(|e| io::Error::other(e.to_string()));
        callback.io_completed(reported);
    }
}

fn write_entries<'a>(db: &Db, entries: impl Iterator<Item = &'a Entry>) -> io::Result<()> {
    let txn = db.database().begin_write().map_err(io::Error::other)?;
    {
        let mut table = txn.open_table(LOG).map_err(io::Error::other)?;
        for entry in entries {
            let bytes = serde_json::to_vec(entry).map_err(io::Error::other)?;
            table
                .insert(entry.log_id.index, bytes.as_slice())
                .map_err(io::Error::other)?;
        }
    }
    // Durable (fsync) before openraft is told the entries are flushed.
    txn.commit().map_err(io::Error::other)
}

/// Deletes every entry whose index lies in `range`, durably.
fn delete(db: &Db, range: (Bound<u64>, Bound<u64>)) -> io::Result<()> {
    let txn = db.database().begin_write().map_err(io::Error::other)?;
    {
        let mut table = txn.open_table(LOG).map_err(io::Error::other)?;
        table
            .retain_in(range, |_, _| false)
            .map_err(io::Error::other)?;
    }
    txn.commit().map_err(io::Error::other)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let bounds = (
            clone_bound(range.start_bound()),
            clone_bound(range.end_bound()),
        );
        // Pending first, then the database: the writer commits an entry
        // before dropping it from pending, so it is in one or the other.
        let pending: Vec<Entry> = lock(&self.writer.pending)
            .range(bounds)
            .map(|(_, e)| e.clone())
            .collect();
        let txn = self.db.database().begin_read().map_err(io::Error::other)?;
        let table = txn.open_table(LOG).map_err(io::Error::other)?;
        let mut entries = BTreeMap::new();
        for item in table.range::<u64>(bounds).map_err(io::Error::other)? {
            let (index, value) = item.map_err(io::Error::other)?;
            let entry: Entry = serde_json::from_slice(value.value()).map_err(io::Error::other)?;
            entries.insert(index.value(), entry);
        }
        for entry in pending {
            entries.insert(entry.log_id.index, entry);
        }
        Ok(entries.into_values().collect())
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
        let vote = *vote;
        self.run(move |db| db.put_meta(KEY_VOTE, &vote)).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not waited for and without an fsync of its own: it is on disk with
        // the next appended entries (queued after those it covers), and one
        // lost in a crash leaves an older committed index, which is still
        // true (the state machine then re-applies a little less on start and
        // catches up from the leader).
        let write = move |db: &Db| db.put_meta_lazily(KEY_COMMITTED, &committed);
        self.send(Job::Run(Box::new(write), None))
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        {
            let mut pending = lock(&self.writer.pending);
            for entry in &entries {
                pending.insert(entry.log_id.index, entry.clone());
            }
        }
        self.send(Job::Append(entries, callback))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        self.run(move |db| delete(db, (Bound::Included(from), Bound::Unbounded)))
            .await?;
        lock(&self.writer.pending).retain(|index, _| *index < from);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // Record the purge point first: a crash in between leaves entries
        // that are merely redundant, never a hole.
        self.run(move |db| {
            db.put_meta(KEY_PURGED, &log_id)?;
            delete(db, (Bound::Unbounded, Bound::Included(log_id.index)))
        })
        .await?;
        lock(&self.writer.pending).retain(|index, _| *index > log_id.index);
        Ok(())
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
            let log = LogStore::new(db).map_err(|e| storage_error(&e))?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's storage conformance suite against the redb store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openraft_storage_suite() {
        Suite::test_all(Builder).await.unwrap();
    }
}
