//! The scholarship office: a fifth service that joins Student Affairs late. It learns the
//! students and their enrollments from the students office (bootstrapping from its snapshot
//! instead of its whole history) and the grades from both groups, and awards a merit
//! scholarship once a student has at least two graded examinations, none failed, averaging 1.7
//! or better. The award depends only on the set of grades, so it converges however the three
//! sources interleave.

use std::collections::{BTreeMap, BTreeSet};

use apache_avro::AvroSchema;
use seam_core::codec::{Catalog, CatalogError};
use seam_core::service::{Apply, ApplyError, Event, Replica, Service};
use serde::{Deserialize, Serialize};

/// The service name (topic `scholarship-office.events`).
pub const NAME: &str = "scholarship-office";

#[cfg(feature = "http")]
pub mod api;

/// The published contract.
pub fn catalog() -> Result<Catalog, CatalogError> {
    Catalog::from_sources([(
        "ScholarshipAwarded.avsc",
        include_str!("../../../schemas/scholarship-office/ScholarshipAwarded.avsc"),
    )])
}

/// A scholarship was awarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, AvroSchema)]
#[avro(namespace = "studentaffairs.scholarshipoffice")]
pub struct ScholarshipAwarded {
    /// Matriculation number.
    pub student: String,
    /// Name (empty while only a placeholder is known).
    pub name: String,
    /// Grade average, e.g. `1.3`.
    pub average: String,
}

impl Event for ScholarshipAwarded {
    const RECORD: &'static str = "studentaffairs.scholarshipoffice.ScholarshipAwarded";
}

/// Commands, all translated from other services' events (getOrCreate on the student).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// The students office registered a student.
    Name {
        /// Matriculation number.
        student: String,
        /// Name.
        name: String,
    },
    /// The student enrolled for an examination.
    Enrolled {
        /// Matriculation number.
        student: String,
        /// Examination id.
        exam: String,
    },
    /// A group graded the student.
    Graded {
        /// Matriculation number.
        student: String,
        /// Examination id.
        exam: String,
        /// The grade, e.g. `1.3`.
        grade: String,
        /// The grading group.
        grader: String,
    },
}

/// What the office knows of a student.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// Name, once known.
    pub name: Option<String>,
    /// Examinations enrolled for.
    pub enrolled: BTreeSet<String>,
    /// Grades by examination, with the grading group.
    pub grades: BTreeMap<String, (String, String)>,
    /// Whether the scholarship was awarded (it is never taken back).
    pub awarded: bool,
}

/// The grade average in tenths (13 = 1.3), if the grades qualify for a scholarship.
pub fn qualifying_average(grades: &BTreeMap<String, String>) -> Option<u32> {
    if grades.len() < 2 {
        return None;
    }
    let mut tenths = Vec::with_capacity(grades.len());
    for g in grades.values() {
        let (whole, frac) = g.split_once('.')?;
        let t = whole.parse::<u32>().ok()? * 10 + frac.parse::<u32>().ok()?;
        if t >= 50 {
            return None;
        }
        tenths.push(t);
    }
    let average = tenths.iter().sum::<u32>() / tenths.len() as u32;
    (average <= 17).then_some(average)
}

/// Model key of a candidate.
pub fn key(student: &str) -> String {
    format!("candidate/{student}")
}

/// The scholarship office.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScholarshipOffice;

impl Service for ScholarshipOffice {
    type Command = Command;

    /// Every command of the office comes from its translators: its data is all replicated.
    fn is_internal(&self, _command: &Command) -> bool {
        true
    }

    fn apply(&self, ctx: &mut Apply<'_>, command: &Command) -> Result<(), ApplyError> {
        let student = match command {
            Command::Name { student, .. } | Command::Enrolled { student, .. } | Command::Graded { student, .. } => {
                student
            }
        };
        let mut c = ctx.get::<Candidate>(&key(student))?.unwrap_or_default();
        match command {
            Command::Name { name, .. } => c.name = Some(name.clone()),
            Command::Enrolled { exam, .. } => {
                c.enrolled.insert(exam.clone());
            }
            Command::Graded {
                exam, grade, grader, ..
            } => {
                c.grades.insert(exam.clone(), (grade.clone(), grader.clone()));
            }
        }
        if !c.awarded {
            let grades: BTreeMap<String, String> = c.grades.iter().map(|(e, (g, _))| (e.clone(), g.clone())).collect();
            if let Some(avg) = qualifying_average(&grades) {
                c.awarded = true;
                let event = ScholarshipAwarded {
                    student: student.clone(),
                    name: c.name.clone().unwrap_or_default(),
                    average: format!("{}.{}", avg / 10, avg % 10),
                };
                ctx.emit(&format!("student/{student}"), &event)?;
            }
        }
        ctx.put(&key(student), &c)
    }

    /// Candidates are built from foreign events only, so `seam replay` can rebuild them.
    fn replicas(&self) -> Vec<Replica> {
        vec![Replica {
            prefix: "candidate/",
            sources: &["students-office", "se-group", "theory-group"],
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rust_event_type_matches_the_published_schema() {
        catalog()
            .expect("catalog")
            .check_type::<ScholarshipAwarded>(ScholarshipAwarded::RECORD)
            .expect("ScholarshipAwarded");
    }

    #[test]
    fn two_good_grades_qualify_and_a_fail_or_one_grade_does_not() {
        let g = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(e, g)| (e.to_string(), g.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(qualifying_average(&g(&[("a", "1.0"), ("b", "2.3")])), Some(16));
        assert_eq!(qualifying_average(&g(&[("a", "1.0")])), None, "one grade");
        assert_eq!(qualifying_average(&g(&[("a", "1.0"), ("b", "5.0")])), None, "a fail");
        assert_eq!(
            qualifying_average(&g(&[("a", "2.0"), ("b", "2.0")])),
            None,
            "average 2.0"
        );
        assert_eq!(qualifying_average(&g(&[("a", "x"), ("b", "1.0")])), None, "not a grade");
    }
}
