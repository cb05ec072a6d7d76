//! `se-group-to-scholarship-office`: The SE group's grades, for the scholarship office.
//!
//! Reads `se-group` events through its own reader schemas (only the fields it needs) and turns
//! them into `scholarship-office` commands. Pure and deterministic.

use apache_avro::AvroSchema;
use seam_core::translator::{ForeignEvent, TranslateError, Translator};
use serde::Deserialize;

/// The `StudentGraded` record.
pub const STUDENTGRADED: &str = "studentaffairs.segroup.StudentGraded";

/// The consumer's view of `StudentGraded`: `reader/StudentGraded.avsc`, only the fields it needs.
pub const STUDENTGRADED_READER: &str = include_str!("../reader/StudentGraded.avsc");

#[derive(Debug, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.segroup")]
#[cfg_attr(test, derive(serde::Serialize))]
struct StudentGraded {
    student: String,
    exam: String,
    grade: String,
    grader: String,
}

/// The translator.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeGroupToScholarshipOffice;

impl Translator<scholarship_office::Command> for SeGroupToScholarshipOffice {
    fn source(&self) -> &str {
        "se-group"
    }

    fn reader_schemas(&self) -> Vec<(&'static str, &'static str)> {
        vec![(STUDENTGRADED, STUDENTGRADED_READER)]
    }

    /// The source's other records carry nothing this consumer keeps.
    fn ignores(&self) -> Vec<&'static str> {
        vec![
            "studentaffairs.segroup.AssignmentCreated",
            "studentaffairs.segroup.PointsAwarded",
            "studentaffairs.segroup.StudentHired",
        ]
    }

    fn translate(&self, event: &ForeignEvent) -> Result<Vec<scholarship_office::Command>, TranslateError> {
        match event.record.as_str() {
            STUDENTGRADED => {
                let e: StudentGraded = event.payload()?;
                Ok(vec![scholarship_office::Command::Graded {
                    student: e.student,
                    exam: e.exam,
                    grade: e.grade,
                    grader: e.grader,
                }])
            }
            _ => Ok(vec![]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seam_core::translator::{check_reader, check_reader_type, test_event};

    /// Each reader schema file is the schema of the Rust type the translator decodes into.
    #[test]
    fn the_reader_schema_files_match_the_reader_types() {
        check_reader_type::<StudentGraded>(STUDENTGRADED_READER).expect("reader/StudentGraded.avsc");
    }

    #[test]
    fn studentgraded_becomes_its_command() {
        let event = test_event(
            "se-group",
            STUDENTGRADED,
            StudentGraded {
                student: "student-1".into(),
                exam: "exam-1".into(),
                grade: "grade-1".into(),
                grader: "grader-1".into(),
            },
        );
        assert_eq!(
            SeGroupToScholarshipOffice.translate(&event).expect("translates"),
            vec![scholarship_office::Command::Graded {
                student: "student-1".into(),
                exam: "exam-1".into(),
                grade: "grade-1".into(),
                grader: "grader-1".into(),
            }]
        );
    }

    #[test]
    fn the_studentgraded_reader_resolves_against_the_published_schema() {
        check_reader(
            include_str!("../../../schemas/se-group/StudentGraded.avsc"),
            STUDENTGRADED_READER,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn other_records_are_ignored() {
        assert!(SeGroupToScholarshipOffice
            .translate(&test_event("se-group", "something.Else", ()))
            .expect("ignored")
            .is_empty());
    }
}
