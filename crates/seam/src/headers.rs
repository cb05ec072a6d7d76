//! The `seam-*` headers (named in [`seam_core::envelope`]) on Kafka records: written from a
//! journal entry when publishing, read back when consuming and kept with dead letters.

use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};
use seam_core::envelope::{
    event_id, rfc3339, CAUSATION_ID, CORRELATION_ID, EVENT_ID, EVENT_TYPE, JOURNAL, PREV_SEQ, SOURCE, TIME,
};
use seam_core::store::{JournalEntry, JournalId};

/// The headers of a journal entry as published by `service` from `journal`.
pub fn headers(service: &str, journal: &JournalId, entry: &JournalEntry) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(8);
    each(service, journal, entry, |key, value| {
        headers = std::mem::replace(&mut headers, OwnedHeaders::new()).insert(Header {
            key,
            value: Some(value),
        });
    });
    headers
}

/// [`headers`] as owned pairs: what the simulator's log stores.
pub fn pairs(service: &str, journal: &JournalId, entry: &JournalEntry) -> Vec<(String, Option<Vec<u8>>)> {
    let mut pairs = Vec::with_capacity(8);
    each(service, journal, entry, |key, value| {
        pairs.push((key.to_string(), Some(value.to_vec())));
    });
    pairs
}

/// The one definition of a published entry's headers, visited in order (no copies on the
/// publisher's path).
fn each(service: &str, journal: &JournalId, entry: &JournalEntry, mut put: impl FnMut(&str, &[u8])) {
    let id = event_id(service, entry.seq);
    let time = rfc3339(entry.time_ms);
    put(EVENT_ID, id.as_bytes());
    put(EVENT_TYPE, entry.record.as_bytes());
    put(SOURCE, service.as_bytes());
    put(TIME, time.as_bytes());
    put(
        CORRELATION_ID,
        entry.correlation_id.as_deref().unwrap_or(&id).as_bytes(),
    );
    if let Some(causation) = &entry.causation_id {
        put(CAUSATION_ID, causation.as_bytes());
    }
    // Entries journaled before journals were named keep their older headers.
    if entry.seq >= journal.start {
        put(JOURNAL, journal.header().as_bytes());
    }
    if let Some(prev) = entry.prev {
        put(PREV_SEQ, prev.to_string().as_bytes());
    }
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
