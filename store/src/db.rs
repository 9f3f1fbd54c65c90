//! The redb database holding the Raft log, the vote and snapshots.

use std::io;
use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Log entries by index, serde-encoded.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Small named records: vote, committed, last purged, node id, snapshot
/// meta (and, from before snapshots had their own table, whole snapshots).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The current snapshot's data, raw (compressed) bytes under one key.
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
const SNAPSHOT_DATA: &str = "data";

/// redb's page cache. Its default (1 GiB) lets a daemon's memory grow with
/// the log it has read; rustnet's working set is far smaller: the pages
/// on the path to the log's end and the meta table (the leader replicates
/// the latest entries from memory, log_store.rs).
const CACHE_BYTES: usize = 4 << 20;

pub(crate) const KEY_VOTE: &str = "vote";
pub(crate) const KEY_COMMITTED: &str = "committed";
pub(crate) const KEY_PURGED: &str = "last_purged";
pub(crate) const KEY_SNAPSHOT: &str = "snapshot";
pub(crate) const KEY_SNAPSHOT_META: &str = "snapshot_meta";
pub(crate) const KEY_NODE_ID: &str = "node_id";
pub(crate) const KEY_CLUSTER_ID: &str = "cluster_id";
/// This member's TLS certificate and key.
pub(crate) const KEY_CERT: &str = "cert";
/// The cluster CA keys a voter holds, by CA fingerprint.
pub(crate) const KEY_CA_KEYS: &str = "ca_keys";
/// The latest format written to this file (none: format 1).
pub(crate) const KEY_FORMAT: &str = "format";
/// The members' certificates the cluster vouched for when this node
/// enrolled or joined, until it has caught up (catch_up.rs).
pub(crate) const KEY_VOUCHED: &str = "vouched";

/// A shared handle on the store's database file. Every write commits with
/// redb's default immediate durability (fsync) before it returns.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Database>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Db")
    }
}

impl Db {
    /// Opens (or creates) `path` and makes sure both tables exist.
    pub fn open(path: &Path) -> io::Result<Self> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => io::Error::other(format!(
                    "{} is in use by another rustnet process (one daemon per state dir)",
                    path.display()
                )),
                e => io::Error::other(e),
            })?;
        let txn = db.begin_write().map_err(io::Error::other)?;
        txn.open_table(LOG).map_err(io::Error::other)?;
        txn.open_table(META).map_err(io::Error::other)?;
        txn.open_table(SNAPSHOT).map_err(io::Error::other)?;
        txn.commit().map_err(io::Error::other)?;
        Ok(Self {
            inner: Arc::new(db),
        })
    }

    pub(crate) fn get_meta<T: DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        let txn = self.inner.begin_read().map_err(io::Error::other)?;
        let table = txn.open_table(META).map_err(io::Error::other)?;
        let Some(value) = table.get(key).map_err(io::Error::other)? else {
            return Ok(None);
        };
        serde_json::from_slice(value.value())
            .map(Some)
            .map_err(io::Error::other)
    }

    pub(crate) fn put_meta<T: Serialize>(&self, key: &str, value: &T) -> io::Result<()> {
        self.put_meta_with(key, value, redb::Durability::Immediate)
    }

    /// Like [`Db::put_meta`], without its own fsync: the record reaches
    /// the disk with the next durable commit, or is lost whole in a crash
    /// before it (for records where an older value is still a true one,
    /// such as the committed index).
    pub(crate) fn put_meta_lazily<T: Serialize>(&self, key: &str, value: &T) -> io::Result<()> {
        self.put_meta_with(key, value, redb::Durability::None)
    }

    fn put_meta_with<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        durability: redb::Durability,
    ) -> io::Result<()> {
        let mut txn = self.inner.begin_write().map_err(io::Error::other)?;
        txn.set_durability(durability).map_err(io::Error::other)?;
        put_meta_in(&txn, key, value)?;
        txn.commit().map_err(io::Error::other)
    }

    /// Replaces the snapshot: its meta (serde) and data (raw bytes) in one
    /// transaction, and drops a snapshot of the old single-record form;
    /// unless the one stored is as new (`supersedes` says whether the new
    /// one supersedes the stored one's meta): then nothing is written and
    /// the answer is `false`. A snapshot is built while the state machine
    /// goes on, and can install a newer one from the leader meanwhile; the
    /// older one, stored after it, once left the log purged past it, and
    /// the member could not start again.
    ///
    /// With [`redb::Durability::None`], without an fsync of its own: the
    /// snapshot reaches the disk with the next durable commit (the log's
    /// next round), or is lost whole in a crash before it, and with it
    /// whatever was written after it (the purge of the log it covers:
    /// commits reach the disk in their order), which leaves the snapshot
    /// before it and the whole log since: the same state.
    pub(crate) fn put_snapshot_with<M: Serialize + DeserializeOwned>(
        &self,
        meta: &M,
        data: &[u8],
        durability: redb::Durability,
        supersedes: impl FnOnce(&M) -> bool,
    ) -> io::Result<bool> {
        let bytes = serde_json::to_vec(meta).map_err(io::Error::other)?;
        let mut txn = self.inner.begin_write().map_err(io::Error::other)?;
        if !supersedes_stored(&txn, supersedes)? {
            return Ok(false);
        }
        txn.set_durability(durability).map_err(io::Error::other)?;
        {
            let mut table = txn.open_table(META).map_err(io::Error::other)?;
            table
                .insert(KEY_SNAPSHOT_META, bytes.as_slice())
                .map_err(io::Error::other)?;
            table.remove(KEY_SNAPSHOT).map_err(io::Error::other)?;
            txn.open_table(SNAPSHOT)
                .map_err(io::Error::other)?
                .insert(SNAPSHOT_DATA, data)
                .map_err(io::Error::other)?;
        }
        txn.commit().map_err(io::Error::other)?;
        Ok(true)
    }

    /// Replaces the snapshot with one in the single record of format 1 (meta
    /// and data in one meta record, as release 0.1 reads it): written while
    /// the cluster's format is 1, so that a host put back on that release
    /// finds its snapshot. Like [`Db::put_snapshot_with`], only over an
    /// older one.
    pub(crate) fn put_snapshot_record<M: DeserializeOwned, T: Serialize>(
        &self,
        record: &T,
        supersedes: impl FnOnce(&M) -> bool,
    ) -> io::Result<bool> {
        let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
        let txn = self.inner.begin_write().map_err(io::Error::other)?;
        if !supersedes_stored(&txn, supersedes)? {
            return Ok(false);
        }
        {
            let mut table = txn.open_table(META).map_err(io::Error::other)?;
            table
                .insert(KEY_SNAPSHOT, bytes.as_slice())
                .map_err(io::Error::other)?;
            table.remove(KEY_SNAPSHOT_META).map_err(io::Error::other)?;
            txn.open_table(SNAPSHOT)
                .map_err(io::Error::other)?
                .remove(SNAPSHOT_DATA)
                .map_err(io::Error::other)?;
        }
        txn.commit().map_err(io::Error::other)?;
        Ok(true)
    }

    /// The snapshot's meta and data, if there is one in the current form.
    pub(crate) fn get_snapshot<M: DeserializeOwned>(&self) -> io::Result<Option<(M, Vec<u8>)>> {
        let Some(meta) = self.get_meta::<M>(KEY_SNAPSHOT_META)? else {
            return Ok(None);
        };
        let txn = self.inner.begin_read().map_err(io::Error::other)?;
        let table = txn.open_table(SNAPSHOT).map_err(io::Error::other)?;
        let data = table
            .get(SNAPSHOT_DATA)
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::other("snapshot meta without its data"))?;
        Ok(Some((meta, data.value().to_vec())))
    }

    pub(crate) fn database(&self) -> &Database {
        &self.inner
    }
}

/// Whether a new snapshot may replace the one stored (in either form), by
/// `supersedes` on the stored one's meta; read within the write
/// transaction that replaces it, so that nothing comes between.
fn supersedes_stored<M: DeserializeOwned>(
    txn: &redb::WriteTransaction,
    supersedes: impl FnOnce(&M) -> bool,
) -> io::Result<bool> {
    /// The single record's meta; its data is skipped.
    #[derive(serde::Deserialize)]
    struct Record<M> {
        meta: M,
    }
    let table = txn.open_table(META).map_err(io::Error::other)?;
    let stored = if let Some(meta) = table.get(KEY_SNAPSHOT_META).map_err(io::Error::other)? {
        serde_json::from_slice::<M>(meta.value()).map_err(io::Error::other)?
    } else if let Some(record) = table.get(KEY_SNAPSHOT).map_err(io::Error::other)? {
        serde_json::from_slice::<Record<M>>(record.value())
            .map_err(io::Error::other)?
            .meta
    } else {
        return Ok(true);
    };
    Ok(supersedes(&stored))
}

/// Writes the meta record `key` within `txn`, committed with whatever else
/// it holds.
pub(crate) fn put_meta_in<T: Serialize>(
    txn: &redb::WriteTransaction,
    key: &str,
    value: &T,
) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    txn.open_table(META)
        .map_err(io::Error::other)?
        .insert(key, bytes.as_slice())
        .map_err(io::Error::other)?;
    Ok(())
}
