//! The `seam` command line: parses arguments, runs the command, and turns errors into a
//! message on stderr and a non-zero exit code (never a panic or a backtrace).

mod bench;
mod cdc;
mod local;

use seam_ops::commands::{check, console, deploy, dlq, doctor, reconcile, register, replay, snapshot, status};

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// seam: keep services in sync through events on Kafka.
#[derive(Debug, Parser)]
#[command(name = "seam", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local Kafka cluster and schema registry (fetched from Maven Central, no Docker).
    #[command(subcommand)]
    Local(local::LocalCommand),
    /// Check that the cluster and the registry answer: metadata, a produce/consume
    /// round trip with acks=all, and the registry's compatibility setting.
    Doctor(doctor::DoctorArgs),
    /// Inspect dead letters and redrive parked subjects.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Export a running service's snapshot to a file, inspect one, or import one into a consumer.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Add a subscription to the topology and the running consumer, bootstrapping it from the
    /// source's snapshot and its offset map.
    Register(register::RegisterArgs),
    /// Rebuild a consumer's replicas from the topics into a shadow store, compare, and swap.
    Replay(replay::ReplayArgs),
    /// Make a cluster and registry hold what a topology declares (topics, configs, schemas,
    /// ACLs, users): prints a per-resource plan, applies it, deletes nothing unasked.
    Deploy(deploy::DeployArgs),
    /// Check that every translator's reader schema reads every registered version of what it
    /// consumes, and the versions the topology would register (deploy's gate, changing nothing).
    Check(check::CheckArgs),
    /// Audit every flow: compare source and replica by bucketed digests down to the subjects
    /// that differ; --repair rebuilds exactly those by a targeted replay; --every runs it as a job.
    Reconcile(reconcile::ReconcileArgs),
    /// Per consumer, source and partition: position, end offset, lag in events and seconds,
    /// dead letters and parked events; exit code 3 when a lag exceeds --max-lag.
    Status(status::StatusArgs),
    /// Benchmark seam against a baseline run side by side on the cluster in use.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Serve the web console: the topology as a graph with each flow's state, lag per
    /// partition, dead letters with redrive, bootstraps and replays, the deploy plan; live.
    Console(console::ConsoleArgs),
    /// Run a `postgres-cdc` source: a CRUD service's PostgreSQL row changes as seam events.
    #[command(subcommand)]
    Cdc(cdc::CdcCommand),
}

/// Entry point of the `seam` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Local(cmd) => local::run(cmd).await,
            Command::Doctor(args) => doctor::run(args).await,
            Command::Dlq(cmd) => dlq::run(cmd).await,
            Command::Snapshot(cmd) => snapshot::run(cmd).await,
            Command::Register(args) => register::run(args).await,
            Command::Replay(args) => replay::run(args).await,
            Command::Deploy(args) => deploy::run(args).await,
            Command::Check(args) => check::run(args).await,
            Command::Reconcile(args) => reconcile::run(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Cdc(cmd) => cdc::run(cmd).await,
            Command::Console(args) => console::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `SEAM_LOG` (or `RUST_LOG`) selects levels, warnings by default.
fn init_tracing() {
    let filter = std::env::var("SEAM_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "warn".into()))
        .try_init();
}
