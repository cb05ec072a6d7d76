//! `customer-order crud <service>`: runs one of the CRUD services on its database, which is
//! created on the configured PostgreSQL server (`SEAM_POSTGRES`, or the local stack's) unless
//! `--database` names one.

use anyhow::{bail, Context};
use clap::Args;
use customer_order_crud::{customers, db, orders};

/// Options of `crud`.
#[derive(Debug, Clone, Args)]
pub struct CrudArgs {
    /// `customer-service` or `order-service`.
    pub service: String,
    /// Port of the HTTP API on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// The database's `postgres://` URL (default: its database on the configured server).
    #[arg(long)]
    pub database: Option<String>,
}

/// The URL of `service`'s database on the configured server, creating the database if needed.
pub async fn database_of(service: &str) -> anyhow::Result<String> {
    let Some((_, name)) = crate::SERVICES.iter().find(|(s, _)| *s == service) else {
        bail!(
            "{service} is not a service of the example; use one of {:?}",
            crate::SERVICES.map(|(s, _)| s)
        );
    };
    let server = seam_local::cluster::Postgres::discover()
        .context("the CRUD services need PostgreSQL: run `seam local up --postgres`, or set SEAM_POSTGRES")?;
    db::ensure_database(server.url(), name).await
}

/// Runs the service until SIGINT.
pub async fn run(args: CrudArgs) -> anyhow::Result<()> {
    let url = match &args.database {
        Some(u) => u.clone(),
        None => database_of(&args.service).await?,
    };
    let pool = db::Db::connect(&url, 4).await?;
    let app = match args.service.as_str() {
        "customer-service" => customers::app(pool).await?,
        "order-service" => orders::app(pool).await?,
        other => bail!("{other} is not a service of the example; use customer-service or order-service"),
    };
    customer_order_crud::serve(app, args.port).await
}
