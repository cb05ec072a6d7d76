//! Registering a source on a running consumer (`seam register`): the consumer takes the source's
//! snapshot through its bootstrap, and only then subscribes to the source topic, from exactly the
//! snapshot's offset map. The snapshot is spooled next to the store first (`spool.rs`), so a crash
//! in the middle resumes the same bootstrap at the next start instead of reading the topic from 0.

use std::collections::BTreeMap;
use std::sync::Arc;

use rdkafka::consumer::BaseConsumer;
use tokio::sync::oneshot;
use tracing::{error, info};

use serde::Serialize;

use super::spool::Arrival;
use super::{bootstrap, retention, spool, watermarks, writer, Node, RuntimeError};
use crate::offsets::OffsetMap;
use crate::service::Service;
use crate::translator::events_topic;

/// Where a registration takes its starting state from.
#[derive(Debug)]
pub enum RegisterFrom {
    /// A snapshot received and checked ([`Node::receive_snapshot`](super::Node::receive_snapshot)),
    /// spooled when the registration claims it.
    Snapshot(Arrival),
    /// No snapshot: read the whole topic from its first offset.
    Beginning,
}

/// What a registration request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// A bootstrap (or the check of the topic's start) began.
    Started(Registration),
    /// A bootstrap of this source is already running: nothing was changed (its progress).
    Running(Registration),
    /// The source is already read: nothing was done.
    Already(Registration),
}

/// How the registration of one source stands (`GET /subscriptions/<source>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Registration {
    /// Not read yet, but the service has the translator: it can be registered.
    Available,
    /// Loading the snapshot: `loaded` of `total` records applied.
    Bootstrapping {
        /// Records applied.
        loaded: u64,
        /// Records in the snapshot.
        total: u64,
        /// The snapshot's journal seq.
        seq: u64,
    },
    /// Subscribed; reading from these positions (partition → next offset) onwards.
    Reading {
        /// The positions when the subscription started.
        positions: BTreeMap<i32, i64>,
        /// The seq of the snapshot it bootstrapped from, if it did.
        snapshot_seq: Option<u64>,
        /// True when the source was already registered and nothing was done.
        already: bool,
    },
    /// Not read: the events this consumer needs next are gone (retention, or the topic was
    /// recreated). The node keeps running without the source until the way out named in
    /// `error` is taken.
    NeedsRebuild {
        /// What is gone and what to do.
        error: String,
    },
    /// The registration stopped; the node keeps running without the source.
    Failed {
        /// Why, and what to do.
        error: String,
    },
}

impl Registration {
    /// The reading state at `positions` for `topic`.
    pub(crate) fn reading(topic: &str, positions: &OffsetMap, snapshot_seq: Option<u64>, already: bool) -> Self {
        Self::Reading {
            positions: positions
                .iter()
                .filter(|(t, _, _)| *t == topic)
                .map(|(_, p, o)| (p, o))
                .collect(),
            snapshot_seq,
            already,
        }
    }
}

/// What a registration request finds already done, from how the source's registration stands
/// (`now`) and whether the store holds an interrupted bootstrap of it; `None` when it starts one.
/// A running bootstrap is never replaced: a second snapshot would not fit the records the first
/// loaded, nor the resume marker a crash leaves. The simulator asks the same question.
pub fn admit(now: Option<Registration>, interrupted: bool) -> Option<Registered> {
    match now? {
        r @ Registration::Bootstrapping { .. } => Some(Registered::Running(r)),
        r @ Registration::Reading { .. } if !interrupted => Some(Registered::Already(r)),
        _ => None,
    }
}

/// Where `seam register --accept-gap` moves the positions in `topic`, from each partition's
/// `(low, high)` watermarks: to the log start wherever the stored position is outside the log
/// (or everywhere, for a recreated topic read whole). The simulator asks the same.
pub fn gap_moves(
    topic: &str,
    whole: bool,
    positions: &OffsetMap,
    marks: impl IntoIterator<Item = (i32, (i64, i64))>,
) -> Vec<(i32, i64)> {
    marks
        .into_iter()
        .filter(|(p, (low, high))| {
            let at = positions.position(topic, *p);
            whole || at < *low || at > *high
        })
        .map(|(p, (low, _))| (p, low))
        .collect()
}

/// The writer job that accepts a gap in `topic`: the positions move in one write, and for a
/// recreated topic the journal ids its old incarnation left are forgotten with them.
pub fn accept_gap_job(topic: String, moved: Vec<(i32, i64)>, whole: bool) -> writer::ExclusiveJob {
    Box::new(move |store, set| {
        for (p, offset) in &moved {
            set.set_position(&topic, *p, *offset);
        }
        if whole {
            for k in store.partition_journal_keys(&topic)? {
                set.stage_raw(k, None);
            }
        }
        Ok(())
    })
}

impl<S: Service> Node<S> {
    /// How the registration of `source` stands; for a source read since start, its positions;
    /// `None` when this build has no translator for it.
    pub fn registration(&self, source: &str) -> Result<Option<Registration>, RuntimeError> {
        let registrations = self
            .registrations
            .lock()
            .map_err(|_| RuntimeError::Panicked("registrations".into()))?;
        self.registration_of(source, &registrations)
    }

    /// [`Node::registration`] while the caller holds the registrations lock.
    fn registration_of(
        &self,
        source: &str,
        registrations: &BTreeMap<String, Registration>,
    ) -> Result<Option<Registration>, RuntimeError> {
        let topic = events_topic(source);
        if let Some(e) = self.rebuilds.get(&topic) {
            return Ok(Some(Registration::NeedsRebuild { error: e.to_string() }));
        }
        match registrations.get(source).cloned() {
            Some(Registration::Reading {
                snapshot_seq, already, ..
            }) => {
                let positions = self.store.positions()?;
                return Ok(Some(Registration::reading(&topic, &positions, snapshot_seq, already)));
            }
            Some(r) => return Ok(Some(r)),
            None => {}
        }
        if self.topics.borrow().contains(&topic) {
            return Ok(Some(Registration::reading(
                &topic,
                &self.store.positions()?,
                None,
                true,
            )));
        }
        let spare = self
            .spares
            .lock()
            .map(|s| s.iter().any(|t| t.source() == source))
            .unwrap_or(false);
        let added = self.pipeline.as_ref().is_some_and(|p| p.topics().contains(&topic));
        Ok((spare || added).then_some(Registration::Available))
    }

    /// Receives `source`'s snapshot (an upload) into a file next to the store and checks it
    /// whole, for [`Node::register`]; nothing is held in memory.
    pub async fn receive_snapshot<St, E>(&self, source: &str, chunks: St, limit: u64) -> Result<Arrival, RuntimeError>
    where
        St: futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        spool::receive(&self.store_dir, source, chunks, limit).await
    }

    /// Adds `source` to what this node reads, without a restart: bootstraps it from the snapshot
    /// (spooled first, so a crash resumes it), or checks the topic still starts at offset 0, then
    /// subscribes from exactly the resulting positions. Returns at once; [`Node::registration`]
    /// reports progress. A source already read is left alone, and while a bootstrap of it runs
    /// another request changes nothing: the check and the start are one step under one lock, so
    /// two requests never start two bootstraps or replace the snapshot being loaded.
    pub fn register(&self, source: &str, from: RegisterFrom) -> Result<Registered, RuntimeError> {
        let topic = events_topic(source);
        if let Some(e) = self.rebuilds.get(&topic) {
            return Err(RuntimeError::Refused(format!(
                "{} does not read {source} until it is rebuilt; a new registration would load a snapshot over what it holds. {e}",
                self.name
            )));
        }
        let mut registrations = self
            .registrations
            .lock()
            .map_err(|_| RuntimeError::Panicked("registrations".into()))?;
        let now = self.registration_of(source, &registrations)?;
        if let Some(done) = admit(now, self.store.bootstrap_marker(&topic)?.is_some()) {
            return Ok(done);
        }
        let pipeline = self.pipeline.clone().ok_or_else(|| {
            RuntimeError::Refused(format!(
                "{} takes in no foreign events; it has no translators",
                self.name
            ))
        })?;
        if !pipeline.topics().contains(&topic) {
            let mut spares = self
                .spares
                .lock()
                .map_err(|_| RuntimeError::Panicked("register".into()))?;
            let Some(i) = spares.iter().position(|t| t.source() == source) else {
                return Err(RuntimeError::Refused(format!(
                    "this build of {} has no translator for {source}; add the translator crate `{source}-to-{}` to the service and redeploy it",
                    self.name, self.name
                )));
            };
            pipeline.add(spares.remove(i))?;
        }
        let from = match from {
            RegisterFrom::Snapshot(arrival) => {
                if arrival.meta.service != source {
                    return Err(RuntimeError::Refused(format!(
                        "the snapshot is of {}, not of {source}",
                        arrival.meta.service
                    )));
                }
                Some(arrival.claim(&self.store_dir)?)
            }
            RegisterFrom::Beginning => None,
        };
        let status = Registration::Bootstrapping {
            loaded: 0,
            total: 0,
            seq: 0,
        };
        registrations.insert(source.to_string(), status.clone());
        drop(registrations);
        let set = {
            let source = source.to_string();
            let registrations = Arc::clone(&self.registrations);
            Arc::new(move |r: Registration| {
                if let Ok(mut all) = registrations.lock() {
                    all.insert(source.clone(), r);
                }
            })
        };
        let writer = self.writer.clone().ok_or(RuntimeError::WriterGone)?;
        let (name, source) = (self.name.clone(), source.to_string());
        let (store, registry, client) = (self.store.clone(), Arc::clone(&self.registry), self.client.clone());
        let (cancel, topics, store_dir) = (self.cancel.clone(), Arc::clone(&self.topics), self.store_dir.clone());
        let bootstrapped = Arc::clone(&self.bootstrapped);
        tokio::spawn(async move {
            let loaded = match &from {
                Some(path) => {
                    let progress = {
                        let set = Arc::clone(&set);
                        move |loaded, total, seq| set(Registration::Bootstrapping { loaded, total, seq })
                    };
                    bootstrap::run(
                        &name, &source, path, &store, &registry, &pipeline, &writer, &client, &cancel, &progress,
                    )
                    .await
                    .map(|meta| {
                        meta.map(|m| {
                            let seq = m.seq;
                            if let Ok(mut b) = bootstrapped.lock() {
                                b.insert(source.clone(), m);
                            }
                            seq
                        })
                    })
                }
                None => {
                    let (client, topic, store) = (client.clone(), topic.clone(), store.clone());
                    tokio::task::spawn_blocking(move || -> Result<Option<u64>, RuntimeError> {
                        let probe: BaseConsumer = client
                            .create()
                            .map_err(|e| RuntimeError::kafka("connecting".into(), e))?;
                        let partitions = retention::partitions_of(&probe, std::slice::from_ref(&topic))?;
                        retention::check(&probe, &partitions, &store.positions()?)?;
                        Ok(None)
                    })
                    .await
                    .unwrap_or_else(|_| Err(RuntimeError::Panicked("register-check".into())))
                }
            };
            drop(writer);
            match loaded.and_then(|seq| Ok((seq, store.positions()?))) {
                Ok((seq, positions)) => {
                    spool::unspool(&store_dir, &source, None);
                    topics.send_modify(|t| {
                        t.push(topic.clone());
                        t.sort();
                        t.dedup();
                    });
                    info!(service = %name, %topic, "registered; reading from the bootstrap's positions");
                    set(Registration::reading(&topic, &positions, seq, false));
                }
                Err(e) => {
                    bootstrap::give_up(&store_dir, &store, &source, &e);
                    error!(service = %name, %topic, error = %e, "registration failed");
                    set(Registration::Failed { error: e.to_string() });
                }
            }
        });
        Ok(Registered::Started(status))
    }

    /// Reads on from the log start of a source whose events this consumer needs were deleted
    /// (or whose topic was recreated), knowingly: the events in between are never taken in. For
    /// a consumer that keeps no replica of the source it could rebuild (`seam register
    /// --accept-gap`); the positions move in one write and the source is read again.
    pub async fn accept_gap(&self, source: &str) -> Result<Registration, RuntimeError> {
        let topic = events_topic(source);
        let Some(gap) = self.rebuilds.get(&topic) else {
            return Err(RuntimeError::Refused(format!(
                "{} has no gap to accept in {source}: it reads it (or has not registered it)",
                self.name
            )));
        };
        let (client, t, positions) = (self.client.clone(), topic.clone(), self.store.positions()?);
        // A trimmed log is read on from where it starts now; a recreated topic, whole.
        let whole = gap.recreated();
        let moved = tokio::task::spawn_blocking(move || -> Result<Vec<(i32, i64)>, RuntimeError> {
            let probe: BaseConsumer = client
                .create()
                .map_err(|e| RuntimeError::kafka("connecting".into(), e))?;
            let mut marks = Vec::new();
            for (_, p) in retention::partitions_of(&probe, std::slice::from_ref(&t))? {
                marks.push((p, watermarks::watermarks(&probe, &t, p)?));
            }
            Ok(gap_moves(&t, whole, &positions, marks))
        })
        .await
        .map_err(|_| RuntimeError::Panicked("accept-gap".into()))??;
        let writer = self.writer.clone().ok_or(RuntimeError::WriterGone)?;
        let (reply, answer) = oneshot::channel();
        writer
            .send(writer::Request::Exclusive {
                job: accept_gap_job(topic.clone(), moved, whole),
                reply,
            })
            .await
            .map_err(|_| RuntimeError::WriterGone)?;
        answer.await.map_err(|_| RuntimeError::WriterGone)??;
        tracing::warn!(service = %self.name, %topic, gap = %gap, "accepted the gap: reading on from the log start");
        self.rebuilds.done(&topic);
        Ok(Registration::reading(&topic, &self.store.positions()?, None, false))
    }
}
