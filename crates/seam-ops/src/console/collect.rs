//! What the console shows, gathered the way the CLI gathers it: each consumer's status as `seam
//! status` computes it, dead letters as `seam dlq list` folds them, bootstraps and replays from
//! each service's `GET /subscriptions/<source>` and `GET /replay`, and flow digests from `GET
//! /shared/<from>/<to>` on both sides where services serve it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::status::{self, ConsumerStatus};
use seam::dlq::Listed;
use seam::topology::Topology;
use seam::translator::events_topic;

/// The whole page's data at one moment; sent to the browser on every change.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// When it was gathered (RFC 3339).
    pub at: String,
    /// The brokers.
    pub cluster: String,
    /// The topology's name, when a file was given.
    pub topology: Option<String>,
    /// Every service, producer or consumer.
    pub services: Vec<ServiceView>,
    /// One per (source, consumer).
    pub flows: Vec<FlowView>,
    /// One per consumer, source and partition.
    pub partitions: Vec<PartitionView>,
    /// Outstanding dead letters first, then the most recent settled ones.
    pub letters: Vec<LetterView>,
    /// Running and finished bootstraps and replays.
    pub progress: Vec<ProgressView>,
    /// What could not be read this round, each naming what and why.
    pub problems: Vec<String>,
}

/// One service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    /// Its name.
    pub name: String,
    /// `seam`, `postgres-cdc`, `postgres-sink` or `external`.
    pub kind: String,
    /// Where it answers, if known.
    pub url: Option<String>,
    /// Whether it answered `/health` this round (`None`: no address known).
    pub up: Option<bool>,
}

/// One flow: a source's events translated into a consumer.
#[derive(Debug, Clone, Serialize)]
pub struct FlowView {
    /// Source service.
    pub from: String,
    /// Consuming service.
    pub to: String,
    /// The source topic.
    pub topic: String,
    /// The translator.
    pub translator: String,
    /// `in-sync`, `lagging`, `parked`, `out-of-sync` or `unknown`.
    pub state: String,
    /// Why, in words.
    pub why: String,
    /// Largest lag over the partitions, in events.
    pub lag_events: i64,
    /// Largest lag, in seconds.
    pub lag_seconds: f64,
    /// Dead letters not redriven yet.
    pub dead_letters: usize,
    /// Events parked behind them.
    pub parked: usize,
    /// Both sides' digests of the shared data, when both serve them.
    pub digest: Option<DigestView>,
}

/// The shared data of a flow on both sides.
#[derive(Debug, Clone, Serialize)]
pub struct DigestView {
    /// Rows on the source.
    pub source_rows: u64,
    /// Rows in the replica.
    pub replica_rows: u64,
    /// Whether the digests are equal.
    pub equal: bool,
}

/// One partition a consumer reads.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionView {
    /// Consumer.
    pub consumer: String,
    /// Source service.
    pub source: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Next offset the consumer reads.
    pub position: i64,
    /// Last stable offset.
    pub end: i64,
    /// Lag in events.
    pub lag_events: i64,
    /// Lag in seconds.
    pub lag_seconds: f64,
    /// Lag in events at each of the last rounds, oldest first (the sparkline).
    pub history: Vec<i64>,
}

/// One dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct LetterView {
    /// The letter as `seam dlq list` shows it.
    #[serde(flatten)]
    pub letter: Listed,
    /// The first bytes of the dead-lettered record, read from its source topic.
    pub preview: Option<Preview>,
}

/// The start of a record's value.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// Its length in bytes.
    pub bytes: usize,
    /// The registry schema id, when the value is in Confluent's wire format.
    pub schema_id: Option<u32>,
    /// Its first bytes as text, with unprintable bytes as `·`.
    pub text: String,
}

/// A bootstrap or replay.
#[derive(Debug, Clone, Serialize)]
pub struct ProgressView {
    /// The consumer doing it.
    pub consumer: String,
    /// `bootstrap` or `replay`.
    pub kind: String,
    /// The source, for a bootstrap.
    pub source: Option<String>,
    /// Its state (`bootstrapping`, `running`, `done`, `failed`, ...).
    pub state: String,
    /// The phase, for a replay.
    pub phase: Option<String>,
    /// Records done.
    pub done: u64,
    /// Records to do.
    pub total: u64,
    /// Records per second since the last round.
    pub rate: Option<f64>,
    /// Seconds left at that rate.
    pub eta_seconds: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Which services and flows to watch, and where the services answer.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The topology file's contents, if one was given.
    pub topology: Option<Topology>,
    /// Service → base URL, given on the command line.
    pub urls: BTreeMap<String, String>,
}

/// How many rounds of lag the sparklines keep.
const HISTORY: usize = 150;

/// Letters shown besides the outstanding ones.
const SETTLED_SHOWN: usize = 30;

/// Gathers snapshots, keeping what it needs between rounds: lag histories, record previews,
/// and the last progress counts (for rates).
pub struct Collector {
    scope: Scope,
    client: ClientConfig,
    cluster: String,
    http: reqwest::Client,
    history: HashMap<(String, String, i32), VecDeque<i64>>,
    previews: HashMap<(String, i32, i64), Option<Preview>>,
    last_progress: HashMap<(String, String), (Instant, u64)>,
}

/// A flow as the scope declares it (or the running consumer says it reads).
struct Declared {
    from: String,
    to: String,
    translator: String,
}

impl Collector {
    /// A collector of `scope` on the cluster `client` reaches.
    pub fn new(scope: Scope, client: ClientConfig, cluster: String) -> anyhow::Result<Self> {
        Ok(Self {
            scope,
            client,
            cluster,
            http: crate::commands::reach::http(Some(Duration::from_secs(3))),
            history: HashMap::new(),
            previews: HashMap::new(),
            last_progress: HashMap::new(),
        })
    }

    fn url_of(&self, service: &str) -> Option<String> {
        self.scope
            .urls
            .get(service)
            .cloned()
            .or_else(|| seam_local::Home::from_env().ok()?.service_url(service))
    }

    async fn json(&self, url: String) -> Result<serde_json::Value, String> {
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url} answered {}", response.status()));
        }
        response.json().await.map_err(|e| format!("GET {url}: {e}"))
    }

    /// The services and flows to show: the topology's, else those of every announced service
    /// that answers (each says what it reads).
    async fn declared(&self, problems: &mut Vec<String>) -> (Vec<ServiceView>, Vec<Declared>) {
        let mut services = Vec::new();
        let mut flows = Vec::new();
        if let Some(topology) = &self.scope.topology {
            for s in &topology.services {
                let kind = s.kind.clone().unwrap_or_else(|| "seam".into());
                services.push(ServiceView {
                    name: s.name.clone(),
                    kind,
                    url: self.url_of(&s.name),
                    up: None,
                });
            }
            for c in &topology.consumers {
                for src in &c.sources {
                    flows.push(Declared {
                        from: src.service.clone(),
                        to: c.service.clone(),
                        translator: src.translator.clone(),
                    });
                }
            }
        } else {
            let mut announced: BTreeMap<String, String> = seam_local::Home::from_env()
                .map(|h| h.announced().into_iter().collect())
                .unwrap_or_default();
            announced.extend(self.scope.urls.clone());
            for (name, url) in announced {
                let sources = match crate::commands::status::sources_of(&url).await {
                    Ok(sources) => sources,
                    // An announcement left by a stopped service: not part of what runs now.
                    Err(_) => continue,
                };
                for source in sources {
                    flows.push(Declared {
                        translator: format!("{source}-to-{name}"),
                        from: source,
                        to: name.clone(),
                    });
                }
                services.push(ServiceView {
                    name,
                    kind: "seam".into(),
                    url: Some(url),
                    up: None,
                });
            }
            for f in &flows {
                if !services.iter().any(|s| s.name == f.from) {
                    services.push(ServiceView {
                        name: f.from.clone(),
                        kind: "seam".into(),
                        url: None,
                        up: None,
                    });
                }
            }
            if services.is_empty() {
                problems.push(
                    "no running service found (none announced in $SEAM_HOME/run answers): start the demo with --keep-running, or give -t <topology> and --url SERVICE=URL"
                        .into(),
                );
            }
        }
        (services, flows)
    }

    /// One round: everything the page shows, now.
    pub async fn collect(&mut self) -> Snapshot {
        let mut problems = Vec::new();
        let (mut services, declared) = self.declared(&mut problems).await;
        for s in &mut services {
            if let Some(url) = &s.url {
                s.up = Some(self.json(format!("{url}/health")).await.is_ok());
            }
        }
        let up = |name: &str| services.iter().any(|s| s.name == name && s.up == Some(true));

        // Each consumer's status, as `seam status` computes it.
        let mut consumers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in &declared {
            consumers.entry(f.to.clone()).or_default().push(f.from.clone());
        }
        // Read side by side: each consumer's status takes its own clients' round trips.
        let mut reading = Vec::new();
        for (consumer, sources) in &consumers {
            let report = match self.url_of(consumer) {
                Some(url) if up(consumer) => status::self_report(&url).await.map_err(|e| format!("{e:#}")),
                Some(_) => Err("not answering".to_string()),
                None => Err("no address known".to_string()),
            };
            let (client, name, sources) = (self.client.clone(), consumer.clone(), sources.clone());
            reading.push(tokio::task::spawn_blocking(move || {
                status::consumer_status(&client, &name, &sources, report)
            }));
        }
        let mut statuses: BTreeMap<String, ConsumerStatus> = BTreeMap::new();
        for (consumer, got) in consumers.keys().zip(futures_util::future::join_all(reading).await) {
            match got {
                Ok(Ok(s)) => {
                    statuses.insert(consumer.clone(), s);
                }
                Ok(Err(e)) => problems.push(format!("status of {consumer}: {e:#}")),
                Err(e) => problems.push(format!("status of {consumer}: {e}")),
            }
        }

        let mut partitions = Vec::new();
        for (consumer, s) in &statuses {
            for src in &s.sources {
                for p in &src.partitions {
                    let key = (consumer.clone(), src.topic.clone(), p.partition);
                    let history = self.history.entry(key).or_default();
                    history.push_back(p.lag_events);
                    while history.len() > HISTORY {
                        history.pop_front();
                    }
                    partitions.push(PartitionView {
                        consumer: consumer.clone(),
                        source: src.source.clone(),
                        topic: src.topic.clone(),
                        partition: p.partition,
                        position: p.position,
                        end: p.end,
                        lag_events: p.lag_events,
                        lag_seconds: p.lag_seconds,
                        history: history.iter().copied().collect(),
                    });
                }
            }
        }

        let mut flows = Vec::new();
        for d in &declared {
            let source = statuses
                .get(&d.to)
                .and_then(|s| s.sources.iter().find(|src| src.source == d.from));
            // Digests cost a pass over the shared data on both sides: only a caught-up flow's
            // can tell anything (while events are on their way they differ anyway).
            let caught_up = source.is_some_and(|s| {
                s.needs_rebuild.is_none()
                    && s.dead_letters + s.parked == 0
                    && s.partitions.iter().all(|p| p.lag_events == 0)
            });
            let digest = if caught_up {
                self.digest(&d.from, &d.to).await
            } else {
                None
            };
            flows.push(flow_view(d, statuses.get(&d.to), source, digest));
        }

        let letters = self.letters(&mut problems).await;
        let progress = self.progress(&declared, &up).await;
        Snapshot {
            at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            cluster: self.cluster.clone(),
            topology: self.scope.topology.as_ref().map(|t| t.name.clone()),
            services,
            flows,
            partitions,
            letters,
            progress,
            problems,
        }
    }

    /// Both sides' `GET /shared/<from>/<to>`, when both serve it.
    async fn digest(&self, from: &str, to: &str) -> Option<DigestView> {
        #[derive(Deserialize)]
        struct Shared {
            rows: u64,
            digest: String,
        }
        let (a, b) = (self.url_of(from)?, self.url_of(to)?);
        let side = |url: String| async move {
            let v = self.json(url).await.ok()?;
            serde_json::from_value::<Shared>(v).ok()
        };
        let s = side(format!("{a}/shared/{from}/{to}")).await?;
        let r = side(format!("{b}/shared/{from}/{to}")).await?;
        Some(DigestView {
            source_rows: s.rows,
            replica_rows: r.rows,
            equal: s.digest == r.digest,
        })
    }

    async fn letters(&mut self, problems: &mut Vec<String>) -> Vec<LetterView> {
        let client = self.client.clone();
        let listed = match tokio::task::spawn_blocking(move || crate::dlq_admin::list(&client, None)).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                problems.push(format!("dead letters: {e}"));
                return Vec::new();
            }
            Err(e) => {
                problems.push(format!("dead letters: {e}"));
                return Vec::new();
            }
        };
        let outstanding = |l: &Listed| matches!(l.status.as_str(), "pending" | "redrive-failed");
        let mut chosen: Vec<Listed> = listed.iter().filter(|l| outstanding(l)).cloned().collect();
        let mut settled: Vec<Listed> = listed.into_iter().filter(|l| !outstanding(l)).collect();
        settled.sort_by(|a, b| b.redrive_time.cmp(&a.redrive_time).then(b.time.cmp(&a.time)));
        chosen.extend(settled.into_iter().take(SETTLED_SHOWN));
        let wanted: Vec<(String, i32, i64)> = chosen
            .iter()
            .filter(|l| l.snapshot.is_none())
            .map(|l| (l.topic.clone(), l.partition, l.offset))
            .filter(|k| !self.previews.contains_key(k))
            .take(50)
            .collect();
        if !wanted.is_empty() {
            let client = self.client.clone();
            if let Ok(found) = tokio::task::spawn_blocking(move || previews(&client, &wanted)).await {
                self.previews.extend(found);
            }
        }
        chosen
            .into_iter()
            .map(|letter| {
                let preview = self
                    .previews
                    .get(&(letter.topic.clone(), letter.partition, letter.offset))
                    .cloned()
                    .flatten();
                LetterView { letter, preview }
            })
            .collect()
    }

    async fn progress(&mut self, declared: &[Declared], up: &impl Fn(&str) -> bool) -> Vec<ProgressView> {
        let mut out = Vec::new();
        let mut consumers: Vec<&str> = declared.iter().map(|d| d.to.as_str()).collect();
        consumers.sort_unstable();
        consumers.dedup();
        for d in declared {
            let Some(url) = self.url_of(&d.to).filter(|_| up(&d.to)) else {
                continue;
            };
            let Ok(v) = self.json(format!("{url}/subscriptions/{}", d.from)).await else {
                continue;
            };
            let state = v["state"].as_str().unwrap_or_default().to_string();
            if matches!(state.as_str(), "bootstrapping" | "failed" | "needs-rebuild") {
                let done = v["loaded"].as_u64().unwrap_or(0);
                let total = v["total"].as_u64().unwrap_or(0);
                out.push(self.with_rate(ProgressView {
                    consumer: d.to.clone(),
                    kind: "bootstrap".into(),
                    source: Some(d.from.clone()),
                    state,
                    phase: None,
                    done,
                    total,
                    rate: None,
                    eta_seconds: None,
                    error: v["error"].as_str().map(str::to_string),
                }));
            }
        }
        for consumer in consumers {
            let Some(url) = self.url_of(consumer).filter(|_| up(consumer)) else {
                continue;
            };
            let Ok(v) = self.json(format!("{url}/replay")).await else {
                continue;
            };
            let state = v["state"].as_str().unwrap_or_default().to_string();
            out.push(self.with_rate(ProgressView {
                consumer: consumer.to_string(),
                kind: "replay".into(),
                source: None,
                phase: v["phase"].as_str().map(str::to_string),
                done: v["done"].as_u64().unwrap_or(0),
                total: v["total"].as_u64().unwrap_or(0),
                rate: None,
                eta_seconds: None,
                error: v["error"].as_str().map(str::to_string),
                state,
            }));
        }
        out
    }

    /// Fills in the rate since the last round and the time left at it.
    fn with_rate(&mut self, mut p: ProgressView) -> ProgressView {
        let key = (
            p.consumer.clone(),
            format!("{}/{}", p.kind, p.source.as_deref().unwrap_or("")),
        );
        let now = Instant::now();
        if let Some((then, done)) = self.last_progress.get(&key) {
            let seconds = now.duration_since(*then).as_secs_f64();
            if seconds > 0.0 && p.done >= *done {
                let rate = (p.done - done) as f64 / seconds;
                p.rate = Some(rate);
                if rate > 0.0 && p.total > p.done {
                    p.eta_seconds = Some((p.total - p.done) as f64 / rate);
                }
            }
        }
        self.last_progress.insert(key, (now, p.done));
        p
    }
}

/// A flow's colour and the words for it.
fn flow_view(
    d: &Declared,
    consumer: Option<&ConsumerStatus>,
    source: Option<&status::SourceStatus>,
    digest: Option<DigestView>,
) -> FlowView {
    let topic = events_topic(&d.from);
    let lag_events = source.map_or(0, |s| s.partitions.iter().map(|p| p.lag_events).max().unwrap_or(0));
    let lag_seconds = source.map_or(0.0, |s| s.partitions.iter().map(|p| p.lag_seconds).fold(0.0, f64::max));
    let (dead_letters, parked) = source.map_or((0, 0), |s| (s.dead_letters, s.parked));
    let (state, why) = match (consumer, source) {
        (None, _) | (_, None) => ("unknown", "its consumer's status could not be read".to_string()),
        (Some(_), Some(s)) if s.needs_rebuild.is_some() => (
            "out-of-sync",
            format!("needs a rebuild: {}", s.needs_rebuild.clone().unwrap_or_default()),
        ),
        (Some(_), Some(_)) if dead_letters + parked > 0 => (
            "parked",
            format!("{dead_letters} dead letter(s), {parked} event(s) parked behind them"),
        ),
        (Some(_), Some(_)) if lag_events > 0 => {
            ("lagging", format!("{lag_events} event(s), {lag_seconds:.1} s behind"))
        }
        (Some(_), Some(_)) if digest.as_ref().is_some_and(|g| !g.equal) => (
            "out-of-sync",
            "caught up, but the shared data's digests differ".to_string(),
        ),
        (Some(c), Some(_)) => (
            "in-sync",
            match (&digest, &c.unreachable) {
                (Some(g), _) => format!("caught up; {} rows, digests equal", g.replica_rows),
                (None, Some(_)) => "caught up by its committed offsets (the service did not answer)".to_string(),
                (None, None) => "caught up".to_string(),
            },
        ),
    };
    FlowView {
        from: d.from.clone(),
        to: d.to.clone(),
        topic,
        translator: d.translator.clone(),
        state: state.to_string(),
        why,
        lag_events,
        lag_seconds,
        dead_letters,
        parked,
        digest,
    }
}

/// Reads each record at its coordinates and keeps the start of its value.
fn previews(client: &ClientConfig, wanted: &[(String, i32, i64)]) -> Vec<((String, i32, i64), Option<Preview>)> {
    let Ok(reader) = client
        .clone()
        .set("group.id", "seam-console")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set_log_level(RDKafkaLogLevel::Error)
        .create::<BaseConsumer>()
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (topic, partition, offset) in wanted {
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .is_err()
            || reader.assign(&tpl).is_err()
        {
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut found = None;
        while Instant::now() < deadline {
            match reader.poll(Duration::from_millis(200)) {
                Some(Ok(m)) if m.offset() == *offset => {
                    found = Some(preview(m.payload().unwrap_or_default()));
                    break;
                }
                Some(Ok(m)) if m.offset() > *offset => break,
                _ => {}
            }
        }
        out.push(((topic.clone(), *partition, *offset), found));
    }
    out
}

/// The start of a value: Confluent framing recognised, the rest as text.
fn preview(value: &[u8]) -> Preview {
    let schema_id =
        (value.len() >= 5 && value[0] == 0).then(|| u32::from_be_bytes([value[1], value[2], value[3], value[4]]));
    let body = if schema_id.is_some() { &value[5..] } else { value };
    let text = body
        .iter()
        .take(160)
        .map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '·' })
        .collect();
    Preview {
        bytes: value.len(),
        schema_id,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{PartitionStatus, SourceStatus};

    fn source(lag: i64, dead_letters: usize, needs_rebuild: Option<&str>) -> SourceStatus {
        SourceStatus {
            source: "a".into(),
            topic: "a.events".into(),
            dead_letters,
            parked: 0,
            unhandled: BTreeMap::new(),
            needs_rebuild: needs_rebuild.map(str::to_string),
            partitions: vec![PartitionStatus {
                partition: 0,
                position: 10,
                end: 10 + lag,
                lag_events: lag,
                lag_estimated: false,
                lag_seconds: if lag > 0 { 2.5 } else { 0.0 },
            }],
        }
    }

    fn state(source_status: Option<SourceStatus>, equal: Option<bool>) -> String {
        let d = Declared {
            from: "a".into(),
            to: "b".into(),
            translator: "a-to-b".into(),
        };
        let consumer = ConsumerStatus {
            consumer: "b".into(),
            positions_from: "service".into(),
            unreachable: None,
            sources: source_status.iter().cloned().collect(),
        };
        let digest = equal.map(|equal| DigestView {
            source_rows: 3,
            replica_rows: 3,
            equal,
        });
        flow_view(&d, Some(&consumer), source_status.as_ref(), digest).state
    }

    #[test]
    fn a_flow_is_coloured_by_what_needs_a_look_first() {
        assert_eq!(state(Some(source(0, 0, None)), Some(true)), "in-sync");
        assert_eq!(state(Some(source(0, 0, None)), None), "in-sync");
        assert_eq!(state(Some(source(5, 0, None)), None), "lagging");
        assert_eq!(state(Some(source(5, 1, None)), None), "parked");
        assert_eq!(state(Some(source(0, 0, None)), Some(false)), "out-of-sync");
        assert_eq!(state(Some(source(0, 0, Some("gone"))), None), "out-of-sync");
        assert_eq!(state(None, None), "unknown");
    }

    #[test]
    fn a_preview_names_the_schema_id_and_hides_unprintable_bytes() {
        let p = preview(&[0, 0, 0, 0, 42, 8, b'a', b'b', 0xff]);
        assert_eq!(p.schema_id, Some(42));
        assert_eq!(p.text, "·ab·");
        assert_eq!(p.bytes, 9);
        let raw = preview(b"\x01garbage");
        assert_eq!(raw.schema_id, None);
        assert_eq!(raw.text, "·garbage");
    }
}
