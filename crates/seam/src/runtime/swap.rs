//! A replay's comparison of its rebuilt shadow store with the live store, and the swap: run as
//! one exclusive step on the live writer, so both are seen at the same cut.
//!
//! The swap is more than the replica's model keys. What the live store keeps about each replayed
//! source (positions, which events were taken in, which subjects are parked) is replaced by the
//! shadow's in the same write, and the dead letters of both sides are matched event by event:
//! - a live letter the rebuild applied is resolved (removed, and a `resolved` record goes to the
//!   DLQ), so a later redrive cannot apply its event a second time;
//! - a letter only the rebuild has (the rebuild dead-lettered something the live store applied)
//!   means the swap would revert that subject: it is refused and reported, unless the operator
//!   accepts, in which case the letter is parked in the live store and sent to the DLQ;
//! - letters on both sides stay as they are.
//!
//! Both stores are read as key-ordered streams; only the differences are held in memory.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::RuntimeError;
use crate::dlq;
use crate::store::engine::Pair;
use crate::store::{DeadLetter, Parked, Store, StoreError, WriteSet};

/// Items listed in a report at most (counts are always exact).
pub(crate) const LISTED: usize = 100;

/// A dead letter as a replay report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LetterReport {
    /// Source topic.
    pub topic: String,
    /// Source partition (-1: not read from Kafka).
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Subject.
    pub subject: Option<String>,
    /// `seam-event-id`.
    pub event_id: Option<String>,
    /// Short failure name (`translator`, `parked`, ...).
    pub kind: String,
    /// Why.
    pub reason: String,
}

impl From<&DeadLetter> for LetterReport {
    fn from(l: &DeadLetter) -> Self {
        Self {
            topic: l.topic.clone(),
            partition: l.partition,
            offset: l.offset,
            subject: l.subject.clone(),
            event_id: l.event_id().map(str::to_string),
            kind: l.kind.clone(),
            reason: l.reason.clone(),
        }
    }
}

/// How the replicas of both stores differ.
pub(crate) struct Diff {
    /// Differing model keys with the shadow's value (`None`: only the live store has it).
    pub keys: Vec<(String, Option<Vec<u8>>)>,
    /// SHA-256 over the live replicas.
    pub live_digest: String,
    /// SHA-256 over the rebuilt replicas.
    pub shadow_digest: String,
    /// Placeholders the rebuild has real data for: their marks go with the swap.
    pub settled: Vec<String>,
    /// Placeholders the rebuild has no data for yet: kept as they are.
    pub kept: usize,
}

/// How the dead letters of the replayed sources differ.
#[derive(Default)]
pub(crate) struct Letters {
    /// Live letters the rebuild applied.
    pub resolved: Vec<Parked>,
    /// Letters only the rebuild has.
    pub new: Vec<DeadLetter>,
}

/// Walks two key-ordered ranges side by side: `each(key, live value, shadow value)` for every key
/// in either.
fn merge<'a>(
    live: Box<dyn Iterator<Item = Result<Pair, StoreError>> + 'a>,
    shadow: Box<dyn Iterator<Item = Result<Pair, StoreError>> + 'a>,
    mut each: impl FnMut(&[u8], Option<&[u8]>, Option<&[u8]>),
) -> Result<(), StoreError> {
    let (mut live, mut shadow) = (live.peekable(), shadow.peekable());
    loop {
        let order = match (live.peek(), shadow.peek()) {
            (None, None) => return Ok(()),
            (Some(Err(_)), _) => return Err(live.next().and_then(Result::err).unwrap_or_else(gone)),
            (_, Some(Err(_))) => return Err(shadow.next().and_then(Result::err).unwrap_or_else(gone)),
            (Some(Ok((l, _))), Some(Ok((s, _)))) => l.cmp(s),
            (Some(Ok(_)), None) => std::cmp::Ordering::Less,
            (None, Some(Ok(_))) => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                if let Some(Ok((k, v))) = live.next() {
                    each(&k, Some(&v), None);
                }
            }
            std::cmp::Ordering::Greater => {
                if let Some(Ok((k, v))) = shadow.next() {
                    each(&k, None, Some(&v));
                }
            }
            std::cmp::Ordering::Equal => {
                if let (Some(Ok((k, l))), Some(Ok((_, s)))) = (live.next(), shadow.next()) {
                    each(&k, Some(&l), Some(&s));
                }
            }
        }
    }
}

fn gone() -> StoreError {
    StoreError::Corrupt {
        what: "range",
        detail: "an iterator error vanished".into(),
    }
}

/// Compares the replicas (model keys under `prefixes`) of both stores. With `written_only` (a
/// targeted replay), only keys the shadow holds: a key only the live store has may belong to a
/// subject the rebuild did not read.
pub(crate) fn compare(
    live: &Store,
    shadow: &Store,
    prefixes: &[String],
    written_only: bool,
) -> Result<Diff, RuntimeError> {
    let (mut lh, mut sh) = (Sha256::new(), Sha256::new());
    let mut keys = Vec::new();
    let (mut settled, mut kept) = (Vec::new(), 0);
    let mut failure = None;
    for prefix in prefixes {
        let start = Store::model_range_start(prefix);
        merge(live.raw_range(&start), shadow.raw_range(&start), |k, l, s| {
            if written_only && s.is_none() {
                return;
            }
            let model_key = String::from_utf8_lossy(k.get(1..).unwrap_or_default()).into_owned();
            // An own command's placeholder: not in the topics, so never in a rebuild of them.
            let placeholder = match live.is_placeholder(&model_key) {
                Ok(p) => p,
                Err(e) => {
                    failure.get_or_insert(e);
                    false
                }
            };
            if placeholder {
                if s.is_none() {
                    kept += 1;
                    return;
                }
                settled.push(model_key.clone());
            }
            if let Some(v) = l {
                feed(&mut lh, &model_key, v);
            }
            if let Some(v) = s {
                feed(&mut sh, &model_key, v);
            }
            if l != s {
                keys.push((model_key, s.map(<[u8]>::to_vec)));
            }
        })?;
    }
    if let Some(e) = failure {
        return Err(e.into());
    }
    Ok(Diff {
        keys,
        live_digest: format!("{:x}", lh.finalize()),
        shadow_digest: format!("{:x}", sh.finalize()),
        settled,
        kept,
    })
}

fn feed(h: &mut Sha256, k: &str, v: &[u8]) {
    h.update((k.len() as u64).to_be_bytes());
    h.update(k.as_bytes());
    h.update((v.len() as u64).to_be_bytes());
    h.update(v);
}

/// Matches the dead letters of `topics` in both stores event by event; of `subjects` only, when
/// given (a targeted replay knows nothing of other subjects' letters).
pub(crate) fn letters(
    live: &Store,
    shadow: &Store,
    topics: &[String],
    subjects: Option<&std::collections::BTreeSet<String>>,
) -> Result<Letters, RuntimeError> {
    let mut out = Letters::default();
    let chosen = |p: &Parked| subjects.is_none_or(|s| p.letter.subject.as_ref().is_some_and(|x| s.contains(x)));
    for topic in topics {
        let mut live_letters = live.parked_of_topic(topic)?;
        live_letters.retain(|p| chosen(p));
        let mut shadow_letters = shadow.parked_of_topic(topic)?;
        shadow_letters.retain(|p| chosen(p));
        for s in &shadow_letters {
            if !live_letters.iter().any(|l| l.letter.same_event(&s.letter)) {
                out.new.push(s.letter.clone());
            }
        }
        for l in live_letters {
            if !shadow_letters.iter().any(|s| s.letter.same_event(&l.letter)) {
                out.resolved.push(l);
            }
        }
    }
    Ok(out)
}

/// Stages the swap: the differing model keys, the bookkeeping of `topics` copied from the shadow,
/// resolved letters removed (with their DLQ record), accepted new letters parked.
pub(crate) fn stage(
    live: &Store,
    shadow: &Store,
    set: &mut WriteSet,
    topics: &[String],
    diff: &Diff,
    letters: &Letters,
    when: &str,
) -> Result<(), RuntimeError> {
    for (key, value) in &diff.keys {
        set.model_put(key, value.clone());
    }
    for key in &diff.settled {
        set.mark_placeholder(key, false);
    }
    for topic in topics {
        for start in Store::source_bookkeeping(topic) {
            let mut writes = Vec::new();
            merge(live.raw_range(&start), shadow.raw_range(&start), |k, l, s| {
                if l != s {
                    writes.push((k.to_vec(), s.map(<[u8]>::to_vec)));
                }
            })?;
            for (k, v) in writes {
                set.stage_raw(k, v);
            }
        }
    }
    for parked in &letters.resolved {
        set.unpark_event(live, parked)?;
        set.queue_outbox(dlq::resolved_record(
            &parked.letter,
            &format!("the replay of {when} rebuilt the subject and applied this event"),
        ));
    }
    for letter in &letters.new {
        set.park(live, letter, dlq::dead_letter_record(letter))?;
    }
    set.keep();
    Ok(())
}
