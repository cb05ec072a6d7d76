//! A monotonic counter threads can wait on: the writer raises the durable journal seq, the
//! publisher waits for it to move.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A value that only grows, with waiting.
#[derive(Debug, Default)]
pub struct Progress {
    value: Mutex<u64>,
    moved: Condvar,
}

impl Progress {
    /// Starts at `value`.
    pub fn new(value: u64) -> Self {
        Self {
            value: Mutex::new(value),
            moved: Condvar::new(),
        }
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.value.lock().map(|v| *v).unwrap_or_default()
    }

    /// Raises the value (never lowers it) and wakes waiters.
    pub fn raise(&self, to: u64) {
        if let Ok(mut v) = self.value.lock() {
            if to > *v {
                *v = to;
            }
        }
        self.moved.notify_all();
    }

    /// Wakes waiters without changing the value (new work that is not a seq, or shutdown).
    pub fn nudge(&self) {
        self.moved.notify_all();
    }

    /// Waits until the value exceeds `seen` or the timeout passes; returns the value.
    pub fn wait_beyond(&self, seen: u64, timeout: Duration) -> u64 {
        let Ok(guard) = self.value.lock() else { return seen };
        match self.moved.wait_timeout_while(guard, timeout, |v| *v <= seen) {
            Ok((v, _)) => *v,
            Err(_) => seen,
        }
    }
}
