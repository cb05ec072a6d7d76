//! Seed 002's two CRUD services, written as a team's existing services would be: an HTTP API
//! over their own PostgreSQL database, with no seam dependency (this crate links none). seam
//! integrates them from the outside: a CDC source publishes their tables' row changes, and a
//! database sink writes what they need from each other into tables they own.
//!
//! - CustomerService (`customers` database): `POST /customers` (seed 002's `createCustomer`),
//!   `GET /customers/{id}` with the customer's order count and total, which seam replicates
//!   back from the order service into `customer_orders` and `customer_order_stats`.
//! - OrderService (`orders` database): `POST /orders` (`createOrder`), refused for a customer
//!   its replica (`customers`, filled by seam) does not know.
#![forbid(unsafe_code)]

pub mod customers;
pub mod db;
pub mod orders;

/// A JSON error body with a status: `{"error": "..."}`.
pub fn error(status: axum::http::StatusCode, message: impl Into<String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    (status, axum::Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Serves `app` on `port` of 127.0.0.1 (0: any), printing `ready <url>` once it listens.
pub async fn serve(app: axum::Router, port: u16) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| anyhow::anyhow!("binding 127.0.0.1:{port}: {e}; pass another --port"))?;
    println!("ready http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
