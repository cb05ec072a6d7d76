//! Snapshots (seed 004): a service's state at a journal seq, as state-transfer records in its own
//! published schemas, tagged with the offset map of its topic at exactly that seq. A new consumer
//! applies the snapshot and then reads from the map: nothing missed, nothing twice.

pub mod file;

pub use file::{SnapshotError, SnapshotMeta, SnapshotRecord};
