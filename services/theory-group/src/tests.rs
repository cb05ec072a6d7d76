use seam::runtime::Applier;
use seam::store::Store;
use seam_core::service::Event;

use crate::catalog;
use crate::events::*;
use crate::model::{grade_for, keys, Command, TheoryGroup};

#[test]
fn rust_event_types_match_the_published_schemas() {
    let c = catalog().expect("catalog");
    c.check_type::<PresentationAssessed>(PresentationAssessed::RECORD)
        .expect("PresentationAssessed");
    c.check_type::<StudentGraded>(StudentGraded::RECORD)
        .expect("StudentGraded");
    c.check_type::<StudentHired>(StudentHired::RECORD)
        .expect("StudentHired");
}

/// Runs commands through the runtime's own apply path (one commit per command).
fn run(commands: &[Command]) -> (Store, Vec<Result<usize, String>>) {
    let dir = std::env::temp_dir().join(format!(
        "theory-group-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let store = seam::store::open(&dir).expect("store");
    let mut applier =
        Applier::new("theory-group", store.clone(), TheoryGroup, catalog().expect("catalog")).expect("applier");
    let results = commands
        .iter()
        .map(|c| applier.execute(c).map(|seqs| seqs.len()).map_err(|e| e.to_string()))
        .collect();
    (store, results)
}

fn assess(criterion: &str, score: i32) -> Command {
    Command::Assess {
        exam: "s1".into(),
        student: "4".into(),
        criterion: criterion.into(),
        score,
    }
}

#[test]
fn the_scheme_weights_criteria_and_needs_all_of_them() {
    assert_eq!(grade_for(1000), "1.0");
    assert_eq!(grade_for(449), "5.0");
    let (store, r) = run(&[
        Command::Enroll {
            student: "4".into(),
            name: "Ada".into(),
            exam: "s1".into(),
            title: "Seminar".into(),
        },
        assess("content", 9),
        assess("structure", 8),
        Command::Grade {
            exam: "s1".into(),
            student: "4".into(),
        },
        assess("delivery", 8),
        assess("discussion", 7),
        assess("charisma", 10),
        assess("content", 11),
        Command::Grade {
            exam: "s1".into(),
            student: "4".into(),
        },
    ]);
    assert!(r[3]
        .as_ref()
        .expect_err("incomplete")
        .contains("delivery is not scored"));
    assert!(r[6]
        .as_ref()
        .expect_err("unknown criterion")
        .contains("not a criterion"));
    assert!(r[7].as_ref().expect_err("range").contains("outside 0..=10"));
    assert_eq!(r[8], Ok(1));
    let grade: String =
        serde_json::from_slice(&store.model_get(&keys::grade("s1", "4")).expect("read").expect("graded"))
            .expect("decode");
    // 9*40 + 8*20 + 8*20 + 7*20 = 820 → 1.7
    assert_eq!(grade, "1.7");
}

#[test]
fn hires_respect_the_ta_pool() {
    let (_, r) = run(&[
        Command::Enroll {
            student: "4".into(),
            name: "Ada".into(),
            exam: "s1".into(),
            title: "Seminar".into(),
        },
        Command::RecordTa {
            student: "4".into(),
            group: "se-group".into(),
        },
        Command::Hire { student: "4".into() },
        Command::Hire { student: "5".into() },
    ]);
    assert!(r[2].as_ref().expect_err("taken").contains("se-group"));
    assert!(r[3].as_ref().expect_err("unknown").contains("unknown"));
}
