//! The TA pool of seed 000: the research groups report their hires of teaching assistants here,
//! and read back who is taken. The first hire of a student is recorded and published as
//! `TaAssigned`; a later hire of the same student by another group is a fact too (it happened),
//! so it is kept as a conflict for the office to resolve, not refused.

pub mod api;

use apache_avro::AvroSchema;
use seam::codec::{Catalog, CatalogError};
use seam::service::{Apply, ApplyError, Event, Service};
use serde::{Deserialize, Serialize};

/// The service name (topic `ta-pool.events`).
pub const NAME: &str = "ta-pool";

/// The published contract.
pub fn catalog() -> Result<Catalog, CatalogError> {
    Catalog::from_sources([(
        "TaAssigned.avsc",
        include_str!("../../../schemas/ta-pool/TaAssigned.avsc"),
    )])
}

/// A student was assigned to a group as TA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.tapool")]
pub struct TaAssigned {
    /// Matriculation number.
    pub student: String,
    /// The group the student works for.
    pub group: String,
}

impl Event for TaAssigned {
    const RECORD: &'static str = "studentaffairs.tapool.TaAssigned";
}

/// Commands (all translated from the groups' `StudentHired`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// A group hired a student.
    RecordHire {
        /// Matriculation number.
        student: String,
        /// The hiring group.
        group: String,
    },
}

/// The pool's record of one student.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The group the student works for (the first hire).
    pub group: String,
    /// Later hires by other groups, in arrival order: conflicts to resolve.
    pub conflicts: Vec<String>,
}

/// Model key of a student's assignment.
pub fn key(student: &str) -> String {
    format!("ta/{student}")
}

/// The TA pool.
#[derive(Debug, Default)]
pub struct TaPool;

impl Service for TaPool {
    type Command = Command;

    fn apply(&self, ctx: &mut Apply<'_>, command: &Command) -> Result<(), ApplyError> {
        let Command::RecordHire { student, group } = command;
        match ctx.get::<Assignment>(&key(student))? {
            None => {
                ctx.put(
                    &key(student),
                    &Assignment {
                        group: group.clone(),
                        conflicts: vec![],
                    },
                )?;
                ctx.emit(
                    &format!("student/{student}"),
                    &TaAssigned {
                        student: student.clone(),
                        group: group.clone(),
                    },
                )?;
            }
            Some(a) if a.group == *group || a.conflicts.contains(group) => {}
            Some(mut a) => {
                a.conflicts.push(group.clone());
                ctx.put(&key(student), &a)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seam::service::Cause;
    use seam::store::Store;

    #[test]
    fn the_rust_event_type_matches_the_published_schema() {
        catalog()
            .expect("catalog")
            .check_type::<TaAssigned>(TaAssigned::RECORD)
            .expect("TaAssigned");
    }

    #[test]
    fn the_first_hire_wins_and_later_ones_are_kept_as_conflicts() {
        let dir = std::env::temp_dir().join(format!("ta-pool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).expect("store");
        let catalog = catalog().expect("catalog");
        let mut set = store.write_set().expect("set");
        let cause = Cause::default();
        let hire = |g: &str| Command::RecordHire {
            student: "7".into(),
            group: g.into(),
        };
        let mut emitted = 0;
        for c in [
            hire("se-group"),
            hire("se-group"),
            hire("theory-group"),
            hire("theory-group"),
        ] {
            let mut ctx = Apply::new(&store, &mut set, &catalog, &cause, 0);
            TaPool.apply(&mut ctx, &c).expect("never refused");
            emitted += ctx.emitted().len();
            set.keep();
        }
        store.commit(set, false).expect("commit");
        assert_eq!(emitted, 1, "one TaAssigned for the first hire");
        let a: Assignment =
            serde_json::from_slice(&store.model_get(&key("7")).expect("read").expect("present")).expect("decode");
        assert_eq!(
            a,
            Assignment {
                group: "se-group".into(),
                conflicts: vec!["theory-group".into()]
            }
        );
    }
}
