//! `seam replay <consumer>`: has the running consumer rebuild its replicas of foreign data into a
//! shadow store from the source topics (or the sources' snapshots), compare them with the live
//! ones, and swap the rebuilt ones in; `--dry-run` only reports.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use super::{output, reach};

/// Exit code of a dry run that found differences.
pub const DIFFERS: u8 = 3;
/// Exit code of a replay that did not swap because its rebuild dead-lettered events.
pub const REFUSED: u8 = 4;

/// Options of `seam replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The consuming service whose replicas to rebuild.
    pub consumer: String,
    /// Rebuild only the replicas built from this source (repeatable); default: all of them.
    #[arg(long)]
    pub source: Vec<String>,
    /// Read the source topics from offset 0 (the default).
    #[arg(long, conflicts_with = "from_snapshot")]
    pub from_beginning: bool,
    /// Start from the sources' snapshots (their running GET /snapshot, or --snapshot), then read
    /// the topics from the snapshots' offset maps: for topics whose start retention deleted.
    #[arg(long)]
    pub from_snapshot: bool,
    /// A source's snapshot URL for --from-snapshot, as SOURCE=URL (repeatable).
    #[arg(long, value_parser = source_url, requires = "from_snapshot")]
    pub snapshot: Vec<(String, String)>,
    /// Rebuild only this subject (the Kafka key of the sources' events, e.g. student/s7;
    /// repeatable): reads only the partitions holding the subjects, applies only their events
    /// and swaps only the keys that rebuild writes; the live positions stay.
    #[arg(long, value_name = "SUBJECT", conflicts_with = "from_snapshot")]
    pub subject: Vec<String>,
    /// Compare only; leave the live store as it is (exit code 3 when they differ).
    #[arg(long)]
    pub dry_run: bool,
    /// Swap even when the rebuild dead-lettered events the live store took in: their subjects
    /// take the rebuilt state and are parked with those letters. Without it such a replay lists
    /// them, swaps nothing and exits with code 4.
    #[arg(long, conflicts_with = "dry_run")]
    pub accept_dead_letters: bool,
    /// The consumer's base URL; default: the address it announced in $SEAM_HOME/run.
    #[arg(long)]
    pub url: Option<String>,
    /// Print the report as JSON (no progress bar).
    #[arg(long)]
    pub json: bool,
}

fn source_url(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((s, u)) if !s.is_empty() && seam::runtime::is_url(u) => Ok((s.to_string(), u.to_string())),
        _ => Err(format!("`{value}`: expected SOURCE=http://host:port/snapshot")),
    }
}

/// Runs `seam replay`.
pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let url = reach::service_url(&args.consumer, args.url.as_deref())?;
    let client = reach::http(None);
    let mut snapshots: BTreeMap<String, String> = args.snapshot.iter().cloned().collect();
    if args.from_snapshot {
        let listing = format!("{url}/subscriptions");
        let sources = reach::json(
            client
                .get(&listing)
                .send()
                .await
                .with_context(|| format!("cannot reach {} at {url}; is it running?", args.consumer))?,
            &listing,
        )
        .await?;
        let waiting = sources["needs_rebuild"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(t, _)| t.as_str());
        let read = sources["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str());
        for topic in read.chain(waiting) {
            let source = topic.trim_end_matches(".events").to_string();
            if let (std::collections::btree_map::Entry::Vacant(slot), Ok(base)) =
                (snapshots.entry(source.clone()), reach::service_url(&source, None))
            {
                slot.insert(format!("{base}/snapshot"));
            }
        }
    }
    let body = serde_json::json!({
        "sources": args.source,
        "subjects": args.subject,
        "snapshots": snapshots,
        "dry_run": args.dry_run,
        "accept_dead_letters": args.accept_dead_letters,
    });
    let status = request(&client, &args.consumer, &url, &body, args.json).await?;
    let differing = status["differing_count"].as_u64().unwrap_or(0);
    if args.json {
        output::line(&serde_json::to_string_pretty(&status)?);
    } else {
        output::line(&report(&args.consumer, &status));
    }
    Ok(if !status["refused"].is_null() {
        ExitCode::from(REFUSED)
    } else if args.dry_run && differing > 0 {
        ExitCode::from(DIFFERS)
    } else {
        ExitCode::SUCCESS
    })
}

/// Sends a replay request to the consumer at `url` and follows it to its end (a progress bar
/// unless `quiet`); the final report, or an error when the replay failed.
pub async fn request(
    client: &reqwest::Client,
    consumer: &str,
    url: &str,
    body: &serde_json::Value,
    quiet: bool,
) -> anyhow::Result<serde_json::Value> {
    let endpoint = format!("{url}/replay");
    let mut status = reach::json(
        client
            .post(&endpoint)
            .json(body)
            .send()
            .await
            .with_context(|| format!("cannot reach {consumer} at {url}; is it running?"))?,
        &endpoint,
    )
    .await?;
    let bar = reach::bar(quiet);
    while status["state"] == "running" {
        bar.set_message(status["phase"].as_str().unwrap_or_default().to_string());
        bar.set_length(status["total"].as_u64().unwrap_or(0));
        bar.set_position(status["done"].as_u64().unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
        status = reach::json(client.get(&endpoint).send().await?, &endpoint).await?;
    }
    bar.finish_and_clear();
    if status["state"] == "failed" {
        bail!(
            "the replay of {consumer} failed; its live store is unchanged: {}",
            status["error"].as_str().unwrap_or("unknown error")
        );
    }
    Ok(status)
}

fn report(consumer: &str, r: &serde_json::Value) -> String {
    let list = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let subjects = list(&r["subjects"]);
    let targeted = !subjects.is_empty();
    let mut out = vec![
        format!(
            "replayed {}{} for {consumer} from the {}: {} snapshot records, {} events in {:.1} s",
            list(&r["sources"]),
            if targeted {
                format!(" (subjects {subjects})")
            } else {
                String::new()
            },
            r["from"].as_str().unwrap_or_default(),
            r["snapshot_records"],
            r["events"],
            r["seconds"].as_f64().unwrap_or(0.0)
        ),
        format!(
            "replicas {}: live {} vs rebuilt {}",
            list(&r["prefixes"]),
            &r["live_digest"]
                .as_str()
                .unwrap_or_default()
                .get(..16)
                .unwrap_or_default(),
            &r["shadow_digest"]
                .as_str()
                .unwrap_or_default()
                .get(..16)
                .unwrap_or_default()
        ),
        format!(
            "{} events the rebuild emitted stayed in the shadow store (not published)",
            r["emitted_unpublished"]
        ),
    ];
    let resolved = r["resolved_dead_letters"].as_u64().unwrap_or(0);
    if resolved > 0 {
        out.push(format!(
            "{resolved} dead letters of the live store were applied by the rebuild{}",
            if r["swapped"] == true {
                ": resolved by the swap (nothing is left to redrive)"
            } else {
                ""
            }
        ));
    }
    let made = r["shadow_dead_letter_count"].as_u64().unwrap_or(0);
    if made > 0 {
        out.push(format!(
            "the rebuild dead-lettered {made} event(s) the live store took in:"
        ));
        for l in r["shadow_dead_letters"].as_array().into_iter().flatten() {
            out.push(format!(
                "  {}/{}@{}  {}  {}: {}",
                l["topic"].as_str().unwrap_or_default(),
                l["partition"],
                l["offset"],
                l["subject"].as_str().unwrap_or("-"),
                l["kind"].as_str().unwrap_or_default(),
                l["reason"].as_str().unwrap_or_default()
            ));
        }
    }
    if let Some(refused) = r["refused"].as_str() {
        out.push(format!("not swapped: {refused}"));
        return out.join("\n");
    }
    let differing = r["differing_count"].as_u64().unwrap_or(0);
    if differing == 0 && resolved == 0 && made == 0 {
        out.push("identical: nothing to swap".into());
    } else if differing > 0 {
        let shown = r["differing"].as_array().map(Vec::len).unwrap_or(0) as u64;
        out.push(format!(
            "{differing} differing keys: {}{}",
            list(&r["differing"]),
            if differing > shown { ", ..." } else { "" }
        ));
    }
    if differing > 0 || resolved > 0 || made > 0 {
        out.push(if r["swapped"] == true && targeted {
            "swapped: the rebuilt keys of these subjects (and their dead letters) replaced the live ones in one atomic write; positions are unchanged".into()
        } else if r["swapped"] == true {
            "swapped: the rebuilt replicas, positions, dead letters and what was taken in replaced the live ones in one atomic write".into()
        } else {
            "dry run: the live store is unchanged; run without --dry-run to swap".into()
        });
    }
    out.join("\n")
}
