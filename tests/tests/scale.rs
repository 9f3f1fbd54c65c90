//! The scale run, small: a simulated Docker host and six bare members
//! filled with endpoints through their sockets; a follower down while 300
//! more are made comes back and catches up; a new member with an empty
//! state dir installs a snapshot and allocates; every member then counts
//! the same addresses. `scripts/scale-bench.sh` is the full size (50
//! members, 10,000 endpoints) with the figures.

use rustnet_tests::scale::{Scale, run};

#[test]
#[ignore = "needs root, network namespaces and dockerd: scripts/test.sh runs it"]
fn a_filled_cluster_takes_back_a_follower_and_a_new_member() {
    let scale = Scale {
        docker_hosts: 1,
        bare_hosts: 6,
        endpoints: 300,
        while_down: 300,
    };
    let report = run(scale);
    eprintln!("{report:#?}");
    assert_eq!(report.members, 7);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(
        report.status_errors.is_empty(),
        "{:?}",
        report.status_errors
    );
    assert_eq!(report.endpoints, 300 + 300 + 1);
    let want = report.allocations_expected;
    assert_eq!(want, 601 + 7);
    assert!(
        report.allocations_seen.iter().all(|n| *n == want),
        "every member should count {want}: {:?}",
        report.allocations_seen
    );
    // 600 and more writes since the new member's empty start: it can only
    // have caught up from a snapshot.
    assert!(
        report.snapshot_bytes.is_some_and(|b| b > 0),
        "the new member installed no snapshot"
    );
    assert!(
        report.rss_kib.iter().all(|(_, kib)| *kib > 0),
        "{:?}",
        report.rss_kib
    );
}
