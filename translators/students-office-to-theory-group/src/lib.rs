//! `students-office-to-theory-group`: Enrollments for seminars the theory group runs; the others are filtered out by owner.
//!
//! Reads the `StudentEnrolled` events of `students-office` through its own reader schema (only the fields it
//! needs) and turns them into `theory-group` commands. Pure and deterministic.

use apache_avro::AvroSchema;
use seam_core::translator::{ForeignEvent, TranslateError, Translator};
use serde::Deserialize;

/// The record this translator reads.
pub const RECORD: &str = "studentaffairs.studentsoffice.StudentEnrolled";

/// The consumer's view of `StudentEnrolled`: `reader/StudentEnrolled.avsc`, only the fields it needs.
pub const READER: &str = include_str!("../reader/StudentEnrolled.avsc");

#[derive(Debug, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.studentsoffice")]
#[cfg_attr(test, derive(serde::Serialize, Clone))]
struct StudentEnrolled {
    student: String,
    name: String,
    exam: String,
    title: String,
    owner: String,
}

/// The translator.
#[derive(Debug, Default, Clone, Copy)]
pub struct StudentsOfficeToTheoryGroup;

impl Translator<theory_group::model::Command> for StudentsOfficeToTheoryGroup {
    fn source(&self) -> &str {
        "students-office"
    }

    fn reader_schemas(&self) -> Vec<(&'static str, &'static str)> {
        vec![(RECORD, READER)]
    }

    /// The source's other records carry nothing this consumer keeps.
    fn ignores(&self) -> Vec<&'static str> {
        vec![
            "studentaffairs.studentsoffice.ExaminationCreated",
            "studentaffairs.studentsoffice.StudentCreated",
        ]
    }

    fn translate(&self, event: &ForeignEvent) -> Result<Vec<theory_group::model::Command>, TranslateError> {
        if event.record != RECORD {
            return Ok(vec![]);
        }
        let e: StudentEnrolled = event.payload()?;
        if e.owner != "theory-group" {
            return Ok(vec![]);
        }
        Ok(vec![theory_group::model::Command::Enroll {
            student: e.student,
            name: e.name,
            exam: e.exam,
            title: e.title,
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
        check_reader_type::<StudentEnrolled>(READER).expect("reader/StudentEnrolled.avsc");
    }

    const WRITER: &str = include_str!("../../../schemas/students-office/StudentEnrolled.avsc");

    fn sample() -> StudentEnrolled {
        StudentEnrolled {
            student: "student-1".into(),
            name: "name-1".into(),
            exam: "exam-1".into(),
            title: "title-1".into(),
            owner: "theory-group".into(),
        }
    }

    fn translate(read: StudentEnrolled) -> Vec<theory_group::model::Command> {
        StudentsOfficeToTheoryGroup
            .translate(&test_event("students-office", RECORD, read))
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
            vec![theory_group::model::Command::Enroll {
                student: "student-1".into(),
                name: "name-1".into(),
                exam: "exam-1".into(),
                title: "title-1".into()
            }]
        );
        assert_eq!(translate(sample()), translate(sample()), "deterministic");
    }

    #[test]
    fn other_records_are_ignored() {
        let event = test_event("students-office", "something.Else", ());
        assert!(StudentsOfficeToTheoryGroup
            .translate(&event)
            .expect("ignored")
            .is_empty());
    }

    #[test]
    fn events_for_other_owners_are_filtered_out() {
        let mut v = sample();
        v.owner = "someone-else".into();
        assert_eq!(translate(v), Vec::<theory_group::model::Command>::new());
    }
}
