//! Every format the project has written is read: samples written by the
//! release of format 1 (the main branch before formats were numbered, as
//! of commit d6f0e30) decode, and applying its log gives the state that
//! release had; what this release writes names its format, and a later
//! format is refused by name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rustnet_ipam_core::{Command, FORMAT, Multicast, Network, Proposal, State};
use serde_json::Value;

/// Log entries (proposals, one bare command) and the state after applying
/// them, as the release of format 1 wrote them.
const FORMAT_1: &str = include_str!("data/format-1.json");

fn sample() -> (Vec<Value>, Value) {
    let sample: Value = serde_json::from_str(FORMAT_1).unwrap();
    let entries = sample["entries"].as_array().unwrap().clone();
    (entries, sample["state"].clone())
}

#[test]
fn a_format_1_log_applies_to_the_state_format_1_had() {
    let (entries, written) = sample();
    let mut state = State::default();
    for entry in &entries {
        let proposal: Proposal = serde_json::from_value(entry.clone())
            .unwrap_or_else(|e| panic!("format-1 entry {entry}: {e}"));
        state
            .apply_once(&proposal)
            .unwrap_or_else(|e| panic!("format-1 entry {entry}: {e}"));
    }
    let old: State = serde_json::from_value(written).expect("format-1 state decodes");
    assert_eq!(state, old);
    // The key a format-1 bootstrap kept in the state is still there, for
    // the voters to take before the leader seals it.
    assert!(!state.ca().unwrap().key_pem.is_empty());
    assert_eq!(state.cluster_format(), 1);
}

#[test]
fn entries_name_their_format_first_and_later_formats_are_refused() {
    let proposal = Proposal::new(7, Command::RaiseFormat { format: FORMAT });
    let text = serde_json::to_string(&proposal).unwrap();
    assert!(text.starts_with("{\"v\":2,"), "{text}");
    assert_eq!(serde_json::from_str::<Proposal>(&text).unwrap(), proposal);
    // An entry names the oldest format that reads it: a release of
    // format 2 reads this one, and not one creating a multicast overlay.
    let flood = Proposal::new(
        8,
        Command::CreateNetwork(Network {
            multicast: Multicast::Flood,
            ..fixture_overlay()
        }),
    );
    let text = serde_json::to_string(&flood).unwrap();
    assert!(text.starts_with("{\"v\":3,"), "{text}");
    assert!(text.contains("\"multicast\":\"flood\""), "{text}");
    assert_eq!(serde_json::from_str::<Proposal>(&text).unwrap(), flood);
    let plain = Proposal::new(9, Command::CreateNetwork(fixture_overlay()));
    let text = serde_json::to_string(&plain).unwrap();
    assert!(
        text.starts_with("{\"v\":2,") && !text.contains("multicast"),
        "an overlay without multicast reads as format 2 wrote it: {text}"
    );
    // A later format's entry, even with a command this release does not
    // know, is refused for its format, not for the command.
    let later = format!(
        "{{\"v\":{},\"id\":8,\"command\":{{\"Teleport\":{{}}}}}}",
        FORMAT + 1
    );
    let refused = serde_json::from_str::<Proposal>(&later)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains(&format!("a log entry was written in format {}", FORMAT + 1)),
        "{refused}"
    );
}

fn fixture_overlay() -> Network {
    rustnet_ipam_core::fixture::overlay("n", 1, "10.0.42.0/24")
}

#[test]
fn the_cluster_format_only_rises() {
    let mut state = State::default();
    assert_eq!(state.cluster_format(), 1);
    state.apply(&Command::RaiseFormat { format: 2 }).unwrap();
    assert_eq!(state.cluster_format(), 2);
    state.apply(&Command::RaiseFormat { format: 1 }).unwrap();
    assert_eq!(state.cluster_format(), 2);
    // And it survives a snapshot.
    let back: State = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
    assert_eq!(back.cluster_format(), 2);
}

#[test]
fn commands_added_with_format_2_wait_for_it_and_the_others_do_not() {
    let (entries, _) = sample();
    for entry in &entries {
        let proposal: Proposal = serde_json::from_value(entry.clone()).unwrap();
        assert_eq!(proposal.command.format(), 1, "{}", proposal.command);
    }
    let later = [
        Command::SealCa,
        Command::RaiseFormat { format: 2 },
        Command::AssignHostId { at: 1 },
        Command::Joined { host: 1 },
        Command::ForgetNetwork {
            host: 1,
            id: "n".into(),
        },
        Command::NameAddress {
            host: 1,
            address: "10.0.0.2".parse().unwrap(),
            container: "c".into(),
        },
    ];
    for command in later {
        assert_eq!(command.format(), 2, "{command}");
    }
}
