//! `students-office-to-scholarship-office`: Students and their enrollments, for the scholarship office (usually bootstrapped from the office's snapshot).
//!
//! Reads `students-office` events through its own reader schemas (only the fields it needs) and turns
//! them into `scholarship-office` commands. Pure and deterministic.

use apache_avro::AvroSchema;
use seam_core::translator::{ForeignEvent, TranslateError, Translator};
use serde::Deserialize;

/// The `StudentCreated` record.
pub const STUDENTCREATED: &str = "studentaffairs.studentsoffice.StudentCreated";

/// The consumer's view of `StudentCreated`: `reader/StudentCreated.avsc`, only the fields it needs.
pub const STUDENTCREATED_READER: &str = include_str!("../reader/StudentCreated.avsc");

/// The `StudentEnrolled` record.
pub const STUDENTENROLLED: &str = "studentaffairs.studentsoffice.StudentEnrolled";

/// The consumer's view of `StudentEnrolled`: `reader/StudentEnrolled.avsc`, only the fields it needs.
pub const STUDENTENROLLED_READER: &str = include_str!("../reader/StudentEnrolled.avsc");

#[derive(Debug, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.studentsoffice")]
#[cfg_attr(test, derive(serde::Serialize))]
struct StudentCreated {
    student: String,
    name: String,
}

#[derive(Debug, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.studentsoffice")]
#[cfg_attr(test, derive(serde::Serialize))]
struct StudentEnrolled {
    student: String,
    exam: String,
}

/// The translator.
#[derive(Debug, Default, Clone, Copy)]
pub struct StudentsOfficeToScholarshipOffice;

impl Translator<scholarship_office::Command> for StudentsOfficeToScholarshipOffice {
    fn source(&self) -> &str {
        "students-office"
    }

    fn reader_schemas(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            (STUDENTCREATED, STUDENTCREATED_READER),
            (STUDENTENROLLED, STUDENTENROLLED_READER),
        ]
    }

    /// The source's other records carry nothing this consumer keeps.
    fn ignores(&self) -> Vec<&'static str> {
        vec!["studentaffairs.studentsoffice.ExaminationCreated"]
    }

    fn translate(&self, event: &ForeignEvent) -> Result<Vec<scholarship_office::Command>, TranslateError> {
        match event.record.as_str() {
            STUDENTCREATED => {
                let e: StudentCreated = event.payload()?;
                Ok(vec![scholarship_office::Command::Name {
                    student: e.student,
                    name: e.name,
                }])
            }
            STUDENTENROLLED => {
                let e: StudentEnrolled = event.payload()?;
                Ok(vec![scholarship_office::Command::Enrolled {
                    student: e.student,
                    exam: e.exam,
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
        check_reader_type::<StudentCreated>(STUDENTCREATED_READER).expect("reader/StudentCreated.avsc");
        check_reader_type::<StudentEnrolled>(STUDENTENROLLED_READER).expect("reader/StudentEnrolled.avsc");
    }

    #[test]
    fn studentcreated_becomes_its_command() {
        let event = test_event(
            "students-office",
            STUDENTCREATED,
            StudentCreated {
                student: "student-1".into(),
                name: "name-1".into(),
            },
        );
        assert_eq!(
            StudentsOfficeToScholarshipOffice.translate(&event).expect("translates"),
            vec![scholarship_office::Command::Name {
                student: "student-1".into(),
                name: "name-1".into()
            }]
        );
    }

    #[test]
    fn the_studentcreated_reader_resolves_against_the_published_schema() {
        check_reader(
            include_str!("../../../schemas/students-office/StudentCreated.avsc"),
            STUDENTCREATED_READER,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn studentenrolled_becomes_its_command() {
        let event = test_event(
            "students-office",
            STUDENTENROLLED,
            StudentEnrolled {
                student: "student-1".into(),
                exam: "exam-1".into(),
            },
        );
        assert_eq!(
            StudentsOfficeToScholarshipOffice.translate(&event).expect("translates"),
            vec![scholarship_office::Command::Enrolled {
                student: "student-1".into(),
                exam: "exam-1".into()
            }]
        );
    }

    #[test]
    fn the_studentenrolled_reader_resolves_against_the_published_schema() {
        check_reader(
            include_str!("../../../schemas/students-office/StudentEnrolled.avsc"),
            STUDENTENROLLED_READER,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn other_records_are_ignored() {
        assert!(StudentsOfficeToScholarshipOffice
            .translate(&test_event("students-office", "something.Else", ()))
            .expect("ignored")
            .is_empty());
    }
}
