//! Named crash points for fault tests: `SEAM_FAILPOINTS=writer.after-commit=3` makes the process
//! SIGKILL itself the third time it passes that point, so a test can crash a real service
//! process at an exact step (between apply and publish, mid-batch, during publish) instead of
//! hoping a timed kill lands there. Without the variable a check is one atomic load.
//!
//! Only builds with the `failpoints` cargo feature have them (the warehouse fixture, which the
//! fault tests run, enables it); in every other build, releases included, [`hit`] is empty, so
//! no environment variable can make a production service kill itself.

#[cfg(feature = "failpoints")]
use std::collections::HashMap;
#[cfg(feature = "failpoints")]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "failpoints")]
use std::sync::OnceLock;

/// The environment variable: comma-separated `name=n` pairs.
pub const ENV: &str = "SEAM_FAILPOINTS";

#[cfg(feature = "failpoints")]
struct Armed {
    target: u64,
    hits: AtomicU64,
}

#[cfg(feature = "failpoints")]
fn armed() -> &'static HashMap<String, Armed> {
    static ARMED: OnceLock<HashMap<String, Armed>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var(ENV)
            .unwrap_or_default()
            .split(',')
            .filter_map(|pair| {
                let (name, n) = pair.trim().split_once('=')?;
                Some((
                    name.to_string(),
                    Armed {
                        target: n.parse().ok()?,
                        hits: AtomicU64::new(0),
                    },
                ))
            })
            .collect()
    })
}

/// Passes the named point; kills the process with SIGKILL on the armed hit.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    let points = armed();
    if points.is_empty() {
        return;
    }
    if let Some(point) = points.get(name) {
        if point.hits.fetch_add(1, Ordering::SeqCst) + 1 == point.target {
            tracing::warn!(failpoint = name, "failpoint reached: killing this process with SIGKILL");
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Passes the named point: this build has no failpoints.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
