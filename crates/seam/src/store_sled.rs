//! sled as the engine of a service's store, made durable across power loss.

use std::path::{Path, PathBuf};

use seam_core::store::engine::{Engine, Pair, StoreError};

/// sled, one database per service instance, everything in one tree so one batch is atomic.
///
/// sled's flush writes its log with `pwrite` and `sync_file_range(WAIT_BEFORE | WRITE |
/// WAIT_AFTER)` and never fsyncs it; its config and blob files are written without any sync.
/// `sync_file_range` flushes pages to the device but neither the device's volatile cache nor the
/// file's size as it grows, so after a power loss a flushed ("durable") write can be gone. So
/// this engine syncs the store's files and folders when it opens them, and after every flush
/// `fdatasync`s the log file and any new blob file (the cost is measured in `BENCHMARKS.md`).
pub struct SledEngine {
    path: String,
    db: sled::Db,
    tree: sled::Tree,
    /// sled's log file, opened again to `fdatasync` it (any descriptor of a file syncs it).
    log: std::fs::File,
    dir: PathBuf,
    /// Blob files already synced.
    blobs: std::sync::Mutex<std::collections::BTreeSet<std::ffi::OsString>>,
}

impl SledEngine {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.display().to_string();
        let wrap = |source: sled::Error| StoreError::Engine {
            path: path.clone(),
            source: Box::new(source),
        };
        // Flushes are explicit (group commit); sled's timer flush is turned off. sled's cache is
        // the bulk of a service's memory (its real use is several times the setting): 16 MiB keeps
        // a consumer that bootstrapped a million records near 150 MiB resident.
        let config = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes());
        // sled releases its file lock only when its background I/O of a store just closed in
        // this process is done, a moment after the last handle drops: wait that moment out.
        // Another process holding the store keeps the lock, and the error says so.
        let patience = std::time::Instant::now() + LOCK_PATIENCE;
        let db = loop {
            match config.open() {
                Err(e) if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < patience => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) if e.to_string().contains("could not acquire lock") => {
                    return Err(StoreError::Locked { path: path.clone() });
                }
                other => break other.map_err(wrap)?,
            }
        };
        let tree = db.open_tree("seam").map_err(wrap)?;
        let io = |e: std::io::Error| StoreError::Io {
            path: path.clone(),
            source: e,
        };
        // What sled created or left unsynced (its config, the log, blobs), and the folders that
        // name them, are made durable once here.
        sync_tree(dir).map_err(io)?;
        if let Some(parent) = dir.parent() {
            sync_path(parent).map_err(io)?;
        }
        let log = std::fs::File::open(dir.join("db")).map_err(io)?;
        let engine = Self {
            path: path.clone(),
            db,
            tree,
            log,
            dir: dir.to_path_buf(),
            blobs: Default::default(),
        };
        engine.sync_new_blobs().map_err(io)?;
        Ok(engine)
    }

    /// `fdatasync`s blob files written since the last call (sled writes them without a sync),
    /// and their folder when there were any.
    fn sync_new_blobs(&self) -> std::io::Result<()> {
        let folder = self.dir.join("blobs");
        let Ok(entries) = std::fs::read_dir(&folder) else {
            return Ok(());
        };
        let mut synced = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut new = false;
        for entry in entries {
            let entry = entry?;
            if !synced.contains(&entry.file_name()) {
                std::fs::File::open(entry.path())?.sync_data()?;
                synced.insert(entry.file_name());
                new = true;
            }
        }
        if new {
            sync_path(&folder)?;
        }
        Ok(())
    }

    fn wrap(&self, source: sled::Error) -> StoreError {
        StoreError::Engine {
            path: self.path.clone(),
            source: Box::new(source),
        }
    }
}

/// The environment variable setting sled's cache, in MiB (default 16).
pub const CACHE_ENV: &str = "SEAM_STORE_CACHE_MB";

/// How long opening a store waits for the lock of a store just closed in this process.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) fn cache_bytes() -> u64 {
    std::env::var(CACHE_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|mb| *mb > 0)
        .unwrap_or(16)
        * 1024
        * 1024
}

impl Engine for SledEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key).map_err(|e| self.wrap(e))?.map(|v| v.to_vec()))
    }

    fn range<'a>(&'a self, from: &[u8], to: &[u8]) -> Box<dyn Iterator<Item = Result<Pair, StoreError>> + 'a> {
        Box::new(
            self.tree
                .range(from.to_vec()..to.to_vec())
                .map(move |item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(|e| self.wrap(e))),
        )
    }

    fn write(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, value) in writes {
            match value {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        self.tree.apply_batch(batch).map_err(|e| self.wrap(e))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(|e| self.wrap(e))?;
        let io = |e: std::io::Error| StoreError::Io {
            path: self.path.clone(),
            source: e,
        };
        self.log.sync_data().map_err(io)?;
        self.sync_new_blobs().map_err(io)
    }
}

/// fsyncs a file or folder.
fn sync_path(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// fsyncs every file and folder under `dir`, and `dir`.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            sync_path(&path)?;
        }
    }
    sync_path(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store closed in this process opens again at once (a service restarted in-process, a
    /// test reopening a stopped node's store), though sled's background I/O may still hold
    /// its lock for a moment; a store open elsewhere is named as such.
    #[test]
    fn a_store_just_closed_opens_again_and_one_still_open_is_named() {
        let dir = std::env::temp_dir().join(format!("seam-engine-reopen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for round in 0..60u32 {
            let engine = SledEngine::open(&dir).unwrap_or_else(|e| panic!("round {round}: {e}"));
            let writes = (0..2000u32)
                .map(|i| (format!("k{round}-{i}").into_bytes(), Some(vec![7u8; 256])))
                .collect();
            engine.write(writes).expect("write");
            engine.flush().expect("flush");
        }
        let held = SledEngine::open(&dir).expect("open");
        let dir2 = dir.clone();
        let err = std::thread::spawn(move || SledEngine::open(&dir2).err())
            .join()
            .expect("thread");
        drop(held);
        let err = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("open in another process"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
