//! The last errors this daemon met (failed plugin requests, reconcile
//! passes, networks that could not be built here, overlay propagation), for
//! `rustnet status`: a short list, newest last. An error that repeats
//! (a step retried every few seconds) is one entry with a count and the
//! time it was last seen, so it cannot push the others out.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How many distinct errors are kept.
const KEPT: usize = 10;
/// Longest message kept, in bytes (a failing request's body is Docker's).
const LONGEST: usize = 500;

/// One error, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Seen {
    /// Where it happened: `request /NetworkDriver.Join`, `reconcile`, ...
    pub(crate) source: String,
    pub(crate) message: String,
    /// Unix seconds, first and last time seen.
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) count: u64,
}

/// The kept errors (pure: the caller says when).
#[derive(Debug, Default)]
struct Kept {
    seen: VecDeque<Seen>,
}

impl Kept {
    fn record(&mut self, source: &str, message: &str, now: u64) {
        let message = truncate(message);
        let same = |s: &Seen| s.source == source && s.message == message;
        let entry = match self.seen.iter().position(same) {
            Some(i) => self.seen.remove(i).map(|mut s| {
                s.last = now;
                s.count += 1;
                s
            }),
            None => None,
        }
        .unwrap_or_else(|| Seen {
            source: source.to_owned(),
            message,
            first: now,
            last: now,
            count: 1,
        });
        self.seen.push_back(entry);
        while self.seen.len() > KEPT {
            self.seen.pop_front();
        }
    }
}

fn truncate(message: &str) -> String {
    if message.len() <= LONGEST {
        return message.to_owned();
    }
    let mut end = LONGEST;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

/// The daemon's last errors (one per service).
#[derive(Debug, Default)]
pub(crate) struct Recent(Mutex<Kept>);

impl Recent {
    /// Records an error met by `source`.
    pub(crate) fn record(&self, source: &str, message: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        crate::lock(&self.0).record(source, message, now);
    }

    /// The kept errors, oldest first.
    pub(crate) fn list(&self) -> Vec<Seen> {
        crate::lock(&self.0).seen.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_error_is_one_entry_and_the_list_stays_short() {
        let mut recent = Kept::default();
        recent.record("reconcile", "boom", 10);
        recent.record("propagation", "no docker", 11);
        recent.record("reconcile", "boom", 12);
        let seen: Vec<_> = recent
            .seen
            .iter()
            .map(|s| (s.source.as_str(), s.first, s.last, s.count))
            .collect();
        assert_eq!(seen, [("propagation", 11, 11, 1), ("reconcile", 10, 12, 2)]);
        for n in 0..30 {
            recent.record("request", &format!("error {n}"), 20 + n);
        }
        assert_eq!(recent.seen.len(), KEPT);
        assert_eq!(
            recent.seen.back().map(|s| s.message.as_str()),
            Some("error 29")
        );
        assert_eq!(
            recent.seen.front().map(|s| s.message.as_str()),
            Some("error 20")
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let mut recent = Kept::default();
        recent.record("request", &"é".repeat(400), 1);
        let message = &recent.seen[0].message;
        assert!(message.len() <= LONGEST + 3, "{}", message.len());
        assert!(message.ends_with("..."));
    }
}
