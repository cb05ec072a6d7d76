//! `seam bench cdc`: a `postgres-cdc` source catching up on row changes that PostgreSQL holds in
//! its slot, against the least such a pipeline does: read the same WAL through a slot of its own
//! with the same replication client, and produce each row change's `pgoutput` bytes as a raw
//! record (idempotent producer, acks=all), confirming the LSN once every record is delivered.
//!
//! Each round writes the same batch of committed transactions while both readers are stopped,
//! then starts each (order alternating) and times it from start until every row change of the
//! batch is on its topic. seam's side is `seam cdc run` in this process: decoding, the mirror
//! and the journal write per transaction, Avro, the transactional publisher.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use pgwire_replication::{ReplicationClient, ReplicationConfig, ReplicationEvent, TlsConfig};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::cpu::Meter;
use super::report::{Outcome, Run, Side};
use super::translator::{create_topics, scratch};
use seam::topology::{PostgresSpec, ServiceSpec, TableSpec, POSTGRES_CDC};
use seam::translator::events_topic;
use seam_local::cluster::Postgres;

/// The target: seam at least half the raw pipeline's rate (it also journals every transaction
/// durably, encodes Avro and publishes in Kafka transactions).
const TARGET: f64 = 0.50;
/// Rows each transaction of the workload inserts.
const ROWS_PER_TRANSACTION: u64 = 10;

/// Runs the benchmark.
pub async fn run(endpoints: &super::Setup, quick: bool, rounds: usize) -> anyhow::Result<Outcome> {
    let server = Postgres::discover().map_err(|e| anyhow::anyhow!("seam bench cdc needs PostgreSQL: {e}"))?;
    let tag = super::run_tag("cdc");
    let client = endpoints.client();
    let rf = super::replication(&client).await?;
    let changes: u64 = if quick { 20_000 } else { 200_000 };
    let partitions = 3;
    let database = tag.replace('-', "_");
    seam_local::postgres::ensure_database(&server.database("postgres"), &database)
        .await
        .map_err(|e| anyhow::anyhow!("creating the benchmark's database: {e}"))?;
    let url = server.database(&database);
    let db = connect(&url).await?;
    let raw_slot = format!("{database}_raw");
    // One statement each: a slot cannot be created in a transaction that wrote.
    for statement in [
        "CREATE TABLE rows (id bigint PRIMARY KEY, payload text NOT NULL, n int NOT NULL)".to_string(),
        format!("CREATE PUBLICATION {raw_slot} FOR TABLE rows"),
        format!("SELECT pg_create_logical_replication_slot('{raw_slot}', 'pgoutput')"),
    ] {
        db.batch_execute(&statement).await?;
    }
    let service = format!("{tag}-src");
    let raw_topic = format!("{tag}-raw");
    create_topics(
        &client,
        &[(events_topic(&service), partitions), (raw_topic.clone(), partitions)],
        rf,
    )
    .await?;
    let spec = ServiceSpec {
        name: service.clone(),
        partitions,
        replication: None,
        min_insync_replicas: None,
        retention: None,
        cleanup_policy: None,
        schemas: Default::default(),
        compatibility: None,
        principal: None,
        kind: Some(POSTGRES_CDC.into()),
        postgres: Some(PostgresSpec {
            database: url.clone(),
            schema: None,
            tables: vec![TableSpec {
                name: "rows".into(),
                key: None,
            }],
        }),
        topic: None,
    };
    let store = scratch(&service);
    // The source's first start: its slot, publication and the (empty) copy.
    seam_catch_up(endpoints, &spec, &store, 0).await?;

    let (mut baseline, mut subject) = (Vec::new(), Vec::new());
    for round in 0..rounds as u64 {
        write_batch(&db, round * changes, changes).await?;
        let raw = || raw_catch_up(&url, &raw_slot, &client, &raw_topic, changes);
        if round % 2 == 0 {
            baseline.push(raw().await?);
            subject.push(seam_catch_up(endpoints, &spec, &store, changes).await?);
        } else {
            subject.push(seam_catch_up(endpoints, &spec, &store, changes).await?);
            baseline.push(raw().await?);
        }
    }
    let _ = db
        .batch_execute(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name IN ('{raw_slot}', 'seam_{}')",
            service.replace('-', "_")
        ))
        .await;
    drop(db);
    let _ = connect(&server.database("postgres"))
        .await?
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database}"))
        .await;
    let _ = std::fs::remove_dir_all(&store);
    if let Ok(home) = seam_local::Home::from_env() {
        let _ = std::fs::remove_file(home.service_file(&service));
    }
    super::delete_topics(&client, &[events_topic(&service), raw_topic]).await;

    let baseline = Side::throughput(
        "pgoutput slot → raw record per row change (idempotent producer)",
        &baseline,
    );
    let subject = Side::throughput("seam cdc run: decode, journal, Avro, transactional publish", &subject);
    let ratio = subject.figure.median / baseline.figure.median.max(f64::MIN_POSITIVE);
    Ok(Outcome {
        name: "cdc".into(),
        ratio,
        target: format!(">= {TARGET:.2}"),
        met: ratio >= TARGET,
        baseline,
        subject,
        settings: [
            ("row_changes_per_round".to_string(), json!(changes)),
            ("rows_per_transaction".to_string(), json!(ROWS_PER_TRANSACTION)),
            ("row".to_string(), json!("INSERT of (bigint, 200-character text, int)")),
            ("partitions".to_string(), json!(partitions)),
            ("replication".to_string(), json!(rf)),
            ("rounds".to_string(), json!(rounds)),
            (
                "how".to_string(),
                json!("each round commits its transactions with both readers stopped, then times each reader's catch-up from start to the last row change on its topic"),
            ),
            (
                "seam".to_string(),
                json!("in this process, one command per transaction, up to 64 in flight; LSN confirmed after the durable store write"),
            ),
            (
                "baseline".to_string(),
                json!("pgwire-replication on its own slot, FutureProducer acks=all idempotent; LSN confirmed after every delivery"),
            ),
            ("postgresql".to_string(), json!(seam_local::POSTGRES_VERSION)),
        ]
        .into_iter()
        .collect(),
        cases: Vec::new(),
    })
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Commits `count` row inserts, ten per transaction, from id `first`.
async fn write_batch(db: &tokio_postgres::Client, first: u64, count: u64) -> anyhow::Result<()> {
    db.batch_execute(&format!(
        "DO $$ BEGIN
           FOR t IN 0..{last} LOOP
             INSERT INTO rows SELECT i, repeat(md5(i::text), 7) || 'abcdefgh', 0
               FROM generate_series({first} + t * {per} + 1, {first} + (t + 1) * {per}) i;
             COMMIT;
           END LOOP;
         END $$",
        last = count / ROWS_PER_TRANSACTION - 1,
        per = ROWS_PER_TRANSACTION,
    ))
    .await?;
    Ok(())
}

/// Starts the CDC source and runs it until `changes` events were published, then stops it.
async fn seam_catch_up(
    endpoints: &super::Setup,
    spec: &ServiceSpec,
    store: &std::path::Path,
    changes: u64,
) -> anyhow::Result<Run> {
    let meter = Meter::start();
    let began = Instant::now();
    let stop = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    let options = seam_postgres::cdc::CdcOptions {
        spec: spec.clone(),
        store_dir: store.to_path_buf(),
        store_engine: Some(endpoints.engine),
        bind: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
        resync: false,
        extra: None,
    };
    let running = tokio::spawn(seam_postgres::cdc::run(options, stop.clone(), move |url| {
        let _ = tx.send(url.to_string());
    }));
    let url = rx
        .await
        .map_err(|_| anyhow::anyhow!("the CDC source stopped before it was ready"))?;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let published = published(&http, &url).await.unwrap_or(0);
        if published >= changes {
            break;
        }
        if running.is_finished() {
            running.await??;
            anyhow::bail!("the CDC source stopped after {published} of {changes} events");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the CDC source did not catch up within 900 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = began.elapsed().as_secs_f64();
    let cpu = meter.stop();
    stop.cancel();
    running.await??;
    Ok(Run {
        events: changes,
        seconds,
        cpu,
    })
}

/// `seam_events_published_total` of the node behind `url`.
async fn published(http: &reqwest::Client, url: &str) -> anyhow::Result<u64> {
    let text = http.get(format!("{url}/metrics")).send().await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("seam_events_published_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// The baseline: the slot's row changes as raw records, LSN confirmed after delivery.
async fn raw_catch_up(url: &str, slot: &str, client: &ClientConfig, topic: &str, changes: u64) -> anyhow::Result<Run> {
    let meter = Meter::start();
    let began = Instant::now();
    let config: tokio_postgres::Config = url.parse()?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => anyhow::bail!("the PostgreSQL URL names no TCP host"),
    };
    let cfg = ReplicationConfig::new(
        host,
        config.get_user().unwrap_or("postgres"),
        config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default(),
        config.get_dbname().unwrap_or("postgres"),
        slot,
        slot,
    )
    .with_port(config.get_ports().first().copied().unwrap_or(5432))
    .with_tls(TlsConfig::disabled())
    .with_status_interval(Duration::from_millis(100));
    let producer: FutureProducer = client
        .clone()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?;
    let mut repl = ReplicationClient::connect(cfg).await?;
    let mut pending = VecDeque::new();
    let mut produced = 0u64;
    let last_end = loop {
        match repl.recv().await? {
            Some(ReplicationEvent::XLogData { data, .. }) if matches!(data.first(), Some(b'I' | b'U' | b'D')) => {
                let record: FutureRecord<'_, (), [u8]> = FutureRecord::to(topic).payload(&data[..]);
                let delivery = producer.send_result(record).map_err(|(e, _)| e)?;
                pending.push_back(delivery);
                produced += 1;
            }
            Some(ReplicationEvent::Commit { end_lsn, .. }) if produced >= changes => break end_lsn.as_u64(),
            Some(_) => {}
            None => anyhow::bail!("the replication stream ended after {produced} of {changes} row changes"),
        }
        while pending.len() > 10_000 {
            if let Some(d) = pending.pop_front() {
                d.await?.map_err(|(e, _)| e)?;
            }
        }
    };
    for d in pending {
        d.await?.map_err(|(e, _)| e)?;
    }
    let seconds = began.elapsed().as_secs_f64();
    let cpu = meter.stop();
    seam_postgres::cdc::close_confirmed(&mut repl, last_end).await;
    Ok(Run {
        events: produced,
        seconds,
        cpu,
    })
}
