//! The results of the latest proposals, by id: a proposal seen again (a
//! client's retry) gets its first result instead of a second apply.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::CommandResult;

/// How many proposal results are remembered for retries.
pub(crate) const RECENT: usize = 4096;

/// At most [`RECENT`] results, the oldest forgotten first, found by id in
/// constant time (every apply looks one up).
///
/// Encoded as the list of `(id, result)`, oldest first, as before the index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Recent {
    order: VecDeque<u64>,
    results: HashMap<u64, CommandResult>,
}

impl Recent {
    /// The result the proposal `id` had, if it is among the latest.
    pub(crate) fn get(&self, id: u64) -> Option<&CommandResult> {
        self.results.get(&id)
    }

    /// Remembers `id`'s result, forgetting the oldest beyond [`RECENT`].
    pub(crate) fn insert(&mut self, id: u64, result: CommandResult) {
        if self.results.insert(id, result).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > RECENT {
            if let Some(oldest) = self.order.pop_front() {
                self.results.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn clear(&mut self) {
        self.order.clear();
        self.results.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

impl Serialize for Recent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.order
                .iter()
                .filter_map(|id| Some((id, self.results.get(id)?))),
        )
    }
}

impl<'de> Deserialize<'de> for Recent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let list = Vec::<(u64, CommandResult)>::deserialize(deserializer)?;
        let mut recent = Self::default();
        for (id, result) in list {
            recent.insert(id, result);
        }
        Ok(recent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Response;

    #[test]
    fn the_oldest_is_forgotten_and_the_list_encodes_as_before() {
        let mut recent = Recent::default();
        for id in 0..(RECENT as u64 + 10) {
            recent.insert(id, Ok(Response::Done));
        }
        assert_eq!(recent.len(), RECENT);
        assert!(recent.get(9).is_none());
        assert_eq!(recent.get(10), Some(&Ok(Response::Done)));
        // A second insert of one id keeps its place.
        recent.insert(10, Ok(Response::Done));
        assert_eq!(recent.len(), RECENT);

        let json = serde_json::to_string(&recent).unwrap();
        assert!(json.starts_with("[[10,"), "{}", &json[..40]);
        let old: VecDeque<(u64, CommandResult)> = serde_json::from_str(&json).unwrap();
        assert_eq!(old.len(), RECENT);
        let back: Recent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, recent);
    }
}
