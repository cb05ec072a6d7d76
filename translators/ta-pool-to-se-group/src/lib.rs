//! `ta-pool-to-se-group`: Who works as TA for whom, so the SE group does not hire a student twice.
//!
//! Reads the `TaAssigned` events of `ta-pool` through its own reader schema (only the fields it
//! needs) and turns them into `se-group` commands. Pure and deterministic.

use apache_avro::AvroSchema;
use seam_core::translator::{ForeignEvent, TranslateError, Translator};
use serde::Deserialize;

/// The record this translator reads.
pub const RECORD: &str = "studentaffairs.tapool.TaAssigned";

/// The consumer's view of `TaAssigned`: `reader/TaAssigned.avsc`, only the fields it needs.
pub const READER: &str = include_str!("../reader/TaAssigned.avsc");

#[derive(Debug, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.tapool")]
#[cfg_attr(test, derive(serde::Serialize, Clone))]
struct TaAssigned {
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
        let e: TaAssigned = event.payload()?;
        Ok(vec![se_group::model::Command::RecordTa {
            student: e.student,
            group: e.group,
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
        check_reader_type::<TaAssigned>(READER).expect("reader/TaAssigned.avsc");
    }

    const WRITER: &str = include_str!("../../../schemas/ta-pool/TaAssigned.avsc");

    fn sample() -> TaAssigned {
        TaAssigned {
            student: "student-1".into(),
            group: "group-1".into(),
        }
    }

    fn translate(read: TaAssigned) -> Vec<se_group::model::Command> {
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
