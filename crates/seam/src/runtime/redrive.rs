//! Redrive: re-applying a consumer's parked dead letters, in order per subject, once their
//! cause is fixed (`seam dlq redrive`).
//!
//! The letters are read from the store in pages and decoded and translated here, off the
//! writer: a redrive that needs the registry while it is down (schema caches are empty after a
//! restart) waits on this thread while the writer keeps committing everything else, and a
//! registry refusal fails the letters it concerns instead of stopping the node. The writer gets
//! the prepared letters in bounded chunks and applies each chunk in one write, checking that
//! every letter is still parked; a subject whose letter fails again stays parked with everything
//! behind it, so order holds across chunks.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::dlq::RedriveRequest;
use crate::store::{Parked, Store};

use super::pipeline::{Pipeline, Prepared, RawEvent};
use super::writer::Request;
use super::RuntimeError;

/// Letters applied in one write at most; bounds the memory and the writer's time per chunk.
const CHUNK: usize = 256;

/// What a redrive did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RedriveSummary {
    /// Dead letters applied (or found already applied).
    pub redriven: usize,
    /// Dead letters that failed again and stay parked (with everything behind them).
    pub failed: usize,
}

/// One parked letter, prepared for the writer.
pub struct Item<C> {
    pub(crate) parked: Parked,
    pub(crate) raw: RawEvent,
    pub(crate) prepared: Prepared<C>,
}

/// The writer's answer for one chunk.
#[derive(Debug, Default)]
pub struct ChunkOutcome {
    /// What the chunk did.
    pub summary: RedriveSummary,
    /// Subjects (topic, subject) whose letter failed: the rest of them stays parked.
    pub blocked: Vec<(String, String)>,
}

/// One page of parked letters, prepared off the writer.
pub struct Page<C> {
    /// The letters the request selects, prepared.
    pub items: Vec<Item<C>>,
    /// Whether no letters follow.
    pub last: bool,
    /// Where the next page starts.
    pub cursor: Option<Vec<u8>>,
}

/// Reads the page of parked letters after `cursor` and prepares the ones `request` selects,
/// skipping subjects already `blocked`. `prepare` decodes and translates one letter (the
/// pipeline's, with its retries); a registry refusal fails that letter, not the node.
pub fn page<C>(
    store: &Store,
    request: &RedriveRequest,
    cursor: Option<&[u8]>,
    blocked: &HashSet<(String, String)>,
    mut prepare: impl FnMut(&RawEvent) -> Result<Prepared<C>, RuntimeError>,
) -> Result<Page<C>, RuntimeError> {
    let letters = store.parked_page(cursor, CHUNK)?;
    let last = letters.len() < CHUNK;
    let cursor = letters
        .last()
        .map(|p| p.key.clone())
        .or_else(|| cursor.map(<[u8]>::to_vec));
    let mut items = Vec::new();
    for parked in letters {
        let letter = &parked.letter;
        let subject = letter.subject.clone().unwrap_or_default();
        if request.subject.as_ref().is_some_and(|s| *s != subject)
            || request.topic.as_ref().is_some_and(|t| *t != letter.topic)
            || blocked.contains(&(letter.topic.clone(), subject))
        {
            continue;
        }
        let raw = RawEvent::from_letter(letter);
        let prepared = match prepare(&raw) {
            Ok(p) => p,
            Err(RuntimeError::Registry(reason)) => Prepared::Poison {
                kind: "registry".into(),
                reason: format!("the schema registry refused: {reason}"),
            },
            Err(e) => return Err(e),
        };
        items.push(Item { parked, raw, prepared });
    }
    Ok(Page { items, last, cursor })
}

/// Runs redrive requests for one node.
pub(crate) struct Redriver<C> {
    pub store: Store,
    pub pipeline: Arc<Pipeline<C>>,
    pub writer: mpsc::Sender<Request<C>>,
    pub cancel: CancellationToken,
}

impl<C: Send + 'static> Redriver<C> {
    /// Redrives what `request` selects; blocking (run it on its own thread). `control` is the
    /// DLQ control reader's position to store with the last chunk, so a crash re-runs the
    /// request (already applied letters are gone by then).
    pub fn run(
        &self,
        request: &RedriveRequest,
        control: Option<(String, i32, i64)>,
    ) -> Result<RedriveSummary, RuntimeError> {
        let mut total = RedriveSummary::default();
        let mut blocked: HashSet<(String, String)> = HashSet::new();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let Page {
                items,
                last: last_page,
                cursor: next,
            } = page(&self.store, request, cursor.as_deref(), &blocked, |raw| {
                self.pipeline.prepare(raw, &self.cancel)
            })?;
            cursor = next;
            if items.is_empty() && !last_page {
                continue;
            }
            let (reply, answer) = oneshot::channel();
            self.writer
                .blocking_send(Request::Redrive {
                    items,
                    control: if last_page { control.clone() } else { None },
                    reply,
                })
                .map_err(|_| RuntimeError::WriterGone)?;
            let outcome = answer.blocking_recv().map_err(|_| RuntimeError::WriterGone)??;
            total.redriven += outcome.summary.redriven;
            total.failed += outcome.summary.failed;
            blocked.extend(outcome.blocked);
            if last_page {
                return Ok(total);
            }
        }
    }
}
