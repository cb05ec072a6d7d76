//! `seam local up | down | status`.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use seam_local::cluster::Endpoints;
use seam_local::{self as local, Home, Shape};

/// The local stack's subcommands.
#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start Kafka and the schema registry, and with --postgres PostgreSQL (fetched once into
    /// SEAM_HOME, default ~/.seam); starts only what is not running yet.
    Up(UpArgs),
    /// Stop the stack: SIGTERM, then SIGKILL after a grace period.
    Down(DownArgs),
    /// Show each component with its pid and state; exits 1 unless all are running.
    Status(StatusArgs),
}

/// Options of `seam local up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of brokers: 1 (a single node) or 3 (replication factor 3, min ISR 2); up to 5.
    #[arg(long, default_value_t = 1)]
    brokers: u8,
    /// Client port of a single broker (its controller uses the next port); a cluster's
    /// node n listens on this + 100 n, e.g. 9192, 9292, 9392.
    #[arg(long, default_value_t = Shape::DEFAULT_KAFKA_PORT)]
    kafka_port: u16,
    /// Port of the registry's Confluent-compatible API; its health endpoint uses the next port.
    #[arg(long, default_value_t = Shape::DEFAULT_REGISTRY_PORT)]
    registry_port: u16,
    /// SASL_SSL listeners (SCRAM-SHA-512 over TLS, a CA made for this stack) and the standard
    /// authorizer: services connect as their own principals, ACLs are enforced. Credentials are
    /// in <SEAM_HOME>/local/brokers-N-secure/secure.
    #[arg(long)]
    secure: bool,
    /// Also run PostgreSQL (wal_level=logical) for CRUD services, CDC sources and database
    /// sinks: user `seam`, database `seam`, on 127.0.0.1 only. Adds it to a running stack.
    #[arg(long)]
    postgres: bool,
    /// PostgreSQL's port.
    #[arg(long, default_value_t = Shape::DEFAULT_POSTGRES_PORT, requires = "postgres")]
    postgres_port: u16,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `seam local down`.
#[derive(Debug, Args)]
pub struct DownArgs {
    /// Also delete all broker data, the registry's schemas and PostgreSQL's databases (the
    /// downloads stay).
    #[arg(long)]
    purge: bool,
}

/// Options of `seam local status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON: {"brokers": [...], "registry": "...", "components": [...]}.
    #[arg(long)]
    json: bool,
}

/// Runs one `seam local` subcommand.
pub async fn run(cmd: LocalCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LocalCommand::Up(args) => up(args).await,
        LocalCommand::Down(args) => down(args),
        LocalCommand::Status(args) => status(args).await,
    }
}

async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    if std::env::var_os("SEAM_BROKERS").is_some_and(|v| !v.is_empty()) {
        let endpoints = Endpoints::discover()?;
        eprintln!(
            "SEAM_BROKERS is set: seam uses the existing cluster {} (registry {}), so no local stack is started; unset SEAM_BROKERS and SEAM_REGISTRY to run one",
            endpoints.bootstrap_servers(),
            endpoints.registry.as_deref().unwrap_or("not set")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut shape = Shape::new(args.brokers, args.kafka_port, args.registry_port)?;
    shape.secure = args.secure;
    if args.postgres {
        shape = shape.with_postgres(args.postgres_port)?;
    }
    let home = Home::from_env()?;
    let report = local::up(&home, shape, &mut |msg| eprintln!("{msg}")).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    if report.already_running {
        println!("the local stack is already running:");
    } else {
        println!("the local stack is up ({:.1} s):", report.elapsed_secs);
    }
    println!("  brokers:  {}", report.brokers.join(","));
    println!("  registry: {}", report.registry);
    if let Some(url) = &report.postgres {
        println!("  postgres: {url}  (PostgreSQL {})", local::POSTGRES_VERSION);
    }
    if let Some(java) = &report.kafka_java {
        println!("  Kafka {} on {java}", local::KAFKA_VERSION);
    }
    if let Some(java) = &report.registry_java {
        println!("  Apicurio Registry {} on {java}", local::APICURIO_VERSION);
    }
    println!("  state:    {}", home.state_file().display());
    if shape.secure {
        let dir = home.secure_dir(&shape);
        println!(
            "  security: SASL_SSL, SCRAM-SHA-512, the standard authorizer; brokers present a certificate of the CA {}",
            dir.join("ca.pem").display()
        );
        println!(
            "  operator: User:admin (super user), credentials in {}; the seam CLI uses them",
            dir.join("admin.properties").display()
        );
        println!("  services: `seam deploy -t <topology>` creates a user and ACLs per service and writes its credentials to {}", dir.join("users").display());
    }
    Ok(ExitCode::SUCCESS)
}

fn down(args: DownArgs) -> anyhow::Result<ExitCode> {
    let home = Home::from_env()?;
    let report = local::down(&home, args.purge)?;
    if report.stopped.is_empty() {
        println!("no local stack was running");
    } else {
        println!("stopped {} process(es)", report.stopped.len());
    }
    if !report.killed.is_empty() {
        println!("killed {:?} after they ignored SIGTERM", report.killed);
    }
    if report.purged {
        println!("removed all local stack data under {}", home.local().display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    if std::env::var_os("SEAM_BROKERS").is_some_and(|v| !v.is_empty()) {
        let endpoints = Endpoints::discover()?;
        let postgres = match std::env::var_os("SEAM_POSTGRES") {
            Some(_) => Some(seam_local::cluster::Postgres::discover()?.redacted()),
            None => None,
        };
        let json = serde_json::json!({
            "source": "environment",
            "brokers": endpoints.brokers,
            "registry": endpoints.registry,
            "postgres": postgres,
            "components": [],
        });
        if args.json {
            println!("{}", serde_json::to_string_pretty(&json)?);
        } else {
            println!("using the cluster from SEAM_BROKERS: {}", endpoints.bootstrap_servers());
            println!(
                "registry (SEAM_REGISTRY): {}",
                endpoints.registry.as_deref().unwrap_or("not set")
            );
            if let Some(url) = postgres {
                println!("postgres (SEAM_POSTGRES): {url}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let home = Home::from_env()?;
    let Some(st) = local::status(&home).context("cannot read the local stack's state")? else {
        if args.json {
            let json = serde_json::json!({"source": "local", "running": false, "brokers": [], "registry": null, "components": []});
            println!("{}", serde_json::to_string_pretty(&json)?);
        } else {
            println!(
                "no local stack is running under {}; start one with `seam local up`",
                home.root().display()
            );
        }
        return Ok(ExitCode::FAILURE);
    };
    let running = st.all_running();
    if args.json {
        let mut json = serde_json::to_value(&st)?;
        if let Some(obj) = json.as_object_mut() {
            obj.insert("source".into(), "local".into());
            obj.insert("running".into(), running.into());
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("brokers:  {}", st.brokers.join(","));
        println!("registry: {}", st.registry);
        if let Some(url) = &st.postgres {
            println!("postgres: {url}");
        }
        for c in &st.components {
            let pid = c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
            println!(
                "  {:<9} {:<8} pid {:<8} {}  (log {})",
                c.name,
                c.state,
                pid,
                c.address,
                c.log.display()
            );
        }
        if !running {
            println!("some components are stopped: `seam local up` starts them again");
        }
    }
    Ok(if running { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
