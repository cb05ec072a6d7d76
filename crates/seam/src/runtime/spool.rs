//! Snapshots kept next to the store while a bootstrap loads them, so a crash at any moment
//! resumes the same bootstrap at the next start instead of needing the snapshot again (whose
//! source has moved on by then).
//!
//! A snapshot arrives (an HTTP upload, or a download from a source's `GET /snapshot`) as an
//! [`Arrival`]: written to a file of its own, synced, and checked whole by reading every record,
//! never held in memory. It becomes the spooled snapshot only when a registration claims it:
//! renamed to `seam-bootstrap/<source>@<seq>.avro` and the folder synced. The resume marker
//! stores the seq, so a start finds exactly the copy its interrupted bootstrap was loading;
//! arrivals nobody claimed (a refused registration, a crash) are removed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::snapshot::{file, SnapshotMeta};

use super::bootstrap::SnapshotSource;
use super::RuntimeError;

/// Spooled snapshots larger than this are refused (the store's disk is the limit that matters).
pub const MAX_BYTES: u64 = 64 << 30;

/// The folder holding snapshots of bootstraps in progress, inside the store directory.
pub fn dir(store_dir: &Path) -> PathBuf {
    store_dir.join("seam-bootstrap")
}

/// The spooled snapshot of `source` at `seq`.
pub fn spooled(store_dir: &Path, source: &str, seq: u64) -> PathBuf {
    dir(store_dir).join(format!("{source}@{seq}.avro"))
}

/// Every spooled snapshot of `source`, by seq.
pub fn spools(store_dir: &Path, source: &str) -> BTreeMap<u64, PathBuf> {
    let prefix = format!("{source}@");
    std::fs::read_dir(dir(store_dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let seq = name.strip_prefix(&prefix)?.strip_suffix(".avro")?.parse().ok()?;
            Some((seq, entry.path()))
        })
        .collect()
}

/// Removes every spooled snapshot of `source` but the one at `keep`.
pub fn unspool(store_dir: &Path, source: &str, keep: Option<u64>) {
    for (seq, path) in spools(store_dir, source) {
        if Some(seq) != keep {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Removes arrivals no registration claimed (left by a crash).
pub fn sweep(store_dir: &Path) {
    for entry in std::fs::read_dir(dir(store_dir)).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "arriving") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// What a start does about a source's bootstrap: the decision of [`resume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Nothing to load: the source is read from its stored positions, or was never registered.
    Nothing,
    /// Load this file: the spooled copy of the interrupted (or claimed) bootstrap, or a given file.
    Load(PathBuf),
    /// Download the snapshot from this URL and spool it first; when `seq` is set, an interrupted
    /// bootstrap needs exactly that snapshot, and any other is refused.
    Download {
        /// The source's `GET /snapshot`.
        url: String,
        /// The seq of the interrupted bootstrap, if one was.
        seq: Option<u64>,
    },
    /// The interrupted bootstrap's snapshot is nowhere: the start stops with this message.
    Lost(String),
}

/// Decides, at a start, which snapshot the bootstrap of `source` loads, from the store's resume
/// marker, whether the store reads the source, the spooled copies and the snapshot the operator
/// gave (`--bootstrap`). An interrupted bootstrap resumes from the spooled copy at its seq, so a
/// URL that serves a newer snapshot by now is not asked again. Spools of a source that is read
/// are removed.
pub fn resume(
    store_dir: &Path,
    source: &str,
    marker: Option<(u64, u64)>,
    reads: bool,
    given: Option<&SnapshotSource>,
) -> Resume {
    let topic = crate::translator::events_topic(source);
    if reads && marker.is_none() {
        unspool(store_dir, source, None);
        return Resume::Nothing;
    }
    let spools = spools(store_dir, source);
    match (marker, given) {
        (Some((seq, _)), _) if spools.contains_key(&seq) => Resume::Load(spools[&seq].clone()),
        (Some(_), Some(SnapshotSource::File(path))) => Resume::Load(path.clone()),
        (Some((seq, _)), Some(SnapshotSource::Url(url))) => Resume::Download {
            url: url.clone(),
            seq: Some(seq),
        },
        (Some((seq, _)), None) => Resume::Lost(format!(
            "the bootstrap of {topic} from the snapshot at seq {seq} was interrupted and its spooled copy {} is gone; start with the same snapshot (`--bootstrap {source}=FILE`)",
            spooled(store_dir, source, seq).display()
        )),
        (None, Some(SnapshotSource::File(path))) => Resume::Load(path.clone()),
        (None, Some(SnapshotSource::Url(url))) => Resume::Download {
            url: url.clone(),
            seq: None,
        },
        // A registration claimed this before the crash; the newest one wins.
        (None, None) => spools.values().next_back().cloned().map_or(Resume::Nothing, Resume::Load),
    }
}

/// Refuses a downloaded snapshot that cannot finish the interrupted bootstrap at `seq`.
pub fn downloaded_fits(source: &str, url: &str, seq: Option<u64>, arrival: &Arrival) -> Result<(), RuntimeError> {
    match seq {
        Some(seq) if arrival.meta.seq != seq => Err(RuntimeError::Config(format!(
            "the bootstrap of {} from the snapshot at seq {seq} was interrupted and its spooled copy is gone; {url} now serves seq {}; start with that same snapshot (`--bootstrap {source}=FILE`)",
            crate::translator::events_topic(source),
            arrival.meta.seq
        ))),
        _ => Ok(()),
    }
}

fn io(source: &str) -> impl Fn(std::io::Error) -> RuntimeError + '_ {
    move |e| RuntimeError::Store(format!("spooling the snapshot of {source}: {e}"))
}

/// A snapshot of `source` received whole and checked, not yet the spooled one. Dropped
/// unclaimed, its file is removed.
#[derive(Debug)]
pub struct Arrival {
    path: PathBuf,
    /// Its cut.
    pub meta: SnapshotMeta,
    claimed: bool,
}

impl Arrival {
    /// Makes it the spooled snapshot of its source: replaces a copy at the same seq and removes
    /// those at other seqs (only the snapshot a bootstrap loads is kept).
    pub fn claim(mut self, store_dir: &Path) -> Result<PathBuf, RuntimeError> {
        let source = self.meta.service.clone();
        let to = spooled(store_dir, &source, self.meta.seq);
        std::fs::rename(&self.path, &to).map_err(io(&source))?;
        sync_dir(&dir(store_dir)).map_err(io(&source))?;
        self.claimed = true;
        unspool(store_dir, &source, Some(self.meta.seq));
        Ok(to)
    }
}

impl Drop for Arrival {
    fn drop(&mut self) {
        if !self.claimed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes a rename or a new file in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Receives a snapshot of `source` from `chunks` (an upload or a download) into a file next to
/// the store, syncs it and checks it whole; refuses more than `limit` bytes.
pub async fn receive<S, E>(store_dir: &Path, source: &str, mut chunks: S, limit: u64) -> Result<Arrival, RuntimeError>
where
    S: futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    use futures_util::StreamExt;
    let folder = dir(store_dir);
    std::fs::create_dir_all(&folder).map_err(io(source))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let path = folder.join(format!("{source}.{}-{nanos}.arriving", std::process::id()));
    let mut arrival = Arrival {
        path: path.clone(),
        meta: SnapshotMeta {
            service: source.to_string(),
            seq: 0,
            offsets: Default::default(),
            created: String::new(),
            schemas: BTreeMap::new(),
            records: 0,
            journal: None,
        },
        claimed: false,
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io(source))?);
    let mut written = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| RuntimeError::BadRequest(format!("receiving the snapshot of {source}: {e}")))?;
        written += chunk.len() as u64;
        if written > limit {
            return Err(RuntimeError::BadRequest(format!(
                "the snapshot of {source} is larger than {limit} bytes, the most this service spools"
            )));
        }
        out.write_all(&chunk).map_err(io(source))?;
    }
    let file = out.into_inner().map_err(|e| io(source)(e.into_error()))?;
    file.sync_all().map_err(io(source))?;
    drop(file);
    let (check_path, expected) = (path.clone(), source.to_string());
    arrival.meta = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&check_path)?;
        Ok::<_, std::io::Error>(file::check(
            std::io::BufReader::new(f),
            "the received snapshot",
            Some(&expected),
        ))
    })
    .await
    .map_err(|_| RuntimeError::Panicked("snapshot-check".into()))?
    .map_err(io(source))?
    .map_err(|e| RuntimeError::BadRequest(e.to_string()))?;
    Ok(arrival)
}

/// Downloads `source`'s snapshot from `url` (its `GET /snapshot`) into an arrival.
pub(crate) async fn download(store_dir: &Path, source: &str, url: &str) -> Result<Arrival, RuntimeError> {
    let fetch = |e: reqwest::Error| RuntimeError::Config(format!("cannot fetch the snapshot from {url}: {e}"));
    let response = reqwest::get(url).await.map_err(fetch)?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(RuntimeError::Config(format!(
            "{url} answered {status} instead of a snapshot: {body}"
        )));
    }
    let chunks = futures_util::stream::unfold(response, |mut r| async move {
        match r.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), r)),
            Ok(None) => None,
            Err(e) => Some((Err(e), r)),
        }
    });
    receive(store_dir, source, Box::pin(chunks), MAX_BYTES).await
}
