//! `seam status`: how far each consumer is behind each source, per partition, in events and in
//! seconds, with its dead letters and parked events.
//!
//! Positions come from the consumer itself (`GET /status`, read from its store: the truth, see
//! invariant 3) when it answers, else from the consumer group's committed offsets, which the
//! consumer writes after each applied batch (a stopped or hung consumer is exactly when an
//! operator runs this). End offsets are last stable offsets (read_committed, like the
//! consumer). Lag in events counts the events between position and end as the consumer reads
//! them (a transactional producer leaves a marker offset per transaction, which is no event);
//! lag in seconds is now minus the time of the oldest event not yet applied.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use seam::envelope;
use seam::offsets::OffsetMap;
use seam::translator::events_topic;

/// One partition of one source of one consumer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionStatus {
    /// Partition.
    pub partition: i32,
    /// Next offset the consumer reads.
    pub position: i64,
    /// The partition's last stable offset.
    pub end: i64,
    /// Events between position and end, counted as the consumer reads them (transaction
    /// markers are not events).
    pub lag_events: i64,
    /// Whether `lag_events` is the offset difference instead (over 100,000 events, or a slow
    /// read): transaction markers then count too.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub lag_estimated: bool,
    /// Now minus the time of the oldest event not applied yet; 0 when caught up.
    pub lag_seconds: f64,
}

/// One source of a consumer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceStatus {
    /// The source service.
    pub source: String,
    /// Its topic.
    pub topic: String,
    /// Dead letters from this source not redriven yet.
    pub dead_letters: usize,
    /// Events parked behind them.
    pub parked: usize,
    /// Events of record types the consumer's translator neither reads nor ignores, by record
    /// (skipped; known only from the consumer itself).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unhandled: BTreeMap<String, u64>,
    /// Why the consumer does not read this source, and what to do, when the events it needs
    /// next are gone (retention, or the topic was recreated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs_rebuild: Option<String>,
    /// Per partition.
    pub partitions: Vec<PartitionStatus>,
}

/// One consumer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConsumerStatus {
    /// The consuming service.
    pub consumer: String,
    /// `service` (its own store, over HTTP) or `group-offsets` (it did not answer).
    pub positions_from: String,
    /// Why the service's own report was not used, if it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    /// Its sources.
    pub sources: Vec<SourceStatus>,
}

impl ConsumerStatus {
    /// The largest lag in events over all partitions.
    pub fn max_lag_events(&self) -> i64 {
        self.sources
            .iter()
            .flat_map(|s| &s.partitions)
            .map(|p| p.lag_events)
            .max()
            .unwrap_or(0)
    }

    /// The largest lag in seconds over all partitions.
    pub fn max_lag_seconds(&self) -> f64 {
        self.sources
            .iter()
            .flat_map(|s| &s.partitions)
            .map(|p| p.lag_seconds)
            .fold(0.0, f64::max)
    }
}

/// What a consumer says about itself (`GET /status`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SelfReport {
    /// Positions from its store.
    pub positions: OffsetMap,
    /// Dead letters per source topic.
    #[serde(default)]
    pub dead_letters: BTreeMap<String, usize>,
    /// Parked events per source topic.
    #[serde(default)]
    pub parked: BTreeMap<String, usize>,
    /// Source topics not read until rebuilt, with what is gone and what to do.
    #[serde(default)]
    pub needs_rebuild: BTreeMap<String, String>,
    /// Per source topic, events of record types the translator neither reads nor ignores.
    #[serde(default)]
    pub unhandled: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Asks the consumer at `url` for its report; a hung or stopped one fails within 2 s.
pub async fn self_report(url: &str) -> anyhow::Result<SelfReport> {
    let client = crate::commands::reach::http(Some(Duration::from_secs(2)));
    let resp = client
        .get(format!("{url}/status"))
        .send()
        .await
        .with_context(|| format!("GET {url}/status"))?;
    let status = resp.status();
    anyhow::ensure!(status.is_success(), "GET {url}/status answered {status}");
    Ok(resp.json().await?)
}

/// The status of `consumer` reading `sources`; `report` is its own answer, if it gave one.
pub fn consumer_status(
    client: &ClientConfig,
    consumer: &str,
    sources: &[String],
    report: Result<SelfReport, String>,
) -> anyhow::Result<ConsumerStatus> {
    let reader: BaseConsumer = client
        .clone()
        .set("group.id", consumer)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set_log_level(RDKafkaLogLevel::Error)
        .create()?;
    let timeout = Duration::from_secs(10);
    // One reader for every partition's unapplied events: a client per partition cost a
    // connection each.
    let scanner: BaseConsumer = client
        .clone()
        .set("group.id", "seam-status")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "50")
        .set("fetch.error.backoff.ms", "20")
        .set("fetch.queue.backoff.ms", "20")
        .set_log_level(RDKafkaLogLevel::Error)
        .create()?;
    let letters = crate::dlq_admin::list(client, Some(consumer)).unwrap_or_default();
    let mut out = ConsumerStatus {
        consumer: consumer.to_string(),
        positions_from: if report.is_ok() { "service" } else { "group-offsets" }.into(),
        unreachable: report.as_ref().err().cloned(),
        sources: Vec::new(),
    };
    // First every partition's range, then their unapplied events in one read.
    let mut read: Vec<(&String, String, Vec<Range>)> = Vec::new();
    for source in sources {
        let topic = events_topic(source);
        let md = reader
            .fetch_metadata(Some(&topic), timeout)
            .with_context(|| format!("metadata of {topic}"))?;
        let partitions = md
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map_or(0, |t| t.partitions().len() as i32);
        let positions: BTreeMap<i32, i64> = match &report {
            Ok(r) => (0..partitions).map(|p| (p, r.positions.position(&topic, p))).collect(),
            Err(_) => committed(&reader, &topic, partitions)?,
        };
        let ends = ends(&reader, &topic, partitions, timeout)?;
        let mut ranges = Vec::new();
        for (partition, position) in positions {
            let end = match ends.get(&partition) {
                Some(end) => *end,
                None => {
                    reader
                        .fetch_watermarks(&topic, partition, timeout)
                        .with_context(|| format!("end offset of {topic}/{partition}"))?
                        .1
                }
            };
            ranges.push((partition, position, end));
        }
        read.push((source, topic, ranges));
    }
    let wanted: Vec<(String, i32, i64, i64)> = read
        .iter()
        .flat_map(|(_, topic, ranges)| ranges.iter().map(move |&(p, from, end)| (topic.clone(), p, from, end)))
        .collect();
    let mut lags = unapplied(&scanner, &wanted)?;
    for (source, topic, ranges) in read {
        let mut parts = Vec::new();
        for (partition, position, end) in ranges {
            let (lag_events, lag_seconds, lag_estimated) = match lags.remove(&(topic.clone(), partition)).flatten() {
                Some(u) => (u.events as i64, age(u.first), u.estimated),
                None => (0, 0.0, false),
            };
            parts.push(PartitionStatus {
                partition,
                position,
                end,
                lag_events,
                lag_estimated,
                lag_seconds,
            });
        }
        let outstanding = |class: &str| {
            letters
                .iter()
                .filter(|l| {
                    l.topic == topic && l.class == class && matches!(l.status.as_str(), "pending" | "redrive-failed")
                })
                .count()
        };
        let (dead_letters, parked) = match &report {
            Ok(r) => (
                r.dead_letters.get(&topic).copied().unwrap_or(0),
                r.parked.get(&topic).copied().unwrap_or(0),
            ),
            Err(_) => (outstanding("poison"), outstanding("parked")),
        };
        let needs_rebuild = report.as_ref().ok().and_then(|r| r.needs_rebuild.get(&topic).cloned());
        let unhandled = report
            .as_ref()
            .ok()
            .and_then(|r| r.unhandled.get(&topic).cloned())
            .unwrap_or_default();
        out.sources.push(SourceStatus {
            source: source.clone(),
            topic,
            dead_letters,
            parked,
            unhandled,
            needs_rebuild,
            partitions: parts,
        });
    }
    Ok(out)
}

/// The end (last stable) offset of every partition of `topic` in one request: asking per
/// partition costs a round trip each, which made `seam status` take seconds.
fn ends(reader: &BaseConsumer, topic: &str, partitions: i32, timeout: Duration) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::End)?;
    }
    let got = reader
        .offsets_for_times(tpl, timeout)
        .with_context(|| format!("the end offsets of {topic}"))?;
    Ok(got
        .elements()
        .iter()
        .filter(|e| e.error().is_ok())
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

fn committed(reader: &BaseConsumer, topic: &str, partitions: i32) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = reader
        .committed_offsets(tpl, Duration::from_secs(10))
        .with_context(|| format!("the committed offsets of {topic}"))?;
    Ok(got
        .elements()
        .iter()
        .map(|e| {
            let at = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            (e.partition(), at)
        })
        .collect())
}

/// A partition, the consumer's position in it, and its end.
type Range = (i32, i64, i64);

/// Unapplied events of one partition counted one by one at most; past this the lag is the
/// offset difference (marked as estimated).
const COUNT_AT_MOST: u64 = 100_000;

/// What lies between a consumer's position and the end of one partition.
struct Unapplied {
    /// The time of the first event.
    first: SystemTime,
    /// How many events (transaction markers and aborted records are not events).
    events: u64,
    /// Whether `events` is the offset difference instead of a count (too many, or too slow).
    estimated: bool,
}

/// Per partition (topic, partition, position, end), the events at or after the position
/// and before the end, read as the consumer reads them (read_committed): `None` when there are
/// none. The partitions are read together: after an assignment the first fetch takes a few
/// hundred milliseconds, once rather than per partition.
fn unapplied(
    reader: &BaseConsumer,
    wanted: &[(String, i32, i64, i64)],
) -> anyhow::Result<BTreeMap<(String, i32), Option<Unapplied>>> {
    let mut out: BTreeMap<(String, i32), Option<Unapplied>> = BTreeMap::new();
    let mut open: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, position, end) in wanted {
        out.insert((topic.clone(), *partition), None);
        if position < end {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*position))?;
            open.insert((topic.clone(), *partition), (*position, *end));
        }
    }
    if open.is_empty() {
        return Ok(out);
    }
    reader.assign(&tpl)?;
    let started = std::time::Instant::now();
    let estimate = |f: &mut Unapplied, (position, end): (i64, i64)| {
        f.events = (end - position).max(1) as u64;
        f.estimated = true;
    };
    while !open.is_empty() {
        let patience = if open.keys().any(|p| out[p].is_some()) { 20 } else { 5 };
        if started.elapsed() > Duration::from_secs(patience) {
            for ((topic, partition), range) in std::mem::take(&mut open) {
                match out.get_mut(&(topic.clone(), partition)).and_then(Option::as_mut) {
                    Some(f) => estimate(f, range),
                    None => anyhow::bail!(
                        "no event arrived from {topic}/{partition} between offsets {} and {} within 5 s",
                        range.0,
                        range.1
                    ),
                }
            }
            break;
        }
        match reader.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let key = (m.topic().to_string(), m.partition());
                let Some(&(position, end)) = open.get(&key) else {
                    continue;
                };
                if m.offset() >= end {
                    open.remove(&key);
                    continue;
                }
                let f = out.get_mut(&key).expect("every wanted partition has an entry");
                let f = f.get_or_insert(Unapplied {
                    first: event_time(&m),
                    events: 0,
                    estimated: false,
                });
                f.events += 1;
                if m.offset() + 1 >= end {
                    open.remove(&key);
                } else if f.events >= COUNT_AT_MOST {
                    estimate(f, (position, end));
                    open.remove(&key);
                }
            }
            Some(Err(e)) => return Err(e).context("reading the unapplied events"),
            None => {
                // Only markers (or aborted records) left before the end: every event is counted.
                if let Ok(at) = reader.position() {
                    open.retain(|(topic, partition), (_, end)| {
                        let now = at.find_partition(topic, *partition).and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        });
                        now.is_none_or(|o| o < *end)
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The event's own time (`seam-time`), else the record's timestamp.
fn event_time<M: Message>(m: &M) -> SystemTime {
    let header = m.headers().and_then(|h| {
        h.iter()
            .find(|x| x.key == envelope::TIME)
            .and_then(|x| x.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
    });
    header.unwrap_or_else(|| {
        let ms = m.timestamp().to_millis().unwrap_or(0).max(0) as u64;
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    })
}

fn age(t: SystemTime) -> f64 {
    SystemTime::now().duration_since(t).map_or(0.0, |d| d.as_secs_f64())
}
