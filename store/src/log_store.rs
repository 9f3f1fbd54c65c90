//! The Raft log and vote in redb, written by one thread of their own.
//!
//! openraft's rule: a vote or an entry is on disk before `save_vote` returns
//! or the append callback fires; otherwise a crash could elect two leaders in
//! one term or lose an acknowledged entry. Every write is a redb transaction
//! committed with immediate durability (fsync).
//!
//! ```text
//!   append ──► latest (readable at once) ──► writer thread: every append
//!              queued meanwhile in one transaction, one fsync ──► callbacks
//!   vote, truncate ──► writer thread, in order ──► returns once durable
//!   purge ──► hidden from readers at once ──► writer thread, in its turn
//! ```
//!
//! `append` returns as soon as its entries are readable: Raft's core goes on
//! (replicating them, taking more writes) while the disk works, and the
//! appends that arrive during one fsync share the next: group commit. The
//! writer is the only one to write; the callers of the runtime never wait
//! on the disk, except where openraft wants the write done on return.
//!
//! `latest` keeps the last [`LATEST`] entries after they are on disk too:
//! the leader reads each entry back to replicate it, and reading it there
//! spares a database read and a decode per entry and follower.

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
use super::db::{Db, KEY_COMMITTED, KEY_PURGED, KEY_VOTE, LOG, put_meta_in};

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
    /// The committed log id: written with the appends of the next round,
    /// or on its own once the log has been idle for [`IDLE_SAVE`].
    Committed(Option<LogId>),
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
    /// The latest entries by index, without a gap up to the last one:
    /// every entry not yet durable, and the durable ones up to [`LATEST`]
    /// in all. Readers find an entry here or in the database.
    latest: Arc<Mutex<BTreeMap<u64, Entry>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// One past the last purged index (0: none): readers skip what lies
    /// before it while the writer has yet to delete it.
    purged: std::sync::atomic::AtomicU64,
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

/// How many entries `latest` keeps once they are durable: more than a
/// follower that keeps up lags behind.
const LATEST: usize = 1024;

fn lock(latest: &Mutex<BTreeMap<u64, Entry>>) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
    // Entries are inserted and removed whole: a panic elsewhere leaves the
    // map consistent.
    latest
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn writer_gone() -> io::Error {
    io::Error::other("the log writer stopped")
}

impl LogStore {
    pub fn new(db: Db) -> io::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        let latest = Arc::new(Mutex::new(BTreeMap::new()));
        let thread = {
            let db = db.clone();
            let latest = latest.clone();
            std::thread::Builder::new()
                .name("rustnet-log".to_owned())
                .spawn(move || write_loop(&db, &queue, &latest))?
        };
        Ok(Self {
            db,
            writer: Arc::new(Writer {
                jobs: Some(jobs),
                latest,
                thread: Some(thread),
                purged: std::sync::atomic::AtomicU64::new(0),
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
        if let Some((_, entry)) = lock(&self.writer.latest).last_key_value() {
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
fn write_loop(db: &Db, queue: &mpsc::Receiver<Job>, latest: &Mutex<BTreeMap<u64, Entry>>) {
    let mut committed = Committed::default();
    loop {
        // With a committed index still to save, not longer than its turn.
        let first = match committed.due_in() {
            None => queue
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(wait) => queue.recv_timeout(wait),
        };
        let first = match first {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = save_durably(db, committed.take()) {
                    tracing::warn!(error = %e, "log store: saving the committed index");
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut appends = Vec::new();
        for job in std::iter::once(first).chain(queue.try_iter()) {
            match job {
                Job::Append(entries, callback) => appends.push((entries, callback)),
                // Only the latest counts: it covers every earlier one.
                Job::Committed(id) => committed.set(id),
                Job::Run(write, reply) => {
                    commit(db, latest, std::mem::take(&mut appends), &mut committed);
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
        commit(db, latest, appends, &mut committed);
    }
    // The store is closing: what is not durable yet (the last committed
    // index, a purge) goes to disk in one last durable transaction.
    if let Err(e) = save_durably(db, committed.take()) {
        tracing::warn!(error = %e, "log store: closing");
    }
}

/// One durable transaction, with the committed log id if there is one: it
/// takes to disk every commit without an fsync of its own before it too.
fn save_durably(db: &Db, committed: Option<Option<LogId>>) -> io::Result<()> {
    let txn = db.database().begin_write().map_err(io::Error::other)?;
    if let Some(committed) = committed {
        put_meta_in(&txn, KEY_COMMITTED, &committed)?;
    }
    txn.commit().map_err(io::Error::other)
}

/// The round's appends: entries to make durable, then tell openraft.
type Appends = Vec<(Vec<Entry>, IOFlushed<TypeConfig>)>;

/// How long the log may be idle before a committed index waiting for the
/// next round's appends is saved on its own (with an fsync).
///
/// A restarted member re-applies its log up to the saved committed index
/// only and learns the rest from the leader, so the saved index must not
/// lag far behind: the peers it admits are the members its state knows
/// (their certificates are in it), and one restarted on an index from
/// before a member joined refused that member, the leader, for good. It
/// once was saved at most every 100 ms (and without an fsync while the
/// log was idle): a leader killed a second after the cluster formed came
/// back unable to reach anyone.
const IDLE_SAVE: std::time::Duration = std::time::Duration::from_millis(10);

/// The committed log id openraft last reported, until it is saved, and
/// since when it waits.
#[derive(Default)]
struct Committed(Option<(Option<LogId>, std::time::Instant)>);

impl Committed {
    /// The latest id covers every earlier one; the wait counts from the
    /// first not yet saved.
    fn set(&mut self, id: Option<LogId>) {
        match &mut self.0 {
            Some((pending, _)) => *pending = id,
            None => self.0 = Some((id, std::time::Instant::now())),
        }
    }

    /// How long until the pending index is due on its own; `None` if there
    /// is none.
    fn due_in(&self) -> Option<std::time::Duration> {
        let (_, since) = self.0.as_ref()?;
        Some(IDLE_SAVE.saturating_sub(since.elapsed()))
    }

    /// The pending index, taken: with a round's appends, or alone once due.
    fn take(&mut self) -> Option<Option<LogId>> {
        self.0.take().map(|(id, _)| id)
    }
}

/// Makes the round's appends durable in one transaction, with the
/// committed log id waiting if there is one, trims `latest` of the oldest
/// durable entries and tells openraft. Without appends, the committed log
/// id waits (for the next round, or until it is due on its own).
fn commit(
    db: &Db,
    latest: &Mutex<BTreeMap<u64, Entry>>,
    appends: Appends,
    committed: &mut Committed,
) {
    if appends.is_empty() {
        return;
    }
    let committed = committed.take();
    let result = write_entries(
        db,
        appends.iter().flat_map(|(entries, _)| entries),
        committed,
    );
    if result.is_ok()
        && let Some(durable) = appends
            .iter()
            .flat_map(|(e, _)| e)
            .map(|e| e.log_id.index)
            .max()
    {
        let mut latest = lock(latest);
        while latest.len() > LATEST {
            match latest.first_entry() {
                Some(oldest) if *oldest.key() <= durable => oldest.remove(),
                _ => break,
            };
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

fn write_entries<'a>(
    db: &Db,
    entries: impl Iterator<Item = &'a Entry>,
    committed: Option<Option<LogId>>,
) -> io::Result<()> {
    let txn = db.database().begin_write().map_err(io::Error::other)?;
    if let Some(committed) = committed {
        put_meta_in(&txn, KEY_COMMITTED, &committed)?;
    }
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

/// Deletes the log up to `log_id` and records the purge point, in one
/// transaction without an fsync of its own: a purge needs no durability
/// (one lost in a crash leaves entries that are merely redundant, never a
/// hole), and it reaches the disk with the next append's fsync.
fn purge(db: &Db, log_id: LogId) -> io::Result<()> {
    let mut txn = db.database().begin_write().map_err(io::Error::other)?;
    txn.set_durability(redb::Durability::None)
        .map_err(io::Error::other)?;
    put_meta_in(&txn, KEY_PURGED, &log_id)?;
    delete_in(&txn, ..=log_id.index)?;
    txn.commit().map_err(io::Error::other)
}

/// Deletes every entry whose index lies in `range`, durably.
fn delete(db: &Db, range: (Bound<u64>, Bound<u64>)) -> io::Result<()> {
    let txn = db.database().begin_write().map_err(io::Error::other)?;
    delete_in(&txn, range)?;
    txn.commit().map_err(io::Error::other)
}

fn delete_in(txn: &redb::WriteTransaction, range: impl RangeBounds<u64>) -> io::Result<()> {
    txn.open_table(LOG)
        .map_err(io::Error::other)?
        .retain_in(range, |_, _| false)
        .map_err(io::Error::other)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        // Nothing up to a purge is read, even before the writer has
        // deleted it.
        let purged = self
            .writer
            .purged
            .load(std::sync::atomic::Ordering::Acquire);
        let start = match range.start_bound() {
            Bound::Included(start) => *start,
            Bound::Excluded(start) => start.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .max(purged);
        let end = clone_bound(range.end_bound());
        let empty = match end {
            Bound::Included(end) => start > end,
            Bound::Excluded(end) => start >= end,
            Bound::Unbounded => false,
        };
        if empty {
            return Ok(Vec::new());
        }
        let bounds = (Bound::Included(start), end);
        // `latest` holds every entry from its first on: the database is
        // read only for what lies before it. The writer commits an entry
        // before `latest` drops it, so each is in one or the other.
        let (first, mut entries) = {
            let latest = lock(&self.writer.latest);
            let first = latest.first_key_value().map(|(index, _)| *index);
            let entries: BTreeMap<u64, Entry> = latest
                .range(bounds)
                .map(|(index, e)| (*index, e.clone()))
                .collect();
            (first, entries)
        };
        if first.is_none_or(|first| start < first) {
            let txn = self.db.database().begin_read().map_err(io::Error::other)?;
            let table = txn.open_table(LOG).map_err(io::Error::other)?;
            for item in table.range::<u64>(bounds).map_err(io::Error::other)? {
                let (index, value) = item.map_err(io::Error::other)?;
                let index = index.value();
                if first.is_some_and(|first| index >= first) {
                    break;
                }
                let entry: Entry =
                    serde_json::from_slice(value.value()).map_err(io::Error::other)?;
                entries.insert(index, entry);
            }
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
        // After every purge queued before.
        self.run(|_| Ok(())).await?;
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
        // Not waited for: it goes to disk with the appends of the next
        // round (all queued after those it covers), or on its own once the
        // log has been idle for IDLE_SAVE. One lost in a crash leaves an
        // older committed index, which is still true (the state machine
        // then re-applies a little less on start and learns the rest from
        // the leader). Riding along keeps a busy writer's rounds whole: one
        // transaction per round.
        self.send(Job::Committed(committed))
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
            let mut latest = lock(&self.writer.latest);
            for entry in &entries {
                latest.insert(entry.log_id.index, entry.clone());
            }
        }
        self.send(Job::Append(entries, callback))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        self.run(move |db| delete(db, (Bound::Included(from), Bound::Unbounded)))
            .await?;
        lock(&self.writer.latest).retain(|index, _| *index < from);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // Not waited for: Raft's core would wait on it, and deleting
        // thousands of entries took it milliseconds (up to 18 ms measured
        // under load). Readers see the purge at once; the writer deletes in
        // its turn, after the appends queued before.
        self.writer
            .purged
            .fetch_max(log_id.index + 1, std::sync::atomic::Ordering::Release);
        lock(&self.writer.latest).retain(|index, _| *index > log_id.index);
        self.send(Job::Run(Box::new(move |db| purge(db, log_id)), None))
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
    use crate::StateMachine;

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

    /// Reads that start in the database and end among the latest entries,
    /// after the writer has trimmed them, and after a truncation and a
    /// purge, see every entry once and in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_span_the_database_and_the_latest_entries() {
        use openraft::storage::RaftLogStorageExt;
        use openraft::testing::blank_ent;

        let (_dir, mut log, _) = Builder.build().await.unwrap();
        let total = 3 * LATEST as u64;
        for batch in (1..=total).collect::<Vec<_>>().chunks(100) {
            let entries = batch.iter().map(|i| blank_ent::<TypeConfig>(1, 1, *i));
            log.blocking_append(entries).await.unwrap();
        }
        assert_eq!(lock(&log.writer.latest).len(), LATEST);
        let indexes =
            |entries: Vec<Entry>| -> Vec<u64> { entries.iter().map(|e| e.log_id.index).collect() };
        let cases = [
            (1, total + 1),
            (total - LATEST as u64 - 5, total - LATEST as u64 + 5),
            (total - 10, total + 1),
            (5, 50),
        ];
        for (from, to) in cases {
            let read = log.try_get_log_entries(from..to).await.unwrap();
            assert_eq!(
                indexes(read),
                (from..to).collect::<Vec<_>>(),
                "{from}..{to}"
            );
        }
        let read = log.try_get_log_entries(1..).await.unwrap();
        assert_eq!(read.len() as u64, total);

        let cut = total - 100;
        log.truncate_after(Some(openraft::testing::log_id::<TypeConfig>(1, 1, cut)))
            .await
            .unwrap();
        log.blocking_append([blank_ent::<TypeConfig>(2, 1, cut + 1)])
            .await
            .unwrap();
        let purged = 500;
        log.purge(openraft::testing::log_id::<TypeConfig>(1, 1, purged))
            .await
            .unwrap();
        let read = log.try_get_log_entries(1..total + 1).await.unwrap();
        assert_eq!(indexes(read), (purged + 1..=cut + 1).collect::<Vec<_>>());
        let last = log.get_log_state().await.unwrap().last_log_id.unwrap();
        assert_eq!((last.index, last.leader_id.term), (cut + 1, 2));
    }

    /// The committed index goes to disk with the next round's appends, on
    /// its own once the log is idle, and when the store closes: a restarted
    /// member re-applies up to it, and must know the members it admits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_committed_index_rides_with_the_next_round_or_goes_alone() {
        use openraft::storage::RaftLogStorageExt;
        use openraft::testing::{blank_ent, log_id};

        let (dir, mut log, _) = Builder.build().await.unwrap();
        let saved = |db: &Db| {
            db.get_meta::<Option<LogId>>(KEY_COMMITTED)
                .unwrap()
                .flatten()
        };
        let id = |i| Some(log_id::<TypeConfig>(1, 1, i));
        log.blocking_append([blank_ent::<TypeConfig>(1, 1, 1)])
            .await
            .unwrap();
        log.save_committed(id(1)).await.unwrap();
        // With the next round's appends.
        log.blocking_append([blank_ent::<TypeConfig>(1, 1, 2)])
            .await
            .unwrap();
        assert_eq!(saved(&log.db), id(1));
        // Alone, once the log is idle.
        log.save_committed(id(2)).await.unwrap();
        tokio::time::sleep(IDLE_SAVE * 10).await;
        assert_eq!(saved(&log.db), id(2));
        // Not yet due, then the store closes: saved on the way out.
        log.blocking_append([blank_ent::<TypeConfig>(1, 1, 3)])
            .await
            .unwrap();
        log.save_committed(id(3)).await.unwrap();
        let db = log.db.clone();
        drop(log);
        assert_eq!(saved(&db), id(3));
        drop(dir);
    }

    /// A purge is hidden from readers at once, done by the writer in its
    /// turn without an fsync of its own, and on disk once the store closes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purge_is_seen_at_once_and_kept() {
        use openraft::storage::RaftLogStorageExt;
        use openraft::testing::{blank_ent, log_id};

        let (dir, mut log, sm) = Builder.build().await.unwrap();
        let entries = (1..=10).map(|i| blank_ent::<TypeConfig>(1, 1, i));
        log.blocking_append(entries).await.unwrap();
        log.purge(log_id::<TypeConfig>(1, 1, 5)).await.unwrap();
        let indexes =
            |entries: Vec<Entry>| entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>();
        let read = log.try_get_log_entries(0..=10).await.unwrap();
        assert_eq!(indexes(read), (6..=10).collect::<Vec<_>>());
        assert!(log.try_get_log_entries(2..5).await.unwrap().is_empty());
        let state = log.get_log_state().await.unwrap();
        assert_eq!(
            state.last_purged_log_id,
            Some(log_id::<TypeConfig>(1, 1, 5))
        );
        assert_eq!(state.last_log_id, Some(log_id::<TypeConfig>(1, 1, 10)));
        // The database itself, once the store and its writer are gone.
        let path = dir.path().join("raft.redb");
        drop((log, sm));
        let mut log = LogStore::new(Db::open(&path).unwrap()).unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(
            state.last_purged_log_id,
            Some(log_id::<TypeConfig>(1, 1, 5))
        );
        let read = log.try_get_log_entries(0..=10).await.unwrap();
        assert_eq!(indexes(read), (6..=10).collect::<Vec<_>>());
        drop(dir);
    }

    /// openraft's storage conformance suite against the redb store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openraft_storage_suite() {
        Suite::test_all(Builder).await.unwrap();
    }
}
