use super::*;
use crate::{HolderKind, Response};

const TIMEOUT: Duration = Duration::from_secs(20);

async fn open(dir: &Path) -> Result<Store, StoreError> {
    let config = StoreConfig {
        timeout: TIMEOUT,
        ..StoreConfig::new("127.0.0.1:1")
    };
    let store = Store::open(dir, config).await?;
    store.membership().bootstrap(None).await?;
    Ok(store)
}

/// The pool the tests take addresses from, 10.0.42.0/24.
async fn request_pool(store: &Store) {
    let pool = Command::RequestPool {
        host: store.id(),
        pool: Some("10.0.42.0/24".parse().unwrap()),
        range: None,
        v6: false,
        defaults: vec![],
    };
    store.write(pool).await.unwrap();
}

/// `open`'s answer once the database is free: openraft's tasks let go of
/// it shortly after shutdown.
async fn reopen<T, E: std::fmt::Display>(mut open: impl AsyncFnMut() -> Result<T, E>) -> T {
    let mut attempts = 0;
    loop {
        match open().await {
            Ok(opened) => return opened,
            Err(e) if attempts < 50 && e.to_string().contains("in use by another") => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("reopen: {e}"),
        }
    }
}

async fn request_address(store: &Store, name: &str) -> String {
    let cmd = Command::RequestAddress {
        host: store.id(),
        pool_id: "10.0.42.0/24".into(),
        address: None,
        kind: HolderKind::endpoint(name),
    };
    match store.write(cmd).await.unwrap() {
        Response::Address { address } => address.to_string(),
        other => panic!("{other:?}"),
    }
}

/// Everything acknowledged before a restart is there after it, and the
/// node keeps its identity; enough writes to pass a snapshot and purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_identity_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await.unwrap();
    let id = store.id();
    request_pool(&store).await;
    for i in 0..120 {
        let got = request_address(&store, &format!("c{i}")).await;
        let release = Command::ReleaseAddress {
            host: id,
            pool_id: "10.0.42.0/24".into(),
            address: got.parse::<ipnet::IpNet>().unwrap().addr(),
        };
        if i % 2 == 0 {
            store.write(release).await.unwrap();
        }
    }
    let before = store.read(|s| s.clone()).await.unwrap();
    store.raft.trigger().snapshot().await.unwrap();
    store.shutdown().await;
    drop(store);

    let store = reopen(async || open(dir.path()).await).await;
    assert_eq!(store.id(), id);
    assert_eq!(store.read(|s| s.clone()).await.unwrap(), before);
    // Released addresses are quarantined: the next one is fresh.
    assert_eq!(request_address(&store, "new").await, "10.0.42.121/24");
    store.shutdown().await;
}

#[test]
fn a_state_file_of_format_1_moves_and_its_old_place_refuses_release_0_1() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("raft.redb");
    Db::open(&old)
        .unwrap()
        .put_meta(KEY_NODE_ID, &7u64)
        .unwrap();
    let db = open_db(dir.path()).unwrap();
    assert_eq!(db.get_meta::<u64>(KEY_NODE_ID).unwrap(), Some(7));
    assert_eq!(db.get_meta::<u32>(KEY_FORMAT).unwrap(), Some(crate::FORMAT));
    drop(db);
    assert!(dir.path().join(STATE_FILE).is_file());
    assert!(old.is_dir(), "release 0.1 cannot open a directory");
    let note = std::fs::read_to_string(old.join("README")).unwrap();
    assert!(note.contains("Downgrades are not supported"), "{note}");
    // Opened again: the same file.
    let db = open_db(dir.path()).unwrap();
    assert_eq!(db.get_meta::<u64>(KEY_NODE_ID).unwrap(), Some(7));
}

#[test]
fn a_state_file_of_a_later_format_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).unwrap();
    db.put_meta(KEY_FORMAT, &(crate::FORMAT + 1)).unwrap();
    drop(db);
    let Err(refused) = open_db(dir.path()) else {
        panic!("a later format was opened");
    };
    let text = crate::chain(&refused);
    assert!(
        text.contains(&format!(
            "the state file was written in format {}",
            crate::FORMAT + 1
        )),
        "{text}"
    );
}

/// A state dir whose snapshot is older than its log's start (as a
/// snapshot stored over a newer one once left it) cannot be rebuilt
/// alone: opening it is a storage failure, which the daemon exits on,
/// not a Raft error it would answer with forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_older_than_the_log_is_a_storage_failure() {
    use crate::db::{KEY_PURGED, KEY_SNAPSHOT_META};
    type Meta = openraft::alias::SnapshotMetaOf<TypeConfig>;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await.unwrap();
    request_pool(&store).await;
    for i in 0..20 {
        request_address(&store, &format!("c{i}")).await;
    }
    store.raft.trigger().snapshot().await.unwrap();
    // Built in a task of its own.
    let deadline = Instant::now() + TIMEOUT;
    while store
        .db
        .get_meta::<Meta>(KEY_SNAPSHOT_META)
        .unwrap()
        .is_none()
    {
        assert!(Instant::now() < deadline, "no snapshot within {TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.shutdown().await;
    drop(store);

    // The log purged up to the snapshot, the snapshot ten entries older.
    let db = reopen(async || open_db(dir.path())).await;
    let mut meta: Meta = db.get_meta(KEY_SNAPSHOT_META).unwrap().unwrap();
    let last = meta.last_log_id.unwrap();
    db.put_meta(KEY_PURGED, &last).unwrap();
    meta.last_log_id = Some(openraft::alias::LogIdOf::<TypeConfig> {
        index: last.index - 10,
        ..last
    });
    db.put_meta(KEY_SNAPSHOT_META, &meta).unwrap();
    drop(db);

    let failed = open(dir.path()).await.unwrap_err();
    assert!(matches!(failed, StoreError::Open { .. }), "{failed:?}");
    let text = crate::chain(&failed);
    assert!(text.contains("Cannot re-apply logs"), "{text}");
}
