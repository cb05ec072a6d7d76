//! `seam reconcile`: audits every flow of a topology (seed 001's check/sync job). Each side of
//! a flow digests its shared rows per bucket of subjects over HTTP (`GET /shared/<from>/<to>?
//! buckets=N`); only buckets whose digests differ are opened (`&bucket=K`, a digest per
//! subject), so two large stores are compared by exchanging a few kilobytes. A subject found
//! drifted is looked at again before it is reported, so an event on its way is not called drift.
//! `--repair` ([`repair`]) rebuilds exactly those subjects by a targeted replay in the consumer.

pub mod metrics;
pub mod repair;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use serde::Serialize;

use seam::http::shared::{Buckets, Subjects};
use seam::topology::Topology;

/// How a subject differs between the two sides of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The source has rows about it; the replica has none.
    Missing,
    /// The replica has rows about it; the source has none.
    Extra,
    /// Both have rows about it, and they differ.
    Differs,
}

/// One drifted subject.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Drift {
    /// The subject (the Kafka key of the source's events about it).
    pub subject: String,
    /// How it differs.
    pub kind: Kind,
    /// The consumer holds an unsettled dead letter about it (`<error>: <reason>`): the drift is
    /// that letter's, which a redrive settles, not a replay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
}

/// Where a flow stands after an audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Both sides hold the same rows.
    InSync,
    /// Some subjects differ (listed in [`FlowReport::drift`]).
    Drifted,
    /// Not compared, and why.
    NotCompared(String),
}

/// One flow's audit.
#[derive(Debug, Clone, Serialize)]
pub struct FlowReport {
    /// `<source>-><consumer>`.
    pub flow: String,
    /// The source service.
    pub source: String,
    /// The consuming service.
    pub consumer: String,
    /// The outcome.
    pub state: State,
    /// Rows the source holds for this flow.
    pub source_rows: usize,
    /// Rows the replica holds.
    pub replica_rows: usize,
    /// Buckets whose digests differed on the first look.
    pub buckets_differing: usize,
    /// The drifted subjects.
    pub drift: Vec<Drift>,
}

/// How to audit.
#[derive(Debug, Clone)]
pub struct Options {
    /// Buckets per flow.
    pub buckets: u32,
    /// How long to wait for a lagging consumer to catch up before giving up on its flow.
    pub settle: Duration,
    /// Base URLs of services (name → URL).
    pub urls: BTreeMap<String, String>,
    /// Only these flows (`<source>-><consumer>`); empty: all.
    pub flows: BTreeSet<String>,
}

/// The flows of `topology` an audit compares: (source, consumer).
pub fn flows(topology: &Topology, only: &BTreeSet<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for consumer in &topology.consumers {
        for source in &consumer.sources {
            let flow = format!("{}->{}", source.service, consumer.service);
            if only.is_empty() || only.contains(&flow) {
                out.push((source.service.clone(), consumer.service.clone()));
            }
        }
    }
    out
}

/// Audits every flow `options` selects; the cluster is asked whether each consumer has caught
/// up with its source before the flow is compared.
pub async fn audit(topology: &Topology, client: &ClientConfig, options: &Options) -> anyhow::Result<Vec<FlowReport>> {
    let http = crate::commands::reach::http(Some(Duration::from_secs(30)));
    let mut out = Vec::new();
    for (source, consumer) in flows(topology, &options.flows) {
        let flow = format!("{source}->{consumer}");
        let mut report = FlowReport {
            flow: flow.clone(),
            source: source.clone(),
            consumer: consumer.clone(),
            state: State::InSync,
            source_rows: 0,
            replica_rows: 0,
            buckets_differing: 0,
            drift: Vec::new(),
        };
        let (Some(a), Some(b)) = (options.urls.get(&source), options.urls.get(&consumer)) else {
            let missing: Vec<&str> = [&source, &consumer]
                .into_iter()
                .filter(|s| !options.urls.contains_key(*s))
                .map(String::as_str)
                .collect();
            report.state = State::NotCompared(format!(
                "{} not running here (no announced address; pass --url NAME=URL)",
                missing.join(" and ")
            ));
            out.push(report);
            continue;
        };
        if let Err(why) = caught_up(client, &consumer, &source, b, options.settle).await {
            report.state = State::NotCompared(why);
            out.push(report);
            continue;
        }
        match compare(&http, &flow, a, b, options.buckets).await {
            Ok(c) => {
                report.source_rows = c.source_rows;
                report.replica_rows = c.replica_rows;
                report.buckets_differing = c.buckets_differing;
                report.drift = c.drift;
                if !report.drift.is_empty() {
                    report.state = State::Drifted;
                    mark_dead_letters(client, &consumer, &source, &mut report.drift).await;
                }
            }
            Err(e) => report.state = State::NotCompared(format!("{e:#}")),
        }
        out.push(report);
    }
    Ok(out)
}

/// Waits until `consumer` has applied everything on `source`'s topic (as `seam status` counts
/// it) and parks nothing from it, for up to `settle`; why not, when it does not.
async fn caught_up(
    client: &ClientConfig,
    consumer: &str,
    source: &str,
    url: &str,
    settle: Duration,
) -> Result<(), String> {
    let until = tokio::time::Instant::now() + settle;
    loop {
        let report = crate::status::self_report(url).await.map_err(|e| format!("{e:#}"));
        let (client, who, sources) = (client.clone(), consumer.to_string(), vec![source.to_string()]);
        let status =
            tokio::task::spawn_blocking(move || crate::status::consumer_status(&client, &who, &sources, report))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("reading {consumer}'s position: {e:#}"))?;
        let why = match status.sources.first() {
            None => Some(format!("{consumer} does not read {source}")),
            Some(s) if s.needs_rebuild.is_some() => Some(format!(
                "{consumer} must rebuild {source} first: {}",
                s.needs_rebuild.clone().unwrap_or_default()
            )),
            Some(s) => {
                let lag: i64 = s.partitions.iter().map(|p| p.lag_events).sum();
                (lag > 0).then(|| format!("{consumer} is {lag} event(s) behind {source}"))
            }
        };
        match why {
            None => return Ok(()),
            Some(why) if tokio::time::Instant::now() >= until => {
                return Err(format!("{why} after waiting {}", humantime::format_duration(settle)))
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Notes on each drifted subject the consumer's unsettled dead letter about it, if any.
async fn mark_dead_letters(client: &ClientConfig, consumer: &str, source: &str, drift: &mut [Drift]) {
    let (client, who) = (client.clone(), consumer.to_string());
    let Ok(Ok(letters)) = tokio::task::spawn_blocking(move || crate::dlq_admin::list(&client, Some(&who))).await else {
        return;
    };
    let topic = seam::translator::events_topic(source);
    for d in drift {
        d.dead_letter = letters
            .iter()
            .filter(|l| l.topic == topic && l.subject.as_deref() == Some(d.subject.as_str()))
            .find(|l| matches!(l.status.as_str(), "pending" | "redrive-failed"))
            .map(|l| format!("{}: {}", l.error, l.reason));
    }
}

/// The comparison of one flow.
#[derive(Debug, Default)]
pub struct Compared {
    /// Rows on the source side.
    pub source_rows: usize,
    /// Rows on the replica side.
    pub replica_rows: usize,
    /// Buckets that differed on the first look.
    pub buckets_differing: usize,
    /// Subjects that differed on both looks.
    pub drift: Vec<Drift>,
}

/// Compares one flow between the source at `a` and the consumer at `b`: bucket digests, then
/// the subjects of differing buckets, then those subjects again.
pub async fn compare(http: &reqwest::Client, flow: &str, a: &str, b: &str, buckets: u32) -> anyhow::Result<Compared> {
    let (from, to) = flow.split_once("->").context("a flow is <source>-><consumer>")?;
    let path = format!("shared/{from}/{to}?buckets={buckets}");
    let (sa, sb): (Buckets, Buckets) = (get(http, a, &path).await?, get(http, b, &path).await?);
    anyhow::ensure!(
        sa.digests.len() == buckets as usize && sb.digests.len() == buckets as usize,
        "a side answered {} and {} bucket digests for {buckets} buckets",
        sa.digests.len(),
        sb.digests.len()
    );
    let differing: Vec<u32> = (0..buckets)
        .filter(|i| sa.digests[*i as usize] != sb.digests[*i as usize])
        .collect();
    let mut out = Compared {
        source_rows: sa.rows,
        replica_rows: sb.rows,
        buckets_differing: differing.len(),
        drift: Vec::new(),
    };
    let mut first = Vec::new();
    for bucket in &differing {
        first.extend(subjects(http, flow, a, b, buckets, *bucket).await?);
    }
    if first.is_empty() {
        return Ok(out);
    }
    // A second look at the same buckets a moment later: what still differs is drift, what
    // changed meanwhile was an event on its way.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again: BTreeSet<u32> = first
        .iter()
        .map(|d| seam::http::shared::bucket_of(&d.subject, buckets))
        .collect();
    let mut second = BTreeSet::new();
    for bucket in again {
        second.extend(subjects(http, flow, a, b, buckets, bucket).await?);
    }
    out.drift = first.into_iter().filter(|d| second.contains(d)).collect();
    out.drift.sort();
    Ok(out)
}

/// The subjects of one bucket whose rows differ between the sides.
async fn subjects(
    http: &reqwest::Client,
    flow: &str,
    a: &str,
    b: &str,
    buckets: u32,
    bucket: u32,
) -> anyhow::Result<Vec<Drift>> {
    let (from, to) = flow.split_once("->").context("a flow is <source>-><consumer>")?;
    let path = format!("shared/{from}/{to}?buckets={buckets}&bucket={bucket}");
    let (sa, sb): (Subjects, Subjects) = (get(http, a, &path).await?, get(http, b, &path).await?);
    Ok(diff(&sa.subjects, &sb.subjects))
}

/// The subjects whose digests differ between a source's and a replica's listing.
pub fn diff(source: &BTreeMap<String, String>, replica: &BTreeMap<String, String>) -> Vec<Drift> {
    let names: BTreeSet<&String> = source.keys().chain(replica.keys()).collect();
    names
        .into_iter()
        .filter_map(|s| {
            let kind = match (source.get(s), replica.get(s)) {
                (Some(x), Some(y)) if x == y => return None,
                (Some(_), Some(_)) => Kind::Differs,
                (Some(_), None) => Kind::Missing,
                (None, _) => Kind::Extra,
            };
            Some(Drift {
                subject: s.clone(),
                kind,
                dead_letter: None,
            })
        })
        .collect()
}

async fn get<T: serde::de::DeserializeOwned>(http: &reqwest::Client, base: &str, path: &str) -> anyhow::Result<T> {
    let url = format!("{base}/{path}");
    let answer = http.get(&url).send().await.with_context(|| format!("GET {url}"))?;
    let status = answer.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        anyhow::bail!("{base} serves no shared data for this flow (GET {url} answered 404): the service does not implement GET /shared for it");
    }
    let body = answer.text().await.with_context(|| format!("GET {url}"))?;
    anyhow::ensure!(status.is_success(), "GET {url} answered {status}: {body}");
    serde_json::from_str(&body).with_context(|| format!("GET {url}: not the digests expected: {body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_names_missing_extra_and_differing_subjects() {
        let map = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let source = map(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let replica = map(&[("a", "1"), ("b", "9"), ("d", "4")]);
        let kinds: Vec<(String, Kind)> = diff(&source, &replica)
            .into_iter()
            .map(|d| (d.subject, d.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("b".to_string(), Kind::Differs),
                ("c".to_string(), Kind::Missing),
                ("d".to_string(), Kind::Extra)
            ]
        );
        assert!(diff(&source, &source).is_empty());
    }
}
