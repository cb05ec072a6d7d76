//! `se-group-to-students-office`: Grades the SE group gives, onto the students' records (getOrCreate on the office's side).
//!
//! Reads the `StudentGraded` events of `se-group` through its own reader schema (only the fields it
//! needs) and turns them into `students-office` commands. Pure and deterministic.

use apache_avro::AvroSchema;
use seam_core::translator::{ForeignEvent, TranslateError, Translator};
use serde::Deserialize;

/// The record this translator reads.
pub const RECORD: &str = "studentaffairs.segroup.StudentGraded";

/// The consumer's view of `StudentGraded`: `reader/StudentGraded.avsc`, only the fields it needs.
pub const READER: &str = include_str!("../reader/StudentGraded.avsc");

#[derive(Debug, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.segroup")]
#[cfg_attr(test, derive(serde::Serialize, Clone))]
struct StudentGraded {
    student: String,
    exam: String,
    grade: String,
    grader: String,
}

/// The translator.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeGroupToStudentsOffice;

impl Translator<students_office::model::Command> for SeGroupToStudentsOffice {
    fn source(&self) -> &str {
        "se-group"
    }

    fn reader_schemas(&self) -> Vec<(&'static str, &'static str)> {
        vec![(RECORD, READER)]
    }

    /// The source's other records carry nothing this consumer keeps.
    fn ignores(&self) -> Vec<&'static str> {
        vec![
            "studentaffairs.segroup.AssignmentCreated",
            "studentaffairs.segroup.PointsAwarded",
            "studentaffairs.segroup.StudentHired",
        ]
    }

    fn translate(&self, event: &ForeignEvent) -> Result<Vec<students_office::model::Command>, TranslateError> {
        if event.record != RECORD {
            return Ok(vec![]);
        }
        let e: StudentGraded = event.payload()?;
        Ok(vec![students_office::model::Command::RecordGrade {
            student: e.student,
            exam: e.exam,
            grade: e.grade,
            grader: e.grader,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seam_core::translator::{check_reader, check_reader_type, test_event};

    /// Each reader schema file is the schema of the Rust type the translator decodes into.
    #[test]
    fn the_reader_schema_files_match_the_reader_types() {
        check_reader_type::<StudentGraded>(READER).expect("reader/StudentGraded.avsc");
    }

    const WRITER: &str = include_str!("../../../schemas/se-group/StudentGraded.avsc");

    fn sample() -> StudentGraded {
        StudentGraded {
            student: "student-1".into(),
            exam: "exam-1".into(),
            grade: "1.3".into(),
            grader: "grader-1".into(),
        }
    }

    fn translate(read: StudentGraded) -> Vec<students_office::model::Command> {
        SeGroupToStudentsOffice
            .translate(&test_event("se-group", RECORD, read))
            .expect("translates")
    }

    #[test]
    fn the_reader_schema_resolves_against_the_published_schema() {
        check_reader(WRITER, READER).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn an_event_becomes_its_command() {
        assert_eq!(
            translate(sample()),
            vec![students_office::model::Command::RecordGrade {
                student: "student-1".into(),
                exam: "exam-1".into(),
                grade: "1.3".into(),
                grader: "grader-1".into()
            }]
        );
        assert_eq!(translate(sample()), translate(sample()), "deterministic");
    }

    #[test]
    fn other_records_are_ignored() {
        let event = test_event("se-group", "something.Else", ());
        assert!(SeGroupToStudentsOffice.translate(&event).expect("ignored").is_empty());
    }
}
