//! A Confluent-compatible schema registry in memory, behind the runtime's real registry client
//! (`seam::codec::Registry::with_backend`): ids are global and an identical schema keeps its id
//! across subjects, as in Confluent's. An outage makes every call fail as unavailable; a slow
//! registry answers every other call after the client gave up on it (a registration it took
//! is kept, so the client's retry must find the same id).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use seam::codec::RegistryBackend;

#[derive(Debug, Default)]
struct Schemas {
    by_id: BTreeMap<u32, String>,
    subjects: BTreeMap<String, Vec<u32>>,
}

/// The simulated registry.
#[derive(Debug, Default)]
pub struct SimRegistry {
    schemas: Mutex<Schemas>,
    down: AtomicBool,
    slow: AtomicBool,
    calls: AtomicU64,
}

/// What the client reports when an answer comes after its timeout.
const TIMED_OUT: &str = "no answer within 10 s (simulated slow registry)";

impl SimRegistry {
    fn schemas(&self) -> Result<std::sync::MutexGuard<'_, Schemas>, String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("connection refused (simulated outage)".into());
        }
        Ok(self.schemas.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether this call's answer comes too late: every other call while slow.
    fn too_late(&self) -> bool {
        self.slow.load(Ordering::SeqCst) && self.calls.fetch_add(1, Ordering::SeqCst).is_multiple_of(2)
    }

    /// Starts or ends a slow period.
    pub fn set_slow(&self, slow: bool) {
        self.slow.store(slow, Ordering::SeqCst);
    }

    /// Whether the registry is slow.
    pub fn is_slow(&self) -> bool {
        self.slow.load(Ordering::SeqCst)
    }

    /// Starts or ends an outage.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Whether an outage is on.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }
}

impl RegistryBackend for SimRegistry {
    fn schema(&self, id: u32) -> Result<Option<String>, String> {
        let found = self.schemas()?.by_id.get(&id).cloned();
        if self.too_late() {
            return Err(TIMED_OUT.into());
        }
        Ok(found)
    }

    fn register(&self, subject: &str, text: &str) -> Result<u32, String> {
        let mut s = self.schemas()?;
        let id = match s.by_id.iter().find(|(_, t)| t.as_str() == text) {
            Some((id, _)) => *id,
            None => {
                let id = s.by_id.keys().next_back().map_or(1, |last| last + 1);
                s.by_id.insert(id, text.to_string());
                id
            }
        };
        let versions = s.subjects.entry(subject.to_string()).or_default();
        if !versions.contains(&id) {
            versions.push(id);
        }
        drop(s);
        // Taken, but the answer is lost: the client sees a timeout and retries.
        if self.too_late() {
            return Err(TIMED_OUT.into());
        }
        Ok(id)
    }

    fn subjects(&self) -> Result<Vec<String>, String> {
        let subjects = self.schemas()?.subjects.keys().cloned().collect();
        if self.too_late() {
            return Err(TIMED_OUT.into());
        }
        Ok(subjects)
    }

    fn versions(&self, subject: &str) -> Result<Vec<(u32, String)>, String> {
        if self.too_late() {
            return Err(TIMED_OUT.into());
        }
        let s = self.schemas()?;
        Ok(s.subjects
            .get(subject)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| s.by_id.get(id).map(|t| (*id, t.clone())))
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_global_and_stable_and_an_outage_refuses_every_call() {
        let r = SimRegistry::default();
        let a = r.register("t-A", "{a}").expect("register");
        assert_eq!(r.register("t-A", "{a}"), Ok(a));
        assert_eq!(r.register("u-A", "{a}"), Ok(a), "same schema, same id");
        let b = r.register("t-A", "{b}").expect("register");
        assert_ne!(a, b);
        assert_eq!(r.versions("t-A").expect("versions").len(), 2);
        r.set_down(true);
        assert!(r.schema(a).is_err());
        r.set_down(false);
        assert_eq!(r.schema(a), Ok(Some("{a}".into())));
        assert_eq!(r.schema(99), Ok(None));
    }

    #[test]
    fn a_slow_registry_keeps_what_it_took_although_the_answer_came_too_late() {
        let r = SimRegistry::default();
        r.set_slow(true);
        assert!(r.register("t-A", "{a}").is_err(), "the first answer is late");
        let id = r.register("t-A", "{a}").expect("the retry is answered");
        assert!(r.versions("t-A").is_err(), "late again");
        r.set_slow(false);
        assert_eq!(r.versions("t-A").expect("versions"), vec![(id, "{a}".to_string())]);
    }
}
