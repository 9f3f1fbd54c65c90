//! The cluster's join token: a secret a host must present to join.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A join token, `rnt-` and 32 hex digits (128 random bits). Its `Debug`
/// and `Display` never show the secret, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JoinToken(String);

const PREFIX: &str = "rnt-";

impl JoinToken {
    /// A fresh token from the operating system's randomness.
    pub fn generate() -> Self {
        let bytes: [u8; 16] = rand::random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self(format!("{PREFIX}{hex}"))
    }

    /// The token as the user gives it; surrounding blanks are ignored.
    pub fn new(text: &str) -> Self {
        Self(text.trim().to_owned())
    }

    /// The secret itself, for `rustnet status --token` only.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the two differ.
    pub fn matches(&self, given: &JoinToken) -> bool {
        let (a, b) = (self.0.as_bytes(), given.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinToken(<redacted>)")
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<join token>")
    }
}

/// The token as `rustnet status --token` shows it: the secret and the
/// fingerprint (SHA-256) of the cluster's CA, which a joining host checks
/// before it sends the secret: `rnt-<secret>-<CA fingerprint>`.
pub fn pinned(secret: &JoinToken, ca_fingerprint: &str) -> String {
    format!("{}-{ca_fingerprint}", secret.0)
}

/// Splits a token as the user gave it into the secret and, for the full
/// form, the CA fingerprint to pin.
pub fn split(token: &JoinToken) -> (JoinToken, Option<String>) {
    match token.0.rsplit_once('-') {
        Some((secret, pin))
            if secret.starts_with(PREFIX)
                && pin.len() == 64
                && pin.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            (JoinToken(secret.to_owned()), Some(pin.to_ascii_lowercase()))
        }
        _ => (token.clone(), None),
    }
}

/// The cluster's certificate authority: every member's certificate is
/// signed by it. Its certificate is in the replicated state; its key is
/// not (voters keep it on their own, learners never see it): `key_pem` is
/// empty there, and set only where a voter signs. Its `Debug` hides the
/// key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterCa {
    pub cert_pem: String,
    /// Empty in the replicated state (a state from before kept it there
    /// until the leader sealed it: [`crate::Command::SealCa`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_pem: String,
    /// SHA-256 of the certificate (DER), hex.
    pub fingerprint: String,
}

impl ClusterCa {
    /// The CA as the replicated state keeps it: without its key.
    #[must_use]
    pub fn public(&self) -> Self {
        Self {
            key_pem: String::new(),
            ..self.clone()
        }
    }
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Why a join token is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum TokenError {
    #[error(
        "joining needs the cluster's join token: set RUSTNET_JOIN_TOKEN \
         (`rustnet status --token` on a member shows it)"
    )]
    Missing,
    #[error(
        "wrong join token (RUSTNET_JOIN_TOKEN): `rustnet status --token` on a member shows \
         the current one"
    )]
    Wrong,
}

/// Why a join is refused, if it is: `expected` is the cluster's token
/// (`None` for a cluster from before tokens, which admits anyone).
pub fn check(expected: Option<&JoinToken>, given: Option<&JoinToken>) -> Result<(), TokenError> {
    match (expected, given) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(TokenError::Missing),
        (Some(expected), Some(given)) if expected.matches(given) => Ok(()),
        (Some(_), Some(_)) => Err(TokenError::Wrong),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_distinct_and_well_formed() {
        let (a, b) = (JoinToken::generate(), JoinToken::generate());
        assert_ne!(a, b);
        assert_eq!(a.reveal().len(), PREFIX.len() + 32);
        assert!(a.reveal().starts_with(PREFIX));
    }

    #[test]
    fn never_shown_by_debug_or_display() {
        let t = JoinToken::generate();
        assert!(!format!("{t:?} {t}").contains(t.reveal()));
        assert!(!format!("{:?}", Some(&t)).contains(&t.reveal()[4..]));
    }

    #[test]
    fn the_full_form_pins_the_ca() {
        let secret = JoinToken::generate();
        let fp = "ab".repeat(32);
        let full = JoinToken::new(&pinned(&secret, &fp));
        assert_eq!(split(&full), (secret.clone(), Some(fp)));
        assert_eq!(split(&secret), (secret.clone(), None));
        let odd = JoinToken::new("rnt-x-y");
        assert_eq!(split(&odd), (odd.clone(), None));
    }

    #[test]
    fn checks() {
        let t = JoinToken::generate();
        let other = JoinToken::generate();
        assert_eq!(check(None, None), Ok(()));
        assert_eq!(
            check(
                Some(&t),
                Some(&JoinToken::new(&format!(" {} ", t.reveal())))
            ),
            Ok(())
        );
        assert!(
            check(Some(&t), None)
                .unwrap_err()
                .to_string()
                .contains("RUSTNET_JOIN_TOKEN")
        );
        assert!(
            check(Some(&t), Some(&other))
                .unwrap_err()
                .to_string()
                .contains("wrong join token")
        );
        let prefix = JoinToken::new(&t.reveal()[..10]);
        assert!(check(Some(&t), Some(&prefix)).is_err());
    }
}
