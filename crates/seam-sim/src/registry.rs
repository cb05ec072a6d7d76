//! A Confluent-compatible schema registry in memory, behind the runtime's real registry client
//! (`seam::codec::Registry::with_backend`): ids are global and an identical schema keeps its id
//! across subjects, as in Confluent's. An outage makes every call fail as unavailable.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
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
}

impl SimRegistry {
    fn schemas(&self) -> Result<std::sync::MutexGuard<'_, Schemas>, String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("connection refused (simulated outage)".into());
        }
        Ok(self.schemas.lock().unwrap_or_else(|p| p.into_inner()))
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
        Ok(self.schemas()?.by_id.get(&id).cloned())
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
        Ok(id)
    }

    fn subjects(&self) -> Result<Vec<String>, String> {
        Ok(self.schemas()?.subjects.keys().cloned().collect())
    }

    fn versions(&self, subject: &str) -> Result<Vec<(u32, String)>, String> {
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
}
