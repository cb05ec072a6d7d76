//! A service's event catalog: the Avro record schemas it writes, parsed once and kept for the
//! life of the process.
//!
//! Schemas are parsed at start-up and leaked into `'static` so the datum writers that borrow them
//! can be cached too; a catalog holds a handful of schemas, so the cost is a few kilobytes once.

use std::collections::BTreeMap;
use std::path::Path;

use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde::Serialize;
use thiserror::Error;

/// Why a catalog could not be built or an event could not be encoded.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// The schema directory could not be read.
    #[error("cannot read the schema directory {path}: {source}")]
    ReadDir {
        /// Directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A schema file is not valid Avro.
    #[error("{file} is not a valid Avro schema: {source}")]
    Parse {
        /// File (or label) of the schema.
        file: String,
        /// Cause.
        source: Box<apache_avro::Error>,
    },
    /// Events are records; a bare primitive or union cannot carry a subject's event.
    #[error("{file} defines a {kind} schema; event schemas must be named records")]
    NotARecord {
        /// File of the schema.
        file: String,
        /// What it defines instead.
        kind: String,
    },
    /// `schemas/<service>/<Record>.avsc` is the layout; a mismatch means a rename went half-way.
    #[error("{file} defines record {record}; name the file {expected}.avsc or fix the record name")]
    FileName {
        /// File of the schema.
        file: String,
        /// Full name of the record inside.
        record: String,
        /// Simple name the file should have.
        expected: String,
    },
    /// Two files define the same record.
    #[error("record {record} is defined twice in the catalog; keep one schema per record")]
    Duplicate {
        /// Full name of the record.
        record: String,
    },
    /// The service tried to emit a record its catalog does not have.
    #[error("record {record} is not in the catalog; add schemas/<service>/{record}.avsc")]
    UnknownRecord {
        /// Full name asked for.
        record: String,
    },
    /// The event value does not fit its schema: the Rust type and the schema drifted.
    #[error("event {record} does not match its schema: {source}")]
    Encode {
        /// Full name of the record.
        record: String,
        /// Cause.
        source: Box<apache_avro::Error>,
    },
}

/// One record type of the catalog with its cached writer.
pub struct RecordSchema {
    /// Full name (`namespace.Name`).
    pub full_name: String,
    /// The schema text as written in the file (registered verbatim, so docs and defaults survive).
    pub source: String,
    /// The parsed schema.
    pub schema: &'static Schema,
    /// The schema's fingerprint ([`fingerprint`]): journal entries carry it so they are always
    /// read and published with the schema that wrote them, whichever binary runs later.
    pub fingerprint: u64,
    writer: GenericDatumWriter<'static>,
}

/// The CRC-64-AVRO (Rabin) fingerprint of a schema's Parsing Canonical Form: the same for every
/// spelling of one schema (docs, field order of JSON attributes), different for another schema.
pub fn fingerprint(schema: &Schema) -> u64 {
    let bytes = schema.fingerprint::<apache_avro::rabin::Rabin>().bytes;
    let mut fixed = [0u8; 8];
    fixed.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(fixed)
}

impl std::fmt::Debug for RecordSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordSchema")
            .field("full_name", &self.full_name)
            .finish()
    }
}

/// The record schemas one service writes, by full name.
#[derive(Debug, Default)]
pub struct Catalog {
    records: BTreeMap<String, RecordSchema>,
}

impl Catalog {
    /// Loads every `*.avsc` file of a directory (`schemas/<service>/`).
    pub fn load_dir(dir: &Path) -> Result<Self, CatalogError> {
        let read_dir = |source| CatalogError::ReadDir {
            path: dir.display().to_string(),
            source,
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(read_dir)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "avsc"))
            .collect();
        files.sort();
        let mut sources = Vec::with_capacity(files.len());
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(read_dir)?;
            sources.push((file.display().to_string(), text));
        }
        Self::from_sources(sources.iter().map(|(f, t)| (f.as_str(), t.as_str())))
    }

    /// Builds a catalog from `(file name, schema text)` pairs, e.g. schemas embedded with
    /// `include_str!` so a service binary carries its own contract.
    pub fn from_sources<'a>(sources: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, CatalogError> {
        let mut records = BTreeMap::new();
        for (file, text) in sources {
            let parsed = Schema::parse_str(text).map_err(|e| CatalogError::Parse {
                file: file.to_string(),
                source: Box::new(e),
            })?;
            let Schema::Record(record) = &parsed else {
                return Err(CatalogError::NotARecord {
                    file: file.to_string(),
                    kind: format!("{:?}", apache_avro::schema::SchemaKind::from(&parsed)),
                });
            };
            let full_name = record.name.fullname(None);
            let simple = record.name.name().to_string();
            let stem = Path::new(file).file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            if stem != simple && !file.is_empty() && Path::new(file).extension().is_some() {
                return Err(CatalogError::FileName {
                    file: file.to_string(),
                    record: full_name,
                    expected: simple,
                });
            }
            let schema: &'static Schema = Box::leak(Box::new(parsed));
            let writer = GenericDatumWriter::builder(schema)
                .build()
                .map_err(|e| CatalogError::Parse {
                    file: file.to_string(),
                    source: Box::new(e),
                })?;
            if records.contains_key(&full_name) {
                return Err(CatalogError::Duplicate { record: full_name });
            }
            records.insert(
                full_name.clone(),
                RecordSchema {
                    full_name,
                    source: text.to_string(),
                    fingerprint: fingerprint(schema),
                    schema,
                    writer,
                },
            );
        }
        Ok(Self { records })
    }

    /// The record with this full name.
    pub fn record(&self, full_name: &str) -> Result<&RecordSchema, CatalogError> {
        self.records.get(full_name).ok_or_else(|| CatalogError::UnknownRecord {
            record: full_name.to_string(),
        })
    }

    /// Every record, ordered by full name.
    pub fn records(&self) -> impl Iterator<Item = &RecordSchema> {
        self.records.values()
    }

    /// Encodes an event to its Avro body with the cached writer: no schema parsing or resolution
    /// per call.
    pub fn encode<T: Serialize>(&self, full_name: &str, event: &T) -> Result<Vec<u8>, CatalogError> {
        let record = self.record(full_name)?;
        record.writer.write_ser_to_vec(event).map_err(|e| CatalogError::Encode {
            record: full_name.to_string(),
            source: Box::new(e),
        })
    }

    /// Encodes a generic Avro value (one built at run time, e.g. from a table row) with the
    /// record's schema; a value that does not fit is refused, never written half-right.
    pub fn encode_value(&self, full_name: &str, value: apache_avro::types::Value) -> Result<Vec<u8>, CatalogError> {
        let record = self.record(full_name)?;
        record
            .writer
            .write_value_to_vec(value)
            .map_err(|e| CatalogError::Encode {
                record: full_name.to_string(),
                source: Box::new(e),
            })
    }

    /// Checks that a Rust type derives exactly the schema of its catalog entry, so types and
    /// `.avsc` files cannot drift apart unnoticed. Compares Parsing Canonical Forms.
    pub fn check_type<T: apache_avro::AvroSchema>(&self, full_name: &str) -> Result<(), String> {
        let record = self.record(full_name).map_err(|e| e.to_string())?;
        check_schema_of::<T>(record.schema, &format!("the Rust type for {full_name}"))
    }
}

/// Checks that the Rust type `T` derives exactly `schema` (their Parsing Canonical Forms are
/// equal); `what` names the type in the error, which shows both forms.
pub fn check_schema_of<T: apache_avro::AvroSchema>(schema: &Schema, what: &str) -> Result<(), String> {
    let derived = T::get_schema().canonical_form();
    let file = schema.canonical_form();
    if derived == file {
        Ok(())
    } else {
        Err(format!(
            "{what} and its schema file differ:\n  type:   {derived}\n  schema: {file}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLACED: &str = r#"{"type":"record","name":"Placed","namespace":"t","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int"}]}"#;

    #[derive(Serialize, apache_avro::AvroSchema)]
    #[avro(namespace = "t")]
    struct Placed {
        id: String,
        qty: i32,
    }

    #[test]
    fn encodes_with_the_cached_writer() {
        let catalog = Catalog::from_sources([("Placed.avsc", PLACED)]).expect("valid catalog");
        let body = catalog
            .encode("t.Placed", &Placed { id: "a".into(), qty: 3 })
            .expect("encodes");
        assert_eq!(body, vec![2, b'a', 6]);
        catalog.check_type::<Placed>("t.Placed").expect("type matches schema");
    }

    #[test]
    fn a_file_named_after_another_record_is_refused() {
        let err = Catalog::from_sources([("Shipped.avsc", PLACED)]).expect_err("name mismatch");
        assert!(err.to_string().contains("name the file Placed.avsc"), "{err}");
    }

    #[test]
    fn non_record_schemas_and_duplicates_are_refused() {
        let err = Catalog::from_sources([("X.avsc", r#""string""#)]).expect_err("not a record");
        assert!(err.to_string().contains("must be named records"), "{err}");
        let err = Catalog::from_sources([("Placed.avsc", PLACED), ("a/Placed.avsc", PLACED)]).expect_err("dup");
        assert!(err.to_string().contains("defined twice"), "{err}");
    }

    #[test]
    fn unknown_records_and_drift_are_named() {
        let catalog = Catalog::from_sources([("Placed.avsc", PLACED)]).expect("valid catalog");
        let err = catalog.encode("t.Nope", &1).expect_err("unknown");
        assert!(err.to_string().contains("t.Nope"), "{err}");

        #[derive(apache_avro::AvroSchema)]
        #[avro(namespace = "t")]
        #[allow(dead_code)]
        struct Placed {
            id: String,
        }
        let err = catalog.check_type::<Placed>("t.Placed").expect_err("drift");
        assert!(err.contains("differ"), "{err}");
    }
}
