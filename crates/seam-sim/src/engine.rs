//! A store engine that loses what a crash loses. Writes are visible at once and kept as the
//! batches they were written in; a flush makes every batch so far durable. A crash keeps the
//! durable state plus any prefix of the unflushed batches: sled applies a batch atomically and
//! writes its log in order, so that is exactly what a real crash can leave (a torn group is a
//! prefix of the writer's groups, never half of one).

use std::collections::BTreeMap;
use std::sync::Mutex;

use seam::store::{Engine, Pair, StoreError};

type Batch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

#[derive(Debug, Default, Clone)]
struct Disk {
    visible: BTreeMap<Vec<u8>, Vec<u8>>,
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    unflushed: Vec<Batch>,
}

/// The simulated engine of one node's store.
#[derive(Debug, Default)]
pub struct SimEngine {
    disk: Mutex<Disk>,
}

fn apply(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, batch: &Batch) {
    for (key, value) in batch {
        match value {
            Some(v) => map.insert(key.clone(), v.clone()),
            None => map.remove(key),
        };
    }
}

impl SimEngine {
    fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Batches written since the last flush.
    pub fn unflushed(&self) -> usize {
        self.disk().unflushed.len()
    }

    /// What survives a crash that kept the first `kept` unflushed batches (clamped): a new
    /// engine to reopen the store on, with all of it durable.
    pub fn crashed(&self, kept: usize) -> SimEngine {
        let disk = self.disk();
        let mut survived = disk.durable.clone();
        for batch in disk.unflushed.iter().take(kept) {
            apply(&mut survived, batch);
        }
        SimEngine {
            disk: Mutex::new(Disk {
                visible: survived.clone(),
                durable: survived,
                unflushed: Vec::new(),
            }),
        }
    }
}

impl Engine for SimEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.disk().visible.get(key).cloned())
    }

    fn range<'a>(&'a self, from: &[u8], to: &[u8]) -> Box<dyn Iterator<Item = Result<Pair, StoreError>> + 'a> {
        if from >= to {
            return Box::new(std::iter::empty());
        }
        let pairs: Vec<Pair> = self
            .disk()
            .visible
            .range(from.to_vec()..to.to_vec())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Box::new(pairs.into_iter().map(Ok))
    }

    fn write(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        let mut disk = self.disk();
        apply(&mut disk.visible, &writes);
        disk.unflushed.push(writes);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut disk = self.disk();
        let batches = std::mem::take(&mut disk.unflushed);
        for batch in &batches {
            apply(&mut disk.durable, batch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> (Vec<u8>, Option<Vec<u8>>) {
        (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()))
    }

    #[test]
    fn a_crash_keeps_the_flushed_state_and_a_prefix_of_the_rest() {
        let engine = SimEngine::default();
        engine.write(vec![put("a", "1")]).expect("write");
        engine.flush().expect("flush");
        engine.write(vec![put("b", "2"), put("c", "3")]).expect("write");
        engine.write(vec![(b"a".to_vec(), None)]).expect("write");
        assert_eq!(
            engine.get(b"a").expect("get"),
            None,
            "writes are visible before the flush"
        );
        let none = engine.crashed(0);
        assert_eq!(none.get(b"a").expect("get"), Some(b"1".to_vec()));
        assert_eq!(none.get(b"b").expect("get"), None);
        let one = engine.crashed(1);
        assert_eq!(
            one.get(b"c").expect("get"),
            Some(b"3".to_vec()),
            "a batch survives whole"
        );
        assert_eq!(one.get(b"a").expect("get"), Some(b"1".to_vec()));
        let all = engine.crashed(9);
        assert_eq!(all.get(b"a").expect("get"), None);
        assert_eq!(all.unflushed(), 0);
    }
}
