use super::*;
use crate::{HolderKind, Response};

const TIMEOUT: Duration = Duration::from_secs(20);

async fn open(dir: &Path) -> Result<Store, StoreError> {
    let config = StoreConfig {
        addr: "127.0.0.1:1".into(),
        timeout: TIMEOUT,
        voters: 3,
        join_patience: Duration::from_secs(5),
        snapshot_chunk: crate::store::SNAPSHOT_CHUNK,
        cert_lifetime: crate::store::CERT_LIFETIME,
    };
    let store = Store::open(dir, config).await?;
    store.bootstrap(None).await?;
    Ok(store)
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
    let pool = Command::RequestPool {
        host: id,
        pool: Some("10.0.42.0/24".parse().unwrap()),
        range: None,
        v6: false,
        defaults: vec![],
    };
    store.write(pool).await.unwrap();
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

    // openraft's tasks let go of the database shortly after shutdown.
    let mut attempts = 0;
    let store = loop {
        match open(dir.path()).await {
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
    // Released addresses are quarantined: the next one is fresh.
    assert_eq!(request_address(&store, "new").await, "10.0.42.121/24");
    store.shutdown().await;
}
