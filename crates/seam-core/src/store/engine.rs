//! The storage engine behind a service's store: ordered bytes, atomic multi-key writes, and an
//! explicit flush. This is the whole interface: the runtime has two engines behind it
//! (`seam::store::FjallEngine`, the default, and `seam::store::SledEngine`), another (redb,
//! RocksDB) needs only these four methods; [`MemoryEngine`] is the one a service's unit tests
//! and the simulator use.

use std::collections::BTreeMap;
use std::sync::RwLock;

use thiserror::Error;

/// What an engine reports when it fails.
pub type EngineFailure = Box<dyn std::error::Error + Send + Sync>;

/// A failure of the storage engine.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The engine reported an error (I/O, corruption, lock held by another process).
    #[error("the store at {path} failed: {source}")]
    Engine {
        /// Store directory.
        path: String,
        /// Cause.
        source: EngineFailure,
    },
    /// Making the store's files durable failed.
    #[error("syncing the store at {path} failed: {source}")]
    Io {
        /// Store directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Another process has the store open.
    #[error(
        "the store at {path} is open in another process (is the service still running?); stop that process first, \
         or give this one its own --store directory"
    )]
    Locked {
        /// Store directory.
        path: String,
    },
    /// The store was created by another engine than the one asked for.
    #[error(
        "the store at {path} was created by the {found} engine, but this service is set to use {asked}; \
         set --store-engine {found} (or SEAM_STORE_ENGINE={found}) to keep it, or give the service a new \
         --store directory and rebuild it (`seam replay`, or a bootstrap from a snapshot)"
    )]
    OtherEngine {
        /// Store directory.
        path: String,
        /// The engine whose files are there.
        found: &'static str,
        /// The engine configured.
        asked: &'static str,
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

/// Everything in memory, in key order: a store for unit tests and simulation, never durable
/// beyond the process (its `flush` does nothing because there is nothing to lose to a crash
/// the process itself survives).
#[derive(Debug, Default)]
pub struct MemoryEngine {
    pairs: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryEngine {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.pairs.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl Engine for MemoryEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read().get(key).cloned())
    }

    fn range<'a>(&'a self, from: &[u8], to: &[u8]) -> Box<dyn Iterator<Item = Result<Pair, StoreError>> + 'a> {
        if from >= to {
            return Box::new(std::iter::empty());
        }
        // A copy of the range: the caller may write while it iterates, as it may with sled.
        let pairs: Vec<Pair> = self
            .read()
            .range(from.to_vec()..to.to_vec())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Box::new(pairs.into_iter().map(Ok))
    }

    fn write(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        let mut pairs = self.pairs.write().unwrap_or_else(|p| p.into_inner());
        for (key, value) in writes {
            match value {
                Some(v) => pairs.insert(key, v),
                None => pairs.remove(&key),
            };
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_engine_reads_ranges_in_key_order_and_applies_batches_whole() {
        let engine = MemoryEngine::default();
        engine
            .write(vec![
                (b"b".to_vec(), Some(b"2".to_vec())),
                (b"a".to_vec(), Some(b"1".to_vec())),
                (b"c".to_vec(), Some(b"3".to_vec())),
            ])
            .expect("write");
        engine.write(vec![(b"c".to_vec(), None)]).expect("delete");
        let keys: Vec<Vec<u8>> = engine.range(b"a", b"z").map(|p| p.expect("pair").0).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(engine.get(b"b").expect("get"), Some(b"2".to_vec()));
        assert_eq!(engine.range(b"z", b"a").count(), 0);
    }
}
