//! `customer-order adapter <service>`: the service's CDC source and database sink in one
//! process, with the example's translators linked.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use seam::topology::Topology;
use seam_postgres::adapter::{self, AdapterOptions};
use seam_postgres::cdc::CdcOptions;
use tokio_util::sync::CancellationToken;

/// Options of `adapter`.
#[derive(Debug, Clone, Args)]
pub struct AdapterArgs {
    /// `customer-service` or `order-service`.
    pub service: String,
    /// The topology file (default: deploy/customer-order.yaml).
    #[arg(long, short = 't')]
    pub topology: Option<PathBuf>,
    /// Port of the HTTP API on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// The CDC source's store (default: `$SEAM_HOME/customer-order/<service>`).
    #[arg(long)]
    pub store: Option<PathBuf>,
}

/// Runs the adapter until SIGINT or SIGTERM.
pub async fn run(args: AdapterArgs) -> anyhow::Result<()> {
    let path = args.topology.clone().unwrap_or_else(crate::default_topology);
    let topology = Topology::load(&path)?;
    let Some(spec) = topology.service(&args.service).cloned() else {
        bail!(
            "{} declares no service {}; the example's are customer-service and order-service",
            path.display(),
            args.service
        );
    };
    if crate::translators::of(&args.service).is_empty() {
        bail!("this build links no translators for {}", args.service);
    }
    let store_dir = match &args.store {
        Some(d) => d.clone(),
        None => seam_local::Home::from_env()?
            .root()
            .join("customer-order")
            .join(&args.service),
    };
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        on_signal.cancel();
    });
    let options = AdapterOptions {
        cdc: CdcOptions {
            spec,
            store_dir,
            store_engine: None,
            bind: SocketAddr::from(([127, 0, 0, 1], args.port)),
            resync: false,
            extra: None,
        },
        topology,
        translators: crate::translators::of(&args.service),
    };
    adapter::run(options, stop, |url| println!("ready {url}"))
        .await
        .with_context(|| format!("the adapter of {}", args.service))
}
