//! The SE group's HTTP API beyond the platform routes: what the lecturer's GUI reads, and the
//! shared data of each flow it takes part in (for the sync report).

use std::sync::Arc;

use seam::axum::extract::State;
use seam::axum::routing::get;
use seam::axum::{Json, Router};
use seam::http::{scan_model, ApiError, SharedRow};
use seam::runtime::Node;
use seam::store::Store;
use serde_json::{json, Value};

use crate::model::{Assignment, SeGroup, Student};

type AppState = Arc<Node<SeGroup>>;

/// The service as a binary runs it (the binary adds the translators into it).
pub fn service() -> seam::serve::ServiceDef<SeGroup> {
    seam::serve::ServiceDef::new(crate::NAME, SeGroup, crate::catalog()).routes(routes)
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
        "students": scan_model::<Student>(store, "student/")?.len(),
        "enrollments": scan_model::<String>(store, "enrollment/")?.len(),
        "assignments": scan_model::<Assignment>(store, "assignment/")?.len(),
        "points": scan_model::<i32>(store, "points/")?.len(),
        "grades": scan_model::<String>(store, "grade/")?.len(),
        "hires": scan_model::<bool>(store, "hire/")?.len(),
        "known_tas": scan_model::<String>(store, "ta/")?.len(),
    })))
}

/// The rows of a flow this service takes part in, or `None` for a flow it is not in. Every row
/// is about a student, whose events are keyed `student/<id>`.
pub fn shared(store: &Store, flow: &str) -> Result<Option<Vec<SharedRow>>, ApiError> {
    let rows = match flow {
        "students-office->se-group" => scan_model::<String>(store, "enrollment/")?
            .into_iter()
            .map(|(k, name)| {
                let exam_student = k.trim_start_matches("enrollment/");
                let student = exam_student.rsplit('/').next().unwrap_or_default();
                SharedRow::new(
                    format!("student/{student}"),
                    format!("{}|{name}", exam_student.replacen('/', "|", 1)),
                )
            })
            .collect(),
        "se-group->students-office" | "se-group->scholarship-office" => scan_model::<String>(store, "grade/")?
            .into_iter()
            .map(|(k, g)| {
                let exam_student = k.trim_start_matches("grade/");
                let student = exam_student.rsplit('/').next().unwrap_or_default();
                SharedRow::new(format!("student/{student}"), format!("{exam_student}|{g}"))
            })
            .collect(),
        "se-group->ta-pool" => scan_model::<bool>(store, "hire/")?
            .into_iter()
            .map(|(k, _)| {
                let student = k.trim_start_matches("hire/");
                SharedRow::new(format!("student/{student}"), student)
            })
            .collect(),
        "ta-pool->se-group" => scan_model::<String>(store, "ta/")?
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
