//! The records on a consumer's DLQ topic (`<consumer>.dlq`) and what they mean.
//!
//! Three kinds share the topic, told apart by the `seam-dlq-kind` header:
//! - `dead-letter`: a foreign event the consumer could not take in, with its original key, value
//!   and headers, its source coordinates and the reason (class, kind, message);
//! - `redrive-request`: written by `seam dlq redrive`; the running consumer picks it up and
//!   re-applies the parked events of a subject (or of all subjects), in order;
//! - `redriven` / `redrive-failed`: the consumer's answer, one per dead letter it retried;
//! - `discard-request`: written by `seam dlq discard`: the operator settles dead letters that can
//!   never be redriven, with a reason; the consumer answers `discarded` per letter, with who, why
//!   and when (the topic keeps them: it is the audit trail);
//! - `resolved`: a replay's swap applied the letter's event.
//!
//! Records may appear twice after a crash (the DLQ is fed from a durable outbox, at least once),
//! so readers key dead letters by their source coordinates.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::envelope;
use crate::store::{DeadLetter, OutboxRecord};

/// Header naming the record kind.
pub const KIND: &str = "seam-dlq-kind";
/// Header: the consumer.
pub const CONSUMER: &str = "seam-dlq-consumer";
/// Header: source topic.
pub const TOPIC: &str = "seam-dlq-topic";
/// Header: source partition.
pub const PARTITION: &str = "seam-dlq-partition";
/// Header: source offset.
pub const OFFSET: &str = "seam-dlq-offset";
/// Header: error class (`poison`, or `parked` behind an earlier dead letter).
pub const CLASS: &str = "seam-dlq-class";
/// Header: stable short name of the failure.
pub const ERROR: &str = "seam-dlq-error";
/// Header: the full reason.
pub const REASON: &str = "seam-dlq-reason";
/// Header: the subject.
pub const SUBJECT: &str = "seam-dlq-subject";
/// Header: when, RFC 3339.
pub const TIME: &str = "seam-dlq-time";
/// Header: the source event's `seam-event-id`, when it has one.
pub const EVENT_ID: &str = "seam-dlq-event-id";
/// Header: the snapshot (`<source>@<seq>`) a bootstrap record came from.
pub const SNAPSHOT: &str = "seam-dlq-snapshot";

/// `dead-letter`.
pub const KIND_DEAD_LETTER: &str = "dead-letter";
/// `redrive-request`.
pub const KIND_REDRIVE_REQUEST: &str = "redrive-request";
/// `redriven`.
pub const KIND_REDRIVEN: &str = "redriven";
/// `redrive-failed`.
pub const KIND_REDRIVE_FAILED: &str = "redrive-failed";
/// `resolved`: a replay rebuilt the subject and applied the event; nothing is left to redrive.
pub const KIND_RESOLVED: &str = "resolved";
/// `discard-request`.
pub const KIND_DISCARD_REQUEST: &str = "discard-request";
/// `discarded`: an operator settled the letter without applying its event.
pub const KIND_DISCARDED: &str = "discarded";
/// Header: who asked (a discard).
pub const BY: &str = "seam-dlq-by";
/// Header: the source offsets a discard selects, comma-separated (none: every letter of the subject).
pub const OFFSETS: &str = "seam-dlq-offsets";
/// Header: `true` when a discard is to redrive the subject's remaining letters after it.
pub const REDRIVE_REST: &str = "seam-dlq-redrive-rest";

fn h(name: &str, value: impl Into<String>) -> (String, Option<Vec<u8>>) {
    (name.to_string(), Some(value.into().into_bytes()))
}

fn coordinates(letter: &DeadLetter) -> Vec<(String, Option<Vec<u8>>)> {
    let mut headers = vec![
        h(CONSUMER, letter.consumer.clone()),
        h(TOPIC, letter.topic.clone()),
        h(PARTITION, letter.partition.to_string()),
        h(OFFSET, letter.offset.to_string()),
    ];
    if let Some(subject) = &letter.subject {
        headers.push(h(SUBJECT, subject.clone()));
    }
    if let Some(id) = letter
        .headers
        .iter()
        .find(|(k, _)| k == envelope::EVENT_ID)
        .and_then(|(_, v)| String::from_utf8(v.clone()?).ok())
    {
        headers.push(h(EVENT_ID, id));
    }
    if let Some(tag) = letter
        .headers
        .iter()
        .find(|(k, _)| k == SNAPSHOT_HEADER)
        .and_then(|(_, v)| String::from_utf8(v.clone()?).ok())
    {
        headers.push(h(SNAPSHOT, tag));
    }
    headers
}

/// The header a bootstrap puts on each snapshot record it takes in: `<source>@<seq>`.
pub const SNAPSHOT_HEADER: &str = "seam-snapshot";

/// The DLQ record for a dead letter: original key, value and headers plus the `seam-dlq-*` ones.
pub fn dead_letter_record(letter: &DeadLetter) -> OutboxRecord {
    let mut headers = letter.headers.clone();
    headers.push(h(KIND, KIND_DEAD_LETTER));
    headers.extend(coordinates(letter));
    let class = match letter.kind.as_str() {
        "parked" => "parked",
        _ => "poison",
    };
    headers.push(h(CLASS, class));
    headers.push(h(ERROR, letter.kind.clone()));
    headers.push(h(REASON, letter.reason.clone()));
    headers.push(h(TIME, envelope::rfc3339(letter.time_ms)));
    OutboxRecord {
        key: letter.key.clone(),
        value: letter.value.clone(),
        headers,
    }
}

/// The consumer's answer for one retried dead letter.
pub fn outcome_record(letter: &DeadLetter, failure: Option<&str>) -> OutboxRecord {
    let mut headers = vec![h(
        KIND,
        if failure.is_some() {
            KIND_REDRIVE_FAILED
        } else {
            KIND_REDRIVEN
        },
    )];
    headers.extend(coordinates(letter));
    if let Some(reason) = failure {
        headers.push(h(REASON, reason));
    }
    headers.push(h(TIME, envelope::rfc3339(envelope::now_ms())));
    OutboxRecord {
        key: letter.key.clone(),
        value: None,
        headers,
    }
}

/// The consumer's record that a replay's swap applied a dead letter's event (it is no longer
/// parked, and a redrive finds nothing).
pub fn resolved_record(letter: &DeadLetter, how: &str) -> OutboxRecord {
    let mut headers = vec![h(KIND, KIND_RESOLVED)];
    headers.extend(coordinates(letter));
    headers.push(h(REASON, how));
    headers.push(h(TIME, envelope::rfc3339(envelope::now_ms())));
    OutboxRecord {
        key: letter.key.clone(),
        value: None,
        headers,
    }
}

/// A request to redrive parked events: of one subject, or all; of one source topic, or all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveRequest {
    /// Only this subject.
    pub subject: Option<String>,
    /// Only this source topic.
    pub topic: Option<String>,
}

/// The record `seam dlq redrive` writes.
pub fn redrive_request_record(request: &RedriveRequest) -> OutboxRecord {
    let mut headers = vec![
        h(KIND, KIND_REDRIVE_REQUEST),
        h(TIME, envelope::rfc3339(envelope::now_ms())),
    ];
    if let Some(subject) = &request.subject {
        headers.push(h(SUBJECT, subject.clone()));
    }
    if let Some(topic) = &request.topic {
        headers.push(h(TOPIC, topic.clone()));
    }
    OutboxRecord {
        key: request.subject.clone().map(String::into_bytes),
        value: None,
        headers,
    }
}

/// An operator's decision to settle dead letters without applying their events: the letters of
/// one subject (all, or those at `offsets`), with why and who. The subject is unparked once no
/// letter of it is left; with `redrive_rest` the letters it keeps are redriven right after.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscardRequest {
    /// The subject (e.g. `order/42`).
    pub subject: String,
    /// Only letters from this source topic (default: every source).
    #[serde(default)]
    pub topic: Option<String>,
    /// Only the letters at these source offsets (default: every letter of the subject).
    #[serde(default)]
    pub offsets: Vec<i64>,
    /// Why; kept with each discarded letter.
    pub reason: String,
    /// Who decided; kept with each discarded letter.
    #[serde(default)]
    pub by: String,
    /// Redrive the subject's remaining letters afterwards (skip one letter, let later ones through).
    #[serde(default)]
    pub redrive_rest: bool,
}

impl DiscardRequest {
    /// Whether the request can be acted on: a subject and a reason, at least.
    pub fn check(&self) -> Result<(), String> {
        if self.subject.trim().is_empty() {
            return Err("name the subject whose dead letters to discard (e.g. order/42)".into());
        }
        if self.reason.trim().is_empty() {
            return Err("give a reason: it is kept with every discarded letter for audit".into());
        }
        Ok(())
    }

    /// Whether `letter` is one this request discards.
    pub fn selects(&self, letter: &DeadLetter) -> bool {
        letter.subject.as_deref() == Some(self.subject.as_str())
            && self.topic.as_ref().is_none_or(|t| *t == letter.topic)
            && (self.offsets.is_empty() || self.offsets.contains(&letter.offset))
    }

    /// Read back from its DLQ record.
    pub fn from_record(record: &DlqRecord) -> Option<Self> {
        Some(Self {
            subject: record.get(SUBJECT)?.to_string(),
            topic: record.get(TOPIC).map(str::to_string),
            offsets: record
                .get(OFFSETS)
                .map(|o| o.split(',').filter_map(|n| n.trim().parse().ok()).collect())
                .unwrap_or_default(),
            reason: record.get(REASON).unwrap_or_default().to_string(),
            by: record.get(BY).unwrap_or_default().to_string(),
            redrive_rest: record.get(REDRIVE_REST) == Some("true"),
        })
    }
}

/// The record `seam dlq discard` writes.
pub fn discard_request_record(request: &DiscardRequest) -> OutboxRecord {
    let mut headers = vec![
        h(KIND, KIND_DISCARD_REQUEST),
        h(TIME, envelope::rfc3339(envelope::now_ms())),
        h(SUBJECT, request.subject.clone()),
        h(REASON, request.reason.clone()),
        h(BY, request.by.clone()),
    ];
    if let Some(topic) = &request.topic {
        headers.push(h(TOPIC, topic.clone()));
    }
    if !request.offsets.is_empty() {
        let offsets: Vec<String> = request.offsets.iter().map(i64::to_string).collect();
        headers.push(h(OFFSETS, offsets.join(",")));
    }
    if request.redrive_rest {
        headers.push(h(REDRIVE_REST, "true"));
    }
    OutboxRecord {
        key: Some(request.subject.clone().into_bytes()),
        value: None,
        headers,
    }
}

/// The consumer's record that a letter was discarded: who, why, when.
pub fn discarded_record(letter: &DeadLetter, request: &DiscardRequest) -> OutboxRecord {
    let mut headers = vec![h(KIND, KIND_DISCARDED)];
    headers.extend(coordinates(letter));
    headers.push(h(REASON, request.reason.clone()));
    headers.push(h(BY, request.by.clone()));
    headers.push(h(TIME, envelope::rfc3339(envelope::now_ms())));
    OutboxRecord {
        key: letter.key.clone(),
        value: None,
        headers,
    }
}

/// A DLQ record read back, reduced to its `seam-dlq-*` headers.
#[derive(Debug, Clone)]
pub struct DlqRecord {
    /// Offset on the DLQ topic.
    pub dlq_offset: i64,
    /// Partition of the DLQ topic.
    pub dlq_partition: i32,
    /// The `seam-dlq-*` headers.
    pub headers: BTreeMap<String, String>,
}

impl DlqRecord {
    /// From owned headers.
    pub fn new(dlq_partition: i32, dlq_offset: i64, pairs: &[(String, Option<Vec<u8>>)]) -> Self {
        let headers = pairs
            .iter()
            .filter(|(k, _)| k.starts_with("seam-dlq-"))
            .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.clone()?).ok()?)))
            .collect();
        Self {
            dlq_offset,
            dlq_partition,
            headers,
        }
    }

    /// A header value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The record kind.
    pub fn kind(&self) -> &str {
        self.get(KIND).unwrap_or_default()
    }

    /// `(topic, partition, offset)` of the source event.
    pub fn source(&self) -> Option<(String, i32, i64)> {
        Some((
            self.get(TOPIC)?.to_string(),
            self.get(PARTITION)?.parse().ok()?,
            self.get(OFFSET)?.parse().ok()?,
        ))
    }

    /// Which dead letter this record is about (see [`Identity`]).
    pub fn identity(&self) -> Option<Identity> {
        let (topic, partition, offset) = self.source()?;
        if partition >= 0 {
            return Some(Identity::Offset(topic, partition, offset));
        }
        if let Some(id) = self.get(EVENT_ID) {
            let (service, seq) = match envelope::parse_event_id(id) {
                Some((service, seq)) => (service.to_string(), seq),
                None => (id.to_string(), 0),
            };
            return Some(Identity::Event(topic, service, seq, id.to_string()));
        }
        if let Some(tag) = self.get(SNAPSHOT) {
            return Some(Identity::Snapshot(topic, tag.to_string(), offset));
        }
        Some(Identity::Offset(topic, partition, offset))
    }
}

/// What tells one dead letter from another. An event read from Kafka is its coordinates; one
/// that came without a Kafka offset is its event id (putEvents: every such letter is at
/// partition -1, offset -1) or its place in the snapshot it was bootstrapped from. Ordered by
/// topic, then coordinates, then events by service and seq.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identity {
    /// Topic, partition, offset.
    Offset(String, i32, i64),
    /// Topic, service and seq of the event id (for ordering), the event id.
    Event(String, String, u64, String),
    /// Topic, snapshot (`<source>@<seq>`), record index.
    Snapshot(String, String, i64),
}

/// One dead letter as `seam dlq list` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Listed {
    /// Consumer.
    pub consumer: String,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Subject.
    pub subject: Option<String>,
    /// The event's `seam-event-id`, when it has one.
    pub event_id: Option<String>,
    /// The snapshot (`<source>@<seq>`) a bootstrap record came from; `offset` is then its index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// `poison` or `parked`.
    pub class: String,
    /// Short failure name.
    pub error: String,
    /// Full reason.
    pub reason: String,
    /// When it was dead-lettered.
    pub time: String,
    /// `pending` (waiting for a redrive or a discard), `redriven`, `redrive-failed`, `resolved`
    /// (a replay applied it) or `discarded` (an operator settled it without applying it). Not
    /// to be confused with the class `parked`: held behind an earlier letter of its subject.
    pub status: String,
    /// Who discarded it, and why (status `discarded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discarded: Option<Discarded>,
    /// Why the last redrive failed.
    pub redrive_error: Option<String>,
    /// When the last redrive outcome was recorded.
    pub redrive_time: Option<String>,
}

impl Listed {
    /// Whether both describe the same dead letter (see [`Identity`]).
    pub fn same_letter(&self, other: &Listed) -> bool {
        (&self.topic, self.partition, self.offset, &self.event_id, &self.snapshot)
            == (
                &other.topic,
                other.partition,
                other.offset,
                &other.event_id,
                &other.snapshot,
            )
    }

    /// Where the event came from, for people: `topic/partition@offset`, or how it came without
    /// an offset.
    pub fn source_label(&self) -> String {
        match (&self.event_id, &self.snapshot) {
            _ if self.partition >= 0 => format!("{}/{}@{}", self.topic, self.partition, self.offset),
            (Some(id), _) => format!("{} (putEvents {id})", self.topic),
            (None, Some(tag)) => format!("{} (snapshot {tag} record {})", self.topic, self.offset),
            (None, None) => format!("{}/{}@{}", self.topic, self.partition, self.offset),
        }
    }
}

/// Who settled a dead letter without applying it, why and when.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Discarded {
    /// Who (as given to `seam dlq discard --by`, or the user who ran it).
    pub by: String,
    /// Why.
    pub reason: String,
    /// When, RFC 3339.
    pub time: String,
}

/// Folds the records of one DLQ topic into its dead letters with their current status.
pub fn fold(consumer: &str, records: &[DlqRecord]) -> Vec<Listed> {
    let mut letters: BTreeMap<Identity, Listed> = BTreeMap::new();
    for record in records {
        let (Some(identity), Some(source)) = (record.identity(), record.source()) else {
            continue;
        };
        match record.kind() {
            KIND_DEAD_LETTER => {
                letters.entry(identity).or_insert_with(|| Listed {
                    consumer: consumer.to_string(),
                    topic: source.0.clone(),
                    partition: source.1,
                    offset: source.2,
                    subject: record.get(SUBJECT).map(str::to_string),
                    event_id: record.get(EVENT_ID).map(str::to_string),
                    snapshot: record.get(SNAPSHOT).map(str::to_string),
                    class: record.get(CLASS).unwrap_or_default().to_string(),
                    error: record.get(ERROR).unwrap_or_default().to_string(),
                    reason: record.get(REASON).unwrap_or_default().to_string(),
                    time: record.get(TIME).unwrap_or_default().to_string(),
                    status: "pending".into(),
                    discarded: None,
                    redrive_error: None,
                    redrive_time: None,
                });
            }
            KIND_REDRIVEN => {
                if let Some(l) = letters.get_mut(&identity) {
                    l.status = KIND_REDRIVEN.into();
                    l.redrive_error = None;
                    l.redrive_time = record.get(TIME).map(str::to_string);
                }
            }
            KIND_RESOLVED => {
                if let Some(l) = letters.get_mut(&identity) {
                    l.status = KIND_RESOLVED.into();
                    l.redrive_error = None;
                    l.redrive_time = record.get(TIME).map(str::to_string);
                }
            }
            KIND_DISCARDED => {
                if let Some(l) = letters.get_mut(&identity) {
                    l.status = KIND_DISCARDED.into();
                    l.discarded = Some(Discarded {
                        by: record.get(BY).unwrap_or_default().to_string(),
                        reason: record.get(REASON).unwrap_or_default().to_string(),
                        time: record.get(TIME).unwrap_or_default().to_string(),
                    });
                    l.redrive_time = record.get(TIME).map(str::to_string);
                }
            }
            KIND_REDRIVE_FAILED => {
                if let Some(l) = letters.get_mut(&identity) {
                    if l.status != KIND_REDRIVEN && l.status != KIND_RESOLVED && l.status != KIND_DISCARDED {
                        l.status = KIND_REDRIVE_FAILED.into();
                        l.redrive_error = record.get(REASON).map(str::to_string);
                        l.redrive_time = record.get(TIME).map(str::to_string);
                    }
                }
            }
            _ => {}
        }
    }
    letters.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Class;

    fn letter(offset: i64, kind: &str) -> DeadLetter {
        DeadLetter {
            consumer: "c".into(),
            topic: "s.events".into(),
            partition: 1,
            offset,
            subject: Some("x/1".into()),
            key: Some(b"x/1".to_vec()),
            value: Some(vec![9]),
            headers: vec![("seam-event-id".into(), Some(b"s/1".to_vec()))],
            class: Class::Poison,
            kind: kind.into(),
            reason: "boom".into(),
            time_ms: 0,
        }
    }

    fn read_back(record: &OutboxRecord, offset: i64) -> DlqRecord {
        DlqRecord::new(0, offset, &record.headers)
    }

    #[test]
    fn duplicates_fold_into_one_letter_and_outcomes_set_the_status() {
        let first = dead_letter_record(&letter(5, "translator"));
        let second = dead_letter_record(&letter(6, "parked"));
        assert!(
            first.headers.iter().any(|(k, _)| k == "seam-event-id"),
            "original headers kept"
        );
        let records = vec![
            read_back(&first, 0),
            read_back(&first, 1),
            read_back(&second, 2),
            read_back(&outcome_record(&letter(5, "translator"), Some("still bad")), 3),
            read_back(&outcome_record(&letter(6, "parked"), None), 4),
        ];
        let listed = fold("c", &records);
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].status, "redrive-failed");
        assert_eq!(listed[0].redrive_error.as_deref(), Some("still bad"));
        assert_eq!(listed[0].class, "poison");
        assert_eq!(listed[1].status, "redriven");
        assert_eq!(listed[1].class, "parked");
    }

    #[test]
    fn letters_without_an_offset_are_told_apart_by_event_id_or_snapshot_record() {
        let put = |seq: u64| {
            let mut l = letter(-1, "parked");
            l.partition = -1;
            l.headers = vec![("seam-event-id".into(), Some(format!("s/{seq}").into_bytes()))];
            l
        };
        let boot = |tag: &str, index: i64| {
            let mut l = letter(index, "translator");
            l.partition = -1;
            l.headers = vec![(SNAPSHOT_HEADER.into(), Some(tag.as_bytes().to_vec()))];
            l
        };
        let records = vec![
            read_back(&dead_letter_record(&put(10)), 0),
            read_back(&dead_letter_record(&put(9)), 1),
            read_back(&dead_letter_record(&put(9)), 2),
            read_back(&dead_letter_record(&boot("s@5", 0)), 3),
            read_back(&dead_letter_record(&boot("s@7", 0)), 4),
            read_back(&outcome_record(&put(10), None), 5),
        ];
        let listed = fold("c", &records);
        let ids: Vec<_> = listed.iter().map(|l| (l.event_id.clone(), l.status.as_str())).collect();
        assert_eq!(
            ids,
            [
                (Some("s/9".to_string()), "pending"),
                (Some("s/10".to_string()), "redriven"),
                (None, "pending"),
                (None, "pending"),
            ],
            "the duplicate of s/9 folds into one, s/10 sorts after s/9, two snapshots' record 0 stay two"
        );
    }
}
