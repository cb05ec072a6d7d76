//! The local stack: real Apache Kafka (KRaft) and a Confluent-compatible schema registry
//! on 127.0.0.1, for development, demos and tests. No Docker: the parts are fetched
//! once from Maven Central and run as plain JVMs.
//!
//! With `--postgres` the stack also runs PostgreSQL ([`postgres`]) for CRUD services.
//!
//! Start with [`up`], stop with [`down`], inspect with [`status`]. Every command, service and
//! test finds the cluster through [`cluster`]: `SEAM_BROKERS`/`SEAM_REGISTRY`, or the state
//! file of the local stack of `SEAM_HOME` written here ([`Home`] is that folder's layout).
#![forbid(unsafe_code)]

pub mod cluster;
mod error;
mod fetch;
mod java;
mod kafka;
mod layout;
mod ports;
pub mod postgres;
mod process;
mod props;
mod registry;
pub mod secure;
mod shape;
mod stack;
mod state;

pub use error::{LocalError, Owner, PortInUse};
pub use java::{for_kafka as java_for_kafka, Java};
pub use layout::{Home, APICURIO_VERSION, KAFKA_VERSION, POSTGRES_VERSION};
pub use props::{BadProps, KafkaProps};
pub use shape::Shape;
pub use stack::{
    down, kill_broker, kill_postgres, restart_broker, running_processes, status, up, ComponentStatus, DownReport,
    StackStatus, UpReport,
};
pub use state::StackState;
