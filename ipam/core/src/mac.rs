//! Ethernet MAC addresses as the tables keep them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-bit MAC address. Written `aa:bb:cc:dd:ee:ff` in the replicated
/// state (so entries and snapshots written as text decode unchanged); a
/// text that is not a MAC fails to decode instead of becoming a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub [u8; 6]);

/// Why a text is not a MAC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")]
pub struct MacError {
    text: String,
}

impl Mac {
    /// The first three bytes of every overlay gateway's MAC (locally
    /// administered, unicast; "RN").
    pub const GATEWAY_PREFIX: [u8; 3] = [0x02, 0x52, 0x4e];

    /// A random, locally administered, unicast MAC: not derived from the
    /// IP, so a reused address never meets a stale neighbour entry.
    pub fn random() -> Self {
        loop {
            let mut mac: [u8; 6] = rand::random();
            mac[0] = (mac[0] & 0xfe) | 0x02;
            // Never one of the gateways' MACs.
            if mac[..3] != Self::GATEWAY_PREFIX {
                return Self(mac);
            }
        }
    }

    /// The MAC of overlay `vni`'s gateway: the same on every host, so a
    /// container keeps its neighbour entry whichever host it runs on, and
    /// distinct per overlay.
    pub fn gateway(vni: u32) -> Self {
        let [_, a, b, c] = vni.to_be_bytes();
        let [p, q, r] = Self::GATEWAY_PREFIX;
        Self([p, q, r, a, b, c])
    }

    /// The six bytes.
    pub fn octets(self) -> [u8; 6] {
        self.0
    }
}

impl From<[u8; 6]> for Mac {
    fn from(bytes: [u8; 6]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for Mac {
    type Err = MacError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || MacError {
            text: text.to_owned(),
        };
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts.next().filter(|p| p.len() == 2).ok_or_else(error)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| error())?;
        }
        match parts.next() {
            None => Ok(Self(bytes)),
            Some(_) => Err(error()),
        }
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_macs_are_per_overlay_and_never_random_ones() {
        assert_eq!(Mac::gateway(4096).to_string(), "02:52:4e:00:10:00");
        assert_ne!(Mac::gateway(4096), Mac::gateway(4097));
        for _ in 0..10_000 {
            let mac = Mac::random();
            assert_ne!(mac.0[..3], Mac::GATEWAY_PREFIX);
            assert_eq!(mac.0[0] & 0x03, 0x02, "local, unicast");
        }
    }

    #[test]
    fn text_round_trips() {
        let mac: Mac = "02:0a:ff:00:10:7e".parse().unwrap();
        assert_eq!(mac.0, [2, 10, 255, 0, 16, 126]);
        assert_eq!(mac.to_string(), "02:0a:ff:00:10:7e");
        assert_eq!(
            serde_json::to_string(&mac).unwrap(),
            "\"02:0a:ff:00:10:7e\""
        );
        let back: Mac = serde_json::from_str("\"02:0A:FF:00:10:7E\"").unwrap();
        assert_eq!(back, mac);
    }

    #[test]
    fn malformed_text_is_refused_not_defaulted() {
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "2:0:0:0:0:0",
            "zz:00:00:00:00:00",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
            assert!(serde_json::from_str::<Mac>(&format!("{bad:?}")).is_err());
        }
    }

    #[test]
    fn random_macs_are_local_unicast() {
        for _ in 0..64 {
            let [first, ..] = Mac::random().0;
            assert_eq!(first & 0x03, 0x02);
        }
    }
}
