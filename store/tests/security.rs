//! Attacks on a 3-node cluster in one process (real tonic and TLS on
//! 127.0.0.1), each shown refused: a member writing for another host, a
//! certificate joining as another id, a removed host coming back with
//! what it held; and certificates that renew themselves under a running
//! cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failed unwrap is a failed test

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;
use rustnet_ipam_core::{
    Admission, Command, CommandResult, HolderKind, IpamError, Proposal, Response,
};
use rustnet_proto::{ClusterClient, Payload, RaftClient};
use rustnet_store::{JoinReply, JoinRequest, NodeCert, RemoteError};
use tokio::net::TcpListener;

/// Forwards `command` to the leader at `addr` as the member whose
/// certificate is `cert`, claiming to be `claimed` (which the leader must
/// ignore).
async fn write_as(addr: &str, cert: &NodeCert, command: Command, claimed: u64) -> CommandResult {
    let proposal = Proposal {
        by: Some(claimed),
        ..Proposal::new(rand_id(), command)
    };
    let payload = Payload {
        format: rustnet_ipam_core::FORMAT,
        data: serde_json::to_vec(&proposal).unwrap(),
    };
    let reply = ClusterClient::new(channel_as(addr, cert))
        .write(payload)
        .await
        .unwrap();
    let answer: Result<CommandResult, RemoteError> =
        serde_json::from_slice(&reply.get_ref().data).unwrap();
    answer.unwrap()
}

/// As [`write_as`], over the stream of forwarded writes (`WriteStream`).
async fn stream_write_as(
    addr: &str,
    cert: &NodeCert,
    command: Command,
    claimed: u64,
) -> CommandResult {
    let proposal = Proposal {
        by: Some(claimed),
        ..Proposal::new(rand_id(), command)
    };
    let tagged = Payload {
        format: rustnet_ipam_core::FORMAT,
        data: serde_json::to_vec(&(7u64, proposal)).unwrap(),
    };
    let mut answers = ClusterClient::new(channel_as(addr, cert))
        .write_stream(futures::stream::iter([tagged]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let (tag, answer): (u64, Result<CommandResult, RemoteError>) =
        serde_json::from_slice(&answer.data).unwrap();
    assert_eq!(tag, 7, "the answer carries the write's tag");
    answer.unwrap()
}

/// A proposal id of its own for every write (a repeated id is a retry,
/// answered with the first result).
fn rand_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 40);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

async fn held_by(store: &rustnet_store::Store, address: IpAddr) -> Option<u64> {
    store
        .read(|s| s.holder(address).map(|h| h.host))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_may_change_only_what_its_own_host_holds() {
    let root = tempfile::tempdir().unwrap();
    let nodes = cluster_of_three(root.path()).await;
    let lead = leader(&nodes).await;
    let (victim, attacker) = (&nodes[(lead + 1) % 3], &nodes[(lead + 2) % 3]);
    let address = allocate(&victim.store, "victim".into()).await.unwrap();
    let cert = attacker.store.cert().unwrap();
    let victim_id = victim.store.id();
    let attacks = [
        Command::ReleaseAddress {
            host: victim_id,
            pool_id: POOL.into(),
            address,
        },
        Command::ForgetHost { host: victim_id },
        Command::ReleasePool {
            host: victim_id,
            pool_id: POOL.into(),
        },
        // Taking over the victim's identity.
        Command::AdmitCert {
            host: victim_id,
            fingerprint: cert.fingerprint.clone(),
            issuer: None,
            not_before: None,
        },
    ];
    for attack in attacks {
        // Claiming to be the victim changes nothing: the certificate says who.
        let refused = write_as(&nodes[lead].addr, &cert, attack.clone(), victim_id).await;
        assert!(
            matches!(refused, Err(IpamError::NotAuthorized { .. })),
            "{attack}: {refused:?}"
        );
        // The same over the stream of forwarded writes.
        let refused = stream_write_as(&nodes[lead].addr, &cert, attack.clone(), victim_id).await;
        assert!(
            matches!(refused, Err(IpamError::NotAuthorized { .. })),
            "{attack} (stream): {refused:?}"
        );
    }
    assert_eq!(held_by(&nodes[lead].store, address).await, Some(victim_id));
    assert_eq!(
        victim.store.cert().map(|c| c.fingerprint),
        nodes[lead]
            .store
            .read(|s| s.cert_of(victim_id).map(str::to_owned))
            .await
            .unwrap()
    );
    // The same kind of write for its own host goes through.
    let own = Command::RequestAddress {
        host: attacker.store.id(),
        pool_id: POOL.into(),
        address: None,
        kind: HolderKind::Static,
    };
    let granted = write_as(&nodes[lead].addr, &cert, own.clone(), victim_id).await;
    let Ok(Response::Address { address: mine }) = granted else {
        panic!("{granted:?}");
    };
    assert_eq!(
        held_by(&nodes[lead].store, mine.addr()).await,
        Some(attacker.store.id())
    );
    let granted = stream_write_as(&nodes[lead].addr, &cert, own, victim_id).await;
    let Ok(Response::Address { address: mine }) = granted else {
        panic!("(stream) {granted:?}");
    };
    assert_eq!(
        held_by(&nodes[lead].store, mine.addr()).await,
        Some(attacker.store.id())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enrollment_names_no_identity_and_a_certificate_joins_only_as_its_own() {
    let root = tempfile::tempdir().unwrap();
    let nodes = cluster_of_three(root.path()).await;
    let token = nodes[0].store.membership().join_token().await.unwrap();
    let ids: Vec<u64> = nodes.iter().map(|n| n.store.id()).collect();

    // A new host gets a fresh id from the cluster, above every member's.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let dir = root.path().join("newcomer");
    let seeds = [nodes[1].addr.clone()];
    rustnet_store::enroll(&dir, &config(&addr), &seeds, Some(&token))
        .await
        .unwrap();
    let newcomer = start(dir, listener).await;
    assert!(ids.iter().all(|id| newcomer.store.id() > *id), "{ids:?}");

    // With its certificate it cannot join as a member's id.
    let cert = newcomer.store.cert().unwrap();
    let ask = JoinRequest {
        node_id: ids[2],
        addr: addr.clone(),
        cluster: None,
    };
    let payload = Payload {
        format: rustnet_ipam_core::FORMAT,
        data: serde_json::to_vec(&ask).unwrap(),
    };
    let reply = ClusterClient::new(channel_as(&nodes[0].addr, &cert))
        .join(payload)
        .await
        .unwrap();
    let answer: Result<JoinReply, RemoteError> =
        serde_json::from_slice(&reply.get_ref().data).unwrap();
    let refusal = answer.unwrap_err().to_string();
    assert!(refusal.contains("cannot join as node"), "{refusal}");
    assert_eq!(nodes[0].store.members().len(), 3);

    // As itself it joins.
    newcomer.store.membership().join(&seeds).await.unwrap();
    assert!(
        nodes[0]
            .store
            .members()
            .iter()
            .any(|m| m.id == newcomer.store.id())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_host_cannot_come_back_with_what_it_held() {
    let root = tempfile::tempdir().unwrap();
    let nodes = cluster_of_three(root.path()).await;
    let token = nodes[0].store.membership().join_token().await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seeds = [nodes[0].addr.clone()];
    let fourth = join_fresh(root.path(), "n4", &seeds, Some(&token))
        .await
        .unwrap();
    let removed_id = fourth.store.id();
    let removed_cert = fourth.store.cert().unwrap();
    nodes[0]
        .store
        .membership()
        .remove(removed_id)
        .await
        .unwrap();

    // Its certificate is refused by every member, at once.
    for node in &nodes {
        let results = call_as(
            &node.addr,
            &removed_cert.ca_pem,
            Some(identity(&removed_cert)),
        )
        .await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(s) if s.code() == tonic::Code::PermissionDenied)),
            "{results:?}"
        );
    }
    // The token it held (the one `rustnet status --token` showed) no longer
    // enrolls: removal rotated it.
    let rotated = nodes[0].store.membership().join_token().await.unwrap();
    assert_ne!(rotated, token);
    let dir = root.path().join("n4-again");
    let err = rustnet_store::enroll(&dir, &config(&addr), &seeds, Some(&token))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("wrong join token"), "{err}");
    drop(listener);

    // The cluster goes on.
    allocate(&nodes[0].store, "after".into()).await.unwrap();
}

/// A member's replication stream, opened while it was one, is admitted
/// again on every message: removing the member cuts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replication_stream_is_cut_when_its_member_is_removed() {
    let root = tempfile::tempdir().unwrap();
    let nodes = cluster_of_three(root.path()).await;
    let token = nodes[0].store.membership().join_token().await.unwrap();
    let seeds = [nodes[0].addr.clone()];
    let fourth = join_fresh(root.path(), "n4", &seeds, Some(&token))
        .await
        .unwrap();
    let cert = fourth.store.cert().unwrap();
    let open = || async {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Payload>();
        let answers = RaftClient::new(channel_as(&nodes[1].addr, &cert))
            .append_stream(rx)
            .await?;
        Ok::<_, tonic::Status>((tx, answers.into_inner()))
    };
    // Opened as a member (once this replica has applied the join).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (tx, mut answers) = loop {
        match open().await {
            Ok(stream) => break stream,
            Err(status) if Instant::now() < deadline => {
                eprintln!("not yet admitted: {status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("a member's stream refused: {status:?}"),
        }
    };
    // The same member's stream of forwarded writes, to the leader.
    let lead = leader(&nodes).await;
    let (writes, mut written) = {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Payload>();
        let answers = ClusterClient::new(channel_as(&nodes[lead].addr, &cert))
            .write_stream(rx)
            .await
            .unwrap();
        (tx, answers.into_inner())
    };
    nodes[0]
        .store
        .membership()
        .remove(fourth.store.id())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while nodes[lead]
        .store
        .members()
        .iter()
        .any(|m| m.id == fourth.store.id())
    {
        assert!(
            Instant::now() < deadline,
            "the removal never reached the leader"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let own = Command::RequestAddress {
        host: fourth.store.id(),
        pool_id: POOL.into(),
        address: None,
        kind: HolderKind::Static,
    };
    writes
        .unbounded_send(Payload {
            format: rustnet_ipam_core::FORMAT,
            data: serde_json::to_vec(&(1u64, Proposal::new(rand_id(), own))).unwrap(),
        })
        .unwrap();
    let status = written.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    let deadline = Instant::now() + Duration::from_secs(10);
    while nodes[1]
        .store
        .members()
        .iter()
        .any(|m| m.id == fourth.store.id())
    {
        assert!(Instant::now() < deadline, "the removal never reached n2");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The membership changes when its entry is appended; the certificate
    // is revoked when n2 applies the removal, which may come a moment
    // later: wait for that too.
    let fingerprint = fourth.store.cert().unwrap().fingerprint;
    let revoked = || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        nodes[1]
            .store
            .local(|s| matches!(s.admission(&fingerprint, now), Admission::Refused))
            .unwrap_or(false)
    };
    while !revoked() {
        assert!(Instant::now() < deadline, "n2 never applied the removal");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The next message on the stream that is still open is refused, before
    // it is even read as a request.
    tx.unbounded_send(Payload {
        format: rustnet_ipam_core::FORMAT,
        data: b"{}".to_vec(),
    })
    .unwrap();
    let status = answers.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_renew_themselves_under_a_running_cluster() {
    let root = tempfile::tempdir().unwrap();
    // Certificates of 15 s: each member renews when 5 s are left.
    let lifetime = Duration::from_secs(15);
    let first = start_lived(root.path(), "n1", lifetime).await;
    first.store.membership().bootstrap(None).await.unwrap();
    let token = first.store.membership().join_token().await.unwrap();
    let mut nodes = vec![first];
    for name in ["n2", "n3"] {
        let seeds = [nodes[0].addr.clone()];
        let node = join_fresh_lived(root.path(), name, &seeds, Some(&token), lifetime)
            .await
            .unwrap();
        nodes.push(node);
    }
    create_pool(&nodes[0].store).await;
    let before: Vec<NodeCert> = nodes.iter().map(|n| n.store.cert().unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let renewed = nodes
            .iter()
            .zip(&before)
            .all(|(n, old)| n.store.cert().unwrap().fingerprint != old.fingerprint);
        if renewed {
            break;
        }
        assert!(Instant::now() < deadline, "not every member renewed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Past the old certificates' lifetime, the cluster still works, and an
    // old certificate is refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, node) in nodes.iter().enumerate() {
        allocate(&node.store, format!("renewed-{i}")).await.unwrap();
    }
    // The certificate before a renewal stays admitted until the next one;
    // after that it is refused (or has expired: refused by TLS). An
    // admitted one would get as far as the malformed payload.
    let first_renewal = nodes[1].store.cert().unwrap().fingerprint;
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes[1].store.cert().unwrap().fingerprint == first_renewal {
        assert!(Instant::now() < deadline, "no second renewal");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old = &before[1];
    let results = call_as(&nodes[0].addr, &old.ca_pem, Some(identity(old))).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(s) if s.code() != tonic::Code::InvalidArgument)),
        "still admitted: {results:?}"
    );
    allocate(&nodes[2].store, "twice-renewed".into())
        .await
        .unwrap();
}

async fn start_lived(root: &std::path::Path, name: &str, lifetime: Duration) -> Node {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    start_with(root.join(name), listener, config_lived(&addr, lifetime)).await
}

/// `rustnet cluster rotate-ca` under load: every member renews under the
/// new CA while allocations keep succeeding through each of them; the CA
/// before is then retired (a certificate of it is refused although its
/// fingerprint is still a member's previous one), the old join token (it
/// pins the old CA) no longer enrolls, and the new one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ca_rotates_under_a_running_cluster() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let root = tempfile::tempdir().unwrap();
    let nodes = cluster_of_three(root.path()).await;
    let stores: Vec<_> = nodes.iter().map(|n| n.store.clone()).collect();
    let old_token = nodes[0].store.membership().join_token().await.unwrap();
    let old_certs: Vec<NodeCert> = nodes.iter().map(|n| n.store.cert().unwrap()).collect();

    let done = Arc::new(AtomicBool::new(false));
    let flowing = tokio::spawn({
        let (stores, done) = (stores.clone(), done.clone());
        async move {
            let (mut asked, mut acked) = (0, Vec::new());
            for round in 0.. {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                acked.extend(storm(&stores, 4, &format!("rot{round}")).await);
                asked += 4 * stores.len();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (asked, acked)
        }
    });
    nodes[1].store.signing().rotate_ca().await.unwrap();
    let token = nodes[1].store.membership().join_token().await.unwrap();
    assert_ne!(
        token.reveal(),
        old_token.reveal(),
        "the token still pins the old CA"
    );
    let again = nodes[2].store.signing().rotate_ca().await;
    assert!(
        matches!(
            again,
            Err(rustnet_store::StoreError::Rejected(
                IpamError::CaRotationUnderWay { .. }
            ))
        ),
        "a second rotation during the first: {again:?}"
    );
    let new_ca = nodes[0]
        .store
        .read(|s| s.ca().cloned())
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let finished = nodes.iter().all(|n| {
            let cert = n.store.cert().unwrap();
            n.store.local(|s| s.ca_rotation().is_none()) == Some(true)
                && cert.issuer == new_ca.fingerprint
                && cert.ca_pem == new_ca.cert_pem
        });
        if finished {
            break;
        }
        assert!(Instant::now() < deadline, "the rotation did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done.store(true, Ordering::Relaxed);
    let (asked, acked) = flowing.await.unwrap();
    assert_eq!(acked.len(), asked, "allocations failed during the rotation");
    check(&nodes[0].store, &acked).await;

    // The old CA is no longer trusted: a member's certificate from before
    // (its fingerprint still admitted as the one before its renewal) is
    // refused by TLS.
    let old = &old_certs[1];
    let results = call_as(&nodes[0].addr, &new_ca.cert_pem, Some(identity(old))).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(s) if s.code() != tonic::Code::InvalidArgument)),
        "a certificate of the retired CA was admitted: {results:?}"
    );
    let seeds = [nodes[0].addr.clone()];
    assert!(
        join_fresh(root.path(), "n4", &seeds, Some(&old_token))
            .await
            .is_err(),
        "the token from before the rotation enrolled a host"
    );
    let newcomer = join_fresh(root.path(), "n5", &seeds, Some(&token))
        .await
        .unwrap();
    allocate(&newcomer.store, "after-rotation".into())
        .await
        .unwrap();
    for node in &nodes {
        allocate(&node.store, format!("after-{}", node.addr))
            .await
            .unwrap();
    }
}

/// Sends `data` to `rpc` (`issue` or `ca_key`) at `addr` as the member
/// whose certificate is `cert`, and decodes the member's answer.
async fn ask_as<T: serde::de::DeserializeOwned>(
    addr: &str,
    cert: &NodeCert,
    rpc: &str,
    data: serde_json::Value,
) -> Result<T, RemoteError> {
    let payload = Payload {
        format: rustnet_ipam_core::FORMAT,
        data: serde_json::to_vec(&data).unwrap(),
    };
    let mut client = ClusterClient::new(channel_as(addr, cert));
    let reply = match rpc {
        "issue" => client.issue(payload).await,
        "ca_key" => client.ca_key(payload).await,
        other => panic!("no rpc {other}"),
    }
    .unwrap();
    serde_json::from_slice(&reply.get_ref().data).unwrap()
}

/// Whether `node` holds the cluster's CA key.
fn holds_key(node: &Node) -> bool {
    node.store.signing().holds_ca_key()
}

/// Learners hold no CA key: the key is in no replicated state, only in the
/// voters' own dbs; a learner gets its renewed certificate, and a host
/// enrolling through it gets its first, from the leader; a learner asking
/// for another member's certificate or for the CA key is refused; a
/// learner promoted to voter fetches the key and can then sign.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn learners_hold_no_ca_key() {
    let root = tempfile::tempdir().unwrap();
    // Certificates of 15 s: each member renews when 5 s are left.
    let lifetime = Duration::from_secs(15);
    let first = start_lived(root.path(), "n1", lifetime).await;
    first.store.membership().bootstrap(None).await.unwrap();
    let token = first.store.membership().join_token().await.unwrap();
    let mut nodes = vec![first];
    for name in ["n2", "n3", "n4"] {
        let seeds = [nodes[0].addr.clone()];
        let node = join_fresh_lived(root.path(), name, &seeds, Some(&token), lifetime)
            .await
            .unwrap();
        nodes.push(node);
    }
    create_pool(&nodes[0].store).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let voters_hold = nodes[..3].iter().all(holds_key);
        let members = nodes[0].store.members();
        let is_learner = members
            .iter()
            .any(|m| m.id == nodes[3].store.id() && !m.voter);
        if voters_hold && is_learner {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "voters without the CA key, or n4 not a learner: {members:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!holds_key(&nodes[3]), "the learner holds a CA key");
    for node in &nodes {
        let ca = node.store.read(|s| s.ca().cloned()).await.unwrap().unwrap();
        assert!(
            ca.key_pem.is_empty(),
            "the CA key is in the replicated state"
        );
    }

    // A host enrolls through the learner: the leader issues its certificate.
    let seeds = [nodes[3].addr.clone()];
    let newcomer = join_fresh(root.path(), "n5", &seeds, Some(&token))
        .await
        .unwrap();
    allocate(&newcomer.store, "enrolled-via-learner".into())
        .await
        .unwrap();

    // The learner renews its certificate through the leader.
    let before = nodes[3].store.cert().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes[3].store.cert().unwrap().fingerprint == before.fingerprint {
        assert!(Instant::now() < deadline, "the learner did not renew");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    allocate(&nodes[3].store, "after-renewal".into())
        .await
        .unwrap();
    assert!(!holds_key(&nodes[3]), "the learner holds a CA key");

    // Attacks with the learner's certificate: a certificate of another
    // member, the CA key.
    let cert = nodes[3].store.cert().unwrap();
    let lead = &nodes[leader(&nodes[..3]).await];
    let victim = nodes[1].store.id();
    let issued: Result<NodeCert, RemoteError> = ask_as(
        &lead.addr,
        &cert,
        "issue",
        serde_json::json!({ "host": victim }),
    )
    .await;
    assert!(
        matches!(issued, Err(RemoteError::Refused(_))),
        "a learner got another member's certificate: {:?}",
        issued.map(|c| c.fingerprint)
    );
    let ca = lead.store.read(|s| s.ca().cloned()).await.unwrap().unwrap();
    let key: Result<Option<String>, RemoteError> = ask_as(
        &lead.addr,
        &cert,
        "ca_key",
        serde_json::json!(ca.fingerprint),
    )
    .await;
    assert!(
        matches!(key, Err(RemoteError::Refused(_))),
        "a learner got the CA key: {}",
        key.is_ok()
    );

    // A voter goes: the leader promotes a learner, which fetches the key.
    let gone = if lead.store.id() == nodes[1].store.id() {
        2
    } else {
        1
    };
    let gone_id = nodes[gone].store.id();
    nodes[gone].kill().await;
    let lead = leader(&nodes[..3]).await;
    nodes[lead]
        .store
        .membership()
        .remove(gone_id)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let promoted = loop {
        let promoted = [&nodes[3], &newcomer].into_iter().find(|n| {
            n.store
                .members()
                .iter()
                .any(|m| m.id == n.store.id() && m.voter)
        });
        if let Some(node) = promoted.filter(|n| holds_key(n)) {
            break node;
        }
        assert!(
            Instant::now() < deadline,
            "no learner promoted with the key"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    allocate(&promoted.store, "promoted".into()).await.unwrap();
}

/// A member down while the others renewed their certificates twice (so
/// that it knows neither their current nor their previous one) catches up
/// when it comes back: until it has heard from a leader it admits a
/// member's certificate newer than the one it knows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_down_across_renewals_catches_up() {
    let root = tempfile::tempdir().unwrap();
    let short = Duration::from_secs(15);
    let long = rustnet_store::CERT_LIFETIME;
    let first = start_lived(root.path(), "n1", short).await;
    first.store.membership().bootstrap(None).await.unwrap();
    let token = first.store.membership().join_token().await.unwrap();
    let mut nodes = vec![first];
    // n1 and n2 renew every 10 s; n3's own certificates last 90 days.
    for (name, lifetime) in [("n2", short), ("n3", long)] {
        let seeds = [nodes[0].addr.clone()];
        let node = join_fresh_lived(root.path(), name, &seeds, Some(&token), lifetime)
            .await
            .unwrap();
        nodes.push(node);
    }
    create_pool(&nodes[0].store).await;
    // n3 enrolled with a 15-second certificate from n1: wait for its own.
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes[2].store.cert().unwrap().not_after < super_long_from_now() {
        assert!(Instant::now() < deadline, "n3 did not renew into its own");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut acked = vec![allocate(&nodes[2].store, "before".into()).await.unwrap()];

    nodes[2].kill().await;
    let mut seen: Vec<String> = nodes[..2]
        .iter()
        .map(|n| n.store.cert().unwrap().fingerprint)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut renewals = [0, 0];
    while renewals.iter().any(|r| *r < 2) {
        for (i, node) in nodes[..2].iter().enumerate() {
            let now = node.store.cert().unwrap().fingerprint;
            if now != seen[i] {
                renewals[i] += 1;
                seen[i] = now;
            }
        }
        assert!(Instant::now() < deadline, "renewals: {renewals:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let alive: Vec<_> = nodes[..2].iter().map(|n| n.store.clone()).collect();
    acked.extend(storm(&alive, 5, "while-down").await);

    // Back on its address, from its disk.
    nodes[2] = restart_copy(&nodes[2], config_lived(&nodes[2].addr, long)).await;
    check(&nodes[2].store, &acked).await;
    allocate(&nodes[2].store, "after".into()).await.unwrap();
}

/// Unix seconds a month from now: a certificate valid past it is one of
/// the 90-day ones.
fn super_long_from_now() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    now + 30 * 24 * 3600
}

/// The only member holding the CA key restarts. At start it has yet to
/// learn its own membership: that must not make it drop the key, as a
/// learner does, or the cluster is left with none (no renewals, no
/// rotation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_holder_of_the_ca_key_keeps_it_across_restarts() {
    let root = tempfile::tempdir().unwrap();
    let mut node = fresh(root.path(), "n1").await;
    node.store.membership().bootstrap(None).await.unwrap();
    for round in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(10);
        // Sealed out of the replicated state: only the member's db has it.
        loop {
            let sealed = node
                .store
                .read(|s| s.ca().is_some_and(|ca| ca.key_pem.is_empty()))
                .await
                .unwrap();
            if sealed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the key is not sealed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            node.store.signing().holds_ca_key(),
            "round {round}: the key is lost"
        );
        node.kill().await;
        let copy = root.path().join(format!("n1-restart{round}"));
        node = restart_copy_to(&node, copy, config(&node.addr)).await;
        // Its duties have run at start and once more since.
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    assert!(node.store.signing().holds_ca_key(), "the key is lost");
    node.store.signing().rotate_ca().await.unwrap();
}
