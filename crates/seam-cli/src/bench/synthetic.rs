//! The services the benchmarks run: a source that records items (one per subject, overwritten
//! by later ones, exportable as a snapshot) and a copy consumer whose translator decodes every
//! item and applies it into its own model, emitting one event per item. No domain: just the
//! shape of a real translator's work (decode, map, read-modify-write, emit) at a chosen size.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use seam::codec::Catalog;
use seam::service::{Apply, ApplyError, Event, Service, SnapshotOut};
use seam::translator::{ForeignEvent, TranslateError, Translator};

/// The source's event.
pub const ITEM: &str = "seam.bench.Item";
/// The copy's event.
pub const COPIED: &str = "seam.bench.Copied";

const ITEM_SCHEMA: &str = r#"{"type":"record","name":"Item","namespace":"seam.bench","fields":[{"name":"subject","type":"string"},{"name":"seq","type":"long"},{"name":"sent_us","type":"long"},{"name":"payload","type":"string"}]}"#;
const COPIED_SCHEMA: &str = r#"{"type":"record","name":"Copied","namespace":"seam.bench","fields":[{"name":"subject","type":"string"},{"name":"seq","type":"long"},{"name":"bytes","type":"int"}]}"#;

/// One item: `payload` sets the record's size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Subject (Kafka key).
    pub subject: String,
    /// Sequence number within the run.
    pub seq: i64,
    /// Microseconds since the epoch when it was sent (latency runs).
    pub sent_us: i64,
    /// Filler.
    pub payload: String,
}

impl Event for Item {
    const RECORD: &'static str = ITEM;
}

/// What the copy emits per item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Copied {
    /// Subject.
    pub subject: String,
    /// The item's seq.
    pub seq: i64,
    /// The item's payload length.
    pub bytes: i32,
}

impl Event for Copied {
    const RECORD: &'static str = COPIED;
}

/// The source's catalog.
pub fn source_catalog() -> Result<Catalog, seam::codec::CatalogError> {
    Catalog::from_sources([("Item.avsc", ITEM_SCHEMA)])
}

/// The copy's catalog.
pub fn copy_catalog() -> Result<Catalog, seam::codec::CatalogError> {
    Catalog::from_sources([("Copied.avsc", COPIED_SCHEMA)])
}

/// An item with a payload of `size` bytes.
pub fn item(subject: String, seq: i64, size: usize) -> Item {
    Item {
        subject,
        seq,
        sent_us: now_us(),
        payload: "x".repeat(size),
    }
}

/// Microseconds since the epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The source service: keeps the latest item per subject and emits each.
#[derive(Debug, Default)]
pub struct Source;

impl Service for Source {
    type Command = Item;

    fn apply(&self, ctx: &mut Apply<'_>, item: &Item) -> Result<(), ApplyError> {
        ctx.put(&format!("item/{}", item.subject), item)?;
        ctx.emit(&item.subject, item)?;
        Ok(())
    }

    fn snapshot(&self, out: &mut SnapshotOut<'_>) -> Result<(), ApplyError> {
        for entry in out.scan::<Item>("item/")? {
            let (_, item) = entry?;
            out.emit(&item.subject.clone(), &item)?;
        }
        Ok(())
    }
}

/// The copy's command.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyItem {
    /// Subject.
    pub subject: String,
    /// The item's seq.
    pub seq: i64,
    /// When the item was sent.
    pub sent_us: i64,
    /// Payload length.
    pub bytes: i32,
}

/// What the copy keeps per subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Copy {
    /// Latest seq.
    pub seq: i64,
    /// Its payload length.
    pub bytes: i32,
}

/// The copy consumer; with `latencies`, every apply records microseconds since the item was sent.
#[derive(Debug, Default)]
pub struct CopyService {
    /// Send → apply latencies, µs.
    pub latencies: Option<Arc<Mutex<Vec<i64>>>>,
    /// The source whose items `copy/` replicates, for `seam replay` (leaked once per run: a
    /// replica names its sources statically).
    pub replica_of: Option<&'static [&'static str]>,
    /// Emits nothing: the latency case whose consumer does no more than the bare echo.
    pub silent: bool,
}

impl CopyService {
    /// A copy whose `copy/` keys are a replica of `source`.
    pub fn replicating(source: &str) -> Self {
        Self {
            latencies: None,
            silent: false,
            replica_of: Some(Box::leak(Box::new([&*Box::leak(source.to_string().into_boxed_str())]))),
        }
    }
}

impl Service for CopyService {
    type Command = CopyItem;

    fn apply(&self, ctx: &mut Apply<'_>, c: &CopyItem) -> Result<(), ApplyError> {
        // Read-modify-write, as a real model does: a later seq wins, an earlier one is kept out.
        let key = format!("copy/{}", c.subject);
        if ctx.get::<Copy>(&key)?.is_some_and(|old| old.seq > c.seq) {
            return Ok(());
        }
        ctx.put(
            &key,
            &Copy {
                seq: c.seq,
                bytes: c.bytes,
            },
        )?;
        if !self.silent {
            ctx.emit(
                &c.subject,
                &Copied {
                    subject: c.subject.clone(),
                    seq: c.seq,
                    bytes: c.bytes,
                },
            )?;
        }
        if let Some(l) = &self.latencies {
            if let Ok(mut v) = l.lock() {
                v.push(now_us() - c.sent_us);
            }
        }
        Ok(())
    }

    fn replicas(&self) -> Vec<seam::service::Replica> {
        self.replica_of
            .map(|sources| seam::service::Replica {
                prefix: "copy/",
                sources,
            })
            .into_iter()
            .collect()
    }
}

/// source → copy: decodes the whole item through its reader schema.
#[derive(Debug)]
pub struct ItemToCopy {
    /// The source service's name.
    pub source: String,
}

impl Translator<CopyItem> for ItemToCopy {
    fn source(&self) -> &str {
        &self.source
    }

    fn reader_schemas(&self) -> Vec<(&'static str, &'static str)> {
        vec![(ITEM, ITEM_SCHEMA)]
    }

    fn translate(&self, event: &ForeignEvent) -> Result<Vec<CopyItem>, TranslateError> {
        let item: Item = event.payload()?;
        Ok(vec![CopyItem {
            subject: item.subject,
            seq: item.seq,
            sent_us: item.sent_us,
            bytes: item.payload.len() as i32,
        }])
    }
}
