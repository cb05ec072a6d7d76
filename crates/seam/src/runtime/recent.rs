//! Journal entries the writer just wrote, handed to the publisher in memory.
//!
//! The publisher used to read every entry back from the store (a range scan and a decode per
//! entry) although the writer had it in hand a moment before. Now the writer leaves what it
//! commits here and the publisher takes it from here; the store is read only when what the
//! publisher needs next is not here: after a start (nothing here yet), after an aborted
//! transaction (its batch was taken), or when the publisher fell so far behind that the bound
//! pushed it out. Either way the publisher still sends only entries at or below the durable
//! seq, so nothing a crash could take back goes out (invariant 4).

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::store::JournalEntry;

/// Entries kept at most; the oldest give way (the publisher then reads them from the store).
pub const KEPT: usize = 50_000;

/// The writer's latest journal entries, oldest first, contiguous in seq.
#[derive(Debug)]
pub struct Recent {
    entries: Mutex<VecDeque<JournalEntry>>,
    kept: usize,
}

impl Default for Recent {
    fn default() -> Self {
        Self::new(KEPT)
    }
}

impl Recent {
    /// Keeps at most `kept` entries.
    pub fn new(kept: usize) -> Self {
        Self {
            entries: Mutex::new(VecDeque::new()),
            kept: kept.max(1),
        }
    }

    /// Adds entries the writer committed, in seq order. Entries that do not continue what is
    /// here (a gap: the writer's journal moved on without this buffer) replace it.
    pub fn push(&self, new: Vec<JournalEntry>) {
        let Some(first) = new.first().map(|e| e.seq) else {
            return;
        };
        let Ok(mut entries) = self.entries.lock() else { return };
        if entries.back().is_some_and(|last| last.seq + 1 != first) {
            entries.clear();
        }
        entries.extend(new);
        while entries.len() > self.kept {
            entries.pop_front();
        }
    }

    /// Up to `limit` entries from `from` through `until`, in seq order, taken out of the
    /// buffer; entries below `from` are dropped (they are out). `None` when entry `from` is not
    /// here: read the store.
    pub fn take(&self, from: u64, until: u64, limit: usize) -> Option<Vec<JournalEntry>> {
        let mut entries = self.entries.lock().ok()?;
        while entries.front().is_some_and(|e| e.seq < from) {
            entries.pop_front();
        }
        if entries.front()?.seq != from || from > until {
            return None;
        }
        let n = entries.iter().take(limit).take_while(|e| e.seq <= until).count();
        Some(entries.drain(..n).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(seqs: std::ops::RangeInclusive<u64>) -> Vec<JournalEntry> {
        seqs.map(|seq| JournalEntry {
            seq,
            subject: format!("s{seq}"),
            record: "r".into(),
            time_ms: 0,
            correlation_id: None,
            causation_id: None,
            body: vec![],
            schema: None,
            prev: Some(0),
            trace: None,
        })
        .collect()
    }

    fn seqs(taken: Option<Vec<JournalEntry>>) -> Option<Vec<u64>> {
        taken.map(|v| v.into_iter().map(|e| e.seq).collect())
    }

    /// The publisher gets exactly the entries from its next seq through the durable one, and
    /// the store's turn comes whenever the buffer cannot say what comes next.
    #[test]
    fn entries_are_taken_in_order_up_to_the_durable_seq_and_never_across_a_gap() {
        let recent = Recent::new(10);
        assert_eq!(seqs(recent.take(1, 5, 100)), None, "nothing written yet");
        recent.push(entries(1..=4));
        recent.push(entries(5..=8));
        assert_eq!(seqs(recent.take(1, 3, 100)), Some(vec![1, 2, 3]), "only durable ones");
        assert_eq!(seqs(recent.take(4, 8, 2)), Some(vec![4, 5]), "at most the limit");
        assert_eq!(seqs(recent.take(7, 8, 100)), Some(vec![7, 8]), "older ones are out");
        assert_eq!(seqs(recent.take(9, 8, 100)), None, "nothing durable beyond");
        // A batch taken and then aborted is read again from the store.
        recent.push(entries(9..=12));
        assert_eq!(seqs(recent.take(9, 12, 100)), Some(vec![9, 10, 11, 12]));
        assert_eq!(seqs(recent.take(9, 12, 100)), None);
        // A gap replaces what was kept.
        recent.push(entries(13..=14));
        recent.push(entries(20..=21));
        assert_eq!(seqs(recent.take(13, 21, 100)), None);
        assert_eq!(seqs(recent.take(20, 21, 100)), Some(vec![20, 21]));
        // The bound pushes the oldest out.
        recent.push(entries(22..=40));
        assert_eq!(seqs(recent.take(22, 40, 100)), None);
        assert_eq!(seqs(recent.take(31, 40, 100)), Some((31..=40).collect()));
    }
}
