//! A service's store (see [`seam_core::store`]) on disk: fjall (the default for new stores) or
//! sled, each synced for power loss, chosen per service.

pub use seam_core::store::*;

pub use crate::store_fjall::FjallEngine;
pub use crate::store_sled::{SledEngine, CACHE_ENV};

/// Which engine keeps a service's store. fjall is the default for new stores: in the
/// translator benchmark it took about a third less CPU per event than sled and moved 1.5–2× the
/// events per second (`BENCHMARKS.md` measures both; the README gives the figures). A store
/// keeps the engine that created it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreEngine {
    /// sled: a B-tree with a log, synced after each flush.
    Sled,
    /// fjall: an LSM tree with a journal, fdatasynced at each flush.
    #[default]
    Fjall,
}

impl StoreEngine {
    /// The name used by `--store-engine`, `SEAM_STORE_ENGINE` and `store_engine:`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sled => "sled",
            Self::Fjall => "fjall",
        }
    }

    /// The engine whose files are in `dir`, if any: a store keeps the engine that created it.
    pub fn found_in(dir: &std::path::Path) -> Option<Self> {
        if dir.join(crate::store_fjall::FOLDER).is_dir() {
            Some(Self::Fjall)
        } else if dir.join("conf").is_file() || dir.join("db").is_file() {
            Some(Self::Sled)
        } else {
            None
        }
    }
}

impl std::fmt::Display for StoreEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Opens (or creates) the durable store in `dir` with the engine that created it, or the
/// default engine for a new store.
pub fn open(dir: &std::path::Path) -> Result<Store, StoreError> {
    open_as(dir, StoreEngine::found_in(dir).unwrap_or_default())
}

/// Opens (or creates) the durable store in `dir` with `engine`. A store another engine created
/// is refused: its records are in that engine's files, and opening the other would start an
/// empty store beside them.
pub fn open_as(dir: &std::path::Path, engine: StoreEngine) -> Result<Store, StoreError> {
    match StoreEngine::found_in(dir) {
        Some(found) if found != engine => Err(StoreError::OtherEngine {
            path: dir.display().to_string(),
            found: found.name(),
            asked: engine.name(),
        }),
        _ => match engine {
            StoreEngine::Sled => Store::with_engine(std::sync::Arc::new(SledEngine::open(dir)?)),
            StoreEngine::Fjall => Store::with_engine(std::sync::Arc::new(FjallEngine::open(dir)?)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store keeps the engine that created it: `open` finds it, and asking for the other
    /// engine is refused with what to do, not answered with an empty store.
    #[test]
    fn a_store_opens_with_its_own_engine_and_the_other_is_refused() {
        for (made, other) in [
            (StoreEngine::Sled, StoreEngine::Fjall),
            (StoreEngine::Fjall, StoreEngine::Sled),
        ] {
            let dir = std::env::temp_dir().join(format!("seam-store-engine-{made}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            {
                let store = open_as(&dir, made).expect("create");
                let mut set = store.write_set().expect("write set");
                set.model_put("k", Some(b"v".to_vec()));
                set.keep();
                store.commit(&mut set, true).expect("commit");
                store.flush().expect("flush");
            }
            assert_eq!(StoreEngine::found_in(&dir), Some(made));
            let store = open(&dir).expect("reopen");
            assert_eq!(store.model_get("k").expect("read"), Some(b"v".to_vec()), "{made}");
            drop(store);
            let err = open_as(&dir, other).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                err.contains(&format!("created by the {made} engine"))
                    && err.contains(&format!("--store-engine {made}")),
                "{err}"
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
