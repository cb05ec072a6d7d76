//! Positions and offset maps: which foreign events a consumer has already taken in.
//!
//! A position is the next offset to read in one topic-partition. It only moves forward, and an
//! event below it is a redelivery that must change nothing. An offset map is the set of
//! positions for every partition of some topics (the cut a snapshot or a consumer stands at).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `{topic: {partition: next_offset}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetMap(pub BTreeMap<String, BTreeMap<i32, i64>>);

/// What to do with a delivered event, given the stored position of its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// At or past the position: take it in; the position becomes `offset + 1`.
    New,
    /// Below the position: already taken in (redelivery after a rewind or crash); skip.
    Redelivered,
}

impl OffsetMap {
    /// The next offset to read in `topic`/`partition`; 0 when nothing was read yet.
    pub fn position(&self, topic: &str, partition: i32) -> i64 {
        self.0.get(topic).and_then(|p| p.get(&partition)).copied().unwrap_or(0)
    }

    /// Classifies a delivered offset against the position.
    pub fn classify(&self, topic: &str, partition: i32, offset: i64) -> Delivery {
        if offset < self.position(topic, partition) {
            Delivery::Redelivered
        } else {
            Delivery::New
        }
    }

    /// Records that `offset` was taken in. Positions never move backwards, so advancing with an
    /// old offset is a no-op. Returns whether the position moved.
    pub fn advance(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        let next = offset.saturating_add(1);
        let slot = self
            .0
            .entry(topic.to_string())
            .or_default()
            .entry(partition)
            .or_insert(0);
        if next > *slot {
            *slot = next;
            true
        } else {
            false
        }
    }

    /// Sets a position outright (bootstrap from a snapshot's map, or loading the store).
    pub fn set(&mut self, topic: &str, partition: i32, next_offset: i64) {
        self.0
            .entry(topic.to_string())
            .or_default()
            .insert(partition, next_offset);
    }

    /// Every `(topic, partition, next_offset)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.0
            .iter()
            .flat_map(|(t, parts)| parts.iter().map(move |(p, o)| (t.as_str(), *p, *o)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever order and repetition deliveries come in, the position ends at one past the
        /// largest offset seen, and never went backwards on the way.
        #[test]
        fn positions_only_move_forward(offsets in proptest::collection::vec((0i32..3, 0i64..1000), 0..200)) {
            let mut map = OffsetMap::default();
            let mut max = BTreeMap::new();
            for (partition, offset) in offsets {
                let before = map.position("t", partition);
                map.advance("t", partition, offset);
                prop_assert!(map.position("t", partition) >= before);
                let m = max.entry(partition).or_insert(-1i64);
                *m = (*m).max(offset);
            }
            for (partition, m) in max {
                prop_assert_eq!(map.position("t", partition), m + 1);
            }
        }

        /// A partition read in order and then read again from any earlier offset takes in every
        /// event exactly once.
        #[test]
        fn a_rewind_takes_nothing_in_twice(len in 1i64..300, rewind_to in 0i64..300) {
            let mut map = OffsetMap::default();
            let mut taken = Vec::new();
            let rewind_to = rewind_to.min(len);
            for offset in (0..len).chain(rewind_to..len) {
                if map.classify("t", 0, offset) == Delivery::New {
                    taken.push(offset);
                    map.advance("t", 0, offset);
                }
            }
            prop_assert_eq!(taken, (0..len).collect::<Vec<_>>());
        }
    }

    #[test]
    fn unknown_partitions_start_at_zero() {
        let map = OffsetMap::default();
        assert_eq!(map.position("x", 7), 0);
        assert_eq!(map.classify("x", 7, 0), Delivery::New);
    }
}
