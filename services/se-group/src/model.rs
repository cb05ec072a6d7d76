//! The SE group's model and commands.
//!
//! Own commands (the lecturer's GUI) may be refused. Commands translated from the students
//! office and the TA pool never are: an enrollment for a student never seen creates the student
//! (getOrCreate), and a TA assignment is recorded whatever the group knew before.

use seam_core::service::{Apply, ApplyError, Service};
use serde::{Deserialize, Serialize};

use crate::events::{AssignmentCreated, PointsAwarded, StudentGraded, StudentHired};
use crate::NAME;

/// A student as the group knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Student {
    /// Name from the enrollment.
    pub name: Option<String>,
}

/// An examination of the modelling course.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Examination {
    /// Title from the enrollment.
    pub title: Option<String>,
}

/// An assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The examination it counts for.
    pub exam: String,
    /// Title.
    pub title: String,
    /// Points available.
    pub max_points: i32,
}

/// Commands of the SE group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// A student enrolled for one of the group's examinations (from the students office).
    Enroll {
        /// Matriculation number.
        student: String,
        /// Name.
        name: String,
        /// Examination id.
        exam: String,
        /// Examination title.
        title: String,
    },
    /// A student is a TA of some group (from the TA pool).
    RecordTa {
        /// Matriculation number.
        student: String,
        /// The group.
        group: String,
    },
    /// Set an assignment (the lecturer).
    CreateAssignment {
        /// Assignment id.
        assignment: String,
        /// Examination id.
        exam: String,
        /// Title.
        title: String,
        /// Points available.
        max_points: i32,
    },
    /// Award points for an assignment (a tutor).
    AwardPoints {
        /// Assignment id.
        assignment: String,
        /// Matriculation number.
        student: String,
        /// Points.
        points: i32,
    },
    /// Grade a student's examination from the points (the lecturer).
    Grade {
        /// Examination id.
        exam: String,
        /// Matriculation number.
        student: String,
    },
    /// Hire a student as TA (the lecturer); refused if the TA pool says another group has them.
    Hire {
        /// Matriculation number.
        student: String,
    },
}

/// Model keys.
pub mod keys {
    /// A student.
    pub fn student(id: &str) -> String {
        format!("student/{id}")
    }
    /// An examination.
    pub fn exam(id: &str) -> String {
        format!("exam/{id}")
    }
    /// An enrollment.
    pub fn enrollment(exam: &str, student: &str) -> String {
        format!("enrollment/{exam}/{student}")
    }
    /// An assignment.
    pub fn assignment(id: &str) -> String {
        format!("assignment/{id}")
    }
    /// Points of a student for an assignment.
    pub fn points(assignment: &str, student: &str) -> String {
        format!("points/{assignment}/{student}")
    }
    /// A grade given.
    pub fn grade(exam: &str, student: &str) -> String {
        format!("grade/{exam}/{student}")
    }
    /// The TA pool's record of a student (which group).
    pub fn ta(student: &str) -> String {
        format!("ta/{student}")
    }
    /// A hire by this group.
    pub fn hire(student: &str) -> String {
        format!("hire/{student}")
    }
}

/// Percentage of points to grade, as the modelling course's regulations say.
pub fn grade_for(points: i64, max: i64) -> &'static str {
    if max <= 0 {
        return "5.0";
    }
    let percent = points * 100 / max;
    match percent {
        95.. => "1.0",
        90..=94 => "1.3",
        85..=89 => "1.7",
        80..=84 => "2.0",
        75..=79 => "2.3",
        70..=74 => "2.7",
        65..=69 => "3.0",
        60..=64 => "3.3",
        55..=59 => "3.7",
        50..=54 => "4.0",
        _ => "5.0",
    }
}

/// The SE group.
#[derive(Debug, Default)]
pub struct SeGroup;

impl Service for SeGroup {
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
                ctx.put(
                    &keys::student(student),
                    &Student {
                        name: Some(name.clone()),
                    },
                )?;
                ctx.put(
                    &keys::exam(exam),
                    &Examination {
                        title: Some(title.clone()),
                    },
                )?;
                ctx.put(&keys::enrollment(exam, student), &name)?;
            }
            Command::RecordTa { student, group } => {
                if ctx.get::<Student>(&keys::student(student))?.is_none() {
                    ctx.put(&keys::student(student), &Student::default())?;
                }
                ctx.put(&keys::ta(student), group)?;
            }
            Command::CreateAssignment {
                assignment,
                exam,
                title,
                max_points,
            } => {
                if *max_points <= 0 {
                    return Err(ApplyError::rejected("an assignment needs max_points above 0"));
                }
                if ctx.get::<Examination>(&keys::exam(exam))?.is_none() {
                    return Err(ApplyError::rejected(format!(
                        "examination {exam} is not one of this group's (no enrollments yet)"
                    )));
                }
                if ctx.get::<Assignment>(&keys::assignment(assignment))?.is_some() {
                    return Err(ApplyError::rejected(format!("assignment {assignment} already exists")));
                }
                let a = Assignment {
                    exam: exam.clone(),
                    title: title.clone(),
                    max_points: *max_points,
                };
                ctx.put(&keys::assignment(assignment), &a)?;
                ctx.emit(
                    &format!("assignment/{assignment}"),
                    &AssignmentCreated {
                        assignment: assignment.clone(),
                        exam: exam.clone(),
                        title: title.clone(),
                        max_points: *max_points,
                    },
                )?;
            }
            Command::AwardPoints {
                assignment,
                student,
                points,
            } => {
                let Some(a) = ctx.get::<Assignment>(&keys::assignment(assignment))? else {
                    return Err(ApplyError::rejected(format!("assignment {assignment} does not exist")));
                };
                if !(0..=a.max_points).contains(points) {
                    return Err(ApplyError::rejected(format!(
                        "{points} points is outside 0..={} for {assignment}",
                        a.max_points
                    )));
                }
                if ctx.get::<String>(&keys::enrollment(&a.exam, student))?.is_none() {
                    return Err(ApplyError::rejected(format!(
                        "student {student} is not enrolled for {}",
                        a.exam
                    )));
                }
                ctx.put(&keys::points(assignment, student), points)?;
                ctx.emit(
                    &keys::student(student),
                    &PointsAwarded {
                        assignment: assignment.clone(),
                        student: student.clone(),
                        points: *points,
                    },
                )?;
            }
            Command::Grade { exam, student } => {
                if ctx.get::<String>(&keys::enrollment(exam, student))?.is_none() {
                    return Err(ApplyError::rejected(format!(
                        "student {student} is not enrolled for {exam}"
                    )));
                }
                let (mut got, mut max) = (0i64, 0i64);
                for (key, a) in ctx.scan::<Assignment>("assignment/")? {
                    if a.exam == *exam {
                        max += i64::from(a.max_points);
                        let id = key.trim_start_matches("assignment/");
                        got += i64::from(ctx.get::<i32>(&keys::points(id, student))?.unwrap_or(0));
                    }
                }
                if max == 0 {
                    return Err(ApplyError::rejected(format!(
                        "examination {exam} has no assignments to grade from"
                    )));
                }
                let grade = grade_for(got, max).to_string();
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
                if ctx.get::<Student>(&keys::student(student))?.is_none() {
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
