//! The `seam-*` headers every published event carries, so a consumer knows what it got and
//! where it came from without decoding the body: their names and value formats. The runtime's
//! `seam::headers` writes and reads them on Kafka records.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
/// The W3C Trace Context header: the span that emitted the event (or published it), so a
/// consumer's apply continues the producer's trace.
pub const TRACEPARENT: &str = "traceparent";

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
    if let Some(ms) = VIRTUAL_MS.with(std::cell::Cell::get) {
        return ms;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

thread_local! {
    static VIRTUAL_MS: std::cell::Cell<Option<i64>> = const { std::cell::Cell::new(None) };
}

/// Sets (or with `None` clears) this thread's virtual clock: [`now_ms`] answers it instead of
/// the system clock. The deterministic simulator advances it step by step, so a seed replays
/// with the same timestamps.
pub fn set_virtual_clock(ms: Option<i64>) {
    VIRTUAL_MS.with(|c| c.set(ms));
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
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
