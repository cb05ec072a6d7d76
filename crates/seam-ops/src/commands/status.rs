//! `seam status`: per consumer, source and partition: position, end offset, lag in events and
//! seconds, dead letters and parked events; exits 3 when a lag exceeds `--max-lag` (2 is a usage
//! error, 1 a failure).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use super::output;
use crate::status::{self, ConsumerStatus};
use seam::topology::Topology;
use seam_local::cluster::Endpoints;
use seam_local::Home;

/// Exit code when a lag exceeds `--max-lag`.
pub const LAGGING: u8 = 3;

/// Options of `seam status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The topology naming the consumers and their sources; default: the services running
    /// locally (announced in $SEAM_HOME/run), each asked what it reads.
    #[arg(short = 't', long = "topology", value_name = "FILE")]
    topology: Option<PathBuf>,
    /// A consumer's base URL, as CONSUMER=URL (repeatable); default: its announced address.
    #[arg(long, value_parser = consumer_url)]
    url: Vec<(String, String)>,
    /// Exit with code 3 when a partition lags more than this: a number of events (`1000`) or a
    /// duration (`30s`, `5m`).
    #[arg(long, value_parser = parse_max_lag)]
    max_lag: Option<MaxLag>,
    /// Print `{"consumers": [...]}` as JSON.
    #[arg(long)]
    json: bool,
}

/// A lag limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxLag {
    /// Events (offsets) behind.
    Events(i64),
    /// Seconds behind.
    Seconds(f64),
}

fn parse_max_lag(value: &str) -> Result<MaxLag, String> {
    if let Ok(n) = value.parse::<i64>() {
        return if n >= 0 {
            Ok(MaxLag::Events(n))
        } else {
            Err(format!("`{value}`: a lag cannot be negative"))
        };
    }
    humantime::parse_duration(value)
        .map(|d| MaxLag::Seconds(d.as_secs_f64()))
        .map_err(|_| format!("`{value}`: give a number of events (1000) or a duration (30s, 5m)"))
}

fn consumer_url(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((c, u)) if !c.is_empty() && seam::runtime::is_url(u) => {
            Ok((c.to_string(), u.trim_end_matches('/').to_string()))
        }
        _ => Err(format!("`{value}`: expected CONSUMER=http://host:port")),
    }
}

/// Runs `seam status`.
pub async fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let endpoints = Endpoints::discover()?;
    let explicit: BTreeMap<String, String> = args.url.iter().cloned().collect();
    let home = Home::from_env().ok();
    let url_of = |c: &str| explicit.get(c).cloned().or_else(|| home.as_ref()?.service_url(c));
    let mut consumers: Vec<(String, Vec<String>, Option<String>)> = Vec::new();
    let mut slots: Vec<SlotRow> = Vec::new();
    match &args.topology {
        Some(path) => {
            let topology = Topology::load(path)?;
            for s in topology.services.iter().filter(|s| s.is_postgres_cdc()) {
                slots.push(match seam_postgres::cdc::slot_status(s).await {
                    Ok(status) => SlotRow::Known(status),
                    Err(e) => SlotRow::Unknown {
                        service: s.name.clone(),
                        error: e.to_string(),
                    },
                });
            }
            for c in &topology.consumers {
                let sources = c.sources.iter().map(|s| s.service.clone()).collect();
                consumers.push((c.service.clone(), sources, url_of(&c.service)));
            }
        }
        None => {
            let announced = home.as_ref().map(Home::announced).unwrap_or_default();
            for (name, url) in announced.into_iter().chain(explicit.clone()) {
                if consumers.iter().any(|(c, _, _)| *c == name) {
                    continue;
                }
                let sources = match status::self_report(&url).await {
                    Ok(_) => sources_of(&url).await.unwrap_or_default(),
                    Err(_) => continue,
                };
                if !sources.is_empty() {
                    consumers.push((name, sources, Some(url)));
                }
            }
            if consumers.is_empty() {
                bail!("no running consumer found (none announced in $SEAM_HOME/run answers); name them with -t <topology>, or pass --url CONSUMER=URL");
            }
        }
    }
    let client = endpoints.client();
    let mut report = Vec::new();
    for (consumer, sources, url) in consumers {
        let own = match &url {
            Some(u) => status::self_report(u).await.map_err(|e| format!("{e:#}")),
            None => Err("no address announced and no --url given".to_string()),
        };
        let client = client.clone();
        let status =
            tokio::task::spawn_blocking(move || status::consumer_status(&client, &consumer, &sources, own)).await??;
        report.push(status);
    }
    let exceeded: Vec<&ConsumerStatus> = match args.max_lag {
        None => Vec::new(),
        Some(MaxLag::Events(n)) => report.iter().filter(|c| c.max_lag_events() > n).collect(),
        Some(MaxLag::Seconds(s)) => report.iter().filter(|c| c.max_lag_seconds() > s).collect(),
    };
    if args.json {
        let value = serde_json::json!({
            "consumers": report,
            "cdc_slots": slots,
            "exceeded": exceeded.iter().map(|c| c.consumer.as_str()).collect::<Vec<_>>(),
        });
        output::line(&serde_json::to_string_pretty(&value)?);
    } else {
        output::line(&render(&report));
        if !slots.is_empty() {
            output::line(&render_slots(&slots));
        }
        for c in &exceeded {
            eprintln!(
                "{} lags more than --max-lag: {} events, {:.1} s behind",
                c.consumer,
                c.max_lag_events(),
                c.max_lag_seconds()
            );
        }
    }
    Ok(if exceeded.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(LAGGING)
    })
}

/// A CDC source's slot, or why it could not be read.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum SlotRow {
    Known(seam_postgres::cdc::SlotStatus),
    Unknown { service: String, error: String },
}

/// The replication slots of the topology's CDC sources and how much WAL each holds.
fn render_slots(slots: &[SlotRow]) -> String {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for s in slots {
        match s {
            SlotRow::Known(s) => rows.push(vec![
                s.service.clone(),
                s.slot.clone(),
                if !s.exists {
                    "not created yet".into()
                } else if s.active {
                    "active".into()
                } else {
                    "inactive".into()
                },
                s.lag_bytes.map_or_else(|| "-".into(), |b| b.to_string()),
                s.wal_status.clone().unwrap_or_else(|| "-".into()),
            ]),
            SlotRow::Unknown { service, error } => {
                notes.push(format!("{service}: its slot could not be read: {error}"))
            }
        }
    }
    let mut text = String::from("\n");
    text.push_str(&output::table(
        &["CDC SOURCE", "SLOT", "STATE", "WAL HELD (BYTES)", "WAL STATUS"],
        &rows,
    ));
    if rows.iter().any(|r| r[2] == "inactive") {
        notes.push("an inactive slot keeps every WAL segment since its position on the database server: start the source (`seam cdc run`), or drop the slot if the source is gone for good".into());
    }
    for n in notes {
        text.push_str(&format!("\nnote: {n}"));
    }
    text
}

/// The source services the consumer at `url` reads or waits to rebuild (`GET /subscriptions`).
pub async fn sources_of(url: &str) -> anyhow::Result<Vec<String>> {
    let v: serde_json::Value = super::reach::http(None)
        .get(format!("{url}/subscriptions"))
        .send()
        .await?
        .json()
        .await?;
    let read = v["sources"].as_array().into_iter().flatten().filter_map(|t| t.as_str());
    let waiting = v["needs_rebuild"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(t, _)| t.as_str());
    let mut sources: Vec<String> = read
        .chain(waiting)
        .filter_map(|t| t.strip_suffix(".events").map(str::to_string))
        .collect();
    sources.sort();
    sources.dedup();
    Ok(sources)
}

/// Two tables: per partition, where the consumer is and how far behind (in events, as it
/// reads them, and seconds); per source, once, its dead letters, the events parked behind them
/// and the record types its translator does not handle.
fn render(report: &[ConsumerStatus]) -> String {
    let mut partitions = Vec::new();
    let mut sources = Vec::new();
    let mut notes = Vec::new();
    for c in report {
        if let Some(why) = &c.unreachable {
            notes.push(format!(
                "{}: positions from its consumer group's committed offsets ({why})",
                c.consumer
            ));
        }
        for s in &c.sources {
            if let Some(why) = &s.needs_rebuild {
                notes.push(format!("{} does not read {}: {why}", c.consumer, s.source));
            }
            for p in &s.partitions {
                let lag = if p.lag_estimated {
                    format!("~{}", p.lag_events)
                } else {
                    p.lag_events.to_string()
                };
                partitions.push(vec![
                    c.consumer.clone(),
                    s.source.clone(),
                    p.partition.to_string(),
                    p.position.to_string(),
                    p.end.to_string(),
                    lag,
                    format!("{:.1}", p.lag_seconds),
                ]);
            }
            let unhandled: Vec<String> = s
                .unhandled
                .iter()
                .map(|(record, n)| format!("{} × {n}", record.rsplit('.').next().unwrap_or(record)))
                .collect();
            if !unhandled.is_empty() {
                notes.push(format!(
                    "{} skips record types of {} its translator neither reads nor ignores ({}): declare them",
                    c.consumer,
                    s.source,
                    unhandled.join(", ")
                ));
            }
            sources.push(vec![
                c.consumer.clone(),
                s.source.clone(),
                s.dead_letters.to_string(),
                s.parked.to_string(),
                if unhandled.is_empty() {
                    "-".into()
                } else {
                    unhandled.join(", ")
                },
            ]);
        }
    }
    let mut text = output::table(
        &[
            "CONSUMER",
            "SOURCE",
            "PARTITION",
            "POSITION",
            "END",
            "LAG (EVENTS)",
            "LAG (S)",
        ],
        &partitions,
    );
    text.push_str("\n\n");
    text.push_str(&output::table(
        &[
            "CONSUMER",
            "SOURCE",
            "DEAD LETTERS",
            "PARKED BEHIND THEM",
            "UNHANDLED TYPES",
        ],
        &sources,
    ));
    if partitions.iter().any(|r| r[5].starts_with('~')) {
        notes.push("~: over 100,000 events behind, counted as offsets (transaction markers included)".into());
    }
    for n in notes {
        text.push_str(&format!("\nnote: {n}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_lag_is_events_or_a_duration() {
        assert_eq!(parse_max_lag("1000"), Ok(MaxLag::Events(1000)));
        assert_eq!(parse_max_lag("30s"), Ok(MaxLag::Seconds(30.0)));
        assert_eq!(parse_max_lag("2m"), Ok(MaxLag::Seconds(120.0)));
        assert!(parse_max_lag("-1").is_err());
        assert!(parse_max_lag("lots").expect_err("words").contains("30s"));
    }
}
