//! Registering a source on a running consumer (`seam register`): the consumer takes the source's
//! snapshot through its bootstrap, and only then subscribes to the source topic, from exactly the
//! snapshot's offset map. The snapshot is spooled next to the store first, so a crash in the
//! middle resumes the same bootstrap at the next start instead of reading the topic from 0.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::RuntimeError;
use crate::offsets::OffsetMap;

/// Where a registration takes its starting state from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterFrom {
    /// A snapshot already spooled by [`spool`].
    Snapshot(PathBuf),
    /// No snapshot: read the whole topic from its first offset.
    Beginning,
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

/// The folder holding snapshots of registrations in progress, inside the store directory.
pub(crate) fn spool_dir(store_dir: &Path) -> PathBuf {
    store_dir.join("seam-bootstrap")
}

/// The spooled snapshot of `source`.
pub(crate) fn spooled(store_dir: &Path, source: &str) -> PathBuf {
    spool_dir(store_dir).join(format!("{source}.avro"))
}

/// Writes a snapshot for `source` durably next to the store, after checking it is whole and
/// comes from `source`; returns its path.
pub fn spool(store_dir: &Path, source: &str, bytes: &[u8]) -> Result<PathBuf, RuntimeError> {
    crate::snapshot::file::read(bytes, "the uploaded snapshot", Some(source))
        .map_err(|e| RuntimeError::Config(e.to_string()))?;
    let io = |e: std::io::Error| RuntimeError::Store(format!("spooling the snapshot of {source}: {e}"));
    let dir = spool_dir(store_dir);
    std::fs::create_dir_all(&dir).map_err(io)?;
    let path = spooled(store_dir, source);
    let tmp = path.with_extension("avro.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(path)
}

/// Removes a spooled snapshot once its bootstrap is done.
pub(crate) fn unspool(store_dir: &Path, source: &str) {
    let _ = std::fs::remove_file(spooled(store_dir, source));
}
