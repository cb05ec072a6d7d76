//! CRUD services on PostgreSQL (seed 002, seed 004's "integrating CRUD systems").
//!
//! A `postgres-cdc` source turns the committed row changes of a CRUD service's tables into seam
//! events: read by logical replication (`pgoutput`), journaled and published by a seam node like
//! any service's events, with the slot's position confirmed only once the journal write is
//! durable.
#![forbid(unsafe_code)]

pub mod adapter;
pub mod cdc;
pub mod pgoutput;
pub mod schema;
pub mod sink;
pub mod source;
