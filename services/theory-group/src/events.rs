//! The events the theory group publishes; each matches `schemas/theory-group/<Name>.avsc`.

use apache_avro::AvroSchema;
use seam_core::service::Event;
use serde::{Deserialize, Serialize};

/// One criterion of a presentation was scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.theorygroup")]
pub struct PresentationAssessed {
    /// Examination (seminar) id.
    pub exam: String,
    /// Matriculation number.
    pub student: String,
    /// Criterion of the scheme.
    pub criterion: String,
    /// Score 0..=10.
    pub score: i32,
}

impl Event for PresentationAssessed {
    const RECORD: &'static str = "studentaffairs.theorygroup.PresentationAssessed";
}

/// A seminar was graded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.theorygroup")]
pub struct StudentGraded {
    /// Matriculation number.
    pub student: String,
    /// Examination id.
    pub exam: String,
    /// The grade, e.g. `1.7`.
    pub grade: String,
    /// Always `theory-group`.
    pub grader: String,
}

impl Event for StudentGraded {
    const RECORD: &'static str = "studentaffairs.theorygroup.StudentGraded";
}

/// A student was hired as TA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.theorygroup")]
pub struct StudentHired {
    /// Matriculation number.
    pub student: String,
    /// Always `theory-group`.
    pub group: String,
    /// When, milliseconds since the Unix epoch.
    pub hired_at: i64,
}

impl Event for StudentHired {
    const RECORD: &'static str = "studentaffairs.theorygroup.StudentHired";
}
