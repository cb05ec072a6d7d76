//! Kafka as the runtime sees it through librdkafka, in memory: topics of partitions holding
//! records at offsets; transactional producers with epochs, so a restarted producer fences its
//! earlier incarnation and aborts what that left open; commit and abort markers that take an
//! offset; `read_committed` reads that stop at the last stable offset and skip aborted records;
//! retention deleting a log prefix; and a cluster that can be unavailable.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Headers as owned pairs.
pub type Headers = Vec<(String, Option<Vec<u8>>)>;

/// What a producer sends.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Headers,
}

/// A record in a partition's log.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Headers,
    /// When it was appended (the scheduler's clock).
    pub time: u64,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Produced without a transaction.
    Plain,
    /// Produced in this transaction.
    Txn(u64),
    /// A commit or abort marker: never delivered.
    Marker,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaError {
    /// No broker answers (retryable).
    Unavailable,
    /// A newer incarnation of this transactional id took over (fatal to the producer).
    Fenced,
    /// The topic does not exist.
    UnknownTopic(String),
    /// The offset asked for is outside the log.
    OutOfRange {
        /// The log's first offset.
        earliest: i64,
        /// The log's end.
        end: i64,
    },
    /// A transaction call out of order (begin twice, commit without begin).
    State(&'static str),
}

#[derive(Debug, Default)]
struct Partition {
    start: i64,
    end: i64,
    records: VecDeque<Record>,
    /// What retention deleted, kept for the oracles only: no reader sees it.
    deleted: Vec<Record>,
}

impl Partition {
    fn append(&mut self, m: Message, kind: Kind, time: u64) -> i64 {
        let offset = self.end;
        self.records.push_back(Record {
            offset,
            key: m.key,
            value: m.value,
            headers: m.headers,
            time,
            kind,
        });
        self.end += 1;
        offset
    }
}

#[derive(Debug)]
enum Txn {
    Open(BTreeSet<(String, i32)>),
    Committed,
    Aborted,
}

#[derive(Debug, Default)]
struct Producer {
    epoch: u32,
    open: Option<u64>,
}

/// What a read returned: the deliverable records and the offset to read on from (past any
/// markers and aborted records it stepped over).
#[derive(Debug, Default)]
pub struct Fetched {
    /// Committed data records, in offset order.
    pub records: Vec<Record>,
    /// The next offset to fetch.
    pub next: i64,
}

/// The simulated cluster.
#[derive(Debug, Default)]
pub struct Kafka {
    topics: BTreeMap<String, Vec<Partition>>,
    producers: BTreeMap<String, Producer>,
    txns: BTreeMap<u64, Txn>,
    next_txn: u64,
    /// While set, every call fails with [`KafkaError::Unavailable`].
    pub down: bool,
    /// The clock records are stamped with (the scheduler sets it).
    pub now: u64,
}

impl Kafka {
    fn up(&self) -> Result<(), KafkaError> {
        if self.down {
            Err(KafkaError::Unavailable)
        } else {
            Ok(())
        }
    }

    fn partition(&mut self, topic: &str, partition: i32) -> Result<&mut Partition, KafkaError> {
        self.topics
            .get_mut(topic)
            .and_then(|ps| ps.get_mut(usize::try_from(partition).ok()?))
            .ok_or_else(|| KafkaError::UnknownTopic(format!("{topic}/{partition}")))
    }

    fn partition_ref(&self, topic: &str, partition: i32) -> Result<&Partition, KafkaError> {
        self.topics
            .get(topic)
            .and_then(|ps| ps.get(usize::try_from(partition).ok()?))
            .ok_or_else(|| KafkaError::UnknownTopic(format!("{topic}/{partition}")))
    }

    /// Creates a topic (an operator's `seam deploy`).
    pub fn create_topic(&mut self, topic: &str, partitions: i32) {
        let list = (0..partitions).map(|_| Partition::default()).collect();
        self.topics.insert(topic.to_string(), list);
    }

    /// The partition count of `topic`.
    pub fn partitions(&self, topic: &str) -> Result<i32, KafkaError> {
        self.up()?;
        self.topics
            .get(topic)
            .map(|ps| ps.len() as i32)
            .ok_or_else(|| KafkaError::UnknownTopic(topic.to_string()))
    }

    /// The first and the end offset of a partition's log.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), KafkaError> {
        self.up()?;
        let p = self.partition_ref(topic, partition)?;
        Ok((p.start, p.end))
    }

    /// The last stable offset: `read_committed` readers see nothing at or past it.
    pub fn last_stable(&self, topic: &str, partition: i32) -> Result<i64, KafkaError> {
        self.up()?;
        let p = self.partition_ref(topic, partition)?;
        Ok(p.records
            .iter()
            .find(|r| matches!(r.kind, Kind::Txn(t) if matches!(self.txns.get(&t), Some(Txn::Open(_)))))
            .map_or(p.end, |r| r.offset))
    }

    /// `init_transactions` of a transactional id: a new epoch fences every earlier incarnation,
    /// and a transaction one of them left open is aborted.
    pub fn init_producer(&mut self, id: &str) -> Result<u32, KafkaError> {
        self.up()?;
        let open = {
            let producer = self.producers.entry(id.to_string()).or_default();
            producer.epoch += 1;
            producer.open.take()
        };
        if let Some(txn) = open {
            self.end_txn(txn, false);
        }
        Ok(self.producers.get(id).map_or(0, |p| p.epoch))
    }

    fn current(&mut self, id: &str, epoch: u32) -> Result<&mut Producer, KafkaError> {
        match self.producers.get_mut(id) {
            Some(p) if p.epoch == epoch => Ok(p),
            _ => Err(KafkaError::Fenced),
        }
    }

    /// Begins a transaction.
    pub fn begin(&mut self, id: &str, epoch: u32) -> Result<(), KafkaError> {
        self.up()?;
        let txn = self.next_txn;
        let producer = self.current(id, epoch)?;
        if producer.open.is_some() {
            return Err(KafkaError::State("a transaction is already open"));
        }
        producer.open = Some(txn);
        self.next_txn += 1;
        self.txns.insert(txn, Txn::Open(BTreeSet::new()));
        Ok(())
    }

    /// Sends a record inside the producer's open transaction; returns its offset.
    pub fn send(&mut self, id: &str, epoch: u32, topic: &str, partition: i32, m: Message) -> Result<i64, KafkaError> {
        self.up()?;
        let txn = self
            .current(id, epoch)?
            .open
            .ok_or(KafkaError::State("send outside a transaction"))?;
        let now = self.now;
        let offset = self.partition(topic, partition)?.append(m, Kind::Txn(txn), now);
        if let Some(Txn::Open(touched)) = self.txns.get_mut(&txn) {
            touched.insert((topic.to_string(), partition));
        }
        Ok(offset)
    }

    /// Commits the producer's open transaction: its records become visible to read_committed.
    pub fn commit(&mut self, id: &str, epoch: u32) -> Result<(), KafkaError> {
        self.up()?;
        let txn = self
            .current(id, epoch)?
            .open
            .take()
            .ok_or(KafkaError::State("commit without a transaction"))?;
        self.end_txn(txn, true);
        Ok(())
    }

    /// Aborts the producer's open transaction.
    pub fn abort(&mut self, id: &str, epoch: u32) -> Result<(), KafkaError> {
        self.up()?;
        if let Some(txn) = self.current(id, epoch)?.open.take() {
            self.end_txn(txn, false);
        }
        Ok(())
    }

    fn end_txn(&mut self, txn: u64, commit: bool) {
        let now = self.now;
        let touched = match self
            .txns
            .insert(txn, if commit { Txn::Committed } else { Txn::Aborted })
        {
            Some(Txn::Open(touched)) => touched,
            _ => BTreeSet::new(),
        };
        for (topic, partition) in touched {
            if let Ok(p) = self.partition(&topic, partition) {
                p.append(Message::default(), Kind::Marker, now);
            }
        }
    }

    /// A record produced without a transaction (another producer, or a rogue one).
    pub fn append(&mut self, topic: &str, partition: i32, m: Message) -> Result<i64, KafkaError> {
        self.up()?;
        let now = self.now;
        Ok(self.partition(topic, partition)?.append(m, Kind::Plain, now))
    }

    /// A `read_committed` fetch of at most `max` records from `from`.
    pub fn read(&self, topic: &str, partition: i32, from: i64, max: usize) -> Result<Fetched, KafkaError> {
        self.up()?;
        let stable = self.last_stable(topic, partition)?;
        let p = self.partition_ref(topic, partition)?;
        if from < p.start || from > p.end {
            return Err(KafkaError::OutOfRange {
                earliest: p.start,
                end: p.end,
            });
        }
        let mut fetched = Fetched {
            records: Vec::new(),
            next: from,
        };
        let skip = usize::try_from(from - p.start).unwrap_or(0);
        for record in p.records.iter().skip(skip) {
            if record.offset >= stable || fetched.records.len() >= max {
                break;
            }
            fetched.next = record.offset + 1;
            if self.delivered(record) {
                fetched.records.push(record.clone());
            }
        }
        Ok(fetched)
    }

    /// Retention: deletes the log below `to` (at most up to its end), but no record appended
    /// after `older_than` (retention deletes old segments, never what was just written).
    pub fn truncate(&mut self, topic: &str, partition: i32, to: i64, older_than: u64) {
        if let Ok(p) = self.partition(topic, partition) {
            let young = p
                .records
                .iter()
                .find(|r| r.time > older_than)
                .map_or(p.end, |r| r.offset);
            let to = to.min(p.end).min(young);
            while p.records.front().is_some_and(|r| r.offset < to) {
                if let Some(r) = p.records.pop_front() {
                    p.deleted.push(r);
                }
            }
            p.start = p.start.max(to);
        }
    }

    fn delivered(&self, record: &Record) -> bool {
        match record.kind {
            Kind::Plain => true,
            Kind::Txn(t) => matches!(self.txns.get(&t), Some(Txn::Committed)),
            Kind::Marker => false,
        }
    }

    /// Every committed data record ever appended to a partition, retention or not, in offset
    /// order: what the oracles check the topic against.
    pub fn history(&self, topic: &str, partition: i32) -> Vec<Record> {
        let Ok(p) = self.partition_ref(topic, partition) else {
            return Vec::new();
        };
        p.deleted
            .iter()
            .chain(p.records.iter())
            .filter(|r| self.delivered(r))
            .cloned()
            .collect()
    }

    /// Whether retention deleted anything of `topic`.
    pub fn truncated(&self, topic: &str) -> bool {
        self.topics.get(topic).is_some_and(|ps| ps.iter().any(|p| p.start > 0))
    }

    /// Adds partitions to a topic (an operator's `seam deploy` of a larger count).
    pub fn grow(&mut self, topic: &str, by: i32) {
        if let Some(partitions) = self.topics.get_mut(topic) {
            partitions.extend((0..by).map(|_| Partition::default()));
        }
    }

    /// Every topic, with its partition count.
    pub fn topics(&self) -> Vec<(String, i32)> {
        self.topics.iter().map(|(t, ps)| (t.clone(), ps.len() as i32)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: &str) -> Message {
        Message {
            value: Some(v.as_bytes().to_vec()),
            ..Message::default()
        }
    }

    fn values(f: &Fetched) -> Vec<String> {
        f.records
            .iter()
            .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
            .collect()
    }

    #[test]
    fn read_committed_sees_committed_records_only_and_stops_at_an_open_transaction() {
        let mut k = Kafka::default();
        k.create_topic("t", 1);
        let e = k.init_producer("p").expect("init");
        k.begin("p", e).expect("begin");
        k.send("p", e, "t", 0, value("a")).expect("send");
        assert!(
            values(&k.read("t", 0, 0, 10).expect("read")).is_empty(),
            "open: invisible"
        );
        k.commit("p", e).expect("commit");
        k.begin("p", e).expect("begin");
        k.send("p", e, "t", 0, value("b")).expect("send");
        k.abort("p", e).expect("abort");
        k.append("t", 0, value("c")).expect("plain");
        let f = k.read("t", 0, 0, 10).expect("read");
        assert_eq!(values(&f), vec!["a", "c"], "aborted records and markers are skipped");
        assert_eq!(f.next, k.watermarks("t", 0).expect("marks").1);
    }

    #[test]
    fn a_new_incarnation_fences_the_old_one_and_aborts_what_it_left_open() {
        let mut k = Kafka::default();
        k.create_topic("t", 1);
        let old = k.init_producer("p").expect("init");
        k.begin("p", old).expect("begin");
        k.send("p", old, "t", 0, value("zombie")).expect("send");
        let new = k.init_producer("p").expect("init again");
        assert_eq!(k.commit("p", old), Err(KafkaError::Fenced));
        assert_eq!(k.send("p", old, "t", 0, value("late")), Err(KafkaError::Fenced));
        k.begin("p", new).expect("begin");
        k.send("p", new, "t", 0, value("fresh")).expect("send");
        k.commit("p", new).expect("commit");
        assert_eq!(values(&k.read("t", 0, 0, 10).expect("read")), vec!["fresh"]);
    }

    #[test]
    fn retention_makes_earlier_offsets_out_of_range() {
        let mut k = Kafka::default();
        k.create_topic("t", 1);
        for v in ["a", "b", "c"] {
            k.append("t", 0, value(v)).expect("append");
        }
        k.truncate("t", 0, 2, u64::MAX);
        assert_eq!(
            k.read("t", 0, 1, 10).map(|f| f.next),
            Err(KafkaError::OutOfRange { earliest: 2, end: 3 })
        );
        assert_eq!(values(&k.read("t", 0, 2, 10).expect("read")), vec!["c"]);
        k.down = true;
        assert_eq!(k.partitions("t"), Err(KafkaError::Unavailable));
    }
}
