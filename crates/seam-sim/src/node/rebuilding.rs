//! The remedy for a source whose next events are gone, on a consumer that keeps a replica of
//! it: `seam replay <consumer> --source S --from-snapshot`. The shadow store is loaded from a
//! snapshot of every source the replica is built from, through the runtime's
//! `bootstrap::Load` (its map checked against the log as the service does), then read on from
//! the snapshots' maps; the sources being rebuilt to their current ends, the others to the live
//! store's positions. The replay's exclusive step (in `Node::replay_step`) compares and swaps
//! with those sources as `rebuilding`, after which the consumer reads them on.
//!
//! Where no rebuild can be had (no replica of the source, or a source it needs exports no
//! snapshots), the operator reads on knowingly: `seam register C --source S --accept-gap`,
//! through the runtime's `register::gap_moves` and `register::accept_gap_job`.

use std::collections::{BTreeMap, BTreeSet};

use seam::runtime::bootstrap::Load;
use seam::runtime::register::{accept_gap_job, gap_moves};
use seam::runtime::{retention, spool, Ready};
use seam::service::Service;
use seam::translator::events_topic;

use super::registering::{receive, store_dir};
use super::{Did, Env, Node, Replaying};

/// Records per shadow bootstrap chunk.
const CHUNK: usize = 500;

impl<S: Service> Node<S> {
    /// What a rebuild needs: the sources whose next events are gone, the prefixes of the
    /// replicas built from them, and every source a replay of those reads (each needs a
    /// snapshot); `None` when no source waits for a rebuild, or none can be rebuilt.
    pub(super) fn to_rebuild(&self) -> Option<(Vec<String>, Vec<String>, BTreeSet<String>)> {
        let up = self.up.as_ref()?;
        let gone: Vec<String> = up
            .consumer
            .stopped
            .keys()
            .map(|t| t.trim_end_matches(".events").to_string())
            .collect();
        if gone.is_empty() || up.replay.is_some() {
            return None;
        }
        let (prefixes, reads) =
            seam::runtime::replay_plan(self.spec.name, &self.service().replicas(), &gone, &self.reading()).ok()?;
        Some((gone, prefixes, reads))
    }

    /// `seam replay <this> --source <gone> --from-snapshot` with a snapshot of every source the
    /// rebuild reads.
    pub(super) fn replay_from_snapshots(&mut self, env: &mut Env<'_>, snapshots: &BTreeMap<String, Vec<u8>>) -> Did {
        let Some((gone, prefixes, sources)) = self.to_rebuild() else {
            return "nothing waits for a rebuild".into();
        };
        if let Some(missing) = sources.iter().find(|s| !snapshots.contains_key(*s)) {
            return format!("replay refused: no snapshot of {missing} (reads {sources:?})");
        }
        let dir = store_dir(env, &format!("{}-shadow", self.spec.name));
        let (shadow, mut writer) = match self.shadow() {
            Ok(shadow) => shadow,
            Err(e) => return self.fail(e),
        };
        let Some(up) = self.up.as_mut() else {
            return "down".into();
        };
        let mut records = 0;
        for source in &sources {
            let topic = events_topic(source);
            let arrival = match receive(env, &dir, source, &snapshots[source]) {
                Ok(a) => a,
                Err(e) => return format!("replay refused the snapshot of {source}: {e}"),
            };
            let path = match arrival.claim(&dir) {
                Ok(p) => p,
                Err(e) => return self.fail(format!("spooling the replay's snapshot: {e}")),
            };
            let mut load = match Load::open(&shadow, source, &path) {
                Ok(Some(load)) => load,
                Ok(None) => return self.fail("a fresh shadow store reads a source already".into()),
                Err(e) => return format!("replay refused: {e}"),
            };
            let Ok(partitions) = env.kafka.partitions(&topic) else {
                return "replay waits for the cluster".into();
            };
            if let Err(e) = load.covers(partitions as usize) {
                return format!("replay refused: {e}");
            }
            for (t, partition, next) in load.meta.offsets.iter() {
                let Ok((low, high)) = env.kafka.watermarks(t, partition) else {
                    return "replay waits for the cluster".into();
                };
                if let Err(e) = retention::verdict(t, partition, next, low, high) {
                    return format!("replay refused: {e}");
                }
            }
            for (id, schema) in &load.meta.schemas {
                if let Err(e) = up.registry.preload(*id, schema) {
                    return self.fail(format!("preloading the snapshot's schemas: {e}"));
                }
            }
            loop {
                let events = match load.chunk(CHUNK) {
                    Ok(events) => events,
                    Err(e) => return self.fail(format!("reading the replay's snapshot: {e}")),
                };
                let mut items = Vec::with_capacity(events.len());
                for event in events {
                    match up.pipeline.try_prepare(&event) {
                        Ok(Ready::Done(prepared)) => items.push((event, prepared)),
                        Ok(Ready::Transient(_)) => return "replay waits for the registry".into(),
                        Err(e) => return self.fail(format!("preparing a snapshot record: {e}")),
                    }
                }
                records += items.len();
                let last = load.is_last();
                let loaded = writer
                    .bootstrap(&topic, load.marker(), items, last.then(|| load.end()))
                    .and_then(|_| writer.write())
                    .and_then(|()| writer.flush());
                if let Err(e) = loaded {
                    return self.fail(format!("the shadow writer failed on a snapshot chunk: {e}"));
                }
                if last {
                    break;
                }
            }
            spool::unspool(&dir, source, None);
        }
        let topics: Vec<String> = sources.iter().map(|s| events_topic(s)).collect();
        let rebuilding: BTreeSet<String> = gone.iter().map(|s| events_topic(s)).collect();
        let Ok(start) = shadow.positions() else {
            return self.fail("reading the shadow's positions".into());
        };
        let mut fetch = BTreeMap::new();
        let mut ends = BTreeMap::new();
        for topic in &topics {
            let Ok(partitions) = env.kafka.partitions(topic) else {
                return "replay waits for the cluster".into();
            };
            for partition in 0..partitions {
                fetch.insert((topic.clone(), partition), start.position(topic, partition));
                if rebuilding.contains(topic) {
                    let Ok(end) = env.kafka.last_stable(topic, partition) else {
                        return "replay waits for the cluster".into();
                    };
                    ends.insert((topic.clone(), partition), end);
                }
            }
        }
        up.replay = Some(Replaying {
            shadow,
            writer,
            fetch,
            topics,
            prefixes,
            dry_run: false,
            rebuilding,
            ends,
            start,
        });
        format!("REPLAY from snapshots of {sources:?} ({records} records) to rebuild {gone:?}")
    }

    /// `seam register <this> --source <topic's service> --accept-gap`: the positions move to the
    /// log start in one exclusive write; the source is read again once that is durable.
    pub(super) fn accept_gap(&mut self, env: &mut Env<'_>, topic: &str) -> Did {
        let Some(up) = self.up.as_mut() else {
            return "down".into();
        };
        if !up.consumer.stopped.contains_key(topic) || up.accepting.is_some() {
            return format!("no gap to accept in {topic}");
        }
        let Ok(positions) = up.store.positions() else {
            return self.fail("reading the positions".into());
        };
        let Ok(partitions) = env.kafka.partitions(topic) else {
            return "accept-gap fails: no broker answers".into();
        };
        let mut marks = Vec::new();
        for partition in 0..partitions {
            let Ok(mark) = env.kafka.watermarks(topic, partition) else {
                return "accept-gap fails: no broker answers".into();
            };
            marks.push((partition, mark));
        }
        // The simulated topics are never recreated: a gap is a trimmed log, read on from its start.
        let moved = gap_moves(topic, false, &positions, marks);
        match up
            .stepper
            .exclusive(accept_gap_job(topic.to_string(), moved.clone(), false))
        {
            Ok(answer) => {
                up.accepting = Some((topic.to_string(), moved.clone(), answer));
                format!("ACCEPT-GAP {topic}: positions move to {moved:?}")
            }
            Err(e) => self.fail(format!("the writer failed accepting a gap: {e}")),
        }
    }

    /// The accepted gap's write, once durable: the source is read again.
    pub(super) fn gap_step(&mut self) -> Option<Did> {
        let up = self.up.as_mut()?;
        let (_, _, answer) = up.accepting.as_mut()?;
        match answer.poll()? {
            Some(Ok(())) => {
                let (topic, moved, _) = up.accepting.take()?;
                up.consumer.stopped.remove(&topic);
                up.consumer.started = false;
                // What the gap swallowed is never taken in, poison included.
                for (partition, low) in moved {
                    self.cuts.set(&topic, partition, low);
                }
                self.accepted.insert(topic.clone());
                Some(format!("gap accepted in {topic}: read on from the log start"))
            }
            Some(Err(e)) => Some(self.fail(format!("accepting a gap failed: {e}"))),
            None => Some(self.fail("the writer dropped the accept-gap write".into())),
        }
    }
}
