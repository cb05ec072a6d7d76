//! `ta-pool-to-se-group`: Who works as TA for whom, so the SE group does not hire a student twice.
//!
//! Reads the `TaAssigned` events of `ta-pool` through its own reader schema (only the fields it
//! needs) and turns them into `se-group` commands. Pure and deterministic.

use seam_core::translator::{ForeignEvent, TranslateError, Translator};
use serde::Deserialize;

/// The record this translator reads.
pub const RECORD: &str = "studentaffairs.tapool.TaAssigned";

/// The consumer's view of `TaAssigned`.
pub const READER: &str = r#"{"type":"record","name":"TaAssigned","namespace":"studentaffairs.tapool","fields":[{"name":"student","type":"string"},{"name":"group","type":"string"}]}"#;

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize, Clone))]
struct Read {
    student: String,
    group: String,
}

/// The translator.
#[derive(Debug, Default, Clone, Copy)]
pub struct TaPoolToSeGroup;

impl Translator<se_group::model::Command> for TaPoolToSeGroup {
    fn source(&self) -> &str {
        "ta-pool"
    }

    fn reader_schemas(&self) -> Vec<(&'static str, &'static str)> {
        vec![(RECORD, READER)]
    }

    fn translate(&self, event: &ForeignEvent) -> Result<Vec<se_group::model::Command>, TranslateError> {
        if event.record != RECORD {
            return Ok(vec![]);
        }
        let e: Read = event.payload()?;
        Ok(vec![se_group::model::Command::RecordTa {
            student: e.student,
            group: e.group,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seam_core::translator::{check_reader, test_event};

    const WRITER: &str = include_str!("../../../schemas/ta-pool/TaAssigned.avsc");

    fn sample() -> Read {
        Read {
            student: "student-1".into(),
            group: "group-1".into(),
        }
    }

    fn translate(read: Read) -> Vec<se_group::model::Command> {
        TaPoolToSeGroup
            .translate(&test_event("ta-pool", RECORD, read))
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
            vec![se_group::model::Command::RecordTa {
                student: "student-1".into(),
                group: "group-1".into()
            }]
        );
        assert_eq!(translate(sample()), translate(sample()), "deterministic");
    }

    #[test]
    fn other_records_are_ignored() {
        let event = test_event("ta-pool", "something.Else", ());
        assert!(TaPoolToSeGroup.translate(&event).expect("ignored").is_empty());
    }
}
