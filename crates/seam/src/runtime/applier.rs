//! The writer's apply path without Kafka: the same code that takes in foreign events (positions,
//! idempotency by event id, parking) and applies own commands, driven directly. Replays, offline
//! tools and property tests (convergence under any interleaving) use it, so what they prove
//! holds for the running service.

use std::sync::Arc;

use super::pipeline::{Prepared, RawEvent};
use super::progress::Progress;
use super::writer::{Inbound, Writer};
use super::RuntimeError;
use crate::codec::Catalog;
use crate::metrics::Metrics;
use crate::offsets::OffsetMap;
use crate::service::{ApplyError, Cause, Service};
use crate::store::Store;

/// A service's apply path over a store, driven synchronously.
pub struct Applier<S: Service> {
    writer: Writer<S>,
    positions: OffsetMap,
}

impl<S: Service> Applier<S> {
    /// An applier for `service` over `store` (nothing else may write the store meanwhile).
    pub fn new(name: &str, store: Store, service: S, catalog: Catalog) -> Result<Self, RuntimeError> {
        let positions = store.positions()?;
        Ok(Self {
            writer: Writer {
                journals: Default::default(),
                name: name.to_string(),
                service: Arc::new(service),
                store,
                catalog: Arc::new(catalog),
                metrics: Metrics::new(name),
                durable: Arc::new(Progress::new(0)),
                outbox: Arc::new(Progress::new(0)),
                recent: None,
            },
            positions,
        })
    }

    /// Takes in one foreign event already translated to `commands`, exactly as the consumer
    /// does: skipped if below the position or already applied by id, parked if its subject is,
    /// applied with its position in one write otherwise.
    pub fn take_in(&mut self, raw: RawEvent, commands: Vec<S::Command>) -> Result<(), RuntimeError> {
        let prepared = if commands.is_empty() {
            Prepared::Filtered
        } else {
            Prepared::Commands(commands)
        };
        let mut group = self.writer.group()?;
        self.writer
            .foreign(&mut group, &mut self.positions, vec![Inbound { raw, prepared }])?;
        self.writer.commit_quietly(group)
    }

    /// Applies one of the service's own commands.
    pub fn execute(&mut self, command: &S::Command) -> Result<Vec<u64>, ApplyError> {
        let mut group = self.writer.group().map_err(|e| ApplyError::Rejected(e.to_string()))?;
        let result = self.writer.command(&mut group.set, command, &Cause::default());
        self.writer
            .commit_quietly(group)
            .map_err(|e| ApplyError::Rejected(e.to_string()))?;
        result
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.writer.store
    }
}
