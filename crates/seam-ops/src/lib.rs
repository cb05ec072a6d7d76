//! What operators run against a seam deployment: [`deploy`] (plan and apply topics, configs,
//! schemas, ACLs and users; Kubernetes manifests), [`status`], dead-letter administration
//! ([`dlq_admin`]) and the [`commands`] of the `seam` binary that drive a running service
//! (register, replay, snapshots, doctor), the [`reconcile`] audit, and the web [`console`].
#![forbid(unsafe_code)]

pub mod commands;
pub mod console;
pub mod deploy;
pub mod dlq_admin;
pub mod reconcile;
pub mod status;
