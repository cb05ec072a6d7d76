//! Snapshots (seed 004): a service's state at a journal seq, as state-transfer records in its own
//! published schemas, tagged with the offset map of its topic at exactly that seq. A new consumer
//! applies the snapshot and then reads from the map: nothing missed, nothing twice.

pub mod file;
pub mod spool;

use std::path::{Path, PathBuf};

pub use file::{SnapshotError, SnapshotMeta, SnapshotRecord};

/// A snapshot file a node exported; removed when dropped unless kept with [`Exported::persist`].
#[derive(Debug)]
pub struct Exported {
    /// Its cut.
    pub meta: SnapshotMeta,
    path: PathBuf,
    kept: bool,
}

impl Exported {
    /// A file written at `path` with `meta`.
    #[doc(hidden)] // for the runtime (seam), not for services
    pub fn new(meta: SnapshotMeta, path: PathBuf) -> Self {
        Self {
            meta,
            path,
            kept: false,
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the file to `to` and keeps it.
    pub fn persist(mut self, to: &Path) -> std::io::Result<()> {
        if std::fs::rename(&self.path, to).is_err() {
            // Across file systems.
            std::fs::copy(&self.path, to)?;
            let _ = std::fs::remove_file(&self.path);
        }
        self.kept = true;
        Ok(())
    }

    /// Every record, read into memory (for tests and small snapshots).
    pub fn records(&self) -> Result<Vec<SnapshotRecord>, SnapshotError> {
        let mut out = Vec::new();
        for r in file::open(&self.path, Some(&self.meta.service))? {
            out.push(r?);
        }
        Ok(out)
    }
}

impl Drop for Exported {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
