//! A storage engine that fails or stalls on command, wrapped around a real sled store, so tests
//! can show what a service does when its store breaks (an answer, never a silent loss) and what
//! it serves while a flush is still running.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use seam::runtime::SharedEngine;
use seam::store::engine::Pair;
use seam::store::{Engine, SledEngine, StoreError};

/// Switches of a [`FaultyEngine`], shared with the test.
#[derive(Debug, Default)]
pub struct Faults {
    /// Every write fails.
    pub fail_writes: AtomicBool,
    /// Every flush fails.
    pub fail_flushes: AtomicBool,
    held: Mutex<bool>,
    released: Condvar,
}

impl Faults {
    /// Flushes block until [`Faults::release_flushes`].
    pub fn hold_flushes(&self) {
        if let Ok(mut held) = self.held.lock() {
            *held = true;
        }
    }

    /// Lets held flushes (and later ones) through.
    pub fn release_flushes(&self) {
        if let Ok(mut held) = self.held.lock() {
            *held = false;
        }
        self.released.notify_all();
    }

    fn wait_while_held(&self) {
        if let Ok(held) = self.held.lock() {
            drop(self.released.wait_while(held, |h| *h));
        }
    }
}

/// sled with [`Faults`] in front of writes and flushes.
pub struct FaultyEngine {
    inner: SledEngine,
    faults: Arc<Faults>,
}

impl FaultyEngine {
    /// Opens sled in `dir`; returns the engine for a node's configuration and its switches.
    pub fn open(dir: &Path) -> (SharedEngine, Arc<Faults>) {
        let inner = SledEngine::open(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
        let faults = Arc::new(Faults::default());
        let engine = Self {
            inner,
            faults: Arc::clone(&faults),
        };
        (SharedEngine(Arc::new(engine)), faults)
    }

    fn injected(what: &str) -> StoreError {
        StoreError::Corrupt {
            what: "injected fault",
            detail: format!("the test made this {what} fail"),
        }
    }
}

impl Engine for FaultyEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn range<'a>(&'a self, from: &[u8], to: &[u8]) -> Box<dyn Iterator<Item = Result<Pair, StoreError>> + 'a> {
        self.inner.range(from, to)
    }

    fn write(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        if self.faults.fail_writes.load(Ordering::SeqCst) {
            return Err(Self::injected("write"));
        }
        self.inner.write(writes)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.faults.wait_while_held();
        if self.faults.fail_flushes.load(Ordering::SeqCst) {
            return Err(Self::injected("flush"));
        }
        self.inner.flush()
    }
}
