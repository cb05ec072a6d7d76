//! Which schema wrote each journal entry, and its registry id.
//!
//! A binary upgraded with a changed `.avsc` still has entries written by the one before it in its
//! journal (unpublished ones, after a crash; all of them, for getEvents). Framing those with the
//! current catalog's schema id makes every consumer misread them. Each entry names its writer
//! schema by fingerprint and the store keeps the text of every schema it wrote with, so the
//! publisher and getEvents read and frame an entry with its own schema, registering it again
//! where the registry does not know it (a rollback to an older binary).
//!
//! Entries written before seam recorded the fingerprint are matched against the schemas the
//! registry has under their subject, newest first: the first whose decoding consumes the body
//! exactly wrote it (an added field leaves a body short or long for the other schema).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::Schema;
use thiserror::Error;
use tracing::{error, warn};

use crate::codec::catalog::fingerprint;
use crate::codec::{Catalog, Registry, RegistryError};
use crate::fault::{Class, Classify};
use crate::store::{JournalEntry, Store, StoreError};

/// Why an entry's writer schema or id could not be found.
#[derive(Debug, Error)]
pub enum JournalSchemaError {
    /// The registry failed or refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The entry names a schema this store never recorded: the store was edited or is damaged.
    #[error(
        "journal entry {seq} ({record}) was written with schema {fingerprint:016x}, which this store does not hold; \
         the store is damaged or was copied without its writer schemas"
    )]
    Unknown {
        /// The entry's seq.
        seq: u64,
        /// Its record.
        record: String,
        /// The fingerprint it names.
        fingerprint: u64,
    },
    /// A schema text the store or registry holds does not parse.
    #[error("the writer schema of {record} does not parse: {detail}")]
    BadSchema {
        /// The record.
        record: String,
        /// The parser's message.
        detail: String,
    },
}

impl Classify for JournalSchemaError {
    fn class(&self) -> Class {
        match self {
            Self::Registry(e) => e.class(),
            Self::Store(_) | Self::Unknown { .. } | Self::BadSchema { .. } => Class::Fatal,
        }
    }
}

/// One schema that wrote journal entries.
#[derive(Debug)]
pub struct WriterSchema {
    /// Its fingerprint.
    pub fingerprint: u64,
    /// Full name of its record.
    pub full_name: String,
    /// Its text, as registered.
    pub text: String,
    /// The parsed schema.
    pub schema: Schema,
    id: OnceLock<u32>,
}

impl WriterSchema {
    fn parse(text: &str) -> Result<Self, JournalSchemaError> {
        let schema = Schema::parse_str(text).map_err(|e| JournalSchemaError::BadSchema {
            record: "(unknown)".into(),
            detail: e.to_string(),
        })?;
        let Schema::Record(record) = &schema else {
            return Err(JournalSchemaError::BadSchema {
                record: "(unknown)".into(),
                detail: "it is not a record".into(),
            });
        };
        Ok(Self {
            fingerprint: fingerprint(&schema),
            full_name: record.name.fullname(None),
            text: text.to_string(),
            schema,
            id: OnceLock::new(),
        })
    }

    /// Whether `body` is exactly one valid datum of this schema. (The decoder reads a boolean
    /// past the end as null, hence the validation.)
    fn reads_exactly(&self, body: &[u8]) -> bool {
        let mut rest = body;
        let value = GenericDatumReader::builder(&self.schema)
            .build()
            .and_then(|r| r.read_value(&mut rest));
        matches!(value, Ok(v) if rest.is_empty() && v.validate(&self.schema))
    }
}

/// The writer schemas of one service's journal, cached for the life of the node.
#[derive(Debug)]
pub struct JournalSchemas {
    topic: String,
    store: Store,
    registry: Arc<Registry>,
    known: RwLock<HashMap<u64, Arc<WriterSchema>>>,
    /// Per record: the schemas an entry without a fingerprint may have been written with.
    legacy: RwLock<HashMap<String, Arc<Vec<Arc<WriterSchema>>>>>,
}

impl JournalSchemas {
    /// Records the catalog's schemas in the store (durably, before anything is written with
    /// them) and starts with them known.
    pub fn new(topic: &str, store: Store, catalog: &Catalog, registry: Arc<Registry>) -> Result<Self, StoreError> {
        store.remember_writer_schemas(catalog.records().map(|r| (r.fingerprint, r.source.as_str())))?;
        let known = catalog
            .records()
            .map(|r| {
                let writer = WriterSchema {
                    fingerprint: r.fingerprint,
                    full_name: r.full_name.clone(),
                    text: r.source.clone(),
                    schema: r.schema.clone(),
                    id: OnceLock::new(),
                };
                (r.fingerprint, Arc::new(writer))
            })
            .collect();
        Ok(Self {
            topic: topic.to_string(),
            store,
            registry,
            known: RwLock::new(known),
            legacy: RwLock::default(),
        })
    }

    /// The schema that wrote `entry`.
    pub async fn writer(&self, entry: &JournalEntry) -> Result<Arc<WriterSchema>, JournalSchemaError> {
        match entry.schema {
            Some(fp) => self.by_fingerprint(entry, fp),
            None => self.legacy(entry).await,
        }
    }

    /// The id of `entry`'s writer schema if it is known already: no registry call, no await.
    pub fn cached_id(&self, entry: &JournalEntry) -> Option<u32> {
        let map = self.known.read().ok()?;
        map.get(&entry.schema?)?.id.get().copied()
    }

    /// The registry id to frame `entry` with: its writer schema's, registered if needed.
    pub async fn id(&self, entry: &JournalEntry) -> Result<u32, JournalSchemaError> {
        let writer = self.writer(entry).await?;
        if let Some(id) = writer.id.get() {
            return Ok(*id);
        }
        let id = self
            .registry
            .register_text(&self.topic, &writer.full_name, &writer.text)
            .await?;
        Ok(*writer.id.get_or_init(|| id))
    }

    /// `entry`'s body decoded with its writer schema, then resolved to `reader` (the record's
    /// schema in the running catalog) where it can be, so old entries read like new ones.
    pub async fn decode(&self, entry: &JournalEntry, reader: Option<&Schema>) -> Result<Value, JournalSchemaError> {
        let writer = self.writer(entry).await?;
        let read = |reader: Option<&Schema>| {
            GenericDatumReader::builder(&writer.schema)
                .maybe_reader_schema(reader)
                .build()
                .and_then(|r| r.read_value(&mut entry.body.as_slice()))
        };
        let resolved = reader.map(|r| read(Some(r))).and_then(Result::ok);
        match resolved {
            Some(value) => Ok(value),
            None => read(None).map_err(|e| JournalSchemaError::BadSchema {
                record: entry.record.clone(),
                detail: format!("entry {} does not decode with it: {e}", entry.seq),
            }),
        }
    }

    fn by_fingerprint(&self, entry: &JournalEntry, fp: u64) -> Result<Arc<WriterSchema>, JournalSchemaError> {
        if let Some(found) = self.known.read().ok().and_then(|m| m.get(&fp).cloned()) {
            return Ok(found);
        }
        let Some(text) = self.store.writer_schema(fp)? else {
            return Err(JournalSchemaError::Unknown {
                seq: entry.seq,
                record: entry.record.clone(),
                fingerprint: fp,
            });
        };
        let writer = Arc::new(WriterSchema::parse(&text).map_err(|e| named(e, &entry.record))?);
        if let Ok(mut map) = self.known.write() {
            map.entry(fp).or_insert_with(|| Arc::clone(&writer));
        }
        Ok(writer)
    }

    async fn legacy(&self, entry: &JournalEntry) -> Result<Arc<WriterSchema>, JournalSchemaError> {
        let candidates = self.candidates(&entry.record).await?;
        if let Some(found) = candidates.iter().find(|c| c.reads_exactly(&entry.body)) {
            return Ok(Arc::clone(found));
        }
        // Nothing known reads it: frame it with the newest schema, as seam always did, and say so.
        error!(
            topic = %self.topic, seq = entry.seq, record = %entry.record,
            "journal entry written before seam recorded writer schemas matches no schema of its subject; \
             publishing it with the newest one (consumers may dead-letter it)"
        );
        match candidates.first() {
            Some(newest) => Ok(Arc::clone(newest)),
            None => Err(JournalSchemaError::BadSchema {
                record: entry.record.clone(),
                detail: format!("no schema of this record is known for entry {}", entry.seq),
            }),
        }
    }

    /// For a record: the registry's schemas of its subject (newest first), then the store's and
    /// the catalog's; fetched once.
    async fn candidates(&self, record: &str) -> Result<Arc<Vec<Arc<WriterSchema>>>, JournalSchemaError> {
        if let Some(found) = self.legacy.read().ok().and_then(|m| m.get(record).cloned()) {
            return Ok(found);
        }
        let mut found: Vec<Arc<WriterSchema>> = Vec::new();
        let mut add = |writer: WriterSchema, id: Option<u32>| {
            if writer.full_name != record || found.iter().any(|f| f.fingerprint == writer.fingerprint) {
                return;
            }
            if let Some(id) = id {
                let _ = writer.id.set(id);
            }
            found.push(Arc::new(writer));
        };
        for (id, text) in self.registry.versions(&self.topic, record).await? {
            match WriterSchema::parse(&text) {
                Ok(w) => add(w, Some(id)),
                Err(e) => warn!(topic = %self.topic, id, error = %e, "a registered schema does not parse; skipped"),
            }
        }
        for text in self.store.writer_schemas()? {
            if let Ok(w) = WriterSchema::parse(&text) {
                add(w, None);
            }
        }
        let found = Arc::new(found);
        if let Ok(mut map) = self.legacy.write() {
            map.insert(record.to_string(), Arc::clone(&found));
        }
        Ok(found)
    }
}

fn named(e: JournalSchemaError, record: &str) -> JournalSchemaError {
    match e {
        JournalSchemaError::BadSchema { detail, .. } => JournalSchemaError::BadSchema {
            record: record.to_string(),
            detail,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"Added","namespace":"t","fields":[{"name":"qty","type":"int"}]}"#;
    const V2: &str = r#"{"type":"record","name":"Added","namespace":"t","fields":[{"name":"qty","type":"int"},{"name":"gift","type":"boolean","default":false}]}"#;

    #[test]
    fn a_body_is_read_exactly_only_by_the_schema_that_wrote_it() {
        let v1 = WriterSchema::parse(V1).expect("v1");
        let v2 = WriterSchema::parse(V2).expect("v2");
        let old = [6u8];
        let new = [6u8, 1];
        assert!(v1.reads_exactly(&old) && !v2.reads_exactly(&old));
        assert!(v2.reads_exactly(&new) && !v1.reads_exactly(&new));
        assert_ne!(v1.fingerprint, v2.fingerprint);
        let spaced = V1.replace(',', " , ");
        assert_eq!(WriterSchema::parse(&spaced).expect("same").fingerprint, v1.fingerprint);
    }
}
