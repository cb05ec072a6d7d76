//! Decoding foreign events through the consumer's own reader schemas (the tolerant reader).
//!
//! A translator names the records it reads and gives, for each, the reader schema with only the
//! fields it needs. Avro schema resolution maps whatever the producer wrote onto that view. The
//! writer-to-reader resolution is built once per schema id and cached.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::Schema;
use thiserror::Error;

use super::registry::{Registry, RegistryError, WriterSchema};
use super::wire::{self, FrameError};
use crate::fault::{Class, Classify};

/// Largest single allocation Avro decoding may make for one value. Untrusted bytes could
/// otherwise announce a multi-gigabyte string.
const MAX_ALLOCATION_BYTES: usize = 64 * 1024 * 1024;

/// Why a payload could not be decoded.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// Not Confluent-framed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The writer schema could not be had.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The body does not decode with its writer schema, or does not resolve to the reader schema.
    #[error("the body of a {record} event (schema id {schema_id}) does not decode: {detail}")]
    Body {
        /// Schema id from the frame.
        schema_id: u32,
        /// Writer record name.
        record: String,
        /// What Avro said.
        detail: String,
    },
    /// The body decoded but bytes are left over: it was written with another schema than its id says.
    #[error("the body of a {record} event (schema id {schema_id}) has {extra} bytes left after decoding; it was written with a different schema than its id names")]
    TrailingBytes {
        /// Schema id from the frame.
        schema_id: u32,
        /// Writer record name.
        record: String,
        /// Bytes left over.
        extra: usize,
    },
    /// The writer schema of a record cannot be resolved against the translator's reader schema
    /// (e.g. it names types it does not define): every record written with it is poison.
    #[error("the writer schema {schema_id} of {record} cannot be read with the translator's reader schema: {detail}")]
    Unresolvable {
        /// Registry id.
        schema_id: u32,
        /// Record name.
        record: String,
        /// What Avro said.
        detail: String,
    },
    /// A reader schema given by a translator is not valid.
    #[error("the reader schema for {record} is invalid: {detail}")]
    ReaderSchema {
        /// Record name.
        record: String,
        /// What Avro said.
        detail: String,
    },
}

impl Classify for DecodeError {
    fn class(&self) -> Class {
        match self {
            Self::Frame(_) | Self::Body { .. } | Self::TrailingBytes { .. } | Self::Unresolvable { .. } => {
                Class::Poison
            }
            Self::Registry(e) => e.class(),
            Self::ReaderSchema { .. } => Class::Fatal,
        }
    }
}

impl DecodeError {
    /// A short stable name for the kind of failure, used in DLQ headers and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Frame(FrameError::Empty) => "empty-payload",
            Self::Frame(FrameError::Short { .. }) => "short-payload",
            Self::Frame(FrameError::WrongMagic { .. }) => "wrong-magic-byte",
            Self::Registry(RegistryError::UnknownId { .. }) => "unknown-schema-id",
            Self::Registry(_) => "registry",
            Self::Body { .. } => "undecodable-body",
            Self::TrailingBytes { .. } => "wrong-record",
            Self::ReaderSchema { .. } => "reader-schema",
            Self::Unresolvable { .. } => "unresolvable-schema",
        }
    }
}

/// A decoded foreign event, already resolved to the reader schema.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Writer schema id.
    pub schema_id: u32,
    /// The record's full name.
    pub record: String,
    /// The value in the reader's shape.
    pub value: Value,
}

/// The outcome of a decode attempt that only uses cached schemas.
#[derive(Debug)]
pub enum Attempt {
    /// Decoded.
    Done(Decoded),
    /// A record the reader does not read (its full name): not decoded.
    Unread(String),
    /// The writer schema with this id must be fetched first (see [`Decoder::fetch`]).
    NeedSchema(u32),
}

enum Resolution {
    Read(GenericDatumReader<'static>, Arc<WriterSchema>),
    Ignored(String),
}

/// Decodes payloads for one consumer; shared by its threads.
pub struct Decoder {
    registry: Arc<Registry>,
    readers: HashMap<String, &'static Schema>,
    resolutions: RwLock<HashMap<u32, Arc<Resolution>>>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("readers", &self.readers.keys())
            .finish()
    }
}

impl Decoder {
    /// A decoder reading the given records with the given reader schemas (full name → schema text).
    pub fn new<'a>(
        registry: Arc<Registry>,
        readers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, DecodeError> {
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
        let mut map = HashMap::new();
        for (record, text) in readers {
            let schema = Schema::parse_str(text).map_err(|e| DecodeError::ReaderSchema {
                record: record.to_string(),
                detail: e.to_string(),
            })?;
            map.insert(record.to_string(), &*Box::leak(Box::new(schema)));
        }
        Ok(Self {
            registry,
            readers: map,
            resolutions: RwLock::default(),
        })
    }

    /// The record names this decoder reads.
    pub fn reads(&self, record: &str) -> bool {
        self.readers.contains_key(record)
    }

    /// Decodes with cached schemas only; never blocks on the network.
    pub fn try_decode(&self, payload: &[u8]) -> Result<Attempt, DecodeError> {
        let framed = wire::parse(payload)?;
        let cached = self
            .resolutions
            .read()
            .ok()
            .and_then(|m| m.get(&framed.schema_id).cloned());
        let resolution = match cached {
            Some(r) => r,
            None => match self.registry.cached_writer(framed.schema_id) {
                Some(writer) => self.resolve(writer)?,
                None => return Ok(Attempt::NeedSchema(framed.schema_id)),
            },
        };
        let (reader, writer) = match &*resolution {
            Resolution::Read(reader, writer) => (reader, writer),
            Resolution::Ignored(record) => return Ok(Attempt::Unread(record.clone())),
        };
        let mut body = framed.body;
        let value = reader.read_value(&mut body).map_err(|e| DecodeError::Body {
            schema_id: framed.schema_id,
            record: writer.full_name.clone(),
            detail: e.to_string(),
        })?;
        if !body.is_empty() {
            return Err(DecodeError::TrailingBytes {
                schema_id: framed.schema_id,
                record: writer.full_name.clone(),
                extra: body.len(),
            });
        }
        Ok(Attempt::Done(Decoded {
            schema_id: framed.schema_id,
            record: writer.full_name.clone(),
            value,
        }))
    }

    /// Fetches (and caches) the writer schema for an id.
    pub async fn fetch(&self, schema_id: u32) -> Result<(), DecodeError> {
        let writer = self.registry.writer(schema_id).await?;
        self.resolve(writer)?;
        Ok(())
    }

    /// Decodes, fetching the writer schema when it is not cached yet; `None` for a record the
    /// reader does not read.
    pub async fn decode(&self, payload: &[u8]) -> Result<Option<Decoded>, DecodeError> {
        loop {
            match self.try_decode(payload)? {
                Attempt::Done(decoded) => return Ok(Some(decoded)),
                Attempt::Unread(_) => return Ok(None),
                Attempt::NeedSchema(id) => self.fetch(id).await?,
            }
        }
    }

    fn resolve(&self, writer: Arc<WriterSchema>) -> Result<Arc<Resolution>, DecodeError> {
        let resolution = match self.readers.get(&writer.full_name) {
            None => Resolution::Ignored(writer.full_name.clone()),
            Some(reader) => {
                let built = GenericDatumReader::builder(writer.schema)
                    .reader_schema(reader)
                    .build()
                    .map_err(|e| DecodeError::Unresolvable {
                        schema_id: writer.id,
                        record: writer.full_name.clone(),
                        detail: e.to_string(),
                    })?;
                Resolution::Read(built, Arc::clone(&writer))
            }
        };
        let resolution = Arc::new(resolution);
        if let Ok(mut map) = self.resolutions.write() {
            map.insert(writer.id, Arc::clone(&resolution));
        }
        Ok(resolution)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::wire;
    use proptest::prelude::*;

    const WRITER: &str = r#"{"type":"record","name":"Line","namespace":"t","fields":[{"name":"order","type":"string"},{"name":"line","type":"int"},{"name":"tags","type":{"type":"array","items":"string"}},{"name":"note","type":["null","string"],"default":null}]}"#;
    const READER: &str = r#"{"type":"record","name":"Line","namespace":"t","fields":[{"name":"order","type":"string"},{"name":"line","type":"int"}]}"#;
    const OTHER: &str = r#"{"type":"record","name":"Other","namespace":"t","fields":[{"name":"x","type":"long"}]}"#;

    /// One decoder for all cases: building the registry's HTTP client is the slow part.
    fn decoder() -> &'static Decoder {
        static DECODER: std::sync::OnceLock<Decoder> = std::sync::OnceLock::new();
        DECODER.get_or_init(|| {
            let registry = Arc::new(Registry::new("http://127.0.0.1:9").expect("client"));
            registry.preload(1, WRITER).expect("writer");
            registry.preload(2, OTHER).expect("other");
            Decoder::new(registry, [("t.Line", READER)]).expect("decoder")
        })
    }

    fn kind(d: &Decoder, payload: &[u8]) -> String {
        match d.try_decode(payload) {
            Ok(Attempt::Done(_)) => "ok".into(),
            Ok(Attempt::Unread(record)) => format!("unread {record}"),
            Ok(Attempt::NeedSchema(id)) => format!("need {id}"),
            Err(e) => {
                assert_eq!(e.class(), Class::Poison, "{e}");
                e.kind().to_string()
            }
        }
    }

    #[test]
    fn each_bad_payload_kind_is_a_typed_poison() {
        let d = decoder();
        assert_eq!(kind(d, &[]), "empty-payload");
        assert_eq!(kind(d, &[0, 0, 1]), "short-payload");
        assert_eq!(kind(d, b"{}"), "wrong-magic-byte");
        assert_eq!(kind(d, &wire::frame(77, &[])), "need 77");
        assert_eq!(kind(d, &wire::frame(1, &[0xff, 0xff, 0xff])), "undecodable-body");
        // order "a", line 1, no tags, null note, then junk the schema does not describe.
        assert_eq!(kind(d, &wire::frame(1, &[2, b'a', 2, 0, 0, 9, 9])), "wrong-record");
        assert_eq!(kind(d, &wire::frame(1, &[2, b'a', 2, 0, 0])), "ok");
        assert_eq!(kind(d, &wire::frame(2, &[2])), "unread t.Other");
    }

    #[test]
    fn the_reader_sees_only_its_fields() {
        let d = decoder();
        let Ok(Attempt::Done(decoded)) = d.try_decode(&wire::frame(1, &[2, b'a', 4, 0, 0])) else {
            panic!("decodes");
        };
        assert_eq!(decoded.record, "t.Line");
        let Value::Record(fields) = decoded.value else {
            panic!("a record");
        };
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["order", "line"]);
    }

    proptest! {
        /// Untrusted bytes never panic the decoder; they decode or give a typed poison error.
        #[test]
        fn arbitrary_bytes_never_panic(id in 0u32..4, body in proptest::collection::vec(any::<u8>(), 0..64), raw in proptest::collection::vec(any::<u8>(), 0..12)) {
            let d = decoder();
            let _ = kind(d, &wire::frame(id, &body));
            let _ = kind(d, &raw);
        }
    }
}
