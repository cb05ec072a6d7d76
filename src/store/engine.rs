//! The storage engine behind a service's store: ordered bytes, atomic multi-key writes, and an
//! explicit flush. This is the whole interface, so another engine (redb, RocksDB) could replace
//! sled by implementing these four methods.

use std::path::Path;

use thiserror::Error;

/// A failure of the storage engine.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The engine reported an error (I/O, corruption, lock held by another process).
    #[error("the store at {path} failed: {source}")]
    Engine {
        /// Store directory.
        path: String,
        /// Cause.
        source: sled::Error,
    },
    /// A stored record does not decode; the store was written by an incompatible version or damaged.
    #[error("the store holds a damaged {what} record: {detail}")]
    Corrupt {
        /// Which kind of record.
        what: &'static str,
        /// Detail.
        detail: String,
    },
}

/// One key/value pair read from the store.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Ordered key/value storage with atomic batches.
pub trait Engine: Send + Sync + 'static {
    /// The value at `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Pairs with keys in `[from, to)`, in key order.
    fn range<'a>(&'a self, from: &[u8], to: &[u8]) -> Box<dyn Iterator<Item = Result<Pair, StoreError>> + 'a>;
    /// Applies every write (`None` deletes) atomically: after a crash either all or none are visible.
    fn write(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError>;
    /// Makes every completed write durable.
    fn flush(&self) -> Result<(), StoreError>;
}

/// sled, one database per service instance, everything in one tree so one batch is atomic.
pub struct SledEngine {
    path: String,
    db: sled::Db,
    tree: sled::Tree,
}

impl SledEngine {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.display().to_string();
        let wrap = |source| StoreError::Engine {
            path: path.clone(),
            source,
        };
        // Flushes are explicit (group commit); sled's timer flush is turned off. sled's cache is
        // the bulk of a service's memory (its real use is several times the setting): 16 MiB keeps
        // a consumer that bootstrapped a million records near 150 MiB resident.
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes())
            .open()
            .map_err(wrap)?;
        let tree = db.open_tree("seam").map_err(wrap)?;
        Ok(Self { path, db, tree })
    }

    fn wrap(&self, source: sled::Error) -> StoreError {
        StoreError::Engine {
            path: self.path.clone(),
            source,
        }
    }
}

/// The environment variable setting sled's cache, in MiB (default 16).
pub const CACHE_ENV: &str = "SEAM_STORE_CACHE_MB";

fn cache_bytes() -> u64 {
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
        self.db.flush().map(|_| ()).map_err(|e| self.wrap(e))
    }
}
