//! Registering a source on a running consumer (`seam register`): the consumer takes the source's
//! snapshot through its bootstrap, and only then subscribes to the source topic, from exactly the
//! snapshot's offset map. The snapshot is spooled next to the store first (`spool.rs`), so a crash
//! in the middle resumes the same bootstrap at the next start instead of reading the topic from 0.

use std::collections::BTreeMap;

use serde::Serialize;

use super::spool::Arrival;
use crate::offsets::OffsetMap;

/// Where a registration takes its starting state from.
#[derive(Debug)]
pub enum RegisterFrom {
    /// A snapshot received and checked ([`Node::receive_snapshot`](super::Node::receive_snapshot)),
    /// spooled when the registration claims it.
    Snapshot(Arrival),
    /// No snapshot: read the whole topic from its first offset.
    Beginning,
}

/// What a registration request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// A bootstrap (or the check of the topic's start) began.
    Started(Registration),
    /// A bootstrap of this source is already running: nothing was changed (its progress).
    Running(Registration),
    /// The source is already read: nothing was done.
    Already(Registration),
}

/// How the registration of one source stands (`GET /subscriptions/<source>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Registration {
    /// Not read yet, but the service has the translator: it can be registered.
    Available,
    /// Loading the snapshot: `loaded` of `total` records applied.
    Bootstrapping {
        /// Records applied.
        loaded: u64,
        /// Records in the snapshot.
        total: u64,
        /// The snapshot's journal seq.
        seq: u64,
    },
    /// Subscribed; reading from these positions (partition → next offset) onwards.
    Reading {
        /// The positions when the subscription started.
        positions: BTreeMap<i32, i64>,
        /// The seq of the snapshot it bootstrapped from, if it did.
        snapshot_seq: Option<u64>,
        /// True when the source was already registered and nothing was done.
        already: bool,
    },
    /// Not read: the events this consumer needs next are gone (retention, or the topic was
    /// recreated). The node keeps running without the source until the way out named in
    /// `error` is taken.
    NeedsRebuild {
        /// What is gone and what to do.
        error: String,
    },
    /// The registration stopped; the node keeps running without the source.
    Failed {
        /// Why, and what to do.
        error: String,
    },
}

impl Registration {
    /// The reading state at `positions` for `topic`.
    pub(crate) fn reading(topic: &str, positions: &OffsetMap, snapshot_seq: Option<u64>, already: bool) -> Self {
        Self::Reading {
            positions: positions
                .iter()
                .filter(|(t, _, _)| *t == topic)
                .map(|(_, p, o)| (p, o))
                .collect(),
            snapshot_seq,
            already,
        }
    }
}
