//! Runs PostgreSQL for the stack's CRUD services, CDC sources and database sinks.
//!
//! The server listens on 127.0.0.1 only and trusts local connections as user `seam` (the
//! brokers are plaintext too), with `wal_level=logical` so CDC sources can open replication
//! slots. PostgreSQL refuses to run as root; when seam runs as root the server runs inside a
//! user namespace (`unshare --user`) as an unprivileged user mapped onto root, so its files
//! stay root's, under SEAM_HOME like every other part of the stack.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::error::LocalError;
use super::layout::Home;
use super::process::{self, Proc};
use super::shape::Shape;

/// The database `seam local up --postgres` creates for the user's own tables.
pub const DEFAULT_DATABASE: &str = "seam";

/// Where the server keeps its data; passed with `-D`, which also marks the process as this
/// home's, so `down` finds it without the state file.
pub fn data_dir(home: &Home, shape: &Shape) -> PathBuf {
    home.postgres_dir(shape).join("data")
}

/// Creates the database cluster the first time (`initdb`), as the user the server runs as.
pub fn prepare(home: &Home, shape: &Shape, dist: &Path) -> Result<(), LocalError> {
    prepare_dir(&data_dir(home, shape), dist)
}

fn prepare_dir(data: &Path, dist: &Path) -> Result<(), LocalError> {
    let data = data.to_path_buf();
    if data.join("PG_VERSION").is_file() {
        return Ok(());
    }
    // A half-made cluster from an interrupted initdb would be refused: start it afresh.
    match std::fs::remove_dir_all(&data) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(LocalError::io("cannot remove", &data)(e)),
        _ => {}
    }
    std::fs::create_dir_all(&data).map_err(LocalError::io("cannot create", &data))?;
    let mut cmd = unprivileged(&dist.join("bin").join("initdb"))?;
    cmd.arg("-D").arg(&data).args([
        "-U",
        "seam",
        "--auth=trust",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
        "--no-instructions",
    ]);
    let out = cmd
        .output()
        .map_err(LocalError::io("cannot run", dist.join("bin/initdb")))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&data);
        return Err(LocalError::InitdbFailed {
            dir: data,
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// Starts the server detached; output goes to `postgres/postgres.log`.
pub fn start(home: &Home, shape: &Shape, dist: &Path) -> Result<(Proc, PathBuf), LocalError> {
    let port = shape.postgres_port.unwrap_or(Shape::DEFAULT_POSTGRES_PORT);
    let log = home.postgres_dir(shape).join("postgres.log");
    let proc = start_in(&data_dir(home, shape), &log, port, dist)?;
    Ok((proc, log))
}

fn start_in(data: &Path, log: &Path, port: u16, dist: &Path) -> Result<Proc, LocalError> {
    let mut cmd = unprivileged(&dist.join("bin").join("postgres"))?;
    cmd.arg("-D").arg(data);
    for setting in [
        "listen_addresses=127.0.0.1".to_string(),
        format!("port={port}"),
        // No Unix socket: nothing here uses one, and its path length is limited.
        "unix_socket_directories=".into(),
        "wal_level=logical".into(),
        "max_replication_slots=32".into(),
        "max_wal_senders=32".into(),
        "shared_buffers=64MB".into(),
    ] {
        cmd.arg("-c").arg(setting);
    }
    process::spawn_detached(cmd, log)
}

/// Waits until the server answers SQL, then creates the `seam` database if it is missing.
pub async fn wait_ready(shape: &Shape, proc: &Proc, log: &Path, timeout: Duration) -> Result<(), LocalError> {
    let port = shape.postgres_port.unwrap_or(Shape::DEFAULT_POSTGRES_PORT);
    wait_ready_on(port, proc, log, timeout).await
}

async fn wait_ready_on(port: u16, proc: &Proc, log: &Path, timeout: Duration) -> Result<(), LocalError> {
    let deadline = Instant::now() + timeout;
    let admin = format!("postgres://seam@127.0.0.1:{port}/postgres");
    loop {
        if !proc.is_running() {
            return Err(LocalError::DiedWhileStarting {
                component: "PostgreSQL".into(),
                log: log.to_path_buf(),
                tail: process::tail(log, 30),
            });
        }
        let last = match ensure_database(&admin, DEFAULT_DATABASE).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(LocalError::NotReady {
                component: "PostgreSQL".into(),
                waited_secs: timeout.as_secs(),
                detail: last,
                log: log.to_path_buf(),
                tail: process::tail(log, 20),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates `database` through the server at `admin_url` unless it exists.
pub async fn ensure_database(admin_url: &str, database: &str) -> Result<(), String> {
    let (client, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("{admin_url}: {e}"))?;
    let driver = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .map_err(|e| e.to_string())?
        .is_some();
    if !exists {
        // Identifiers cannot be bound as parameters; the name is quoted as an identifier.
        let quoted = format!("\"{}\"", database.replace('"', "\"\""));
        if let Err(e) = client.batch_execute(&format!("CREATE DATABASE {quoted}")).await {
            // Another `up` may have created it in the meantime.
            if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(e.to_string());
            }
        }
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}

/// A PostgreSQL server of its own in `dir`, outside any stack: what a fault test crashes
/// without touching the server other tests use. Killed when dropped.
#[derive(Debug)]
pub struct Server {
    dir: PathBuf,
    port: u16,
    dist: PathBuf,
    proc: Option<Proc>,
}

impl Server {
    /// Creates the cluster in `dir` (binaries from `home`'s downloads, fetched if missing) and
    /// starts it on `port`.
    pub async fn start(home: &Home, dir: PathBuf, port: u16) -> Result<Self, LocalError> {
        preflight()?;
        let dist = super::fetch::ensure_postgres(home, &mut |_| {})?;
        std::fs::create_dir_all(&dir).map_err(LocalError::io("cannot create", &dir))?;
        prepare_dir(&dir.join("data"), &dist)?;
        let mut server = Self {
            dir,
            port,
            dist,
            proc: None,
        };
        server.restart().await?;
        Ok(server)
    }

    /// The URL of `database` on it (user `seam`).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://seam@127.0.0.1:{}/{database}", self.port)
    }

    /// SIGKILL to the server and its backends: a crash, WAL recovery on the next start.
    pub fn kill(&mut self) {
        if let Some(p) = self.proc.take().filter(Proc::is_running) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(p.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while p.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            // This process started it, so it is its parent: reap it, or PostgreSQL takes the
            // zombie's pid in `postmaster.pid` for a live server and refuses to start again.
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(p.pid as i32), None);
        }
    }

    /// Starts it (again) and waits until it answers.
    pub async fn restart(&mut self) -> Result<(), LocalError> {
        if self.proc.is_some_and(|p| p.is_running()) {
            return Ok(());
        }
        let log = self.dir.join("postgres.log");
        let proc = start_in(&self.dir.join("data"), &log, self.port, &self.dist)?;
        self.proc = Some(proc);
        wait_ready_on(self.port, &proc, &log, Duration::from_secs(120)).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Checks before anything starts that the server can be run as a non-root user here.
pub fn preflight() -> Result<(), LocalError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let mut cmd = unprivileged(Path::new("true"))?;
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(LocalError::NoUnprivilegedPostgres {
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
        Err(e) => Err(LocalError::NoUnprivilegedPostgres {
            detail: format!("cannot run unshare: {e}"),
        }),
    }
}

/// `program` as a command that runs as a non-root user: itself when seam is not root, else
/// inside a user namespace that maps an unprivileged user (`postgres`, else `nobody`) onto
/// root, so it can read and write root's files but is not root to PostgreSQL's checks.
fn unprivileged(program: &Path) -> Result<Command, LocalError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(Command::new(program));
    }
    let user = ["postgres", "nobody"]
        .into_iter()
        .find_map(|name| nix::unistd::User::from_name(name).ok().flatten())
        .ok_or_else(|| LocalError::NoUnprivilegedPostgres {
            detail: "this machine has neither a `postgres` nor a `nobody` user to run PostgreSQL as".into(),
        })?;
    let mut cmd = Command::new("unshare");
    cmd.arg("--user")
        .arg(format!("--map-user={}", user.uid))
        .arg(format!("--map-group={}", user.gid))
        .arg(program);
    Ok(cmd)
}
