//! Waiting for a producer's sends to be acknowledged, promptly.
//!
//! rust-rdkafka's `flush` (also run first by `commit_transaction`) checks the queue and then
//! polls for up to 100 ms; on a `ThreadedProducer` its own thread serves the delivery reports, so
//! that poll sleeps the whole 100 ms. Every publish transaction paid it: about 100 ms of latency
//! per hop and a cap on transactions per second. This context counts sends out and delivery
//! reports back, and wakes the waiter on the last one.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::message::DeliveryResult;
use rdkafka::producer::ProducerContext;
use rdkafka::ClientContext;

/// A producer context that knows how many sends await their delivery report.
#[derive(Debug, Default)]
pub struct InFlight {
    state: Mutex<Counts>,
    settled: Condvar,
}

#[derive(Debug, Default)]
struct Counts {
    /// Signed: a delivery report can arrive before its send is counted.
    outstanding: i64,
    failed: u64,
}

impl InFlight {
    /// Counts one message handed to the producer; call after `send` succeeds (its report may
    /// already have come back).
    pub fn sent(&self) {
        if let Ok(mut c) = self.state.lock() {
            c.outstanding += 1;
        }
    }

    /// Waits until every counted send has its delivery report, or `timeout` passes. Returns the
    /// number of failed deliveries since the last call (0 means all acknowledged), or `None`
    /// when the timeout passed first.
    pub fn wait(&self, timeout: Duration) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        let mut c = self.state.lock().ok()?;
        while c.outstanding > 0 {
            let left = deadline.checked_duration_since(Instant::now())?;
            c = self.settled.wait_timeout(c, left).ok()?.0;
        }
        Some(std::mem::take(&mut c.failed))
    }
}

impl ClientContext for InFlight {}

impl ProducerContext for InFlight {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(mut c) = self.state.lock() {
            c.outstanding -= 1;
            if result.is_err() {
                c.failed += 1;
            }
            if c.outstanding <= 0 {
                self.settled.notify_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_at_once_with_nothing_sent_and_times_out_with_sends_unreported() {
        let f = InFlight::default();
        assert_eq!(f.wait(Duration::ZERO), Some(0));
        f.sent();
        assert_eq!(f.wait(Duration::from_millis(10)), None);
    }
}
