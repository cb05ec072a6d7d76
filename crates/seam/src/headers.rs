//! The `seam-*` headers (named in [`seam_core::envelope`]) on Kafka records: written from a
//! journal entry when publishing, read back when consuming and kept with dead letters.

use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};
use seam_core::envelope::{
    event_id, rfc3339, CAUSATION_ID, CORRELATION_ID, EVENT_ID, EVENT_TYPE, JOURNAL, PREV_SEQ, SOURCE, TIME, TRACEPARENT,
};
use seam_core::store::{JournalEntry, JournalId};

/// The headers of a journal entry as published by `service` from `journal`; `trace` is the
/// publishing span's `traceparent` (else the entry's own is carried).
pub fn headers(service: &str, journal: &JournalId, entry: &JournalEntry, trace: Option<&str>) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(9);
    each(service, journal, entry, trace, |key, value| {
        headers = std::mem::replace(&mut headers, OwnedHeaders::new()).insert(Header {
            key,
            value: Some(value),
        });
    });
    headers
}

/// [`headers`] as owned pairs: what the simulator's log stores.
pub fn pairs(service: &str, journal: &JournalId, entry: &JournalEntry) -> Vec<(String, Option<Vec<u8>>)> {
    let mut pairs = Vec::with_capacity(9);
    each(service, journal, entry, None, |key, value| {
        pairs.push((key.to_string(), Some(value.to_vec())));
    });
    pairs
}

/// The one definition of a published entry's headers, visited in order (no copies on the
/// publisher's path).
fn each(
    service: &str,
    journal: &JournalId,
    entry: &JournalEntry,
    trace: Option<&str>,
    mut put: impl FnMut(&str, &[u8]),
) {
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
    if let Some(trace) = trace.or(entry.trace.as_deref()) {
        put(TRACEPARENT, trace.as_bytes());
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

/// A consumed record's headers in three buffers instead of a `String` and a `Vec` per header:
/// a seam record carries eight, and copying them out of librdkafka one allocation at a time was
/// a third of the replay reader's time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawHeaders {
    keys: String,
    values: Vec<u8>,
    /// Per header: where its key ends in `keys`, and where its value ends in `values` (`None`
    /// for a null value). Each starts where the one before ended.
    ends: Vec<(u32, Option<u32>)>,
}

impl RawHeaders {
    /// Copies the headers of a consumed message.
    pub fn from_borrowed(headers: Option<&BorrowedHeaders>) -> Self {
        let mut out = Self::default();
        if let Some(hs) = headers {
            out.ends.reserve(hs.count());
            for h in hs.iter() {
                out.push(h.key, h.value);
            }
        }
        out
    }

    /// Appends a header.
    pub fn push(&mut self, key: &str, value: Option<&[u8]>) {
        self.keys.push_str(key);
        let value_end = value.map(|v| {
            self.values.extend_from_slice(v);
            self.values.len() as u32
        });
        self.ends.push((self.keys.len() as u32, value_end));
    }

    /// Each header in order, as (key, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
        let (mut key_at, mut value_at) = (0usize, 0usize);
        self.ends.iter().map(move |&(key_end, value_end)| {
            let key = &self.keys[key_at..key_end as usize];
            key_at = key_end as usize;
            let value = value_end.map(|end| {
                let v = &self.values[value_at..end as usize];
                value_at = end as usize;
                v
            });
            (key, value)
        })
    }

    /// The first header named `name`, if it has a value.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(k, _)| *k == name).and_then(|(_, v)| v)
    }

    /// As owned pairs (what a dead letter keeps).
    pub fn to_pairs(&self) -> Vec<(String, Option<Vec<u8>>)> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
            .collect()
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl From<Vec<(String, Option<Vec<u8>>)>> for RawHeaders {
    fn from(pairs: Vec<(String, Option<Vec<u8>>)>) -> Self {
        Self::from(pairs.as_slice())
    }
}

impl From<&[(String, Option<Vec<u8>>)]> for RawHeaders {
    fn from(pairs: &[(String, Option<Vec<u8>>)]) -> Self {
        let mut out = Self::default();
        for (k, v) in pairs {
            out.push(k, v.as_deref());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::RawHeaders;
    use proptest::prelude::*;

    proptest! {
        /// Any headers come back as they went in.
        #[test]
        fn raw_headers_round_trip(pairs in proptest::collection::vec(
            (".{0,12}", proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16))), 0..10)) {
            let raw = RawHeaders::from(pairs.clone());
            prop_assert_eq!(raw.to_pairs(), pairs);
        }
    }

    #[test]
    fn a_published_entry_carries_its_trace_and_a_publish_span_replaces_it() {
        use seam_core::store::{JournalEntry, JournalId};
        let entry = JournalEntry {
            seq: 7,
            subject: "order/1".into(),
            record: "shop.Placed".into(),
            time_ms: 0,
            correlation_id: None,
            causation_id: None,
            body: Vec::new(),
            schema: None,
            prev: Some(0),
            trace: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        let journal = JournalId {
            id: "ab12".into(),
            start: 1,
        };
        let trace_of = |pairs: Vec<(String, Option<Vec<u8>>)>| {
            RawHeaders::from(pairs)
                .get("traceparent")
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(trace_of(super::pairs("shop", &journal, &entry)), entry.trace);
        let published = super::headers(
            "shop",
            &journal,
            &entry,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"),
        );
        let published = RawHeaders::from_borrowed(Some(published.as_borrowed()));
        assert_eq!(
            published.get("traceparent"),
            Some(&b"00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"[..])
        );
        let untraced = JournalEntry { trace: None, ..entry };
        assert_eq!(trace_of(super::pairs("shop", &journal, &untraced)), None);
    }

    #[test]
    fn raw_headers_keep_order_nulls_and_empty_values() {
        let pairs = vec![
            ("seam-event-id".to_string(), Some(b"a/1".to_vec())),
            ("empty".to_string(), Some(Vec::new())),
            ("null".to_string(), None),
            ("seam-event-id".to_string(), Some(b"second".to_vec())),
            (String::new(), Some(b"x".to_vec())),
        ];
        let raw = RawHeaders::from(pairs.clone());
        assert_eq!(raw.to_pairs(), pairs);
        assert_eq!(raw.len(), 5);
        assert_eq!(raw.get("seam-event-id"), Some(&b"a/1"[..]));
        assert_eq!(raw.get("empty"), Some(&b""[..]));
        assert_eq!(raw.get("null"), None);
        assert_eq!(raw.get("missing"), None);
        assert!(RawHeaders::default().is_empty());
    }
}
