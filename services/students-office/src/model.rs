//! The students office's model and commands.
//!
//! Its own commands (from the clerk's GUI) are checked and may be refused; `RecordGrade` comes
//! from the groups' events and never is: an unknown student or examination becomes a placeholder
//! that a later `StudentCreated` / `ExaminationCreated` fills in (getOrCreate, seed 000).

use seam_core::service::{Apply, ApplyError, Service, SnapshotOut};
use serde::{Deserialize, Serialize};

use crate::events::{ExaminationCreated, StudentCreated, StudentEnrolled};

/// The grades German universities give.
pub const GRADES: [&str; 11] = [
    "1.0", "1.3", "1.7", "2.0", "2.3", "2.7", "3.0", "3.3", "3.7", "4.0", "5.0",
];

/// A student; `name` is `None` for a placeholder created by a grade that arrived first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Student {
    /// Full name.
    pub name: Option<String>,
    /// Course program.
    pub program: Option<String>,
}

/// An examination; `title` is `None` for a placeholder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Examination {
    /// Title.
    pub title: Option<String>,
    /// The group that runs it.
    pub owner: Option<String>,
    /// Semester.
    pub semester: Option<String>,
}

/// A grade on a student's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grade {
    /// The grade, e.g. `1.3`.
    pub grade: String,
    /// The group that gave it.
    pub grader: String,
}

/// Commands of the students office.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Register a student (the clerk).
    CreateStudent {
        /// Matriculation number.
        student: String,
        /// Full name.
        name: String,
        /// Course program.
        program: String,
    },
    /// Schedule an examination run by a group (the clerk).
    CreateExamination {
        /// Examination id.
        exam: String,
        /// Title.
        title: String,
        /// The group that runs it.
        owner: String,
        /// Semester.
        semester: String,
    },
    /// Enroll a student for an examination (the student, at the office's GUI).
    Enroll {
        /// Matriculation number.
        student: String,
        /// Examination id.
        exam: String,
    },
    /// A group graded a student (translated from the group's `StudentGraded`).
    RecordGrade {
        /// Matriculation number.
        student: String,
        /// Examination id.
        exam: String,
        /// The grade.
        grade: String,
        /// The grading group.
        grader: String,
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
    /// A grade.
    pub fn grade(exam: &str, student: &str) -> String {
        format!("grade/{exam}/{student}")
    }
}

/// The students office.
#[derive(Debug, Default)]
pub struct StudentsOffice;

impl Service for StudentsOffice {
    type Command = Command;

    /// Grades come from the groups' events only.
    fn is_internal(&self, command: &Command) -> bool {
        matches!(command, Command::RecordGrade { .. })
    }

    fn apply(&self, ctx: &mut Apply<'_>, command: &Command) -> Result<(), ApplyError> {
        match command {
            Command::CreateStudent { student, name, program } => {
                require(
                    !student.is_empty() && !name.is_empty(),
                    "a student needs a matriculation number and a name",
                )?;
                let key = keys::student(student);
                if let Some(Student {
                    name: Some(existing), ..
                }) = ctx.get::<Student>(&key)?
                {
                    return Err(ApplyError::rejected(format!(
                        "student {student} already exists ({existing})"
                    )));
                }
                ctx.put(
                    &key,
                    &Student {
                        name: Some(name.clone()),
                        program: Some(program.clone()),
                    },
                )?;
                ctx.emit(
                    &key,
                    &StudentCreated {
                        student: student.clone(),
                        name: name.clone(),
                        program: program.clone(),
                    },
                )?;
            }
            Command::CreateExamination {
                exam,
                title,
                owner,
                semester,
            } => {
                require(
                    !exam.is_empty() && !title.is_empty() && !owner.is_empty(),
                    "an examination needs an id, a title and an owning group",
                )?;
                let key = keys::exam(exam);
                if let Some(Examination {
                    title: Some(existing), ..
                }) = ctx.get::<Examination>(&key)?
                {
                    return Err(ApplyError::rejected(format!(
                        "examination {exam} already exists ({existing})"
                    )));
                }
                ctx.put(
                    &key,
                    &Examination {
                        title: Some(title.clone()),
                        owner: Some(owner.clone()),
                        semester: Some(semester.clone()),
                    },
                )?;
                ctx.emit(
                    &key,
                    &ExaminationCreated {
                        exam: exam.clone(),
                        title: title.clone(),
                        owner: owner.clone(),
                        semester: semester.clone(),
                    },
                )?;
            }
            Command::Enroll { student, exam } => {
                let Some(Student { name: Some(name), .. }) = ctx.get::<Student>(&keys::student(student))? else {
                    return Err(ApplyError::rejected(format!(
                        "student {student} is not registered; create the student first"
                    )));
                };
                let Some(Examination {
                    title: Some(title),
                    owner: Some(owner),
                    ..
                }) = ctx.get::<Examination>(&keys::exam(exam))?
                else {
                    return Err(ApplyError::rejected(format!(
                        "examination {exam} is not scheduled; create it first"
                    )));
                };
                let key = keys::enrollment(exam, student);
                if ctx.get::<bool>(&key)?.is_some() {
                    return Err(ApplyError::rejected(format!(
                        "student {student} is already enrolled for {exam}"
                    )));
                }
                ctx.put(&key, &true)?;
                ctx.emit(
                    &keys::student(student),
                    &StudentEnrolled {
                        student: student.clone(),
                        name,
                        exam: exam.clone(),
                        title,
                        owner,
                    },
                )?;
            }
            Command::RecordGrade {
                student,
                exam,
                grade,
                grader,
            } => {
                // getOrCreate: a grade is a fact from another service, never refused.
                if ctx.get::<Student>(&keys::student(student))?.is_none() {
                    ctx.put(&keys::student(student), &Student::default())?;
                }
                if ctx.get::<Examination>(&keys::exam(exam))?.is_none() {
                    ctx.put(&keys::exam(exam), &Examination::default())?;
                }
                ctx.put(
                    &keys::grade(exam, student),
                    &Grade {
                        grade: grade.clone(),
                        grader: grader.clone(),
                    },
                )?;
            }
        }
        Ok(())
    }

    fn snapshot(&self, out: &mut SnapshotOut<'_>) -> Result<(), ApplyError> {
        self.export(out)
    }
}

impl StudentsOffice {
    /// The office's state as the events that would build it: every registered student, every
    /// scheduled examination, every enrollment (placeholders carry nothing to transfer yet).
    pub fn export(&self, out: &mut SnapshotOut<'_>) -> Result<(), ApplyError> {
        // Streamed: the enrollments look their student and examination up instead of holding
        // every student and examination in memory.
        for entry in out.scan::<Student>("student/")? {
            let (key, s) = entry?;
            if let (Some(name), Some(program)) = (&s.name, &s.program) {
                let student = key.trim_start_matches("student/").to_string();
                out.emit(
                    &key,
                    &StudentCreated {
                        student,
                        name: name.clone(),
                        program: program.clone(),
                    },
                )?;
            }
        }
        for entry in out.scan::<Examination>("exam/")? {
            let (key, e) = entry?;
            if let (Some(title), Some(owner), Some(semester)) = (&e.title, &e.owner, &e.semester) {
                let exam = key.trim_start_matches("exam/").to_string();
                out.emit(
                    &key,
                    &ExaminationCreated {
                        exam,
                        title: title.clone(),
                        owner: owner.clone(),
                        semester: semester.clone(),
                    },
                )?;
            }
        }
        for entry in out.scan::<bool>("enrollment/")? {
            let (key, _) = entry?;
            let Some((exam, student)) = key.trim_start_matches("enrollment/").split_once('/') else {
                continue;
            };
            let name = out
                .get::<Student>(&keys::student(student))?
                .and_then(|s| s.name)
                .unwrap_or_default();
            let e = out.get::<Examination>(&keys::exam(exam))?.unwrap_or_default();
            out.emit(
                &keys::student(student),
                &StudentEnrolled {
                    student: student.to_string(),
                    name,
                    exam: exam.to_string(),
                    title: e.title.unwrap_or_default(),
                    owner: e.owner.unwrap_or_default(),
                },
            )?;
        }
        Ok(())
    }
}

fn require(ok: bool, message: &str) -> Result<(), ApplyError> {
    if ok {
        Ok(())
    } else {
        Err(ApplyError::rejected(message))
    }
}
