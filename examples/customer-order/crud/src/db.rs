//! The services' database connections: a few pipelined connections, used round-robin.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context;

/// A handful of connections; tokio-postgres pipelines the queries of concurrent requests on each.
#[derive(Clone)]
pub struct Db {
    clients: Arc<Vec<tokio_postgres::Client>>,
    next: Arc<AtomicUsize>,
}

impl Db {
    /// Connects `n` times to `url`.
    pub async fn connect(url: &str, n: usize) -> anyhow::Result<Self> {
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n.max(1) {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .with_context(|| format!("connecting to {}", url.split('@').next_back().unwrap_or(url)))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "database connection ended");
                }
            });
            clients.push(client);
        }
        Ok(Self {
            clients: Arc::new(clients),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The next connection.
    pub fn get(&self) -> &tokio_postgres::Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        &self.clients[i]
    }
}

/// Creates the database `name` on the server of `server_url` unless it exists; returns its URL.
pub async fn ensure_database(server_url: &str, name: &str) -> anyhow::Result<String> {
    let (client, connection) = tokio_postgres::connect(server_url, tokio_postgres::NoTls)
        .await
        .context("connecting to the PostgreSQL server")?;
    tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        // Two starts racing both try; the loser's "already exists" is fine.
        if let Err(e) = client
            .batch_execute(&format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\"")))
            .await
        {
            if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(e).with_context(|| format!("creating the database {name}"));
            }
        }
    }
    Ok(with_database(server_url, name))
}

/// `url` with its database replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..host_end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_database_name_replaces_the_urls() {
        assert_eq!(
            super::with_database("postgres://u:p@h:5/seam?sslmode=disable", "orders"),
            "postgres://u:p@h:5/orders?sslmode=disable"
        );
        assert_eq!(super::with_database("postgres://h:5", "x"), "postgres://h:5/x");
    }
}
