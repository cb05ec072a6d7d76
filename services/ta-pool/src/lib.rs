//! The TA pool of seed 000: the research groups report their hires of teaching assistants here,
//! and read back who is taken. Every hire is a fact (it happened), so none is refused: the
//! student goes to the earliest hire, the others are kept as a conflict to resolve, and
//! `TaAssigned` is published whenever the assignment changes.

#[cfg(feature = "http")]
pub mod api;

use apache_avro::AvroSchema;
use seam_core::codec::{Catalog, CatalogError};
use seam_core::service::{Apply, ApplyError, Event, Replica, Service};
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
        /// When, milliseconds since the Unix epoch.
        hired_at: i64,
    },
}

/// The pool's record of one student: every hire reported, and who gets the student.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The group the student works for: the earliest hire (ties: the group name decides).
    pub group: String,
    /// Every group that hired the student, with when; more than one is a conflict to resolve.
    pub hires: std::collections::BTreeMap<String, i64>,
}

impl Assignment {
    /// Whether more than one group hired the student.
    pub fn conflict(&self) -> bool {
        self.hires.len() > 1
    }
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

    /// Hires are recorded from the groups' events only.
    fn is_internal(&self, command: &Command) -> bool {
        matches!(command, Command::RecordHire { .. })
    }

    /// The outcome depends only on the set of hires, never on their arrival order, so the pool
    /// converges however the groups' topics interleave.
    fn apply(&self, ctx: &mut Apply<'_>, command: &Command) -> Result<(), ApplyError> {
        let Command::RecordHire {
            student,
            group,
            hired_at,
        } = command;
        let mut a = ctx.get::<Assignment>(&key(student))?.unwrap_or_default();
        if a.hires.contains_key(group) {
            return Ok(());
        }
        a.hires.insert(group.clone(), *hired_at);
        let winner = a
            .hires
            .iter()
            .min_by_key(|(g, at)| (**at, (*g).clone()))
            .map(|(g, _)| g.clone())
            .unwrap_or_default();
        let changed = winner != a.group;
        a.group = winner.clone();
        ctx.put(&key(student), &a)?;
        if changed {
            ctx.emit(
                &format!("student/{student}"),
                &TaAssigned {
                    student: student.clone(),
                    group: winner,
                },
            )?;
        }
        Ok(())
    }

    /// Assignments are built from the groups' hires only, so `seam replay` can rebuild them.
    fn replicas(&self) -> Vec<Replica> {
        vec![Replica {
            prefix: "ta/",
            sources: &["se-group", "theory-group"],
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seam::runtime::Applier;

    #[test]
    fn the_rust_event_type_matches_the_published_schema() {
        catalog()
            .expect("catalog")
            .check_type::<TaAssigned>(TaAssigned::RECORD)
            .expect("TaAssigned");
    }

    #[test]
    fn the_earliest_hire_wins_whatever_arrives_first_and_conflicts_are_kept() {
        let dir = std::env::temp_dir().join(format!("ta-pool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = seam::store::open(&dir).expect("store");
        let mut applier = Applier::new(NAME, store.clone(), TaPool, catalog().expect("catalog")).expect("applier");
        let hire = |g: &str, at: i64| Command::RecordHire {
            student: "7".into(),
            group: g.into(),
            hired_at: at,
        };
        let mut emitted = 0;
        for c in [
            hire("theory-group", 20),
            hire("se-group", 10),
            hire("se-group", 10),
            hire("theory-group", 20),
        ] {
            emitted += applier.execute(&c).expect("never refused").len();
        }
        assert_eq!(
            emitted, 2,
            "theory-group first, then the earlier se-group hire takes over"
        );
        let a: Assignment =
            serde_json::from_slice(&store.model_get(&key("7")).expect("read").expect("present")).expect("decode");
        assert_eq!(a.group, "se-group", "the earliest hire wins, whatever arrived first");
        assert!(a.conflict());
    }
}
