//! `seam cdc run <service>`: runs a `postgres-cdc` source of the topology as this process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use seam::topology::Topology;
use seam_postgres::cdc::{self, CdcOptions};
use tokio_util::sync::CancellationToken;

/// The CDC subcommands.
#[derive(Debug, Subcommand)]
pub enum CdcCommand {
    /// Publish a PostgreSQL database's row changes as a seam service's events: copy the tables
    /// once, then follow logical replication; runs until SIGTERM or SIGINT and prints
    /// `ready <url>` once its HTTP API (snapshot, events, health, metrics) serves.
    Run(RunArgs),
}

/// Options of `seam cdc run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The service, declared with `kind: postgres-cdc` in the topology.
    service: String,
    /// The topology file.
    #[arg(long, short = 't', env = "SEAM_TOPOLOGY")]
    topology: PathBuf,
    /// HTTP port (default: any free port, printed in the `ready` line).
    #[arg(long, env = "SEAM_PORT", default_value_t = 0)]
    port: u16,
    /// Address the HTTP API binds.
    #[arg(long, env = "SEAM_HOST", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    /// Store directory (default: `$SEAM_HOME/services/<service>`).
    #[arg(long, env = "SEAM_STORE")]
    store: Option<PathBuf>,
    /// The store's engine (default: an existing store's, else fjall).
    #[arg(long, env = "SEAM_STORE_ENGINE", value_enum)]
    store_engine: Option<seam::store::StoreEngine>,
    /// Drop the replication slot and copy the tables again first, publishing only the
    /// difference to what was published: after the source stopped at an incompatible table
    /// change that was then reverted, or to re-check the topic against the tables.
    #[arg(long)]
    resync: bool,
}

/// Runs one `seam cdc` subcommand.
pub async fn run(cmd: CdcCommand) -> anyhow::Result<ExitCode> {
    let CdcCommand::Run(args) = cmd;
    let topology = Topology::load(&args.topology)?;
    let spec = topology.service(&args.service).cloned().with_context(|| {
        format!(
            "{} declares no service {}; add it under `services:` with `kind: postgres-cdc`",
            args.topology.display(),
            args.service
        )
    })?;
    let reads: Vec<&str> = topology
        .sources_of(&args.service)
        .iter()
        .map(|s| s.service.as_str())
        .collect();
    if !reads.is_empty() {
        eprintln!(
            "note: {} also reads {reads:?}; this process publishes its tables only. Its database sink runs in an adapter that links its translators (`seam_postgres::adapter`, as examples/customer-order does)",
            args.service
        );
    }
    let store_dir = match args.store {
        Some(dir) => dir,
        None => seam_local::Home::from_env()?
            .root()
            .join("services")
            .join(&args.service),
    };
    let stop = CancellationToken::new();
    let signals = stop.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => return,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        signals.cancel();
    });
    let options = CdcOptions {
        spec,
        store_dir,
        store_engine: args.store_engine,
        bind: SocketAddr::new(args.host, args.port),
        resync: args.resync,
        extra: None,
    };
    cdc::run(options, stop, |url| println!("ready {url}")).await?;
    Ok(ExitCode::SUCCESS)
}
