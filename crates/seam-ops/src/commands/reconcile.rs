//! `seam reconcile`: audits every flow of a topology by bucketed digests of the shared data on
//! both sides, reports the drifted subjects, and with `--repair` rebuilds exactly those by a
//! targeted replay; `--every` runs it as a job with metrics (see [`crate::reconcile`]).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use super::output;
use crate::reconcile::metrics::Metrics;
use crate::reconcile::repair::{self, Repair};
use crate::reconcile::{self as audit, FlowReport, Options, State};
use seam::topology::Topology;
use seam_local::cluster::Endpoints;

/// Exit code when drift remains (found, or not repaired).
pub const DRIFT: u8 = 3;
/// Exit code when nothing drifted but some flows could not be compared.
pub const INCOMPLETE: u8 = 4;

/// Options of `seam reconcile`.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The topology file whose flows to audit.
    #[arg(short = 't', long = "topology", value_name = "FILE")]
    topology: PathBuf,
    /// Audit only this flow, as SOURCE->CONSUMER (repeatable); default: every flow.
    #[arg(long, value_name = "SOURCE->CONSUMER")]
    flow: Vec<String>,
    /// A service's base URL, as SERVICE=URL (repeatable); default: its announced address.
    #[arg(long, value_parser = super::console::service_url)]
    url: Vec<(String, String)>,
    /// Buckets of subjects per flow: more buckets, fewer subjects listed per differing bucket.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    buckets: u32,
    /// How long to wait for a lagging consumer to catch up before its flow is reported as not
    /// compared (`30s`, `2m`).
    #[arg(long, default_value = "30s", value_parser = duration)]
    settle: Duration,
    /// Rebuild the drifted subjects by a targeted replay in each consumer, then audit again.
    #[arg(long)]
    repair: bool,
    /// Run as a job: audit every DURATION (`10m`) until interrupted.
    #[arg(long, value_name = "DURATION", value_parser = every)]
    every: Option<Duration>,
    /// With --every: serve the job's `seam_reconcile_*` metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR", requires = "every")]
    metrics: Option<SocketAddr>,
    /// Print each audit as JSON.
    #[arg(long)]
    json: bool,
}

fn duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|_| format!("`{value}`: give a duration (30s, 2m)"))
}

fn every(value: &str) -> Result<Duration, String> {
    match duration(value)? {
        d if d >= Duration::from_secs(1) => Ok(d),
        _ => Err(format!("`{value}`: at least 1s between audits")),
    }
}

/// One audit: the flows, the repairs, and the flows audited again after them.
#[derive(Debug, serde::Serialize)]
pub struct Run {
    /// When it started (RFC 3339).
    pub at: String,
    /// Every flow as first found.
    pub flows: Vec<FlowReport>,
    /// What `--repair` did, per consumer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<Repair>,
    /// The repaired flows audited again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<FlowReport>,
    /// Subjects still drifted at the end.
    pub drifted: usize,
    /// Flows not compared.
    pub not_compared: usize,
}

/// Runs `seam reconcile`.
pub async fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let topology = Topology::load(&args.topology)?;
    let known: BTreeSet<String> = audit::flows(&topology, &BTreeSet::new())
        .into_iter()
        .map(|(s, c)| format!("{s}->{c}"))
        .collect();
    if let Some(bad) = args.flow.iter().find(|f| !known.contains(*f)) {
        anyhow::bail!(
            "--flow {bad}: {} has no such flow; its flows are {}",
            args.topology.display(),
            known.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let endpoints = Endpoints::discover()?;
    let mut urls: BTreeMap<String, String> = seam_local::Home::from_env()
        .map(|h| h.announced().into_iter().collect())
        .unwrap_or_default();
    urls.extend(args.url.iter().cloned());
    let options = Options {
        buckets: args.buckets,
        settle: args.settle,
        urls,
        flows: args.flow.iter().cloned().collect(),
    };
    let client = endpoints.client();
    let Some(period) = args.every else {
        let run = once(&topology, &client, &options, args.repair).await?;
        print(&args, &topology, &run)?;
        return Ok(exit(&run));
    };
    let metrics = Metrics::default();
    if let Some(addr) = args.metrics {
        serve_metrics(addr, metrics.clone()).await?;
    }
    loop {
        let started = Instant::now();
        match once(&topology, &client, &options, args.repair).await {
            Ok(run) => {
                metrics.audited(&run.flows, &run.repairs, started.elapsed().as_secs_f64());
                print(&args, &topology, &run)?;
            }
            Err(e) => {
                metrics.failed(started.elapsed().as_secs_f64());
                eprintln!(
                    "error: the audit failed: {e:#}; trying again in {}",
                    humantime::format_duration(period)
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// Audits once, repairs if asked, and audits the repaired flows again.
pub async fn once(
    topology: &Topology,
    client: &rdkafka::ClientConfig,
    options: &Options,
    repair_drift: bool,
) -> anyhow::Result<Run> {
    let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let flows = audit::audit(topology, client, options).await?;
    let mut repairs = Vec::new();
    let mut after = Vec::new();
    if repair_drift && flows.iter().any(|f| !f.drift.is_empty()) {
        repairs = repair::repair(&flows, &options.urls).await;
        if repairs.iter().any(|r| r.swapped) {
            let again = Options {
                flows: flows
                    .iter()
                    .filter(|f| !f.drift.is_empty())
                    .map(|f| f.flow.clone())
                    .collect(),
                ..options.clone()
            };
            after = audit::audit(topology, client, &again).await?;
        }
    }
    let last: BTreeMap<&str, &FlowReport> = flows.iter().chain(after.iter()).map(|f| (f.flow.as_str(), f)).collect();
    Ok(Run {
        at,
        drifted: last.values().map(|f| f.drift.len()).sum(),
        not_compared: last
            .values()
            .filter(|f| matches!(f.state, State::NotCompared(_)))
            .count(),
        flows,
        repairs,
        after,
    })
}

fn exit(run: &Run) -> ExitCode {
    if run.drifted > 0 {
        ExitCode::from(DRIFT)
    } else if run.not_compared > 0 {
        ExitCode::from(INCOMPLETE)
    } else {
        ExitCode::SUCCESS
    }
}

fn print(args: &ReconcileArgs, topology: &Topology, run: &Run) -> anyhow::Result<()> {
    if args.json {
        output::line(&serde_json::to_string_pretty(run)?);
    } else {
        output::line(&render(topology, run, args.buckets, args.repair));
    }
    Ok(())
}

/// An audit as `seam reconcile` prints it: a table of flows, the repairs, the verdict.
pub fn render(topology: &Topology, run: &Run, buckets: u32, repairing: bool) -> String {
    let mut out = vec![format!(
        "reconcile of {} at {}: {} flow(s), {buckets} buckets per flow",
        topology.name,
        run.at,
        run.flows.len(),
    )];
    out.push(table(&run.flows));
    for r in &run.repairs {
        out.push(repair_line(r));
    }
    if !run.after.is_empty() {
        out.push("after the repair:".into());
        out.push(table(&run.after));
    }
    out.push(if run.drifted > 0 && !repairing {
        format!(
            "drift: {} subject(s); `seam reconcile --repair` rebuilds them by a targeted replay in their consumers",
            run.drifted
        )
    } else if run.drifted > 0 {
        format!("drift: {} subject(s) remain (see above)", run.drifted)
    } else if run.not_compared > 0 {
        format!(
            "no drift in the flows compared; {} flow(s) not compared",
            run.not_compared
        )
    } else {
        "no drift: every flow's source and replica hold the same rows".into()
    });
    out.join("\n")
}

fn table(flows: &[FlowReport]) -> String {
    let rows: Vec<Vec<String>> = flows
        .iter()
        .map(|f| {
            let state = match &f.state {
                State::InSync => "in sync".to_string(),
                State::Drifted => {
                    let listed: Vec<String> = f
                        .drift
                        .iter()
                        .take(10)
                        .map(|d| {
                            let kind = serde_json::to_value(d.kind)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default();
                            let letter = if d.dead_letter.is_some() { ", dead-lettered" } else { "" };
                            format!("{} {kind}{letter}", d.subject)
                        })
                        .collect();
                    let more = if f.drift.len() > 10 { ", ..." } else { "" };
                    format!("drifted: {} subject(s): {}{more}", f.drift.len(), listed.join(", "))
                }
                State::NotCompared(why) => format!("not compared: {why}"),
            };
            let rows = |n: usize| {
                if matches!(f.state, State::NotCompared(_)) {
                    "-".into()
                } else {
                    n.to_string()
                }
            };
            vec![f.flow.clone(), rows(f.source_rows), rows(f.replica_rows), state]
        })
        .collect();
    output::table(&["FLOW", "SOURCE ROWS", "REPLICA ROWS", "STATE"], &rows)
}

fn repair_line(r: &Repair) -> String {
    let mut line = if r.subjects.is_empty() {
        format!("repair of {}: nothing replayed", r.consumer)
    } else if r.swapped {
        format!(
            "repair of {}: replayed {} from {}; swapped {} key(s): {}",
            r.consumer,
            r.subjects.join(", "),
            r.sources.join(", "),
            r.keys.len(),
            r.keys.join(", ")
        )
    } else {
        format!(
            "repair of {}: replayed {} from {}; nothing swapped{}",
            r.consumer,
            r.subjects.join(", "),
            r.sources.join(", "),
            r.refused.as_deref().map(|w| format!(": {w}")).unwrap_or_default()
        )
    };
    for (subject, why) in &r.skipped {
        line.push_str(&format!("\n  {subject} left alone: {why}"));
    }
    line
}

async fn serve_metrics(addr: SocketAddr, metrics: Metrics) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics {addr}: cannot listen there (in use, or not this machine's address)"))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    eprintln!("metrics at http://{addr}/metrics");
    Ok(())
}
