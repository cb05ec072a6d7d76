//! seam keeps independently developed services (bounded contexts) in sync through
//! events on Kafka.
//!
//! Each service owns its data and journal, publishes what happened to its own
//! partitioned topic, and translates foreign events into its own commands. This crate
//! is the platform: it knows no domain. The vocabulary (service, journal, publisher,
//! translator, position, offset map, snapshot, bootstrap, replay, topology, DLQ) is
//! fixed in `DESIGN.md` and used unchanged in code, CLI and metrics.
//!
//! Modules:
//! - [`cluster`]: where the Kafka brokers and the schema registry are, for every command
//!   and test (an existing cluster via `SEAM_BROKERS`/`SEAM_REGISTRY`, or the local stack).
//! - [`local`]: the local stack of real components (Apache Kafka in KRaft mode and a
//!   Confluent-compatible schema registry) started from Maven Central artifacts.
//! - [`cli`]: the `seam` command line.

pub mod bench;
pub mod cli;
pub mod cluster;
pub mod codec;
pub mod deploy;
pub mod dlq;
pub mod envelope;
pub mod failpoint;
pub mod fault;
pub mod http;
pub mod local;
pub mod metrics;
pub mod offsets;
pub mod partitioner;
pub mod runtime;
pub mod service;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod topology;
pub mod translator;
