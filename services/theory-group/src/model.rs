//! The theory group's model and commands: a seminar-presentation grading scheme.
//!
//! Each presentation is scored 0–10 on four criteria with fixed weights; the grade is the
//! weighted score mapped to the university's scale. Translated commands (enrollments, TA
//! assignments) create what they refer to and are never refused.

use seam_core::service::{Apply, ApplyError, Service};
use serde::{Deserialize, Serialize};

use crate::events::{PresentationAssessed, StudentGraded, StudentHired};
use crate::NAME;

/// The grading scheme: criterion and weight in percent (they add up to 100).
pub const SCHEME: [(&str, i64); 4] = [("content", 40), ("structure", 20), ("delivery", 20), ("discussion", 20)];

/// Commands of the theory group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// A student enrolled for one of the group's seminars (from the students office).
    Enroll {
        /// Matriculation number.
        student: String,
        /// Name.
        name: String,
        /// Examination id.
        exam: String,
        /// Seminar title.
        title: String,
    },
    /// A student is a TA of some group (from the TA pool).
    RecordTa {
        /// Matriculation number.
        student: String,
        /// The group.
        group: String,
    },
    /// Score one criterion of a presentation (the seminar's lecturer).
    Assess {
        /// Examination id.
        exam: String,
        /// Matriculation number.
        student: String,
        /// Criterion of [`SCHEME`].
        criterion: String,
        /// 0..=10.
        score: i32,
    },
    /// Grade a seminar once every criterion is scored.
    Grade {
        /// Examination id.
        exam: String,
        /// Matriculation number.
        student: String,
    },
    /// Hire a student as TA; refused if the TA pool says another group has them.
    Hire {
        /// Matriculation number.
        student: String,
    },
}

/// Model keys.
pub mod keys {
    /// A student (name, if known).
    pub fn student(id: &str) -> String {
        format!("student/{id}")
    }
    /// A seminar.
    pub fn seminar(id: &str) -> String {
        format!("seminar/{id}")
    }
    /// A participation.
    pub fn participant(exam: &str, student: &str) -> String {
        format!("participant/{exam}/{student}")
    }
    /// A criterion score.
    pub fn score(exam: &str, student: &str, criterion: &str) -> String {
        format!("score/{exam}/{student}/{criterion}")
    }
    /// A grade given.
    pub fn grade(exam: &str, student: &str) -> String {
        format!("grade/{exam}/{student}")
    }
    /// The TA pool's record of a student.
    pub fn ta(student: &str) -> String {
        format!("ta/{student}")
    }
    /// A hire by this group.
    pub fn hire(student: &str) -> String {
        format!("hire/{student}")
    }
}

/// Weighted score (0..=1000, tenths of a point × 100) to grade.
pub fn grade_for(weighted: i64) -> &'static str {
    match weighted {
        900.. => "1.0",
        850..=899 => "1.3",
        800..=849 => "1.7",
        750..=799 => "2.0",
        700..=749 => "2.3",
        650..=699 => "2.7",
        600..=649 => "3.0",
        550..=599 => "3.3",
        500..=549 => "3.7",
        450..=499 => "4.0",
        _ => "5.0",
    }
}

/// The theory group.
#[derive(Debug, Default)]
pub struct TheoryGroup;

impl Service for TheoryGroup {
    type Command = Command;

    /// Enrolments and TA records come from the students office and the TA pool only.
    fn is_internal(&self, command: &Command) -> bool {
        matches!(command, Command::Enroll { .. } | Command::RecordTa { .. })
    }

    fn apply(&self, ctx: &mut Apply<'_>, command: &Command) -> Result<(), ApplyError> {
        match command {
            Command::Enroll {
                student,
                name,
                exam,
                title,
            } => {
                ctx.put(&keys::student(student), &Some(name.clone()))?;
                ctx.put(&keys::seminar(exam), &Some(title.clone()))?;
                ctx.put(&keys::participant(exam, student), name)?;
            }
            Command::RecordTa { student, group } => {
                if ctx.get::<Option<String>>(&keys::student(student))?.is_none() {
                    ctx.put(&keys::student(student), &None::<String>)?;
                }
                ctx.put(&keys::ta(student), group)?;
            }
            Command::Assess {
                exam,
                student,
                criterion,
                score,
            } => {
                if !SCHEME.iter().any(|(c, _)| c == criterion) {
                    let names: Vec<&str> = SCHEME.iter().map(|(c, _)| *c).collect();
                    return Err(ApplyError::rejected(format!(
                        "`{criterion}` is not a criterion of the scheme; use one of {names:?}"
                    )));
                }
                if !(0..=10).contains(score) {
                    return Err(ApplyError::rejected(format!("score {score} is outside 0..=10")));
                }
                if ctx.get::<String>(&keys::participant(exam, student))?.is_none() {
                    return Err(ApplyError::rejected(format!(
                        "student {student} does not take part in seminar {exam}"
                    )));
                }
                ctx.put(&keys::score(exam, student, criterion), score)?;
                ctx.emit(
                    &keys::student(student),
                    &PresentationAssessed {
                        exam: exam.clone(),
                        student: student.clone(),
                        criterion: criterion.clone(),
                        score: *score,
                    },
                )?;
            }
            Command::Grade { exam, student } => {
                let mut weighted = 0i64;
                for (criterion, weight) in SCHEME {
                    let Some(score) = ctx.get::<i32>(&keys::score(exam, student, criterion))? else {
                        return Err(ApplyError::rejected(format!(
                            "{criterion} is not scored yet for student {student} in {exam}"
                        )));
                    };
                    weighted += i64::from(score) * weight;
                }
                let grade = grade_for(weighted).to_string();
                ctx.put(&keys::grade(exam, student), &grade)?;
                ctx.emit(
                    &keys::student(student),
                    &StudentGraded {
                        student: student.clone(),
                        exam: exam.clone(),
                        grade,
                        grader: NAME.into(),
                    },
                )?;
            }
            Command::Hire { student } => {
                if ctx.get::<Option<String>>(&keys::student(student))?.is_none() {
                    return Err(ApplyError::rejected(format!(
                        "student {student} is unknown to this group"
                    )));
                }
                if let Some(group) = ctx.get::<String>(&keys::ta(student))? {
                    return Err(ApplyError::rejected(format!(
                        "student {student} already works as TA for {group} (according to the TA pool)"
                    )));
                }
                if ctx.get::<bool>(&keys::hire(student))?.is_some() {
                    return Err(ApplyError::rejected(format!(
                        "student {student} is already hired by this group"
                    )));
                }
                ctx.put(&keys::hire(student), &true)?;
                ctx.emit(
                    &keys::student(student),
                    &StudentHired {
                        student: student.clone(),
                        group: NAME.into(),
                        hired_at: ctx.now_ms(),
                    },
                )?;
            }
        }
        Ok(())
    }
}
