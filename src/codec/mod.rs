//! Events on the wire: Confluent-framed Avro with topic-record subjects, schemas from the
//! registry cached per id, and the catalog of records a service writes.

pub mod catalog;
pub mod decoder;
pub mod registry;
pub mod wire;

pub use catalog::{Catalog, CatalogError, RecordSchema};
pub use decoder::{Attempt, DecodeError, Decoded, Decoder};
pub use registry::{subject_name, Registry, RegistryError};
