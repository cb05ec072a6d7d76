//! The customers service's own routes, next to the platform's (`POST /commands`, `/events`,
//! `/snapshot`, `/health`, `/metrics`, ...).

use std::sync::Arc;

use seam::axum::extract::{Path, State};
use seam::axum::routing::get;
use seam::axum::{Json, Router};
use seam::http::{model_value, ApiError};
use seam::runtime::Node;
use seam::serve::ServiceDef;

use crate::{key, CustomerRegistered, Customers};

/// The service as a binary runs it.
pub fn service() -> ServiceDef<Customers> {
    ServiceDef::new(crate::NAME, Customers, crate::catalog()).routes(routes)
}

/// `GET /customers/{id}`.
pub fn routes(node: Arc<Node<Customers>>) -> Router {
    Router::new().route("/customers/{id}", get(customer)).with_state(node)
}

async fn customer(
    State(node): State<Arc<Node<Customers>>>,
    Path(id): Path<String>,
) -> Result<Json<CustomerRegistered>, ApiError> {
    model_value(node.store(), &key(&id))?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no customer {id}")))
}
