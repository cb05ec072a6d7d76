//! Whether the two databases agree: each flow compared as a row count and an md5 digest of the
//! rows in key order, computed by PostgreSQL on each side.

use serde::Serialize;

/// One flow of data between the services.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Flow {
    /// What is compared.
    pub what: &'static str,
    /// Where it originates.
    pub from: &'static str,
    /// Where it is replicated.
    pub to: &'static str,
    /// Rows at the origin.
    pub source_rows: i64,
    /// Rows in the replica.
    pub replica_rows: i64,
    /// Digest at the origin.
    pub source_digest: String,
    /// Digest of the replica.
    pub replica_digest: String,
    /// Both the same.
    pub in_sync: bool,
}

/// `(what, from, to, query at the origin, query on the replica)`; each query yields the rows as
/// text lines in key order. The example's clients only ever create rows, so each row had
/// exactly one change: a replica row that received it twice (or never) does not match.
const FLOWS: [(&str, &str, &str, &str, &str); 3] = [
    (
        "customers",
        "customer-service",
        "order-service",
        "SELECT id || '|' || name || '|' || email || '|1' AS line FROM customers ORDER BY id",
        "SELECT id || '|' || name || '|' || email || '|' || changes AS line FROM customers ORDER BY id",
    ),
    (
        "orders",
        "order-service",
        "customer-service",
        "SELECT id || '|' || customer_id || '|' || amount_cents || '|1' AS line FROM orders ORDER BY id",
        "SELECT order_id || '|' || customer_id || '|' || amount_cents || '|' || changes AS line FROM customer_orders ORDER BY order_id",
    ),
    (
        "order count and total per customer",
        "order-service",
        "customer-service",
        "SELECT customer_id || '|' || count(*) || '|' || sum(amount_cents) AS line FROM orders GROUP BY customer_id ORDER BY customer_id",
        "SELECT customer_id || '|' || order_count || '|' || total_cents AS line FROM customer_order_stats WHERE order_count > 0 ORDER BY customer_id",
    ),
];

async fn digest(db: &tokio_postgres::Client, query: &str) -> anyhow::Result<(i64, String)> {
    let row = db
        .query_one(
            &format!("SELECT count(*), md5(COALESCE(string_agg(line, E'\\n'), '')) FROM ({query}) AS rows"),
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Connects to a database (the connection lives as long as the client).
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Every flow, compared now.
pub async fn compare(customers: &tokio_postgres::Client, orders: &tokio_postgres::Client) -> anyhow::Result<Vec<Flow>> {
    let mut out = Vec::new();
    for (what, from, to, at_source, at_replica) in FLOWS {
        let (source, replica) = if from == "customer-service" {
            (customers, orders)
        } else {
            (orders, customers)
        };
        let (source_rows, source_digest) = digest(source, at_source).await?;
        let (replica_rows, replica_digest) = digest(replica, at_replica).await?;
        out.push(Flow {
            what,
            from,
            to,
            in_sync: source_rows == replica_rows && source_digest == replica_digest,
            source_rows,
            replica_rows,
            source_digest,
            replica_digest,
        });
    }
    Ok(out)
}
