//! `customer-order demo`: seed 002 end to end, and its open question answered ("how well does
//! the event-driven approach sync when it has received 100 requests?"):
//! 1. uses the configured cluster and PostgreSQL, or starts the local stack with PostgreSQL;
//! 2. starts over (deletes the example's topics, databases and stores of an earlier run, so
//!    the report counts exactly this run's requests) and deploys `deploy/customer-order.yaml`
//!    (topics, ACLs; the CDC sources register their schemas when they start);
//! 3. starts the two CRUD services (no seam inside) and their adapters (CDC source + sink);
//! 4. creates half the customers, then registers the order service late with `seam register`,
//!    from the customer source's snapshot, while the other half is created;
//! 5. creates the orders (each for a customer the order service must have received);
//! 6. waits until both databases agree and prints the sync report: per flow the row counts and
//!    digests on both sides, the time to sync after the last request, and the throughput.

pub mod load;
pub mod processes;
pub mod sync;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use seam::topology::Topology;
use seam_local::cluster::{ClusterError, Endpoints, Origin};
use serde::Serialize;

use processes::Proc;
use sync::Flow;

/// Options of `demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Requests to send: a quarter `createCustomer`, the rest `createOrder` (seed 002 asks
    /// about 100; try 100000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(4..=10_000_000))]
    pub requests: u64,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Leave the services and adapters running and print their URLs.
    #[arg(long)]
    pub keep_running: bool,
    /// The topology file (default: deploy/customer-order.yaml).
    #[arg(long, short = 't')]
    pub topology: Option<PathBuf>,
    /// Seconds to wait for the databases to agree after the last request.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// The sync report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every flow in sync.
    pub synced: bool,
    /// Per flow.
    pub flows: Vec<Flow>,
    /// `createCustomer` requests answered.
    pub customers_created: u64,
    /// `createOrder` requests answered.
    pub orders_created: u64,
    /// Orders that had to wait for their customer to reach the order service.
    pub orders_waiting_for_replication: u64,
    /// What `seam register` said.
    pub registration: String,
    /// Seconds the requests took.
    pub request_seconds: f64,
    /// Requests per second answered.
    pub requests_per_second: f64,
    /// Seconds from the last answered request until both databases agreed.
    pub sync_seconds_after_last_request: f64,
    /// Row changes replicated per second, from the first request until in sync.
    pub replicated_rows_per_second: f64,
    /// Seconds from start to report.
    pub seconds: f64,
    /// The processes and their URLs.
    pub processes: Vec<(String, String)>,
}

impl Report {
    fn print(&self) {
        println!("customer-order sync report ({:.1} s)", self.seconds);
        println!(
            "  requests: {} createCustomer + {} createOrder in {:.1} s ({:.0}/s); {} orders waited for their customer to replicate",
            self.customers_created,
            self.orders_created,
            self.request_seconds,
            self.requests_per_second,
            self.orders_waiting_for_replication
        );
        println!("  late registration: {}", self.registration);
        println!(
            "  in sync {:.2} s after the last request; {:.0} replicated rows/s from the first request until in sync (the late registration included)",
            self.sync_seconds_after_last_request, self.replicated_rows_per_second
        );
        for f in &self.flows {
            println!(
                "  {:<36} {:>16} -> {:<16} rows {:>7} / {:<7} digest {} / {}  {}",
                f.what,
                f.from,
                f.to,
                f.source_rows,
                f.replica_rows,
                &f.source_digest[..12.min(f.source_digest.len())],
                &f.replica_digest[..12.min(f.replica_digest.len())],
                if f.in_sync { "in sync" } else { "NOT IN SYNC" }
            );
        }
        println!("{}", if self.synced { "IN SYNC" } else { "NOT IN SYNC" });
    }
}

/// Runs the demo; exit code 0 only when both databases agree.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));

    bar.set_message("phase 1/6: finding the cluster and PostgreSQL");
    let (endpoints, server) = cluster(&bar).await?;
    let home = seam_local::Home::from_env()?;
    let data = home.root().join("customer-order");
    let topology_path = args.topology.clone().unwrap_or_else(crate::default_topology);
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let topology = Topology::load(&topology_path)?;
    for (service, _) in crate::SERVICES {
        if topology.service(service).is_none_or(|s| !s.is_postgres_cdc()) {
            bail!(
                "{} must declare {service} as a postgres-cdc service (see deploy/customer-order.yaml)",
                topology_path.display()
            );
        }
    }

    bar.set_message("phase 2/6: seam deploy (topics, ACLs)");
    let client = endpoints.client();
    let registry = seam_ops::deploy::Registry::new(endpoints.registry()?)?;
    let options = seam_ops::deploy::Options {
        secrets: endpoints.secrets.clone(),
        ..Default::default()
    };
    // Every run starts from nothing, so its report counts exactly its own requests.
    bar.set_message("phase 2/6: starting over: the example's topics, databases and stores");
    start_over(&client, &topology, &server, &data).await?;
    bar.set_message("phase 2/6: seam deploy (topics, ACLs)");
    let deployed = deploy_fresh(&topology, &client, &registry, &options).await?;
    if !deployed.problems.is_empty() {
        bail!(
            "{} cannot be deployed to this cluster:\n  {}",
            topology_path.display(),
            deployed.problems.join("\n  ")
        );
    }
    let working = working_topology(&topology_path, &data)?;

    bar.set_message("phase 3/6: starting the CRUD services and their adapters");
    let exe = std::env::current_exe().context("finding this program")?;
    let logs = data.join("logs");
    let working_arg = working.display().to_string();
    let mut procs = Vec::new();
    for (service, _) in crate::SERVICES {
        procs.push(Proc::start(&exe, &["crud", service], &logs).await?);
    }
    for (service, _) in crate::SERVICES {
        let store = data.join(service).display().to_string();
        procs.push(
            Proc::start(
                &exe,
                &["adapter", service, "-t", &working_arg, "--store", &store],
                &logs,
            )
            .await?,
        );
    }
    let urls: Vec<(String, String)> = procs.iter().map(|p| (p.name.clone(), p.url.clone())).collect();
    let url = |name: &str| {
        urls.iter()
            .find(|(n, _)| n == name)
            .map(|(_, u)| u.clone())
            .unwrap_or_default()
    };

    let outcome = async {
        let http = reqwest::Client::new();
        let customers = (args.requests / 4).max(1);
        let orders = args.requests - customers;
        let first = customers / 2;
        let requests_started = Instant::now();
        bar.set_message(format!("phase 4/6: {first} createCustomer requests"));
        let mut ids = load::customers(&http, &url("crud customer-service"), 0, first).await?;

        bar.set_message("phase 4/6: the order service joins late: seam register, from the customer source's snapshot");
        let more = {
            let (http, u) = (http.clone(), url("crud customer-service"));
            tokio::spawn(async move { load::customers(&http, &u, first, customers).await })
        };
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        let register = seam_ops::commands::register::RegisterArgs {
            consumer: "order-service".into(),
            source: "customer-service".into(),
            snapshot: Some(format!("{}/snapshot", url("adapter customer-service"))),
            from_beginning: false,
            accept_gap: false,
            topology: working.clone(),
            url: Some(url("adapter order-service")),
            json: args.json,
        };
        let registered = seam_ops::commands::register::register(&register).await;
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        let registered = registered?;
        ids.extend(more.await.context("the customer requests")??);

        bar.set_message(format!("phase 5/6: {orders} createOrder requests"));
        let waited = load::orders(&http, &url("crud order-service"), &ids, orders).await?;
        let request_seconds = requests_started.elapsed().as_secs_f64();
        let last_request = Instant::now();

        bar.set_message("phase 6/6: waiting until both databases agree");
        let (customers_db, orders_db) = (
            sync::connect(&server.database("customers")).await?,
            sync::connect(&server.database("orders")).await?,
        );
        let deadline = last_request + Duration::from_secs(args.timeout);
        let flows = loop {
            let flows = sync::compare(&customers_db, &orders_db).await?;
            if flows.iter().all(|f| f.in_sync) || Instant::now() > deadline {
                break flows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let synced_at = last_request.elapsed().as_secs_f64();
        // The edited topology lists the order service as a consumer now: its DLQ topic.
        seam_ops::deploy::deploy(&Topology::load(&working)?, &client, &registry, &options).await?;
        let rows: i64 = flows.iter().take(2).map(|f| f.replica_rows).sum();
        anyhow::Ok(Report {
            synced: flows.iter().all(|f| f.in_sync),
            flows,
            customers_created: customers,
            orders_created: orders,
            orders_waiting_for_replication: waited,
            registration: registered.summary(),
            request_seconds,
            requests_per_second: args.requests as f64 / request_seconds.max(1e-9),
            sync_seconds_after_last_request: synced_at,
            replicated_rows_per_second: rows as f64 / requests_started.elapsed().as_secs_f64().max(1e-9),
            seconds: started.elapsed().as_secs_f64(),
            processes: urls.clone(),
        })
    }
    .await;
    bar.finish_and_clear();
    let report = match outcome {
        Ok(r) => r,
        Err(e) => {
            for p in procs {
                p.stop().await;
            }
            return Err(e.context(format!("the processes' logs are in {}", logs.display())));
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print();
    }
    if args.keep_running {
        for p in procs {
            eprintln!("{:<28} {}", p.name, p.url);
            p.detach();
        }
        eprintln!("they keep running; stop them with `kill <pid>` (SIGTERM)");
    } else {
        for p in procs {
            p.stop().await;
        }
    }
    Ok(if report.synced {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Deploys `topology` right after its topics were deleted: the brokers may still be
/// finishing the deletion, so a refused creation is tried again for a while.
async fn deploy_fresh(
    topology: &Topology,
    client: &rdkafka::ClientConfig,
    registry: &seam_ops::deploy::Registry,
    options: &seam_ops::deploy::Options,
) -> anyhow::Result<seam_ops::deploy::Outcome> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match seam_ops::deploy::deploy(topology, client, registry, options).await {
            Ok(outcome) => return Ok(outcome),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "deploy refused right after the topics' deletion; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Deletes the example's topics (events and DLQs), its databases (with the replication slots
/// in them) and the adapters' stores and working topology: what an earlier run left.
async fn start_over(
    client: &rdkafka::ClientConfig,
    topology: &Topology,
    server: &seam_local::cluster::Postgres,
    data: &Path,
) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let probe: BaseConsumer = client.create()?;
    let wanted: Vec<String> = topology
        .services
        .iter()
        .flat_map(|s| {
            [
                seam::translator::events_topic(&s.name),
                seam::translator::dlq_topic(&s.name),
            ]
        })
        .collect();
    let listed = |probe: &BaseConsumer| -> anyhow::Result<Vec<String>> {
        Ok(probe
            .fetch_metadata(None, Duration::from_secs(10))
            .context("listing the cluster's topics")?
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .filter(|t| wanted.contains(t))
            .collect())
    };
    let existing = listed(&probe)?;
    if !existing.is_empty() {
        let admin: AdminClient<DefaultClientContext> = client.create()?;
        let names: Vec<&str> = existing.iter().map(String::as_str).collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in admin.delete_topics(&names, &opts).await? {
            if let Err((topic, e)) = result {
                bail!("deleting {topic} of an earlier run: {e}");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !listed(&probe)?.is_empty() {
            if Instant::now() > deadline {
                bail!(
                    "the brokers still list {:?} a minute after deleting them",
                    listed(&probe)?
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let admin = sync::connect(server.url()).await.context("connecting to PostgreSQL")?;
    for (service, database) in crate::SERVICES {
        admin
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active",
                &[&database],
            )
            .await
            .with_context(|| format!("dropping the replication slots in {database}"))?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"))
            .await
            .with_context(|| {
                format!(
                    "dropping the database {database} of an earlier run (is an adapter of it still running? stop it)"
                )
            })?;
        let store = data.join(service);
        if store.exists() {
            std::fs::remove_dir_all(&store).with_context(|| format!("clearing {}", store.display()))?;
        }
    }
    let _ = std::fs::remove_file(data.join("topology.yaml"));
    Ok(())
}

/// The demo's working copy of the topology (`<data>/topology.yaml`), which `seam register`
/// edits when the order service joins; made from `source` (each run starts over without one).
fn working_topology(source: &Path, data: &Path) -> anyhow::Result<PathBuf> {
    let working = data.join("topology.yaml");
    if !working.is_file() {
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        std::fs::copy(source, &working).with_context(|| format!("copying {}", source.display()))?;
    }
    Topology::load(&working)?;
    Ok(working)
}

/// The cluster and PostgreSQL: the configured ones, or the local stack (started, or joined by
/// PostgreSQL, as needed).
async fn cluster(bar: &ProgressBar) -> anyhow::Result<(Endpoints, seam_local::cluster::Postgres)> {
    let home = seam_local::Home::from_env()?;
    let endpoints = match Endpoints::discover() {
        Ok(e) => e,
        Err(ClusterError::NoCluster) => {
            bar.set_message(
                "phase 1/6: no cluster configured; starting the local stack with PostgreSQL (first time: Maven fetch)",
            );
            let shape = seam_local::Shape::new(
                1,
                seam_local::Shape::DEFAULT_KAFKA_PORT,
                seam_local::Shape::DEFAULT_REGISTRY_PORT,
            )?
            .with_postgres(seam_local::Shape::DEFAULT_POSTGRES_PORT)?;
            let say = bar.clone();
            seam_local::up(&home, shape, &mut |msg| say.println(msg)).await?;
            Endpoints::discover()?
        }
        Err(e) => return Err(e.into()),
    };
    let server = match seam_local::cluster::Postgres::discover() {
        Ok(p) => p,
        Err(ClusterError::NoPostgres) if matches!(endpoints.origin, Origin::LocalStack { .. }) => {
            bar.set_message("phase 1/6: adding PostgreSQL to the local stack (first time: Maven fetch)");
            let st = seam_local::StackState::load(&home)?.context("the local stack's state is gone")?;
            let shape = st.shape.with_postgres(seam_local::Shape::DEFAULT_POSTGRES_PORT)?;
            let say = bar.clone();
            seam_local::up(&home, shape, &mut |msg| say.println(msg)).await?;
            seam_local::cluster::Postgres::discover()?
        }
        Err(e) => {
            return Err(anyhow::Error::from(e).context(
                "the example's CRUD services need PostgreSQL: set SEAM_POSTGRES=postgres://user:pass@host:port/db (a user that may create databases and replicate), or use the local stack",
            ))
        }
    };
    Ok((endpoints, server))
}
