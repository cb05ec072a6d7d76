//! The records a store keeps besides the model: journal entries and parked dead letters.

use serde::{Deserialize, Serialize};

use super::engine::StoreError;
use crate::fault::Class;

/// One event of the service's own journal, as it will be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Position in the journal, from 1, without gaps.
    pub seq: u64,
    /// The entity the event is about: the Kafka key.
    pub subject: String,
    /// Full name of the Avro record.
    pub record: String,
    /// When it happened, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The business flow this event belongs to.
    pub correlation_id: Option<String>,
    /// The event id (`<service>/<seq>`) that caused this one, if a foreign event did.
    pub causation_id: Option<String>,
    /// The Avro body, written with the schema `schema` names.
    pub body: Vec<u8>,
    /// The fingerprint of the schema that wrote `body` (see [`crate::codec::catalog::fingerprint`];
    /// the store keeps its text), so an upgraded binary publishes and reads the entry with the
    /// schema that wrote it; `None` for entries written before seam recorded it.
    pub schema: Option<u64>,
    /// The seq of the previous entry about the same subject (0: the subject's first), so a
    /// consumer can tell whether an event arrives in order per subject; `None` for entries
    /// written before seam tracked it (their subject's history is not known).
    pub prev: Option<u64>,
    /// The W3C `traceparent` of the span that emitted it (a command's, or an apply's), which
    /// the publisher carries on; `None` outside a trace.
    pub trace: Option<String>,
}

/// Tags of the optional fields after the body (older entries end with the body).
mod tag {
    pub const PREV: u8 = 1;
    pub const SCHEMA: u8 = 2;
    pub const TRACE: u8 = 3;
}

impl JournalEntry {
    /// Binary layout: seq, time, then length-prefixed subject, record, correlation, causation,
    /// body; then optional fields, each a tag byte and a length-prefixed value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + self.subject.len() + self.record.len() + self.body.len());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        put(&mut out, self.subject.as_bytes());
        put(&mut out, self.record.as_bytes());
        put_opt(&mut out, self.correlation_id.as_deref());
        put_opt(&mut out, self.causation_id.as_deref());
        put(&mut out, &self.body);
        if let Some(prev) = self.prev {
            out.push(tag::PREV);
            put(&mut out, &prev.to_be_bytes());
        }
        if let Some(schema) = self.schema {
            out.push(tag::SCHEMA);
            put(&mut out, &schema.to_be_bytes());
        }
        if let Some(trace) = &self.trace {
            out.push(tag::TRACE);
            put(&mut out, trace.as_bytes());
        }
        out
    }

    /// Reads the layout written by [`JournalEntry::encode`] (and by older versions, which end
    /// with the body); unknown optional fields are skipped.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let mut cur = Cursor(bytes);
        let mut entry = Self {
            seq: u64::from_be_bytes(cur.fixed()?),
            time_ms: i64::from_be_bytes(cur.fixed()?),
            subject: cur.string()?,
            record: cur.string()?,
            correlation_id: cur.opt_string()?,
            causation_id: cur.opt_string()?,
            body: cur.bytes()?.to_vec(),
            prev: None,
            schema: None,
            trace: None,
        };
        while !cur.0.is_empty() {
            let [tag] = cur.fixed::<1>()?;
            let value = cur.bytes()?;
            let number = || -> Result<u64, StoreError> {
                let fixed: [u8; 8] = value.try_into().map_err(|_| Cursor::corrupt("bad optional field"))?;
                Ok(u64::from_be_bytes(fixed))
            };
            match tag {
                tag::PREV => entry.prev = Some(number()?),
                tag::SCHEMA => entry.schema = Some(number()?),
                tag::TRACE => entry.trace = std::str::from_utf8(value).ok().map(str::to_string),
                _ => {}
            }
        }
        Ok(entry)
    }
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_opt(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => {
            out.push(1);
            put(out, v.as_bytes());
        }
        None => out.push(0),
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn corrupt(detail: &str) -> StoreError {
        StoreError::Corrupt {
            what: "journal",
            detail: detail.to_string(),
        }
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| Self::corrupt("truncated"))?;
        self.0 = rest;
        Ok(*head)
    }

    fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let len = u32::from_be_bytes(self.fixed()?) as usize;
        if len > self.0.len() {
            return Err(Self::corrupt("length past the end"));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn string(&mut self) -> Result<String, StoreError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| Self::corrupt("text is not UTF-8"))
    }

    fn opt_string(&mut self) -> Result<Option<String>, StoreError> {
        match self.fixed::<1>()? {
            [0] => Ok(None),
            [1] => Ok(Some(self.string()?)),
            _ => Err(Self::corrupt("bad option tag")),
        }
    }
}

/// A foreign event the consumer could not take in, kept with everything needed to inspect it
/// and to apply it later (redrive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The consuming service.
    pub consumer: String,
    /// Where it came from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The subject (Kafka key as text; `None` for a record without a key).
    pub subject: Option<String>,
    /// The original key bytes.
    pub key: Option<Vec<u8>>,
    /// The original value bytes.
    pub value: Option<Vec<u8>>,
    /// The original headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Why it failed: `poison` for the event itself, `parked` when it waits behind an earlier one.
    pub class: Class,
    /// A stable short name of the failure (`unknown-schema-id`, `translator`, `parked`, ...).
    pub kind: String,
    /// The full error message.
    pub reason: String,
    /// When it was dead-lettered, milliseconds since the Unix epoch.
    pub time_ms: i64,
}

impl DeadLetter {
    /// Whether both are the same event: the same Kafka coordinates, or the same event id (an
    /// event parked from putEvents has no offset, and one store may have it from the topic).
    pub fn same_event(&self, other: &DeadLetter) -> bool {
        if self.topic != other.topic {
            return false;
        }
        if self.partition >= 0 && (self.partition, self.offset) == (other.partition, other.offset) {
            return true;
        }
        matches!((self.event_id(), other.event_id()), (Some(a), Some(b)) if a == b)
    }

    /// The event's `seam-event-id`, when it has one.
    pub fn event_id(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == crate::envelope::EVENT_ID)
            .and_then(|(_, v)| v.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// JSON is fine here: dead letters are rare and read by people.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads [`DeadLetter::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            what: "dead letter",
            detail: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_entries_round_trip_and_truncation_is_an_error() {
        let entry = JournalEntry {
            seq: 42,
            subject: "order/7".into(),
            record: "x.Placed".into(),
            time_ms: 1_700_000_000_000,
            correlation_id: Some("c".into()),
            causation_id: None,
            body: vec![1, 2, 3],
            prev: Some(41),
            schema: Some(0xfeed),
            trace: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        let bytes = entry.encode();
        assert_eq!(JournalEntry::decode(&bytes).expect("decodes"), entry);
        for cut in 0..bytes.len() {
            // Cutting exactly after the body, prev or schema leaves an older entry's layout.
            if let Ok(old) = JournalEntry::decode(&bytes[..cut]) {
                let trace = 1 + 4 + 55;
                let older = match (old.prev, old.schema) {
                    (None, _) => (bytes.len() - 26 - trace, None, None),
                    (Some(_), None) => (bytes.len() - 13 - trace, Some(41), None),
                    (Some(_), Some(_)) => (bytes.len() - trace, Some(41), Some(0xfeed)),
                };
                assert_eq!(
                    (cut, old.prev, old.schema, old.trace),
                    (older.0, older.1, older.2, None),
                    "only the layout of an older entry may decode"
                );
            }
        }
        let older = JournalEntry {
            prev: None,
            schema: None,
            trace: None,
            ..entry
        };
        assert_eq!(JournalEntry::decode(&older.encode()).expect("decodes"), older);
    }
}
