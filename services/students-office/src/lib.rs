//! The students office of seed 000: it keeps the students and their course programs, schedules
//! the examinations (each run by a research group), enrolls students, and receives the grades
//! the groups give. Its model knows nothing of the groups' internals; grades arrive as commands
//! translated from their events.

#[cfg(feature = "http")]
pub mod api;
pub mod events;
pub mod model;

use seam_core::codec::{Catalog, CatalogError};

/// The service name (topic `students-office.events`).
pub const NAME: &str = "students-office";

/// The published contract, embedded so the binary carries it.
pub fn catalog() -> Result<Catalog, CatalogError> {
    Catalog::from_sources([
        (
            "StudentCreated.avsc",
            include_str!("../../../schemas/students-office/StudentCreated.avsc"),
        ),
        (
            "ExaminationCreated.avsc",
            include_str!("../../../schemas/students-office/ExaminationCreated.avsc"),
        ),
        (
            "StudentEnrolled.avsc",
            include_str!("../../../schemas/students-office/StudentEnrolled.avsc"),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use seam::runtime::Applier;
    use seam::store::Store;
    use seam_core::service::{Event, Service};

    use crate::model::{keys, Command, Examination, Grade, Student, StudentsOffice};

    #[test]
    fn rust_event_types_match_the_published_schemas() {
        let c = catalog().expect("catalog");
        c.check_type::<events::StudentCreated>(events::StudentCreated::RECORD)
            .expect("StudentCreated");
        c.check_type::<events::ExaminationCreated>(events::ExaminationCreated::RECORD)
            .expect("ExaminationCreated");
        c.check_type::<events::StudentEnrolled>(events::StudentEnrolled::RECORD)
            .expect("StudentEnrolled");
    }

    /// Runs commands through the runtime's own apply path (one commit per command).
    fn run(commands: &[Command]) -> (Store, Vec<Result<Vec<u64>, String>>) {
        let dir = std::env::temp_dir().join(format!(
            "students-office-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let store = seam::store::open(&dir).expect("store");
        let mut applier = Applier::new(
            "students-office",
            store.clone(),
            StudentsOffice,
            catalog().expect("catalog"),
        )
        .expect("applier");
        let results = commands
            .iter()
            .map(|c| applier.execute(c).map_err(|e| e.to_string()))
            .collect();
        (store, results)
    }

    fn student(id: &str) -> Command {
        Command::CreateStudent {
            student: id.into(),
            name: format!("Student {id}"),
            program: "CS".into(),
        }
    }

    fn exam(id: &str) -> Command {
        Command::CreateExamination {
            exam: id.into(),
            title: "Modelling".into(),
            owner: "se-group".into(),
            semester: "2026W".into(),
        }
    }

    #[test]
    fn enrolling_needs_a_registered_student_and_a_scheduled_exam_and_happens_once() {
        let enroll = Command::Enroll {
            student: "1".into(),
            exam: "m1".into(),
        };
        let (_, r) = run(&[
            enroll.clone(),
            student("1"),
            enroll.clone(),
            exam("m1"),
            enroll.clone(),
            enroll,
        ]);
        assert!(r[0].as_ref().expect_err("no student").contains("not registered"));
        assert!(r[2].as_ref().expect_err("no exam").contains("not scheduled"));
        assert_eq!(r[4].as_ref().expect("enrolled").len(), 1, "one StudentEnrolled");
        assert!(r[5].as_ref().expect_err("twice").contains("already enrolled"));
    }

    #[test]
    fn a_grade_for_unknown_student_and_exam_creates_placeholders_that_later_events_fill() {
        let grade = Command::RecordGrade {
            student: "9".into(),
            exam: "t1".into(),
            grade: "1.3".into(),
            grader: "theory-group".into(),
        };
        let (store, r) = run(&[grade.clone(), grade, student("9")]);
        assert!(r.iter().all(Result::is_ok), "{r:?}");
        let s: Student = serde_json_get(&store, &keys::student("9"));
        assert_eq!(s.name.as_deref(), Some("Student 9"));
        let e: Examination = serde_json_get(&store, &keys::exam("t1"));
        assert_eq!(e, Examination::default(), "a placeholder until the exam is known");
        let g: Grade = serde_json_get(&store, &keys::grade("t1", "9"));
        assert_eq!(g.grade, "1.3");
    }

    #[test]
    fn the_snapshot_holds_every_student_exam_and_enrollment_but_no_placeholder() {
        let grade = Command::RecordGrade {
            student: "9".into(),
            exam: "t9".into(),
            grade: "2.0".into(),
            grader: "theory-group".into(),
        };
        let (store, r) = run(&[
            student("1"),
            student("2"),
            exam("m1"),
            Command::Enroll {
                student: "1".into(),
                exam: "m1".into(),
            },
            grade,
        ]);
        assert!(r.iter().all(Result::is_ok), "{r:?}");
        let catalog = catalog().expect("catalog");
        let mut out = seam_core::service::SnapshotOut::new(&store, &catalog);
        StudentsOffice.snapshot(&mut out).expect("snapshot");
        let records: Vec<(String, String)> = out.into_records().into_iter().map(|(s, r, _)| (s, r)).collect();
        assert_eq!(
            records,
            [
                ("student/1".to_string(), events::StudentCreated::RECORD.to_string()),
                ("student/2".to_string(), events::StudentCreated::RECORD.to_string()),
                ("exam/m1".to_string(), events::ExaminationCreated::RECORD.to_string()),
                ("student/1".to_string(), events::StudentEnrolled::RECORD.to_string()),
            ]
        );
    }

    fn serde_json_get<T: serde::de::DeserializeOwned>(store: &Store, key: &str) -> T {
        serde_json::from_slice(&store.model_get(key).expect("read").expect("present")).expect("decode")
    }
}
