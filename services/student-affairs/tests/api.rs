//! Every HTTP endpoint of a service, through its real router (no socket) over a real node on
//! the real broker and registry: the happy paths and the bad requests a client will make.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use seam::codec::{wire, Registry};
use seam::runtime::{Node, NodeConfig};
use seam::topology::Topology;
use seam_testkit::{unique_name, TestCluster};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn call(app: &Router, method: Method, uri: &str, body: Option<&str>) -> (StatusCode, Value, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
        .expect("request");
    let res = app.clone().oneshot(req).await.expect("response");
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 16 << 20).await.expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), text)
}

/// Stores the current end of every partition of `topics` as the positions of a fresh store.
fn start_at_the_end(cluster: &TestCluster, dir: &std::path::Path, topics: &[&str]) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = cluster.client_config().create().expect("client");
    let store = seam::store::open(dir).expect("store");
    let mut set = store.write_set().expect("write set");
    for topic in topics {
        let md = client
            .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
            .expect("metadata");
        let partitions = md.topics().first().map_or(0, |t| t.partitions().len() as i32);
        for p in 0..partitions {
            let (_, end) = client
                .fetch_watermarks(topic, p, std::time::Duration::from_secs(10))
                .expect("watermarks");
            set.set_position(topic, p, end);
        }
    }
    set.keep();
    store.commit(&mut set, true).expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_and_bad_requests_get_a_4xx_that_says_what_is_wrong() {
    let cluster = TestCluster::connect();
    let topology = Topology::load(&student_affairs::serve::default_topology()).expect("topology");
    let deployed = seam_ops::deploy::deploy(
        &topology,
        &cluster.client_config(),
        &seam_ops::deploy::Registry::new(&cluster.registry()).expect("registry"),
        &seam_ops::deploy::Options::default(),
    )
    .await
    .expect("topics and schemas");
    assert!(deployed.problems.is_empty(), "{:?}", deployed.problems);
    let name = unique_name("students-office-api");
    cluster
        .create_topic(&format!("{name}.events"), 3, cluster.replication(), &[])
        .await;
    cluster
        .create_topic(&format!("{name}.dlq"), 1, cluster.replication(), &[])
        .await;
    let store = std::env::temp_dir().join(unique_name("sa-api"));
    // The groups' topics may hold a demo's events: this office starts reading at their ends,
    // so what it holds is exactly what this test puts.
    start_at_the_end(&cluster, &store, &["se-group.events", "theory-group.events"]);
    let config = NodeConfig::new(&name, store, &cluster.bootstrap(), &cluster.registry());
    let node = Arc::new(
        Node::start(
            config,
            students_office::model::StudentsOffice,
            students_office::catalog().expect("catalog"),
            vec![
                Box::new(se_group_to_students_office::SeGroupToStudentsOffice),
                Box::new(theory_group_to_students_office::TheoryGroupToStudentsOffice),
            ],
        )
        .await
        .expect("start"),
    );
    let app = seam::http::platform_routes(Arc::clone(&node)).merge(students_office::api::routes(Arc::clone(&node)));

    // Platform endpoints.
    let (s, v, _) = call(&app, Method::GET, "/health", None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    // Commands.
    let create = r#"{"command":"create_student","student":"4711","name":"Ada Lovelace","program":"CS"}"#;
    let (s, v, _) = call(&app, Method::POST, "/commands", Some(create)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["events"].as_array().map(Vec::len), Some(1));
    let (s, v, _) = call(&app, Method::POST, "/commands", Some(create)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        v["error"].as_str().unwrap_or_default().contains("already exists"),
        "{v}"
    );
    // A grade is replicated from the groups' events: sent by hand it is refused, not applied.
    let by_hand = r#"{"command":"record_grade","student":"4711","exam":"e1","grade":"1.0","grader":"se-group"}"#;
    let (s, v, _) = call(&app, Method::POST, "/commands", Some(by_hand)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("RecordGrade is internal")),
        "{v}"
    );
    let (s, v, _) = call(&app, Method::POST, "/commands", Some("{not json")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().is_some() && v["hint"].as_str().is_some(), "{v}");
    let (s, v, _) = call(
        &app,
        Method::POST,
        "/commands",
        Some(r#"{"command":"expel","student":"1"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        v["error"].as_str().unwrap_or_default().contains("expel"),
        "names the unknown command: {v}"
    );
    let req = Request::builder()
        .method(Method::POST)
        .uri("/commands")
        .body(Body::from(create))
        .expect("request");
    assert_eq!(
        app.clone().oneshot(req).await.expect("response").status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    let (s, _, text) = call(&app, Method::GET, "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(text.contains("seam_commands_total"), "{text}");

    // getEvents.
    let (s, v, _) = call(&app, Method::GET, "/events?after=0", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let first = &v["events"][0];
    assert_eq!(first["key"], "student/4711");
    assert_eq!(first["payload"]["name"], "Ada Lovelace");
    assert_eq!(first["headers"]["seam-event-id"], format!("{name}/1"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(first["value"].as_str().unwrap_or_default())
        .expect("base64");
    assert!(wire::parse(&bytes).is_ok(), "Confluent-framed");
    let (s, v, _) = call(&app, Method::GET, "/events?type=StudentEnrolled", None).await;
    assert_eq!((s, v["events"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    for bad in [
        "/events?type=Nope",
        "/events?limit=0",
        "/events?limit=5000",
        "/events?after=-1",
        "/events?colour=red",
    ] {
        let (s, v, _) = call(&app, Method::GET, bad, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert!(v["error"].as_str().is_some(), "{bad}: {v}");
    }

    // putEvents: a grade from the SE group, as its getEvents would return it.
    let se = se_group::catalog().expect("catalog");
    let record = se.record("studentaffairs.segroup.StudentGraded").expect("record");
    let registry = Registry::new(&cluster.registry()).expect("registry");
    let id = registry.register("se-group.events", record).await.expect("schema id");
    let body = se
        .encode(
            record.full_name.as_str(),
            &se_group::events::StudentGraded {
                student: "4711".into(),
                exam: "m-1".into(),
                grade: "1.3".into(),
                grader: "se-group".into(),
            },
        )
        .expect("encode");
    let value = base64::engine::general_purpose::STANDARD.encode(wire::frame(id, &body));
    // A journal of its own per run, as a fresh SE group store would have: seq 1, the subject's first.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let journal = format!("{nanos:024x}:1");
    let headers = json!({"seam-event-id": "se-group/1", "seam-journal": journal, "seam-prev-seq": "0"});
    let put = json!({"events": [{"source": "se-group", "key": "student/4711", "value": value, "headers": headers}]})
        .to_string();
    // Without the journal and predecessor getEvents adds, its order cannot be checked.
    let unordered = json!({"events": [{"source": "se-group", "key": "student/4711", "value": value, "headers": {"seam-event-id": unique_name("se-group/api")}}]}).to_string();
    let (s, v, _) = call(&app, Method::PUT, "/events", Some(&unordered)).await;
    assert_eq!(
        (s, &v["outcomes"][0]["outcome"]),
        (StatusCode::OK, &json!("out-of-order")),
        "{v}"
    );
    assert!(
        v["outcomes"][0]["missing"]
            .as_str()
            .unwrap_or_default()
            .contains("seam-journal"),
        "{v}"
    );
    let (s, v, _) = call(&app, Method::PUT, "/events", Some(&put)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["outcomes"][0]["outcome"], "applied", "{v}");
    let (_, v, _) = call(&app, Method::PUT, "/events", Some(&put)).await;
    assert_eq!(v["outcomes"][0]["outcome"], "duplicate", "putEvents is idempotent: {v}");
    let (s, v, _) = call(&app, Method::GET, "/students/4711", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["grades"][0]["grade"], "1.3", "{v}");

    let bad_puts = [
        (
            json!({"events": [{"source": "ta-pool", "key": "k", "value": value, "headers": {"seam-event-id": "x/1"}}]}),
            "does not consume from ta-pool",
        ),
        (
            json!({"events": [{"source": "se-group", "key": "k", "value": "%%%", "headers": {"seam-event-id": "x/1"}}]}),
            "not base64",
        ),
        (
            json!({"events": [{"source": "se-group", "key": "k", "value": value}]}),
            "seam-event-id",
        ),
        (json!({"event": []}), "unknown field"),
    ];
    for (body, says) in bad_puts {
        let (s, v, _) = call(&app, Method::PUT, "/events", Some(&body.to_string())).await;
        assert!(s.is_client_error(), "{body}: {s}");
        assert!(v["error"].as_str().unwrap_or_default().contains(says), "{body}: {v}");
    }
    let junk = base64::engine::general_purpose::STANDARD.encode(b"not avro");
    let put = json!({"events": [{"source": "se-group", "key": "student/1", "value": junk, "headers": {"seam-event-id": "se-group/junk"}}]}).to_string();
    let (s, v, _) = call(&app, Method::PUT, "/events", Some(&put)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["outcomes"][0]["outcome"], "rejected", "{v}");
    assert!(
        v["outcomes"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("magic byte"),
        "{v}"
    );

    // Snapshot: the office's state with the cut of its topic.
    let req = Request::builder()
        .uri("/snapshot")
        .body(Body::empty())
        .expect("request");
    let res = app.clone().oneshot(req).await.expect("response");
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(res.into_body(), 16 << 20).await.expect("body");
    let (meta, records) =
        seam::snapshot::file::read(bytes.as_ref(), "GET /snapshot", Some(&name)).expect("a valid snapshot");
    assert_eq!((meta.seq, records.len()), (1, 1), "one student, at seq 1");
    assert!(meta.offsets.0.contains_key(&format!("{name}.events")));

    // Queries and flows.
    let (s, _, _) = call(&app, Method::GET, "/students/nobody", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v, _) = call(&app, Method::GET, "/counts", None).await;
    assert_eq!((s, v["students"].as_u64()), (StatusCode::OK, Some(1)));
    let (s, v, _) = call(&app, Method::GET, "/shared/se-group/students-office", None).await;
    assert_eq!((s, v["rows"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    let (s, _, _) = call(&app, Method::GET, "/shared/nowhere/nobody", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    drop(app);
    Arc::try_unwrap(node)
        .map_err(|_| ())
        .expect("sole owner")
        .shutdown()
        .await
        .expect("shutdown");
}
