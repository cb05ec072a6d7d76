//! The scenario of seed 000, driven through the services' HTTP APIs as their GUIs would:
//! the students office registers students and examinations and enrolls students; once the
//! groups have the enrollments they set assignments, award points, assess presentations and
//! grade; both groups hire TAs; then the theory group tries to hire a student the SE group
//! already has, and its replica of the TA pool's data refuses it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::processes::Services;
use crate::serve::Which;

/// What the scenario did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Commands sent.
    pub commands: u64,
    /// Students registered.
    pub students: u64,
    /// Enrollments.
    pub enrollments: u64,
    /// Grades given by both groups.
    pub grades: u64,
    /// Hires accepted.
    pub hires: u64,
    /// Hires refused because the TA pool's data showed the student taken.
    pub double_hires_prevented: u64,
    /// The examinations this run scheduled (late students enroll in them).
    #[serde(skip)]
    pub exams: Vec<String>,
}

const PROGRAMS: [&str; 4] = [
    "Computer Science B.Sc.",
    "Computer Science M.Sc.",
    "Mathematics B.Sc.",
    "Electrical Engineering B.Sc.",
];
const NAMES: [&str; 12] = [
    "Ada", "Alan", "Barbara", "Edsger", "Grace", "John", "Leslie", "Margaret", "Niklaus", "Radia", "Tony", "Donald",
];
const SURNAMES: [&str; 10] = [
    "Becker", "Fischer", "Hoffmann", "Klein", "Meyer", "Müller", "Schmidt", "Schulz", "Wagner", "Weber",
];

struct Client {
    http: reqwest::Client,
    sent: AtomicU64,
    limit: Semaphore,
}

/// What became of one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied (the service answered 200).
    Applied,
    /// The domain refused it (422).
    Refused,
    /// An attempt was lost with a crashing service and the retry was refused: the lost attempt
    /// most likely applied it (a second "create" of the same thing is refused).
    RefusedAfterLoss,
}

impl Outcome {
    /// Applied, or most likely applied by an attempt that was lost.
    pub fn applied(self) -> bool {
        self != Outcome::Refused
    }
}

/// How long a command is retried while its service is down (a crash and restart takes seconds).
const RETRY_FOR: Duration = Duration::from_secs(180);

impl Client {
    /// Posts a command. A service that is down (refused connection, 503) is retried until it is
    /// back; an attempt whose answer was lost (the service crashed) is retried too, and noted.
    async fn command(&self, base: &str, body: Value) -> anyhow::Result<Outcome> {
        let _permit = self.limit.acquire().await?;
        self.sent.fetch_add(1, Ordering::Relaxed);
        let deadline = std::time::Instant::now() + RETRY_FOR;
        let mut lost = false;
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = self
                .http
                .post(format!("{base}/commands"))
                .json(&body)
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            let why = match attempt {
                Ok(response) => match response.status().as_u16() {
                    200 => return Ok(Outcome::Applied),
                    422 if lost => return Ok(Outcome::RefusedAfterLoss),
                    422 => return Ok(Outcome::Refused),
                    // Stopping: the command was not taken.
                    503 => "the service is stopping".to_string(),
                    // The store failed: whether it was applied is not known.
                    500 => {
                        lost = true;
                        response.text().await.unwrap_or_default()
                    }
                    status => bail!(
                        "POST {base}/commands {body} answered {status}: {}",
                        response.text().await.unwrap_or_default()
                    ),
                },
                // Not sent: the service is down.
                Err(e) if e.is_connect() => e.to_string(),
                Err(e) => {
                    lost = true;
                    e.to_string()
                }
            };
            if std::time::Instant::now() > deadline {
                bail!("POST {base}/commands {body} got no answer for {RETRY_FOR:?}: {why}");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

async fn all(set: &mut JoinSet<anyhow::Result<Outcome>>) -> anyhow::Result<(u64, u64)> {
    let (mut ok, mut refused) = (0, 0);
    while let Some(r) = set.join_next().await {
        if r??.applied() {
            ok += 1;
        } else {
            refused += 1;
        }
    }
    Ok((ok, refused))
}

/// Drives the whole scenario.
pub async fn drive(services: &Services, students: u32, bar: &ProgressBar) -> anyhow::Result<Stats> {
    let client = Arc::new(Client {
        http: seam_ops::commands::reach::http(None),
        sent: AtomicU64::new(0),
        limit: Semaphore::new(32),
    });
    let tag = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        % 1_000_000;
    let office = services.url(Which::StudentsOffice);
    let se = services.url(Which::SeGroup);
    let theory = services.url(Which::TheoryGroup);
    let mut stats = Stats::default();
    let say = |phase: &str, client: &Client| {
        bar.set_message(format!(
            "phase 4/5: {phase} ({} commands sent)",
            client.sent.load(Ordering::Relaxed)
        ))
    };

    // The students office: examinations, students, enrollments.
    let se_exams: Vec<String> = (1..=3).map(|i| format!("mod-{tag}-{i}")).collect();
    let seminars: Vec<String> = (1..=3).map(|i| format!("sem-{tag}-{i}")).collect();
    let mut set = JoinSet::new();
    for (i, exam) in se_exams.iter().enumerate() {
        let (c, o) = (Arc::clone(&client), office.clone());
        let body = json!({"command": "create_examination", "exam": exam, "title": format!("Software Modelling {}", ["I", "II", "III"][i]), "owner": "se-group", "semester": "2026W"});
        set.spawn(async move { c.command(&o, body).await });
    }
    for (i, exam) in seminars.iter().enumerate() {
        let (c, o) = (Arc::clone(&client), office.clone());
        let body = json!({"command": "create_examination", "exam": exam, "title": format!("Seminar: {}", ["Complexity", "Logic", "Automata"][i]), "owner": "theory-group", "semester": "2026W"});
        set.spawn(async move { c.command(&o, body).await });
    }
    let ids: Vec<String> = (0..students).map(|i| format!("{tag}{i:05}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let (c, o) = (Arc::clone(&client), office.clone());
        let name = format!(
            "{} {}",
            NAMES[i % NAMES.len()],
            SURNAMES[(i / NAMES.len()) % SURNAMES.len()]
        );
        let body =
            json!({"command": "create_student", "student": id, "name": name, "program": PROGRAMS[i % PROGRAMS.len()]});
        set.spawn(async move { c.command(&o, body).await });
    }
    say("registering students and examinations", &client);
    all(&mut set).await?;
    stats.students = u64::from(students);

    let mut se_enrolled: Vec<Vec<String>> = vec![Vec::new(); 3];
    let mut theory_enrolled: Vec<Vec<String>> = vec![Vec::new(); 3];
    for (i, id) in ids.iter().enumerate() {
        se_enrolled[i % 3].push(id.clone());
        if i % 2 == 0 {
            theory_enrolled[i % 3].push(id.clone());
        }
        if i % 5 == 0 {
            se_enrolled[(i + 1) % 3].push(id.clone());
        }
    }
    for (exams, enrolled) in [(&se_exams, &se_enrolled), (&seminars, &theory_enrolled)] {
        for (exam, students) in exams.iter().zip(enrolled) {
            for id in students {
                let (c, o) = (Arc::clone(&client), office.clone());
                let body = json!({"command": "enroll", "student": id, "exam": exam});
                set.spawn(async move { c.command(&o, body).await });
            }
        }
    }
    say("enrolling students", &client);
    stats.enrollments = all(&mut set).await?.0;

    // The groups act once the enrollments reached them.
    say("waiting for the enrollments to reach the groups", &client);
    wait_flow(services, "students-office", "se-group", bar).await?;
    wait_flow(services, "students-office", "theory-group", bar).await?;

    for (e, exam) in se_exams.iter().enumerate() {
        for (a, max) in [10, 20, 30].iter().enumerate() {
            let body = json!({"command": "create_assignment", "assignment": format!("{exam}-a{a}"), "exam": exam, "title": format!("Assignment {}", a + 1), "max_points": max});
            if client.command(&se, body).await? == Outcome::Refused {
                bail!("the SE group refused assignment {a} of {exam}");
            }
        }
        for (s, id) in se_enrolled[e].iter().enumerate() {
            for (a, max) in [10, 20, 30].iter().enumerate() {
                // Every third student is excellent, so the scholarship office has someone to award.
                let points = if s % 3 == 0 {
                    *max
                } else {
                    (s * 7 + a * 13 + e * 3) % (max + 1)
                };
                let (c, u) = (Arc::clone(&client), se.clone());
                let body = json!({"command": "award_points", "assignment": format!("{exam}-a{a}"), "student": id, "points": points});
                set.spawn(async move { c.command(&u, body).await });
            }
        }
    }
    for (e, exam) in seminars.iter().enumerate() {
        for (s, id) in theory_enrolled[e].iter().enumerate() {
            for (k, criterion) in ["content", "structure", "delivery", "discussion"].iter().enumerate() {
                let score = if s % 3 == 0 { 10 } else { 4 + (s + k * 3 + e) % 7 };
                let (c, u) = (Arc::clone(&client), theory.clone());
                let body =
                    json!({"command": "assess", "exam": exam, "student": id, "criterion": criterion, "score": score});
                set.spawn(async move { c.command(&u, body).await });
            }
        }
    }
    say("awarding points and assessing presentations", &client);
    all(&mut set).await?;
    for (exams, enrolled, url) in [(&se_exams, &se_enrolled, &se), (&seminars, &theory_enrolled, &theory)] {
        for (exam, students) in exams.iter().zip(enrolled) {
            for id in students {
                let (c, u) = (Arc::clone(&client), url.clone());
                let body = json!({"command": "grade", "exam": exam, "student": id});
                set.spawn(async move { c.command(&u, body).await });
            }
        }
    }
    say("grading", &client);
    stats.grades = all(&mut set).await?.0;

    // Hires: each group hires some of its own students.
    let se_hires: Vec<&String> = se_enrolled[0].iter().take(10).collect();
    let theory_hires: Vec<&String> = theory_enrolled[1]
        .iter()
        .filter(|s| !se_hires.contains(s))
        .take(10)
        .collect();
    for id in &se_hires {
        if client
            .command(&se, json!({"command": "hire", "student": id}))
            .await?
            .applied()
        {
            stats.hires += 1;
        }
    }
    for id in &theory_hires {
        if client
            .command(&theory, json!({"command": "hire", "student": id}))
            .await?
            .applied()
        {
            stats.hires += 1;
        }
    }
    // Once the TA pool's assignments reached the theory group, it may not hire an SE group TA.
    say("waiting for the TA pool's data to reach the groups", &client);
    wait_flow(services, "se-group", "ta-pool", bar).await?;
    wait_flow(services, "ta-pool", "theory-group", bar).await?;
    let taken = se_hires
        .iter()
        .find(|s| theory_enrolled.iter().flatten().any(|t| t == **s))
        .or(se_hires.first());
    if let Some(id) = taken {
        let outcome = client
            .command(&theory, json!({"command": "hire", "student": id}))
            .await?;
        if outcome == Outcome::Applied {
            bail!("the theory group hired {id}, whom the SE group already has: the TA pool's data did not prevent it");
        }
        stats.double_hires_prevented += 1;
    }
    stats.commands = client.sent.load(Ordering::Relaxed);
    stats.exams = se_exams.iter().chain(&seminars).cloned().collect();
    Ok(stats)
}

async fn wait_flow(services: &Services, from: &str, to: &str, bar: &ProgressBar) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        // A service that is down (crashed, restarting) is waited for like a lagging one.
        let seen = match super::report::flow(services, from, to).await {
            Ok(flow) if flow.in_sync => return Ok(()),
            Ok(flow) => format!("{} of {} rows", flow.replica_rows, flow.source_rows),
            Err(e) => format!("{e:#}"),
        };
        if std::time::Instant::now() > deadline {
            bail!("{from} -> {to} did not catch up within 300 s ({seen})");
        }
        bar.set_message(format!("phase 4/5: waiting for {from} -> {to} ({seen})"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// More students registering and enrolling while the scholarship office bootstraps: events that
/// keep flowing past the snapshot's cut. Runs until `stop` is set, and at least `count` students.
pub async fn more_students(
    office: String,
    exams: Vec<String>,
    count: u32,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<u32> {
    let client = Client {
        http: seam_ops::commands::reach::http(None),
        sent: AtomicU64::new(0),
        limit: Semaphore::new(8),
    };
    let tag = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
        % 1_000_000_000;
    let mut i = 0;
    while i < count || !stop.load(Ordering::SeqCst) {
        let id = format!("late{tag}-{i}");
        client
            .command(&office, json!({"command": "create_student", "student": id, "name": format!("Late Student {i}"), "program": PROGRAMS[i as usize % PROGRAMS.len()]}))
            .await?;
        if let Some(exam) = exams.get(i as usize % exams.len().max(1)) {
            client
                .command(&office, json!({"command": "enroll", "student": id, "exam": exam}))
                .await?;
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(i)
}
