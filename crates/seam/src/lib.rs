//! The runtime every seam service links: the node that keeps a service's store, journal and
//! publisher, consumes its sources through translators, bootstraps, registers, replays and
//! settles dead letters, serves the platform's HTTP routes and metrics, and [`serve`]s a
//! service as a process.
//!
//! What service and translator authors write against (the `Service` and `Translator` traits,
//! events, the store, the formats) is `seam-core`, re-exported here under the same module
//! names, so a service depends on `seam` alone and a translator on `seam-core` alone. Operator
//! tooling (deploy, status, DLQ admin, register/replay clients) is `seam-ops`, the local stack
//! and cluster discovery `seam-local`, the `seam` binary `seam-cli`.
#![forbid(unsafe_code)]

pub use seam_core::{dlq, envelope, fault, offsets, partitioner, service, snapshot, translator};

pub mod codec;
pub mod failpoint;
pub mod headers;
pub mod http;
pub mod metrics;
pub mod runtime;
pub mod serve;
pub mod store;
mod store_fjall;
mod store_sled;
pub mod topology;
pub mod trace;

/// Every binary linking seam allocates with mimalloc when the `mimalloc` feature is on (the
/// default): glibc's malloc and free were the largest single item in the translator's profile.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The HTTP framework of the platform routes a service extends.
pub use axum;
/// Crates a service's code needs at exactly the versions seam uses (Avro derive, HTTP routes,
/// JSON), re-exported so a service never aligns versions by hand.
pub use seam_core::{apache_avro, serde, serde_json};
