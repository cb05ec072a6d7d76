//! The HTTP sink against the real Kafka and registry of the test stack and a real HTTP API (an
//! axum server in the test that honours `Idempotency-Key`, fails some first attempts with 503
//! and refuses poison with 422): every event taken once although calls are retried and a
//! stopped sink sends its uncommitted batch again; refused calls and undecodable records
//! dead-lettered while the rest goes on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use seam::codec::{wire, Registry};
use seam::translator::{ForeignEvent, TranslateError, Translator};
use seam_http_sink::{HttpCommand, HttpSink, HttpSinkOptions};
use seam_testkit::{unique_name, wait_until, TestCluster};
use serde::{Deserialize, Serialize};

const SCHEMA: &str = r#"{"type": "record", "name": "ThingSet", "namespace": "test.http",
  "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": "string"}, {"name": "poison", "type": "boolean"}]}"#;

#[derive(Debug, Clone, Serialize, Deserialize, apache_avro::AvroSchema)]
struct ThingSet {
    id: i64,
    name: String,
    poison: bool,
}

struct ThingsToApi {
    source: String,
}

impl Translator<HttpCommand> for ThingsToApi {
    fn source(&self) -> &str {
        &self.source
    }

    fn reader_schemas(&self) -> Vec<(&'static str, &'static str)> {
        vec![("test.http.ThingSet", SCHEMA)]
    }

    fn translate(&self, event: &ForeignEvent) -> Result<Vec<HttpCommand>, TranslateError> {
        let t: ThingSet = event.payload()?;
        Ok(vec![HttpCommand::put(
            format!("/things/{}", t.id),
            serde_json::json!({"name": t.name, "poison": t.poison}),
        )])
    }
}

/// The API: what it took, by idempotency key, and what it was sent.
#[derive(Default)]
struct Api {
    taken: BTreeMap<String, (i64, String)>,
    attempts: HashMap<String, u32>,
    repeats: u64,
}

async fn put_thing(
    State(api): State<Arc<Mutex<Api>>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> StatusCode {
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut api = api.lock().unwrap_or_else(|p| p.into_inner());
    if body["poison"] == true {
        return StatusCode::UNPROCESSABLE_ENTITY;
    }
    let attempt = {
        let a = api.attempts.entry(key.to_string()).or_default();
        *a += 1;
        *a
    };
    if attempt == 1 && id % 5 == 0 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if api.taken.contains_key(key) {
        api.repeats += 1;
        return StatusCode::OK;
    }
    let name = body["name"].as_str().unwrap_or_default().to_string();
    api.taken.insert(key.to_string(), (id, name));
    StatusCode::CREATED
}

#[tokio::test]
async fn an_http_sink_takes_each_event_once_retries_what_fails_and_dead_letters_what_is_refused() {
    let cluster = TestCluster::connect();
    let source = unique_name("http-src");
    let consumer = unique_name("http-sink");
    let topic = format!("{source}.events");
    cluster.create_topic(&topic, 3, cluster.replication(), &[]).await;
    cluster
        .create_topic(&format!("{consumer}.dlq"), 1, cluster.replication(), &[])
        .await;
    let registry = Registry::new(&cluster.registry()).expect("registry");
    let schema_id = registry
        .register_text(&topic, "test.http.ThingSet", SCHEMA)
        .await
        .expect("register the schema");
    let schema = apache_avro::Schema::parse_str(SCHEMA).expect("schema");
    let producer: FutureProducer = cluster.client_config().create().expect("producer");
    // 60 things; every tenth is poison; the last ten come from a producer that sets no
    // headers (keyed by their coordinates); one record is no Avro at all.
    let things: Vec<ThingSet> = (1..=60)
        .map(|id| ThingSet {
            id,
            name: format!("thing {id}"),
            poison: id % 10 == 7,
        })
        .collect();
    for t in &things {
        let value = apache_avro::to_value(t).expect("value");
        let body = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .expect("writer")
            .write_value_to_vec(value)
            .expect("datum");
        let key = format!("thing/{}", t.id);
        let payload = wire::frame(schema_id, &body);
        let mut record = FutureRecord::to(&topic).key(&key).payload(&payload);
        if t.id <= 50 {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: seam::envelope::EVENT_ID,
                value: Some(&format!("{source}/{}", t.id)),
            }));
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
    producer
        .send(
            FutureRecord::to(&topic).key("thing/0").payload(&b"not avro"[..]),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("produce garbage");

    let api = Arc::new(Mutex::new(Api::default()));
    let app = axum::Router::new()
        .route("/things/{id}", axum::routing::put(put_thing))
        .with_state(Arc::clone(&api));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let start = || {
        HttpSink::start(
            HttpSinkOptions {
                service: consumer.clone(),
                base_url: base.clone(),
                translators: vec![Box::new(ThingsToApi { source: source.clone() })],
            },
            &cluster.endpoints,
        )
        .expect("start the sink")
    };
    // Stopped as soon as it has delivered something: what it did not commit comes again.
    let sink = start();
    wait_until(Duration::from_secs(60), "a first call taken", || {
        let n = api.lock().map(|a| a.taken.len()).unwrap_or(0);
        async move {
            if n > 0 {
                Ok(())
            } else {
                Err("none".to_string())
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    sink.stop().await;
    let sink = start();
    let expected = things.iter().filter(|t| !t.poison).count();
    wait_until(Duration::from_secs(90), "every good thing taken", || {
        let n = api.lock().map(|a| a.taken.len()).unwrap_or(0);
        async move {
            if n >= expected {
                Ok(())
            } else {
                Err(format!("{n} of {expected}"))
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let letters = wait_until(Duration::from_secs(60), "seven dead letters", || {
        // At least once: a letter produced before a stop may come again; readers key
        // letters by their source coordinates.
        let letters: Vec<String> = cluster
            .read_all(&format!("{consumer}.dlq"))
            .into_iter()
            .map(|r| {
                let h = |n: &str| r.headers.get(n).cloned().unwrap_or_default();
                (h(seam::dlq::PARTITION), h(seam::dlq::OFFSET), h(seam::dlq::ERROR))
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|(_, _, kind)| kind)
            .collect();
        async move {
            if letters.len() >= 7 {
                Ok(letters)
            } else {
                Err(format!("{letters:?}"))
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let metrics = sink.metrics().render();
    sink.stop().await;

    let api = api.lock().unwrap_or_else(|p| p.into_inner());
    // Each good thing taken once, under the key its event gives.
    let mut ids: Vec<i64> = api.taken.values().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    let good: Vec<i64> = things.iter().filter(|t| !t.poison).map(|t| t.id).collect();
    assert_eq!(ids, good, "every good thing exactly once");
    for (key, (id, _)) in &api.taken {
        let expected_key = if *id <= 50 {
            format!("{source}/{id}/0")
        } else {
            format!("{topic}/")
        };
        assert!(key.starts_with(&expected_key), "{key} for thing {id}");
    }
    assert_eq!(
        letters.iter().filter(|k| *k == "http-422").count(),
        6,
        "each poison thing refused by the API is dead-lettered: {letters:?}"
    );
    assert!(
        letters.iter().any(|k| k != "http-422"),
        "the undecodable record too: {letters:?}"
    );
    assert!(metrics.contains("seam_http_sink_retries_total"), "{metrics}");
}
