//! Discarding dead letters: an operator settles letters that can never be redriven (a schema
//! gone from the registry, an event the service must not apply) without applying their events.
//!
//! One write removes the selected letters, marks their events as taken in (a redelivery does
//! not park them again), queues a `discarded` record per letter on the DLQ topic (who, why,
//! when: the topic keeps them for audit) and unparks the subject once none of its letters is
//! left. Letters not selected stay parked, in order; a redrive lets them through.

use std::sync::{Arc, Mutex};

use crate::dlq::{self, DiscardRequest};
use crate::store::{Parked, Store, WriteSet};

use super::pipeline::RawEvent;
use super::redrive::RedriveSummary;
use super::writer::ExclusiveJob;
use super::RuntimeError;

/// What a discard did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiscardSummary {
    /// Letters discarded.
    pub discarded: usize,
    /// Letters of the subject still parked after it (before any redrive).
    pub still_parked: usize,
    /// What redriving the rest did, when asked (`redrive_rest`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive: Option<RedriveSummary>,
}

/// The writer job for `request`; `control` is the DLQ control reader's position to store with
/// it (a crash re-runs the request; what it already discarded is gone by then). `strict`: a
/// request that matches no parked letter is an error (HTTP), not a no-op (a request read again
/// from the DLQ topic). The summary lands in `out`.
pub(crate) fn job(
    request: DiscardRequest,
    control: Option<(String, i32, i64)>,
    strict: bool,
    out: Arc<Mutex<DiscardSummary>>,
) -> ExclusiveJob {
    Box::new(move |store, set| {
        if let Some((topic, partition, next)) = &control {
            set.set_position(topic, *partition, *next);
        }
        let summary = discard(store, set, &request)?;
        if summary.discarded == 0 && strict {
            return Err(RuntimeError::Refused(format!(
                "no parked dead letter of {} matches{}{}; `seam dlq list` shows what is parked",
                request.subject,
                request.topic.as_ref().map(|t| format!(" from {t}")).unwrap_or_default(),
                if request.offsets.is_empty() {
                    String::new()
                } else {
                    format!(" at offsets {:?}", request.offsets)
                }
            )));
        }
        if let Ok(mut slot) = out.lock() {
            *slot = summary;
        }
        Ok(())
    })
}

fn discard(
    store: &Store,
    set: &mut WriteSet,
    request: &DiscardRequest,
) -> Result<DiscardSummary, crate::store::StoreError> {
    let mut topics: Vec<String> = store
        .dead_letter_counts()?
        .into_keys()
        .map(|(topic, _)| topic)
        .collect();
    topics.dedup();
    let mut summary = DiscardSummary::default();
    for topic in topics {
        if request.topic.as_ref().is_some_and(|t| *t != topic) {
            continue;
        }
        let letters: Vec<Parked> = store.parked(Some((&topic, &request.subject)))?;
        if letters.is_empty() {
            continue;
        }
        for parked in letters {
            if !set.is_parked_event(store, &parked.key)? {
                continue;
            }
            if !request.selects(&parked.letter) {
                summary.still_parked += 1;
                continue;
            }
            let letter = &parked.letter;
            if let Some(key) = RawEvent::from_letter(letter).key() {
                set.take(store, &key)?;
            }
            set.unpark_event(store, &parked)?;
            set.queue_outbox(dlq::discarded_record(letter, request));
            summary.discarded += 1;
        }
        if !set.has_parked_events(store, &topic, &request.subject)? {
            set.unpark_subject(&topic, &request.subject);
        }
    }
    Ok(summary)
}

/// A discard handed to the writer: the request to send, where its answer comes and where its
/// summary lands.
pub(crate) struct Queued<C> {
    pub request: super::writer::Request<C>,
    pub answer: tokio::sync::oneshot::Receiver<Result<(), RuntimeError>>,
    pub out: Arc<Mutex<DiscardSummary>>,
}

/// The writer request for `request` (see [`job`]).
pub(crate) fn queue<C>(request: &DiscardRequest, control: Option<(String, i32, i64)>, strict: bool) -> Queued<C> {
    let out = Arc::new(Mutex::new(DiscardSummary::default()));
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = job(request.clone(), control, strict, Arc::clone(&out));
    Queued {
        request: super::writer::Request::Exclusive { job, reply },
        answer,
        out,
    }
}

/// The summary a finished job left.
pub(crate) fn taken(out: &Mutex<DiscardSummary>) -> DiscardSummary {
    out.lock().map(|s| s.clone()).unwrap_or_default()
}
