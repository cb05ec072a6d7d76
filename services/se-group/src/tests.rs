use seam::runtime::Applier;
use seam::store::Store;
use seam_core::service::Event;

use crate::catalog;
use crate::events::*;
use crate::model::{grade_for, keys, Command, SeGroup};

#[test]
fn rust_event_types_match_the_published_schemas() {
    let c = catalog().expect("catalog");
    c.check_type::<AssignmentCreated>(AssignmentCreated::RECORD)
        .expect("AssignmentCreated");
    c.check_type::<PointsAwarded>(PointsAwarded::RECORD)
        .expect("PointsAwarded");
    c.check_type::<StudentGraded>(StudentGraded::RECORD)
        .expect("StudentGraded");
    c.check_type::<StudentHired>(StudentHired::RECORD)
        .expect("StudentHired");
}

#[test]
fn grades_follow_the_percentage_table() {
    assert_eq!(grade_for(100, 100), "1.0");
    assert_eq!(grade_for(90, 100), "1.3");
    assert_eq!(grade_for(50, 100), "4.0");
    assert_eq!(grade_for(49, 100), "5.0");
    assert_eq!(grade_for(3, 0), "5.0");
}

/// Runs commands through the runtime's own apply path (one commit per command).
fn run(commands: &[Command]) -> (Store, Vec<Result<usize, String>>) {
    let dir = std::env::temp_dir().join(format!(
        "se-group-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let store = seam::store::open(&dir).expect("store");
    let mut applier = Applier::new("se-group", store.clone(), SeGroup, catalog().expect("catalog")).expect("applier");
    let results = commands
        .iter()
        .map(|c| applier.execute(c).map(|seqs| seqs.len()).map_err(|e| e.to_string()))
        .collect();
    (store, results)
}

fn enroll(student: &str) -> Command {
    Command::Enroll {
        student: student.into(),
        name: format!("S{student}"),
        exam: "m1".into(),
        title: "Modelling".into(),
    }
}

#[test]
fn points_become_a_grade_and_a_studentgraded_event() {
    let (store, r) = run(&[
        enroll("1"),
        Command::CreateAssignment {
            assignment: "a1".into(),
            exam: "m1".into(),
            title: "Class diagrams".into(),
            max_points: 10,
        },
        Command::CreateAssignment {
            assignment: "a2".into(),
            exam: "m1".into(),
            title: "State machines".into(),
            max_points: 10,
        },
        Command::AwardPoints {
            assignment: "a1".into(),
            student: "1".into(),
            points: 10,
        },
        Command::AwardPoints {
            assignment: "a2".into(),
            student: "1".into(),
            points: 8,
        },
        Command::AwardPoints {
            assignment: "a2".into(),
            student: "2".into(),
            points: 8,
        },
        Command::AwardPoints {
            assignment: "a2".into(),
            student: "1".into(),
            points: 11,
        },
        Command::Grade {
            exam: "m1".into(),
            student: "1".into(),
        },
    ]);
    assert!(r[5].as_ref().expect_err("not enrolled").contains("not enrolled"));
    assert!(r[6].as_ref().expect_err("too many").contains("outside 0..=10"));
    assert_eq!(r[7], Ok(1));
    let grade: String =
        serde_json::from_slice(&store.model_get(&keys::grade("m1", "1")).expect("read").expect("graded"))
            .expect("decode");
    assert_eq!(grade, "1.3", "18 of 20 points");
}

#[test]
fn a_student_the_ta_pool_gives_to_another_group_cannot_be_hired() {
    let (_, r) = run(&[
        enroll("1"),
        enroll("2"),
        Command::RecordTa {
            student: "2".into(),
            group: "theory-group".into(),
        },
        Command::Hire { student: "1".into() },
        Command::Hire { student: "2".into() },
        Command::Hire { student: "1".into() },
        Command::RecordTa {
            student: "99".into(),
            group: "theory-group".into(),
        },
    ]);
    assert_eq!(r[3], Ok(1));
    assert!(r[4]
        .as_ref()
        .expect_err("taken")
        .contains("already works as TA for theory-group"));
    assert!(r[5].as_ref().expect_err("twice").contains("already hired"));
    assert_eq!(
        r[6],
        Ok(0),
        "a TA record for an unknown student creates a placeholder, never fails"
    );
}
