//! Events on the wire: Confluent-framed Avro with topic-record subjects, schemas from the
//! registry cached per id ([`registry`], [`decoder`]), and the catalog and framing of
//! `seam-core`.

pub mod decoder;
pub mod registry;

pub use seam_core::codec::{catalog, wire, Catalog, CatalogError, RecordSchema};

pub use decoder::{Attempt, DecodeError, Decoded, Decoder};
pub use registry::{subject_name, Registry, RegistryBackend, RegistryError};
