//! The four services as child processes of the demo, each `student-affairs serve <service>`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use seam::cluster::Endpoints;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::serve::Which;

/// A running service.
pub struct Running {
    /// Which one.
    pub which: Which,
    /// Its base URL.
    pub url: String,
    child: Child,
    log: std::path::PathBuf,
}

/// All four.
pub struct Services {
    /// In start order.
    pub all: Vec<Running>,
}

impl Services {
    /// The URL of one service.
    pub fn url(&self, which: Which) -> &str {
        self.all
            .iter()
            .find(|r| r.which == which)
            .map(|r| r.url.as_str())
            .unwrap_or_default()
    }

    /// The URL of a service by name.
    pub fn url_of(&self, name: &str) -> Option<&str> {
        self.all.iter().find(|r| r.which.name() == name).map(|r| r.url.as_str())
    }

    /// SIGTERM to each, then waits for them.
    pub async fn stop(mut self) {
        for r in &self.all {
            if let Some(pid) = r.child.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        for r in &mut self.all {
            if tokio::time::timeout(Duration::from_secs(60), r.child.wait())
                .await
                .is_err()
            {
                let _ = r.child.kill().await;
            }
        }
    }

    /// Leaves them running and prints where.
    pub fn detach(self) {
        for r in self.all {
            eprintln!(
                "{:<16} {}  (pid {}, log {})",
                r.which.name(),
                r.url,
                r.child.id().unwrap_or(0),
                r.log.display()
            );
            std::mem::forget(r.child);
        }
    }
}

/// Starts the four founding services and waits until each serves.
pub async fn start_all(endpoints: &Endpoints, topology: &Path, data: &Path) -> anyhow::Result<Services> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let mut all = Vec::new();
    for which in Which::ALL {
        all.push(start_one(endpoints, topology, data, which, &[]).await?);
    }
    Ok(Services { all })
}

/// Starts one service with extra `serve` arguments and waits until it serves.
pub async fn start_one(
    endpoints: &Endpoints,
    topology: &Path,
    data: &Path,
    which: Which,
    extra: &[String],
) -> anyhow::Result<Running> {
    let exe = std::env::current_exe().context("finding this program to start the services")?;
    let log = data.join(format!("{}.log", which.name()));
    let stderr = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = Command::new(&exe)
        .arg("serve")
        .arg(which.name())
        .arg("--store")
        .arg(data.join(which.name()))
        .arg("--topology")
        .arg(topology)
        .args(extra)
        .env("SEAM_BROKERS", endpoints.bootstrap_servers())
        .env("SEAM_REGISTRY", endpoints.registry()?)
        .env_remove("SA_PORT")
        .env_remove("SA_STORE")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", which.name()))?;
    let stdout = child.stdout.take().context("service stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let url = match tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await {
        Ok(Ok(Some(line))) if line.starts_with("ready ") => line.trim_start_matches("ready ").to_string(),
        _ => {
            let _ = child.kill().await;
            bail!(
                "{} did not start; its log ({}):\n{}",
                which.name(),
                log.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    };
    Ok(Running { which, url, child, log })
}
