//! `seam bench <name> [--quick] [--json] [--rounds N]`: one benchmark against the cluster in use,
//! baseline and seam interleaved; text for people, one JSON object for tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::bench;
use seam::store::StoreEngine;
use seam_local::cluster::Endpoints;
use seam_ops::commands::output;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// consume → decode → translate → apply → publish vs a raw rdkafka passthrough, 1 KB and 200 B.
    Translator(Common),
    /// A service process: start to ready, idle memory, memory under a burst.
    Footprint(Common),
    /// `seam replay`'s rebuild from offset 0 vs a raw drain into the same store engine.
    Replay(Common),
    /// Send → applied at a consumer at 1 K and 10 K events/s, open loop, vs a bare echo.
    Latency(Common),
    /// A new consumer of a long history: snapshot + catch-up vs a full replay.
    Bootstrap(Common),
    /// The translator workload as a Kafka Streams app vs seam, by events per CPU-second.
    KafkaStreams(Common),
    /// A postgres-cdc source catching up on committed row changes vs a raw slot → Kafka relay
    /// (needs PostgreSQL: `seam local up --postgres` or SEAM_POSTGRES).
    Cdc(Common),
    /// Every benchmark in turn; `--markdown` prints BENCHMARKS.md (machine, commit, results).
    All {
        /// Options of each benchmark.
        #[command(flatten)]
        common: Common,
        /// Print the report as BENCHMARKS.md.
        #[arg(long, conflicts_with = "json")]
        markdown: bool,
    },
    /// Runs the benchmarks' copy consumer as a process (what `footprint` measures).
    #[command(hide = true)]
    ServeCopy {
        /// Service name.
        #[arg(long)]
        name: String,
        /// Source service.
        #[arg(long)]
        source: String,
        /// Store folder.
        #[arg(long)]
        store: PathBuf,
        /// Store engine.
        #[arg(long, value_enum, default_value_t)]
        store_engine: StoreEngine,
    },
}

/// Options every benchmark takes.
#[derive(Debug, Args)]
pub struct Common {
    /// Small volumes: finishes within about a minute (for CI and a first look).
    #[arg(long)]
    quick: bool,
    /// Rounds of baseline + seam, interleaved (at least 5).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(5..=100))]
    rounds: u16,
    /// Print one JSON object: name, ratio, target, baseline, subject, settings (and cases).
    #[arg(long)]
    json: bool,
    /// The store engine of seam's nodes, and of the replay baseline's raw store.
    #[arg(long, env = "SEAM_STORE_ENGINE", value_enum, default_value_t)]
    store_engine: StoreEngine,
}

/// Runs `seam bench`.
pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    let (name, common) = match command {
        BenchCommand::ServeCopy {
            name,
            source,
            store,
            store_engine,
        } => {
            bench::footprint::serve_copy(&name, &source, store, store_engine).await?;
            return Ok(ExitCode::SUCCESS);
        }
        BenchCommand::All { common, markdown } => return all(&common, markdown).await,
        BenchCommand::Translator(c) => ("translator", c),
        BenchCommand::Replay(c) => ("replay", c),
        BenchCommand::Bootstrap(c) => ("bootstrap", c),
        BenchCommand::Latency(c) => ("latency", c),
        BenchCommand::KafkaStreams(c) => ("kafka-streams", c),
        BenchCommand::Footprint(c) => ("footprint", c),
        BenchCommand::Cdc(c) => ("cdc", c),
    };
    let setup = bench::Setup {
        endpoints: Endpoints::discover()?,
        engine: common.store_engine,
    };
    bench::check_reachable(&setup).await?;
    let outcome = bench::run(name, &setup, common.quick, common.rounds.into()).await?;
    if common.json {
        output::line(&serde_json::to_string(&outcome)?);
    } else {
        output::line(&outcome.render());
    }
    Ok(ExitCode::SUCCESS)
}

/// Every benchmark in turn: text, JSON lines, or BENCHMARKS.md.
async fn all(common: &Common, markdown: bool) -> anyhow::Result<ExitCode> {
    let endpoints = bench::Setup {
        endpoints: Endpoints::discover()?,
        engine: common.store_engine,
    };
    bench::check_reachable(&endpoints).await?;
    let mut outcomes = Vec::new();
    for name in bench::NAMES {
        if name == "cdc" {
            if let Err(e) = seam_local::cluster::Postgres::discover() {
                eprintln!("seam bench cdc skipped: {e}");
                continue;
            }
        }
        eprintln!("seam bench {name}{} ...", if common.quick { " --quick" } else { "" });
        let o = bench::run(name, &endpoints, common.quick, common.rounds.into()).await?;
        if common.json {
            output::line(&serde_json::to_string(&o)?);
        } else if !markdown {
            output::line(&o.render());
        }
        outcomes.push(o);
    }
    if markdown {
        output::line(&bench::markdown::document(&outcomes, &endpoints, common.quick));
    }
    Ok(ExitCode::SUCCESS)
}
