//! The `seam-*` headers (named in [`seam_core::envelope`]) on Kafka records: written from a
//! journal entry when publishing, read back when consuming and kept with dead letters.

use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};
use seam_core::envelope::{
    event_id, rfc3339, CAUSATION_ID, CORRELATION_ID, EVENT_ID, EVENT_TYPE, JOURNAL, PREV_SEQ, SOURCE, TIME,
};
use seam_core::store::{JournalEntry, JournalId};

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
