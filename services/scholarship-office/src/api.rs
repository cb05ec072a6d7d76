//! The scholarship office's HTTP API beyond the platform routes: its counts and the shared data
//! of each flow it takes part in (for the sync report).

use std::sync::Arc;

use seam::axum::extract::State;
use seam::axum::routing::get;
use seam::axum::{Json, Router};
use seam::http::{scan_model, ApiError, SharedRow};
use seam::runtime::Node;
use seam::store::Store;
use serde_json::{json, Value};

use crate::{Candidate, ScholarshipOffice};

type AppState = Arc<Node<ScholarshipOffice>>;

/// The service as a binary runs it (the binary adds the translators into it).
pub fn service() -> seam::serve::ServiceDef<ScholarshipOffice> {
    seam::serve::ServiceDef::new(crate::NAME, ScholarshipOffice, crate::catalog()).routes(routes)
}

/// Query and flow routes.
pub fn routes(node: AppState) -> Router {
    Router::new()
        .route("/counts", get(counts))
        .route("/shared/{from}/{to}", seam::http::shared::route(shared))
        .with_state(node)
}

fn candidates(store: &Store) -> Result<Vec<(String, Candidate)>, ApiError> {
    Ok(scan_model::<Candidate>(store, "candidate/")?
        .into_iter()
        .map(|(k, c)| (k.trim_start_matches("candidate/").to_string(), c))
        .collect())
}

async fn counts(State(node): State<AppState>) -> Result<Json<Value>, ApiError> {
    let all = candidates(node.store())?;
    Ok(Json(json!({
        "students": all.len(),
        "grades": all.iter().map(|(_, c)| c.grades.len()).sum::<usize>(),
        "scholarships": all.iter().filter(|(_, c)| c.awarded).count(),
        "bootstrapped_from": node.bootstrapped().iter().map(|(s, m)| (s.clone(), json!({"seq": m.seq, "offsets": m.offsets}))).collect::<serde_json::Map<_, _>>(),
    })))
}

/// The rows of a flow this service takes part in, or `None` for a flow it is not in. Every row
/// is about a candidate, a student whose events are keyed `student/<id>`.
pub fn shared(store: &Store, flow: &str) -> Result<Option<Vec<SharedRow>>, ApiError> {
    let all = candidates(store)?;
    let rows = match flow {
        "students-office->scholarship-office" => all
            .iter()
            .flat_map(|(s, c)| {
                let name = c.name.clone().unwrap_or_default();
                c.enrolled
                    .iter()
                    .map(move |e| SharedRow::new(format!("student/{s}"), format!("{e}|{s}|{name}")))
            })
            .collect(),
        "se-group->scholarship-office" | "theory-group->scholarship-office" => {
            let group = flow.split("->").next().unwrap_or_default();
            all.iter()
                .flat_map(|(s, c)| {
                    c.grades
                        .iter()
                        .filter(move |(_, (_, by))| by == group)
                        .map(move |(e, (g, _))| SharedRow::new(format!("student/{s}"), format!("{e}/{s}|{g}")))
                })
                .collect()
        }
        _ => return Ok(None),
    };
    Ok(Some(rows))
}
