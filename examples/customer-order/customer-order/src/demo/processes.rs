//! The example's processes (two CRUD services and two adapters), each this binary with a
//! subcommand. A process keeps its port when it is restarted after a kill, so its URL never
//! changes. Tests drive them the same way.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One running process.
pub struct Proc {
    /// What it is: `crud customer-service`, `adapter order-service`, ...
    pub name: String,
    /// Its base URL.
    pub url: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    log: PathBuf,
    child: Child,
}

impl Proc {
    /// Starts `exe args...` (a `--port` is added), logging to `<logs>/<name>.log` where the
    /// name is the first two arguments (`adapter order-service`); returns once it prints
    /// `ready <url>`.
    pub async fn start(exe: &Path, args: &[&str], logs: &Path) -> anyhow::Result<Self> {
        Self::start_with(exe, args, logs, Vec::new()).await
    }

    /// Like [`Proc::start`], with more environment variables (kept for restarts).
    pub async fn start_with(
        exe: &Path,
        args: &[&str],
        logs: &Path,
        envs: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        let name = args.iter().take(2).copied().collect::<Vec<_>>().join(" ");
        Self::spawn(exe, name, args.iter().map(|a| a.to_string()).collect(), envs, logs, 0).await
    }

    async fn spawn(
        exe: &Path,
        name: String,
        args: Vec<String>,
        envs: Vec<(String, String)>,
        logs: &Path,
        port: u16,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(logs).with_context(|| format!("creating {}", logs.display()))?;
        let log = logs.join(format!("{}.log", name.split_whitespace().collect::<Vec<_>>().join("-")));
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut child = Command::new(exe)
            .args(&args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .arg("--port")
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} {}", exe.display(), args.join(" ")))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("ready ") {
                    return Ok::<_, std::io::Error>(Some(url.trim().to_string()));
                }
            }
            Ok(None)
        })
        .await;
        let url = match ready {
            Ok(Ok(Some(url))) => url,
            _ => {
                let _ = child.kill().await;
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                bail!(
                    "{name} did not start; the end of {}:\n{}",
                    log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        };
        // Keep reading stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            name,
            url,
            args,
            envs,
            log,
            child,
        })
    }

    /// SIGKILL, as a crash; waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.wait().await;
    }

    /// Starts it again on its port (after [`Proc::kill`]).
    pub async fn restart(&mut self, exe: &Path) -> anyhow::Result<()> {
        let port: u16 = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("the URL has no port")?;
        let logs = self.log.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut last = None;
        // The port may linger for a moment after a kill.
        for _ in 0..20 {
            match Self::spawn(
                exe,
                self.name.clone(),
                self.args.clone(),
                self.envs.clone(),
                &logs,
                port,
            )
            .await
            {
                Ok(fresh) => {
                    *self = fresh;
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("{} did not restart", self.name)))
    }

    /// SIGTERM, then waits (SIGKILL after 20 s).
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            self.kill().await;
        }
    }

    /// Leaves it running after this program ends.
    pub fn detach(self) {
        std::mem::forget(self);
    }
}
