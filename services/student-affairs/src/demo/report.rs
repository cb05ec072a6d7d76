//! The sync report: per service its counts and consumer lag, per flow the digest of the shared
//! data on the source and on the replica side.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::ProgressBar;
use seam::http::Shared;
use seam::topology::Topology;
use serde::Serialize;
use serde_json::Value;

use super::processes::Services;
use super::scenario::Stats;

/// One flow.
#[derive(Debug, Clone, Serialize)]
pub struct FlowReport {
    /// Source service.
    pub from: String,
    /// Consuming service.
    pub to: String,
    /// Rows on the source side.
    pub source_rows: usize,
    /// Rows on the replica side.
    pub replica_rows: usize,
    /// Digest on the source side.
    pub source_digest: String,
    /// Digest on the replica side.
    pub replica_digest: String,
    /// Whether both sides hold the same data.
    pub in_sync: bool,
}

/// One service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    /// Name.
    pub name: String,
    /// Base URL.
    pub url: String,
    /// Sum of its consumer lag over all partitions.
    pub lag: i64,
    /// Its entity counts.
    pub counts: Value,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every flow in sync and no lag.
    pub synced: bool,
    /// Per flow.
    pub flows: Vec<FlowReport>,
    /// Per service.
    pub services: Vec<ServiceReport>,
    /// What the scenario did.
    pub scenario: Stats,
    /// Seconds from start to report.
    pub seconds: f64,
    /// What `--chaos` killed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chaos: Option<super::chaos::ChaosReport>,
}

async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> anyhow::Result<T> {
    let response = seam_ops::commands::reach::http(None)
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    if !response.status().is_success() {
        bail!("GET {url} answered {}", response.status());
    }
    Ok(response.json().await?)
}

/// Both sides of one flow.
pub async fn flow(services: &Services, from: &str, to: &str) -> anyhow::Result<FlowReport> {
    let name = format!("{from}->{to}");
    let (Some(source), Some(replica)) = (services.url_of(from), services.url_of(to)) else {
        bail!("flow {name} names a service the demo does not run");
    };
    let s: Shared = get_json(&format!("{source}/shared/{from}/{to}")).await?;
    let r: Shared = get_json(&format!("{replica}/shared/{from}/{to}")).await?;
    Ok(FlowReport {
        from: from.into(),
        to: to.into(),
        source_rows: s.rows,
        replica_rows: r.rows,
        in_sync: s.digest == r.digest,
        source_digest: s.digest,
        replica_digest: r.digest,
    })
}

async fn lag(url: &str) -> anyhow::Result<i64> {
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("seam_consumer_lag_events{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .sum())
}

async fn snapshot(services: &Services, topology: &Topology, stats: &Stats, started: Instant) -> anyhow::Result<Report> {
    let mut flows = Vec::new();
    for c in &topology.consumers {
        for s in &c.sources {
            flows.push(flow(services, &s.service, &c.service).await?);
        }
    }
    let mut reports = Vec::new();
    for (which, url) in services.started() {
        reports.push(ServiceReport {
            name: which.name().into(),
            lag: lag(&url).await?,
            counts: get_json(&format!("{url}/counts")).await?,
            url,
        });
    }
    let synced = flows.iter().all(|f| f.in_sync) && reports.iter().all(|r| r.lag == 0);
    Ok(Report {
        synced,
        flows,
        services: reports,
        scenario: stats.clone(),
        seconds: started.elapsed().as_secs_f64(),
        chaos: None,
    })
}

/// Polls until every flow is in sync and no consumer lags, or the timeout passes (then the
/// report says what is not in sync).
pub async fn wait_in_sync(
    services: &Services,
    topology: &Topology,
    timeout: Duration,
    bar: &ProgressBar,
    stats: Stats,
    started: Instant,
) -> anyhow::Result<Report> {
    let deadline = Instant::now() + timeout;
    loop {
        let report = match snapshot(services, topology, &stats, started).await {
            Ok(report) => report,
            // A service that is down (restarting after a crash) is waited for.
            Err(e) if Instant::now() < deadline => {
                bar.set_message(format!("phase 5/5: waiting for the services ({e:#})"));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        if report.synced || Instant::now() > deadline {
            return Ok(report);
        }
        let behind = report.flows.iter().filter(|f| !f.in_sync).count();
        let lag: i64 = report.services.iter().map(|s| s.lag).sum();
        bar.set_message(format!("phase 5/5: {behind} flow(s) catching up, total lag {lag}"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

impl Report {
    /// The human-readable report.
    pub fn print(&self) {
        println!(
            "Student Affairs: {} in {:.1} s",
            if self.synced {
                "all flows in sync"
            } else {
                "NOT in sync"
            },
            self.seconds
        );
        println!(
            "scenario: {} commands, {} students, {} enrollments, {} grades, {} hires, {} double hire(s) prevented by the TA pool's data",
            self.scenario.commands,
            self.scenario.students,
            self.scenario.enrollments,
            self.scenario.grades,
            self.scenario.hires,
            self.scenario.double_hires_prevented
        );
        if let Some(chaos) = &self.chaos {
            println!(
                "chaos (seed {}): killed with SIGKILL and restarted: {}; broker killed and restarted: {}",
                chaos.seed,
                if chaos.killed.is_empty() {
                    "none".to_string()
                } else {
                    chaos.killed.join(", ")
                },
                chaos
                    .broker_killed
                    .map(|b| format!("broker {b}"))
                    .unwrap_or_else(|| "none".into())
            );
        }
        println!();
        println!("{:<18} {:<24} {:>4}  counts", "service", "url", "lag");
        for s in &self.services {
            let counts = s
                .counts
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
                .unwrap_or_default();
            println!("{:<18} {:<24} {:>4}  {counts}", s.name, s.url, s.lag);
        }
        println!();
        println!(
            "{:<37} {:>6} {:>6}  {:<16} {:<16} in sync",
            "flow", "source", "replica", "source digest", "replica digest"
        );
        for f in &self.flows {
            println!(
                "{:<37} {:>6} {:>6}  {:<16} {:<16} {}",
                format!("{} -> {}", f.from, f.to),
                f.source_rows,
                f.replica_rows,
                &f.source_digest[..16.min(f.source_digest.len())],
                &f.replica_digest[..16.min(f.replica_digest.len())],
                if f.in_sync { "yes" } else { "NO" }
            );
        }
    }
}
