//! The demo's services as child processes, each `student-affairs serve <service>`. A service
//! keeps its port when it is restarted (after `--chaos` killed it), so its URL never changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use seam_local::cluster::Endpoints;
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
    log: PathBuf,
}

/// How the demo starts a service (again).
#[derive(Clone)]
pub struct Launch {
    endpoints: Endpoints,
    topology: PathBuf,
    data: PathBuf,
}

/// The services the demo runs; shared by the scenario, the report and `--chaos`.
#[derive(Clone)]
pub struct Services {
    running: Arc<Mutex<Vec<Running>>>,
    urls: Arc<Mutex<BTreeMap<&'static str, String>>>,
    launch: Launch,
}

impl Services {
    /// The URL of one service (empty when it was never started).
    pub fn url(&self, which: Which) -> String {
        self.url_of(which.name()).unwrap_or_default()
    }

    /// The URL of a service by name.
    pub fn url_of(&self, name: &str) -> Option<String> {
        self.urls.lock().ok()?.get(name).cloned()
    }

    /// Every started service with its URL, in start order.
    pub fn started(&self) -> Vec<(Which, String)> {
        let urls = self.urls.lock().map(|u| u.clone()).unwrap_or_default();
        Which::ALL
            .into_iter()
            .chain([Which::ScholarshipOffice])
            .filter_map(|w| Some((w, urls.get(w.name())?.clone())))
            .collect()
    }

    /// Starts one more service.
    pub async fn add(&self, which: Which) -> anyhow::Result<String> {
        let running = start_one(&self.launch, which, None).await?;
        let url = running.url.clone();
        self.keep(running);
        Ok(url)
    }

    fn keep(&self, running: Running) {
        if let Ok(mut urls) = self.urls.lock() {
            urls.insert(running.which.name(), running.url.clone());
        }
        if let Ok(mut all) = self.running.lock() {
            all.push(running);
        }
    }

    /// SIGKILLs a service, as a crash would; returns false when it is not running.
    pub async fn kill(&self, which: Which) -> bool {
        let taken = self.running.lock().ok().and_then(|mut all| {
            let i = all.iter().position(|r| r.which == which)?;
            Some(all.remove(i))
        });
        let Some(mut running) = taken else { return false };
        if let Some(pid) = running.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = running.child.wait().await;
        true
    }

    /// Starts a killed service again on its port, with its store (it resumes from there).
    pub async fn restart(&self, which: Which) -> anyhow::Result<()> {
        let port = self
            .url_of(which.name())
            .and_then(|u| u.rsplit(':').next()?.parse::<u16>().ok());
        let running = start_one(&self.launch, which, port).await?;
        self.keep(running);
        Ok(())
    }

    /// SIGTERM to each, then waits for them.
    pub async fn stop(self) {
        let all: Vec<Running> = self
            .running
            .lock()
            .map(|mut a| a.drain(..).collect())
            .unwrap_or_default();
        for r in &all {
            if let Some(pid) = r.child.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
        for mut r in all {
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
        let all: Vec<Running> = self
            .running
            .lock()
            .map(|mut a| a.drain(..).collect())
            .unwrap_or_default();
        for r in all {
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
    let services = Services {
        running: Arc::default(),
        urls: Arc::default(),
        launch: Launch {
            endpoints: endpoints.clone(),
            topology: topology.to_path_buf(),
            data: data.to_path_buf(),
        },
    };
    for which in Which::ALL {
        services.add(which).await?;
    }
    Ok(services)
}

/// Starts one service (on `port`, else a free one) and waits until it serves.
async fn start_one(launch: &Launch, which: Which, port: Option<u16>) -> anyhow::Result<Running> {
    let exe = std::env::current_exe().context("finding this program to start the services")?;
    let log = launch.data.join(format!("{}.log", which.name()));
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut command = Command::new(&exe);
    command
        .arg("serve")
        .arg(which.name())
        .arg("--store")
        .arg(launch.data.join(which.name()))
        .arg("--topology")
        .arg(&launch.topology);
    if let Some(port) = port {
        command.arg("--port").arg(port.to_string());
    }
    // On the local stack each service finds it through SEAM_HOME, as its own principal with its
    // own credentials on the secure stack; handing it SEAM_BROKERS would make it an external
    // cluster without them. An external cluster's variables are inherited as they are.
    if !matches!(launch.endpoints.origin, seam_local::cluster::Origin::LocalStack { .. }) {
        command
            .env("SEAM_BROKERS", launch.endpoints.bootstrap_servers())
            .env("SEAM_REGISTRY", launch.endpoints.registry()?);
    }
    let mut child = command
        .env_remove("SEAM_PORT")
        .env_remove("SEAM_STORE")
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
