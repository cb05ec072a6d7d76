//! Events as bytes: the Confluent wire framing and the catalog of Avro records a service
//! writes. Resolving schema ids against a registry is the runtime's (`seam::codec::Registry`).

pub mod catalog;
pub mod wire;

pub use catalog::{Catalog, CatalogError, RecordSchema};
