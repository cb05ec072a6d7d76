//! The two DLQ threads of a consumer: the shipper produces dead letters and redrive outcomes from
//! the store's outbox to `<consumer>.dlq`, and the control reader picks up redrive requests that
//! `seam dlq redrive` writes to the same topic.
//!
//! Dead letters reach the store in the same atomic write that moves the position past them, so
//! none is ever lost; the shipper delivers them at least once (readers key them by source
//! coordinates).

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::dlq::{self, DiscardRequest, DlqRecord, RedriveRequest};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::translator::dlq_topic;

use super::discard;
use super::progress::Progress;
use super::redrive::Redriver;
use super::RuntimeError;
use std::sync::Arc;

const BATCH: usize = 500;

pub(crate) struct Shipper {
    pub service: String,
    pub client: ClientConfig,
    pub store: Store,
    pub outbox: Arc<Progress>,
    pub metrics: Metrics,
    pub cancel: CancellationToken,
    pub runtime: Handle,
    pub drain: Duration,
}

impl Shipper {
    pub fn run(self) -> Result<(), RuntimeError> {
        let topic = dlq_topic(&self.service);
        let producer: FutureProducer = self
            .client
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(|e| RuntimeError::kafka("creating the DLQ producer".into(), e))?;
        let mut deadline: Option<Instant> = None;
        let mut backoff = Duration::from_millis(200);
        loop {
            let records = self.store.outbox(BATCH)?;
            self.metrics.set_outbox(records.len() as u64);
            if records.is_empty() {
                if self.cancel.is_cancelled() {
                    return Ok(());
                }
                self.outbox.wait_beyond(self.outbox.get(), Duration::from_millis(500));
                continue;
            }
            // The writer's flusher may not have made these durable yet; a dead letter shipped
            // and then lost in a crash would be parked and shipped again.
            self.store.flush()?;
            if self.cancel.is_cancelled()
                && Instant::now() > *deadline.get_or_insert_with(|| Instant::now() + self.drain)
            {
                warn!(service = %self.service, waiting = records.len(), "stopping with dead letters not yet on the DLQ topic; they are kept in the store and go out on the next start");
                return Ok(());
            }
            let mut futures = Vec::with_capacity(records.len());
            for (_, record) in &records {
                let headers = crate::headers::to_headers(&record.headers);
                let mut future_record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(headers);
                if let Some(k) = &record.key {
                    future_record = future_record.key(k.as_slice());
                }
                if let Some(v) = &record.value {
                    future_record = future_record.payload(v.as_slice());
                }
                let mut pending = future_record;
                loop {
                    match producer.send_result(pending) {
                        Ok(f) => {
                            futures.push(f);
                            break;
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            pending = r;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err((e, _)) => return Err(RuntimeError::kafka(format!("producing to {topic}"), e)),
                    }
                }
            }
            let delivered = self.runtime.block_on(async {
                let mut failure = None;
                for f in futures {
                    match f.await {
                        Ok(Ok(_)) => {}
                        Ok(Err((e, _))) => failure = Some(e.to_string()),
                        Err(_) => failure = Some("delivery cancelled".into()),
                    }
                }
                failure
            });
            match delivered {
                None => {
                    self.store.outbox_done(records.into_iter().map(|(k, _)| k).collect())?;
                    backoff = Duration::from_millis(200);
                }
                Some(e) => {
                    warn!(service = %self.service, %topic, error = %e, "producing dead letters failed; retrying (they stay in the store)");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

impl<C: Send + 'static> Control<C> {
    /// Runs a discard request read from the DLQ topic; a malformed or unmatched one is logged
    /// and passed (its position is stored all the same). With `redrive_rest` the position is
    /// stored with the redrive, so a crash between the two re-runs the request: the discard
    /// finds nothing left to do and the redrive runs.
    fn discard(&self, record: &DlqRecord, control: Option<(String, i32, i64)>) -> Result<(), RuntimeError> {
        let request = DiscardRequest::from_record(record).filter(|r| r.check().is_ok());
        let Some(request) = request else {
            warn!(service = %self.service, offset = record.dlq_offset, "a discard request without a subject or reason; ignored");
            return Ok(());
        };
        let discard::Queued {
            request: job,
            answer,
            out,
        } = discard::queue(
            &request,
            if request.redrive_rest { None } else { control.clone() },
            false,
        );
        self.redriver
            .writer
            .blocking_send(job)
            .map_err(|_| RuntimeError::WriterGone)?;
        answer.blocking_recv().map_err(|_| RuntimeError::WriterGone)??;
        let summary = discard::taken(&out);
        info!(service = %self.service, subject = %request.subject, by = %request.by, reason = %request.reason, discarded = summary.discarded, "dead letters discarded");
        if request.redrive_rest {
            let rest = RedriveRequest {
                subject: Some(request.subject.clone()),
                topic: request.topic.clone(),
            };
            self.redriver.run(&rest, control)?;
        }
        Ok(())
    }
}

pub(crate) struct Control<C> {
    pub service: String,
    pub client: ClientConfig,
    pub store: Store,
    pub redriver: Redriver<C>,
    pub cancel: CancellationToken,
}

impl<C: Send + 'static> Control<C> {
    pub fn run(self) -> Result<(), RuntimeError> {
        let topic = dlq_topic(&self.service);
        let consumer: BaseConsumer = self
            .client
            .clone()
            .set("group.id", format!("seam-dlq-control-{}", self.service))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(|e| RuntimeError::kafka("creating the DLQ control reader".into(), e))?;
        let partitions = super::retention::partitions_of(&consumer, std::slice::from_ref(&topic))?;
        let positions = self.store.positions()?;
        let mut tpl = TopicPartitionList::new();
        for (t, p) in &partitions {
            tpl.add_partition_offset(t, *p, Offset::Offset(positions.position(t, *p)))
                .map_err(|e| RuntimeError::kafka("building the control assignment".into(), e))?;
        }
        consumer
            .assign(&tpl)
            .map_err(|e| RuntimeError::kafka(format!("reading {topic}"), e))?;
        while !self.cancel.is_cancelled() {
            let Some(result) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = match result {
                Ok(m) => m,
                Err(e) => {
                    warn!(service = %self.service, %topic, error = %e, "reading redrive requests");
                    continue;
                }
            };
            let record = DlqRecord::new(
                message.partition(),
                message.offset(),
                &crate::headers::owned_pairs(message.headers()),
            );
            if record.kind() == dlq::KIND_DISCARD_REQUEST {
                let control = Some((topic.clone(), message.partition(), message.offset() + 1));
                self.discard(&record, control)?;
                continue;
            }
            if record.kind() != dlq::KIND_REDRIVE_REQUEST {
                continue;
            }
            let request = RedriveRequest {
                subject: record.get(dlq::SUBJECT).map(str::to_string),
                topic: record.get(dlq::TOPIC).map(str::to_string),
            };
            let control = Some((topic.clone(), message.partition(), message.offset() + 1));
            let summary = self.redriver.run(&request, control)?;
            info!(service = %self.service, subject = ?request.subject, topic = ?request.topic, redriven = summary.redriven, failed = summary.failed, "redrive done");
        }
        Ok(())
    }
}
