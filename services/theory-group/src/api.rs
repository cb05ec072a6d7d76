//! The theory group's HTTP API beyond the platform routes: what the seminar lecturer's GUI reads, and the
//! shared data of each flow it takes part in (for the sync report).

use std::sync::Arc;

use seam::axum::extract::State;
use seam::axum::routing::get;
use seam::axum::{Json, Router};
use seam::http::{scan_model, ApiError, SharedRow};
use seam::runtime::Node;
use seam::store::Store;
use serde_json::{json, Value};

use crate::model::TheoryGroup;

type AppState = Arc<Node<TheoryGroup>>;

/// The service as a binary runs it (the binary adds the translators into it).
pub fn service() -> seam::serve::ServiceDef<TheoryGroup> {
    seam::serve::ServiceDef::new(crate::NAME, TheoryGroup, crate::catalog()).routes(routes)
}

/// Query and flow routes.
pub fn routes(node: AppState) -> Router {
    Router::new()
        .route("/counts", get(counts))
        .route("/shared/{from}/{to}", seam::http::shared::route(shared))
        .with_state(node)
}

async fn counts(State(node): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = node.store();
    Ok(Json(json!({
        "students": scan_model::<Option<String>>(store, "student/")?.len(),
        "participants": scan_model::<String>(store, "participant/")?.len(),
        "scores": scan_model::<i32>(store, "score/")?.len(),
        "grades": scan_model::<String>(store, "grade/")?.len(),
        "hires": scan_model::<bool>(store, "hire/")?.len(),
        "known_tas": scan_model::<String>(store, "ta/")?.len(),
    })))
}

/// The rows of a flow this service takes part in, or `None` for a flow it is not in. Every row
/// is about a student, whose events are keyed `student/<id>`.
pub fn shared(store: &Store, flow: &str) -> Result<Option<Vec<SharedRow>>, ApiError> {
    let rows = match flow {
        "students-office->theory-group" => scan_model::<String>(store, "participant/")?
            .into_iter()
            .map(|(k, name)| {
                let exam_student = k.trim_start_matches("participant/");
                let student = exam_student.rsplit('/').next().unwrap_or_default();
                SharedRow::new(
                    format!("student/{student}"),
                    format!("{}|{name}", exam_student.replacen('/', "|", 1)),
                )
            })
            .collect(),
        "theory-group->students-office" | "theory-group->scholarship-office" => scan_model::<String>(store, "grade/")?
            .into_iter()
            .map(|(k, g)| {
                let exam_student = k.trim_start_matches("grade/");
                let student = exam_student.rsplit('/').next().unwrap_or_default();
                SharedRow::new(format!("student/{student}"), format!("{exam_student}|{g}"))
            })
            .collect(),
        "theory-group->ta-pool" => scan_model::<bool>(store, "hire/")?
            .into_iter()
            .map(|(k, _)| {
                let student = k.trim_start_matches("hire/");
                SharedRow::new(format!("student/{student}"), student)
            })
            .collect(),
        "ta-pool->theory-group" => scan_model::<String>(store, "ta/")?
            .into_iter()
            .map(|(k, group)| {
                let student = k.trim_start_matches("ta/");
                SharedRow::new(format!("student/{student}"), format!("{student}|{group}"))
            })
            .collect(),
        _ => return Ok(None),
    };
    Ok(Some(rows))
}
