//! The replicated [`State`] as an openraft state machine.
//!
//! The state lives in memory behind a lock that readers share; snapshots are
//! written to redb, and on start the last one is loaded before openraft
//! re-applies the committed log that follows it.
//!
//! A snapshot's data is the state as JSON (so fields added later decode
//! with their defaults), deflated behind a 4-byte tag that names its
//! format, `RNZ2`: about a tenth of the JSON. Format 1 wrote plain JSON
//! (before compression) or `RNZ1`; a later format's tag is refused by
//! name ([`crate::FormatError`]).

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

/// A member compacts its log into a snapshot at least this many entries
/// apart...
pub(crate) const SNAPSHOT_EVERY_MIN: u64 = 1_000;
/// ...and at most this many: a restart re-applies the log since the last
/// snapshot.
pub(crate) const SNAPSHOT_EVERY_MAX: u64 = 10_000;

/// Whether the log since the last snapshot (`since` entries) is long
/// enough to compact, for a state that holds `held` addresses. A snapshot
/// costs in proportion to the state; taken every `held / 2` entries, it
/// costs each entry about two addresses' share, whatever the state's size.
/// (Not every `held`: a state that grows by an address an entry would
/// never catch up with its own size.)
pub(crate) fn snapshot_due(since: u64, held: usize) -> bool {
    let half = u64::try_from(held / 2).unwrap_or(u64::MAX);
    since >= half.clamp(SNAPSHOT_EVERY_MIN, SNAPSHOT_EVERY_MAX)
}

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
        let applied = match stored(&db)? {
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

/// Marks compressed snapshot data; the last byte is the format's digit.
const COMPRESSED: &[u8; 3] = b"RNZ";

/// The snapshot in the store: its own table, or the single record of
/// before.
fn stored(db: &Db) -> io::Result<Option<StoredSnapshot>> {
    if let Some((meta, data)) = db.get_snapshot::<SnapshotMeta>()? {
        return Ok(Some(StoredSnapshot { meta, data }));
    }
    db.get_meta::<StoredSnapshot>(KEY_SNAPSHOT)
}

/// Stores a snapshot: while the cluster's format is 1, as plain JSON in
/// the single record release 0.1 reads (a host can go back to it until
/// the upgrade ends); else in its own table. Never over a newer one (see
/// [`Db::put_snapshot_with`]). Hands the data back.
fn store(
    db: &Db,
    meta: SnapshotMeta,
    data: Vec<u8>,
    format_1: bool,
    durability: redb::Durability,
) -> io::Result<Vec<u8>> {
    let last = meta.last_log_id;
    let supersedes = |stored: &SnapshotMeta| stored.last_log_id < last;
    let (stored, data) = if format_1 {
        let record = StoredSnapshot { meta, data };
        (db.put_snapshot_record(&record, supersedes)?, record.data)
    } else {
        (
            db.put_snapshot_with(&meta, &data, durability, supersedes)?,
            data,
        )
    };
    if !stored {
        tracing::debug!(?last, "snapshot not stored: a newer one is");
    }
    Ok(data)
}

/// The state as snapshot data.
pub(crate) fn encode(state: &State) -> io::Result<Vec<u8>> {
    // The JSON goes to the encoder in large pieces, never whole (it is
    // ten times the snapshot): fed serde's small writes directly, the
    // encoder clears its output's spare capacity on each (most of a
    // snapshot's cost when measured).
    // Tagged with the cluster's format, which every member reads: a
    // member of the format before still installs it while the cluster
    // upgrades (nothing of a later format is in the state until then).
    let format = state.cluster_format().clamp(2, crate::FORMAT);
    let tag = [COMPRESSED.as_slice(), &[format_digit(format)]].concat();
    let deflate = flate2::write::DeflateEncoder::new(tag, flate2::Compression::fast());
    let mut json = io::BufWriter::with_capacity(ENCODE_PIECE, deflate);
    serde_json::to_writer(&mut json, state).map_err(io::Error::other)?;
    json.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .finish()
}

/// The size of the pieces of JSON the snapshot encoder takes (and the
/// decoder reads).
const ENCODE_PIECE: usize = 256 << 10;

/// The tag's last byte for `format` (`'2'` for 2).
fn format_digit(format: u32) -> u8 {
    b'0'.saturating_add(u8::try_from(format).unwrap_or(u8::MAX))
}

/// Snapshot data as the state, compressed or not, if its format is one
/// this release reads.
pub(crate) fn decode_state(data: &[u8]) -> io::Result<State> {
    let tagged = data
        .strip_prefix(COMPRESSED.as_slice())
        .and_then(|rest| rest.split_first());
    match tagged {
        // Parsed as it is inflated: the JSON is never whole in memory.
        Some((digit, compressed)) => {
            let format = u32::from(digit.saturating_sub(b'0'));
            crate::format::check("a snapshot", format).map_err(io::Error::other)?;
            let json = io::BufReader::with_capacity(
                ENCODE_PIECE,
                flate2::read::DeflateDecoder::new(compressed),
            );
            serde_json::from_reader(json).map_err(io::Error::other)
        }
        None => serde_json::from_slice(data).map_err(io::Error::other),
    }
}

fn decode(meta: &SnapshotMeta, data: &[u8]) -> io::Result<Applied> {
    Ok(Applied {
        last_applied: meta.last_log_id,
        membership: meta.last_membership.clone(),
        state: decode_state(data)?,
    })
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        // A copy, encoded outside the lock: applying waits for the lock.
        // The large tables (addresses, endpoints) are persistent maps that
        // the copy shares: it took 25-30 ms under load at 60,000 addresses
        // when they were copied entry by entry, on every member at about
        // the same point of the log, and the whole cluster waited.
        let (meta, state) = {
            let applied = self.state()?;
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
            };
            (meta, applied.state.clone())
        };
        // Encoding takes tens of milliseconds of CPU at 10,000 addresses:
        // at a lower priority than the requests, on a thread of its own.
        // Storing it takes the database's write lock, which the log's
        // writer waits for: at the normal priority, and without an fsync
        // of its own (the log's next round takes it to disk, before the
        // purge that follows it). With one, it held the writer 1-5.6 ms.
        let format_1 = state.cluster_format() < 2;
        let data = crate::background::run("rustnet-snapshot", move || {
            if format_1 {
                serde_json::to_vec(&state).map_err(io::Error::other)
            } else {
                encode(&state)
            }
        })
        .await??;
        let (db, stored_meta) = (self.db.clone(), meta.clone());
        let data = tokio::task::spawn_blocking(move || {
            store(&db, stored_meta, data, format_1, redb::Durability::None)
        })
        .await
        .map_err(io::Error::other)??;
        // No trim here (an install still trims at once): a trim holds
        // glibc's arenas' locks (0.3-1.3 ms under load), and every member
        // builds at about the same point of the log, under the load that
        // brought it there. The daemon's trim every two seconds gives the
        // encoding's garbage back.
        tracing::debug!(bytes = data.len(), "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: data,
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
        let format_1 = applied.state.cluster_format() < 2;
        let snapshot = if format_1 && snapshot.starts_with(COMPRESSED) {
            serde_json::to_vec(&applied.state).map_err(io::Error::other)?
        } else {
            snapshot
        };
        let snapshot = store(
            &self.db,
            meta.clone(),
            snapshot,
            format_1,
            redb::Durability::Immediate,
        )?;
        tracing::info!(bytes = snapshot.len(), "snapshot installed");
        *self.state_mut()? = applied;
        // The state it replaced and the decoding's garbage.
        crate::memory::trim_soon();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(stored(&self.db)?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: s.data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, HolderKind};

    #[test]
    fn the_log_is_compacted_as_often_as_the_state_is_large_within_bounds() {
        // A small state: every 1,000 entries.
        assert!(!snapshot_due(999, 10));
        assert!(snapshot_due(1_000, 10));
        // A state of 8,000 addresses: every 4,000.
        assert!(!snapshot_due(3_999, 8_000));
        assert!(snapshot_due(4_000, 8_000));
        // A state that grows by an address an entry, its last snapshot
        // taken at 4,000: the next is due at 8,000, not never.
        assert!(snapshot_due(8_000 - 4_000, 8_000));
        // A large one: still every 10,000, for restarts.
        assert!(!snapshot_due(9_999, 50_000));
        assert!(snapshot_due(10_000, 50_000));
    }

    /// A snapshot built from an older state, stored after a newer one was
    /// installed (the build runs beside the state machine), leaves the
    /// newer one: the log is purged up to it.
    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let meta = |index| SnapshotMeta {
            last_log_id: Some(openraft::testing::log_id::<TypeConfig>(1, 1, index)),
            last_membership: StoredMembership::default(),
        };
        for format_1 in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open(&dir.path().join("state.redb")).unwrap();
            let durable = redb::Durability::Immediate;
            store(&db, meta(10), b"ten".to_vec(), format_1, durable).unwrap();
            store(&db, meta(5), b"five".to_vec(), format_1, durable).unwrap();
            let kept = stored(&db).unwrap().unwrap();
            assert_eq!(kept.meta.last_log_id, meta(10).last_log_id, "{format_1}");
            assert_eq!(kept.data, b"ten", "{format_1}");
            // A newer one replaces it, in the other form too.
            store(&db, meta(20), b"twenty".to_vec(), !format_1, durable).unwrap();
            let kept = stored(&db).unwrap().unwrap();
            assert_eq!(kept.meta.last_log_id, meta(20).last_log_id, "{format_1}");
            assert_eq!(kept.data, b"twenty", "{format_1}");
        }
    }

    /// The same through the state machine, interleaved as openraft runs
    /// it: a build copies the state, a newer snapshot is installed while
    /// it encodes, then the build finishes.
    #[tokio::test]
    async fn a_snapshot_installed_during_a_build_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("state.redb")).unwrap();
        let mut machine = StateMachine::open(db.clone()).unwrap();
        let mut builder = machine.get_snapshot_builder().await;
        let mut build = Box::pin(builder.build_snapshot());
        assert!(
            futures::poll!(&mut build).is_pending(),
            "the build encodes on a thread of its own"
        );
        let newer = SnapshotMeta {
            last_log_id: Some(openraft::testing::log_id::<TypeConfig>(1, 1, 10)),
            last_membership: StoredMembership::default(),
        };
        let data = encode(&State::default()).unwrap();
        machine.install_snapshot(&newer, data).await.unwrap();
        let built = build.await.unwrap();
        assert_eq!(built.meta.last_log_id, None, "built from the state before");
        let kept = stored(&db).unwrap().unwrap();
        assert_eq!(kept.meta.last_log_id, newer.last_log_id);
        assert_eq!(decode_state(&kept.data).unwrap(), State::default());
        let current = machine.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id, newer.last_log_id);
    }

    #[test]
    fn snapshots_are_compressed_and_old_ones_still_decode() {
        let mut state = State::default();
        let pool = Command::RequestPool {
            host: 1,
            pool: Some("10.0.0.0/16".parse().unwrap()),
            range: None,
            v6: false,
            defaults: vec![],
        };
        state.apply(&pool).unwrap();
        for i in 0..2000 {
            let take = Command::RequestAddress {
                host: 1,
                pool_id: "10.0.0.0/16".into(),
                address: None,
                kind: HolderKind::endpoint(format!("c{i}")),
            };
            state.apply(&take).unwrap();
        }
        let json = serde_json::to_vec(&state).unwrap();
        let compact = encode(&state).unwrap();
        assert!(
            compact.len() * 5 < json.len(),
            "{} vs {}",
            compact.len(),
            json.len()
        );
        assert_eq!(decode_state(&compact).unwrap(), state);
        assert_eq!(decode_state(&json).unwrap(), state);
        assert!(decode_state(b"RNZ1garbage").is_err());
        assert!(
            compact.starts_with(b"RNZ2"),
            "a cluster of format 1 or 2: what release 0.2 reads"
        );
        let mut raised = state.clone();
        raised.apply(&Command::RaiseFormat { format: 3 }).unwrap();
        assert!(encode(&raised).unwrap().starts_with(b"RNZ3"));
        raised.apply(&Command::RaiseFormat { format: 4 }).unwrap();
        assert!(encode(&raised).unwrap().starts_with(b"RNZ4"));
        raised.apply(&Command::RaiseFormat { format: 5 }).unwrap();
        assert!(encode(&raised).unwrap().starts_with(b"RNZ5"));
        // Format 1 deflated behind RNZ1: still read.
        let mut format_1 = compact.clone();
        format_1[3] = b'1';
        assert_eq!(decode_state(&format_1).unwrap(), state);
        // A later format is refused by name.
        let mut later = compact;
        later[3] = b'6';
        let refused = decode_state(&later).unwrap_err().to_string();
        assert!(
            refused.contains("a snapshot was written in format 6"),
            "{refused}"
        );
    }
}
