//! Starting a node: open the store, check the topics and schemas, restore what a crash left
//! (bootstraps, replays, registrations), and start every part on its own thread.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rdkafka::consumer::BaseConsumer;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    bootstrap, consumer, dlq, journal_schemas, pipeline, publisher, rebuild, redrive, retention, spawn, spool, writer,
    Node, NodeConfig, Progress, RetentionError, RuntimeError, SNAPSHOTS_DIR,
};
use crate::codec::{Catalog, Registry};
use crate::metrics::Metrics;
use crate::service::Service;
use crate::store::Store;
use crate::translator::{dlq_topic, events_topic, Translator};

impl<S: Service> Node<S> {
    /// Opens the store, checks the topics, and starts every part. Must be called inside a tokio
    /// runtime (registry calls and replies are async).
    pub async fn start(
        config: NodeConfig,
        service: S,
        catalog: Catalog,
        translators: Vec<Box<dyn Translator<S::Command>>>,
    ) -> Result<Self, RuntimeError> {
        let runtime = tokio::runtime::Handle::current();
        let store = if let Some(engine) = &config.engine {
            Store::with_engine(Arc::clone(&engine.0))?
        } else {
            let dir = config.store_dir.clone();
            let kind = config.store_engine;
            tokio::task::spawn_blocking(move || match kind {
                Some(kind) => crate::store::open_as(&dir, kind),
                None => crate::store::open(&dir),
            })
            .await
            .map_err(|_| RuntimeError::Panicked("store-open".into()))?
            .map_err(|e| match e {
                crate::store::StoreError::OtherEngine { .. } => RuntimeError::Store(e.to_string()),
                e => RuntimeError::Store(format!(
                    "{e}; is another instance of this service using the same store directory?"
                )),
            })?
        };
        let registry = Arc::new(Registry::new(&config.registry).map_err(|e| RuntimeError::Config(e.to_string()))?);
        let catalog = Arc::new(catalog);
        let metrics = Metrics::new(&config.service);
        let consumes = !translators.is_empty();
        if let Some(sources) = &config.sources {
            let missing: Vec<&String> = sources
                .iter()
                .filter(|s| !translators.iter().any(|t| t.source() == s.as_str()))
                .collect();
            if !missing.is_empty() {
                let has: Vec<String> = translators
                    .iter()
                    .map(|t| format!("{}-to-{}", t.source(), config.service))
                    .collect();
                return Err(RuntimeError::Config(format!(
                    "{} is to read {} (translator {}), but this binary has no such translator (it has {has:?}); \
                     deploy a build that has it, or remove the subscription from the topology",
                    config.service,
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    missing
                        .iter()
                        .map(|s| format!("{s}-to-{}", config.service))
                        .collect::<Vec<_>>()
                        .join(", "),
                )));
            }
        }
        let (translators, spares): (Vec<_>, Vec<_>) = translators
            .into_iter()
            .partition(|t| config.sources.as_ref().is_none_or(|s| s.contains(t.source())));
        let pipeline = if consumes {
            Some(Arc::new(pipeline::Pipeline::new(
                translators,
                Arc::clone(&registry),
                runtime.clone(),
            )?))
        } else {
            None
        };
        // A bootstrap interrupted by a crash resumes from the snapshot it was loading; one that
        // never started takes the spooled (or given) snapshot. Snapshots given as URLs are
        // downloaded and spooled first, so a crash during their load resumes from that copy.
        spool::sweep(&config.store_dir);
        let _ = std::fs::remove_dir_all(config.store_dir.join(SNAPSHOTS_DIR));
        let stored = store.positions()?;
        let mut bootstraps: BTreeMap<String, PathBuf> = BTreeMap::new();
        for topic in pipeline.as_ref().map(|p| p.topics()).unwrap_or_default() {
            let source = topic.trim_end_matches(".events").to_string();
            let marker = store.bootstrap_marker(&topic)?;
            let reads = stored.iter().any(|(t, _, _)| t == topic);
            let chosen = match spool::resume(&config.store_dir, &source, marker, reads, config.bootstrap.get(&source)) {
                spool::Resume::Nothing => None,
                spool::Resume::Load(path) => Some(path),
                spool::Resume::Download { url, seq } => {
                    let arrival = spool::download(&config.store_dir, &source, &url).await?;
                    spool::downloaded_fits(&source, &url, seq, &arrival)?;
                    Some(arrival.claim(&config.store_dir)?)
                }
                spool::Resume::Lost(why) => return Err(RuntimeError::Config(why)),
            };
            if let Some(path) = chosen {
                bootstraps.insert(source, path);
            }
        }
        for source in config.bootstrap.keys() {
            if !pipeline
                .as_ref()
                .is_some_and(|p| p.topics().contains(&events_topic(source)))
            {
                return Err(RuntimeError::Config(format!(
                    "a snapshot is given for {source}, but {} has no translator for it",
                    config.service
                )));
            }
        }
        let mut needed = Vec::new();
        if catalog.records().next().is_some() {
            needed.push(events_topic(&config.service));
        }
        // Sources about to be bootstrapped are checked against the snapshot's map instead.
        let sources: Vec<String> = pipeline
            .as_ref()
            .map(|p| p.topics())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| {
                let reads = stored.iter().any(|(topic, _, _)| topic == t);
                reads || !bootstraps.keys().any(|s| events_topic(s) == *t)
            })
            .collect();
        if pipeline.is_some() {
            needed.push(dlq_topic(&config.service));
        }
        let gone = {
            let client = config.client();
            let positions = store.positions()?;
            let sources = sources.clone();
            tokio::task::spawn_blocking(move || -> Result<Vec<RetentionError>, RuntimeError> {
                let probe: BaseConsumer = client
                    .create()
                    .map_err(|e| RuntimeError::kafka("connecting".into(), e))?;
                retention::partitions_of(&probe, &needed)?;
                retention::set_aside(&sources, |topic| {
                    let partitions = retention::partitions_of(&probe, &[topic.to_string()])?;
                    retention::check(&probe, &partitions, &positions)
                })
            })
            .await
            .map_err(|_| RuntimeError::Panicked("topic-check".into()))??
        };

        let cancel = CancellationToken::new();
        let (failed_tx, failure) = watch::channel(None);
        let failed = Arc::new(failed_tx);
        // What the store holds may be in the page cache only (a process crash keeps it, a power
        // loss may not): flush before calling any of it durable.
        {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.flush())
                .await
                .map_err(|_| RuntimeError::Panicked("store-flush".into()))??;
        }
        let journal_schemas = {
            let (store, catalog, registry) = (store.clone(), Arc::clone(&catalog), Arc::clone(&registry));
            let topic = events_topic(&config.service);
            tokio::task::spawn_blocking(move || journal_schemas::JournalSchemas::new(&topic, store, &catalog, registry))
                .await
                .map_err(|_| RuntimeError::Panicked("journal-schemas".into()))??
        };
        let journal_schemas = Arc::new(journal_schemas);
        let durable = Arc::new(Progress::new(store.last_seq()?));
        let outbox = Arc::new(Progress::new(0));
        let recent = Arc::new(super::recent::Recent::default());
        let (writer_tx, writer_rx) = mpsc::channel(1024);
        let name = config.service.clone();

        let service = Arc::new(service);
        let w = writer::Writer {
            journals: Default::default(),
            name: name.clone(),
            service: Arc::clone(&service),
            store: store.clone(),
            catalog: Arc::clone(&catalog),
            metrics: metrics.clone(),
            durable: Arc::clone(&durable),
            outbox: Arc::clone(&outbox),
            recent: Some(Arc::clone(&recent)),
        };
        let core = vec![spawn("writer", &name, &failed, &cancel, move || w.run(writer_rx))?];

        let mut downstream = Vec::new();
        // Zero until the publisher has recovered the topic's tail: the topic, not the store's
        // bookkeeping, says what is out.
        let (published_tx, published) = watch::channel(0);
        let published_tx = Arc::new(published_tx);
        if catalog.records().next().is_some() {
            let p = publisher::Publisher {
                service: name.clone(),
                client: config.client(),
                store: store.clone(),
                catalog: Arc::clone(&catalog),
                registry: Arc::clone(&registry),
                schemas: Arc::clone(&journal_schemas),
                durable: Arc::clone(&durable),
                recent,
                published: Arc::clone(&published_tx),
                metrics: metrics.clone(),
                cancel: cancel.clone(),
                runtime: runtime.clone(),
                drain: config.drain,
            };
            downstream.push(spawn("publisher", &name, &failed, &cancel, move || p.run())?);
        }
        let mut upstream = Vec::new();
        let pipeline_handle = pipeline.clone();
        let readable: Vec<String> = pipeline
            .as_ref()
            .map(|p| p.topics())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !gone.iter().any(|e| e.topic() == t))
            .collect();
        let (topics_tx, topics_rx) = watch::channel(readable);
        let topics_tx = Arc::new(topics_tx);
        let rebuilds = Arc::new(rebuild::Rebuilds::new(
            &name,
            service.replicas(),
            Arc::clone(&topics_tx),
            metrics.clone(),
        ));
        for e in gone {
            rebuilds.mark(e);
        }
        let mut bootstrapped = BTreeMap::new();
        let mut refused = BTreeMap::new();
        if let Some(p) = &pipeline {
            for (source, from) in &bootstraps {
                let done = bootstrap::run(
                    &name,
                    source,
                    from,
                    &store,
                    &registry,
                    p,
                    &writer_tx,
                    &config.client(),
                    &cancel,
                    &|_, _, _| {},
                )
                .await;
                match done {
                    Ok(meta) => {
                        spool::unspool(&config.store_dir, source, None);
                        if let Some(meta) = meta {
                            bootstrapped.insert(source.clone(), meta);
                        }
                    }
                    // A registration's snapshot that can never load fails that registration,
                    // not the start: the node runs without the source until it is registered
                    // again. One the operator gave stops the start with the reason.
                    Err(e)
                        if !config.bootstrap.contains_key(source)
                            && bootstrap::give_up(&config.store_dir, &store, source, &e) =>
                    {
                        let topic = events_topic(source);
                        tracing::error!(service = %name, %topic, error = %e, "the registration's snapshot cannot be loaded; running without the source until it is registered again");
                        topics_tx.send_modify(|t| t.retain(|read| *read != topic));
                        refused.insert(source.clone(), super::Registration::Failed { error: e.to_string() });
                    }
                    Err(e) => {
                        bootstrap::give_up(&config.store_dir, &store, source, &e);
                        cancel.cancel();
                        return Err(e);
                    }
                }
            }
        }
        if let Some(pipeline) = pipeline {
            let shipper = dlq::Shipper {
                service: name.clone(),
                client: config.client(),
                store: store.clone(),
                outbox: Arc::clone(&outbox),
                metrics: metrics.clone(),
                cancel: cancel.clone(),
                runtime: runtime.clone(),
                drain: config.drain,
            };
            downstream.push(spawn("dlq-shipper", &name, &failed, &cancel, move || shipper.run())?);
            let control = dlq::Control {
                service: name.clone(),
                client: config.client(),
                store: store.clone(),
                redriver: redrive::Redriver {
                    store: store.clone(),
                    pipeline: Arc::clone(&pipeline),
                    writer: writer_tx.clone(),
                    cancel: cancel.clone(),
                },
                cancel: cancel.clone(),
            };
            upstream.push(spawn("dlq-control", &name, &failed, &cancel, move || control.run())?);
            let consumer = consumer::ConsumerLoop {
                topics: topics_rx,
                service: name.clone(),
                group_id: config.group_id.clone().unwrap_or_else(|| name.clone()),
                instance_id: config.instance_id.clone().unwrap_or_else(|| name.clone()),
                client: config.client(),
                store: store.clone(),
                pipeline,
                writer: writer_tx.clone(),
                metrics: metrics.clone(),
                cancel: cancel.clone(),
                max_batch: config.max_batch.max(1),
                rebuilds: Arc::clone(&rebuilds),
            };
            upstream.push(spawn("consumer", &name, &failed, &cancel, move || consumer.run())?);
        }
        if let Some(pipeline) = pipeline_handle.clone() {
            // A type a producer publishes that no translator decision covers is worth a warning
            // now, before its events are skipped (and counted) one by one. In the background: a
            // registry outage must not hold the start.
            let name = name.clone();
            tokio::spawn(async move {
                match pipeline.undeclared().await {
                    Ok(undeclared) => {
                        for (topic, records) in undeclared {
                            warn!(service = %name, %topic, ?records, "the translator neither reads nor ignores these record types its source publishes: their events will be skipped and counted as unhandled (seam status shows them); declare each in the translator's reader_schemas or ignores");
                        }
                    }
                    Err(e) => {
                        warn!(service = %name, error = %e, "could not list the sources' record types in the registry")
                    }
                }
            });
        }
        info!(service = %name, "service started");
        Ok(Self {
            bootstrapped: Arc::new(Mutex::new(bootstrapped)),
            store_dir: config.store_dir.clone(),
            store_engine: crate::store::StoreEngine::found_in(&config.store_dir).unwrap_or_default(),
            service,
            spares: Mutex::new(spares),
            topics: topics_tx,
            rebuilds,
            registrations: Arc::new(Mutex::new(refused)),
            replay: Arc::default(),
            client: config.client(),
            name,
            pipeline: pipeline_handle,
            catalog,
            registry,
            journal_schemas,
            store,
            durable,
            published,
            metrics,
            writer: Some(writer_tx),
            cancel,
            failure,
            upstream,
            core,
            downstream,
            drain: config.drain,
        })
    }
}
