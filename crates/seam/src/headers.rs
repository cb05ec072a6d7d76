//! The `seam-*` headers (named in [`seam_core::envelope`]) on Kafka records: written from a
//! journal entry when publishing, read back when consuming and kept with dead letters.

use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};
use seam_core::envelope::{
    event_id, rfc3339, CAUSATION_ID, CORRELATION_ID, EVENT_ID, EVENT_TYPE, JOURNAL, PREV_SEQ, SOURCE, TIME,
};
use seam_core::store::{JournalEntry, JournalId};

/// The headers of a journal entry as published by `service` from `journal`.
pub fn headers(service: &str, journal: &JournalId, entry: &JournalEntry) -> OwnedHeaders {
    to_headers(&pairs(service, journal, entry))
}

/// [`headers`] as owned pairs: what the simulator's log stores, and the one definition of them.
pub fn pairs(service: &str, journal: &JournalId, entry: &JournalEntry) -> Vec<(String, Option<Vec<u8>>)> {
    let id = event_id(service, entry.seq);
    let time = rfc3339(entry.time_ms);
    let correlation = entry.correlation_id.clone().unwrap_or_else(|| id.clone());
    let text = |key: &str, value: String| (key.to_string(), Some(value.into_bytes()));
    let mut pairs = Vec::with_capacity(8);
    pairs.push(text(EVENT_ID, id));
    pairs.push(text(EVENT_TYPE, entry.record.clone()));
    pairs.push(text(SOURCE, service.to_string()));
    pairs.push(text(TIME, time));
    pairs.push(text(CORRELATION_ID, correlation));
    if let Some(causation) = &entry.causation_id {
        pairs.push(text(CAUSATION_ID, causation.clone()));
    }
    // Entries journaled before journals were named keep their older headers.
    if entry.seq >= journal.start {
        pairs.push(text(JOURNAL, journal.header()));
    }
    if let Some(prev) = entry.prev {
        pairs.push(text(PREV_SEQ, prev.to_string()));
    }
    pairs
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
