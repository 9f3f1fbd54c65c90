//! Rolling upgrades: members of two adjacent releases in one cluster.
//!
//! ```text
//!   every member   answers Version (its release and format); one of
//!                  format 1 answers Unimplemented
//!   every write    of a command whose format is above the cluster's waits
//!                  (StoreError::Upgrading): members of the older format
//!                  could not decode it
//!   the leader     while the cluster's format is below its own, asks every
//!                  member its version (every few seconds); once each
//!                  answers with this format or later, writes RaiseFormat
//! ```
//!
//! The cluster's format never goes down: a host put back to a release of
//! an older format after the raise reads entries it cannot decode, and
//! refuses them by name (format 1 releases with an undecodable entry).

use serde::{Deserialize, Serialize};

use super::Store;
use super::error::{PeerError, StoreError};
use super::wire::{decode, encode, request};
use crate::{Command, FORMAT, HostId, OLDEST_FORMAT};

/// What a member runs: the release and the format it writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberVersion {
    pub release: String,
    pub format: u32,
}

impl MemberVersion {
    /// This member's.
    pub fn own() -> Self {
        Self {
            release: env!("CARGO_PKG_VERSION").to_owned(),
            format: FORMAT,
        }
    }

    /// A member that has no Version RPC: a release of format 1.
    fn before_formats() -> Self {
        Self {
            release: "0.1".to_owned(),
            format: OLDEST_FORMAT,
        }
    }
}

/// How long a member has to say its version.
const VERSION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl Store {
    /// The format every member reads, as this member's state says.
    pub fn cluster_format(&self) -> u32 {
        self.local(crate::State::cluster_format)
            .unwrap_or(OLDEST_FORMAT)
    }

    /// Refuses `command` while some member may not read its format
    /// (RaiseFormat itself is written once every member reads it).
    pub fn admit_format(&self, command: &Command) -> Result<(), StoreError> {
        let (needs, cluster) = (command.format(), self.cluster_format());
        if needs <= cluster || matches!(command, Command::RaiseFormat { .. }) {
            return Ok(());
        }
        Err(StoreError::Upgrading {
            command: command.kind(),
            needs,
            cluster,
        })
    }

    /// The version of the member at `addr`.
    async fn member_version(&self, addr: &str) -> Result<MemberVersion, PeerError> {
        let mut client = self.peers.cluster(addr)?;
        match client
            .version(request(
                encode(&())?,
                VERSION_TIMEOUT.min(self.config.timeout),
            ))
            .await
        {
            Ok(reply) => decode(reply.get_ref()),
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                Ok(MemberVersion::before_formats())
            }
            Err(status) => Err(status.into()),
        }
    }

    /// Every member's version, asked now (this member's own without
    /// asking); a member that does not answer, with why.
    pub async fn member_versions(&self) -> Vec<MemberAnswer> {
        let asks = self.members().into_iter().map(|member| async move {
            let answer = if member.id == self.id {
                Ok(MemberVersion::own())
            } else {
                self.member_version(&member.addr).await
            };
            MemberAnswer::new(member.id, answer.map_err(|e| e.to_string()))
        });
        futures::future::join_all(asks).await
    }

    /// The leader's duty while the cluster's format is below this
    /// release's: once every member says it reads this format, raise the
    /// cluster's to it. A member that does not answer holds it back.
    pub(crate) async fn keep_format(&self) -> Result<(), StoreError> {
        if !self.is_leader() || self.cluster_format() >= FORMAT {
            return Ok(());
        }
        let answers = self.member_versions().await;
        let behind: Vec<String> = answers
            .iter()
            .filter(|a| !a.reads(FORMAT))
            .map(|a| match (&a.version, &a.error) {
                (Some(v), _) => format!("{} (format {})", a.id, v.format),
                (None, e) => format!("{} (no answer: {})", a.id, e.as_deref().unwrap_or("?")),
            })
            .collect();
        if !behind.is_empty() {
            tracing::debug!(behind = %behind.join(", "), "the cluster's format waits for members");
            return Ok(());
        }
        self.write(Command::RaiseFormat { format: FORMAT }).await?;
        tracing::info!(
            format = FORMAT,
            "every member reads this release's format: the cluster writes it now"
        );
        Ok(())
    }
}

/// Where a cluster stands in an upgrade, for `rustnet status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UpgradeView {
    /// The format this member writes.
    pub format: u32,
    /// The format every member reads: what the cluster writes.
    pub cluster_format: u32,
    /// Each member's release and format, asked now, or why it did not say.
    pub members: Vec<MemberAnswer>,
    /// While the cluster's format is below this member's: what waits.
    pub waiting: Option<String>,
}

/// One member's answer to "which version do you run".
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberAnswer {
    pub id: HostId,
    #[serde(flatten)]
    pub version: Option<MemberVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl MemberAnswer {
    fn new(id: HostId, answer: Result<MemberVersion, String>) -> Self {
        match answer {
            Ok(version) => Self {
                id,
                version: Some(version),
                error: None,
            },
            Err(error) => Self {
                id,
                version: None,
                error: Some(error),
            },
        }
    }

    /// Whether the member said it reads `format`.
    fn reads(&self, format: u32) -> bool {
        self.version.as_ref().is_some_and(|v| v.format >= format)
    }
}

impl Store {
    /// Every member's version and what waits for the upgrade to finish.
    pub async fn upgrade_view(&self) -> UpgradeView {
        let cluster_format = self.cluster_format();
        let members = self.member_versions().await;
        let waiting = (cluster_format < FORMAT).then(|| {
            let behind: Vec<String> = members
                .iter()
                .filter(|m| !m.reads(FORMAT))
                .map(|m| m.id.to_string())
                .collect();
            format!(
                "upgrade under way: the cluster writes format {cluster_format} until every member \
                 reads format {FORMAT} (not yet: member {}); until then names across hosts learned \
                 from Docker, enrolling new hosts and CA rotation wait",
                behind.join(", member ")
            )
        });
        UpgradeView {
            format: FORMAT,
            cluster_format,
            members,
            waiting,
        }
    }
}
