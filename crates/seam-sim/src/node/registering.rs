//! Registering a source on a simulated node, both ways an operator can: `POST
//! /subscriptions/<source>` with a snapshot (`seam register`), or a start with `--bootstrap
//! SOURCE=URL`. The decisions are the runtime's own, on a real spool folder next to the node's
//! store: whether a request may start a bootstrap ([`register::admit`]), which snapshot a start
//! loads ([`spool::resume`]), receiving and claiming a snapshot ([`spool::receive`],
//! `Arrival::claim`), and the bootstrap itself ([`Load`]), a chunk per step. The spool folder
//! survives crashes (its files are synced before they count), the node's memory does not.

use std::path::{Path, PathBuf};

use seam::runtime::bootstrap::{self, Load, SnapshotSource};
use seam::runtime::register::{self, Registered};
use seam::runtime::{spool, Ready, Registration, RuntimeError};

use super::{Did, Env, Node, Up};
use seam::service::Service;
use seam::translator::events_topic;

/// Records per bootstrap chunk at most (small, so crashes land between chunks).
const MAX_CHUNK: usize = 4;

/// A bootstrap the node loads, a chunk per step.
pub(super) struct Booting {
    source: String,
    load: Load,
    /// Read from the snapshot and not yet handed to the writer (the registry may be out).
    pending: Vec<seam::runtime::RawEvent>,
    /// Whether the offset map was checked against the topic.
    checked: bool,
    /// Whether a start loads it (a refusal stops the start) or a registration request.
    at_start: bool,
}

/// A start that waits for its `--bootstrap` URL to answer before the node runs.
pub(super) struct Starting<S: Service> {
    pub(super) up: Up<S>,
    source: String,
    url: String,
    seq: Option<u64>,
}

/// The URL a start with `--bootstrap` downloads `source`'s snapshot from.
pub(crate) fn snapshot_url(source: &str) -> String {
    format!("http://{source}.sim/snapshot")
}

/// The node's store directory, where its spool folder is.
pub(super) fn store_dir(env: &Env<'_>, name: &str) -> PathBuf {
    env.dir.join(name)
}

/// A snapshot's bytes received the way the runtime receives an upload or a download.
pub(super) fn receive(env: &Env<'_>, dir: &Path, source: &str, snapshot: &[u8]) -> Result<spool::Arrival, String> {
    let chunk: Result<axum::body::Bytes, std::convert::Infallible> = Ok(axum::body::Bytes::from(snapshot.to_vec()));
    env.runtime
        .block_on(spool::receive(
            dir,
            source,
            futures_util::stream::iter([chunk]),
            spool::MAX_BYTES,
        ))
        .map_err(|e| e.to_string())
}

/// Opens `path` for loading `source` into `up`'s store: the bootstrap to step, or the source is
/// read already.
fn open_load<S: Service>(up: &mut Up<S>, source: &str, path: &Path, at_start: bool) -> Result<Option<Booting>, String> {
    let load = Load::open(&up.store, source, path).map_err(|e| e.to_string())?;
    Ok(load.map(|load| {
        up.registrations.insert(
            source.to_string(),
            Registration::Bootstrapping {
                loaded: load.loaded(),
                total: load.meta.records,
                seq: load.meta.seq,
            },
        );
        Booting {
            source: source.to_string(),
            load,
            pending: Vec::new(),
            checked: false,
            at_start,
        }
    }))
}

impl<S: Service> Node<S> {
    /// At a start: what the runtime's start does for each registered source, from the store's
    /// resume marker, the spool folder and the operator's `--bootstrap`. Returns the start
    /// waiting for a download, if one must.
    pub(super) fn resume_registrations(
        &mut self,
        env: &Env<'_>,
        mut up: Up<S>,
    ) -> Result<Result<Up<S>, Starting<S>>, String> {
        let dir = store_dir(env, self.spec.name);
        spool::sweep(&dir);
        for source in self.spec.registered {
            let topic = events_topic(source);
            let marker = up.store.bootstrap_marker(&topic).map_err(|e| e.to_string())?;
            let reads = up
                .store
                .positions()
                .map_err(|e| e.to_string())?
                .iter()
                .any(|(t, _, _)| t == topic);
            // A last chunk sent before the crash counts once the store says it was kept.
            let finished = self.finishing.take();
            if reads && marker.is_none() {
                if let Some((_, seq, map)) = finished {
                    self.loaded = Some((seq, map));
                }
                if !self.sources.contains(&topic) {
                    self.sources.push(topic.clone());
                }
            }
            match spool::resume(&dir, source, marker, reads, self.given.as_ref()) {
                spool::Resume::Nothing => {}
                spool::Resume::Load(path) => up.booting = open_load(&mut up, source, &path, true)?,
                spool::Resume::Download { url, seq } => {
                    return Ok(Err(Starting {
                        up,
                        source: source.to_string(),
                        url,
                        seq,
                    }))
                }
                spool::Resume::Lost(why) => return Err(why),
            }
        }
        Ok(Ok(up))
    }

    /// `POST /subscriptions/<source>` with `snapshot`: received into the spool folder, then
    /// claimed and loaded unless the runtime finds the request already done.
    pub(super) fn register_snapshot(&mut self, env: &mut Env<'_>, source: &str, snapshot: &[u8]) -> Did {
        let dir = store_dir(env, self.spec.name);
        // Down: the request fails (nothing is received).
        let Some(now) = self.registration_of(source) else {
            return "register: the consumer is down; the request fails".into();
        };
        let arrival = match receive(env, &dir, source, snapshot) {
            Ok(a) => a,
            Err(e) => return format!("register refused the upload: {e}"),
        };
        let topic = events_topic(source);
        let Some(up) = self.up.as_ref() else {
            return "down".into();
        };
        let interrupted = match up.store.bootstrap_marker(&topic) {
            Ok(m) => m.is_some(),
            Err(e) => return self.fail(format!("reading the bootstrap marker: {e}")),
        };
        if let Some(done) = register::admit(Some(now), interrupted) {
            let answer = match done {
                Registered::Running(_) => "409: a bootstrap of it runs",
                Registered::Already(_) => "200: already read",
                Registered::Started(_) => "202",
            };
            return format!(
                "register answered {answer}; the upload of seq {} is dropped",
                arrival.meta.seq
            );
        }
        let seq = arrival.meta.seq;
        let path = match arrival.claim(&dir) {
            Ok(p) => p,
            Err(e) => return self.fail(format!("claiming the snapshot: {e}")),
        };
        let Some(up) = self.up.as_mut() else {
            return "down".into();
        };
        match open_load(up, source, &path, false) {
            Ok(Some(booting)) => {
                up.booting = Some(booting);
                format!("register answered 202: bootstraps from the snapshot at seq {seq}")
            }
            Ok(None) => "register answered 200: already read".into(),
            Err(e) => {
                up.registrations
                    .insert(source.to_string(), Registration::Failed { error: e.clone() });
                format!("registration failed: {e}")
            }
        }
    }

    /// The answer of the URL a waiting start downloads from: spooled, checked against the
    /// interrupted bootstrap, and loaded; the node then runs.
    pub(super) fn deliver_snapshot(&mut self, env: &mut Env<'_>, snapshot: &[u8]) -> Did {
        let dir = store_dir(env, self.spec.name);
        let Some(Starting {
            mut up,
            source,
            url,
            seq,
        }) = self.starting.take()
        else {
            return "no start waits for a snapshot".into();
        };
        let arrival = match receive(env, &dir, &source, snapshot) {
            Ok(a) => a,
            Err(e) => return self.fail(format!("the start's download failed: {e}")),
        };
        if let Err(e) = spool::downloaded_fits(&source, &url, seq, &arrival) {
            return self.fail(format!("the start failed: {e}"));
        }
        let at = arrival.meta.seq;
        let path = match arrival.claim(&dir) {
            Ok(p) => p,
            Err(e) => return self.fail(format!("claiming the snapshot: {e}")),
        };
        match open_load(&mut up, &source, &path, true) {
            Ok(booting) => up.booting = booting,
            Err(e) => return self.fail(format!("the start failed: {e}")),
        }
        self.up = Some(up);
        format!("START downloaded the snapshot at seq {at} from {url}; bootstraps, then runs")
    }

    /// `seam serve --bootstrap SOURCE=URL`: the operator restarts the node with the flag.
    pub(super) fn set_bootstrap(&mut self, source: &str) {
        self.given = Some(SnapshotSource::Url(snapshot_url(source)));
    }

    /// How the registration of `source` stands, as `GET /subscriptions/<source>` answers.
    pub(super) fn registration_of(&self, source: &str) -> Option<Registration> {
        let up = self.up.as_ref()?;
        let topic = events_topic(source);
        if let Some(r) = up.registrations.get(source) {
            return Some(r.clone());
        }
        Some(if self.sources.contains(&topic) {
            Registration::Reading {
                positions: Default::default(),
                snapshot_seq: None,
                already: true,
            }
        } else {
            Registration::Available
        })
    }

    /// One step of the bootstrap the node loads: the last chunk's flush, the map check, or the
    /// next chunk. `None` when no bootstrap runs.
    pub(super) fn boot_step(&mut self, env: &mut Env<'_>) -> Option<Did> {
        let dir = store_dir(env, self.spec.name);
        let up = self.up.as_mut()?;
        if let Some(answer) = up.loading.as_mut() {
            match answer.poll() {
                None => return Some("bootstrap chunk waits for its flush".into()),
                Some(Some(Ok(()))) => up.loading = None,
                Some(Some(Err(e))) => return Some(self.fail(format!("a bootstrap chunk failed: {e}"))),
                Some(None) => return Some(self.fail("the writer dropped a bootstrap chunk".into())),
            }
            // The last chunk is durable: the source is read from the snapshot's offsets.
            if let Some((source, seq, map)) = self.finishing.take_if(|_| up.booting.is_none()) {
                let topic = events_topic(&source);
                spool::unspool(&dir, &source, None);
                if !self.sources.contains(&topic) {
                    self.sources.push(topic.clone());
                }
                up.consumer.started = false;
                up.registrations.insert(
                    source,
                    Registration::Reading {
                        positions: Default::default(),
                        snapshot_seq: Some(seq),
                        already: false,
                    },
                );
                self.loaded = Some((seq, map));
                return Some(format!("bootstrap done: reads {topic} from the snapshot's offsets"));
            }
        }
        let booting = up.booting.as_mut()?;
        let topic = booting.load.topic().to_string();
        if !booting.checked {
            // The retention guard checks the map before anything is loaded, as at every start.
            let Ok(partitions) = env.kafka.partitions(&topic) else {
                return Some("bootstrap waits for the cluster".into());
            };
            let mut refused = booting.load.covers(partitions as usize).err();
            for (t, partition, next) in booting.load.meta.offsets.iter() {
                if refused.is_some() {
                    break;
                }
                let Ok((low, high)) = env.kafka.watermarks(t, partition) else {
                    return Some("bootstrap waits for the cluster".into());
                };
                refused = seam::runtime::retention::verdict(t, partition, next, low, high)
                    .err()
                    .map(RuntimeError::Retention);
            }
            if let Some(why) = refused {
                let (source, at_start) = (booting.source.clone(), booting.at_start);
                up.booting = None;
                return Some(self.refuse_bootstrap(&dir, &source, why, at_start));
            }
            for (id, schema) in &booting.load.meta.schemas {
                if let Err(e) = up.registry.preload(*id, schema) {
                    return Some(self.fail(format!("preloading the snapshot's schemas: {e}")));
                }
            }
            booting.checked = true;
        }
        if booting.pending.is_empty() {
            match booting.load.chunk(1 + env.rng.below(MAX_CHUNK)) {
                Ok(events) => booting.pending = events,
                Err(e) => return Some(self.fail(format!("reading the spooled snapshot: {e}"))),
            }
        }
        let mut items = Vec::with_capacity(booting.pending.len());
        for event in &booting.pending {
            match up.pipeline.try_prepare(event) {
                Ok(Ready::Done(prepared)) => items.push((event.clone(), prepared)),
                Ok(Ready::Transient(_)) => return Some("bootstrap waits for the registry".into()),
                Err(e) => return Some(self.fail(format!("preparing a snapshot record: {e}"))),
            }
        }
        booting.pending.clear();
        let last = booting.load.is_last();
        let (marker, meta) = (booting.load.marker(), booting.load.meta.clone());
        let finish = last.then(|| booting.load.end());
        let source = booting.source.clone();
        up.registrations.insert(
            source.clone(),
            Registration::Bootstrapping {
                loaded: marker.1,
                total: meta.records,
                seq: meta.seq,
            },
        );
        match up.stepper.bootstrap(&topic, marker, items, finish) {
            Ok(answer) => {
                up.loading = Some(answer);
                if last {
                    up.booting = None;
                    self.finishing = Some((source, meta.seq, meta.offsets));
                }
                Some(format!(
                    "bootstrap loaded records up to {} of {}{}",
                    marker.1,
                    meta.records,
                    if last { " (last chunk)" } else { "" }
                ))
            }
            Err(e) => Some(self.fail(format!("the writer failed on a bootstrap chunk: {e}"))),
        }
    }

    /// The runtime refused to load a snapshot (its map is behind retention, or does not cover
    /// the topic), as the runtime's start and registration do: the registration fails and the
    /// node runs on without the source; a start the operator gave `--bootstrap` stops instead,
    /// and the operator starts it again without the flag.
    fn refuse_bootstrap(&mut self, dir: &Path, source: &str, why: RuntimeError, at_start: bool) -> Did {
        let Some(up) = self.up.as_mut() else {
            return "down".into();
        };
        let gave_up = bootstrap::give_up(dir, &up.store, source, &why);
        if at_start && self.given.take().is_some() {
            self.up = None;
            return format!("START refused the snapshot: {why}; the operator starts it without --bootstrap");
        }
        if at_start && !gave_up {
            return self.fail(format!("the start failed: {why}"));
        }
        up.registrations
            .insert(source.to_string(), Registration::Failed { error: why.to_string() });
        format!("registration failed: {why}")
    }
}
