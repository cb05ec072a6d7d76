//! The publisher's view of the simulated Kafka: the runtime's [`EventLog`], so the runtime's own
//! relay (`seam::runtime::relay::Relay`) runs here step by step, with the failures librdkafka
//! reports mapped to what the relay does with them.

use seam::runtime::relay::{EventLog, LogError, Outgoing, TailVisitor};
use seam::runtime::RuntimeError;

use crate::kafka::{Kafka, KafkaError, Message};

/// One incarnation's transactional producer (`epoch` is set by `init_transactions`) and its
/// tail reader, on `kafka`.
pub struct Producing<'a> {
    /// The log.
    pub kafka: &'a mut Kafka,
    /// The transactional id.
    pub id: &'a str,
    /// The epoch this incarnation got, once it initialised.
    pub epoch: &'a mut Option<u32>,
}

fn failed(e: KafkaError) -> LogError {
    match e {
        KafkaError::Unavailable => LogError::Again("no broker answers (simulated outage)".into()),
        KafkaError::Fenced => LogError::Fatal(RuntimeError::Kafka {
            what: "publishing".into(),
            detail: "fenced: another publisher with the same transactional id took over".into(),
        }),
        KafkaError::UnknownTopic(topic) => LogError::Fatal(RuntimeError::TopicMissing { topic }),
        e @ (KafkaError::OutOfRange { .. } | KafkaError::State(_)) => LogError::Fatal(RuntimeError::Kafka {
            what: "publishing".into(),
            detail: format!("{e:?}"),
        }),
    }
}

impl Producing<'_> {
    fn epoch(&self) -> Result<u32, LogError> {
        self.epoch.ok_or_else(|| {
            LogError::Fatal(RuntimeError::Kafka {
                what: "publishing".into(),
                detail: "a transaction call before init_transactions".into(),
            })
        })
    }
}

impl EventLog for Producing<'_> {
    fn partitions(&mut self, topic: &str) -> Result<i32, LogError> {
        self.kafka.partitions(topic).map_err(failed)
    }

    fn init_transactions(&mut self) -> Result<(), LogError> {
        *self.epoch = Some(self.kafka.init_producer(self.id).map_err(failed)?);
        Ok(())
    }

    fn watermarks(&mut self, topic: &str, partition: i32) -> Result<(i64, i64), LogError> {
        self.kafka.watermarks(topic, partition).map_err(failed)
    }

    fn scan(&mut self, topic: &str, partition: i32, from: i64, each: &mut TailVisitor<'_>) -> Result<(), LogError> {
        let mut from = from;
        loop {
            let fetched = self.kafka.read(topic, partition, from, usize::MAX).map_err(failed)?;
            for r in &fetched.records {
                let header = |name: &str| {
                    r.headers
                        .iter()
                        .find(|(k, _)| k == name)
                        .and_then(|(_, v)| v.as_deref())
                };
                each(header(seam::envelope::EVENT_ID), header(seam::envelope::JOURNAL));
            }
            if fetched.next <= from {
                return Ok(());
            }
            from = fetched.next;
        }
    }

    fn begin(&mut self) -> Result<(), LogError> {
        let epoch = self.epoch()?;
        self.kafka.begin(self.id, epoch).map_err(failed)
    }

    fn send(&mut self, out: &Outgoing<'_>) -> Result<(), LogError> {
        let epoch = self.epoch()?;
        let message = Message {
            key: Some(out.entry.subject.clone().into_bytes()),
            value: Some(out.payload.to_vec()),
            headers: seam::headers::pairs(out.service, out.journal, out.entry),
        };
        self.kafka
            .send(self.id, epoch, out.topic, out.partition, message)
            .map(|_| ())
            .map_err(failed)
    }

    fn commit(&mut self) -> Result<(), LogError> {
        let epoch = self.epoch()?;
        self.kafka.commit(self.id, epoch).map_err(failed)
    }

    fn abort(&mut self) -> Result<(), LogError> {
        let epoch = self.epoch()?;
        self.kafka.abort(self.id, epoch).map_err(failed)
    }
}
