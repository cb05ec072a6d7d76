//! The local stack: real Apache Kafka (KRaft) and a Confluent-compatible schema registry
//! on 127.0.0.1, for development, demos and tests. No Docker: the parts are fetched
//! once from Maven Central and run as plain JVMs.
//!
//! Start with [`up`], stop with [`down`], inspect with [`status`]. Other commands find
//! the running stack through [`crate::cluster`], which reads the state file written here.

mod error;
mod fetch;
mod java;
mod kafka;
mod layout;
mod ports;
mod process;
mod registry;
pub mod secure;
mod stack;
mod state;

pub use error::LocalError;
pub use java::{for_kafka as java_for_kafka, Java};
pub use layout::{Home, APICURIO_VERSION, KAFKA_VERSION};
pub use ports::{Owner, PortInUse};
pub use stack::{
    down, kill_broker, restart_broker, running_jvms, status, up, ComponentStatus, DownReport, StackStatus, UpReport,
};
pub use state::{Shape, StackState};
