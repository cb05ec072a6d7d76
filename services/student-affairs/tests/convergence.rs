//! Convergence (DESIGN.md invariant 6): however the services' streams interleave, as long as each
//! partition keeps its order, and however often events are redelivered or re-read after lost
//! positions, every consumer ends in the same state. The consumers run their real translators
//! and the runtime's real apply path (`Applier`), without a broker: only the delivery order is
//! simulated, which is exactly what varies in production.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use apache_avro::Schema;
use proptest::prelude::*;
use seam::codec::Catalog;
use seam::partitioner::partition_for;
use seam::runtime::{Applier, RawEvent};
use seam::service::Service;
use seam::store::{JournalEntry, Store};
use seam::translator::{ForeignEvent, Translator};

const PARTITIONS: i32 = 3;

fn temp(label: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sa-convergence-{}-{label}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// One published event of a source, as a consumer receives it.
#[derive(Clone)]
struct Delivery {
    raw: RawEvent,
    record: String,
    body: Vec<u8>,
}

fn journal(store: &Store) -> Vec<JournalEntry> {
    store.journal_from(1, usize::MAX).expect("journal")
}

/// A source's journal split into its partitions with offsets, as the publisher would place it.
fn partitioned(source: &str, entries: &[JournalEntry]) -> BTreeMap<i32, Vec<Delivery>> {
    let mut out: BTreeMap<i32, Vec<Delivery>> = BTreeMap::new();
    for e in entries {
        let p = partition_for(e.subject.as_bytes(), PARTITIONS);
        let queue = out.entry(p).or_default();
        queue.push(Delivery {
            raw: RawEvent {
                topic: format!("{source}.events"),
                partition: p,
                offset: queue.len() as i64,
                key: Some(e.subject.clone().into_bytes()),
                value: None,
                headers: vec![("seam-event-id".into(), Some(format!("{source}/{}", e.seq).into_bytes()))].into(),
            },
            record: e.record.clone(),
            body: e.body.clone(),
        });
    }
    out
}

/// Decodes with the producer's schema and resolves to the translator's reader schema, as the
/// runtime's decoder does, then translates.
fn translate<C: 'static>(t: &dyn Translator<C>, writer: &Catalog, d: &Delivery) -> Vec<C> {
    let Some((_, reader)) = t.reader_schemas().into_iter().find(|(r, _)| *r == d.record) else {
        return vec![];
    };
    let schema = writer.record(&d.record).expect("record").schema;
    let reader = Schema::parse_str(reader).expect("reader schema");
    let value = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .reader_schema(&reader)
        .build()
        .expect("reader")
        .read_value(&mut d.body.as_slice())
        .expect("decodes");
    let event = ForeignEvent {
        topic: d.raw.topic.clone(),
        partition: d.raw.partition,
        offset: d.raw.offset,
        subject: String::from_utf8_lossy(d.raw.key.as_deref().unwrap_or_default()).into_owned(),
        event_id: None,
        record: d.record.clone(),
        value,
    };
    t.translate(&event).expect("translates")
}

/// A tiny deterministic generator for delivery decisions.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

struct Source<'a, C> {
    name: &'a str,
    catalog: &'a Catalog,
    translator: &'a dyn Translator<C>,
    partitions: BTreeMap<i32, Vec<Delivery>>,
}

/// A source as one consumer receives it: its journal split into partitions.
fn source<'a, C>(
    name: &'a str,
    catalog: &'a Catalog,
    translator: &'a dyn Translator<C>,
    entries: &[JournalEntry],
) -> Source<'a, C> {
    Source {
        name,
        catalog,
        translator,
        partitions: partitioned(name, entries),
    }
}

/// Feeds every source into a fresh consumer. With `rng`, partitions interleave at random,
/// rewinds redeliver, and "lost positions" re-read a whole partition; without, in order.
fn consume<S: Service + Clone>(
    service: S,
    catalog: fn() -> Catalog,
    sources: &[Source<'_, S::Command>],
    mut rng: Option<Rng>,
) -> String {
    let dir = temp("consumer");
    let store = seam::store::open(&dir).expect("store");
    let mut applier = Applier::new("consumer", store.clone(), service.clone(), catalog()).expect("applier");
    let mut queues: Vec<(usize, i32, VecDeque<usize>)> = Vec::new();
    for (si, s) in sources.iter().enumerate() {
        for (p, list) in &s.partitions {
            queues.push((si, *p, (0..list.len()).collect()));
        }
    }
    let mut steps = 0;
    while queues.iter().any(|(_, _, q)| !q.is_empty()) {
        steps += 1;
        assert!(steps < 100_000, "delivery did not end");
        let live: Vec<usize> = (0..queues.len()).filter(|i| !queues[*i].2.is_empty()).collect();
        let pick = match rng.as_mut() {
            Some(r) => live[r.next(live.len())],
            None => live[0],
        };
        let (si, p, ref mut queue) = queues[pick];
        let idx = queue.pop_front().expect("non-empty");
        let source = &sources[si];
        let delivery = &source.partitions[&p][idx];
        let commands = translate(source.translator, source.catalog, delivery);
        applier.take_in(delivery.raw.clone(), commands).expect("take in");
        if let Some(r) = rng.as_mut() {
            match r.next(40) {
                // A rewind: the consumer reads the last few events of this partition again.
                0..=2 => {
                    let back = 1 + r.next(5);
                    for i in (idx.saturating_sub(back)..=idx).rev() {
                        queue.push_front(i);
                    }
                }
                // Lost positions: everything read so far on this partition comes again.
                3 => {
                    drop(applier);
                    store
                        .clear_positions(&format!("{}.events", source.name))
                        .expect("clear");
                    applier = Applier::new("consumer", store.clone(), service.clone(), catalog()).expect("applier");
                    for i in (0..=idx).rev() {
                        queue.push_front(i);
                    }
                }
                _ => {}
            }
        }
    }
    let digest = store.digest().expect("digest");
    drop(applier);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
    digest
}

/// The sources' journals, produced once by running the services' own commands.
struct World {
    office: Vec<JournalEntry>,
    se: Vec<JournalEntry>,
    theory: Vec<JournalEntry>,
    pool: Vec<JournalEntry>,
}

fn run<S: Service>(service: S, catalog: Catalog, commands: Vec<S::Command>) -> (Store, Vec<JournalEntry>) {
    let store = seam::store::open(&temp("source")).expect("store");
    let mut a = Applier::new("source", store.clone(), service, catalog).expect("applier");
    for c in &commands {
        a.execute(c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
    }
    let entries = journal(&store);
    (store, entries)
}

fn world() -> World {
    use se_group::model::Command as Se;
    use students_office::model::Command as Office;
    use theory_group::model::Command as Theory;
    let students: Vec<String> = (0..24).map(|i| format!("s{i}")).collect();
    let mut office = vec![
        Office::CreateExamination {
            exam: "mod".into(),
            title: "Modelling".into(),
            owner: "se-group".into(),
            semester: "W".into(),
        },
        Office::CreateExamination {
            exam: "sem".into(),
            title: "Seminar".into(),
            owner: "theory-group".into(),
            semester: "W".into(),
        },
    ];
    for s in &students {
        office.push(Office::CreateStudent {
            student: s.clone(),
            name: format!("Name {s}"),
            program: "CS".into(),
        });
        office.push(Office::Enroll {
            student: s.clone(),
            exam: "mod".into(),
        });
        office.push(Office::Enroll {
            student: s.clone(),
            exam: "sem".into(),
        });
    }
    let (_, office) = run(
        students_office::model::StudentsOffice,
        students_office::catalog().expect("catalog"),
        office,
    );

    // Each group takes in the enrollments, then works.
    let enrolled = || -> Vec<Delivery> {
        partitioned("students-office", &office)
            .into_values()
            .flatten()
            .collect()
    };
    let office_catalog = students_office::catalog().expect("catalog");

    let se_store = seam::store::open(&temp("se")).expect("store");
    let mut se = Applier::new(
        "se-group",
        se_store.clone(),
        se_group::model::SeGroup,
        se_group::catalog().expect("catalog"),
    )
    .expect("applier");
    let to_se = students_office_to_se_group::StudentsOfficeToSeGroup;
    for d in enrolled() {
        let commands = translate(&to_se, &office_catalog, &d);
        se.take_in(d.raw.clone(), commands).expect("take in");
    }
    se.execute(&Se::CreateAssignment {
        assignment: "a1".into(),
        exam: "mod".into(),
        title: "A1".into(),
        max_points: 10,
    })
    .expect("assignment");
    for (i, s) in students.iter().enumerate() {
        se.execute(&Se::AwardPoints {
            assignment: "a1".into(),
            student: s.clone(),
            points: (i % 11) as i32,
        })
        .expect("points");
        se.execute(&Se::Grade {
            exam: "mod".into(),
            student: s.clone(),
        })
        .expect("grade");
    }
    for s in students.iter().take(6) {
        se.execute(&Se::Hire { student: s.clone() }).expect("hire");
    }
    let se_journal = journal(&se_store);

    let theory_store = seam::store::open(&temp("theory")).expect("store");
    let mut theory = Applier::new(
        "theory-group",
        theory_store.clone(),
        theory_group::model::TheoryGroup,
        theory_group::catalog().expect("catalog"),
    )
    .expect("applier");
    let to_theory = students_office_to_theory_group::StudentsOfficeToTheoryGroup;
    for d in enrolled() {
        let commands = translate(&to_theory, &office_catalog, &d);
        theory.take_in(d.raw.clone(), commands).expect("take in");
    }
    for (i, s) in students.iter().enumerate() {
        for c in ["content", "structure", "delivery", "discussion"] {
            theory
                .execute(&Theory::Assess {
                    exam: "sem".into(),
                    student: s.clone(),
                    criterion: c.into(),
                    score: (i % 10) as i32,
                })
                .expect("assess");
        }
        theory
            .execute(&Theory::Grade {
                exam: "sem".into(),
                student: s.clone(),
            })
            .expect("grade");
    }
    // Hires overlapping the SE group's (made before either knew of the other): conflicts.
    for s in students.iter().skip(3).take(6) {
        theory.execute(&Theory::Hire { student: s.clone() }).expect("hire");
    }
    let theory_journal = journal(&theory_store);

    // The TA pool's output (its own stream, as the groups receive it).
    let pool_store = seam::store::open(&temp("pool")).expect("store");
    let mut pool = Applier::new(
        "ta-pool",
        pool_store.clone(),
        ta_pool::TaPool,
        ta_pool::catalog().expect("catalog"),
    )
    .expect("applier");
    let (se_catalog, theory_catalog) = (
        se_group::catalog().expect("catalog"),
        theory_group::catalog().expect("catalog"),
    );
    for (source, entries, catalog, t) in [
        (
            "se-group",
            &se_journal,
            &se_catalog,
            &se_group_to_ta_pool::SeGroupToTaPool as &dyn Translator<ta_pool::Command>,
        ),
        (
            "theory-group",
            &theory_journal,
            &theory_catalog,
            &theory_group_to_ta_pool::TheoryGroupToTaPool,
        ),
    ] {
        for d in partitioned(source, entries).into_values().flatten() {
            let commands = translate(t, catalog, &d);
            pool.take_in(d.raw.clone(), commands).expect("take in");
        }
    }
    let pool_journal = journal(&pool_store);
    World {
        office,
        se: se_journal,
        theory: theory_journal,
        pool: pool_journal,
    }
}

fn world_once() -> &'static World {
    static WORLD: std::sync::OnceLock<World> = std::sync::OnceLock::new();
    WORLD.get_or_init(world)
}

/// Every consumer's digest under one delivery order (`None`: in order).
fn digests(seed: Option<u64>) -> Vec<String> {
    let w = world_once();
    let rng = |salt: u64| seed.map(|s| Rng(s.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt | 1));
    let (office_c, se_c, theory_c, pool_c) = (
        students_office::catalog().expect("c"),
        se_group::catalog().expect("c"),
        theory_group::catalog().expect("c"),
        ta_pool::catalog().expect("c"),
    );
    vec![
        consume(
            StudentsOfficeS,
            || students_office::catalog().expect("c"),
            &[
                source(
                    "se-group",
                    &se_c,
                    &se_group_to_students_office::SeGroupToStudentsOffice,
                    &w.se,
                ),
                source(
                    "theory-group",
                    &theory_c,
                    &theory_group_to_students_office::TheoryGroupToStudentsOffice,
                    &w.theory,
                ),
            ],
            rng(1),
        ),
        consume(
            SeS,
            || se_group::catalog().expect("c"),
            &[
                source(
                    "students-office",
                    &office_c,
                    &students_office_to_se_group::StudentsOfficeToSeGroup,
                    &w.office,
                ),
                source("ta-pool", &pool_c, &ta_pool_to_se_group::TaPoolToSeGroup, &w.pool),
            ],
            rng(2),
        ),
        consume(
            TheoryS,
            || theory_group::catalog().expect("c"),
            &[
                source(
                    "students-office",
                    &office_c,
                    &students_office_to_theory_group::StudentsOfficeToTheoryGroup,
                    &w.office,
                ),
                source(
                    "ta-pool",
                    &pool_c,
                    &ta_pool_to_theory_group::TaPoolToTheoryGroup,
                    &w.pool,
                ),
            ],
            rng(3),
        ),
        consume(
            PoolS,
            || ta_pool::catalog().expect("c"),
            &[
                source("se-group", &se_c, &se_group_to_ta_pool::SeGroupToTaPool, &w.se),
                source(
                    "theory-group",
                    &theory_c,
                    &theory_group_to_ta_pool::TheoryGroupToTaPool,
                    &w.theory,
                ),
            ],
            rng(4),
        ),
    ]
}

/// Cloneable wrappers (the services hold no state; the runtime wants an owned value per open).
macro_rules! cloneable {
    ($name:ident, $inner:ty, $cmd:ty) => {
        #[derive(Clone, Copy, Default)]
        struct $name;
        impl Service for $name {
            type Command = $cmd;
            fn apply(&self, ctx: &mut seam::service::Apply<'_>, c: &$cmd) -> Result<(), seam::service::ApplyError> {
                <$inner>::default().apply(ctx, c)
            }
        }
    };
}

cloneable!(
    StudentsOfficeS,
    students_office::model::StudentsOffice,
    students_office::model::Command
);
cloneable!(SeS, se_group::model::SeGroup, se_group::model::Command);
cloneable!(TheoryS, theory_group::model::TheoryGroup, theory_group::model::Command);
cloneable!(PoolS, ta_pool::TaPool, ta_pool::Command);

#[test]
fn the_sources_produce_what_the_scenario_needs() {
    let w = world_once();
    assert!(w.se.iter().any(|e| e.record.ends_with("StudentHired")));
    assert!(w.theory.iter().any(|e| e.record.ends_with("StudentHired")));
    assert!(
        w.pool.len() >= 9,
        "TA assignments, including changes when an earlier hire arrived later"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Random interleavings keeping per-partition order, with redeliveries and lost positions,
    /// end in the digests of in-order delivery, for every consumer.
    #[test]
    fn every_consumer_converges_under_any_interleaving(seed in any::<u64>()) {
        let reference = digests(None);
        prop_assert_eq!(digests(Some(seed)), reference);
    }
}
