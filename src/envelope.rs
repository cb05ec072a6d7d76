//! The `seam-*` headers every published event carries, so a consumer knows what it got and
//! where it came from without decoding the body.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};

use crate::store::{JournalEntry, JournalId};

/// `<service>/<seq>`: unique per event, stable across redelivery and republishing.
pub const EVENT_ID: &str = "seam-event-id";
/// Full name of the Avro record.
pub const EVENT_TYPE: &str = "seam-event-type";
/// The publishing service.
pub const SOURCE: &str = "seam-source";
/// When the event happened, RFC 3339 in UTC.
pub const TIME: &str = "seam-time";
/// The business flow this event belongs to.
pub const CORRELATION_ID: &str = "seam-correlation-id";
/// The event that caused this one.
pub const CAUSATION_ID: &str = "seam-causation-id";
/// The publishing service's journal, `<id>:<first seq>`: event ids are unique within it, and a
/// store that starts over (wiped) starts a new journal, so its ids never repeat older ones.
pub const JOURNAL: &str = "seam-journal";
/// The seq of the previous event about the same subject in the same journal (0: the first), so
/// a consumer can keep per-subject order where Kafka does not (putEvents).
pub const PREV_SEQ: &str = "seam-prev-seq";

/// The event id of a journal entry.
pub fn event_id(service: &str, seq: u64) -> String {
    format!("{service}/{seq}")
}

/// Splits an event id into service and seq.
pub fn parse_event_id(id: &str) -> Option<(&str, u64)> {
    let (service, seq) = id.rsplit_once('/')?;
    Some((service, seq.parse().ok()?))
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// The headers of a journal entry as published by `service` from `journal`.
pub fn headers(service: &str, journal: &JournalId, entry: &JournalEntry) -> OwnedHeaders {
    let id = event_id(service, entry.seq);
    let time = rfc3339(entry.time_ms);
    let correlation = entry.correlation_id.as_deref().unwrap_or(&id);
    let mut headers = OwnedHeaders::new_with_capacity(6)
        .insert(Header {
            key: EVENT_ID,
            value: Some(id.as_bytes()),
        })
        .insert(Header {
            key: EVENT_TYPE,
            value: Some(entry.record.as_bytes()),
        })
        .insert(Header {
            key: SOURCE,
            value: Some(service.as_bytes()),
        })
        .insert(Header {
            key: TIME,
            value: Some(time.as_bytes()),
        })
        .insert(Header {
            key: CORRELATION_ID,
            value: Some(correlation.as_bytes()),
        });
    if let Some(causation) = &entry.causation_id {
        headers = headers.insert(Header {
            key: CAUSATION_ID,
            value: Some(causation.as_bytes()),
        });
    }
    // Entries journaled before journals were named keep their older headers.
    if entry.seq >= journal.start {
        headers = headers.insert(Header {
            key: JOURNAL,
            value: Some(journal.header().as_bytes()),
        });
    }
    if let Some(prev) = entry.prev {
        headers = headers.insert(Header {
            key: PREV_SEQ,
            value: Some(prev.to_string().as_bytes()),
        });
    }
    headers
}

/// The value of a UTF-8 header, if present and valid.
pub fn header<'a>(headers: Option<&'a BorrowedHeaders>, name: &str) -> Option<&'a str> {
    headers?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// All headers as owned pairs (kept with dead letters).
pub fn owned_pairs(headers: Option<&BorrowedHeaders>) -> Vec<(String, Option<Vec<u8>>)> {
    headers
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}

/// Owned pairs back into Kafka headers.
pub fn to_headers(pairs: &[(String, Option<Vec<u8>>)]) -> OwnedHeaders {
    pairs
        .iter()
        .fold(OwnedHeaders::new_with_capacity(pairs.len()), |hs, (k, v)| {
            hs.insert(Header {
                key: k.as_str(),
                value: v.as_deref(),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip() {
        assert_eq!(event_id("orders", 42), "orders/42");
        assert_eq!(parse_event_id("orders/42"), Some(("orders", 42)));
        assert_eq!(parse_event_id("orders"), None);
        assert_eq!(parse_event_id("orders/x"), None);
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
