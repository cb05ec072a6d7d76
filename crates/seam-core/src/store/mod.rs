//! A service's store: one database per service instance holding its model, its journal, its
//! positions in foreign topics, which foreign events it took in, its parked subjects and its DLQ
//! outbox.
//!
//! Which foreign events were taken in (applied, filtered, parked behind a dead letter, or covered
//! by a bootstrap's snapshot) is kept per source journal: every seq up to a `through` seq, plus a
//! marker per seq above it, folded into `through` as the gaps close at each commit. The store
//! grows with the consumer's lag across partitions, not with the events it ever took in. A
//! journal is named by an id made when it began (so a wiped source store, which starts numbering
//! at 1 again, is a new journal, not a repeat), and every entry records the seq of the previous
//! entry about its subject, so a consumer can check per-subject order where Kafka does not keep it
//! (putEvents). Events written before journals were named keep exact per-event markers.
//!
//! Everything lives in one ordered keyspace under one-byte prefixes, so a single atomic batch
//! can carry a state change, the events it emits and the positions it reached (invariant 3).
//! Writes are staged in a [`WriteSet`] that reads its own writes; the writer commits one set per
//! group of commands and flushes once for all of them.

pub mod engine;
pub mod records;

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use engine::{Engine, MemoryEngine, Pair, StoreError};
pub use records::{DeadLetter, JournalEntry};

use crate::offsets::OffsetMap;

/// Key prefixes of the keyspace.
mod prefix {
    pub const JOURNAL: u8 = b'j';
    pub const MODEL: u8 = b'm';
    pub const POSITION: u8 = b'p';
    /// Per-event markers: events of untracked (older) journals and other producers' ids.
    pub const APPLIED: u8 = b'a';
    /// Markers of events of a tracked journal above its `through` seq, one key per event
    /// (stores of earlier versions; read, folded and deleted, no longer written).
    pub const TAKEN: u8 = b't';
    /// Markers of events of a tracked journal above its `through` seq, as bitmaps of
    /// [`super::BLOCK_SEQS`] seqs each.
    pub const TAKEN_BLOCK: u8 = b'v';
    /// Per source journal: every seq up to this one was taken in.
    pub const THROUGH: u8 = b'u';
    /// Per subject of this service's own journal: the seq of its last entry.
    pub const SUBJECT: u8 = b'i';
    /// Per source topic and partition: the journal of the last event read there.
    pub const PARTITION_JOURNAL: u8 = b'g';
    pub const PARKED_SUBJECT: u8 = b'k';
    pub const PARKED_EVENT: u8 = b'q';
    pub const OUTBOX: u8 = b'o';
    pub const META: u8 = b'x';
    /// The text of every schema that wrote a journal entry, by fingerprint.
    pub const WRITER_SCHEMA: u8 = b'w';
    /// Model keys an own command created as placeholders (see `Apply::put_placeholder`).
    pub const PLACEHOLDER: u8 = b'h';
}

/// Keys under the meta prefix.
mod meta {
    pub const LAST_SEQ: &str = "last-seq";
    pub const PUBLISHED_SEQ: &str = "published-seq";
    /// The partition count the journal's subjects are hashed over.
    pub const PUBLISH_PARTITIONS: &str = "publish-partitions";
    pub const COUNTER: &str = "counter";
    pub const JOURNAL_ID: &str = "journal-id";
    /// Per source topic and class: how many dead letters are parked (`dlq-count\0<topic>\0<class>`).
    pub const DLQ_COUNT: &str = "dlq-count";
    /// Set once the counters cover every parked letter (stores of older versions count once).
    pub const DLQ_COUNTED: &str = "dlq-counted";
    /// Per source topic and record: events of a type the translator neither reads nor ignores
    /// (`unhandled\0<topic>\0<record>`).
    pub const UNHANDLED: &str = "unhandled";
}

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![prefix];
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(part);
    }
    k
}

fn journal_key(seq: u64) -> Vec<u8> {
    key(prefix::JOURNAL, &[&seq.to_be_bytes()])
}

fn position_key(topic: &str, partition: i32) -> Vec<u8> {
    key(prefix::POSITION, &[topic.as_bytes(), &partition.to_be_bytes()])
}

/// The marker of a foreign event taken in. A seam event id (`<service>/<seq>`) is keyed by its
/// service and big-endian seq, so one source's markers are appended in order at the end of
/// their range instead of scattered by the decimal seq's text order (each scattered insert
/// rewrote another sled leaf). Other ids keep their text under a byte no service name starts
/// with (0xFF never occurs in UTF-8).
fn applied_key(event_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(event_id.len() + 10);
    k.push(prefix::APPLIED);
    // Only canonical decimals ("7", not "07" or "+7"), so distinct ids never share a key.
    let canonical = event_id
        .rsplit_once('/')
        .is_some_and(|(_, n)| n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0')));
    match crate::envelope::parse_event_id(event_id).filter(|_| canonical) {
        Some((service, seq)) if !service.is_empty() && !service.contains('\0') => {
            k.extend_from_slice(service.as_bytes());
            k.push(0);
            k.extend_from_slice(&seq.to_be_bytes());
        }
        _ => {
            k.push(0xFF);
            k.extend_from_slice(event_id.as_bytes());
        }
    }
    k
}

fn taken_key(topic: &str, journal: &str, seq: u64) -> Vec<u8> {
    key(
        prefix::TAKEN,
        &[topic.as_bytes(), journal.as_bytes(), &seq.to_be_bytes()],
    )
}

/// Seqs per marker block: a block is 512 bytes, and a commit writes the few blocks its events
/// above `through` fall in, instead of a key per event (an event read from one partition ahead
/// of an earlier event in another is the usual case, not the exception).
const BLOCK_SEQS: u64 = 4096;

fn taken_block_key(topic: &str, journal: &str, block: u64) -> Vec<u8> {
    key(
        prefix::TAKEN_BLOCK,
        &[topic.as_bytes(), journal.as_bytes(), &block.to_be_bytes()],
    )
}

/// Whether `seq`'s bit is set in a stored block.
fn block_has(bits: &[u8], seq: u64) -> bool {
    let i = (seq % BLOCK_SEQS) as usize;
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Sets `seq`'s bit in a block.
fn block_set(bits: &mut Vec<u8>, seq: u64) {
    let i = (seq % BLOCK_SEQS) as usize;
    if bits.len() < i / 8 + 1 {
        bits.resize(i / 8 + 1, 0);
    }
    bits[i / 8] |= 1 << (i % 8);
}

/// Clears the bits of a block's seqs up to `through` (which falls in the block).
fn block_clear_through(bits: &mut [u8], through: u64) {
    let last = (through % BLOCK_SEQS) as usize;
    for (i, byte) in bits.iter_mut().enumerate().take(last / 8 + 1) {
        let cleared = last + 1 - (i * 8).min(last + 1);
        *byte &= if cleared >= 8 { 0 } else { !((1u8 << cleared) - 1) };
    }
}

fn through_key(topic: &str, journal: &str) -> Vec<u8> {
    key(prefix::THROUGH, &[topic.as_bytes(), journal.as_bytes()])
}

fn partition_journal_key(topic: &str, partition: i32) -> Vec<u8> {
    key(prefix::PARTITION_JOURNAL, &[topic.as_bytes(), &partition.to_be_bytes()])
}

fn subject_key(subject: &str) -> Vec<u8> {
    key(prefix::SUBJECT, &[subject.as_bytes()])
}

fn dlq_count_key(topic: &str, class: &str) -> Vec<u8> {
    key(
        prefix::META,
        &[meta::DLQ_COUNT.as_bytes(), topic.as_bytes(), class.as_bytes()],
    )
}

/// The class a parked letter is counted under: `parked` behind another, or `poison` itself.
fn letter_class(letter: &DeadLetter) -> &'static str {
    if letter.kind == "parked" {
        "parked"
    } else {
        "poison"
    }
}

fn parked_subject_key(topic: &str, subject: &str) -> Vec<u8> {
    key(prefix::PARKED_SUBJECT, &[topic.as_bytes(), subject.as_bytes()])
}

fn parked_event_prefix(topic: &str, subject: &str) -> Vec<u8> {
    let mut k = key(prefix::PARKED_EVENT, &[topic.as_bytes(), subject.as_bytes()]);
    k.push(0);
    k
}

/// The exclusive upper bound of all keys starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

fn be_u64(bytes: &[u8], what: &'static str) -> Result<u64, StoreError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            what,
            detail: format!("expected 8 bytes, found {}", bytes.len()),
        })
}

/// The journal a store keeps: an id made when it began, and the seq it began at (1 for a store
/// that began with this version; the next seq for one that journaled before journals were named,
/// whose earlier entries carry no id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalId {
    /// Random, hex.
    pub id: String,
    /// Its first seq.
    pub start: u64,
}

impl JournalId {
    /// The `seam-journal` header value: `<id>:<start>`.
    pub fn header(&self) -> String {
        format!("{}:{}", self.id, self.start)
    }

    /// Reads a `seam-journal` header value.
    pub fn parse(text: &str) -> Option<Self> {
        let (id, start) = text.split_once(':')?;
        let start = start.parse().ok()?;
        (!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) && start > 0).then(|| Self {
            id: id.to_string(),
            start,
        })
    }

    fn new(start: u64) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = Sha256::new();
        for _ in 0..2 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default(),
            );
            h.write_u32(std::process::id());
            hasher.update(h.finish().to_be_bytes());
        }
        let digest = hasher.finalize();
        Self {
            id: digest.iter().take(12).map(|b| format!("{b:02x}")).collect(),
            start,
        }
    }
}

/// How a foreign event is recognised when it comes again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKey {
    /// A seam event of a named journal.
    Tracked {
        /// The topic it is read from.
        topic: String,
        /// The source's journal.
        journal: JournalId,
        /// Its seq in that journal.
        seq: u64,
    },
    /// A seam event (`<service>/<seq>`) written before journals were named.
    Legacy {
        /// Its event id.
        id: String,
    },
    /// Any other event id (another producer's): remembered by its text.
    Other {
        /// Its event id.
        id: String,
    },
}

/// Model entries `(key, value)` read one at a time ([`Store::model_iter`]).
pub type ModelIter<'a> = Box<dyn Iterator<Item = Result<(String, Vec<u8>), StoreError>> + 'a>;

/// A parked dead letter with its store key (for removal on redrive).
#[derive(Debug, Clone)]
pub struct Parked {
    /// Store key of the parked event.
    pub key: Vec<u8>,
    /// The dead letter.
    pub letter: DeadLetter,
}

/// A record waiting in the DLQ outbox to be produced to `<consumer>.dlq`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboxRecord {
    /// Kafka key.
    pub key: Option<Vec<u8>>,
    /// Kafka value.
    pub value: Option<Vec<u8>>,
    /// Kafka headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The typed view of a service's store.
#[derive(Clone)]
pub struct Store {
    engine: Arc<dyn Engine>,
    /// Whether emitted events are written to the journal (not in a replay's shadow).
    journal: bool,
    /// The journal this store keeps.
    ident: Arc<JournalId>,
    /// The committed index of subjects to their last journal seq (`None`: no entry yet), as
    /// read or written since the store opened: each emitted event needs its subject's, and a
    /// store read per event was a tenth of the writer's time. Forgotten whole when full.
    subjects: Arc<std::sync::Mutex<std::collections::HashMap<String, Option<u64>>>>,
}

/// Subjects whose last seq a store remembers at most (about 100 bytes each).
const SUBJECTS_KEPT: usize = 100_000;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// A store in memory, for unit tests and simulation (see [`MemoryEngine`]).
    pub fn in_memory() -> Self {
        // A fresh memory engine cannot fail: its reads and writes are infallible.
        Self::with_engine(Arc::new(MemoryEngine::default())).unwrap_or_else(|e| unreachable!("{e}"))
    }

    /// A store over any engine. A store without a journal id gets one now (durably, before
    /// anything can be published under it).
    pub fn with_engine(engine: Arc<dyn Engine>) -> Result<Self, StoreError> {
        Self::with_engine_named(engine, JournalId::new)
    }

    /// [`Store::with_engine`] where a new journal's id comes from `name` (given its first seq)
    /// instead of randomness: the simulator's stores, which must replay identically from a seed.
    pub fn with_engine_named(engine: Arc<dyn Engine>, name: impl FnOnce(u64) -> JournalId) -> Result<Self, StoreError> {
        let id_key = key(prefix::META, &[meta::JOURNAL_ID.as_bytes()]);
        let ident = match engine.get(&id_key)? {
            Some(v) => JournalId::parse(&String::from_utf8_lossy(&v)).ok_or_else(|| StoreError::Corrupt {
                what: "journal id",
                detail: String::from_utf8_lossy(&v).into_owned(),
            })?,
            None => {
                let last = match engine.get(&key(prefix::META, &[meta::LAST_SEQ.as_bytes()]))? {
                    Some(v) => be_u64(&v, "meta")?,
                    None => 0,
                };
                let ident = name(last + 1);
                engine.write(vec![(id_key, Some(ident.header().into_bytes()))])?;
                engine.flush()?;
                ident
            }
        };
        let store = Self {
            engine,
            journal: true,
            ident: Arc::new(ident),
            subjects: Arc::default(),
        };
        store.count_letters_once()?;
        Ok(store)
    }

    /// Counts the parked letters of a store written before letters were counted, once.
    fn count_letters_once(&self) -> Result<(), StoreError> {
        let counted = key(prefix::META, &[meta::DLQ_COUNTED.as_bytes()]);
        if self.engine.get(&counted)?.is_some() {
            return Ok(());
        }
        let mut counts: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let start = [prefix::PARKED_EVENT];
        for item in self.engine.range(&start, &prefix_end(&start)) {
            let letter = DeadLetter::decode(&item?.1)?;
            *counts
                .entry(dlq_count_key(&letter.topic, letter_class(&letter)))
                .or_default() += 1;
        }
        let mut writes: Vec<_> = counts
            .into_iter()
            .map(|(k, n)| (k, Some(n.to_be_bytes().to_vec())))
            .collect();
        writes.push((counted, Some(Vec::new())));
        self.engine.write(writes)?;
        self.engine.flush()
    }

    /// How many dead letters are parked, per source topic and class (`poison` or `parked`),
    /// without reading the letters.
    pub fn dead_letter_counts(&self) -> Result<BTreeMap<(String, String), u64>, StoreError> {
        self.pair_counts(meta::DLQ_COUNT)
    }

    /// How many events of each record type its translator neither reads nor ignores arrived,
    /// per source topic: `(topic, record) → n`. They were skipped; see [`WriteSet::count_unhandled`].
    pub fn unhandled_counts(&self) -> Result<BTreeMap<(String, String), u64>, StoreError> {
        self.pair_counts(meta::UNHANDLED)
    }

    /// The non-zero counters `<name>\0<a>\0<b>` under the meta prefix, as `(a, b) → n`.
    fn pair_counts(&self, name: &str) -> Result<BTreeMap<(String, String), u64>, StoreError> {
        let start = key(prefix::META, &[name.as_bytes(), b""]);
        let mut out = BTreeMap::new();
        for item in self.engine.range(&start, &prefix_end(&start)) {
            let (k, v) = item?;
            let rest = k.get(start.len()..).unwrap_or_default();
            let mut parts = rest.splitn(2, |b| *b == 0);
            let (Some(a), Some(b)) = (parts.next(), parts.next()) else {
                continue;
            };
            let n = be_u64(&v, "counter")?;
            if n > 0 {
                out.insert(
                    (
                        String::from_utf8_lossy(a).into_owned(),
                        String::from_utf8_lossy(b).into_owned(),
                    ),
                    n,
                );
            }
        }
        Ok(out)
    }

    /// The journal this store keeps.
    pub fn journal_id(&self) -> &JournalId {
        &self.ident
    }

    /// The same store, but emitted events are numbered and never written: a replay's shadow
    /// compares replicas only and is thrown away, so journaling there was a third of its writes.
    pub fn without_journal(self) -> Self {
        Self { journal: false, ..self }
    }

    fn meta_u64(&self, name: &str) -> Result<u64, StoreError> {
        match self.engine.get(&key(prefix::META, &[name.as_bytes()]))? {
            Some(v) => be_u64(&v, "meta"),
            None => Ok(0),
        }
    }

    /// Keeps the text of each `(fingerprint, schema)` durably, before any entry written with
    /// it can commit: a later binary with other schemas still knows what wrote every entry.
    pub fn remember_writer_schemas<'a>(
        &self,
        schemas: impl IntoIterator<Item = (u64, &'a str)>,
    ) -> Result<(), StoreError> {
        let mut writes = Vec::new();
        for (fingerprint, text) in schemas {
            let k = key(prefix::WRITER_SCHEMA, &[&fingerprint.to_be_bytes()]);
            if self.engine.get(&k)?.is_none() {
                writes.push((k, Some(text.as_bytes().to_vec())));
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        self.engine.write(writes)?;
        self.engine.flush()
    }

    /// The text of the schema with this fingerprint, if an entry was ever written with it here.
    pub fn writer_schema(&self, fingerprint: u64) -> Result<Option<String>, StoreError> {
        Ok(self
            .engine
            .get(&key(prefix::WRITER_SCHEMA, &[&fingerprint.to_be_bytes()]))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Every schema text this store remembers (see [`Store::remember_writer_schemas`]).
    pub fn writer_schemas(&self) -> Result<Vec<String>, StoreError> {
        let start = [prefix::WRITER_SCHEMA];
        self.engine
            .range(&start, &prefix_end(&start))
            .map(|item| item.map(|(_, v)| String::from_utf8_lossy(&v).into_owned()))
            .collect()
    }

    /// The seq of the last journal entry (0 when the journal is empty).
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        self.meta_u64(meta::LAST_SEQ)
    }

    /// The last seq the publisher confirmed (bookkeeping; the topic tail is authoritative).
    pub fn published_seq(&self) -> Result<u64, StoreError> {
        self.meta_u64(meta::PUBLISHED_SEQ)
    }

    /// Records the publisher's progress, durably. The topic's tail usually proves what is out,
    /// but not once retention or `kafka-delete-records` took a partition's last records: then
    /// this is all that does, and losing it to a crash would publish those entries again.
    pub fn set_published_seq(&self, seq: u64) -> Result<(), StoreError> {
        self.engine.write(vec![(
            key(prefix::META, &[meta::PUBLISHED_SEQ.as_bytes()]),
            Some(seq.to_be_bytes().to_vec()),
        )])?;
        self.engine.flush()
    }

    /// The partition count the publisher hashes this journal's subjects over, once it has
    /// published: kept when the topic grows, so a subject never moves partition.
    pub fn publish_partitions(&self) -> Result<Option<i32>, StoreError> {
        let n = self.meta_u64(meta::PUBLISH_PARTITIONS)?;
        Ok((n > 0).then_some(n as i32))
    }

    /// Records the partition count the publisher hashes over, durably (before anything is
    /// published with it).
    pub fn set_publish_partitions(&self, partitions: i32) -> Result<(), StoreError> {
        self.engine.write(vec![(
            key(prefix::META, &[meta::PUBLISH_PARTITIONS.as_bytes()]),
            Some((partitions.max(0) as u64).to_be_bytes().to_vec()),
        )])?;
        self.engine.flush()
    }

    /// Up to `limit` journal entries with seq ≥ `from`, in seq order.
    pub fn journal_from(&self, from: u64, limit: usize) -> Result<Vec<JournalEntry>, StoreError> {
        let start = journal_key(from);
        let end = prefix_end(&[prefix::JOURNAL]);
        self.engine
            .range(&start, &end)
            .take(limit)
            .map(|item| item.and_then(|(_, v)| JournalEntry::decode(&v)))
            .collect()
    }

    /// One page of the journal after `after` (exclusive) and up to `until` (inclusive: the
    /// durable end), optionally only one record type and/or subject; scans at most `scan_limit`
    /// entries so a selective filter cannot scan forever. Returns the entries and the seq to
    /// continue after.
    pub fn journal_page(
        &self,
        after: u64,
        until: u64,
        limit: usize,
        filter: (Option<&str>, Option<&str>),
        scan_limit: usize,
    ) -> Result<(Vec<JournalEntry>, u64), StoreError> {
        let (record, subject) = filter;
        let start = journal_key(after.saturating_add(1));
        let end = journal_key(until.saturating_add(1));
        let mut out = Vec::new();
        let mut last = after;
        for item in self.engine.range(&start, &end).take(scan_limit) {
            let entry = JournalEntry::decode(&item?.1)?;
            last = entry.seq;
            if record.is_none_or(|r| r == entry.record) && subject.is_none_or(|s| s == entry.subject) {
                out.push(entry);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok((out, last))
    }

    /// Every stored position.
    pub fn positions(&self) -> Result<OffsetMap, StoreError> {
        let start = [prefix::POSITION];
        let mut map = OffsetMap::default();
        for item in self.engine.range(&start, &prefix_end(&start)) {
            let (k, v) = item?;
            let rest = k.get(1..).unwrap_or_default();
            let split = rest.len().saturating_sub(5);
            let (topic, partition) = rest.split_at(split);
            let partition = partition
                .get(1..)
                .and_then(|p| p.try_into().ok())
                .map(i32::from_be_bytes)
                .ok_or_else(|| StoreError::Corrupt {
                    what: "position",
                    detail: "bad key".into(),
                })?;
            let topic = String::from_utf8_lossy(topic).into_owned();
            map.set(&topic, partition, be_u64(&v, "position")? as i64);
        }
        Ok(map)
    }

    /// An interrupted bootstrap of `topic`: the snapshot seq and the index of the next record.
    pub fn bootstrap_marker(&self, topic: &str) -> Result<Option<(u64, u64)>, StoreError> {
        match self.engine.get(&key(prefix::META, &[b"bootstrap", topic.as_bytes()]))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(|e| StoreError::Corrupt {
                what: "bootstrap marker",
                detail: e.to_string(),
            }),
        }
    }

    /// Forgets the positions in `topic`, so the next start reads it again from the log start.
    /// Already applied events are recognised by their ids and change nothing (a rewind).
    pub fn clear_positions(&self, topic: &str) -> Result<(), StoreError> {
        let start = key(prefix::POSITION, &[topic.as_bytes()]);
        let mut start = start;
        start.push(0);
        let end = prefix_end(&start);
        let keys: Vec<_> = self
            .engine
            .range(&start, &end)
            .map(|i| i.map(|(k, _)| (k, None)))
            .collect::<Result<_, _>>()?;
        self.engine.write(keys)?;
        self.engine.flush()
    }

    /// The raw model value at `key`.
    pub fn model_get(&self, model_key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.engine.get(&key(prefix::MODEL, &[model_key.as_bytes()]))
    }

    /// Whether an own command created the model key as a placeholder for foreign data that
    /// has not arrived (replay keeps such a key while the rebuilt replica lacks it).
    pub fn is_placeholder(&self, model_key: &str) -> Result<bool, StoreError> {
        Ok(self
            .engine
            .get(&key(prefix::PLACEHOLDER, &[model_key.as_bytes()]))?
            .is_some())
    }

    /// Model entries whose key starts with `model_prefix`, in key order.
    pub fn model_scan(&self, model_prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let start = key(prefix::MODEL, &[model_prefix.as_bytes()]);
        self.engine
            .range(&start, &prefix_end(&start))
            .map(|item| item.map(|(k, v)| (String::from_utf8_lossy(k.get(1..).unwrap_or_default()).into_owned(), v)))
            .collect()
    }

    /// Model entries under `model_prefix`, in key order, read as the iteration goes.
    pub fn model_iter<'a>(&'a self, model_prefix: &str) -> ModelIter<'a> {
        let start = key(prefix::MODEL, &[model_prefix.as_bytes()]);
        Box::new(
            self.engine.range(&start, &prefix_end(&start)).map(|item| {
                item.map(|(k, v)| (String::from_utf8_lossy(k.get(1..).unwrap_or_default()).into_owned(), v))
            }),
        )
    }

    /// Whether `subject` of `topic` is parked behind a dead letter.
    pub fn is_parked(&self, topic: &str, subject: &str) -> Result<bool, StoreError> {
        Ok(self.engine.get(&parked_subject_key(topic, subject))?.is_some())
    }

    /// Parked dead letters, oldest first per subject; all of them, or one topic's subject's.
    pub fn parked(&self, only: Option<(&str, &str)>) -> Result<Vec<Parked>, StoreError> {
        let start = match only {
            Some((topic, subject)) => parked_event_prefix(topic, subject),
            None => vec![prefix::PARKED_EVENT],
        };
        self.parked_in(&start, &prefix_end(&start), usize::MAX)
    }

    /// Up to `limit` parked letters with keys in `[from, to)`.
    fn parked_in(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<Parked>, StoreError> {
        self.engine
            .range(from, to)
            .take(limit)
            .map(|item| {
                item.and_then(|(k, v)| {
                    Ok(Parked {
                        key: k,
                        letter: DeadLetter::decode(&v)?,
                    })
                })
            })
            .collect()
    }

    /// Up to `limit` parked dead letters with keys after `after` (all when `None`), in key order:
    /// by topic and subject, each subject's oldest first. For paging through many letters.
    pub fn parked_page(&self, after: Option<&[u8]>, limit: usize) -> Result<Vec<Parked>, StoreError> {
        let all = [prefix::PARKED_EVENT];
        let start = match after {
            Some(key) => {
                let mut next = key.to_vec();
                next.push(0);
                next
            }
            None => all.to_vec(),
        };
        self.parked_in(&start, &prefix_end(&all), limit)
    }

    /// Every parked dead letter of `topic`, by subject, each subject's oldest first.
    pub fn parked_of_topic(&self, topic: &str) -> Result<Vec<Parked>, StoreError> {
        let start = key(prefix::PARKED_EVENT, &[topic.as_bytes(), b""]);
        self.parked_in(&start, &prefix_end(&start), usize::MAX)
    }

    /// The journal (id) of the last event read from `topic`/`partition`, if one had a journal.
    pub fn partition_journal(&self, topic: &str, partition: i32) -> Result<Option<String>, StoreError> {
        Ok(self
            .engine
            .get(&partition_journal_key(topic, partition))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Forgets which journal each partition of `topic` was read from (its positions start over).
    pub fn partition_journal_keys(&self, topic: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let start = key(prefix::PARTITION_JOURNAL, &[topic.as_bytes(), b""]);
        self.engine
            .range(&start, &prefix_end(&start))
            .map(|item| item.map(|(k, _)| k))
            .collect()
    }

    /// The raw pairs under a key prefix, in key order (for a replay's swap).
    #[doc(hidden)] // for the runtime (seam), not for services
    pub fn raw_range<'a>(&'a self, start: &[u8]) -> Box<dyn Iterator<Item = Result<Pair, StoreError>> + 'a> {
        self.engine.range(start, &prefix_end(start))
    }

    /// The key prefixes of what a consumer keeps about one source topic besides its replicas:
    /// positions, which events were taken in, and which subjects are parked (a replay swaps
    /// them with the replica they belong to; the dead letters themselves are matched one by one).
    #[doc(hidden)] // for the runtime (seam), not for services
    pub fn source_bookkeeping(topic: &str) -> [Vec<u8>; 6] {
        [
            prefix::POSITION,
            prefix::TAKEN,
            prefix::TAKEN_BLOCK,
            prefix::THROUGH,
            prefix::PARKED_SUBJECT,
            prefix::PARTITION_JOURNAL,
        ]
        .map(|p| key(p, &[topic.as_bytes(), b""]))
    }

    /// The key prefix of model entries under `model_prefix`.
    #[doc(hidden)] // for the runtime (seam), not for services
    pub fn model_range_start(model_prefix: &str) -> Vec<u8> {
        key(prefix::MODEL, &[model_prefix.as_bytes()])
    }

    /// Up to `limit` records waiting to be produced to the DLQ, oldest first.
    pub fn outbox(&self, limit: usize) -> Result<Vec<(Vec<u8>, OutboxRecord)>, StoreError> {
        let start = [prefix::OUTBOX];
        self.engine
            .range(&start, &prefix_end(&start))
            .take(limit)
            .map(|item| {
                item.and_then(|(k, v)| {
                    serde_json::from_slice(&v)
                        .map(|r| (k, r))
                        .map_err(|e| StoreError::Corrupt {
                            what: "outbox",
                            detail: e.to_string(),
                        })
                })
            })
            .collect()
    }

    /// Removes produced outbox records.
    pub fn outbox_done(&self, keys: Vec<Vec<u8>>) -> Result<(), StoreError> {
        self.engine.write(keys.into_iter().map(|k| (k, None)).collect())
    }

    /// A SHA-256 over the model, in key order: equal digests mean equal state.
    pub fn digest(&self) -> Result<String, StoreError> {
        let start = [prefix::MODEL];
        let mut hasher = Sha256::new();
        for item in self.engine.range(&start, &prefix_end(&start)) {
            let (k, v) = item?;
            hasher.update((k.len() as u64).to_be_bytes());
            hasher.update(&k);
            hasher.update((v.len() as u64).to_be_bytes());
            hasher.update(&v);
        }
        Ok(format!("{:x}", hasher.finalize()))
    }

    /// Applies a write set's kept writes atomically; with `durable`, flushes before returning.
    /// The set stays usable: it keeps counting seqs from where it is, so the next command of
    /// the same writer continues the journal instead of reusing seqs. Returns the journal
    /// entries it wrote, so the writer can hand them to the publisher without a read back.
    pub fn commit(&self, set: &mut WriteSet, durable: bool) -> Result<Vec<JournalEntry>, StoreError> {
        self.fold_taken(set)?;
        let mut writes: Vec<_> = std::mem::take(&mut set.committed).into_iter().collect();
        if !set.entries.is_empty() {
            // Once per commit rather than once per kept command.
            writes.push((
                key(prefix::META, &[meta::LAST_SEQ.as_bytes()]),
                Some(set.last_seq.to_be_bytes().to_vec()),
            ));
        }
        let entries = if self.journal {
            std::mem::take(&mut set.entries)
        } else {
            set.entries.clear();
            Vec::new()
        };
        set.parked_in_store = None;
        set.placeholders_in_store = None;
        set.placeholders_in_set = false;
        set.known.clear();
        if !writes.is_empty() {
            self.engine.write(writes)?;
        }
        self.remember_subjects(entries.iter().map(|e| (e.subject.as_str(), Some(e.seq))));
        if durable {
            self.engine.flush()?;
        }
        Ok(entries)
    }

    /// The committed seq of `subject`'s last journal entry, from memory when known.
    fn last_of_subject(&self, subject: &str) -> Result<Option<u64>, StoreError> {
        if let Some(known) = self.subjects.lock().ok().and_then(|m| m.get(subject).copied()) {
            return Ok(known);
        }
        let last = match self.engine.get(&subject_key(subject))? {
            Some(v) => Some(be_u64(&v, "subject index")?),
            None => None,
        };
        self.remember_subjects(std::iter::once((subject, last)));
        Ok(last)
    }

    /// Remembers committed subject seqs (forgetting all first when the memory is full).
    fn remember_subjects<'a>(&self, seqs: impl Iterator<Item = (&'a str, Option<u64>)>) {
        let Ok(mut known) = self.subjects.lock() else { return };
        for (subject, seq) in seqs {
            if let Some(last) = known.get_mut(subject) {
                *last = seq;
                continue;
            }
            if known.len() >= SUBJECTS_KEPT {
                known.clear();
            }
            known.insert(subject.to_string(), seq);
        }
    }

    /// Folds the markers of each source journal the set touched into its `through` seq as far
    /// as they are contiguous, and keeps the rest in marker blocks: one `through` write per
    /// journal per commit, and one write per block the commit's remaining markers fall in.
    /// Blocks `through` passed are deleted, as are per-event markers of older versions.
    fn fold_taken(&self, set: &mut WriteSet) -> Result<(), StoreError> {
        for ((topic, journal), (start, mut fresh)) in std::mem::take(&mut set.touched) {
            let through_at = through_key(&topic, &journal);
            let stored = match set.committed.get(&through_at) {
                Some(Some(v)) => Some(be_u64(v, "through")?),
                _ => self
                    .engine
                    .get(&through_at)?
                    .map(|v| be_u64(&v, "through"))
                    .transpose()?,
            };
            let mut blocks: BTreeMap<u64, Option<Vec<u8>>> = BTreeMap::new();
            let mut through = stored.unwrap_or(start.saturating_sub(1));
            loop {
                let next = through + 1;
                if !fresh.remove(&next) {
                    let block = next / BLOCK_SEQS;
                    let bits = match blocks.entry(block) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => {
                            e.insert(self.engine.get(&taken_block_key(&topic, &journal, block))?)
                        }
                    };
                    let in_block = bits.as_deref().is_some_and(|bits| block_has(bits, next));
                    if !in_block {
                        let marker = taken_key(&topic, &journal, next);
                        if self.engine.get(&marker)?.is_none() {
                            break;
                        }
                        set.committed.insert(marker, None);
                    }
                }
                through = next;
            }
            // Blocks this commit rewrites: (whether it was stored, its bits).
            let mut changed: BTreeMap<u64, (bool, Vec<u8>)> = BTreeMap::new();
            let mut load = |block: u64| -> Result<(bool, Vec<u8>), StoreError> {
                let bits = match blocks.remove(&block) {
                    Some(bits) => bits,
                    None => self.engine.get(&taken_block_key(&topic, &journal, block))?,
                };
                Ok((bits.is_some(), bits.unwrap_or_default()))
            };
            for seq in fresh {
                let block = seq / BLOCK_SEQS;
                if let std::collections::btree_map::Entry::Vacant(e) = changed.entry(block) {
                    e.insert(load(block)?);
                }
                if let Some((_, bits)) = changed.get_mut(&block) {
                    block_set(bits, seq);
                }
            }
            if stored != Some(through) {
                // What `through` passed says nothing any more: whole blocks go, and the block
                // it stops in keeps only the seqs above it.
                let open = (through + 1) / BLOCK_SEQS;
                if let std::collections::btree_map::Entry::Vacant(e) = changed.entry(open) {
                    e.insert(load(open)?);
                }
                if let Some((_, bits)) = changed.get_mut(&open) {
                    if through >= open * BLOCK_SEQS {
                        block_clear_through(bits, through);
                    }
                }
                let first = taken_block_key(&topic, &journal, 0);
                let passed = taken_block_key(&topic, &journal, open);
                for item in self.engine.range(&first, &passed) {
                    set.committed.insert(item?.0, None);
                }
                set.committed.insert(through_at, Some(through.to_be_bytes().to_vec()));
            }
            for (block, (was_stored, bits)) in changed {
                let any = bits.iter().any(|b| *b != 0);
                if any || was_stored {
                    set.committed
                        .insert(taken_block_key(&topic, &journal, block), any.then_some(bits));
                }
            }
        }
        Ok(())
    }

    /// Makes every completed write durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.engine.flush()
    }

    /// A new write set over the store's current state.
    pub fn write_set(&self) -> Result<WriteSet, StoreError> {
        Ok(WriteSet {
            committed: BTreeMap::new(),
            staged: BTreeMap::new(),
            last_seq: self.last_seq()?,
            staged_entries: Vec::new(),
            entries: Vec::new(),
            counter: self.meta_u64(meta::COUNTER)?,
            parked_in_store: None,
            placeholders_in_store: None,
            placeholders_in_set: false,
            journal: self.journal,
            // Subjects first seen by a journal that began before subjects were tracked may
            // have earlier entries: their predecessor is unknown.
            new_subjects_first: self.ident.start == 1,
            touched: BTreeMap::new(),
            staged_fresh: Vec::new(),
            known: Vec::new(),
        })
    }

    /// Whether any model key is marked as a placeholder: one probe, so the usual store skips a
    /// lookup per written key.
    fn any_placeholder(&self) -> Result<bool, StoreError> {
        self.any_under(prefix::PLACEHOLDER)
    }

    /// Whether any subject is parked at all: one probe, so the usual store (none parked) skips
    /// a lookup per event.
    fn any_parked_subject(&self) -> Result<bool, StoreError> {
        self.any_under(prefix::PARKED_SUBJECT)
    }

    /// Whether any key starts with `prefix`.
    fn any_under(&self, prefix: u8) -> Result<bool, StoreError> {
        let start = [prefix];
        Ok(self
            .engine
            .range(&start, &prefix_end(&start))
            .next()
            .transpose()?
            .is_some())
    }
}

/// Writes staged for one atomic commit, read-your-writes, with a savepoint per command so a
/// rejected command leaves nothing behind.
#[derive(Debug)]
pub struct WriteSet {
    committed: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    staged: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    last_seq: u64,
    staged_entries: Vec<JournalEntry>,
    entries: Vec<JournalEntry>,
    counter: u64,
    /// Whether the store (not this set) has a parked subject; learnt on first need, forgotten
    /// at each commit.
    parked_in_store: Option<bool>,
    /// Whether the store (not this set) has a placeholder mark; learnt on first need,
    /// forgotten at each commit.
    placeholders_in_store: Option<bool>,
    /// Whether this set marked a placeholder since its last commit.
    placeholders_in_set: bool,
    journal: bool,
    /// Whether a subject without an index entry is new (its first entry has prev 0).
    new_subjects_first: bool,
    /// Source journals whose markers this set kept: (topic, journal id) → (the journal's first
    /// seq, seqs marked here and not in the store).
    touched: BTreeMap<(String, String), (u64, std::collections::BTreeSet<u64>)>,
    /// Markers staged by the current command: kept or discarded with it.
    staged_fresh: Vec<(String, String, u64, u64)>,
    /// What this set learnt of the store's markers, per (topic, journal id) read since its last
    /// commit: the stored `through` seq and the stored markers above it, so the usual event
    /// costs no store read at all. Forgotten at each commit.
    known: Vec<Known>,
}

/// The store's dedupe state of one source journal, as a write set learnt it.
#[derive(Debug)]
struct Known {
    topic: String,
    journal: String,
    /// The stored `through` seq (`None`: not read yet).
    through: Option<u64>,
    /// Every stored per-event marker of the journal (older versions), when there were at most
    /// [`KNOWN_MARKERS`] (`None`: not read yet; `Some(None)`: more, so each is looked up).
    stored: Option<Option<std::collections::BTreeSet<u64>>>,
    /// Stored marker blocks read so far (`None`: no such block).
    blocks: BTreeMap<u64, Option<Vec<u8>>>,
}

/// Stored markers of one journal a write set reads in one scan at most. Markers are stored only
/// for events taken in ahead of an earlier one (another partition's, or one posted with
/// putEvents), so there are usually a few hundred at most.
const KNOWN_MARKERS: usize = 4096;

impl WriteSet {
    fn read(&self, store: &Store, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.staged.get(k).or_else(|| self.committed.get(k)) {
            return Ok(v.clone());
        }
        store.engine.get(k)
    }

    fn stage(&mut self, k: Vec<u8>, v: Option<Vec<u8>>) {
        self.staged.insert(k, v);
    }

    /// Keeps the staged writes of the current command.
    pub fn keep(&mut self) {
        let staged = std::mem::take(&mut self.staged);
        if self.committed.is_empty() {
            self.committed = staged;
        } else {
            self.committed.extend(staged);
        }
        self.entries.append(&mut self.staged_entries);
        if let Some(last) = self.entries.last() {
            self.last_seq = last.seq;
        }
        for (topic, journal, start, seq) in self.staged_fresh.drain(..) {
            self.touched
                .entry((topic, journal))
                .or_insert_with(|| (start, Default::default()))
                .1
                .insert(seq);
        }
    }

    /// Drops the staged writes of the current command.
    pub fn discard(&mut self) {
        self.staged.clear();
        self.staged_entries.clear();
        self.staged_fresh.clear();
    }

    /// Whether nothing is staged or kept.
    pub fn is_empty(&self) -> bool {
        self.committed.is_empty() && self.staged.is_empty() && self.entries.is_empty()
    }

    /// Journal entries kept so far.
    pub fn entries(&self) -> &[JournalEntry] {
        &self.entries
    }

    /// The seq of the last kept journal entry.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Reads a model value, seeing staged writes.
    pub fn model_get(&self, store: &Store, model_key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(store, &key(prefix::MODEL, &[model_key.as_bytes()]))
    }

    /// Model entries under a prefix, merging staged writes over the stored ones.
    pub fn model_scan(&self, store: &Store, model_prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let start = key(prefix::MODEL, &[model_prefix.as_bytes()]);
        let end = prefix_end(&start);
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for item in store.engine.range(&start, &end) {
            let (k, v) = item?;
            merged.insert(k, Some(v));
        }
        for layer in [&self.committed, &self.staged] {
            for (k, v) in layer.range(start.clone()..end.clone()) {
                merged.insert(k.clone(), v.clone());
            }
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (String::from_utf8_lossy(k.get(1..).unwrap_or_default()).into_owned(), v)))
            .collect())
    }

    /// Stages a placeholder mark for a model key (`false` removes it).
    pub fn mark_placeholder(&mut self, model_key: &str, placeholder: bool) {
        let k = key(prefix::PLACEHOLDER, &[model_key.as_bytes()]);
        self.placeholders_in_set |= placeholder;
        self.stage(k, placeholder.then(Vec::new));
    }

    /// Stages a model write (`None` removes).
    pub fn model_put(&mut self, model_key: &str, value: Option<Vec<u8>>) {
        self.stage(key(prefix::MODEL, &[model_key.as_bytes()]), value);
    }

    /// Stages a journal entry (numbering it and linking it to its subject's previous entry) and
    /// returns its seq.
    pub fn append(&mut self, store: &Store, mut entry: JournalEntry) -> Result<u64, StoreError> {
        let seq = self.last_seq + self.staged_entries.len() as u64 + 1;
        entry.seq = seq;
        if self.journal {
            let index = subject_key(&entry.subject);
            let last = match self.staged.get(&index).or_else(|| self.committed.get(&index)) {
                Some(Some(v)) => Some(be_u64(v, "subject index")?),
                Some(None) => None,
                None => store.last_of_subject(&entry.subject)?,
            };
            entry.prev = match last {
                Some(seq) => Some(seq),
                None if self.new_subjects_first => Some(0),
                None => None,
            };
            self.stage(index, Some(seq.to_be_bytes().to_vec()));
            self.stage(journal_key(seq), Some(entry.encode()));
        }
        self.staged_entries.push(entry);
        Ok(seq)
    }

    /// Stages a position.
    pub fn set_position(&mut self, topic: &str, partition: i32, next_offset: i64) {
        self.stage(
            position_key(topic, partition),
            Some((next_offset.max(0) as u64).to_be_bytes().to_vec()),
        );
    }

    /// The seq up to which every event of `journal` read from `topic` was taken in.
    fn through(&mut self, store: &Store, topic: &str, journal: &JournalId) -> Result<u64, StoreError> {
        let k = through_key(topic, &journal.id);
        let staged = match self.staged.get(&k).or_else(|| self.committed.get(&k)) {
            Some(Some(v)) => Some(be_u64(v, "through")?),
            Some(None) => Some(journal.start.saturating_sub(1)),
            None => None,
        };
        if let Some(through) = staged {
            return Ok(through);
        }
        let known = self.known(topic, &journal.id);
        if let Some(through) = known.through {
            return Ok(through);
        }
        let through = match store.engine.get(&k)? {
            Some(v) => be_u64(&v, "through")?,
            None => journal.start.saturating_sub(1),
        };
        self.known(topic, &journal.id).through = Some(through);
        Ok(through)
    }

    /// What this set knows of `journal`'s markers in the store (an entry made on first use).
    fn known(&mut self, topic: &str, journal: &str) -> &mut Known {
        let at = match self.known.iter().position(|k| k.topic == topic && k.journal == journal) {
            Some(at) => at,
            None => {
                self.known.push(Known {
                    topic: topic.to_string(),
                    journal: journal.to_string(),
                    through: None,
                    stored: None,
                    blocks: BTreeMap::new(),
                });
                self.known.len() - 1
            }
        };
        &mut self.known[at]
    }

    /// Whether the store holds the marker of `seq` of `journal`: the journal's stored markers
    /// are read once per commit, so the usual event needs no read of its own.
    fn marker_stored(&mut self, store: &Store, topic: &str, journal: &str, seq: u64) -> Result<bool, StoreError> {
        let block = seq / BLOCK_SEQS;
        if !self.known(topic, journal).blocks.contains_key(&block) {
            let bits = store.engine.get(&taken_block_key(topic, journal, block))?;
            self.known(topic, journal).blocks.insert(block, bits);
        }
        let in_block = self.known(topic, journal).blocks.get(&block).and_then(Option::as_deref);
        if in_block.is_some_and(|bits| block_has(bits, seq)) {
            return Ok(true);
        }
        if self.known(topic, journal).stored.is_none() {
            let start = key(prefix::TAKEN, &[topic.as_bytes(), journal.as_bytes(), b""]);
            let mut seqs = std::collections::BTreeSet::new();
            let mut all = true;
            for item in store.engine.range(&start, &prefix_end(&start)) {
                if seqs.len() == KNOWN_MARKERS {
                    all = false;
                    break;
                }
                let (k, _) = item?;
                seqs.insert(be_u64(
                    k.get(k.len().saturating_sub(8)..).unwrap_or_default(),
                    "marker",
                )?);
            }
            self.known(topic, journal).stored = Some(all.then_some(seqs));
        }
        match &self.known(topic, journal).stored {
            Some(Some(seqs)) => Ok(seqs.contains(&seq)),
            _ => Ok(store.engine.get(&taken_key(topic, journal, seq))?.is_some()),
        }
    }

    /// Whether a foreign event was taken in already (stored or staged): applied, filtered,
    /// parked behind a dead letter, or covered by a bootstrap's snapshot.
    pub fn is_taken(&mut self, store: &Store, event: &EventKey) -> Result<bool, StoreError> {
        match event {
            EventKey::Tracked { topic, journal, seq } => {
                if *seq <= self.through(store, topic, journal)? {
                    return Ok(true);
                }
                let fresh = self
                    .staged_fresh
                    .iter()
                    .any(|(t, j, _, s)| s == seq && t == topic && *j == journal.id)
                    || self
                        .touched
                        .iter()
                        .any(|((t, j), (_, seqs))| t == topic && *j == journal.id && seqs.contains(seq));
                if fresh {
                    return Ok(true);
                }
                self.marker_stored(store, topic, &journal.id, *seq)
            }
            EventKey::Legacy { id } | EventKey::Other { id } => Ok(self.read(store, &applied_key(id))?.is_some()),
        }
    }

    /// Stages that a foreign event was taken in.
    pub fn take(&mut self, store: &Store, event: &EventKey) -> Result<(), StoreError> {
        if self.is_taken(store, event)? {
            return Ok(());
        }
        match event {
            EventKey::Tracked { topic, journal, seq } => {
                self.staged_fresh
                    .push((topic.clone(), journal.id.clone(), journal.start, *seq));
            }
            EventKey::Legacy { id } | EventKey::Other { id } => self.stage(applied_key(id), Some(Vec::new())),
        }
        Ok(())
    }

    /// Stages that every event of `journal` read from `topic` up to `seq` was taken in (a
    /// bootstrap's snapshot covers them).
    pub fn take_through(
        &mut self,
        store: &Store,
        topic: &str,
        journal: &JournalId,
        seq: u64,
    ) -> Result<(), StoreError> {
        let through = self.through(store, topic, journal)?.max(seq);
        self.stage(through_key(topic, &journal.id), Some(through.to_be_bytes().to_vec()));
        Ok(())
    }

    /// Unmarks every placeholder whose model key the current command wrote. Called after a
    /// foreign event's commands: the key holds the replica's data now, so a replay rebuilds it
    /// like any other key instead of keeping it when the rebuild lacks it. (A kept key whose
    /// events the rebuild had not seen, e.g. taken in through putEvents ahead of the topic, was
    /// applied again once the swap reset what the source had taken in.)
    pub fn settle_placeholders(&mut self, store: &Store) -> Result<(), StoreError> {
        // The usual store has no placeholder at all: one probe per commit, nothing per event.
        let in_store = match self.placeholders_in_store {
            Some(any) => any,
            None => *self.placeholders_in_store.insert(store.any_placeholder()?),
        };
        if !in_store && !self.placeholders_in_set {
            return Ok(());
        }
        let models = [prefix::MODEL];
        let marks: Vec<Vec<u8>> = self
            .staged
            .range(models.to_vec()..prefix_end(&models))
            .map(|(k, _)| {
                let mut mark = k.clone();
                mark[0] = prefix::PLACEHOLDER;
                mark
            })
            .collect();
        for mark in marks {
            let marked = match self.staged.get(&mark).or_else(|| self.committed.get(&mark)) {
                Some(v) => v.is_some(),
                None => in_store && store.engine.get(&mark)?.is_some(),
            };
            if marked {
                self.stage(mark, None);
            }
        }
        Ok(())
    }

    /// Whether a subject is parked (stored or staged).
    pub fn is_parked(&mut self, store: &Store, topic: &str, subject: &str) -> Result<bool, StoreError> {
        let k = parked_subject_key(topic, subject);
        if let Some(v) = self.staged.get(&k).or_else(|| self.committed.get(&k)) {
            return Ok(v.is_some());
        }
        let any = match self.parked_in_store {
            Some(any) => any,
            None => *self.parked_in_store.insert(store.any_parked_subject()?),
        };
        Ok(any && store.engine.get(&k)?.is_some())
    }

    fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.stage(
            key(prefix::META, &[meta::COUNTER.as_bytes()]),
            Some(self.counter.to_be_bytes().to_vec()),
        );
        self.counter
    }

    /// Adds `delta` to the count of parked letters like `letter`.
    fn count(&mut self, store: &Store, letter: &DeadLetter, delta: i64) -> Result<(), StoreError> {
        let k = dlq_count_key(&letter.topic, letter_class(letter));
        let now = match self.read(store, &k)? {
            Some(v) => be_u64(&v, "dlq count")?,
            None => 0,
        };
        let next = now.saturating_add_signed(delta);
        self.stage(k, Some(next.to_be_bytes().to_vec()));
        Ok(())
    }

    /// Counts one event of `record` from `topic` that its translator neither reads nor ignores.
    pub fn count_unhandled(&mut self, store: &Store, topic: &str, record: &str) -> Result<(), StoreError> {
        let k = key(
            prefix::META,
            &[meta::UNHANDLED.as_bytes(), topic.as_bytes(), record.as_bytes()],
        );
        let now = match self.read(store, &k)? {
            Some(v) => be_u64(&v, "counter")?,
            None => 0,
        };
        self.stage(k, Some((now + 1).to_be_bytes().to_vec()));
        Ok(())
    }

    /// Parks a dead letter under its subject (which becomes parked) and queues it for the DLQ.
    pub fn park(&mut self, store: &Store, letter: &DeadLetter, outbox: OutboxRecord) -> Result<(), StoreError> {
        self.count(store, letter, 1)?;
        let subject = letter.subject.clone().unwrap_or_default();
        self.stage(parked_subject_key(&letter.topic, &subject), Some(Vec::new()));
        let n = self.next_counter();
        let mut k = parked_event_prefix(&letter.topic, &subject);
        k.extend_from_slice(&n.to_be_bytes());
        self.stage(k, Some(letter.encode()));
        self.queue_outbox(outbox);
        Ok(())
    }

    /// Stages the journal of the last event read from `topic`/`partition` (`None` forgets it).
    pub fn set_partition_journal(&mut self, topic: &str, partition: i32, journal: Option<&str>) {
        self.stage(
            partition_journal_key(topic, partition),
            journal.map(|j| j.as_bytes().to_vec()),
        );
    }

    /// Stages a raw write (a replay's swap of bookkeeping copied from its shadow store).
    #[doc(hidden)] // for the runtime (seam), not for services
    pub fn stage_raw(&mut self, k: Vec<u8>, v: Option<Vec<u8>>) {
        self.stage(k, v);
    }

    /// Removes one parked event (applied on redrive, or resolved by a replay).
    pub fn unpark_event(&mut self, store: &Store, parked: &Parked) -> Result<(), StoreError> {
        self.count(store, &parked.letter, -1)?;
        self.stage(parked.key.clone(), None);
        Ok(())
    }

    /// Whether the parked event under `parked_key` is still there (stored or staged).
    pub fn is_parked_event(&self, store: &Store, parked_key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.read(store, parked_key)?.is_some())
    }

    /// Whether any parked event of `subject` of `topic` remains (stored or staged).
    pub fn has_parked_events(&self, store: &Store, topic: &str, subject: &str) -> Result<bool, StoreError> {
        let start = parked_event_prefix(topic, subject);
        let end = prefix_end(&start);
        for layer in [&self.staged, &self.committed] {
            if layer.range(start.clone()..end.clone()).any(|(_, v)| v.is_some()) {
                return Ok(true);
            }
        }
        for item in store.engine.range(&start, &end) {
            let (k, _) = item?;
            let removed = matches!(self.staged.get(&k).or_else(|| self.committed.get(&k)), Some(None));
            if !removed {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Unparks a subject: later events apply directly again.
    pub fn unpark_subject(&mut self, topic: &str, subject: &str) {
        self.stage(parked_subject_key(topic, subject), None);
    }

    /// Stages (or clears) the bootstrap marker of `topic`.
    pub fn set_bootstrap_marker(&mut self, topic: &str, marker: Option<(u64, u64)>) {
        self.stage(
            key(prefix::META, &[b"bootstrap", topic.as_bytes()]),
            marker.map(|m| serde_json::to_vec(&m).unwrap_or_default()),
        );
    }

    /// Queues a record for the DLQ topic.
    pub fn queue_outbox(&mut self, record: OutboxRecord) {
        let n = self.next_counter();
        self.stage(
            key(prefix::OUTBOX, &[&n.to_be_bytes()]),
            Some(serde_json::to_vec(&record).unwrap_or_default()),
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn distinct_ids_get_distinct_keys_and_seam_ids_sort_by_seq() {
        let ids = [
            "svc/7", "svc/07", "svc/+7", "svc/x", "svc/", "/7", "svc/10", "a/b/7", "a/b\0/7",
        ];
        let keys: std::collections::BTreeSet<_> = ids.iter().map(|i| applied_key(i)).collect();
        assert_eq!(keys.len(), ids.len());
        assert!(applied_key("svc/9") < applied_key("svc/10"));
        assert!(applied_key("svc/10") < applied_key("svc/100000"));
    }

    use super::*;

    fn temp_store() -> (Store, Arc<MemoryEngine>) {
        let engine = Arc::new(MemoryEngine::default());
        (Store::with_engine(engine.clone()).expect("store opens"), engine)
    }

    fn entry(subject: &str) -> JournalEntry {
        JournalEntry {
            seq: 0,
            subject: subject.into(),
            record: "x.E".into(),
            time_ms: 0,
            correlation_id: None,
            causation_id: None,
            body: vec![],
            prev: None,
            schema: None,
            trace: None,
        }
    }

    #[test]
    fn a_discarded_command_leaves_nothing_and_a_kept_one_commits_atomically() {
        let (store, _engine) = temp_store();
        let mut set = store.write_set().expect("write set");
        set.model_put("a", Some(b"1".to_vec()));
        set.append(&store, entry("s/1")).expect("append");
        set.discard();
        set.model_put("b", Some(b"2".to_vec()));
        assert_eq!(set.append(&store, entry("s/2")).expect("append"), 1);
        set.set_position("t", 3, 10);
        set.keep();
        assert_eq!(set.model_get(&store, "b").expect("read"), Some(b"2".to_vec()));
        store.commit(&mut set, true).expect("commit");

        assert_eq!(store.model_get("a").expect("read"), None);
        assert_eq!(store.model_get("b").expect("read"), Some(b"2".to_vec()));
        assert_eq!(store.last_seq().expect("seq"), 1);
        let journal = store.journal_from(1, 10).expect("journal");
        assert_eq!(journal.len(), 1);
        assert_eq!(journal[0].subject, "s/2");
        assert_eq!(store.positions().expect("positions").position("t", 3), 10);
    }

    /// Found by the simulator (seed 6488): a kept placeholder a relay had filled was applied
    /// again after a replay. A placeholder a foreign event writes is the replica's from then on;
    /// one the event does not touch, stored or staged in the same set, stays a placeholder.
    #[test]
    fn a_placeholder_a_foreign_event_writes_stops_being_one() {
        let (store, _engine) = temp_store();
        let mut set = store.write_set().expect("write set");
        for key in ["parcel/o1", "parcel/o2"] {
            set.model_put(key, Some(b"expected".to_vec()));
            set.mark_placeholder(key, true);
        }
        set.keep();
        store.commit(&mut set, true).expect("commit");

        let mut set = store.write_set().expect("write set");
        set.model_put("parcel/o3", Some(b"expected".to_vec()));
        set.mark_placeholder("parcel/o3", true);
        set.keep();
        set.model_put("parcel/o1", Some(b"placed".to_vec()));
        set.model_put("parcel/o3", Some(b"placed".to_vec()));
        set.settle_placeholders(&store).expect("settle");
        set.keep();
        set.model_put("parcel/o9", Some(b"placed".to_vec()));
        set.settle_placeholders(&store).expect("nothing marked");
        set.keep();
        store.commit(&mut set, true).expect("commit");

        assert!(!store.is_placeholder("parcel/o1").expect("o1"), "written by the event");
        assert!(
            !store.is_placeholder("parcel/o3").expect("o3"),
            "staged mark, then written"
        );
        assert!(store.is_placeholder("parcel/o2").expect("o2"), "untouched");
        assert!(!store.is_placeholder("parcel/o9").expect("o9"));
    }

    #[test]
    fn model_scan_merges_staged_writes() {
        let (store, _engine) = temp_store();
        let mut set = store.write_set().expect("write set");
        set.model_put("p/1", Some(b"a".to_vec()));
        set.model_put("p/2", Some(b"b".to_vec()));
        set.keep();
        store.commit(&mut set, false).expect("commit");
        let mut set = store.write_set().expect("write set");
        set.model_put("p/2", None);
        set.model_put("p/3", Some(b"c".to_vec()));
        let keys: Vec<_> = set
            .model_scan(&store, "p/")
            .expect("scan")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["p/1", "p/3"]);
    }

    use proptest::prelude::*;

    fn tracked(seq: u64) -> EventKey {
        tracked_from(1, seq)
    }

    fn tracked_from(start: u64, seq: u64) -> EventKey {
        EventKey::Tracked {
            topic: "src.events".into(),
            journal: JournalId {
                id: "ab12".into(),
                start,
            },
            seq,
        }
    }

    /// What a store keeps of the journal's markers: (seqs marked above `through`, marker keys
    /// and blocks stored, the `through` seq).
    fn taken_state(store: &Store) -> (usize, usize, Option<u64>) {
        let through = store
            .engine
            .get(&through_key("src.events", "ab12"))
            .expect("get")
            .map(|v| be_u64(&v, "through").expect("u64"));
        let above = |seq: u64| seq > through.unwrap_or(0);
        let mut marked = 0;
        let mut keys = 0;
        for item in store.engine.range(&[prefix::TAKEN], &[prefix::TAKEN + 1]) {
            let (k, _) = item.expect("marker");
            keys += 1;
            marked += usize::from(above(be_u64(&k[k.len() - 8..], "seq").expect("seq")));
        }
        for item in store.engine.range(&[prefix::TAKEN_BLOCK], &[prefix::TAKEN_BLOCK + 1]) {
            let (k, bits) = item.expect("block");
            keys += 1;
            let block = be_u64(&k[k.len() - 8..], "block").expect("block");
            marked += (0..BLOCK_SEQS)
                .map(|i| block * BLOCK_SEQS + i)
                .filter(|seq| above(*seq) && block_has(&bits, *seq))
                .count();
        }
        (marked, keys, through)
    }

    #[test]
    fn a_journal_is_named_once_and_entries_link_to_their_subjects_previous_entry() {
        let (store, engine) = temp_store();
        let id = store.journal_id().clone();
        assert_eq!(id.start, 1, "a new store's journal starts at 1");
        let mut set = store.write_set().expect("set");
        for subject in ["a", "b", "a"] {
            set.append(&store, entry(subject)).expect("append");
            set.keep();
        }
        store.commit(&mut set, true).expect("commit");
        let prevs: Vec<_> = store
            .journal_from(1, 10)
            .expect("journal")
            .into_iter()
            .map(|e| (e.subject, e.prev))
            .collect();
        assert_eq!(
            prevs,
            [
                ("a".to_string(), Some(0)),
                ("b".to_string(), Some(0)),
                ("a".to_string(), Some(1))
            ]
        );
        drop(store);
        let again = Store::with_engine(engine.clone()).expect("reopen");
        assert_eq!(again.journal_id(), &id, "the id is kept");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Whatever order seqs of a journal arrive in (across partitions, redelivered, in
        /// batches, across marker blocks), every seq taken in reads as taken, none other does,
        /// exactly the seqs above the first gap stay marked, in no more blocks than they span,
        /// and once every seq up to n was taken nothing is left: `through` is n.
        #[test]
        fn taken_in_seqs_fold_into_through_whatever_their_order(
            order in proptest::sample::subsequence((0u64..40).collect::<Vec<_>>(), 0..=40)
                .prop_shuffle(),
            repeats in proptest::collection::vec(0usize..40, 0..10),
            batch in 1usize..7,
            start in proptest::sample::select(vec![1u64, BLOCK_SEQS - 20, 3 * BLOCK_SEQS - 1]),
            spread in proptest::sample::select(vec![1u64, 7, BLOCK_SEQS / 3]),
        ) {
            let (store, _engine) = temp_store();
            let seq_of = |i: u64| start + i * spread;
            let order: Vec<u64> = order.into_iter().map(seq_of).collect();
            // With a spread, the seqs between are taken first, as by another partition.
            let mut deliveries: Vec<u64> = (0..40)
                .flat_map(|i| (1..spread).map(move |k| start + i * spread + k))
                .filter(|_| spread < 100)
                .collect();
            deliveries.extend(order.iter().copied());
            for r in repeats {
                if let Some(seq) = order.get(r) {
                    deliveries.push(*seq);
                }
            }
            let mut seen = std::collections::BTreeSet::new();
            for chunk in deliveries.chunks(batch) {
                let mut set = store.write_set().expect("set");
                for seq in chunk {
                    let taken = set.is_taken(&store, &tracked_from(start, *seq)).expect("is_taken");
                    prop_assert_eq!(taken, seen.contains(seq), "seq {} before taking it", seq);
                    set.take(&store, &tracked_from(start, *seq)).expect("take");
                    set.keep();
                    seen.insert(*seq);
                }
                store.commit(&mut set, false).expect("commit");
            }
            let mut set = store.write_set().expect("set");
            for i in 0..45 * spread {
                let seq = start + i;
                prop_assert_eq!(set.is_taken(&store, &tracked_from(start, seq)).expect("is_taken"), seen.contains(&seq));
            }
            let (marked, keys, through) = taken_state(&store);
            let contiguous = (start..).take_while(|s| seen.contains(s)).count() as u64;
            prop_assert_eq!(marked, seen.len() - contiguous as usize, "only the seqs above the first gap stay marked");
            prop_assert_eq!(through.unwrap_or(start - 1), start - 1 + contiguous);
            let top = seen.iter().next_back().copied().unwrap_or(0);
            let spanned = if marked == 0 { 1 } else { top / BLOCK_SEQS - (start + contiguous) / BLOCK_SEQS + 1 };
            prop_assert!(keys as u64 <= spanned, "{} blocks for markers spanning {}", keys, spanned);
            drop(set);
            drop(store);
            }

        /// A store of an earlier version marked each event above `through` under a key of its
        /// own: those markers still read as taken, fold into `through` with new ones, and are
        /// deleted as they fold.
        #[test]
        fn per_event_markers_of_older_stores_are_read_and_folded_away(
            old in proptest::sample::subsequence((2u64..30).collect::<Vec<_>>(), 0..=28),
            new in proptest::sample::subsequence((1u64..30).collect::<Vec<_>>(), 0..=29).prop_shuffle(),
        ) {
            let (store, engine) = temp_store();
            engine
                .write(old.iter().map(|seq| (taken_key("src.events", "ab12", *seq), Some(Vec::new()))).collect())
                .expect("old markers");
            let mut seen: std::collections::BTreeSet<u64> = old.iter().copied().collect();
            for seq in new {
                let mut set = store.write_set().expect("set");
                prop_assert_eq!(set.is_taken(&store, &tracked(seq)).expect("is_taken"), seen.contains(&seq));
                set.take(&store, &tracked(seq)).expect("take");
                set.keep();
                store.commit(&mut set, false).expect("commit");
                seen.insert(seq);
            }
            let mut set = store.write_set().expect("set");
            for seq in 1..32 {
                prop_assert_eq!(set.is_taken(&store, &tracked(seq)).expect("is_taken"), seen.contains(&seq));
            }
            let (marked, _, through) = taken_state(&store);
            let contiguous = (1..).take_while(|s| seen.contains(s)).count() as u64;
            prop_assert_eq!(through.unwrap_or(0), if seen.contains(&1) { contiguous } else { 0 });
            let old_left = store.engine.range(&[prefix::TAKEN], &[prefix::TAKEN + 1]).count();
            let through = through.unwrap_or(0);
            prop_assert_eq!(old_left, old.iter().filter(|s| **s > through).count(), "folded old markers are deleted");
            prop_assert_eq!(marked, seen.iter().filter(|s| **s > through).count());
            drop(set);
        }
    }

    #[test]
    fn a_discarded_take_leaves_no_trace_and_a_snapshot_floor_covers_earlier_seqs() {
        let (store, _engine) = temp_store();
        let mut set = store.write_set().expect("set");
        set.take(&store, &tracked(1)).expect("take");
        set.discard();
        set.take(&store, &tracked(3)).expect("take");
        set.keep();
        store.commit(&mut set, false).expect("commit");
        let mut set = store.write_set().expect("set");
        assert!(
            !set.is_taken(&store, &tracked(1)).expect("1"),
            "discarded with its command"
        );
        assert!(set.is_taken(&store, &tracked(3)).expect("3"));
        assert_eq!(taken_state(&store), (1, 1, Some(0)));
        let mut set = store.write_set().expect("set");
        let journal = JournalId {
            id: "ab12".into(),
            start: 1,
        };
        set.take_through(&store, "src.events", &journal, 2).expect("floor");
        set.take(&store, &tracked(4)).expect("take");
        set.keep();
        store.commit(&mut set, false).expect("commit");
        assert_eq!(
            taken_state(&store),
            (0, 0, Some(4)),
            "the floor closed the gap; 3 and 4 folded in, and their block is gone"
        );
    }

    fn letter(topic: &str, offset: i64, kind: &str) -> DeadLetter {
        DeadLetter {
            consumer: "c".into(),
            topic: topic.into(),
            partition: 0,
            offset,
            subject: Some("s/1".into()),
            key: None,
            value: None,
            headers: vec![],
            class: crate::fault::Class::Poison,
            kind: kind.into(),
            reason: "r".into(),
            time_ms: 0,
        }
    }

    fn outbox() -> OutboxRecord {
        OutboxRecord {
            key: None,
            value: None,
            headers: vec![],
        }
    }

    #[test]
    fn parked_letters_are_counted_as_they_come_and_go_and_older_stores_are_counted_once() {
        let (store, engine) = temp_store();
        let mut set = store.write_set().expect("set");
        set.park(&store, &letter("a.events", 1, "translator"), outbox())
            .expect("park");
        set.park(&store, &letter("a.events", 2, "parked"), outbox())
            .expect("park");
        set.park(&store, &letter("b.events", 1, "wrong-magic-byte"), outbox())
            .expect("park");
        set.keep();
        store.commit(&mut set, true).expect("commit");
        let parked = store.parked_of_topic("a.events").expect("parked");
        let mut set = store.write_set().expect("set");
        set.unpark_event(&store, &parked[0]).expect("unpark");
        set.keep();
        store.commit(&mut set, true).expect("commit");
        let counts = store.dead_letter_counts().expect("counts");
        let expected = [
            (("a.events".to_string(), "parked".to_string()), 1),
            (("b.events".to_string(), "poison".to_string()), 1),
        ];
        assert_eq!(counts, BTreeMap::from(expected.clone()));

        // A store of an older version: letters, no counters.
        let mut writes = Vec::new();
        for item in store.engine.range(&[prefix::META], &[prefix::META + 1]) {
            let (k, _) = item.expect("meta");
            if k.starts_with(&key(prefix::META, &[meta::DLQ_COUNT.as_bytes()]))
                || k == key(prefix::META, &[meta::DLQ_COUNTED.as_bytes()])
            {
                writes.push((k, None));
            }
        }
        store.engine.write(writes).expect("forget the counts");
        drop(store);
        let reopened = Store::with_engine(engine.clone()).expect("reopen");
        assert_eq!(reopened.dead_letter_counts().expect("counts"), BTreeMap::from(expected));
    }
}
