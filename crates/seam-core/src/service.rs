//! What a service implements: its commands and how they change its model.
//!
//! There is one apply path (seed 000): a command from the HTTP API, a command translated from a
//! foreign event and a redriven dead letter all run through [`Service::apply`] against the same
//! staged store view. Commands built from foreign events must be getOrCreate-style: a reference to
//! an unknown entity creates a placeholder instead of failing, because a foreign event is a fact
//! that cannot be vetoed.

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

use crate::codec::{Catalog, CatalogError};
use crate::fault::{Class, Classify};
use crate::store::{JournalEntry, Store, StoreError, WriteSet};

/// A service's domain logic. Implementations hold no state of their own: the model lives in the
/// store, so it is durable, shared with snapshots and rebuilt on replay.
pub trait Service: Send + Sync + 'static {
    /// The service's commands.
    type Command: Send + std::fmt::Debug + 'static;

    /// Applies one command. Reads and writes go through `ctx`; events are emitted with
    /// [`Apply::emit`]. Returning an error discards everything this command staged.
    /// Must be deterministic and idempotent for commands translated from foreign events.
    fn apply(&self, ctx: &mut Apply<'_>, command: &Self::Command) -> Result<(), ApplyError>;

    /// Writes the service's state as state-transfer events (in its own published schemas) for a
    /// snapshot: what a new consumer needs to build its replica without reading the whole topic.
    /// Services that do not offer snapshots keep the default.
    fn snapshot(&self, out: &mut SnapshotOut<'_>) -> Result<(), ApplyError> {
        let _ = out;
        Err(ApplyError::rejected("this service does not export snapshots"))
    }

    /// The parts of the model that are a pure function of foreign events: what `seam replay` may
    /// rebuild from the topics and swap in. A part written by the service's own commands too
    /// cannot be rebuilt from topics and must not be declared. Default: none.
    fn replicas(&self) -> Vec<Replica> {
        Vec::new()
    }

    /// Whether `command` is internal: issued only by the service's translators (and so by
    /// redrive and replay), never sent by a client. `POST /commands` refuses an internal command
    /// with 403, so a replica changes only through the events it replicates. Default: none is.
    fn is_internal(&self, command: &Self::Command) -> bool {
        let _ = command;
        false
    }
}

/// A replica of foreign data in a service's model: every model key under `prefix` is written
/// only by commands translated from `sources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// Model key prefix (e.g. `candidate/`).
    pub prefix: &'static str,
    /// The source services whose events build it; empty: every source the service reads.
    pub sources: &'static [&'static str],
}

/// The read-only view and output of [`Service::snapshot`]. Reads stream from the store and
/// records stream out as they are emitted (to a spool file while a node exports), so a snapshot
/// of any size is made in constant memory as long as the service does not collect what it reads.
pub struct SnapshotOut<'a> {
    pub(crate) store: &'a Store,
    pub(crate) catalog: &'a Catalog,
    out: Output,
}

enum Output {
    Memory(Vec<(String, String, Vec<u8>)>),
    Spool(crate::snapshot::spool::RawWriter),
}

impl<'a> SnapshotOut<'a> {
    /// A view over `store` collecting the records in memory (for tools and tests).
    pub fn new(store: &'a Store, catalog: &'a Catalog) -> Self {
        Self {
            store,
            catalog,
            out: Output::Memory(Vec::new()),
        }
    }

    /// A view over `store` writing the records to `spool` as they come.
    #[doc(hidden)] // for the runtime (seam), not for services
    pub fn spooled(store: &'a Store, catalog: &'a Catalog, spool: crate::snapshot::spool::RawWriter) -> Self {
        Self {
            store,
            catalog,
            out: Output::Spool(spool),
        }
    }

    /// Every model value whose key starts with `prefix`, in key order, read as the iteration
    /// goes (emitting while iterating is fine).
    pub fn scan<T: DeserializeOwned>(&self, prefix: &str) -> Result<Scan<'a, T>, ApplyError> {
        Ok(Scan {
            inner: self.store.model_iter(prefix),
            _t: std::marker::PhantomData,
        })
    }

    /// The model value at `key` (a lookup while exporting, instead of collecting a map).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ApplyError> {
        match self.store.model_get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| ApplyError::Model {
                key: key.to_string(),
                detail: e.to_string(),
            }),
        }
    }

    /// Adds a state-transfer record about `subject`.
    pub fn emit<E: Event>(&mut self, subject: &str, event: &E) -> Result<(), ApplyError> {
        let body = self.catalog.encode(E::RECORD, event)?;
        self.emit_encoded(subject, E::RECORD, body)
    }

    /// Adds a state-transfer record about `subject` that is already encoded with the catalog's
    /// schema of `record`: for services whose records are not Rust types known at build time (a
    /// CDC source derives them from its tables' columns).
    pub fn emit_encoded(&mut self, subject: &str, record: &str, body: Vec<u8>) -> Result<(), ApplyError> {
        self.catalog.record(record)?;
        match &mut self.out {
            Output::Memory(records) => records.push((subject.to_string(), record.to_string(), body)),
            Output::Spool(spool) => spool.append(subject, record, &body).map_err(|e| {
                ApplyError::Store(StoreError::Corrupt {
                    what: "snapshot spool",
                    detail: e.to_string(),
                })
            })?,
        }
        Ok(())
    }

    /// The service's catalog: the schemas records are encoded with.
    pub fn catalog(&self) -> &Catalog {
        self.catalog
    }

    /// The records collected in memory: `(subject, record full name, Avro body)` (none when
    /// they went to a spool).
    pub fn into_records(self) -> Vec<(String, String, Vec<u8>)> {
        match self.out {
            Output::Memory(records) => records,
            Output::Spool(_) => Vec::new(),
        }
    }

    /// Finishes the spool; how many records it holds.
    #[doc(hidden)] // for the runtime (seam), not for services
    pub fn finish(self) -> std::io::Result<u64> {
        match self.out {
            Output::Memory(records) => Ok(records.len() as u64),
            Output::Spool(spool) => spool.finish(),
        }
    }
}

/// Model values under a prefix, decoded one at a time ([`SnapshotOut::scan`]).
pub struct Scan<'a, T> {
    inner: crate::store::ModelIter<'a>,
    _t: std::marker::PhantomData<T>,
}

impl<T: DeserializeOwned> Iterator for Scan<'_, T> {
    type Item = Result<(String, T), ApplyError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (k, v) = match self.inner.next()? {
            Ok(pair) => pair,
            Err(e) => return Some(Err(e.into())),
        };
        Some(match serde_json::from_slice(&v) {
            Ok(t) => Ok((k, t)),
            Err(e) => Err(ApplyError::Model {
                key: k,
                detail: e.to_string(),
            }),
        })
    }
}

/// An event type a service emits; its Rust type must match `schemas/<service>/<Record>.avsc`.
pub trait Event: Serialize {
    /// Full name of the Avro record (`namespace.Name`).
    const RECORD: &'static str;
}

/// Why a command was not applied.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// The domain refused the command (only legitimate for the service's own commands; a refused
    /// translated command is dead-lettered, since foreign events cannot be vetoed).
    #[error("{0}")]
    Rejected(String),
    /// An emitted event does not fit its schema (a bug in the service).
    #[error(transparent)]
    Encode(#[from] CatalogError),
    /// A stored model value does not decode into the type asked for.
    #[error("model value {key} does not decode: {detail}")]
    Model {
        /// Model key.
        key: String,
        /// Cause.
        detail: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The service's code panicked (a bug): for a foreign event, the event is dead-lettered with
    /// kind `panic`; its staged writes are discarded either way.
    #[error("the service panicked: {0}")]
    Panicked(String),
}

impl Classify for ApplyError {
    fn class(&self) -> Class {
        match self {
            Self::Rejected(_) | Self::Encode(_) | Self::Panicked(_) => Class::Poison,
            Self::Model { .. } | Self::Store(_) => Class::Fatal,
        }
    }
}

impl ApplyError {
    /// A rejection with a message saying what is wrong.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::Rejected(message.into())
    }
}

/// Where an applied command came from; becomes the correlation and causation of its events.
#[derive(Debug, Clone, Default)]
pub struct Cause {
    /// The business flow (propagated from the foreign event or given by the API caller).
    pub correlation_id: Option<String>,
    /// The foreign event that caused the command.
    pub causation_id: Option<String>,
    /// The `traceparent` the events of the command carry (see `seam::trace`).
    pub trace: Option<String>,
}

/// Applies one command to `set` the way the runtime's writer does, without the runtime: its
/// writes are kept when it succeeds and dropped when it fails (a panic in `apply` included). For
/// a service's unit tests over [`Store::in_memory`]; `set.entries()` then holds what it emitted.
pub fn apply_command<S: Service>(
    service: &S,
    store: &Store,
    set: &mut WriteSet,
    catalog: &Catalog,
    command: &S::Command,
) -> Result<(), ApplyError> {
    let cause = Cause::default();
    let result = crate::fault::panic::catch(|| service.apply(&mut Apply::new(store, set, catalog, &cause, 0), command))
        .map_err(ApplyError::Panicked)
        .and_then(|applied| applied);
    match result {
        Ok(()) => set.keep(),
        Err(_) => set.discard(),
    }
    result
}

/// The view a command runs against: the model (with this group's staged writes) and the
/// journal to emit into.
pub struct Apply<'a> {
    pub(crate) store: &'a Store,
    pub(crate) set: &'a mut WriteSet,
    pub(crate) catalog: &'a Catalog,
    pub(crate) cause: &'a Cause,
    pub(crate) now_ms: i64,
    pub(crate) emitted: Vec<u64>,
}

impl<'a> Apply<'a> {
    /// The seqs of the events emitted so far, taken (for the runtime's writer).
    #[doc(hidden)]
    pub fn take_emitted(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.emitted)
    }

    /// A context over a write set (the runtime builds these; public for model tests and tools).
    pub fn new(store: &'a Store, set: &'a mut WriteSet, catalog: &'a Catalog, cause: &'a Cause, now_ms: i64) -> Self {
        Self {
            store,
            set,
            catalog,
            cause,
            now_ms,
            emitted: Vec::new(),
        }
    }

    /// The model value at `key`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ApplyError> {
        match self.set.model_get(self.store, key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| ApplyError::Model {
                key: key.to_string(),
                detail: e.to_string(),
            }),
        }
    }

    /// Every model value whose key starts with `prefix`, in key order.
    pub fn scan<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, T)>, ApplyError> {
        self.set
            .model_scan(self.store, prefix)?
            .into_iter()
            .map(|(k, v)| match serde_json::from_slice(&v) {
                Ok(t) => Ok((k, t)),
                Err(e) => Err(ApplyError::Model {
                    key: k,
                    detail: e.to_string(),
                }),
            })
            .collect()
    }

    /// Stores `value` at `key`.
    pub fn put<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), ApplyError> {
        let bytes = serde_json::to_vec(value).map_err(|e| ApplyError::Model {
            key: key.to_string(),
            detail: e.to_string(),
        })?;
        self.set.model_put(key, Some(bytes));
        Ok(())
    }

    /// getOrCreate for the service's own commands that refer to foreign data not arrived yet
    /// (an order for a customer the customer service has not announced): stores `value` at
    /// `key` unless something is there, and marks it as a placeholder. `seam replay` rebuilds a
    /// replica from the topics, where a placeholder never was, and keeps a marked key while the
    /// rebuilt replica lacks it; once the foreign data arrives the rebuilt value is the truth, so
    /// put in a placeholder only what that data will overwrite. Returns whether it created it.
    pub fn put_placeholder<T: Serialize>(&mut self, key: &str, value: &T) -> Result<bool, ApplyError> {
        if self.set.model_get(self.store, key)?.is_some() {
            return Ok(false);
        }
        self.put(key, value)?;
        self.set.mark_placeholder(key, true);
        Ok(true)
    }

    /// Removes the value at `key`.
    pub fn remove(&mut self, key: &str) {
        self.set.model_put(key, None);
    }

    /// Appends an event about `subject` to the journal; it is published after the commit is
    /// durable. Returns its seq.
    pub fn emit<E: Event>(&mut self, subject: &str, event: &E) -> Result<u64, ApplyError> {
        let body = self.catalog.encode(E::RECORD, event)?;
        self.emit_encoded(subject, E::RECORD, body)
    }

    /// Appends an event about `subject` whose body is already encoded with the catalog's schema
    /// of `record`: for services whose records are not Rust types known at build time (a CDC
    /// source derives them from its tables' columns). Returns its seq.
    pub fn emit_encoded(&mut self, subject: &str, record: &str, body: Vec<u8>) -> Result<u64, ApplyError> {
        let schema = Some(self.catalog.record(record)?.fingerprint);
        let seq = self.set.append(
            self.store,
            JournalEntry {
                seq: 0,
                subject: subject.to_string(),
                record: record.to_string(),
                time_ms: self.now_ms,
                correlation_id: self.cause.correlation_id.clone(),
                causation_id: self.cause.causation_id.clone(),
                body,
                prev: None,
                schema,
                trace: self.cause.trace.clone(),
            },
        )?;
        self.emitted.push(seq);
        Ok(seq)
    }

    /// The service's catalog: the schemas events are encoded with.
    pub fn catalog(&self) -> &Catalog {
        self.catalog
    }

    /// When the command is applied (milliseconds since the epoch); use it instead of the clock
    /// so replays are deterministic.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a counter, then refuses or panics when asked to.
    struct Counter;

    impl Service for Counter {
        type Command = &'static str;

        fn apply(&self, ctx: &mut Apply<'_>, command: &&'static str) -> Result<(), ApplyError> {
            let n = ctx.get::<u32>("n")?.unwrap_or(0);
            ctx.put("n", &(n + 1))?;
            match *command {
                "refuse" => Err(ApplyError::rejected("no")),
                "panic" => panic!("a bug"),
                _ => Ok(()),
            }
        }
    }

    #[test]
    fn apply_command_keeps_what_succeeds_and_drops_what_fails_or_panics() {
        let (store, catalog) = (Store::in_memory(), Catalog::default());
        let mut set = store.write_set().expect("write set");
        apply_command(&Counter, &store, &mut set, &catalog, &"count").expect("applies");
        let refused = apply_command(&Counter, &store, &mut set, &catalog, &"refuse");
        assert!(matches!(refused, Err(ApplyError::Rejected(_))), "{refused:?}");
        let panicked = apply_command(&Counter, &store, &mut set, &catalog, &"panic");
        assert!(matches!(panicked, Err(ApplyError::Panicked(_))), "{panicked:?}");
        let n: Option<u32> = set
            .model_get(&store, "n")
            .expect("read")
            .map(|v| serde_json::from_slice(&v).expect("a number"));
        assert_eq!(n, Some(1), "only the successful command's write is kept");
    }
}
