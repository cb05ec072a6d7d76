//! What can go wrong while running the local stack, each with the cause and the fix.

use std::path::PathBuf;

/// One reason `seam local` could not do what was asked. Every message names the
/// cause and what to do; all of them are fatal for the command (nothing to retry
/// automatically), so the CLI prints them and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Neither SEAM_HOME nor HOME is set.
    #[error("cannot tell where to keep the local stack: neither SEAM_HOME nor HOME is set; set SEAM_HOME to a writable folder")]
    NoHome,

    /// No Java of the required version was found.
    #[error("no Java {needed}+ found for {purpose} ({found}); {fix}")]
    JavaMissing {
        /// Minimum major version.
        needed: u32,
        /// What needs it (Kafka, the schema registry).
        purpose: &'static str,
        /// What was looked at and found.
        found: String,
        /// How to fix it.
        fix: &'static str,
    },

    /// `mvn` is not installed.
    #[error("Maven (`mvn`) is needed once to fetch {what} from Maven Central, but it is not on PATH; install it (e.g. `apt-get install maven`) and run the command again")]
    MavenMissing {
        /// What was to be fetched, with versions.
        what: String,
    },

    /// `--postgres-port` names a port the stack already uses.
    #[error("--postgres-port {port} is taken by {used_by}; pick another port, e.g. --postgres-port 5432")]
    PostgresPortClash {
        /// The port asked for.
        port: u16,
        /// Which component of the stack uses it.
        used_by: String,
    },

    /// PostgreSQL cannot run as root, and no way around it works on this machine.
    #[error("PostgreSQL refuses to run as root, and seam runs it as an unprivileged user inside a user namespace (`unshare --user`), which failed here: {detail}\nRun seam as a non-root user, or allow user namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0), or point SEAM_POSTGRES at an existing server")]
    NoUnprivilegedPostgres {
        /// What `unshare` said.
        detail: String,
    },

    /// `initdb` failed.
    #[error(
        "creating the PostgreSQL cluster in {dir} failed: {detail}\nRun `seam local down --purge` to start afresh"
    )]
    InitdbFailed {
        /// The data folder.
        dir: PathBuf,
        /// What initdb printed.
        detail: String,
    },

    /// The Maven fetch failed.
    #[error("fetching the local stack from Maven Central failed ({status}); last lines of Maven's output:\n{tail}\nCheck that Maven Central (or the mirror in ~/.m2/settings.xml) is reachable, then run the command again; the full log is {log}")]
    FetchFailed {
        /// Exit status description.
        status: String,
        /// The end of Maven's output.
        tail: String,
        /// Where Maven's full output is.
        log: PathBuf,
    },

    /// A port the stack needs is taken.
    #[error("{}", ports_in_use(.0))]
    PortsInUse(Vec<PortInUse>),

    /// A stack of another shape is running.
    #[error("a local stack with {running} is running, but {requested} was asked for; run `seam local down` first, then `seam local up {flags}`")]
    OtherShapeRunning {
        /// The running stack, e.g. `3 broker(s)`.
        running: String,
        /// The stack asked for.
        requested: String,
        /// The flags that start the stack asked for.
        flags: String,
    },

    /// The secure stack's certificates or passwords could not be made or read.
    #[error("the secure stack's TLS material: {0}; run `seam local down --purge` and `seam local up --secure` to make it afresh")]
    Tls(String),

    /// Unsupported broker count.
    #[error("--brokers {0} is not supported: use 1 (a single node) to 5; 3 gives replication factor 3 and min ISR 2")]
    BadBrokerCount(u8),

    /// Ports that do not fit.
    #[error("ports out of range: --kafka-port {kafka_port} and --registry-port {registry_port} leave no room for the ports derived from them (a cluster's node n uses kafka-port + 100 n and the next port; the registry uses its port and the next); pick ports between 1024 and 60000")]
    PortsOutOfRange {
        /// Asked-for Kafka base port.
        kafka_port: u16,
        /// Asked-for registry port.
        registry_port: u16,
    },

    /// A component exited while starting.
    #[error("{component} exited while starting; last lines of {log}:\n{tail}\nFix the cause above and run `seam local up` again")]
    DiedWhileStarting {
        /// Which component.
        component: String,
        /// Its log file.
        log: PathBuf,
        /// The end of the log.
        tail: String,
    },

    /// A component did not become ready in time.
    #[error("{component} did not become ready within {waited_secs} s ({detail}); last lines of {log}:\n{tail}\nThe machine may be overloaded; run `seam local down` and `seam local up` again")]
    NotReady {
        /// Which component.
        component: String,
        /// How long we waited.
        waited_secs: u64,
        /// The last readiness probe's answer.
        detail: String,
        /// Its log file.
        log: PathBuf,
        /// The end of the log.
        tail: String,
    },

    /// The Kafka storage tool failed.
    #[error("formatting Kafka storage in {dir} failed: {detail}\nIf the folder holds data of another cluster, run `seam local down --purge` to start afresh")]
    FormatFailed {
        /// The data folder.
        dir: PathBuf,
        /// What the tool printed.
        detail: String,
    },

    /// No local stack is known.
    #[error("no local stack is running (no {0}); start one with `seam local up`")]
    NotRunning(PathBuf),

    /// A broker node id that the stack does not have.
    #[error("the local stack has no broker {node_id} (it has {brokers})")]
    NoSuchNode {
        /// Asked for.
        node_id: u8,
        /// How many exist.
        brokers: u8,
    },

    /// The state file is unreadable.
    #[error("the local stack's state file {path} is damaged ({source}); run `seam local down` to stop whatever it started and remove it")]
    BadState {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },

    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we tried.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl LocalError {
    /// Wraps an I/O error with what was being done and where.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { action, path, source }
    }
}

fn ports_in_use(ports: &[PortInUse]) -> String {
    let mut msg = String::from("cannot start the local stack: ");
    for (i, p) in ports.iter().enumerate() {
        if i > 0 {
            msg.push_str("; ");
        }
        msg.push_str(&p.to_string());
    }
    if ports.iter().any(|p| p.role == "PostgreSQL") {
        msg.push_str(". Stop that process, or pick another port with `--postgres-port N` (a PostgreSQL of your own can be used instead with SEAM_POSTGRES=postgres://…)");
    } else {
        msg.push_str(". Stop that process, or pick other ports with `seam local up --kafka-port N --registry-port M`");
    }
    msg
}

/// A port the stack needs that something else is listening on.
#[derive(Debug, Clone)]
pub struct PortInUse {
    /// The port.
    pub port: u16,
    /// What seam wanted it for.
    pub role: String,
    /// The process holding it, when /proc tells (same user or root).
    pub owner: Option<Owner>,
}

/// A process found listening on a port.
#[derive(Debug, Clone)]
pub struct Owner {
    /// Its pid.
    pub pid: u32,
    /// Its command line, shortened.
    pub command: String,
}

impl std::fmt::Display for PortInUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "port {} on 127.0.0.1 ({}) is already in use", self.port, self.role)?;
        match &self.owner {
            Some(o) => write!(f, " by pid {} ({})", o.pid, o.command),
            None => write!(
                f,
                " by no process seam can see (one may still be exiting: try again in a few seconds)"
            ),
        }
    }
}
