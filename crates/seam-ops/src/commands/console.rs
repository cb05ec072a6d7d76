//! `seam console`: the web console over the cluster the CLI reaches (see [`crate::console`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::output;
use crate::console::{self, collect::Scope, Config};
use seam::topology::Topology;
use seam_local::cluster::Endpoints;

/// Options of `seam console`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The topology to show, with its deploy plan; default: the services running locally
    /// (announced in $SEAM_HOME/run), each asked what it reads.
    #[arg(short = 't', long = "topology", value_name = "FILE")]
    topology: Option<PathBuf>,
    /// The port to serve on (0: any free one).
    #[arg(long, default_value_t = 7600)]
    port: u16,
    /// The address to serve on; the console can redrive dead letters, so it listens on this
    /// machine only unless told otherwise.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// A service's base URL, as SERVICE=URL (repeatable); default: its announced address.
    #[arg(long, value_parser = service_url)]
    url: Vec<(String, String)>,
    /// How often to read the cluster and the services (`2s`, `500ms`).
    #[arg(long, default_value = "2s", value_parser = parse_every)]
    every: Duration,
}

pub(crate) fn service_url(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((s, u)) if !s.is_empty() && seam::runtime::is_url(u) => {
            Ok((s.to_string(), u.trim_end_matches('/').to_string()))
        }
        _ => Err(format!("`{value}`: expected SERVICE=http://host:port")),
    }
}

fn parse_every(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(d) if d >= Duration::from_millis(200) => Ok(d),
        Ok(_) => Err(format!(
            "`{value}`: at least 200ms, or the console reads the cluster in a loop"
        )),
        Err(_) => Err(format!("`{value}`: give a duration (2s, 500ms)")),
    }
}

/// Runs `seam console` until interrupted.
pub async fn run(args: ConsoleArgs) -> anyhow::Result<ExitCode> {
    let topology = args.topology.as_deref().map(Topology::load).transpose()?;
    let endpoints = Endpoints::discover()?;
    let scope = Scope {
        topology,
        urls: args.url.iter().cloned().collect::<BTreeMap<_, _>>(),
    };
    let config = Config {
        listen: SocketAddr::new(args.bind, args.port),
        scope,
        every: args.every,
        client: endpoints.client(),
        cluster: endpoints.bootstrap_servers(),
        registry: endpoints.registry().ok().map(str::to_string),
    };
    let (ready, bound) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(console::serve(config, Some(ready)));
    if let Ok(addr) = bound.await {
        output::line(&format!(
            "seam console on http://{addr}/ (cluster {}); Ctrl-C stops it",
            endpoints.bootstrap_servers()
        ));
    }
    tokio::select! {
        served = server => {
            served??;
            Ok(ExitCode::SUCCESS)
        }
        _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
    }
}
