//! The sink's worker thread: a session at a time (one database connection, one Kafka consumer
//! assigned from the committed positions), polling a batch, decoding and translating it, and
//! committing it with its positions. Any failure that passes ends the session; the next one
//! starts again from what the database committed, so nothing is skipped or applied twice.

use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use seam::codec::Registry;
use seam::runtime::{retention, Pipeline, RawEvent, Registration};
use seam::snapshot::file;
use seam::translator::{events_topic, Translator};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::apply::{self, describe, Failure, Fate, Item, Statements};
use super::command::SinkCommand;
use super::end::End;
use super::tables::{self, Applied, Positions};
use super::{lock, outbox, Request, Shared};

/// Most events per transaction.
const BATCH: usize = 1_000;
/// Snapshot records per savepoint of a bootstrap.
const CHUNK: usize = 2_000;

pub(super) struct Worker {
    shared: Arc<Shared>,
    database: String,
    sources: Vec<String>,
    /// Linked translators not yet in the pipeline.
    idle: BTreeMap<String, Box<dyn Translator<SinkCommand>>>,
    /// Sources whose translator is in the pipeline.
    reading: HashSet<String>,
    pipeline: Pipeline<SinkCommand>,
    client: ClientConfig,
    registry: Arc<Registry>,
    handle: Handle,
    stop: CancellationToken,
    requests: Receiver<Request>,
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        shared: Arc<Shared>,
        database: String,
        sources: Vec<String>,
        idle: BTreeMap<String, Box<dyn Translator<SinkCommand>>>,
        client: ClientConfig,
        registry: Arc<Registry>,
        handle: Handle,
        stop: CancellationToken,
        requests: Receiver<Request>,
    ) -> Self {
        let pipeline = Pipeline::new(Vec::new(), Arc::clone(&registry), handle.clone())
            .expect("an empty pipeline has no translator to refuse");
        Self {
            shared,
            database,
            sources,
            idle,
            reading: HashSet::new(),
            pipeline,
            client,
            registry,
            handle,
            stop,
            requests,
        }
    }

    pub(super) fn run(mut self) {
        let mut pause = Duration::from_millis(200);
        loop {
            match self.session() {
                End::Stop => return,
                End::Retry(why) => {
                    warn!(service = %self.shared.service, error = %why, "sink session ended; starting again from the committed positions");
                    self.shared.set_trouble(Some(why));
                }
            }
            let until = Instant::now() + pause;
            while Instant::now() < until {
                if self.stop.is_cancelled() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    fn activate(&mut self, source: &str) -> Result<(), End> {
        if self.reading.contains(source) {
            return Ok(());
        }
        let Some(t) = self.idle.remove(source) else {
            return Err(End::Retry(format!("no translator for {source}")));
        };
        self.pipeline
            .add(t)
            .map_err(|e| End::Retry(format!("the translator for {source}: {e}")))?;
        self.reading.insert(source.to_string());
        Ok(())
    }

    fn session(&mut self) -> End {
        match self.try_session() {
            Ok(()) => End::Stop,
            Err(end) => end,
        }
    }

    fn try_session(&mut self) -> Result<(), End> {
        let service = self.shared.service.clone();
        let (mut db, connection) = self
            .handle
            .block_on(tokio_postgres::connect(&self.database, tokio_postgres::NoTls))
            .map_err(|e| End::Retry(format!("cannot connect to PostgreSQL: {}", describe(&e))))?;
        self.handle.spawn(async move {
            if let Err(e) = connection.await {
                warn!(error = %e, "the sink's PostgreSQL connection ended");
            }
        });
        self.handle.block_on(db.batch_execute(tables::CREATE))?;
        // One instance applies at a time: two would each apply every event. The lock lives as
        // long as this session's connection, so a crashed instance's is released with it.
        let key = tables::lock_key(&service);
        let mine: bool = self
            .handle
            .block_on(db.query_one("SELECT pg_try_advisory_lock($1)", &[&key]))?
            .get(0);
        if !mine {
            return Err(End::Retry(format!(
                "another instance of {service}'s sink is applying to this database (it holds pg_advisory_lock({key})); this one takes over when that one stops"
            )));
        }
        let producer: FutureProducer = self
            .client
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .map_err(|e| End::Retry(format!("creating the DLQ producer: {e}")))?;
        let consumer: BaseConsumer = self
            .client
            .clone()
            .set("group.id", format!("seam-sink-{service}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "error")
            .create()
            .map_err(|e| End::Retry(format!("creating the consumer: {e}")))?;
        let mut statements = Statements::default();
        let handle = self.handle.clone();
        let shared = Arc::clone(&self.shared);
        // Letters are durable in the database: a DLQ topic that is missing or away delays
        // them, never the events behind them.
        let flush = |db: &tokio_postgres::Client| {
            let flushed = handle.block_on(outbox::flush(db, &producer, &shared.service));
            if let Err(End::Retry(why)) = &flushed {
                warn!(service = %shared.service, error = %why, "dead letters wait in seam_dead_letters; producing them again later");
            }
            let left: i64 = handle
                .block_on(db.query_one(
                    "SELECT count(*) FROM seam_dead_letters WHERE consumer = $1",
                    &[&shared.service],
                ))
                .map(|r| r.get(0))
                .unwrap_or(-1);
            shared.metrics.set_outbox(left);
            Ok::<i64, End>(left)
        };
        flush(&db)?;
        // A registration whose bootstrap did not commit: do it again, from the same snapshot.
        let pending = self.handle.block_on(db.query(
            "SELECT source, snapshot FROM seam_bootstraps WHERE consumer = $1",
            &[&service],
        ))?;
        let mut positions = self.handle.block_on(tables::positions(&db, &service))?;
        let mut known = self.handle.block_on(tables::applied(&db, &service))?;
        for row in pending {
            let (source, snapshot): (String, Vec<u8>) = (row.get(0), row.get(1));
            // Refused (it can never load), it is forgotten and its source stays unread.
            self.bootstrap(
                &mut db,
                &mut statements,
                &consumer,
                &source,
                snapshot,
                &mut positions,
                &mut known,
            )?;
            flush(&db)?;
        }
        // The topology's sources, and those a registration stored positions for.
        let mut active: Vec<String> = self.sources.clone();
        for source in self.idle.keys().chain(self.reading.iter()) {
            if positions.contains_key(&events_topic(source)) && !active.contains(source) {
                active.push(source.clone());
            }
        }
        for source in &active {
            self.activate(source)?;
            let topic = events_topic(source);
            let at = positions.get(&topic).cloned().unwrap_or_default();
            if !lock(&self.shared.registrations)
                .get(source)
                .is_some_and(|r| matches!(r, Registration::Reading { .. }))
            {
                self.shared.set_registration(
                    source,
                    Registration::Reading {
                        positions: at,
                        snapshot_seq: None,
                        already: false,
                    },
                );
            }
        }
        self.assign(&consumer, &active, &positions)?;
        *lock(&self.shared.positions) = positions.clone();
        self.shared.set_trouble(None);
        info!(%service, sources = ?active, "sink reading");
        let mut lag_at = Instant::now();
        let mut waiting = flush(&db)?;
        loop {
            if self.stop.is_cancelled() {
                return Ok(());
            }
            while let Ok(request) = self.requests.try_recv() {
                let Request::Register { source, snapshot } = request;
                let reads = match snapshot {
                    Some(bytes) => {
                        let kept = self.handle.block_on(db.execute(
                            "INSERT INTO seam_bootstraps (consumer, source, snapshot) VALUES ($1, $2, $3) \
                             ON CONFLICT (consumer, source) DO NOTHING",
                            &[&service, &source, &bytes],
                        ));
                        if let Err(e) = kept {
                            // Not kept, so no later session loads it: say so instead of
                            // leaving the registration bootstrapping forever.
                            let error = format!(
                                "keeping the snapshot in seam_bootstraps failed ({}); run seam register again",
                                describe(&e)
                            );
                            self.shared.set_registration(&source, Registration::Failed { error });
                            return Err(e.into());
                        }
                        let loaded = self.bootstrap(
                            &mut db,
                            &mut statements,
                            &consumer,
                            &source,
                            bytes,
                            &mut positions,
                            &mut known,
                        )?;
                        waiting = flush(&db)?;
                        loaded
                    }
                    None => {
                        if let Err(end) = self.read_from_beginning(&db, &consumer, &source, &mut positions) {
                            if let End::Retry(why) = &end {
                                let error = format!("{why}; run seam register again");
                                self.shared.set_registration(&source, Registration::Failed { error });
                            }
                            return Err(end);
                        }
                        true
                    }
                };
                // A refused registration reads nothing: assigning its topic without positions
                // would read it from the start with no translator and skip every event.
                if !reads || active.contains(&source) {
                    continue;
                }
                active.push(source);
                self.assign(&consumer, &active, &positions)?;
                *lock(&self.shared.positions) = positions.clone();
            }
            let batch = RawEvent::poll_batch(&consumer, BATCH, Duration::from_millis(100)).map_err(|e| {
                End::Retry(format!(
                    "reading the source topics: {e}; if a position fell behind the topic's retention, the events in between are gone: rebuild this database's replica"
                ))
            })?;
            if lag_at.elapsed() > Duration::from_secs(5) {
                self.lag(&consumer, &positions);
                if waiting != 0 {
                    waiting = flush(&db)?;
                }
                lag_at = Instant::now();
            }
            if batch.is_empty() {
                continue;
            }
            let items = self.prepare(batch)?;
            let outcome = self.commit(&mut db, &mut statements, &items, &known)?;
            for (k, seq) in outcome.applied.iter() {
                let w = known.entry(k.clone()).or_default();
                *w = (*w).max(*seq);
            }
            for ((topic, partition), next) in &outcome.positions {
                positions.entry(topic.clone()).or_default().insert(*partition, *next);
            }
            *lock(&self.shared.positions) = positions.clone();
            self.count(&items, &outcome.plans);
            if outcome.letters > 0 {
                waiting = flush(&db)?;
            }
        }
    }

    /// Decodes and translates records (retrying a registry outage until stopped).
    fn prepare(&self, raws: Vec<RawEvent>) -> Result<Vec<Item>, End> {
        raws.into_iter()
            .map(|raw| match self.pipeline.prepare(&raw, &self.stop) {
                Ok(prepared) => Ok(Item { raw, prepared }),
                Err(seam::runtime::RuntimeError::Cancelled) => Err(End::Stop),
                Err(e) => Err(End::Retry(e.to_string())),
            })
            .collect()
    }

    /// Commits `items` in one transaction: all statements at once, or, when one fails on an
    /// event's values, event by event with the failing ones dead-lettered.
    fn commit(
        &self,
        db: &mut tokio_postgres::Client,
        statements: &mut Statements,
        items: &[Item],
        known: &Applied,
    ) -> Result<apply::Outcome, End> {
        for careful in [false, true] {
            let result = self.handle.block_on(async {
                let tx = db.transaction().await.map_err(Failure::Transient)?;
                let outcome = apply::apply(&tx, statements, &self.shared.service, items, known, careful).await?;
                tx.commit().await.map_err(Failure::Transient)?;
                Ok::<_, Failure>(outcome)
            });
            match result {
                Ok(outcome) => {
                    self.shared.metrics.transaction();
                    return Ok(outcome);
                }
                Err(Failure::Statement) if !careful => {
                    // The failed statement may have been a prepare: forget what the aborted
                    // transaction prepared.
                    *statements = Statements::default();
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(End::Retry("a statement failed even event by event".into()))
    }

    /// Counts a batch's outcomes, once per topic and outcome (not per event).
    fn count(&self, items: &[Item], fates: &[Fate]) {
        let mut counts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for (item, fate) in items.iter().zip(fates) {
            let outcome = match fate {
                Fate::Applied => "applied",
                Fate::Duplicate => "duplicate",
                Fate::Skipped => "skipped",
                Fate::DeadLettered => "dead-lettered",
            };
            *counts.entry((item.raw.topic.as_str(), outcome)).or_default() += 1;
        }
        for ((topic, outcome), n) in counts {
            self.shared.metrics.events(topic, outcome, n);
        }
    }

    /// Assigns every partition of the active sources' topics at its committed position (the
    /// first offset when it has none yet).
    fn assign(&self, consumer: &BaseConsumer, active: &[String], positions: &Positions) -> Result<(), End> {
        let topics: Vec<String> = active.iter().map(|s| events_topic(s)).collect();
        let partitions = retention::partitions_of(consumer, &topics).map_err(|e| End::Retry(e.to_string()))?;
        let mut list = TopicPartitionList::new();
        for (topic, partition) in partitions {
            let offset = positions
                .get(&topic)
                .and_then(|p| p.get(&partition))
                .map_or(Offset::Beginning, |o| Offset::Offset(*o));
            list.add_partition_offset(&topic, partition, offset)
                .map_err(|e| End::Retry(format!("assigning {topic}/{partition}: {e}")))?;
        }
        consumer
            .assign(&list)
            .map_err(|e| End::Retry(format!("assigning the source partitions: {e}")))
    }

    fn lag(&self, consumer: &BaseConsumer, positions: &Positions) {
        for (topic, parts) in positions {
            for (partition, next) in parts {
                if let Ok((_, high)) = consumer.fetch_watermarks(topic, *partition, Duration::from_secs(2)) {
                    self.shared.metrics.set_lag(topic, *partition, (high - next).max(0));
                }
            }
        }
    }

    /// A source read from its first offset: its positions are the topic's start offsets now,
    /// committed before it is read, so a restart reads it too.
    fn read_from_beginning(
        &mut self,
        db: &tokio_postgres::Client,
        consumer: &BaseConsumer,
        source: &str,
        positions: &mut Positions,
    ) -> Result<(), End> {
        self.activate(source)?;
        let topic = events_topic(source);
        let partitions =
            retention::partitions_of(consumer, std::slice::from_ref(&topic)).map_err(|e| End::Retry(e.to_string()))?;
        let mut start = BTreeMap::new();
        for (_, p) in &partitions {
            let (low, _) = consumer
                .fetch_watermarks(&topic, *p, Duration::from_secs(10))
                .map_err(|e| End::Retry(format!("reading the start of {topic}/{p}: {e}")))?;
            start.insert((topic.clone(), *p), low);
        }
        self.handle
            .block_on(tables::store_positions(db, &self.shared.service, &start))?;
        let at: BTreeMap<i32, i64> = start.iter().map(|((_, p), o)| (*p, *o)).collect();
        positions.insert(topic, at.clone());
        self.shared.set_registration(
            source,
            Registration::Reading {
                positions: at,
                snapshot_seq: None,
                already: false,
            },
        );
        Ok(())
    }

    /// Loads `source`'s snapshot in one transaction with the offset map as positions and the
    /// snapshot's journal cut as watermarks, and removes the kept snapshot in it too.
    #[allow(clippy::too_many_arguments)]
    fn bootstrap(
        &mut self,
        db: &mut tokio_postgres::Client,
        statements: &mut Statements,
        consumer: &BaseConsumer,
        source: &str,
        snapshot: Vec<u8>,
        positions: &mut Positions,
        known: &mut Applied,
    ) -> Result<bool, End> {
        let service = self.shared.service.clone();
        let topic = events_topic(source);
        let what = format!("the snapshot of {source}");
        let refuse = |shared: &Shared, error: String| {
            shared.set_registration(source, Registration::Failed { error: error.clone() });
            error
        };
        let records = match file::Records::new(std::io::Cursor::new(snapshot), &what, Some(source)) {
            Ok(r) => r,
            Err(e) => {
                let error = refuse(&self.shared, e.to_string());
                self.forget(db, source)?;
                warn!(%service, %source, %error, "registration refused");
                return Ok(false);
            }
        };
        let meta = records.meta.clone();
        let checked = retention::partitions_of(consumer, std::slice::from_ref(&topic)).and_then(|partitions| {
            let covered = meta.offsets.iter().filter(|(t, _, _)| *t == topic).count();
            if covered != partitions.len() {
                return Err(seam::runtime::RuntimeError::Config(format!(
                    "the snapshot's offset map covers {covered} partitions of {topic}, but the topic has {}; export a new snapshot",
                    partitions.len()
                )));
            }
            retention::check(consumer, &partitions, &meta.offsets)
        });
        if let Err(e) = checked {
            let error = refuse(&self.shared, e.to_string());
            self.forget(db, source)?;
            warn!(%service, %source, %error, "registration refused");
            return Ok(false);
        }
        for (id, schema) in &meta.schemas {
            if let Err(e) = self.registry.preload(*id, schema) {
                let error = refuse(&self.shared, format!("a schema in the snapshot: {e}"));
                self.forget(db, source)?;
                warn!(%service, %source, %error, "registration refused");
                return Ok(false);
            }
        }
        self.activate(source)?;
        let total = meta.records;
        let tag = format!("{source}@{}", meta.seq);
        let progress = |loaded: u64| {
            self.shared.set_registration(
                source,
                Registration::Bootstrapping {
                    loaded,
                    total,
                    seq: meta.seq,
                },
            )
        };
        progress(0);
        info!(%service, %source, seq = meta.seq, records = total, "bootstrapping from a snapshot");
        let mut records = records;
        let handle = self.handle.clone();
        let tx = handle.block_on(db.transaction())?;
        let mut loaded = 0u64;
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            for record in records.by_ref().take(CHUNK) {
                let record = record.map_err(|e| End::Retry(e.to_string()))?;
                let index = loaded + chunk.len() as u64;
                chunk.push(seam::runtime::bootstrap::snapshot_event(&topic, &tag, index, record));
            }
            if chunk.is_empty() {
                break;
            }
            let items = self.prepare(chunk)?;
            handle.block_on(async {
                tx.batch_execute("SAVEPOINT seam_chunk").await?;
                match apply::apply(&tx, statements, &service, &items, known, false).await {
                    Ok(_) => tx.batch_execute("RELEASE SAVEPOINT seam_chunk").await?,
                    Err(Failure::Statement) => {
                        tx.batch_execute("ROLLBACK TO SAVEPOINT seam_chunk").await?;
                        *statements = Statements::default();
                        apply::apply(&tx, statements, &service, &items, known, true).await?;
                    }
                    Err(other) => return Err(End::from(other)),
                }
                Ok::<(), End>(())
            })?;
            loaded += items.len() as u64;
            progress(loaded);
        }
        if loaded != total {
            return Err(End::Retry(format!(
                "the snapshot holds {loaded} records, not the {total} it announces"
            )));
        }
        let cut: BTreeMap<(String, i32), i64> = meta
            .offsets
            .iter()
            .filter(|(t, _, _)| *t == topic)
            .map(|(t, p, o)| ((t.to_string(), p), o))
            .collect();
        let result: Result<(), End> = handle.block_on(async {
            tables::store_positions(&tx, &service, &cut).await?;
            if let Some(journal) = &meta.journal {
                let through: Applied = cut
                    .keys()
                    .map(|(t, p)| ((t.clone(), *p, journal.id.clone()), meta.seq as i64))
                    .collect();
                tables::store_applied(&tx, &service, &through).await?;
            }
            tx.execute(
                "DELETE FROM seam_bootstraps WHERE consumer = $1 AND source = $2",
                &[&service, &source],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        });
        result?;
        let at: BTreeMap<i32, i64> = meta
            .offsets
            .iter()
            .filter(|(t, _, _)| *t == topic)
            .map(|(_, p, o)| (p, o))
            .collect();
        if let Some(journal) = &meta.journal {
            for p in at.keys() {
                known.insert((topic.clone(), *p, journal.id.clone()), meta.seq as i64);
            }
        }
        positions.insert(topic, at.clone());
        self.shared.set_registration(
            source,
            Registration::Reading {
                positions: at,
                snapshot_seq: Some(meta.seq),
                already: false,
            },
        );
        info!(%service, %source, seq = meta.seq, "bootstrap committed; reading from the snapshot's offsets");
        Ok(true)
    }

    /// Drops a kept snapshot that can never load.
    fn forget(&self, db: &tokio_postgres::Client, source: &str) -> Result<(), End> {
        self.handle.block_on(db.execute(
            "DELETE FROM seam_bootstraps WHERE consumer = $1 AND source = $2",
            &[&self.shared.service, &source],
        ))?;
        Ok(())
    }
}
