//! `seam replay`: rebuilds a consumer's replicas of foreign data ([`Replica`]) into a fresh shadow
//! store by reading the source topics again (from offset 0 or from the sources' snapshots),
//! while the live store keeps serving and consuming. The shadow runs the real apply path with its
//! own writer but no publisher: what the rebuild emits stays in the shadow and is never published.
//!
//! The shadow catches up to the live positions, then one exclusive step on the live writer reads
//! the last few events up to the live positions of that moment, compares the replicas key by
//! key and (unless it is a dry run) swaps the differing keys in with one atomic store write.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::bootstrap::{self, SnapshotSource};
use super::pipeline::{Pipeline, RawEvent};
use super::progress::Progress;
use super::rebuild::Rebuilds;
use super::spool;
use super::writer::{Inbound, Request, Writer};
use super::{retention, Node, RuntimeError};
use crate::codec::{Catalog, Registry};
use crate::metrics::Metrics;
use crate::offsets::OffsetMap;
use crate::service::{Replica, Service};
use crate::store::Store;
use crate::translator::events_topic;

use super::swap::{self, LetterReport, LISTED};

/// What a replay's exclusive step compares and swaps.
pub struct Swap<'a> {
    /// The replicas' model key prefixes.
    pub prefixes: &'a [String],
    /// The replayed source topics.
    pub topics: &'a [String],
    /// Sources being rebuilt after their events were lost (their letters are the truth).
    pub rebuilding: &'a BTreeSet<String>,
    /// Only report.
    pub dry_run: bool,
    /// Swap even when the rebuild dead-lettered events the live store took in.
    pub accept_dead_letters: bool,
    /// A targeted replay's subjects: only the keys the rebuild of their events wrote are
    /// compared and swapped, only their letters matched, and the live store's positions stay.
    pub subjects: Option<&'a BTreeSet<String>>,
}

/// The exclusive step of a replay, once the shadow has read up to `target` (the live
/// positions of this moment): compares the replicas and the dead letters of both sides and,
/// unless refused or a dry run, stages the swap into `set` (one atomic write with the live
/// store's bookkeeping). The report's `events` and `snapshot_records` are the caller's.
pub fn compare_and_swap(
    live: &Store,
    shadow: &Store,
    set: &mut crate::store::WriteSet,
    plan: &Swap<'_>,
    target: &OffsetMap,
) -> Result<ReplayReport, RuntimeError> {
    let diff = swap::compare(live, shadow, plan.prefixes, plan.subjects.is_some())?;
    let letters = swap::letters(live, shadow, plan.topics, plan.subjects)?;
    // Letters of a source being rebuilt are the rebuilt truth: the live store never took in
    // what it missed.
    let unexpected = letters
        .new
        .iter()
        .filter(|l| !plan.rebuilding.contains(&l.topic))
        .count();
    let refused = (!plan.dry_run && unexpected > 0 && !plan.accept_dead_letters).then(|| {
        format!(
            "the rebuild dead-lettered {unexpected} event(s) the live store took in: swapping would revert their subjects and drop the letters. Fix the cause and replay again, or replay with --accept-dead-letters to park them in the live store"
        )
    });
    let differs =
        !diff.keys.is_empty() || !letters.resolved.is_empty() || !letters.new.is_empty() || !plan.rebuilding.is_empty();
    let swap = !plan.dry_run && refused.is_none() && differs;
    if swap {
        let when = crate::envelope::rfc3339(crate::envelope::now_ms());
        let bookkeeping = if plan.subjects.is_some() { &[][..] } else { plan.topics };
        swap::stage(live, shadow, set, bookkeeping, &diff, &letters, &when)?;
    }
    Ok(ReplayReport {
        sources: Vec::new(),
        subjects: plan.subjects.map(|s| s.iter().cloned().collect()).unwrap_or_default(),
        prefixes: plan.prefixes.to_vec(),
        from: String::new(),
        snapshot_records: 0,
        events: 0,
        emitted_unpublished: shadow.last_seq()?,
        positions: target.iter().fold(
            BTreeMap::new(),
            |mut m: BTreeMap<String, BTreeMap<i32, i64>>, (t, p, o)| {
                m.entry(t.to_string()).or_default().insert(p, o);
                m
            },
        ),
        live_digest: diff.live_digest,
        shadow_digest: diff.shadow_digest,
        differing_count: diff.keys.len() as u64,
        placeholders_kept: diff.kept as u64,
        differing: diff.keys.iter().take(LISTED).map(|(k, _)| k.clone()).collect(),
        shadow_dead_letters: letters.new.iter().take(LISTED).map(LetterReport::from).collect(),
        shadow_dead_letter_count: letters.new.len() as u64,
        resolved_dead_letters: letters.resolved.len() as u64,
        refused,
        rebuilt: if swap {
            plan.rebuilding.iter().cloned().collect()
        } else {
            Vec::new()
        },
        swapped: swap,
        dry_run: plan.dry_run,
        seconds: 0.0,
    })
}

/// What to rebuild and from where (`POST /replay`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Source services whose replicas to rebuild; empty: every replica the service declares.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Snapshot URLs (or files on the service's machine) by source: rebuild from them instead of
    /// from offset 0. Must cover every source the rebuild reads when given.
    #[serde(default)]
    pub snapshots: BTreeMap<String, String>,
    /// Only report; leave the live store as it is.
    #[serde(default)]
    pub dry_run: bool,
    /// Swap even when the rebuild dead-lettered events the live store took in: their subjects
    /// take the rebuilt state and are parked in the live store with those letters (sent to its
    /// DLQ). Without it such a replay reports them and swaps nothing.
    #[serde(default)]
    pub accept_dead_letters: bool,
    /// Rebuild only these subjects (Kafka keys of the sources' events, e.g. `student/s7`): read
    /// only the partitions holding them, apply only their events, and swap only the keys that
    /// rebuild writes. What `seam reconcile --repair` sends for the subjects it found drifted.
    #[serde(default)]
    pub subjects: Vec<String>,
}

/// How a replay stands (`GET /replay`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ReplayStatus {
    /// Rebuilding.
    Running {
        /// `loading snapshots`, `reading`, `catching up` or `comparing`.
        phase: String,
        /// Records taken into the shadow so far.
        done: u64,
        /// Records to take in (grows while the live store consumes).
        total: u64,
    },
    /// Finished.
    Done(Box<ReplayReport>),
    /// Stopped; the live store is unchanged.
    Failed {
        /// Why, and what to do.
        error: String,
    },
}

/// What a replay found and did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    /// Sources read again.
    pub sources: Vec<String>,
    /// The subjects of a targeted replay; empty for a whole one.
    pub subjects: Vec<String>,
    /// The model key prefixes compared (the replicas).
    pub prefixes: Vec<String>,
    /// `beginning` or `snapshot`.
    pub from: String,
    /// Snapshot records loaded.
    pub snapshot_records: u64,
    /// Topic records read.
    pub events: u64,
    /// Journal entries the rebuild emitted into the shadow; none were published.
    pub emitted_unpublished: u64,
    /// The positions both stores were compared at.
    pub positions: BTreeMap<String, BTreeMap<i32, i64>>,
    /// SHA-256 over the live replicas before the swap.
    pub live_digest: String,
    /// SHA-256 over the rebuilt replicas.
    pub shadow_digest: String,
    /// How many keys differ.
    pub differing_count: u64,
    /// Placeholders of own commands the rebuild has no data for yet: kept, not counted as
    /// differences (see `Apply::put_placeholder`).
    pub placeholders_kept: u64,
    /// The first differing keys.
    pub differing: Vec<String>,
    /// Dead letters the rebuild made that the live store does not have (the first ones).
    pub shadow_dead_letters: Vec<LetterReport>,
    /// How many dead letters the rebuild made that the live store does not have.
    pub shadow_dead_letter_count: u64,
    /// Live dead letters whose events the rebuild applied: resolved by the swap.
    pub resolved_dead_letters: u64,
    /// Why the swap was not made, when it was not a dry run.
    pub refused: Option<String>,
    /// Sources the live store could no longer read (their events were gone) that were rebuilt
    /// and are read again from the swapped positions.
    pub rebuilt: Vec<String>,
    /// Whether the rebuilt replicas replaced the live ones.
    pub swapped: bool,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Wall time.
    pub seconds: f64,
}

/// Everything a replay needs from the node.
pub(crate) struct Replay<S: Service> {
    pub name: String,
    pub service: Arc<S>,
    pub catalog: Arc<Catalog>,
    pub registry: Arc<Registry>,
    pub pipeline: Arc<Pipeline<S::Command>>,
    pub live: Store,
    pub live_writer: mpsc::Sender<Request<S::Command>>,
    pub shadow_dir: PathBuf,
    /// The live store's engine, which the shadow uses too.
    pub shadow_engine: crate::store::StoreEngine,
    pub client: ClientConfig,
    pub cancel: CancellationToken,
    pub status: Arc<Mutex<Option<ReplayStatus>>>,
    /// Only report.
    pub dry_run: bool,
    /// Swap even when the rebuild dead-lettered events (see [`ReplayRequest`]).
    pub accept_dead_letters: bool,
    /// Source topics whose events the live store needs are gone (the retention guard stopped
    /// reading them): rebuilt to the topic's end, their positions swapped in, then read again.
    pub rebuilding: BTreeSet<String>,
    /// Where a rebuilt source is read again.
    pub rebuilds: Arc<Rebuilds>,
    /// A targeted replay's subjects (see [`ReplayRequest::subjects`]).
    pub subjects: Option<Arc<BTreeSet<String>>>,
}

/// The replicas covering `sources` (all when empty), and every source they are built from. A
/// replica declaring no sources is built from everything the service reads (`reading`).
/// What a replay of `service` rebuilds: the prefixes of the chosen replicas and the sources
/// they are built from, given the `sources` asked for (empty: all) and the sources the node
/// reads (`reading`). Refuses a replica of a source the node does not read yet: rebuilding it
/// from offset 0 while a bootstrap loads it would swap in a replica without that source.
pub fn plan(
    service: &str,
    replicas: &[Replica],
    sources: &[String],
    reading: &[String],
) -> Result<(Vec<String>, BTreeSet<String>), RuntimeError> {
    if replicas.is_empty() {
        return Err(RuntimeError::Refused(format!(
            "{service} declares no replicas: its model is written by its own commands too, so it cannot be rebuilt from topics"
        )));
    }
    let built_from = |r: &Replica| -> Vec<String> {
        if r.sources.is_empty() {
            reading.to_vec()
        } else {
            r.sources.iter().map(|s| s.to_string()).collect()
        }
    };
    for s in sources {
        if !replicas.iter().any(|r| built_from(r).contains(s)) {
            return Err(RuntimeError::Refused(format!(
                "{service} keeps no replica of {s}; its replicas are built from {:?}",
                replicas.iter().flat_map(built_from).collect::<BTreeSet<_>>()
            )));
        }
    }
    let chosen: Vec<&Replica> = replicas
        .iter()
        .filter(|r| sources.is_empty() || built_from(r).iter().any(|s| sources.contains(s)))
        .collect();
    let reads: BTreeSet<String> = chosen.iter().flat_map(|r| built_from(r)).collect();
    if let Some(s) = reads.iter().find(|s| !reading.contains(s)) {
        return Err(RuntimeError::Refused(format!(
            "{service} does not read {s} yet; register it first (`seam register {service} --source {s}`)"
        )));
    }
    Ok((chosen.iter().map(|r| r.prefix.to_string()).collect(), reads))
}

impl<S: Service> Replay<S> {
    fn phase(&self, phase: &str, done: u64, total: u64) {
        if let Ok(mut s) = self.status.lock() {
            *s = Some(ReplayStatus::Running {
                phase: phase.to_string(),
                done,
                total,
            });
        }
    }

    /// Runs the whole replay.
    pub async fn run(
        self,
        prefixes: Vec<String>,
        sources: BTreeSet<String>,
        snapshots: BTreeMap<String, SnapshotSource>,
    ) -> Result<ReplayReport, RuntimeError> {
        let started = Instant::now();
        let topics: Vec<String> = sources.iter().map(|s| events_topic(s)).collect();
        if self.shadow_dir.exists() {
            std::fs::remove_dir_all(&self.shadow_dir)
                .map_err(|e| RuntimeError::Store(format!("clearing {}: {e}", self.shadow_dir.display())))?;
        }
        let shadow = crate::store::open_as(&self.shadow_dir, self.shadow_engine)?.without_journal();
        let (shadow_tx, shadow_rx) = mpsc::channel(16);
        let writer = Writer {
            journals: Default::default(),
            name: self.name.clone(),
            service: Arc::clone(&self.service),
            store: shadow.clone(),
            catalog: Arc::clone(&self.catalog),
            metrics: Metrics::new(&self.name),
            durable: Arc::new(Progress::new(0)),
            outbox: Arc::new(Progress::new(0)),
            recent: None,
        };
        let shadow_writer = std::thread::Builder::new()
            .name("seam-replay-writer".into())
            .spawn(move || writer.run(shadow_rx))
            .map_err(|e| RuntimeError::Config(format!("cannot start the replay writer: {e}")))?;
        let result = self.rebuild(prefixes, &topics, &snapshots, &shadow, shadow_tx).await;
        let _ = tokio::task::spawn_blocking(move || shadow_writer.join()).await;
        drop(shadow);
        let _ = std::fs::remove_dir_all(&self.shadow_dir);
        let mut report = result?;
        report.sources = sources.into_iter().collect();
        report.seconds = started.elapsed().as_secs_f64();
        info!(service = %self.name, differing = report.differing_count, swapped = report.swapped, "replay done");
        Ok(report)
    }

    async fn rebuild(
        &self,
        prefixes: Vec<String>,
        topics: &[String],
        snapshots: &BTreeMap<String, SnapshotSource>,
        shadow: &Store,
        shadow_tx: mpsc::Sender<Request<S::Command>>,
    ) -> Result<ReplayReport, RuntimeError> {
        let mut snapshot_records = 0;
        if snapshots.is_empty() {
            let (client, topics) = (self.client.clone(), topics.to_vec());
            tokio::task::spawn_blocking(move || from_beginning_possible(&client, &topics))
                .await
                .map_err(|_| RuntimeError::Panicked("replay-check".into()))??;
        } else {
            for (source, from) in snapshots {
                self.phase("loading snapshots", 0, 0);
                // A snapshot served over HTTP is downloaded next to the shadow store first.
                let file = match from {
                    SnapshotSource::File(path) => path.clone(),
                    SnapshotSource::Url(url) => spool::download(&self.shadow_dir, source, url)
                        .await?
                        .claim(&self.shadow_dir)?,
                };
                let progress = |done, total, _| self.phase("loading snapshots", done, total);
                let meta = bootstrap::run(
                    &self.name,
                    source,
                    &file,
                    shadow,
                    &self.registry,
                    &self.pipeline,
                    &shadow_tx,
                    &self.client,
                    &self.cancel,
                    &progress,
                )
                .await?;
                snapshot_records += meta.map(|m| m.records).unwrap_or(0);
            }
        }
        let partitions = match &self.subjects {
            None => None,
            Some(subjects) => {
                let (client, topics, subjects) = (self.client.clone(), topics.to_vec(), Arc::clone(subjects));
                let holding = tokio::task::spawn_blocking(move || partitions_holding(&client, &topics, &subjects))
                    .await
                    .map_err(|_| RuntimeError::Panicked("replay-partitions".into()))??;
                Some(holding)
            }
        };
        let reader = Reader {
            consumer: self.reader()?,
            pipeline: Arc::clone(&self.pipeline),
            shadow: shadow.clone(),
            writer: shadow_tx,
            cancel: self.cancel.clone(),
            read: Arc::new(AtomicU64::new(0)),
            subjects: self.subjects.clone(),
            partitions,
            consumed: Mutex::new(OffsetMap::default()),
        };
        let start = shadow.positions()?;
        let total = |live: &OffsetMap| -> u64 {
            topics
                .iter()
                .flat_map(|t| live.iter().filter(move |(lt, _, _)| lt == t))
                .map(|(t, p, o)| (o - start.position(t, p)).max(0) as u64)
                .sum()
        };
        // The live store must have reached the snapshots' cut before the two can be compared.
        // A snapshot's offsets may point past transaction markers, which a store never counts.
        let until = Instant::now() + Duration::from_secs(120);
        let mut reader = reader;
        loop {
            let live = self.live.positions()?;
            // A source being rebuilt has no live positions worth comparing with.
            let gaps: Vec<(String, i32, i64, i64)> = start
                .iter()
                .filter(|(t, _, _)| !self.rebuilding.contains(*t))
                .filter(|(t, p, o)| live.position(t, *p) < *o)
                .map(|(t, p, o)| (t.to_string(), p, live.position(t, p), o))
                .collect();
            let (r, behind) = tokio::task::spawn_blocking(move || {
                let behind = reader.records_in(&gaps);
                (reader, behind)
            })
            .await
            .map_err(|_| RuntimeError::Panicked("replay-reader".into()))?;
            reader = r;
            let behind = behind?;
            if behind.is_empty() {
                break;
            }
            if Instant::now() > until {
                return Err(RuntimeError::Refused(format!(
                    "the live store is still behind the snapshots at {behind:?}; let it catch up, then replay again"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Sources being rebuilt are read to their current end; the others to the live store's
        // positions, while the live store keeps consuming, until a round has little left to read.
        let ends = {
            let (client, rebuilding) = (self.client.clone(), self.rebuilding.clone());
            tokio::task::spawn_blocking(move || ends(&client, &rebuilding))
                .await
                .map_err(|_| RuntimeError::Panicked("replay-ends".into()))??
        };
        let healthy: Vec<String> = topics
            .iter()
            .filter(|t| !self.rebuilding.contains(*t))
            .cloned()
            .collect();
        let targets = move |live: &OffsetMap| {
            let mut target = restrict(live, &healthy);
            for (t, p, o) in ends.iter() {
                target.set(t, p, o);
            }
            target
        };
        loop {
            let target = targets(&self.live.positions()?);
            self.phase("reading", reader.read.load(Ordering::Relaxed), total(&target));
            let before = reader.read.load(Ordering::Relaxed);
            reader = tokio::task::spawn_blocking(move || reader.read_to(&target).map(|()| reader))
                .await
                .map_err(|_| RuntimeError::Panicked("replay-reader".into()))??;
            if reader.read.load(Ordering::Relaxed) - before < 1000 {
                break;
            }
        }
        // One exclusive step on the live writer: nothing commits in between, so the final
        // catch-up, the comparison and the swap all see the same cut.
        self.phase("comparing", reader.read.load(Ordering::Relaxed), 0);
        let (report_tx, report_rx) = oneshot::channel::<Result<ReplayReport, RuntimeError>>();
        let (dry_run, accept_dead_letters) = (self.dry_run, self.accept_dead_letters);
        let subjects = self.subjects.clone();
        let rebuilding = self.rebuilding.clone();
        let job = {
            let (prefixes, shadow, topics) = (prefixes, shadow.clone(), topics.to_vec());
            let rebuilding = rebuilding.clone();
            Box::new(move |live: &Store, set: &mut crate::store::WriteSet| {
                let result = (|| {
                    let target = targets(&live.positions()?);
                    reader.read_to(&target)?;
                    let plan = Swap {
                        prefixes: &prefixes,
                        topics: &topics,
                        rebuilding: &rebuilding,
                        dry_run,
                        accept_dead_letters,
                        subjects: subjects.as_deref(),
                    };
                    let mut report = compare_and_swap(live, &shadow, set, &plan, &target)?;
                    report.snapshot_records = snapshot_records;
                    report.events = reader.read.load(Ordering::Relaxed);
                    Ok(report)
                })();
                let failed = result.as_ref().err().cloned();
                let _ = report_tx.send(result);
                failed.map_or(Ok(()), Err)
            })
        };
        let (reply, answer) = oneshot::channel();
        self.live_writer
            .send(Request::Exclusive { job, reply })
            .await
            .map_err(|_| RuntimeError::WriterGone)?;
        answer.await.map_err(|_| RuntimeError::WriterGone)??;
        // The job ran (the writer answered Ok only after it): its report is in the channel.
        let mut report = report_rx.await.map_err(|_| RuntimeError::WriterGone)??;
        for topic in &report.rebuilt {
            self.rebuilds.done(topic);
        }
        report.from = if snapshots.is_empty() { "beginning" } else { "snapshot" }.into();
        Ok(report)
    }

    fn reader(&self) -> Result<BaseConsumer, RuntimeError> {
        self.client
            .clone()
            .set("group.id", format!("{}-replay", self.name))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "error")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| RuntimeError::kafka("creating the replay reader".into(), e))
    }
}

/// `--from-beginning` needs every partition to still start at offset 0.
fn from_beginning_possible(client: &ClientConfig, topics: &[String]) -> Result<(), RuntimeError> {
    let probe: BaseConsumer = client
        .create()
        .map_err(|e| RuntimeError::kafka("connecting".into(), e))?;
    let partitions = retention::partitions_of(&probe, topics)?;
    match retention::check(&probe, &partitions, &OffsetMap::default()) {
        Err(RuntimeError::Retention(retention::RetentionError::Deleted {
            topic,
            partition,
            earliest,
            ..
        })) => Err(RuntimeError::Refused(format!(
            "cannot replay {topic} from the beginning: retention deleted partition {partition} up to offset {earliest}; replay --from-snapshot instead"
        ))),
        other => other,
    }
}

/// The current end (high watermark) of every partition of `topics`.
fn ends(client: &ClientConfig, topics: &BTreeSet<String>) -> Result<OffsetMap, RuntimeError> {
    let mut out = OffsetMap::default();
    if topics.is_empty() {
        return Ok(out);
    }
    let probe: BaseConsumer = client
        .create()
        .map_err(|e| RuntimeError::kafka("connecting".into(), e))?;
    let topics: Vec<String> = topics.iter().cloned().collect();
    for (t, p) in retention::partitions_of(&probe, &topics)? {
        let (_, high) = super::watermarks::watermarks(&probe, &t, p)?;
        out.set(&t, p, high);
    }
    Ok(out)
}

fn restrict(positions: &OffsetMap, topics: &[String]) -> OffsetMap {
    let mut out = OffsetMap::default();
    for (t, p, o) in positions.iter().filter(|(t, _, _)| topics.iter().any(|x| x == t)) {
        out.set(t, p, o);
    }
    out
}

/// Reads source topics into the shadow store through its writer.
struct Reader<C> {
    consumer: BaseConsumer,
    pipeline: Arc<Pipeline<C>>,
    shadow: Store,
    writer: mpsc::Sender<Request<C>>,
    cancel: CancellationToken,
    read: Arc<AtomicU64>,
    /// A targeted replay's subjects: other events are read past, not applied.
    subjects: Option<Arc<BTreeSet<String>>>,
    /// The partitions holding those subjects; `None`: every partition.
    partitions: Option<BTreeSet<(String, i32)>>,
    /// How far a targeted replay has read each partition: the shadow's own positions move only
    /// with the events it applies.
    consumed: Mutex<OffsetMap>,
}

impl<C: Send + 'static> Reader<C> {
    /// The partitions among `gaps` (topic, partition, from, to) holding a record in `from..to`
    /// (as opposed to only transaction markers).
    fn records_in(&self, gaps: &[(String, i32, i64, i64)]) -> Result<Vec<String>, RuntimeError> {
        let mut behind = Vec::new();
        for (t, p, from, to) in gaps {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(t, *p, Offset::Offset(*from))
                .map_err(|e| RuntimeError::kafka(format!("assigning {t}/{p}"), e))?;
            self.consumer
                .assign(&tpl)
                .map_err(|e| RuntimeError::kafka("assigning the replay reader".into(), e))?;
            let until = Instant::now() + Duration::from_secs(10);
            let found = loop {
                match self.consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => break m.offset() < *to,
                    Some(Err(e)) => return Err(RuntimeError::kafka("reading for the replay".into(), e)),
                    None => {}
                }
                let at = self
                    .consumer
                    .position()
                    .ok()
                    .and_then(|tpl| match tpl.find_partition(t, *p)?.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
                if at.is_some_and(|o| o >= *to) || Instant::now() > until {
                    break at.is_none_or(|o| o < *to);
                }
            };
            if found {
                behind.push(format!("{t}/{p}"));
            }
        }
        self.consumer
            .unassign()
            .map_err(|e| RuntimeError::kafka("unassigning the replay reader".into(), e))?;
        Ok(behind)
    }

    /// Takes in every record below `target` the shadow has not taken in yet.
    fn read_to(&self, target: &OffsetMap) -> Result<(), RuntimeError> {
        let from = self.shadow.positions()?;
        let consumed = self.consumed.lock().map(|c| c.clone()).unwrap_or_default();
        let mut tpl = TopicPartitionList::new();
        let mut open: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for (t, p, end) in target.iter() {
            if self
                .partitions
                .as_ref()
                .is_some_and(|held| !held.contains(&(t.to_string(), p)))
            {
                continue;
            }
            let at = from.position(t, p).max(consumed.position(t, p));
            if at < end {
                tpl.add_partition_offset(t, p, Offset::Offset(at))
                    .map_err(|e| RuntimeError::kafka(format!("assigning {t}/{p}"), e))?;
                open.insert((t.to_string(), p), end);
            }
        }
        if open.is_empty() {
            return Ok(());
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| RuntimeError::kafka("assigning the replay reader".into(), e))?;
        let mut quiet = Instant::now();
        while !open.is_empty() {
            if self.cancel.is_cancelled() {
                return Err(RuntimeError::Cancelled);
            }
            let mut batch = Vec::new();
            let mut timeout = Duration::from_millis(100);
            while batch.len() < 2000 {
                match self.consumer.poll(timeout) {
                    None => break,
                    Some(Ok(m)) => {
                        let key = (m.topic().to_string(), m.partition());
                        let wanted = match &self.subjects {
                            None => true,
                            Some(subjects) => m
                                .key()
                                .and_then(|k| std::str::from_utf8(k).ok())
                                .is_some_and(|k| subjects.contains(k)),
                        };
                        if wanted && open.get(&key).is_some_and(|end| m.offset() < *end) {
                            batch.push(RawEvent::from_message(&m));
                        }
                    }
                    Some(Err(e)) => {
                        return Err(RuntimeError::kafka("reading for the replay".into(), e));
                    }
                }
                timeout = Duration::ZERO;
            }
            if !batch.is_empty() {
                quiet = Instant::now();
                let n = batch.len() as u64;
                let items = batch
                    .into_iter()
                    .map(|raw| {
                        self.pipeline
                            .prepare(&raw, &self.cancel)
                            .map(|prepared| Inbound { raw, prepared })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let (reply, answer) = oneshot::channel();
                self.writer
                    .blocking_send(Request::Foreign {
                        items,
                        applied: None,
                        reply,
                    })
                    .map_err(|_| RuntimeError::WriterGone)?;
                answer.blocking_recv().map_err(|_| RuntimeError::WriterGone)??;
                self.read.fetch_add(n, Ordering::Relaxed);
            }
            // Done with a partition once its read position reached the target (librdkafka's
            // position also steps over transaction markers, which never reach a store).
            let positions = self
                .consumer
                .position()
                .map_err(|e| RuntimeError::kafka("reading positions".into(), e))?;
            for e in positions.elements() {
                if let Offset::Offset(o) = e.offset() {
                    let key = (e.topic().to_string(), e.partition());
                    if open.get(&key).is_some_and(|end| o >= *end) {
                        open.remove(&key);
                    }
                }
            }
            if quiet.elapsed() > Duration::from_secs(60) {
                return Err(RuntimeError::Kafka {
                    what: "replaying".into(),
                    detail: format!("no records for 60 s while {open:?} are not read to their targets"),
                });
            }
        }
        self.consumer
            .unassign()
            .map_err(|e| RuntimeError::kafka("unassigning the replay reader".into(), e))?;
        if self.subjects.is_some() {
            if let Ok(mut consumed) = self.consumed.lock() {
                for ((t, p), end) in tpl_targets(&tpl, target) {
                    consumed.set(&t, p, end);
                }
            }
        }
        Ok(())
    }
}

/// The (topic, partition, target) of every partition a read assigned.
fn tpl_targets(tpl: &TopicPartitionList, target: &OffsetMap) -> Vec<((String, i32), i64)> {
    tpl.elements()
        .iter()
        .map(|e| {
            let (t, p) = (e.topic().to_string(), e.partition());
            let end = target.position(&t, p);
            ((t, p), end)
        })
        .collect()
}

/// The partitions of `topics` that hold `subjects`: Kafka's default partitioner, which seam's
/// publisher uses, places each key. An external source's producer may partition otherwise, so
/// all of its partitions are read.
fn partitions_holding(
    client: &ClientConfig,
    topics: &[String],
    subjects: &BTreeSet<String>,
) -> Result<BTreeSet<(String, i32)>, RuntimeError> {
    let probe: BaseConsumer = client
        .create()
        .map_err(|e| RuntimeError::kafka("connecting".into(), e))?;
    let all = retention::partitions_of(&probe, topics)?;
    let mut out = BTreeSet::new();
    for topic in topics {
        let count = all.iter().filter(|(t, _)| t == topic).count() as i32;
        let source = topic.trim_end_matches(".events");
        let external = crate::translator::is_external(source) || events_topic(source) != *topic;
        for (t, p) in all.iter().filter(|(t, _)| t == topic) {
            if external
                || subjects
                    .iter()
                    .any(|s| crate::partitioner::partition_for(s.as_bytes(), count) == *p)
            {
                out.insert((t.clone(), *p));
            }
        }
    }
    Ok(out)
}

/// Parses where a rebuild starts for each source: snapshot URLs or files.
pub(crate) fn snapshot_sources(snapshots: &BTreeMap<String, String>) -> BTreeMap<String, SnapshotSource> {
    snapshots
        .iter()
        .map(|(s, from)| (s.clone(), SnapshotSource::parse(from)))
        .collect()
}

impl<S: Service> Node<S> {
    /// Starts rebuilding the replicas of `request.sources` in a shadow store (one replay at a
    /// time); [`Node::replay_status`] reports progress and, at the end, the comparison and swap.
    pub fn replay(&self, request: ReplayRequest) -> Result<ReplayStatus, RuntimeError> {
        if let Some(s @ ReplayStatus::Running { .. }) = self.replay_status() {
            return Err(RuntimeError::Conflict(format!(
                "a replay of {} is already running ({s:?}); wait for it to finish",
                self.name
            )));
        }
        // Sources waiting for a rebuild count as read: rebuilding them is what a replay is for.
        let waiting = self.rebuilds.all();
        let mut reading = self.sources();
        reading.extend(waiting.keys().cloned());
        reading.sort();
        reading.dedup();
        let names: Vec<String> = reading
            .iter()
            .map(|t| t.trim_end_matches(".events").to_string())
            .collect();
        let (replicas, sources) = plan(&self.name, &self.service.replicas(), &request.sources, &names)?;
        let rebuilding: BTreeSet<String> = sources
            .iter()
            .map(|s| events_topic(s))
            .filter(|t| waiting.contains_key(t))
            .collect();
        if !request.subjects.is_empty() {
            if !request.snapshots.is_empty() {
                return Err(RuntimeError::Refused(
                    "a replay of chosen subjects reads their events from the topics; it cannot start from snapshots (leave the snapshots out)".into(),
                ));
            }
            if let Some(t) = rebuilding.iter().next() {
                return Err(RuntimeError::Refused(format!(
                    "{t} lost events the live store needs and must be rebuilt whole first: replay its replicas without --subject"
                )));
            }
            if let Some(bad) = request.subjects.iter().find(|s| s.is_empty()) {
                return Err(RuntimeError::Refused(format!(
                    "subject {bad:?} is empty: subjects are the Kafka keys of the sources' events, e.g. student/s7"
                )));
            }
        }
        let mut snapshots = snapshot_sources(&request.snapshots);
        snapshots.retain(|s, _| sources.contains(s));
        if !request.snapshots.is_empty() {
            if let Some(missing) = sources.iter().find(|s| !snapshots.contains_key(*s)) {
                return Err(RuntimeError::Refused(format!(
                    "a replay from snapshots needs one for every source it reads ({sources:?}); {missing} has none"
                )));
            }
        }
        let pipeline = self.pipeline.clone().ok_or_else(|| {
            RuntimeError::Refused(format!(
                "{} takes in no foreign events; there is nothing to replay",
                self.name
            ))
        })?;
        let writer = self.writer.clone().ok_or(RuntimeError::WriterGone)?;
        let status = ReplayStatus::Running {
            phase: "starting".into(),
            done: 0,
            total: 0,
        };
        if let Ok(mut s) = self.replay.lock() {
            *s = Some(status.clone());
        }
        let job = Replay {
            name: self.name.clone(),
            service: Arc::clone(&self.service),
            catalog: Arc::clone(&self.catalog),
            registry: Arc::clone(&self.registry),
            pipeline,
            live: self.store.clone(),
            live_writer: writer,
            shadow_dir: self.store_dir.join("seam-replay"),
            shadow_engine: self.store_engine,
            client: self.client.clone(),
            cancel: self.cancel.clone(),
            status: Arc::clone(&self.replay),
            dry_run: request.dry_run,
            accept_dead_letters: request.accept_dead_letters,
            rebuilding,
            rebuilds: Arc::clone(&self.rebuilds),
            subjects: (!request.subjects.is_empty()).then(|| Arc::new(request.subjects.iter().cloned().collect())),
        };
        let slot = Arc::clone(&self.replay);
        let name = self.name.clone();
        tokio::spawn(async move {
            let done = match job.run(replicas, sources, snapshots).await {
                Ok(report) => ReplayStatus::Done(Box::new(report)),
                Err(e) => {
                    error!(service = %name, error = %e, "replay failed; the live store is unchanged");
                    ReplayStatus::Failed { error: e.to_string() }
                }
            };
            if let Ok(mut s) = slot.lock() {
                *s = Some(done);
            }
        });
        Ok(status)
    }
}
