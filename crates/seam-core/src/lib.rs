//! What a service or translator author writes against: the [`service::Service`] and
//! [`translator::Translator`] traits, the events they exchange, the store they write through,
//! and the formats seam keeps on disk and on the wire.
//!
//! Nothing here talks to Kafka, a registry or the network, and nothing spawns a task: a
//! translator (a pure function from foreign events to commands) and a service's domain model
//! build with this crate alone, and their unit tests run against [`store::Store::in_memory`].
//! The runtime that runs them is the `seam` crate, which re-exports every module here.
//!
//! The vocabulary (service, journal, publisher, translator, position, offset map, snapshot,
//! bootstrap, replay, topology, DLQ) is fixed in `DESIGN.md` and used unchanged in code, CLI and
//! metrics.
#![forbid(unsafe_code)]

pub mod codec;
pub mod dlq;
pub mod envelope;
pub mod fault;
pub mod offsets;
pub mod partitioner;
pub mod service;
pub mod snapshot;
pub mod store;
pub mod translator;

/// The Avro crate service and translator types derive against (`#[derive(AvroSchema)]`), so a
/// service never has to match seam's version by hand.
pub use apache_avro;
/// The serde crate seam serializes commands and models with.
pub use serde;
/// serde_json, for models kept as JSON.
pub use serde_json;
