//! A service's store (see [`seam_core::store`]) on disk: sled, synced for power loss.

pub use seam_core::store::*;

pub use crate::store_sled::{SledEngine, CACHE_ENV};

/// Opens (or creates) the durable store in `dir`.
pub fn open(dir: &std::path::Path) -> Result<Store, StoreError> {
    Store::with_engine(std::sync::Arc::new(SledEngine::open(dir)?))
}
