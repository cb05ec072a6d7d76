//! `theory-group-to-ta-pool`: The theory group's hires, into the TA pool.
//!
//! Reads the `StudentHired` events of `theory-group` through its own reader schema (only the fields it
//! needs) and turns them into `ta-pool` commands. Pure and deterministic.

use apache_avro::AvroSchema;
use seam_core::translator::{ForeignEvent, TranslateError, Translator};
use serde::Deserialize;

/// The record this translator reads.
pub const RECORD: &str = "studentaffairs.theorygroup.StudentHired";

/// The consumer's view of `StudentHired`: `reader/StudentHired.avsc`, only the fields it needs.
pub const READER: &str = include_str!("../reader/StudentHired.avsc");

#[derive(Debug, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.theorygroup")]
#[cfg_attr(test, derive(serde::Serialize, Clone))]
struct StudentHired {
    student: String,
    group: String,
    hired_at: i64,
}

/// The translator.
#[derive(Debug, Default, Clone, Copy)]
pub struct TheoryGroupToTaPool;

impl Translator<ta_pool::Command> for TheoryGroupToTaPool {
    fn source(&self) -> &str {
        "theory-group"
    }

    fn reader_schemas(&self) -> Vec<(&'static str, &'static str)> {
        vec![(RECORD, READER)]
    }

    /// The source's other records carry nothing this consumer keeps.
    fn ignores(&self) -> Vec<&'static str> {
        vec![
            "studentaffairs.theorygroup.PresentationAssessed",
            "studentaffairs.theorygroup.StudentGraded",
        ]
    }

    fn translate(&self, event: &ForeignEvent) -> Result<Vec<ta_pool::Command>, TranslateError> {
        if event.record != RECORD {
            return Ok(vec![]);
        }
        let e: StudentHired = event.payload()?;
        Ok(vec![ta_pool::Command::RecordHire {
            student: e.student,
            group: e.group,
            hired_at: e.hired_at,
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
        check_reader_type::<StudentHired>(READER).expect("reader/StudentHired.avsc");
    }

    const WRITER: &str = include_str!("../../../schemas/theory-group/StudentHired.avsc");

    fn sample() -> StudentHired {
        StudentHired {
            student: "student-1".into(),
            group: "group-1".into(),
            hired_at: 7,
        }
    }

    fn translate(read: StudentHired) -> Vec<ta_pool::Command> {
        TheoryGroupToTaPool
            .translate(&test_event("theory-group", RECORD, read))
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
            vec![ta_pool::Command::RecordHire {
                student: "student-1".into(),
                group: "group-1".into(),
                hired_at: 7
            }]
        );
        assert_eq!(translate(sample()), translate(sample()), "deterministic");
    }

    #[test]
    fn other_records_are_ignored() {
        let event = test_event("theory-group", "something.Else", ());
        assert!(TheoryGroupToTaPool.translate(&event).expect("ignored").is_empty());
    }
}
