//! `seam register <consumer> --source <service>`: adds a subscription to the topology file and
//! to the running consumer, which bootstraps it from the source's snapshot and then reads the
//! source topic from exactly the snapshot's offset map. Running it again changes nothing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use super::{output, reach};
use seam::topology::{self, Edit, Topology};

/// The topology file used when `-t` is not given.
pub const DEFAULT_TOPOLOGY: &str = "deploy/student-affairs.yaml";

/// Options of `seam register`.
#[derive(Debug, Clone, Args)]
pub struct RegisterArgs {
    /// The consuming service.
    pub consumer: String,
    /// The service to read.
    #[arg(long)]
    pub source: String,
    /// The source's snapshot: a file (`seam snapshot export`) or a URL; default: the running
    /// source's GET /snapshot.
    #[arg(long, conflicts_with = "from_beginning")]
    pub snapshot: Option<String>,
    /// Read the source topic from offset 0 instead of bootstrapping from a snapshot.
    #[arg(long)]
    pub from_beginning: bool,
    /// For a source the consumer stopped reading because the events it needs were deleted (or
    /// the topic recreated), and whose replica it cannot rebuild: read on from the log start,
    /// knowingly; the events in between are never taken in.
    #[arg(long, conflicts_with_all = ["snapshot", "from_beginning"])]
    pub accept_gap: bool,
    /// The topology file to add the subscription to.
    #[arg(long, short = 't', default_value = DEFAULT_TOPOLOGY)]
    pub topology: PathBuf,
    /// The consumer's base URL; default: the address it announced in $SEAM_HOME/run.
    #[arg(long)]
    pub url: Option<String>,
    /// Print the result as JSON (no progress bar).
    #[arg(long)]
    pub json: bool,
}

/// What a registration ended with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Registered {
    /// The consumer.
    pub consumer: String,
    /// The source.
    pub source: String,
    /// True when both the topology file and the consumer already had it: nothing was done.
    pub already_registered: bool,
    /// Whether the topology file was edited.
    pub topology_changed: bool,
    /// The seq of the snapshot bootstrapped from, if one was loaded.
    pub snapshot_seq: Option<u64>,
    /// The positions the consumer reads the source topic from (partition → next offset).
    pub positions: std::collections::BTreeMap<i32, i64>,
}

/// Runs `seam register`.
pub async fn run(args: RegisterArgs) -> anyhow::Result<ExitCode> {
    let done = register(&args).await?;
    if args.json {
        output::line(&serde_json::to_string_pretty(&done)?);
        return Ok(ExitCode::SUCCESS);
    }
    output::line(&done.summary());
    Ok(ExitCode::SUCCESS)
}

impl Registered {
    /// One line for people.
    pub fn summary(&self) -> String {
        let listed = self
            .positions
            .iter()
            .map(|(p, o)| format!("{p}={o}"))
            .collect::<Vec<_>>()
            .join(" ");
        let topic = seam::translator::events_topic(&self.source);
        if self.already_registered {
            return format!(
                "already registered: {} reads {topic} (next offsets {listed}); nothing to do",
                self.consumer
            );
        }
        let from = match self.snapshot_seq {
            Some(seq) => format!("bootstrapped from the snapshot at seq {seq}"),
            None => "no snapshot loaded".to_string(),
        };
        format!(
            "registered: {} reads {topic} from next offsets {listed} ({from})",
            self.consumer
        )
    }
}

/// On a cluster that enforces ACLs (SASL), lets the consumer read the source's topic before it
/// is asked to: the rules `seam deploy` of the edited topology adds.
async fn grant(args: &RegisterArgs) -> anyhow::Result<()> {
    let Ok(endpoints) = seam_local::cluster::Endpoints::discover() else {
        return Ok(());
    };
    let secured = endpoints
        .kafka
        .0
        .get("security.protocol")
        .is_some_and(|p| p.to_ascii_uppercase().starts_with("SASL"));
    if !secured {
        return Ok(());
    }
    let topology = Topology::load(&args.topology)?;
    crate::deploy::grant_subscription(&topology, &endpoints.client(), &args.consumer, &args.source)
        .await
        .with_context(|| {
            format!(
                "letting {} read {}.events (the ACLs `seam deploy -t {}` would add)",
                args.consumer,
                args.source,
                args.topology.display()
            )
        })
}

/// Registers without printing the result (progress goes to stderr unless `args.json`): what
/// `seam register` and the demo run.
pub async fn register(args: &RegisterArgs) -> anyhow::Result<Registered> {
    if args.accept_gap {
        return accept_gap(args).await;
    }
    if !args.topology.is_file() {
        bail!(
            "no topology file at {}; pass the one that declares {} with -t FILE",
            args.topology.display(),
            args.consumer
        );
    }
    let before = Topology::load(&args.topology)?;
    for name in [&args.consumer, &args.source] {
        if before.service(name).is_none() {
            bail!(
                "{} declares no service {name}; declare it under services (and deploy it) first",
                args.topology.display()
            );
        }
    }
    if let Some(external) = before.service(&args.source).filter(|s| s.is_external()) {
        if !args.from_beginning {
            bail!(
                "{} is an external source: no seam service exports its state, so it has no snapshot. Register with --from-beginning to read {} from its first offset",
                args.source,
                external.topic.as_deref().unwrap_or_default()
            );
        }
    }
    let in_file = before
        .sources_of(&args.consumer)
        .iter()
        .any(|s| s.service == args.source);
    // A snapshot file is checked first: a bad one is refused before anything is contacted.
    let local = match args.snapshot.as_deref() {
        Some(f) if !args.from_beginning && !seam::runtime::is_url(f) => {
            Some(reach::snapshot_bytes(&args.source, Some(f)).await?)
        }
        _ => None,
    };
    let (client, endpoint, current) = subscription(args).await?;
    if current["state"] == "needs-rebuild" {
        bail!(
            "{} does not read {}: {}",
            args.consumer,
            args.source,
            current["error"].as_str().unwrap_or_default()
        );
    }
    let reading = current["state"] == "reading";
    if reading && in_file {
        let status = reach::json(client.get(&endpoint).send().await?, &endpoint).await?;
        return registered(args, &status, false, true);
    }
    // A bootstrap already running (an interrupted `seam register` run again): follow it.
    let attach = current["state"] == "bootstrapping";
    if attach && !args.json {
        eprintln!(
            "{} is already bootstrapping {}; following that bootstrap",
            args.consumer, args.source
        );
    }
    // Check the snapshot before changing anything, so a bad one leaves the file as it was.
    let upload = if reading || attach || args.from_beginning {
        None
    } else {
        let (bytes, meta, from) = match local {
            Some(checked) => checked,
            None => reach::snapshot_bytes(&args.source, args.snapshot.as_deref()).await?,
        };
        if !args.json {
            eprintln!(
                "snapshot of {} at seq {} ({} records) from {from}",
                meta.service, meta.seq, meta.records
            );
        }
        Some(bytes)
    };
    let edited = topology::add_source(&args.topology, &args.consumer, &args.source)? == Edit::Added;
    if edited && !args.json {
        eprintln!(
            "added {} to the sources of {} in {}",
            args.source,
            args.consumer,
            args.topology.display()
        );
    }
    grant(args).await?;
    let mut status = if attach {
        current
    } else {
        let post = match upload {
            Some(bytes) => client.post(&endpoint).body(bytes),
            None => client.post(format!("{endpoint}?from=beginning")),
        };
        let answer = post.send().await.context("sending the registration")?;
        if answer.status() == reqwest::StatusCode::CONFLICT {
            // Another registration won the race: follow its bootstrap.
            let body: serde_json::Value = answer.json().await.context("reading the answer")?;
            if !args.json {
                eprintln!(
                    "{} is already bootstrapping {}; following that bootstrap",
                    args.consumer, args.source
                );
            }
            body["registration"].clone()
        } else {
            reach::json(answer, &endpoint).await?
        }
    };
    let bar = reach::bar(args.json);
    bar.set_message("bootstrapping");
    while status["state"] == "bootstrapping" {
        bar.set_length(status["total"].as_u64().unwrap_or(0));
        bar.set_position(status["loaded"].as_u64().unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
        status = reach::json(
            client.get(&endpoint).send().await.with_context(|| {
                format!(
                    "{} stopped answering during the bootstrap; it resumes the bootstrap when it restarts",
                    args.consumer
                )
            })?,
            &endpoint,
        )
        .await?;
    }
    bar.finish_and_clear();
    if status["state"] == "failed" {
        bail!(
            "{} could not register {}: {}",
            args.consumer,
            args.source,
            status["error"].as_str().unwrap_or("unknown error")
        );
    }
    registered(args, &status, edited, false)
}

/// The consumer's registration of the source as it stands (`GET /subscriptions/<source>`), with
/// the client and endpoint to act on it. Also refuses a consumer without the translator.
async fn subscription(args: &RegisterArgs) -> anyhow::Result<(reqwest::Client, String, serde_json::Value)> {
    let url = reach::service_url(&args.consumer, args.url.as_deref())?;
    let client = reach::http(None);
    let endpoint = format!("{url}/subscriptions/{}", args.source);
    let current = client
        .get(&endpoint)
        .send()
        .await
        .with_context(|| format!("cannot reach {} at {url}; is it running?", args.consumer))?;
    let current = reach::json(current, &endpoint).await?;
    Ok((client, endpoint, current))
}

/// `--accept-gap`: the subscription exists; only the consumer's positions move.
async fn accept_gap(args: &RegisterArgs) -> anyhow::Result<Registered> {
    let (client, endpoint, current) = subscription(args).await?;
    if current["state"] != "needs-rebuild" {
        bail!(
            "{} has no gap to accept in {}: it is {}",
            args.consumer,
            args.source,
            current["state"].as_str().unwrap_or("unknown")
        );
    }
    let status = reach::json(
        client
            .post(format!("{endpoint}?accept=gap"))
            .send()
            .await
            .context("accepting the gap")?,
        &endpoint,
    )
    .await?;
    if !args.json {
        eprintln!(
            "accepted the gap: {} reads {} on from its log start; {}",
            args.consumer,
            args.source,
            current["error"].as_str().unwrap_or_default()
        );
    }
    registered(args, &status, false, false)
}

fn registered(args: &RegisterArgs, status: &serde_json::Value, edited: bool, noop: bool) -> anyhow::Result<Registered> {
    let positions = status["positions"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(p, o)| Some((p.parse().ok()?, o.as_i64()?)))
                .collect()
        })
        .unwrap_or_default();
    Ok(Registered {
        consumer: args.consumer.clone(),
        source: args.source.clone(),
        already_registered: noop,
        topology_changed: edited,
        snapshot_seq: status["snapshot_seq"].as_u64(),
        positions,
    })
}
