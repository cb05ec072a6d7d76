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
    let marker = store.bootstrap_marker(&topic)?;
    let reads = store.positions()?.iter().any(|(t, _, _)| t == topic);
    if reads && marker.is_none() {
        info!(%service, %topic, "already reading from stored positions; no bootstrap");
        return Ok(None);
    }
    let records = {
        let (path, source) = (from.to_path_buf(), source.to_string());
        tokio::task::spawn_blocking(move || file::open(&path, Some(&source)))
            .await
            .map_err(|_| RuntimeError::Panicked("bootstrap-open".into()))?
            .map_err(|e| RuntimeError::Config(e.to_string()))?
    };
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
    // The retention guard checks the map first, and the map must cover the whole topic.
    {
        let (client, topic, map) = (client.clone(), topic.clone(), meta.offsets.clone());
        tokio::task::spawn_blocking(move || -> Result<(), RuntimeError> {
            let probe: BaseConsumer = client.create().map_err(|e| RuntimeError::kafka("connecting".into(), e))?;
            let partitions = retention::partitions_of(&probe, std::slice::from_ref(&topic))?;
            let covered = map.iter().count();
            if covered != partitions.len() {
                return Err(RuntimeError::Config(format!(
                    "the snapshot's offset map covers {covered} partitions of {topic}, but the topic has {}; export a new snapshot",
                    partitions.len()
                )));
            }
            retention::check(&probe, &partitions, &map)
        })
        .await
        .map_err(|_| RuntimeError::Panicked("bootstrap-check".into()))??;
    }
    for (id, schema) in &meta.schemas {
        registry
            .preload(*id, schema)
            .map_err(|e| RuntimeError::Config(e.to_string()))?;
    }
    let total = meta.records;
    let start = marker.map(|(_, next)| next).unwrap_or(0).min(total);
    info!(%service, %topic, seq = meta.seq, records = total, from = start, "bootstrapping from a snapshot");
    progress(start, total, meta.seq);
    let mut records = Some(records);
    let mut next = 0u64;
    loop {
        if cancel.is_cancelled() {
            return Err(RuntimeError::Cancelled);
        }
        let (p, c, tag, topic_name) = (
            Arc::clone(pipeline),
            cancel.clone(),
            format!("{source}@{}", meta.seq),
            topic.clone(),
        );
        let mut reading = records
            .take()
            .ok_or(RuntimeError::Panicked("bootstrap-reader".into()))?;
        let (reading, items, read_to) = tokio::task::spawn_blocking(move || {
            let mut items = Vec::new();
            let mut at = next;
            // Records before the resume point were applied before the crash: skip them.
            while at < start {
                match reading.next() {
                    Some(Ok(_)) => at += 1,
                    Some(Err(e)) => return (reading, Err(RuntimeError::Config(e.to_string())), at),
                    None => break,
                }
            }
            while items.len() < CHUNK {
                let record = match reading.next() {
                    Some(Ok(r)) => r,
                    Some(Err(e)) => return (reading, Err(RuntimeError::Config(e.to_string())), at),
                    None => break,
                };
                let raw = RawEvent {
                    topic: topic_name.clone(),
                    partition: -1,
                    offset: at as i64,
                    key: Some(record.subject.into_bytes()),
                    value: Some(wire::frame(record.schema_id, &record.body)),
                    headers: vec![(crate::dlq::SNAPSHOT_HEADER.into(), Some(tag.clone().into_bytes()))],
                };
                at += 1;
                match p.prepare(&raw, &c) {
                    Ok(prepared) => items.push(Inbound { raw, prepared }),
                    Err(e) => return (reading, Err(e), at),
                }
            }
            (reading, Ok(items), at)
        })
        .await
        .map_err(|_| RuntimeError::Panicked("bootstrap-prepare".into()))?;
        let items = items?;
        records = Some(reading);
        next = read_to;
        let finish = (next >= total).then(|| BootstrapEnd {
            positions: meta.offsets.clone(),
            covered: meta.journal.clone().map(|j| (j, meta.seq)),
        });
        let (reply, answer) = oneshot::channel();
        writer
            .send(Request::Bootstrap {
                topic: topic.clone(),
                marker: (meta.seq, next),
                items,
                finish: finish.clone(),
                reply,
            })
            .await
            .map_err(|_| RuntimeError::WriterGone)?;
        answer.await.map_err(|_| RuntimeError::WriterGone)??;
        progress(next, total, meta.seq);
        failpoint::hit("bootstrap.chunk");
        if finish.is_some() {
            break;
        }
    }
    info!(%service, %topic, seq = meta.seq, "bootstrap done; reading from the snapshot's offsets");
    Ok(Some(meta))
}
