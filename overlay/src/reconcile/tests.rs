use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::fake::{Event, FakeFirewall, FakeKernel, Journal};
use crate::firewall::Published;
use crate::model::{Gateway, Port};
use crate::{Op, Reconciler};

type Fake = Reconciler<FakeKernel, FakeFirewall>;

fn fake() -> (Fake, FakeKernel, FakeFirewall, Journal) {
    let journal = Journal::default();
    let kernel = FakeKernel::new(journal.clone());
    let firewall = FakeFirewall::new(journal.clone());
    (
        Reconciler::new(kernel.clone(), firewall.clone()).check_every(std::time::Duration::ZERO),
        kernel,
        firewall,
        journal,
    )
}

fn want(published: bool) -> Want {
    let bridge = Gateway {
        name: "rn-a".into(),
        addresses: vec!["10.0.42.1/24".parse().unwrap()],
        mtu: 1500,
        mac: None,
        vxlan: None,
    };
    let veth = Port {
        host: "rnhep1".into(),
        peer: "rncep1".into(),
        link: "rnm-test".into(),
        gateway: "rn-a".into(),
        mtu: 1500,
        mac: [2, 0, 0, 0, 0, 1],
        required: true,
    };
    let published = published.then(|| Published {
        proto: "tcp".into(),
        host_ip: None,
        host_port: 8080,
        container_ip: "10.0.42.2".parse().unwrap(),
        container_port: 80,
    });
    Want {
        links: Desired {
            gateways: vec![bridge],
            ports: vec![veth],
            ..Desired::default()
        },
        firewall: vec![Network {
            bridge: "rn-a".into(),
            subnet: "10.0.42.0/24".parse().ok(),
            internal: false,
            published: published.into_iter().collect(),
            dns: vec![],
            legacy_sources: vec![],
            lan: false,
            ipv6: None,
        }],
        ingress: None,
        resolver: None,
    }
}

fn ops(events: &[Event]) -> usize {
    events.iter().filter(|e| matches!(e, Event::Op(_))).count()
}

#[tokio::test]
async fn a_pass_observes_plans_applies_and_writes_the_firewall_once() {
    let (reconciler, _, _, journal) = fake();
    let report = reconciler.begin().await.apply(want(true)).await.unwrap();
    let events = journal.events();
    assert_eq!(events[0], Event::Observe);
    assert!(report.firewall);
    assert_eq!(report.ops, ops(&events));
    assert!(matches!(&events[1], Event::Op(Op::CreateBridge { name, .. }) if name == "rn-a"));
    let tail: Vec<&Event> = events.iter().skip(1 + report.ops).collect();
    assert_eq!(
        tail,
        [
            &Event::RouteLocalnet("rn-a".into()),
            &Event::Firewall(want(true).firewall),
            &Event::Ingress(None),
            &Event::Resolver(None),
        ]
    );

    // Nothing changed: the next pass observes, plans nothing and leaves
    // the firewall alone.
    journal.clear();
    let report = reconciler.begin().await.apply(want(true)).await.unwrap();
    assert_eq!(report, Report::default());
    assert_eq!(journal.events(), [Event::Observe]);

    // A changed firewall view is written again.
    journal.clear();
    let report = reconciler.begin().await.apply(want(false)).await.unwrap();
    assert!(report.firewall);
    assert_eq!(
        journal.events(),
        [Event::Observe, Event::Firewall(want(false).firewall)]
    );
}

#[tokio::test]
async fn links_failing_half_way_still_write_the_firewall_and_resume_next_pass() {
    let (reconciler, kernel, _, journal) = fake();
    kernel.fail_on("create veth");
    let error = reconciler
        .begin()
        .await
        .apply(want(false))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("create veth"), "{error}");
    let events = journal.events();
    // The bridge was built, the veth refused, nothing after it tried.
    assert!(kernel.observed().links.contains_key("rn-a"), "{events:?}");
    assert!(!kernel.observed().links.contains_key("rnhep1"));
    let refused = events
        .iter()
        .position(|e| matches!(e, Event::Op(Op::CreateVeth { .. })))
        .unwrap();
    assert!(
        matches!(events[refused + 1], Event::Firewall(_)),
        "{events:?}"
    );

    // Healed: the next pass builds only what is missing, and the firewall,
    // written already, is not written again.
    kernel.heal();
    journal.clear();
    let report = reconciler.begin().await.apply(want(false)).await.unwrap();
    assert!(!report.firewall);
    let events = journal.events();
    assert!(
        matches!(events[1], Event::Op(Op::CreateVeth { .. })),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Op(Op::CreateBridge { .. })))
    );
    assert!(kernel.observed().links.contains_key("rnhep1"));
}

#[tokio::test]
async fn the_firewall_waits_until_the_kernel_was_read_once() {
    let (reconciler, kernel, _, journal) = fake();
    kernel.fail_on("observe");
    let error = reconciler
        .begin()
        .await
        .apply(want(false))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("observe"), "{error}");
    // Which bridges are inherited is unknown: writing the rules now could
    // drop theirs.
    assert!(
        !journal
            .events()
            .iter()
            .any(|e| matches!(e, Event::Firewall(_) | Event::Ingress(_))),
        "{:?}",
        journal.events()
    );
    kernel.heal();
    let report = reconciler.begin().await.apply(want(false)).await.unwrap();
    assert!(report.firewall);
}

#[tokio::test]
async fn a_failed_firewall_write_is_retried_by_the_next_pass() {
    let (reconciler, _, firewall, journal) = fake();
    firewall.set_failing(true);
    assert!(reconciler.begin().await.apply(want(false)).await.is_err());
    firewall.set_failing(false);
    journal.clear();
    let report = reconciler.begin().await.apply(want(false)).await.unwrap();
    assert!(report.firewall);
    assert!(
        journal
            .events()
            .contains(&Event::Firewall(want(false).firewall))
    );
    assert!(journal.events().contains(&Event::Ingress(None)));

    // After invalidate (someone flushed the rules), everything is written again.
    reconciler.invalidate().await;
    journal.clear();
    let report = reconciler.begin().await.apply(want(false)).await.unwrap();
    assert!(report.firewall);
    assert!(journal.events().contains(&Event::Ingress(None)));
}

#[tokio::test]
async fn a_second_request_waits_for_the_pass_before_it() {
    let (reconciler, _, _, journal) = fake();
    let reconciler = Arc::new(reconciler);
    let first = reconciler.begin().await;
    let second = {
        let reconciler = reconciler.clone();
        tokio::spawn(async move {
            let pass = reconciler.begin().await;
            pass.apply(want(true)).await.map(|r| r.firewall)
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(journal.events().is_empty(), "the second pass did not wait");
    let report = first.apply(want(false)).await.unwrap();
    assert!(report.firewall);
    let first_events = journal.events().len();
    // The second pass starts after the first ended, on the kernel the first
    // left: it adds no link, only its own firewall view.
    assert!(second.await.unwrap().unwrap());
    let events = journal.events();
    assert_eq!(events[first_events], Event::Observe);
    assert_eq!(ops(&events[first_events..]), 0);
    assert!(events[first_events..].contains(&Event::Firewall(want(true).firewall)));
}

#[tokio::test]
async fn a_foreign_link_with_a_wanted_name_is_refused_and_left_alone() {
    let (reconciler, kernel, _, _) = fake();
    kernel.add_link(
        "rn-a",
        crate::Link {
            kind: crate::LinkKind::Veth,
            mtu: 1500,
            up: true,
            master: None,
            addresses: vec![],
            owned: false,
            inherited: false,
            mac: None,
        },
    );
    let mut wanted = want(false);
    wanted.links.gateways.push(Gateway {
        name: "rn-b".into(),
        addresses: vec![],
        mtu: 1500,
        mac: None,
        vxlan: None,
    });
    let report = reconciler.begin().await.apply(wanted).await.unwrap();
    let conflict = report.conflict("rn-a").unwrap();
    assert!(conflict.to_string().contains("rn-a"), "{conflict}");
    assert_eq!(kernel.observed().links["rn-a"].kind, crate::LinkKind::Veth);
    // Only that network: the other one is built, and nothing of rn-a's.
    assert!(kernel.observed().links.contains_key("rn-b"));
    assert!(!kernel.observed().links.contains_key("rnhep1"));
    assert!(report.conflict("rn-b").is_none());
}

#[tokio::test]
async fn rules_flushed_by_something_else_are_written_again() {
    let (reconciler, _, firewall, journal) = fake();
    reconciler.begin().await.apply(want(true)).await.unwrap();
    // Nothing changed and nothing flushed: no rewrite.
    let report = reconciler.begin().await.apply(want(true)).await.unwrap();
    assert!(!report.firewall);
    firewall.flush();
    journal.clear();
    let report = reconciler.begin().await.apply(want(true)).await.unwrap();
    assert!(report.firewall, "the flushed rules come back");
    assert!(
        journal
            .events()
            .contains(&Event::Firewall(want(true).firewall))
    );
    assert!(
        journal
            .events()
            .contains(&Event::Ingress(want(true).ingress))
    );
}

#[tokio::test]
async fn sealing_rules_come_before_the_links_and_a_failure_builds_nothing() {
    use crate::firewall::{Seal, VxlanIngress};
    let (reconciler, _kernel, firewall, journal) = fake();
    let mut sealed = want(false);
    sealed.ingress = Some(VxlanIngress {
        port: 4789,
        members: vec!["10.99.0.1".parse().unwrap()],
        devices: "rnx+".into(),
        gateway_prefix: [0x02, 0x52, 0x4e],
        seal: Some(Seal {
            port: 7951,
            device: "rn-wg0".into(),
        }),
    });
    firewall.set_failing(true);
    assert!(
        reconciler
            .begin()
            .await
            .apply(sealed.clone())
            .await
            .is_err()
    );
    assert_eq!(
        journal.events(),
        [Event::Ingress(sealed.ingress.clone())],
        "no link is built while the rules that seal it are missing"
    );
    firewall.set_failing(false);
    journal.clear();
    reconciler
        .begin()
        .await
        .apply(sealed.clone())
        .await
        .unwrap();
    let events = journal.events();
    assert_eq!(events[0], Event::Ingress(sealed.ingress.clone()));
    assert_eq!(events[1], Event::Observe, "the links after the seal");
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Ingress(_)))
            .count(),
        1,
        "written once per change"
    );
}
