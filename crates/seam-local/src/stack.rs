//! `seam local up | down | status` and the broker faults the test kit injects.
//!
//! `up` makes the recorded stack run: it starts whatever is not running (all of it the
//! first time, one crashed broker later), checks Java and ports before it starts
//! anything, and stops what it started when a component fails to come up, so a failed
//! `up` leaves nothing behind.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;
use serde::Serialize;

use super::error::LocalError;
use super::fetch;
use super::java;
use super::kafka;
use super::layout::{Home, APICURIO_VERSION, KAFKA_VERSION};
use super::ports;
use super::postgres;
use super::process::{self, Proc};
use super::registry;
use super::shape::Shape;
use super::state::{self, NodeState, PostgresState, RegistryState, StackState};

/// How long brokers may take to register (three JVMs on two cores start slowly).
const KAFKA_READY: Duration = Duration::from_secs(180);
/// How long the registry may take to replay its journal and answer.
const REGISTRY_READY: Duration = Duration::from_secs(240);
/// SIGTERM grace before SIGKILL.
const REGISTRY_GRACE: Duration = Duration::from_secs(30);
/// Brokers do a controlled shutdown; give them longer.
const BROKER_GRACE: Duration = Duration::from_secs(60);
/// How long PostgreSQL may take to recover its WAL after a crash and answer.
const POSTGRES_READY: Duration = Duration::from_secs(120);
/// PostgreSQL's fast shutdown checkpoints and exits; a few seconds on a small database.
const POSTGRES_GRACE: Duration = Duration::from_secs(30);

/// What `up` did.
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    /// True when everything was running already and nothing was started.
    pub already_running: bool,
    /// Components started by this call.
    pub started: Vec<String>,
    /// Bootstrap servers.
    pub brokers: Vec<String>,
    /// Confluent-compatible registry URL.
    pub registry: String,
    /// PostgreSQL's URL for the `seam` database, when the stack runs PostgreSQL.
    pub postgres: Option<String>,
    /// The Java the brokers run on (when any was started).
    pub kafka_java: Option<String>,
    /// The Java the registry runs on (when it was started).
    pub registry_java: Option<String>,
    /// Wall time of the call.
    pub elapsed_secs: f64,
}

/// Brings the stack of `requested` shape up, starting only what is not running. PostgreSQL
/// can join a running stack (`up --postgres` after `up`); an `up` without it leaves a
/// recorded PostgreSQL in place.
pub async fn up(home: &Home, requested: Shape, say: &mut dyn FnMut(&str)) -> Result<UpReport, LocalError> {
    let began = Instant::now();
    let _lock = lock(home)?;
    let mut st = match StackState::load(home)? {
        Some(mut s) if s.processes().iter().any(Proc::is_running) => {
            let other_postgres = matches!(
                (s.shape.postgres_port, requested.postgres_port),
                (Some(a), Some(b)) if a != b
            );
            if s.shape.brokers != requested.brokers || s.shape.secure != requested.secure || other_postgres {
                return Err(LocalError::OtherShapeRunning {
                    running: s.shape.describe(),
                    requested: requested.describe(),
                    flags: requested.flags(),
                });
            }
            if s.shape.postgres_port.is_none() && requested.postgres_port.is_some() {
                if let Some((port, _)) = requested
                    .postgres_port
                    .and_then(|p| s.shape.ports().into_iter().find(|(q, _)| *q == p))
                {
                    return Err(LocalError::PostgresPortClash {
                        port,
                        used_by: "the running stack".into(),
                    });
                }
                s.shape.postgres_port = requested.postgres_port;
            }
            s
        }
        _ => fresh_state(home, requested),
    };
    // A process killed a moment ago is still releasing its ports: let it finish first.
    for p in st.processes() {
        p.wait_if_exiting(Duration::from_secs(15));
    }
    let shape = st.shape;
    let down_nodes: Vec<usize> = (0..st.nodes.len())
        .filter(|i| !st.nodes[*i].process.is_some_and(|p| p.is_running()))
        .collect();
    let registry_down = !st
        .registry
        .as_ref()
        .and_then(|r| r.process)
        .is_some_and(|p| p.is_running());
    let postgres_down = shape.postgres_port.is_some()
        && !st
            .postgres
            .as_ref()
            .and_then(|p| p.process)
            .is_some_and(|p| p.is_running());
    let mut report = UpReport {
        already_running: down_nodes.is_empty() && !registry_down && !postgres_down,
        started: Vec::new(),
        brokers: shape.bootstrap(),
        registry: shape.registry_url(),
        postgres: shape.postgres_url(postgres::DEFAULT_DATABASE),
        kafka_java: None,
        registry_java: None,
        elapsed_secs: 0.0,
    };
    if report.already_running {
        report.elapsed_secs = began.elapsed().as_secs_f64();
        return Ok(report);
    }

    // Preflight: everything that can be checked before anything starts.
    let kafka_java = java::for_kafka()?;
    let registry_java = if registry_down {
        Some(java::for_registry()?)
    } else {
        None
    };
    let mut wanted = Vec::new();
    for &i in &down_nodes {
        let n = st.nodes[i].ports;
        wanted.push((n.client_port, format!("Kafka broker {} client listener", n.node_id)));
        wanted.push((
            n.controller_port,
            format!("Kafka broker {} controller listener", n.node_id),
        ));
    }
    if registry_down {
        wanted.push((shape.registry_port, "schema registry API".into()));
        wanted.push((shape.management_port(), "schema registry health".into()));
    }
    if let Some(port) = shape.postgres_port.filter(|_| postgres_down) {
        wanted.push((port, "PostgreSQL".into()));
        postgres::preflight()?;
    }
    let taken = ports::taken(&wanted);
    if !taken.is_empty() {
        return Err(LocalError::PortsInUse(taken));
    }
    let dist = fetch::ensure(home, say)?;
    kafka::prepare(home, &shape, &kafka_java, &dist)?;
    let postgres_dist = if postgres_down {
        let dist = fetch::ensure_postgres(home, say)?;
        postgres::prepare(home, &shape, &dist)?;
        Some(dist)
    } else {
        None
    };

    let mut started: Vec<Proc> = Vec::new();
    if !down_nodes.is_empty() {
        say(&format!(
            "starting {} Kafka broker(s) on {} ({kafka_java})",
            down_nodes.len(),
            shape.bootstrap().join(",")
        ));
        report.kafka_java = Some(kafka_java.to_string());
        st.kafka_java = kafka_java.path.clone();
        let mut waiting = Vec::new();
        for &i in &down_nodes {
            let ports = st.nodes[i].ports;
            let (proc, log) = match kafka::start_node(home, &shape, &ports, &kafka_java.path, &dist) {
                Ok(started_node) => started_node,
                Err(e) => return Err(abandon(home, &mut st, &started, e)),
            };
            st.nodes[i].process = Some(proc);
            st.nodes[i].log = log.clone();
            started.push(proc);
            waiting.push((ports.node_id, proc, log));
            report.started.push(format!("kafka-{}", ports.node_id));
        }
        st.save(home)?;
        if let Err(e) = kafka::wait_ready(&shape.bootstrap(), &security(home, &shape)?, &waiting, KAFKA_READY).await {
            return Err(abandon(home, &mut st, &started, e));
        }
    }
    if let Some(java) = registry_java {
        say(&format!(
            "starting the schema registry on {} ({java})",
            shape.registry_url()
        ));
        report.registry_java = Some(java.to_string());
        let (proc, log) = match registry::start(home, &shape, &java.path, &dist) {
            Ok(r) => r,
            Err(e) => return Err(abandon(home, &mut st, &started, e)),
        };
        st.registry = Some(RegistryState {
            process: Some(proc),
            log: log.clone(),
            java: java.path.clone(),
        });
        started.push(proc);
        report.started.push("registry".into());
        st.save(home)?;
        if let Err(e) = registry::wait_ready(&shape, &proc, &log, REGISTRY_READY).await {
            return Err(abandon(home, &mut st, &started, e));
        }
    }
    if let Some(dist) = postgres_dist {
        say(&format!(
            "starting PostgreSQL on 127.0.0.1:{} ({})",
            shape.postgres_port.unwrap_or_default(),
            dist.display()
        ));
        let (proc, log) = match postgres::start(home, &shape, &dist) {
            Ok(r) => r,
            Err(e) => return Err(abandon(home, &mut st, &started, e)),
        };
        st.postgres = Some(PostgresState {
            process: Some(proc),
            log: log.clone(),
        });
        started.push(proc);
        report.started.push("postgres".into());
        st.save(home)?;
        if let Err(e) = postgres::wait_ready(&shape, &proc, &log, POSTGRES_READY).await {
            return Err(abandon(home, &mut st, &started, e));
        }
    }
    st.save(home)?;
    report.elapsed_secs = began.elapsed().as_secs_f64();
    Ok(report)
}

fn fresh_state(home: &Home, shape: Shape) -> StackState {
    StackState {
        shape,
        kafka_version: KAFKA_VERSION.into(),
        apicurio_version: APICURIO_VERSION.into(),
        kafka_java: PathBuf::new(),
        nodes: shape
            .nodes()
            .into_iter()
            .map(|ports| NodeState {
                ports,
                process: None,
                log: home.node_dir(&shape, ports.node_id).join("kafka.log"),
            })
            .collect(),
        registry: None,
        postgres: None,
    }
}

/// Stops what this `up` started and records that, then hands back the error.
fn abandon(home: &Home, st: &mut StackState, started: &[Proc], error: LocalError) -> LocalError {
    process::stop_all(started, Duration::from_secs(15));
    for n in &mut st.nodes {
        if n.process.is_some_and(|p| started.contains(&p)) {
            n.process = None;
        }
    }
    if let Some(r) = &mut st.registry {
        if r.process.is_some_and(|p| started.contains(&p)) {
            r.process = None;
        }
    }
    if let Some(p) = &mut st.postgres {
        if p.process.is_some_and(|p| started.contains(&p)) {
            p.process = None;
        }
    }
    let saved = if st.processes().iter().any(Proc::is_running) {
        st.save(home)
    } else {
        state::remove(home)
    };
    if let Err(e) = saved {
        tracing::warn!(error = %e, "could not record the stack after a failed start");
    }
    error
}

/// What `down` did.
#[derive(Debug, Clone, Serialize)]
pub struct DownReport {
    /// Processes asked to stop.
    pub stopped: Vec<u32>,
    /// Processes that ignored SIGTERM and were killed.
    pub killed: Vec<u32>,
    /// Whether data was removed.
    pub purged: bool,
}

/// Stops every process of this SEAM_HOME (recorded or found by its marker argument): the
/// registry and PostgreSQL first, then all brokers together; with `purge`, removes all
/// stack data.
pub fn down(home: &Home, purge: bool) -> Result<DownReport, LocalError> {
    let _lock = lock(home)?;
    let recorded = match StackState::load(home) {
        Ok(Some(s)) => s.processes(),
        Ok(None) => Vec::new(),
        // A damaged state file must not keep `down` from stopping the JVMs.
        Err(LocalError::BadState { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut all: Vec<Proc> = recorded.into_iter().filter(Proc::is_running).collect();
    for p in running_processes_of(home) {
        if !all.iter().any(|q| q.pid == p.pid) {
            all.push(p);
        }
    }
    let databases: Vec<Proc> = postgres_servers(home);
    let (registries, brokers): (Vec<Proc>, Vec<Proc>) = all
        .iter()
        .filter(|p| !databases.iter().any(|d| d.pid == p.pid))
        .partition(|p| process::has_argument(p.pid, "-Dseam.component=registry"));
    let mut killed = process::stop_all(&registries, REGISTRY_GRACE);
    killed.extend(process::stop_all_with(&databases, Signal::SIGINT, POSTGRES_GRACE));
    killed.extend(process::stop_all(&brokers, BROKER_GRACE));
    state::remove(home)?;
    if purge {
        let local = home.local();
        match std::fs::remove_dir_all(&local) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(LocalError::io("cannot remove", &local)(e));
            }
            _ => {}
        }
    }
    Ok(DownReport {
        stopped: all.iter().map(|p| p.pid).collect(),
        killed: killed.iter().map(|p| p.pid).collect(),
        purged: purge,
    })
}

/// Pids of every running process of the stack of this SEAM_HOME (JVMs and PostgreSQL),
/// recorded or not: what `down` stops, and what must be empty after it.
pub fn running_processes(home: &Home) -> Vec<u32> {
    running_processes_of(home).iter().map(|p| p.pid).collect()
}

fn running_processes_of(home: &Home) -> Vec<Proc> {
    let mut all = process::find_by_argument(&kafka::marker(home));
    all.extend(postgres_servers(home));
    all
}

/// Every PostgreSQL server whose data folder is inside this home's stacks (`-D <dir>`).
fn postgres_servers(home: &Home) -> Vec<Proc> {
    let local = home.local();
    process::find_by(|arg| {
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(arg));
        path.starts_with(&local) && path.ends_with("postgres/data")
    })
}

/// One component as `status` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentStatus {
    /// `kafka-<id>` or `registry`.
    pub name: String,
    /// `broker` or `registry`.
    pub role: &'static str,
    /// Where it listens.
    pub address: String,
    /// Its pid, when started.
    pub pid: Option<u32>,
    /// `running` or `stopped`.
    pub state: &'static str,
    /// Its log file.
    pub log: PathBuf,
}

/// The local stack as `seam local status` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct StackStatus {
    /// Bootstrap servers.
    pub brokers: Vec<String>,
    /// Confluent-compatible registry URL.
    pub registry: String,
    /// PostgreSQL's URL for the `seam` database, when the stack runs PostgreSQL.
    pub postgres: Option<String>,
    /// Kafka release.
    pub kafka_version: String,
    /// Registry release.
    pub apicurio_version: String,
    /// Each broker and the registry.
    pub components: Vec<ComponentStatus>,
    /// The SEAM_HOME it belongs to.
    pub home: PathBuf,
}

impl StackStatus {
    /// True when every component runs.
    pub fn all_running(&self) -> bool {
        self.components.iter().all(|c| c.state == "running")
    }
}

/// The recorded stack and whether each of its processes runs; `None` when none is recorded.
pub fn status(home: &Home) -> Result<Option<StackStatus>, LocalError> {
    let Some(st) = StackState::load(home)? else {
        return Ok(None);
    };
    let state_of = |p: Option<Proc>| {
        if p.is_some_and(|p| p.is_running()) {
            "running"
        } else {
            "stopped"
        }
    };
    let mut components: Vec<ComponentStatus> = st
        .nodes
        .iter()
        .map(|n| ComponentStatus {
            name: format!("kafka-{}", n.ports.node_id),
            role: "broker",
            address: format!("127.0.0.1:{}", n.ports.client_port),
            pid: n.process.map(|p| p.pid),
            state: state_of(n.process),
            log: n.log.clone(),
        })
        .collect();
    components.push(ComponentStatus {
        name: "registry".into(),
        role: "registry",
        address: st.shape.registry_url(),
        pid: st.registry.as_ref().and_then(|r| r.process).map(|p| p.pid),
        state: state_of(st.registry.as_ref().and_then(|r| r.process)),
        log: st
            .registry
            .as_ref()
            .map(|r| r.log.clone())
            .unwrap_or_else(|| home.stack_dir(&st.shape).join("registry.log")),
    });
    if let Some(port) = st.shape.postgres_port {
        let process = st.postgres.as_ref().and_then(|p| p.process);
        components.push(ComponentStatus {
            name: "postgres".into(),
            role: "database",
            address: format!("127.0.0.1:{port}"),
            pid: process.map(|p| p.pid),
            state: state_of(process),
            log: home.postgres_dir(&st.shape).join("postgres.log"),
        });
    }
    Ok(Some(StackStatus {
        brokers: st.shape.bootstrap(),
        registry: st.shape.registry_url(),
        postgres: st.shape.postgres_url(postgres::DEFAULT_DATABASE),
        kafka_version: st.kafka_version,
        apicurio_version: st.apicurio_version,
        components,
        home: home.root().to_path_buf(),
    }))
}

/// Kills one broker with SIGKILL (a crash, no controlled shutdown) and waits until it is gone.
pub fn kill_broker(home: &Home, node_id: u8) -> Result<(), LocalError> {
    let _lock = lock(home)?;
    let st = StackState::load(home)?.ok_or_else(|| LocalError::NotRunning(home.state_file()))?;
    let node = node(&st, node_id)?;
    if let Some(p) = node.process {
        p.signal(Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Kills the stack's PostgreSQL with SIGKILL (a crash: no checkpoint, WAL recovery on the next
/// start) and waits until the server and its backends are gone. `up` starts it again.
pub fn kill_postgres(home: &Home) -> Result<(), LocalError> {
    let _lock = lock(home)?;
    let st = StackState::load(home)?.ok_or_else(|| LocalError::NotRunning(home.state_file()))?;
    if let Some(p) = st.postgres.as_ref().and_then(|p| p.process).filter(Proc::is_running) {
        // The whole process group: backends would otherwise linger until they notice.
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(p.pid as i32), Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// Starts one stopped broker again with its old data and waits until it is registered.
pub async fn restart_broker(home: &Home, node_id: u8) -> Result<(), LocalError> {
    let _lock = lock(home)?;
    let mut st = StackState::load(home)?.ok_or_else(|| LocalError::NotRunning(home.state_file()))?;
    let i = node(&st, node_id)?.ports.node_id as usize - 1;
    if st.nodes[i].process.is_some_and(|p| p.is_running()) {
        return Ok(());
    }
    let dist = fetch::ensure(home, &mut |_| {})?;
    let java = java::for_kafka()?;
    let (proc, log) = kafka::start_node(home, &st.shape, &st.nodes[i].ports, &java.path, &dist)?;
    st.nodes[i].process = Some(proc);
    st.save(home)?;
    let security = security(home, &st.shape)?;
    kafka::wait_ready(&st.shape.bootstrap(), &security, &[(node_id, proc, log)], KAFKA_READY).await
}

/// The operator's client properties: empty for a plaintext stack.
fn security(home: &Home, shape: &Shape) -> Result<BTreeMap<String, String>, LocalError> {
    if !shape.secure {
        return Ok(BTreeMap::new());
    }
    let path = home.secure_dir(shape).join("admin.properties");
    crate::props::KafkaProps::load(&path)
        .map(|p| p.0)
        .map_err(|e| LocalError::Tls(e.to_string()))
}

fn node(st: &StackState, node_id: u8) -> Result<&NodeState, LocalError> {
    st.nodes
        .iter()
        .find(|n| n.ports.node_id == node_id)
        .ok_or(LocalError::NoSuchNode {
            node_id,
            brokers: st.shape.brokers,
        })
}

/// One `seam local` command at a time per SEAM_HOME.
fn lock(home: &Home) -> Result<Flock<File>, LocalError> {
    let dir = home.local();
    std::fs::create_dir_all(&dir).map_err(LocalError::io("cannot create", &dir))?;
    let path = dir.join(".lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(LocalError::io("cannot open", &path))?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| LocalError::io("cannot lock", &path)(errno.into()))
}
