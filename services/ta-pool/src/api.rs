//! The TA pool's HTTP API beyond the platform routes: who works for whom, and the shared data of
//! each flow it takes part in (for the sync report).

use std::sync::Arc;

use seam::axum::extract::State;
use seam::axum::routing::get;
use seam::axum::{Json, Router};
use seam::http::{scan_model, ApiError, SharedRow};
use seam::runtime::Node;
use seam::store::Store;
use serde_json::{json, Value};

use crate::{Assignment, TaPool};

type AppState = Arc<Node<TaPool>>;

/// The service as a binary runs it (the binary adds the translators into it).
pub fn service() -> seam::serve::ServiceDef<TaPool> {
    seam::serve::ServiceDef::new(crate::NAME, TaPool, crate::catalog()).routes(routes)
}

/// Query and flow routes.
pub fn routes(node: AppState) -> Router {
    Router::new()
        .route("/counts", get(counts))
        .route("/shared/{from}/{to}", seam::http::shared::route(shared))
        .with_state(node)
}

fn assignments(store: &Store) -> Result<Vec<(String, Assignment)>, ApiError> {
    Ok(scan_model::<Assignment>(store, "ta/")?
        .into_iter()
        .map(|(k, a)| (k.trim_start_matches("ta/").to_string(), a))
        .collect())
}

async fn counts(State(node): State<AppState>) -> Result<Json<Value>, ApiError> {
    let all = assignments(node.store())?;
    let conflicts = all.iter().filter(|(_, a)| a.conflict()).count();
    Ok(Json(json!({ "tas": all.len(), "conflicts": conflicts })))
}

/// The rows of a flow this service takes part in, or `None` for a flow it is not in. Every row
/// is about a student, whose events are keyed `student/<id>`.
pub fn shared(store: &Store, flow: &str) -> Result<Option<Vec<SharedRow>>, ApiError> {
    let all = assignments(store)?;
    let rows = match flow.split_once("->") {
        Some((group, "ta-pool")) => all
            .into_iter()
            .filter(|(_, a)| a.hires.contains_key(group))
            .map(|(student, _)| SharedRow::new(format!("student/{student}"), student))
            .collect(),
        Some(("ta-pool", _)) => all
            .into_iter()
            .map(|(student, a)| SharedRow::new(format!("student/{student}"), format!("{student}|{}", a.group)))
            .collect(),
        _ => return Ok(None),
    };
    Ok(Some(rows))
}
