//! A 3-node cluster in one process over real tonic on 127.0.0.1: joins,
//! concurrent allocations from every node, leader loss, follower loss, a
//! restarted node catching up, and the refused cases.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

mod common;

use common::*;
use rustnet_ipam_core::{Command, HolderKind};
use rustnet_store::{Store, StoreError};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_allocations_from_every_node_never_collide() {
    let root = tempfile::tempdir().unwrap();
    let nodes = cluster_of_three(root.path()).await;
    let stores: Vec<Store> = nodes.iter().map(|n| n.store.clone()).collect();
    let acked = storm(&stores, 40, "c").await;
    assert_eq!(
        acked.len(),
        120,
        "every allocation succeeds on a healthy cluster"
    );
    for node in &nodes {
        check(&node.store, &acked).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_survives_leader_and_follower_loss() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = cluster_of_three(root.path()).await;
    let mut acked = storm(
        &nodes.iter().map(|n| n.store.clone()).collect::<Vec<_>>(),
        10,
        "before",
    )
    .await;

    let lead = leader(&nodes).await;
    nodes[lead].kill().await;
    let alive: Vec<Store> = nodes
        .iter()
        .filter(|n| n.stop.is_some())
        .map(|n| n.store.clone())
        .collect();
    let after = storm(&alive, 10, "after-leader").await;
    assert!(
        !after.is_empty(),
        "no allocation succeeded after the leader died"
    );
    acked.extend(after);
    check(&alive[0], &acked).await;

    // Restart the old leader from its disk on its address: it catches up.
    nodes[lead] = restart_copy(&nodes[lead], config(&nodes[lead].addr)).await;
    check(&nodes[lead].store, &acked).await;

    // Then lose a follower: the other two carry on.
    let lead = leader(&nodes).await;
    let follower = (lead + 1) % 3;
    nodes[follower].kill().await;
    let alive: Vec<Store> = nodes
        .iter()
        .filter(|n| n.stop.is_some())
        .map(|n| n.store.clone())
        .collect();
    acked.extend(storm(&alive, 10, "after-follower").await);
    check(&alive[0], &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minority_refuses_to_allocate_within_the_timeout() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = cluster_of_three(root.path()).await;
    nodes[1].kill().await;
    nodes[2].kill().await;
    let started = Instant::now();
    let err = allocate(&nodes[0].store, "lonely".into())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("quorum"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joins_that_cannot_work_are_refused() {
    let root = tempfile::tempdir().unwrap();
    // Nothing listens at the seed.
    let nobody = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let nobody_addr = nobody.local_addr().unwrap().to_string();
    drop(nobody);
    let Err(err) = join_fresh(root.path(), "lonely", &[nobody_addr], None).await else {
        panic!("joined no one");
    };
    assert!(
        err.to_string()
            .contains("cannot join the cluster: no member answered"),
        "{err}"
    );

    // A node bootstrapped on its own belongs to another cluster.
    let a = fresh(root.path(), "a").await;
    a.store.membership().bootstrap(None).await.unwrap();
    let b = fresh(root.path(), "b").await;
    b.store.membership().bootstrap(None).await.unwrap();
    let token = a.store.membership().join_token().await.unwrap();
    let err = b
        .store
        .membership()
        .join(std::slice::from_ref(&a.addr))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("belongs to another cluster"),
        "{err}"
    );

    // A fresh node without the token, or with a wrong one, is refused at
    // once and does not become a member.
    let seeds = std::slice::from_ref(&a.addr);
    let Err(err) = join_fresh(root.path(), "c", seeds, None).await else {
        panic!("joined without the token");
    };
    assert!(
        err.to_string().contains("needs the cluster's join token"),
        "{err}"
    );
    let wrong = rustnet_ipam_core::JoinToken::generate();
    let Err(err) = join_fresh(root.path(), "c", seeds, Some(&wrong)).await else {
        panic!("joined with a wrong token");
    };
    assert!(err.to_string().contains("wrong join token"), "{err}");
    assert!(!err.to_string().contains(wrong.reveal()), "{err}");
    assert!(!err.to_string().contains(token.reveal()), "{err}");
    assert_eq!(a.store.members().len(), 1);

    // After a rotation the old token is refused and the new one admits.
    let rotated = a.store.membership().rotate_join_token().await.unwrap();
    assert_ne!(rotated, token);
    let Err(err) = join_fresh(root.path(), "c", seeds, Some(&token)).await else {
        panic!("joined with a rotated token");
    };
    assert!(err.to_string().contains("wrong join token"), "{err}");
    join_fresh(root.path(), "c", seeds, Some(&rotated))
        .await
        .unwrap();
    assert_eq!(a.store.members().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_host_frees_what_it_held_and_learners_fill_in() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = cluster_of_three(root.path()).await;
    let token = nodes[0].store.membership().join_token().await.unwrap();
    let fourth = join_fresh(root.path(), "n4", &[nodes[1].addr.clone()], Some(&token))
        .await
        .unwrap();
    let members = nodes[0].store.members();
    assert_eq!(members.iter().filter(|m| m.voter).count(), 3);
    assert!(
        members
            .iter()
            .any(|m| m.id == fourth.store.id() && !m.voter),
        "{members:?}"
    );
    let held = allocate(&fourth.store, "on-n4".into()).await.unwrap();
    // A voter dies and is removed: the learner becomes a voter.
    let dead = nodes[2].store.id();
    let dead_addr = allocate(&nodes[2].store, "on-n3".into()).await.unwrap();
    nodes[2].kill().await;
    nodes[0].store.membership().remove(dead).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let members = nodes[0].store.members();
        if members.iter().filter(|m| m.voter).count() == 3 && members.iter().all(|m| m.id != dead) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no learner promoted: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let addresses: BTreeSet<IpAddr> = fourth
        .store
        .read(|s| s.pool(POOL).unwrap().addresses.keys().copied().collect())
        .await
        .unwrap();
    assert!(addresses.contains(&held));
    assert!(
        !addresses.contains(&dead_addr),
        "the removed host's address is still held"
    );
}

/// Sends a Write and an AppendEntries to `addr` over TLS as `identity`
/// (none: no client certificate), trusting `ca_pem`; the error codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peers_without_a_current_members_certificate_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = cluster_of_three(root.path()).await;
    let addr = nodes[0].addr.clone();
    let own = nodes[1].store.cert().unwrap();
    let ca = own.ca_pem.clone();

    // A member's certificate gets through authorization (the empty
    // payload is then refused as malformed).
    for result in call_as(&addr, &ca, Some(identity(&own))).await {
        assert_eq!(result.unwrap_err().code(), tonic::Code::InvalidArgument);
    }

    // No client certificate.
    for result in call_as(&addr, &ca, None).await {
        let status = result.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
    }

    // A self-signed certificate, and one of another cluster's CA: the TLS
    // handshake fails: the server's alert, or, with TLS 1.3, where the
    // client may send before the server has checked its certificate, the
    // connection closed under it. Either way the call fails in the
    // transport (a service's refusal would carry no transport error).
    let key = rcgen::KeyPair::generate().unwrap();
    let selfsigned = rcgen::CertificateParams::new(vec!["rustnet".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let forged = tonic::transport::Identity::from_pem(selfsigned.pem(), key.serialize_pem());
    let other = fresh(root.path(), "other").await;
    other.store.membership().bootstrap(None).await.unwrap();
    let foreign = identity(&other.store.cert().unwrap());
    for client in [forged, foreign] {
        for result in call_as(&addr, &ca, Some(client)).await {
            let status = result.unwrap_err();
            let transport = std::error::Error::source(&status)
                .is_some_and(|e| e.downcast_ref::<tonic::transport::Error>().is_some());
            assert!(transport, "{status:?}");
        }
    }

    // A removed member's certificate.
    let removed = nodes[2].store.cert().unwrap();
    let id = nodes[2].store.id();
    nodes[2].kill().await;
    nodes[0].store.membership().remove(id).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let results = call_as(&addr, &ca, Some(identity(&removed))).await;
        if results
            .iter()
            .all(|r| matches!(r, Err(s) if s.code() == tonic::Code::PermissionDenied))
        {
            break;
        }
        assert!(Instant::now() < deadline, "still admitted: {results:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The members still talk.
    allocate(&nodes[1].store, "after".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_member_catches_up_from_a_large_snapshot_in_pieces() {
    let root = tempfile::tempdir().unwrap();
    let nodes = cluster_of_three(root.path()).await;
    let stores: Vec<Store> = nodes.iter().map(|n| n.store.clone()).collect();
    // 10,000 endpoints' addresses, in rounds the cluster can take.
    let mut acked = Vec::new();
    for round in 0..60 {
        if acked.len() >= 10_000 {
            break;
        }
        acked.extend(storm(&stores, 200, &format!("r{round}")).await);
    }
    assert!(acked.len() >= 10_000, "only {} allocations", acked.len());
    let token = nodes[0].store.membership().join_token().await.unwrap();

    // An empty state dir: the log before the last snapshot is purged, so
    // the new member can only catch up by installing the snapshot.
    let started = Instant::now();
    let seeds = std::slice::from_ref(&nodes[1].addr);
    let fourth = join_fresh(root.path(), "n4", seeds, Some(&token))
        .await
        .unwrap();
    let address = loop {
        match allocate(&fourth.store, "after-join".into()).await {
            Ok(address) => break address,
            Err(e) if started.elapsed() < Duration::from_secs(10) => {
                pause_after(&e).await;
            }
            Err(e) => panic!("no allocation within 10 s of joining: {e}"),
        }
    };
    let caught_up = started.elapsed();
    assert!(caught_up < Duration::from_secs(10), "took {caught_up:?}");
    println!(
        "joined with {} allocations in the cluster: allocated {address} after {caught_up:?}",
        acked.len()
    );
    acked.push(address);
    check(&fourth.store, &acked).await;
    let size = std::fs::metadata(fourth.dir.join(rustnet_store::STATE_FILE))
        .unwrap()
        .len();
    println!("the new member's state file: {size} bytes");
}

/// A short pause before retrying after `error`.
async fn pause_after(error: &StoreError) {
    eprintln!("retrying: {error}");
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_is_observed_with_its_kind_and_outcome() {
    let root = tempfile::tempdir().unwrap();
    let node = fresh(root.path(), "n1").await;
    node.store.membership().bootstrap(None).await.unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    node.store
        .observe_writes(std::sync::Arc::new(move |kind, outcome, took| {
            record.lock().unwrap().push((kind, outcome, took));
        }));
    let host = node.store.id();
    let pool = Command::RequestPool {
        host,
        pool: Some(POOL.parse().unwrap()),
        range: None,
        v6: false,
        defaults: vec![],
    };
    node.store.write(pool).await.unwrap();
    let fixed = || Command::RequestAddress {
        host,
        pool_id: POOL.to_owned(),
        address: Some("10.50.0.9".parse().unwrap()),
        kind: HolderKind::Static,
    };
    node.store.write(fixed()).await.unwrap();
    let taken = node.store.write(fixed()).await;
    assert!(matches!(taken, Err(StoreError::Rejected(_))), "{taken:?}");
    let seen: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(kind, outcome, _)| (*kind, outcome.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("request-pool", "ok"),
            ("request-address", "ok"),
            ("request-address", "rejected"),
        ]
    );
}

/// A member's stream of forwarded writes carries many writes at once: the
/// leader applies each once and answers each once, by its tag, and ends
/// the stream only after the last answer when the member has sent its
/// last write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_stream_answers_every_write_it_carries_once_by_its_tag() {
    use rustnet_ipam_core::{CommandResult, Proposal, Response};
    use rustnet_proto::{ClusterClient, Payload};
    use rustnet_store::RemoteError;

    let root = tempfile::tempdir().unwrap();
    let nodes = cluster_of_three(root.path()).await;
    let lead = leader(&nodes).await;
    let member = &nodes[(lead + 1) % 3].store;
    const WRITES: u64 = 300;
    let writes: Vec<Payload> = (0..WRITES)
        .map(|tag| {
            let command = Command::RequestAddress {
                host: member.id(),
                pool_id: POOL.into(),
                address: None,
                kind: HolderKind::endpoint(format!("ep{tag}")),
            };
            // Proposal ids of their own: a repeated id is a retry.
            let proposal = Proposal::new(tag + 1_000_000, command);
            Payload {
                format: rustnet_ipam_core::FORMAT,
                data: serde_json::to_vec(&(tag, proposal)).unwrap(),
            }
        })
        .collect();
    let mut answers = ClusterClient::new(channel_as(&nodes[lead].addr, &member.cert().unwrap()))
        .write_stream(futures::stream::iter(writes))
        .await
        .unwrap()
        .into_inner();
    let (mut tags, mut addresses) = (BTreeSet::new(), BTreeSet::new());
    while let Some(answer) = answers.message().await.unwrap() {
        let (tag, result): (u64, Result<CommandResult, RemoteError>) =
            serde_json::from_slice(&answer.data).unwrap();
        assert!(tags.insert(tag), "write {tag} answered twice");
        match result {
            Ok(Ok(Response::Address { address })) => {
                assert!(addresses.insert(address.addr()), "{address} given twice");
            }
            other => panic!("write {tag}: {other:?}"),
        }
    }
    assert_eq!(tags, (0..WRITES).collect(), "every write answered");
    let held = nodes[lead]
        .store
        .read(|s| s.held_addresses())
        .await
        .unwrap();
    assert!(
        held >= addresses.len(),
        "{held} held, {} given",
        addresses.len()
    );
}
