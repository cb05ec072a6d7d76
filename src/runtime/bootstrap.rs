//! Bootstrap (seed 004, listing 1): a consumer with no position for a source loads the source's
//! snapshot through its translator and the normal apply path, then reads the topic from exactly
//! the snapshot's offset map. Chunks commit with a resume marker, and the last chunk stores the
//! offset map as positions in the same write, so a crash at any moment resumes without missing
//! or doubling anything.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::pipeline::{Pipeline, RawEvent};
use super::retention;
use super::writer::{Inbound, Request};
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

async fn load(source: &str, from: &SnapshotSource) -> Result<(SnapshotMeta, Vec<file::SnapshotRecord>), RuntimeError> {
    let config = |e: crate::snapshot::SnapshotError| RuntimeError::Config(e.to_string());
    match from {
        SnapshotSource::File(path) => {
            let what = path.display().to_string();
            let f = std::fs::File::open(path)
                .map_err(|e| RuntimeError::Config(format!("cannot open snapshot {what}: {e}")))?;
            file::read(std::io::BufReader::new(f), &what, Some(source)).map_err(config)
        }
        SnapshotSource::Url(url) => {
            let fetch = |e: reqwest::Error| RuntimeError::Config(format!("cannot fetch the snapshot from {url}: {e}"));
            let response = reqwest::get(url).await.map_err(fetch)?;
            if !response.status().is_success() {
                return Err(RuntimeError::Config(format!(
                    "{url} answered {} instead of a snapshot",
                    response.status()
                )));
            }
            let bytes = response.bytes().await.map_err(fetch)?;
            file::read(bytes.as_ref(), url, Some(source)).map_err(config)
        }
    }
}

/// Bootstraps `source` unless the store already reads it; returns the snapshot's cut if it did.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<C: Send + 'static>(
    service: &str,
    source: &str,
    from: &SnapshotSource,
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
    let (meta, records) = load(source, from).await?;
    if let Some((seq, _)) = marker {
        if seq != meta.seq {
            return Err(RuntimeError::Config(format!(
                "a bootstrap of {topic} from the snapshot at seq {seq} was interrupted; finish it with that same snapshot (this one is at seq {})",
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
    let start = marker.map(|(_, next)| next as usize).unwrap_or(0).min(records.len());
    info!(%service, %topic, seq = meta.seq, records = records.len(), from = start, "bootstrapping from a snapshot");
    let total = records.len() as u64;
    progress(start as u64, total, meta.seq);
    let mut next = start;
    loop {
        if cancel.is_cancelled() {
            return Err(RuntimeError::Cancelled);
        }
        let end = (next + CHUNK).min(records.len());
        let chunk: Vec<RawEvent> = records[next..end]
            .iter()
            .enumerate()
            .map(|(i, r)| RawEvent {
                topic: topic.clone(),
                partition: -1,
                offset: (next + i) as i64,
                key: Some(r.subject.clone().into_bytes()),
                value: Some(wire::frame(r.schema_id, &r.body)),
                headers: vec![(
                    crate::dlq::SNAPSHOT_HEADER.into(),
                    Some(format!("{source}@{}", meta.seq).into_bytes()),
                )],
            })
            .collect();
        let (p, c) = (Arc::clone(pipeline), cancel.clone());
        let items = tokio::task::spawn_blocking(move || {
            chunk
                .into_iter()
                .map(|raw| p.prepare(&raw, &c).map(|prepared| Inbound { raw, prepared }))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|_| RuntimeError::Panicked("bootstrap-prepare".into()))??;
        let finish = (end == records.len()).then(|| meta.offsets.clone());
        let (reply, answer) = oneshot::channel();
        writer
            .send(Request::Bootstrap {
                topic: topic.clone(),
                marker: (meta.seq, end as u64),
                items,
                finish: finish.clone(),
                reply,
            })
            .await
            .map_err(|_| RuntimeError::WriterGone)?;
        answer.await.map_err(|_| RuntimeError::WriterGone)??;
        progress(end as u64, total, meta.seq);
        failpoint::hit("bootstrap.chunk");
        if finish.is_some() {
            break;
        }
        next = end;
        tokio::time::sleep(Duration::ZERO).await;
    }
    info!(%service, %topic, seq = meta.seq, "bootstrap done; reading from the snapshot's offsets");
    Ok(Some(meta))
}
