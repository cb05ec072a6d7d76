//! The orders service's own routes, next to the platform's.

use std::sync::Arc;

use seam::axum::extract::{Path, State};
use seam::axum::routing::get;
use seam::axum::{Json, Router};
use seam::http::{model_value, ApiError};
use seam::runtime::Node;
use seam::serve::ServiceDef;

use crate::{customer_key, order_key, Customer, OrderPlaced, Orders};

/// The service as a binary runs it (the binary adds the translators into it).
pub fn service() -> ServiceDef<Orders> {
    ServiceDef::new(crate::NAME, Orders, crate::catalog()).routes(routes)
}

/// `GET /orders/{id}` and `GET /customers/{id}` (the replica).
pub fn routes(node: Arc<Node<Orders>>) -> Router {
    Router::new()
        .route("/orders/{id}", get(order))
        .route("/customers/{id}", get(customer))
        .with_state(node)
}

async fn order(State(node): State<Arc<Node<Orders>>>, Path(id): Path<String>) -> Result<Json<OrderPlaced>, ApiError> {
    model_value(node.store(), &order_key(&id))?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no order {id}")))
}

async fn customer(State(node): State<Arc<Node<Orders>>>, Path(id): Path<String>) -> Result<Json<Customer>, ApiError> {
    model_value(node.store(), &customer_key(&id))?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("orders knows no customer {id} (yet)")))
}
