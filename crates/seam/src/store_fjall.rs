//! fjall (an LSM tree) as the engine of a service's store: the second engine behind
//! [`Engine`], chosen per service with `--store-engine fjall` (see `BENCHMARKS.md` for how it
//! compares with sled).

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use seam_core::store::engine::{Engine, Pair, StoreError};

/// fjall, one database per service instance, everything in one keyspace.
///
/// A write lands in fjall's journal buffer and memtable; [`Engine::flush`] writes the buffer
/// and `fdatasync`s the journal (`PersistMode::SyncData`: its data and size), which is what group commit waits for.
/// fjall writes, syncs and renames its tables and version files itself before it drops a
/// journal, so after a power loss what was flushed is there (the warehouse power-loss test runs
/// on both engines).
pub struct FjallEngine {
    path: String,
    db: Database,
    keyspace: Keyspace,
}

/// The folder of a store directory that holds fjall's files (the rest of the store directory
/// holds spooled snapshots and replays, as it does for sled).
pub const FOLDER: &str = "fjall";

/// The size at which the memtable is sealed and written to a table.
const MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;

impl FjallEngine {
    /// Opens (or creates) the database in `dir`'s [`FOLDER`].
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let folder = dir.join(FOLDER);
        let path = folder.display().to_string();
        let db = Database::builder(&folder)
            .cache_size(crate::store_sled::cache_bytes())
            .manual_journal_persist(true)
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => StoreError::Locked { path: path.clone() },
                other => StoreError::Engine {
                    path: path.clone(),
                    source: Box::new(other),
                },
            })?;
        // A memtable of 16 MiB, not fjall's 64: a service's memory is bounded (the footprint
        // test), and the table it flushes to is written by a background thread anyway.
        let keyspace = db
            .keyspace("seam", || {
                KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
            })
            .map_err(|e| StoreError::Engine {
                path: path.clone(),
                source: Box::new(e),
            })?;
        Ok(Self { path, db, keyspace })
    }

    fn wrap(&self, source: fjall::Error) -> StoreError {
        StoreError::Engine {
            path: self.path.clone(),
            source: Box::new(source),
        }
    }
}

impl Engine for FjallEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.keyspace.get(key).map_err(|e| self.wrap(e))?.map(|v| v.to_vec()))
    }

    fn range<'a>(&'a self, from: &[u8], to: &[u8]) -> Box<dyn Iterator<Item = Result<Pair, StoreError>> + 'a> {
        if from >= to {
            return Box::new(std::iter::empty());
        }
        Box::new(self.keyspace.range(from.to_vec()..to.to_vec()).map(move |guard| {
            guard
                .into_inner()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|e| self.wrap(e))
        }))
    }

    fn write(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for (key, value) in writes {
            match value {
                Some(v) => batch.insert(&self.keyspace, key, v),
                None => batch.remove(&self.keyspace, key),
            }
        }
        batch.commit().map_err(|e| self.wrap(e))
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncData).map_err(|e| self.wrap(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fjall_reads_back_ranges_across_reopens_and_names_a_store_open_elsewhere() {
        let dir = std::env::temp_dir().join(format!("seam-fjall-reopen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for round in 0..3u32 {
            let engine = FjallEngine::open(&dir).unwrap_or_else(|e| panic!("round {round}: {e}"));
            let writes = (0..2000u32)
                .map(|i| (format!("k{round}-{i:05}").into_bytes(), Some(vec![7u8; 256])))
                .collect();
            engine.write(writes).expect("write");
            engine
                .write(vec![(format!("k{round}-00000").into_bytes(), None)])
                .expect("delete");
            engine.flush().expect("flush");
        }
        let engine = FjallEngine::open(&dir).expect("open");
        for round in 0..3u32 {
            let from = format!("k{round}-");
            let to = format!("k{round}.");
            assert_eq!(
                engine.range(from.as_bytes(), to.as_bytes()).count(),
                1999,
                "round {round}"
            );
        }
        assert_eq!(engine.get(b"k1-00007").expect("get"), Some(vec![7u8; 256]));
        assert_eq!(engine.get(b"k1-00000").expect("get"), None);
        let dir2 = dir.clone();
        let err = std::thread::spawn(move || FjallEngine::open(&dir2).err())
            .join()
            .expect("thread");
        drop(engine);
        let err = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("open in another process"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
