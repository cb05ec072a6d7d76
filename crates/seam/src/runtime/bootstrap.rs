//! Bootstrap (seed 004, listing 1): a consumer with no position for a source loads the source's
//! snapshot through its translator and the normal apply path, then reads the topic from exactly
//! the snapshot's offset map. Chunks commit with a resume marker, and the last chunk stores the
//! offset map as positions in the same write, so a crash at any moment resumes without missing
//! or doubling anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::pipeline::{Pipeline, RawEvent};
use super::retention;
use super::writer::{BootstrapEnd, Inbound, Request};
use super::RuntimeError;
use crate::codec::{wire, Registry};
use crate::failpoint;
use crate::snapshot::{file, SnapshotMeta};
use crate::store::Store;
use crate::translator::events_topic;

/// Records per committed chunk.
const CHUNK: usize = 2000;

/// Where a consumer gets a source's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotSource {
    /// A snapshot file (`seam snapshot export`).
    File(PathBuf),
    /// A service's `GET /snapshot` URL.
    Url(String),
}

impl SnapshotSource {
    /// An http(s) URL, or else a file path: how flags and request bodies name a snapshot.
    pub fn parse(from: &str) -> Self {
        if is_url(from) {
            Self::Url(from.to_string())
        } else {
            Self::File(PathBuf::from(from))
        }
    }
}

/// Whether `text` is an http(s) URL rather than a path.
pub fn is_url(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://")
}

/// A bootstrap being loaded, a chunk at a time: the snapshot file open at the record to load
/// next, and the resume marker it writes. [`run`] drives it off the async workers; the simulator
/// steps it between its other parts. Opening it decides what a start or a registration does with
/// a store that may hold an interrupted bootstrap of the same source.
pub struct Load {
    topic: String,
    tag: String,
    records: file::Records<std::io::BufReader<std::fs::File>>,
    /// The snapshot's cut.
    pub meta: SnapshotMeta,
    /// Records read from the file so far (the next one's index).
    at: u64,
    /// Where the interrupted bootstrap stopped: records before it were applied already.
    start: u64,
}

impl Load {
    /// Opens the snapshot `from` of `source` for loading into `store`; `None` when the store
    /// reads the source already (a finished bootstrap leaves positions and no marker). A store
    /// holding a marker of another snapshot is refused: its loaded records and this snapshot's
    /// offset map would not fit together.
    pub fn open(store: &Store, source: &str, from: &Path) -> Result<Option<Self>, RuntimeError> {
        let topic = events_topic(source);
        let marker = store.bootstrap_marker(&topic)?;
        let reads = store.positions()?.iter().any(|(t, _, _)| t == topic);
        if reads && marker.is_none() {
            return Ok(None);
        }
        let records = file::open(from, Some(source)).map_err(|e| RuntimeError::Config(e.to_string()))?;
        let meta = records.meta.clone();
        if let Some((seq, _)) = marker {
            if seq != meta.seq {
                return Err(RuntimeError::Config(format!(
                    "a bootstrap of {topic} from the snapshot at seq {seq} was interrupted; finish it with that same snapshot ({} is at seq {})",
                    from.display(),
                    meta.seq
                )));
            }
        }
        Ok(Some(Self {
            tag: format!("{source}@{}", meta.seq),
            start: marker.map_or(0, |(_, next)| next).min(meta.records),
            at: 0,
            topic,
            records,
            meta,
        }))
    }

    /// The topic it fills.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Records already loaded (by an earlier incarnation, or by earlier chunks).
    pub fn loaded(&self) -> u64 {
        self.at.max(self.start)
    }

    /// Refuses an offset map that does not cover each of the topic's `partitions`: a consumer
    /// reading on from it would skip a partition's events or never read one at all.
    pub fn covers(&self, partitions: usize) -> Result<(), RuntimeError> {
        let covered = self.meta.offsets.iter().count();
        if covered != partitions {
            return Err(RuntimeError::Config(format!(
                "the snapshot's offset map covers {covered} partitions of {}, but the topic has {partitions}; export a new snapshot",
                self.topic
            )));
        }
        Ok(())
    }

    /// The next `max` records as events of the topic (at most; none once all are loaded), framed
    /// with their writer schema and tagged with the snapshot, ready to decode and translate.
    pub fn chunk(&mut self, max: usize) -> Result<Vec<RawEvent>, RuntimeError> {
        let bad = |e: file::SnapshotError| RuntimeError::Config(e.to_string());
        // Records before the resume point were applied before the crash: skip them.
        while self.at < self.start {
            match self.records.next() {
                Some(record) => {
                    record.map_err(bad)?;
                    self.at += 1;
                }
                None => break,
            }
        }
        let mut events = Vec::new();
        while events.len() < max {
            let Some(record) = self.records.next() else { break };
            let record = record.map_err(bad)?;
            events.push(snapshot_event(&self.topic, &self.tag, self.at, record));
            self.at += 1;
        }
        Ok(events)
    }

    /// The resume marker a chunk ending here writes: the snapshot's seq and the next record.
    pub fn marker(&self) -> (u64, u64) {
        (self.meta.seq, self.loaded())
    }

    /// Whether every record was read: the chunk ending here is the last and stores the map.
    pub fn is_last(&self) -> bool {
        self.loaded() >= self.meta.records
    }

    /// What the last chunk stores with its records: the offset map as positions and the source
    /// journal the snapshot covers.
    pub fn end(&self) -> (crate::offsets::OffsetMap, Option<(crate::store::JournalId, u64)>) {
        (
            self.meta.offsets.clone(),
            self.meta.journal.clone().map(|j| (j, self.meta.seq)),
        )
    }
}

/// The `index`-th record of the snapshot `tag` (`<source>@<seq>`) as an event of `topic`: framed
/// with its writer schema, at partition -1 (no Kafka coordinates) and tagged with the snapshot,
/// ready to decode and translate like one read from the topic.
pub fn snapshot_event(topic: &str, tag: &str, index: u64, record: crate::snapshot::SnapshotRecord) -> RawEvent {
    RawEvent {
        topic: topic.to_string(),
        partition: -1,
        offset: index as i64,
        key: Some(record.subject.into_bytes()),
        value: Some(wire::frame(record.schema_id, &record.body)),
        headers: vec![(crate::dlq::SNAPSHOT_HEADER.into(), Some(tag.as_bytes().to_vec()))].into(),
    }
}

/// After a bootstrap of `source` failed with `error`: one refused before it loaded anything (its
/// map behind retention or short of partitions, a file that does not read) can never load, so
/// its spooled copy is removed and no later start tries it again. Returns whether it was such a
/// refusal; anything else (a shutdown, an interrupted bootstrap) keeps the copy to resume from.
pub fn give_up(store_dir: &Path, store: &Store, source: &str, error: &RuntimeError) -> bool {
    let refused = matches!(error, RuntimeError::Config(_) | RuntimeError::Retention(_));
    let loaded = !matches!(store.bootstrap_marker(&events_topic(source)), Ok(None));
    if refused && !loaded {
        super::spool::unspool(store_dir, source, None);
    }
    refused && !loaded
}

/// Bootstraps `source` from the snapshot file `from` unless the store already reads it; returns
/// the snapshot's cut if it did. Records are read from the file a chunk at a time (a snapshot
/// never sits in memory whole), each chunk decoded and translated off the async workers and
/// applied with the resume marker in one write.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<C: Send + 'static>(
    service: &str,
    source: &str,
    from: &Path,
    store: &Store,
    registry: &Registry,
    pipeline: &Arc<Pipeline<C>>,
    writer: &mpsc::Sender<Request<C>>,
    client: &ClientConfig,
    cancel: &CancellationToken,
    progress: &(dyn Fn(u64, u64, u64) + Send + Sync),
) -> Result<Option<SnapshotMeta>, RuntimeError> {
    let topic = events_topic(source);
    let load = {
        let (store, path, source) = (store.clone(), from.to_path_buf(), source.to_string());
        tokio::task::spawn_blocking(move || Load::open(&store, &source, &path))
            .await
            .map_err(|_| RuntimeError::Panicked("bootstrap-open".into()))??
    };
    let Some(load) = load else {
        info!(%service, %topic, "already reading from stored positions; no bootstrap");
        return Ok(None);
    };
    let meta = load.meta.clone();
    // The retention guard checks the map first, and the map must cover the whole topic.
    let mut load = {
        let (client, topic) = (client.clone(), topic.clone());
        tokio::task::spawn_blocking(move || -> Result<Load, RuntimeError> {
            let probe: BaseConsumer = client
                .create()
                .map_err(|e| RuntimeError::kafka("connecting".into(), e))?;
            let partitions = retention::partitions_of(&probe, std::slice::from_ref(&topic))?;
            load.covers(partitions.len())?;
            retention::check(&probe, &partitions, &load.meta.offsets)?;
            Ok(load)
        })
        .await
        .map_err(|_| RuntimeError::Panicked("bootstrap-check".into()))??
    };
    for (id, schema) in &meta.schemas {
        registry
            .preload(*id, schema)
            .map_err(|e| RuntimeError::Config(e.to_string()))?;
    }
    let total = meta.records;
    info!(%service, %topic, seq = meta.seq, records = total, from = load.loaded(), "bootstrapping from a snapshot");
    progress(load.loaded(), total, meta.seq);
    loop {
        if cancel.is_cancelled() {
            return Err(RuntimeError::Cancelled);
        }
        let (p, c) = (Arc::clone(pipeline), cancel.clone());
        let (back, items) = tokio::task::spawn_blocking(move || {
            let items = load.chunk(CHUNK).and_then(|events| {
                events
                    .into_iter()
                    .map(|raw| p.prepare(&raw, &c).map(|prepared| Inbound { raw, prepared }))
                    .collect::<Result<Vec<_>, _>>()
            });
            (load, items)
        })
        .await
        .map_err(|_| RuntimeError::Panicked("bootstrap-prepare".into()))?;
        load = back;
        let items = items?;
        let finish = load.is_last().then(|| {
            let (positions, covered) = load.end();
            BootstrapEnd { positions, covered }
        });
        let last = finish.is_some();
        let (reply, answer) = oneshot::channel();
        writer
            .send(Request::Bootstrap {
                topic: topic.clone(),
                marker: load.marker(),
                items,
                finish,
                reply,
            })
            .await
            .map_err(|_| RuntimeError::WriterGone)?;
        answer.await.map_err(|_| RuntimeError::WriterGone)??;
        progress(load.loaded(), total, meta.seq);
        failpoint::hit("bootstrap.chunk");
        if last {
            break;
        }
    }
    info!(%service, %topic, seq = meta.seq, "bootstrap done; reading from the snapshot's offsets");
    Ok(Some(meta))
}
