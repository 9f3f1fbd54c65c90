//! A store whose disk fills up stops, and says why: the daemon exits on
//! that rather than answering errors forever. Needs root (mounts a small
//! tmpfs); fails loudly without it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failed unwrap is a failed test

use std::process::Command as Process;
use std::time::Duration;

use rustnet_ipam_core::{Command, DefaultPool};
use rustnet_store::{Store, StoreConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (mounts a tmpfs): scripts/test.sh runs it"]
async fn a_full_disk_stops_the_store_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mount = Process::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(dir.path())
        .status()
        .expect("run mount");
    assert!(mount.success(), "mount a tmpfs (this test needs root)");
    let unmount = scopeguard(dir.path());
    let config = StoreConfig {
        timeout: Duration::from_secs(3),
        join_patience: Duration::from_secs(3),
        ..StoreConfig::new("127.0.0.1:1")
    };
    let store = Store::open(&dir.path().join("state"), config)
        .await
        .unwrap();
    store.membership().bootstrap(None).await.unwrap();
    let fill = Process::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", dir.path().join("filler").display()))
        .output()
        .expect("run dd");
    assert!(!fill.status.success(), "the disk is full");
    let defaults: Vec<DefaultPool> = vec!["10.128.0.0/9:24".parse().unwrap()];
    for _ in 0..200 {
        let request = Command::RequestPool {
            host: store.id(),
            pool: None,
            range: None,
            v6: false,
            defaults: defaults.clone(),
        };
        if store.write(request).await.is_err() {
            break;
        }
    }
    let stopped = tokio::time::timeout(Duration::from_secs(10), store.stopped())
        .await
        .expect("the store is still running on a full disk");
    let reason = stopped.expect("a reason");
    assert!(reason.contains("No space left on device"), "{reason}");
    drop(unmount);
}

/// Unmounts `path` when dropped, also when the test fails.
fn scopeguard(path: &std::path::Path) -> impl Drop {
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Process::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    Unmount(path.to_owned())
}
