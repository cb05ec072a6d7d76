//! `seam bench <name> [--quick] [--json] [--rounds N]`: one benchmark against the cluster in use,
//! baseline and seam interleaved; text for people, one JSON object for tools.

use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::output;
use crate::bench;
use crate::cluster::Endpoints;

/// The benchmarks.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Name {
    /// consume → decode → translate → apply → publish vs a raw rdkafka passthrough, 1 KB and 200 B.
    Translator,
}

/// Options of `seam bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark.
    #[arg(value_enum)]
    name: Name,
    /// Small volumes: finishes within about a minute (for CI and a first look).
    #[arg(long)]
    quick: bool,
    /// Rounds of baseline + seam, interleaved (at least 5).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(5..=100))]
    rounds: u16,
    /// Print one JSON object: name, ratio, target, baseline, subject, settings (and cases).
    #[arg(long)]
    json: bool,
}

/// Runs `seam bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let endpoints = Endpoints::discover()?;
    let outcome = match args.name {
        Name::Translator => bench::translator::run(&endpoints, args.quick, args.rounds.into()).await?,
    };
    if args.json {
        output::line(&serde_json::to_string(&outcome)?);
    } else {
        output::line(&outcome.render());
    }
    Ok(ExitCode::SUCCESS)
}
