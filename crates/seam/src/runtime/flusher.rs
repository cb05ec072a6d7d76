//! The writer's flusher: makes written groups durable off the writer thread.
//!
//! A group's writes are applied to the store (and visible) on the writer; its fsync used to hold
//! the writer for about 2 ms, so events arriving meanwhile waited for it before they were even
//! applied. Now the writer hands the group's answers here and goes on applying the next group
//! while this thread flushes. Queued groups share one flush. Nothing is acknowledged, raised as
//! durable (which the publisher reads) or answered before its flush returns, and flushes cover
//! writes in order, so a crash can only lose unanswered groups, whole and from the end.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::failpoint;
use crate::metrics::Metrics;
use crate::store::Store;

use super::progress::Progress;
use super::writer::Reply;
use super::RuntimeError;

/// Groups written but not yet flushed, at most; the writer waits when this many are queued.
const QUEUED: usize = 16;

/// A written group waiting for its flush.
pub(crate) struct Job {
    /// The group's last journal seq: durable once flushed.
    pub last_seq: u64,
    /// Whether it queued outbox records (the DLQ shipper waits for those).
    pub outbox: bool,
    /// Its answers.
    pub replies: Vec<Reply>,
}

/// The flusher thread and its queue.
pub(crate) struct Flusher {
    tx: Option<SyncSender<Job>>,
    handle: Option<JoinHandle<()>>,
    failed: Arc<Mutex<Option<String>>>,
}

impl Flusher {
    /// Starts the thread.
    pub fn start(
        service: &str,
        store: Store,
        durable: Arc<Progress>,
        outbox: Arc<Progress>,
        metrics: Metrics,
    ) -> Result<Self, RuntimeError> {
        let (tx, rx) = mpsc::sync_channel(QUEUED);
        let failed = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&failed);
        let handle = std::thread::Builder::new()
            .name("seam-flusher".into())
            .spawn(move || flush_loop(&rx, &store, &durable, &outbox, &slot, &metrics))
            .map_err(|e| RuntimeError::Store(format!("starting the flusher of {service}: {e}")))?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
            failed,
        })
    }

    /// Queues a written group; fails once a flush has failed (the store is then unusable).
    pub fn queue(&self, job: Job) -> Result<(), RuntimeError> {
        self.check()?;
        let sent = self.tx.as_ref().map(|tx| tx.send(job));
        match sent {
            Some(Ok(())) => Ok(()),
            Some(Err(mpsc::SendError(job))) => {
                let why = self.failure().unwrap_or_else(|| "the flusher stopped".into());
                for reply in job.replies {
                    reply.fail(&why);
                }
                Err(RuntimeError::Store(why))
            }
            None => Err(RuntimeError::Store("the flusher was finished".into())),
        }
    }

    /// The failure of an earlier flush, if any.
    pub fn check(&self) -> Result<(), RuntimeError> {
        match self.failure() {
            Some(why) => Err(RuntimeError::Store(why)),
            None => Ok(()),
        }
    }

    fn failure(&self) -> Option<String> {
        self.failed.lock().ok().and_then(|f| f.clone())
    }

    /// Flushes and answers everything queued, then stops the thread.
    pub fn finish(mut self) -> Result<(), RuntimeError> {
        self.stop();
        self.check()
    }

    fn stop(&mut self) {
        drop(self.tx.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn flush_loop(
    rx: &Receiver<Job>,
    store: &Store,
    durable: &Progress,
    outbox: &Progress,
    failed: &Mutex<Option<String>>,
    metrics: &Metrics,
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let result = match failed.lock().ok().and_then(|f| f.clone()) {
            Some(why) => Err(why),
            None => {
                let began = std::time::Instant::now();
                let flushed = store.flush().map_err(|e| e.to_string());
                metrics.flushed(began.elapsed().as_secs_f64());
                flushed
            }
        };
        if let Err(why) = &result {
            if let Ok(mut f) = failed.lock() {
                f.get_or_insert_with(|| why.clone());
            }
        }
        settle(jobs, result, durable, outbox);
    }
}

/// After the flush of `jobs`: raises the durable seq, wakes the DLQ shipper and answers every
/// request, or answers them all with the flush's failure. (The simulator's writer steps end
/// here too.)
pub(crate) fn settle(jobs: Vec<Job>, result: Result<(), String>, durable: &Progress, outbox: &Progress) {
    match result {
        Ok(()) => {
            failpoint::hit("writer.after-commit");
            if let Some(last) = jobs.iter().map(|j| j.last_seq).max() {
                durable.raise(last);
            }
            if jobs.iter().any(|j| j.outbox) {
                outbox.nudge();
            }
            for reply in jobs.into_iter().flat_map(|j| j.replies) {
                reply.succeed();
            }
        }
        Err(why) => {
            for reply in jobs.into_iter().flat_map(|j| j.replies) {
                reply.fail(&why);
            }
        }
    }
}
