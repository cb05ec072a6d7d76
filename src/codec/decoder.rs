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
            Self::Frame(_) | Self::Body { .. } | Self::TrailingBytes { .. } => Class::Poison,
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
    /// Decoded; `None` when the record is one the reader does not read (filtered).
    Done(Option<Decoded>),
    /// The writer schema with this id must be fetched first (see [`Decoder::fetch`]).
    NeedSchema(u32),
}

enum Resolution {
    Read(GenericDatumReader<'static>, Arc<WriterSchema>),
    Ignored,
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
        let Resolution::Read(reader, writer) = &*resolution else {
            return Ok(Attempt::Done(None));
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
        Ok(Attempt::Done(Some(Decoded {
            schema_id: framed.schema_id,
            record: writer.full_name.clone(),
            value,
        })))
    }

    /// Fetches (and caches) the writer schema for an id.
    pub async fn fetch(&self, schema_id: u32) -> Result<(), DecodeError> {
        let writer = self.registry.writer(schema_id).await?;
        self.resolve(writer)?;
        Ok(())
    }

    /// Decodes, fetching the writer schema when it is not cached yet.
    pub async fn decode(&self, payload: &[u8]) -> Result<Option<Decoded>, DecodeError> {
        loop {
            match self.try_decode(payload)? {
                Attempt::Done(decoded) => return Ok(decoded),
                Attempt::NeedSchema(id) => self.fetch(id).await?,
            }
        }
    }

    fn resolve(&self, writer: Arc<WriterSchema>) -> Result<Arc<Resolution>, DecodeError> {
        let resolution = match self.readers.get(&writer.full_name) {
            None => Resolution::Ignored,
            Some(reader) => {
                let built = GenericDatumReader::builder(writer.schema)
                    .reader_schema(reader)
                    .build()
                    .map_err(|e| DecodeError::ReaderSchema {
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
