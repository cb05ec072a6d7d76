//! `GET /snapshot`: the service's state as state-transfer events with the offset map it is
//! consistent with, written to a file while the writer holds still.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use tokio::sync::oneshot;

use super::{retention, watermarks, writer, Node, RuntimeError, SNAPSHOTS_DIR};
use crate::service::{ApplyError, Service};
use crate::translator::events_topic;

impl<S: Service> Node<S> {
    /// Exports the service's state as a snapshot with the offset map of its topic at exactly the
    /// same cut (invariant 5). Commits pause until the publisher has published through the
    /// snapshot's seq and the offsets are read; if the publisher does not get there within
    /// `deadline`, the snapshot fails (never a map past its state) and commits go on.
    pub async fn snapshot(&self, deadline: Duration) -> Result<crate::snapshot::Exported, RuntimeError> {
        let writer = self.writer.as_ref().ok_or(RuntimeError::WriterGone)?;
        let dir = self.store_dir.join(SNAPSHOTS_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::Store(format!("creating {}: {e}", dir.display())))?;
        let stem = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        // The export's records; removed however this ends.
        let spool = TempFile(dir.join(format!("{stem}.records")));
        let (reply, answer) = oneshot::channel();
        let (release, held) = oneshot::channel();
        writer
            .send(writer::Request::Snapshot {
                spool: spool.0.clone(),
                reply,
                release: held,
            })
            .await
            .map_err(|_| RuntimeError::WriterGone)?;
        let (seq, count) = answer
            .await
            .map_err(|_| RuntimeError::WriterGone)?
            .map_err(|e| match e {
                ApplyError::Store(e) => RuntimeError::Store(e.to_string()),
                ApplyError::Rejected(e) => RuntimeError::Unsupported(e),
                e => RuntimeError::Config(e.to_string()),
            })?;
        // Commits are held from here until `release` is sent or dropped (any early return).
        let mut published = self.published.clone();
        let reached = tokio::time::timeout(deadline, published.wait_for(|p| *p >= seq))
            .await
            .map(|r| r.is_ok());
        match reached {
            Ok(true) => {}
            Ok(false) => return Err(RuntimeError::WriterGone),
            Err(_) => {
                return Err(RuntimeError::Kafka {
                    what: "taking a snapshot".into(),
                    detail: format!(
                        "the publisher has not published through seq {seq} within {deadline:?} (it is at seq {}; is the registry or a broker down?); commits were held meanwhile and go on now; try again once it has caught up (`seam status` shows the backlog)",
                        *published.borrow()
                    ),
                })
            }
        }
        let topic = events_topic(&self.name);
        // The high watermark, not the last stable offset: every entry up to `seq` is committed,
        // but the markers of the last transaction may still be on their way and would hold the
        // stable offset back, so the map would point into data the snapshot already holds.
        let mut client = self.client.clone();
        client.set("isolation.level", "read_uncommitted");
        let t = topic.clone();
        let offsets = tokio::task::spawn_blocking(move || -> Result<crate::offsets::OffsetMap, RuntimeError> {
            let probe: BaseConsumer = client
                .create()
                .map_err(|e| RuntimeError::kafka("connecting".into(), e))?;
            let mut map = crate::offsets::OffsetMap::default();
            for (_, p) in retention::partitions_of(&probe, std::slice::from_ref(&t))? {
                let (_, high) = watermarks::watermarks(&probe, &t, p)?;
                map.set(&t, p, high);
            }
            Ok(map)
        })
        .await
        .map_err(|_| RuntimeError::Panicked("snapshot-offsets".into()))?;
        let _ = release.send(());
        let offsets = offsets?;
        // Commits go on; now the schema ids and the file.
        let mut ids: BTreeMap<String, u32> = BTreeMap::new();
        let mut schemas = BTreeMap::new();
        for r in self.catalog.records() {
            let id = self
                .registry
                .register(&topic, r)
                .await
                .map_err(|e| RuntimeError::Registry(e.to_string()))?;
            ids.insert(r.full_name.clone(), id);
            schemas.insert(id, r.source.clone());
        }
        let meta = crate::snapshot::SnapshotMeta {
            service: self.name.clone(),
            seq,
            offsets,
            created: crate::envelope::rfc3339(crate::envelope::now_ms()),
            schemas,
            records: count,
            journal: Some(self.store.journal_id().clone()),
        };
        let path = dir.join(format!("{stem}.avro"));
        let (raw, out, m) = (spool.0.clone(), path.clone(), meta.clone());
        tokio::task::spawn_blocking(move || write_snapshot(&raw, &out, &m, &ids))
            .await
            .map_err(|_| RuntimeError::Panicked("snapshot-write".into()))?
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&path);
            })?;
        Ok(crate::snapshot::Exported::new(meta, path))
    }
}

/// A file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes the snapshot file `out` from an export's spooled records, with its schema ids.
fn write_snapshot(
    raw: &std::path::Path,
    out: &std::path::Path,
    meta: &crate::snapshot::SnapshotMeta,
    ids: &BTreeMap<String, u32>,
) -> Result<(), RuntimeError> {
    let io = |e: std::io::Error| RuntimeError::Store(format!("writing the snapshot {}: {e}", out.display()));
    let file = std::fs::File::create(out).map_err(io)?;
    let mut writer = crate::snapshot::file::SnapshotWriter::new(std::io::BufWriter::new(file), meta)
        .map_err(|e| RuntimeError::Store(e.to_string()))?;
    for record in crate::snapshot::spool::RawReader::open(raw).map_err(io)? {
        let (subject, record, body) = record.map_err(io)?;
        let schema_id = *ids.get(&record).ok_or_else(|| {
            RuntimeError::Config(format!(
                "the snapshot emitted a {record} record, which is not in the service's catalog"
            ))
        })?;
        writer
            .append(&crate::snapshot::SnapshotRecord {
                subject,
                schema_id,
                body,
            })
            .map_err(|e| RuntimeError::Store(e.to_string()))?;
    }
    let file = writer
        .finish()
        .map_err(|e| RuntimeError::Store(e.to_string()))?
        .into_inner()
        .map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)
}
