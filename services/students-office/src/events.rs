//! The events the students office publishes; each matches `schemas/students-office/<Name>.avsc`.

use apache_avro::AvroSchema;
use seam_core::service::Event;
use serde::{Deserialize, Serialize};

/// A student was registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.studentsoffice")]
pub struct StudentCreated {
    /// Matriculation number.
    pub student: String,
    /// Full name.
    pub name: String,
    /// Course program.
    pub program: String,
}

impl Event for StudentCreated {
    const RECORD: &'static str = "studentaffairs.studentsoffice.StudentCreated";
}

/// An examination was scheduled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.studentsoffice")]
pub struct ExaminationCreated {
    /// Examination id.
    pub exam: String,
    /// Title.
    pub title: String,
    /// The group that runs it.
    pub owner: String,
    /// Semester, e.g. `2026W`.
    pub semester: String,
}

impl Event for ExaminationCreated {
    const RECORD: &'static str = "studentaffairs.studentsoffice.ExaminationCreated";
}

/// A student enrolled for an examination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.studentsoffice")]
pub struct StudentEnrolled {
    /// Matriculation number.
    pub student: String,
    /// The student's name, so the receiver can name its placeholder.
    pub name: String,
    /// Examination id.
    pub exam: String,
    /// Examination title.
    pub title: String,
    /// The group that runs the examination.
    pub owner: String,
}

impl Event for StudentEnrolled {
    const RECORD: &'static str = "studentaffairs.studentsoffice.StudentEnrolled";
}
