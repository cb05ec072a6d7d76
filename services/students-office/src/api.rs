//! The students office's HTTP API beyond the platform routes: what the clerk's GUI reads, and
//! the shared data of each flow it takes part in (for the sync report).

use std::sync::Arc;

use seam::axum::extract::{Path, State};
use seam::axum::routing::get;
use seam::axum::{Json, Router};
use seam::http::{scan_model, ApiError, SharedRow};
use seam::runtime::Node;
use seam::store::Store;
use serde_json::{json, Value};

use crate::model::{Examination, Grade, Student, StudentsOffice};

type AppState = Arc<Node<StudentsOffice>>;

/// The service as a binary runs it (the binary adds the translators into it).
pub fn service() -> seam::serve::ServiceDef<StudentsOffice> {
    seam::serve::ServiceDef::new(crate::NAME, StudentsOffice, crate::catalog()).routes(routes)
}

/// Query and flow routes.
pub fn routes(node: AppState) -> Router {
    Router::new()
        .route("/students/{id}", get(student))
        .route("/counts", get(counts))
        .route("/shared/{from}/{to}", seam::http::shared::route(shared))
        .with_state(node)
}

async fn student(State(node): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let store = node.store();
    let Some(bytes) = store.model_get(&format!("student/{id}")).map_err(ApiError::store)? else {
        return Err(ApiError::new(
            seam::axum::http::StatusCode::NOT_FOUND,
            format!("no student {id}"),
        ));
    };
    let s: Student = serde_json::from_slice(&bytes).map_err(ApiError::store)?;
    let grades: Vec<Value> = scan_model::<Grade>(store, "grade/")?
        .into_iter()
        .filter(|(k, _)| k.ends_with(&format!("/{id}")))
        .map(|(k, g)| json!({ "exam": k.split('/').nth(1), "grade": g.grade, "grader": g.grader }))
        .collect();
    Ok(Json(
        json!({ "student": id, "name": s.name, "program": s.program, "grades": grades }),
    ))
}

async fn counts(State(node): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = node.store();
    let students = scan_model::<Student>(store, "student/")?;
    let placeholders = students.iter().filter(|(_, s)| s.name.is_none()).count();
    Ok(Json(json!({
        "students": students.len(),
        "placeholder_students": placeholders,
        "examinations": scan_model::<Examination>(store, "exam/")?.len(),
        "enrollments": scan_model::<bool>(store, "enrollment/")?.len(),
        "grades": scan_model::<Grade>(store, "grade/")?.len(),
    })))
}

/// The rows of a flow this service takes part in, or `None` for a flow it is not in. Every row
/// is about a student, whose events are keyed `student/<id>`.
pub fn shared(store: &Store, flow: &str) -> Result<Option<Vec<SharedRow>>, ApiError> {
    let owner = match flow {
        "students-office->se-group" => Some("se-group"),
        "students-office->theory-group" => Some("theory-group"),
        "students-office->scholarship-office" => None,
        "se-group->students-office" | "theory-group->students-office" => {
            let grader = flow.split("->").next().unwrap_or_default();
            let rows = scan_model::<Grade>(store, "grade/")?
                .into_iter()
                .filter(|(_, g)| g.grader == grader)
                .map(|(k, g)| {
                    let exam_student = k.trim_start_matches("grade/");
                    let student = exam_student.rsplit('/').next().unwrap_or_default();
                    SharedRow::new(format!("student/{student}"), format!("{exam_student}|{}", g.grade))
                })
                .collect();
            return Ok(Some(rows));
        }
        _ => return Ok(None),
    };
    let exams: std::collections::BTreeMap<String, Examination> = scan_model(store, "exam/")?.into_iter().collect();
    let students: std::collections::BTreeMap<String, Student> = scan_model(store, "student/")?.into_iter().collect();
    let mut rows = Vec::new();
    for (key, _) in scan_model::<bool>(store, "enrollment/")? {
        let mut parts = key.trim_start_matches("enrollment/").splitn(2, '/');
        let (Some(exam), Some(student)) = (parts.next(), parts.next()) else {
            continue;
        };
        let exam_owner = exams.get(&format!("exam/{exam}")).and_then(|e| e.owner.as_deref());
        if owner.is_none() || exam_owner == owner {
            let name = students
                .get(&format!("student/{student}"))
                .and_then(|s| s.name.clone())
                .unwrap_or_default();
            rows.push(SharedRow::new(
                format!("student/{student}"),
                format!("{exam}|{student}|{name}"),
            ));
        }
    }
    Ok(Some(rows))
}
