//! The formats rustnet writes its replicated entries, snapshots, state files
//! and peer messages in, and which of them this release reads.
//!
//! ```text
//!   format 1  every release before formats were numbered: no field names
//!             the format (entries `{"id","command"}` or bare commands,
//!             snapshots plain JSON or deflated behind `RNZ1`, messages
//!             without a format)
//!   format 2  entries `{"v":2,...}`, snapshots behind `RNZ2`, messages
//!             with `format = 2`; adds the commands of
//!             [`crate::Command::format`] 2 (names learned from Docker,
//!             enrollment by id, CA rotation and sealing, RaiseFormat)
//!   format 3  networks with `multicast` or IPv6 (an entry creating one
//!             is `{"v":3,...}`, a snapshot of a cluster of format 3 is
//!             behind `RNZ3`)
//!   format 4  encryption (tunnel keys, encrypted overlays)
//!   format 5  this release: macvlan and ipvlan networks (and their host
//!             shims' addresses)
//! ```
//!
//! An entry names the oldest format that reads it (its command's, at least
//! 2) and a snapshot its cluster's format, not the writer's: while a
//! cluster upgrades, members of the format before read what the upgraded
//! ones write.
//!
//! A member writes what every member can read: commands of a format above
//! the cluster's ([`crate::State::cluster_format`]) wait until every member
//! runs a release that reads it, and the leader then raises the cluster's
//! format (`RaiseFormat`), never lowering it. What a member cannot read
//! (written by a later release) it refuses with [`FormatError`], naming
//! both formats, instead of guessing.

use serde::{Deserialize, Serialize};

/// The format this release writes.
pub const FORMAT: u32 = 5;

/// The oldest format this release reads: it reads every format the project
/// has written.
pub const OLDEST_FORMAT: u32 = 1;

/// Something written in a format this release cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error(
    "{what} was written in format {found}, by a later release; this release reads formats \
     {OLDEST_FORMAT} to {FORMAT}: upgrade this host"
)]
pub struct FormatError {
    /// What was read: "a log entry", "a snapshot", "a message from a peer".
    pub what: String,
    /// The format it names.
    pub found: u32,
}

/// Accepts `found` (the format a thing names; 0 or absent is format 1)
/// when this release reads it.
pub fn check(what: &str, found: u32) -> Result<u32, FormatError> {
    let found = found.max(OLDEST_FORMAT);
    if found > FORMAT {
        return Err(FormatError {
            what: what.to_owned(),
            found,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_up_to_this_one_are_read_and_later_ones_refused_by_name() {
        assert_eq!(check("a snapshot", 0), Ok(1));
        assert_eq!(check("a snapshot", 1), Ok(1));
        assert_eq!(check("a snapshot", FORMAT), Ok(FORMAT));
        let refused = check("a log entry", FORMAT + 1).unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!(
                "a log entry was written in format {}, by a later release; this release reads \
                 formats 1 to {FORMAT}: upgrade this host",
                FORMAT + 1
            )
        );
    }
}
