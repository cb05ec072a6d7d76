//! `theory-group-to-ta-pool`: The theory group's hires, into the TA pool.
//!
//! Reads the `StudentHired` events of `theory-group` through its own reader schema (only the fields it
//! needs) and turns them into `ta-pool` commands. Pure and deterministic.

use seam_core::translator::{ForeignEvent, TranslateError, Translator};
use serde::Deserialize;

/// The record this translator reads.
pub const RECORD: &str = "studentaffairs.theorygroup.StudentHired";

/// The consumer's view of `StudentHired`.
pub const READER: &str = r#"{"type":"record","name":"StudentHired","namespace":"studentaffairs.theorygroup","fields":[{"name":"student","type":"string"},{"name":"group","type":"string"},{"name":"hired_at","type":"long"}]}"#;

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize, Clone))]
struct Read {
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
        let e: Read = event.payload()?;
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
    use seam_core::translator::{check_reader, test_event};

    const WRITER: &str = include_str!("../../../schemas/theory-group/StudentHired.avsc");

    fn sample() -> Read {
        Read {
            student: "student-1".into(),
            group: "group-1".into(),
            hired_at: 7,
        }
    }

    fn translate(read: Read) -> Vec<ta_pool::Command> {
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
