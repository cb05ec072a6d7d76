//! The snapshot file: an Avro object container file of state-transfer records, each a subject
//! and one of the service's published event records (schema id + Avro body), with the cut in
//! the file metadata:
//!
//! | key | value |
//! | --- | --- |
//! | `seam.service` | the exporting service |
//! | `seam.seq` | the journal seq the state is at |
//! | `seam.offsets` | JSON `{topic: {partition: next_offset}}` of `<service>.events`, every partition |
//! | `seam.created` | RFC 3339 |
//! | `seam.schemas` | JSON `{id: schema}` of every record type in the file |
//! | `seam.records` | how many records follow (a shorter file is truncated) |
//! | `seam.journal` | `<id>:<first seq>` of the exporting service's journal (absent in older files) |

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use apache_avro::types::{Record, Value};
use apache_avro::{Reader, Schema, Writer};
use thiserror::Error;

use crate::offsets::OffsetMap;
use crate::store::JournalId;
use crate::translator::events_topic;

/// The schema of one record in the file.
pub const RECORD_SCHEMA: &str = r#"{"type":"record","name":"SnapshotRecord","namespace":"seam.snapshot","fields":[{"name":"subject","type":"string"},{"name":"schema_id","type":"int"},{"name":"body","type":"bytes"}]}"#;

/// Why a snapshot file cannot be used.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// Not an Avro container file, or damaged.
    #[error("{what} is not a readable snapshot (Avro object container file): {detail}")]
    Unreadable {
        /// The file or URL.
        what: String,
        /// Detail.
        detail: String,
    },
    /// A metadata key is missing or malformed.
    #[error("{what}: metadata `{key}` is {problem}; export the snapshot again with `seam snapshot export`")]
    Metadata {
        /// The file or URL.
        what: String,
        /// The key.
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Fewer records than the metadata announces.
    #[error("{what} is truncated: it announces {expected} records but holds {found}; copy or download it again")]
    Truncated {
        /// The file or URL.
        what: String,
        /// Announced.
        expected: u64,
        /// Present.
        found: u64,
    },
    /// A snapshot of another service.
    #[error("{what} is a snapshot of {found}, not of {expected}")]
    WrongService {
        /// The file or URL.
        what: String,
        /// Wanted.
        expected: String,
        /// In the file.
        found: String,
    },
    /// Writing failed.
    #[error("writing the snapshot failed: {0}")]
    Write(String),
}

/// The cut a snapshot describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The exporting service.
    pub service: String,
    /// The journal seq of the state.
    pub seq: u64,
    /// Next offsets of every partition of `<service>.events` for exactly the events with seq ≤ `seq`.
    pub offsets: OffsetMap,
    /// When it was made.
    pub created: String,
    /// Writer schemas of the records, by registry id.
    pub schemas: BTreeMap<u32, String>,
    /// Number of records.
    pub records: u64,
    /// The exporting service's journal: a consumer bootstrapped from the snapshot has taken in
    /// every event of it up to `seq`. `None` in files of older versions.
    pub journal: Option<JournalId>,
}

/// One state-transfer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// Subject (Kafka key).
    pub subject: String,
    /// Registry id of its writer schema.
    pub schema_id: u32,
    /// Avro body.
    pub body: Vec<u8>,
}

fn record_schema() -> &'static Schema {
    static SCHEMA: std::sync::OnceLock<Schema> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| Schema::parse_str(RECORD_SCHEMA).unwrap_or(Schema::Null))
}

/// Writes a whole snapshot held in memory; returns the output.
pub fn write<W: Write>(out: W, meta: &SnapshotMeta, records: &[SnapshotRecord]) -> Result<W, SnapshotError> {
    let mut meta = meta.clone();
    meta.records = records.len() as u64;
    let mut writer = SnapshotWriter::new(out, &meta)?;
    for r in records {
        writer.append(r)?;
    }
    writer.finish()
}

/// Writes a snapshot record by record; the metadata (with the record count) goes first, so the
/// count must be known: [`SnapshotWriter::finish`] refuses a different one.
pub struct SnapshotWriter<W: Write> {
    inner: Writer<'static, W>,
    expected: u64,
    written: u64,
}

impl<W: Write> SnapshotWriter<W> {
    /// Starts a snapshot with `meta` (`meta.records` records will follow).
    pub fn new(out: W, meta: &SnapshotMeta) -> Result<Self, SnapshotError> {
        let wrap = |e: apache_avro::Error| SnapshotError::Write(e.to_string());
        let mut writer = Writer::new(record_schema(), out).map_err(wrap)?;
        let json = |v: &dyn erased::Json| v.json();
        let mut entries = vec![
            ("seam.service", meta.service.as_bytes().to_vec()),
            ("seam.seq", meta.seq.to_string().into_bytes()),
            ("seam.offsets", json(&meta.offsets)),
            ("seam.created", meta.created.as_bytes().to_vec()),
            ("seam.schemas", json(&meta.schemas)),
            ("seam.records", meta.records.to_string().into_bytes()),
        ];
        if let Some(journal) = &meta.journal {
            entries.push(("seam.journal", journal.header().into_bytes()));
        }
        for (key, value) in entries {
            writer.add_user_metadata(key.into(), value).map_err(wrap)?;
        }
        Ok(Self {
            inner: writer,
            expected: meta.records,
            written: 0,
        })
    }

    /// Appends one record.
    pub fn append(&mut self, r: &SnapshotRecord) -> Result<(), SnapshotError> {
        let mut record = Record::new(record_schema()).ok_or_else(|| SnapshotError::Write("record schema".into()))?;
        record.put("subject", Value::String(r.subject.clone()));
        record.put("schema_id", Value::Int(r.schema_id as i32));
        record.put("body", Value::Bytes(r.body.clone()));
        self.inner
            .append_value(record)
            .map_err(|e| SnapshotError::Write(e.to_string()))?;
        self.written += 1;
        Ok(())
    }

    /// Ends the file; returns the output.
    pub fn finish(self) -> Result<W, SnapshotError> {
        if self.written != self.expected {
            return Err(SnapshotError::Write(format!(
                "{} records written, {} announced",
                self.written, self.expected
            )));
        }
        self.inner.into_inner().map_err(|e| SnapshotError::Write(e.to_string()))
    }
}

mod erased {
    /// JSON of metadata values.
    pub trait Json {
        fn json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Vec<u8> {
            serde_json::to_vec(self).unwrap_or_default()
        }
    }
}

/// Reads and checks a whole snapshot into memory: metadata complete and consistent, every record
/// present. For small snapshots and tests; large ones go through [`Records`] from a file.
pub fn read<R: Read>(
    input: R,
    what: &str,
    expected_service: Option<&str>,
) -> Result<(SnapshotMeta, Vec<SnapshotRecord>), SnapshotError> {
    let mut records = Records::new(input, what, expected_service)?;
    let mut out = Vec::new();
    for r in records.by_ref() {
        out.push(r?);
    }
    Ok((records.meta, out))
}

/// Checks a whole snapshot without holding it: reads every record once and returns the cut.
pub fn check<R: Read>(input: R, what: &str, expected_service: Option<&str>) -> Result<SnapshotMeta, SnapshotError> {
    let mut records = Records::new(input, what, expected_service)?;
    for r in records.by_ref() {
        r?;
    }
    Ok(records.meta)
}

/// Opens a snapshot file for reading its records one at a time.
pub fn open(
    path: &Path,
    expected_service: Option<&str>,
) -> Result<Records<std::io::BufReader<std::fs::File>>, SnapshotError> {
    let what = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| SnapshotError::Unreadable {
        what: what.clone(),
        detail: e.to_string(),
    })?;
    Records::new(std::io::BufReader::new(f), &what, expected_service)
}

/// The records of a snapshot, read one at a time after its metadata was checked; the iterator
/// ends with an error if the file holds fewer records than it announces (or a record names a
/// schema the file does not carry).
pub struct Records<R: Read> {
    /// The cut, from the file's metadata.
    pub meta: SnapshotMeta,
    what: String,
    reader: Reader<'static, R>,
    read: u64,
    done: bool,
}

impl<R: Read> Records<R> {
    /// Reads and checks the metadata.
    pub fn new(input: R, what: &str, expected_service: Option<&str>) -> Result<Self, SnapshotError> {
        let unreadable = |e: apache_avro::Error| SnapshotError::Unreadable {
            what: what.to_string(),
            detail: e.to_string(),
        };
        let reader = Reader::new(input).map_err(unreadable)?;
        let meta = meta_of(reader.user_metadata(), what, expected_service)?;
        Ok(Self {
            meta,
            what: what.to_string(),
            reader,
            read: 0,
            done: false,
        })
    }

    fn record(&self, value: Value) -> Result<SnapshotRecord, SnapshotError> {
        let bad = |problem: String| SnapshotError::Metadata {
            what: self.what.clone(),
            key: "seam.schemas",
            problem,
        };
        let Value::Record(fields) = value else {
            return Err(SnapshotError::Metadata {
                what: self.what.clone(),
                key: "records",
                problem: "not SnapshotRecord".into(),
            });
        };
        let mut r = SnapshotRecord {
            subject: String::new(),
            schema_id: 0,
            body: Vec::new(),
        };
        for (name, v) in fields {
            match (name.as_str(), v) {
                ("subject", Value::String(s)) => r.subject = s,
                ("schema_id", Value::Int(i)) => r.schema_id = i as u32,
                ("body", Value::Bytes(b)) => r.body = b,
                _ => {}
            }
        }
        if !self.meta.schemas.contains_key(&r.schema_id) {
            return Err(bad(format!("has no schema for id {} used by a record", r.schema_id)));
        }
        Ok(r)
    }
}

impl<R: Read> Iterator for Records<R> {
    type Item = Result<SnapshotRecord, SnapshotError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.reader.next() {
            Some(Ok(value)) => {
                self.read += 1;
                let record = self.record(value);
                self.done = record.is_err();
                Some(record)
            }
            Some(Err(e)) => {
                self.done = true;
                Some(Err(SnapshotError::Truncated {
                    what: format!("{} ({e})", self.what),
                    expected: self.meta.records,
                    found: self.read,
                }))
            }
            None => {
                self.done = true;
                (self.read != self.meta.records).then(|| {
                    Err(SnapshotError::Truncated {
                        what: self.what.clone(),
                        expected: self.meta.records,
                        found: self.read,
                    })
                })
            }
        }
    }
}

fn meta_of(
    md: &std::collections::HashMap<String, Vec<u8>>,
    what: &str,
    expected_service: Option<&str>,
) -> Result<SnapshotMeta, SnapshotError> {
    let text = |key: &'static str| -> Result<String, SnapshotError> {
        md.get(key)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .ok_or_else(|| SnapshotError::Metadata {
                what: what.to_string(),
                key,
                problem: "missing".into(),
            })
    };
    let bad = |key: &'static str, problem: String| SnapshotError::Metadata {
        what: what.to_string(),
        key,
        problem,
    };
    let service = text("seam.service")?;
    if let Some(expected) = expected_service {
        if service != expected {
            return Err(SnapshotError::WrongService {
                what: what.to_string(),
                expected: expected.to_string(),
                found: service,
            });
        }
    }
    let seq: u64 = text("seam.seq")?
        .parse()
        .map_err(|e| bad("seam.seq", format!("not a number ({e})")))?;
    let offsets: OffsetMap = serde_json::from_str(&text("seam.offsets")?)
        .map_err(|e| bad("seam.offsets", format!("not an offset map ({e})")))?;
    let topic = events_topic(&service);
    let topics: Vec<&String> = offsets.0.keys().collect();
    if topics != [&topic] {
        return Err(bad(
            "seam.offsets",
            format!("for topics {topics:?}; it must cover exactly {topic}"),
        ));
    }
    let parts: Vec<i32> = offsets.0[&topic].keys().copied().collect();
    if parts.is_empty()
        || parts.iter().enumerate().any(|(i, p)| *p != i as i32)
        || offsets.iter().any(|(_, _, o)| o < 0)
    {
        return Err(bad(
            "seam.offsets",
            format!("inconsistent: partitions {parts:?} must be 0..n with offsets ≥ 0"),
        ));
    }
    let schemas: BTreeMap<u32, String> = serde_json::from_str(&text("seam.schemas")?)
        .map_err(|e| bad("seam.schemas", format!("not a schema map ({e})")))?;
    let records: u64 = text("seam.records")?
        .parse()
        .map_err(|e| bad("seam.records", format!("not a number ({e})")))?;
    let created = text("seam.created")?;
    let journal = match md.get("seam.journal") {
        None => None,
        Some(v) => Some(
            JournalId::parse(&String::from_utf8_lossy(v))
                .ok_or_else(|| bad("seam.journal", "not `<id>:<first seq>`".into()))?,
        ),
    };
    Ok(SnapshotMeta {
        service,
        seq,
        offsets,
        created,
        schemas,
        records,
        journal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (SnapshotMeta, Vec<SnapshotRecord>) {
        let mut offsets = OffsetMap::default();
        offsets.set("orders.events", 0, 4);
        offsets.set("orders.events", 1, 0);
        let meta = SnapshotMeta {
            service: "orders".into(),
            seq: 9,
            offsets,
            created: "2026-11-25T00:00:00.000Z".into(),
            schemas: BTreeMap::from([(3, r#"{"type":"record","name":"X","fields":[]}"#.to_string())]),
            records: 2,
            journal: JournalId::parse("ab12:1"),
        };
        let records = (0..2)
            .map(|i| SnapshotRecord {
                subject: format!("order/{i}"),
                schema_id: 3,
                body: vec![i as u8],
            })
            .collect();
        (meta, records)
    }

    fn bytes(meta: &SnapshotMeta, records: &[SnapshotRecord]) -> Vec<u8> {
        write(Vec::new(), meta, records).expect("write")
    }

    #[test]
    fn a_snapshot_round_trips() {
        let (meta, records) = sample();
        let (m, r) = read(bytes(&meta, &records).as_slice(), "s.avro", Some("orders")).expect("read");
        assert_eq!((m, r), (meta, records));
    }

    #[test]
    fn truncated_foreign_and_inconsistent_snapshots_are_refused() {
        let (meta, records) = sample();
        let full = bytes(&meta, &records);
        let err = read(&full[..full.len() - 20], "s.avro", None)
            .expect_err("truncated")
            .to_string();
        assert!(
            err.contains("truncated") || err.contains("not a readable snapshot"),
            "{err}"
        );
        let err = read(full.as_slice(), "s.avro", Some("billing"))
            .expect_err("other service")
            .to_string();
        assert!(err.contains("snapshot of orders, not of billing"), "{err}");

        let err = read(bytes(&meta, &records[..1]).as_slice(), "s.avro", None).map(|(m, _)| m.records);
        assert_eq!(err.expect("a shorter export announces its own count"), 1);

        let mut gap = meta.clone();
        gap.offsets = OffsetMap::default();
        gap.offsets.set("orders.events", 1, 3);
        let err = read(bytes(&gap, &records).as_slice(), "s.avro", None)
            .expect_err("gap")
            .to_string();
        assert!(err.contains("seam.offsets") && err.contains("inconsistent"), "{err}");

        let mut unnamed = full.clone();
        let at = unnamed
            .windows(b"seam.offsets".len())
            .position(|w| w == b"seam.offsets")
            .expect("key in the header");
        unnamed[at + 9] = b'z';
        let err = read(unnamed.as_slice(), "s.avro", None)
            .expect_err("no offsets")
            .to_string();
        assert!(err.contains("seam.offsets"), "{err}");

        let mut other = meta;
        other.offsets = OffsetMap::default();
        other.offsets.set("billing.events", 0, 1);
        let err = read(bytes(&other, &records).as_slice(), "s.avro", None)
            .expect_err("topic")
            .to_string();
        assert!(err.contains("exactly orders.events"), "{err}");
    }
}
