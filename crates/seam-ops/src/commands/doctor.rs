//! `seam doctor`: proves the cluster and the registry work, the way seam will use them.
//!
//! A user who just ran `seam local up`, or who points seam at their own cluster, wants
//! to know in seconds whether it is usable: every broker in the metadata, an `acks=all`
//! write read back with its key and headers, the registry answering with a compatibility
//! rule. Each check prints what it found; the first failure says what to look at.

use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Args;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use seam_local::cluster::Endpoints;

/// Options of `seam doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// How long each check may take, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// Runs every check in order and stops at the first failure.
pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let endpoints = Endpoints::discover()?;
    let timeout = Duration::from_secs(args.timeout);
    println!("cluster:  {} ({})", endpoints.bootstrap_servers(), endpoints.origin);
    let brokers = check_metadata(&endpoints, timeout).await?;
    println!("ok  metadata: {} broker(s) registered: {brokers:?}", brokers.len());
    let rf = brokers.len().min(3) as i32;
    let took = check_round_trip(&endpoints, rf, timeout).await?;
    println!("ok  produce (acks=all, replication factor {rf}) and consume back with key and headers in {took:?}");
    let registry = endpoints.registry()?;
    let (level, subjects) = check_registry(registry, timeout).await?;
    println!("ok  registry {registry}: compatibility {level}, {subjects} subject(s)");
    Ok(ExitCode::SUCCESS)
}

async fn check_metadata(endpoints: &Endpoints, timeout: Duration) -> anyhow::Result<Vec<i32>> {
    let servers = endpoints.bootstrap_servers();
    let config = endpoints.client();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create()?;
        let md = consumer
            .fetch_metadata(None, timeout)
            .with_context(|| format!("no metadata from {servers}: is the cluster running (`seam local status`)?"))?;
        Ok(md.brokers().iter().map(|b| b.id()).collect())
    })
    .await?
}

async fn check_round_trip(endpoints: &Endpoints, rf: i32, timeout: Duration) -> anyhow::Result<Duration> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let topic = format!("seam-doctor-{}-{nanos}", std::process::id());
    let config = endpoints.client();
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    let created = admin
        .create_topics(&[NewTopic::new(&topic, 1, TopicReplication::Fixed(rf))], &opts)
        .await?;
    for result in created {
        result.map_err(|(t, e)| anyhow::anyhow!("cannot create topic {t}: {e}"))?;
    }
    let outcome = produce_and_read_back(&config, &topic, timeout).await;
    // Clean up whatever the outcome; a failed delete only leaves a small topic behind.
    if let Err(e) = admin.delete_topics(&[&topic], &opts).await {
        eprintln!("warning: could not delete the doctor's topic {topic}: {e}");
    }
    outcome
}

async fn produce_and_read_back(config: &ClientConfig, topic: &str, timeout: Duration) -> anyhow::Result<Duration> {
    let began = Instant::now();
    let producer: FutureProducer = config
        .clone()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", timeout.as_millis().to_string())
        .create()?;
    let headers = OwnedHeaders::new().insert(Header {
        key: "seam-doctor",
        value: Some("1"),
    });
    let (partition, offset) = producer
        .send(
            FutureRecord::to(topic).key("doctor").payload("ping").headers(headers),
            timeout,
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("acks=all write to {topic} failed: {e}"))
        .map(|d| (d.partition, d.offset))?;
    let topic = topic.to_string();
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config
            .clone()
            .set("group.id", format!("{topic}-reader"))
            .set("enable.auto.commit", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
        consumer.assign(&tpl)?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let msg = msg?;
            let header = msg.headers().and_then(|h| h.iter().find(|h| h.key == "seam-doctor"));
            if msg.key() != Some(b"doctor".as_slice())
                || msg.payload() != Some(b"ping".as_slice())
                || header.and_then(|h| h.value) != Some(b"1".as_slice())
            {
                bail!("read back a different record than was written at {topic}/{partition}@{offset}");
            }
            return Ok(began.elapsed());
        }
        bail!("the record written at {topic}/{partition}@{offset} was not readable within {timeout:?}")
    })
    .await?
}

async fn check_registry(registry: &str, timeout: Duration) -> anyhow::Result<(String, usize)> {
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let config: serde_json::Value = client
        .get(format!("{registry}/config"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("the registry at {registry} does not answer GET /config"))?
        .json()
        .await?;
    let level = config
        .get("compatibilityLevel")
        .and_then(|v| v.as_str())
        .unwrap_or("unknown")
        .to_string();
    let subjects: Vec<String> = client
        .get(format!("{registry}/subjects"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("the registry at {registry} does not answer GET /subjects"))?
        .json()
        .await?;
    Ok((level, subjects.len()))
}
