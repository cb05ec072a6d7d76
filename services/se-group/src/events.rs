//! The events the SE group publishes; each matches `schemas/se-group/<Name>.avsc`.

use apache_avro::AvroSchema;
use seam_core::service::Event;
use serde::{Deserialize, Serialize};

/// An assignment was set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.segroup")]
pub struct AssignmentCreated {
    /// Assignment id.
    pub assignment: String,
    /// The examination it counts for.
    pub exam: String,
    /// Title.
    pub title: String,
    /// Points available.
    pub max_points: i32,
}

impl Event for AssignmentCreated {
    const RECORD: &'static str = "studentaffairs.segroup.AssignmentCreated";
}

/// Points for one assignment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.segroup")]
pub struct PointsAwarded {
    /// Assignment id.
    pub assignment: String,
    /// Matriculation number.
    pub student: String,
    /// Points.
    pub points: i32,
}

impl Event for PointsAwarded {
    const RECORD: &'static str = "studentaffairs.segroup.PointsAwarded";
}

/// A student's examination was graded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.segroup")]
pub struct StudentGraded {
    /// Matriculation number.
    pub student: String,
    /// Examination id.
    pub exam: String,
    /// The grade, e.g. `1.3`.
    pub grade: String,
    /// Always `se-group`.
    pub grader: String,
}

impl Event for StudentGraded {
    const RECORD: &'static str = "studentaffairs.segroup.StudentGraded";
}

/// A student was hired as TA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.segroup")]
pub struct StudentHired {
    /// Matriculation number.
    pub student: String,
    /// Always `se-group`.
    pub group: String,
    /// When, milliseconds since the Unix epoch.
    pub hired_at: i64,
}

impl Event for StudentHired {
    const RECORD: &'static str = "studentaffairs.segroup.StudentHired";
}
