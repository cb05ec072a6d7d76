//! Records survive a trip through the real broker with key, payload, headers and
//! per-key order intact: the guarantee every seam topic is built on.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use seam_testkit::{unique_name, TestCluster};

#[tokio::test]
async fn records_keep_key_headers_and_per_key_order() {
    let cluster = TestCluster::connect();
    let topic = unique_name("roundtrip");
    let rf = cluster.broker_count().min(3) as i32;
    cluster.create_topic(&topic, 3, rf, &[]).await;

    let producer: FutureProducer = cluster
        .client_config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let subjects = ["student/1", "student/2", "course/7", "exam/9"];
    // Enqueue everything first (librdkafka batches), then wait for the acknowledgements.
    let deliveries: Vec<_> = (0..400)
        .map(|i| {
            let subject = subjects[i % subjects.len()];
            let payload = format!("{subject}#{i}");
            let id = format!("test/{i}");
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "seam-event-id",
                    value: Some(&id),
                })
                .insert(Header {
                    key: "seam-event-type",
                    value: Some("Tested"),
                });
            producer
                .send_result(FutureRecord::to(&topic).key(subject).payload(&payload).headers(headers))
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    for delivery in deliveries {
        delivery
            .await
            .expect("producer alive")
            .expect("every acks=all write is acknowledged");
    }

    let consumer: StreamConsumer = cluster
        .client_config()
        .set("group.id", unique_name("roundtrip-group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut total = 0;
    while total < 400 && Instant::now() < deadline {
        let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await else {
            continue;
        };
        let key = String::from_utf8(msg.key().expect("key").to_vec()).expect("utf8 key");
        let payload = std::str::from_utf8(msg.payload().expect("payload")).expect("utf8");
        let (subject, n) = payload.split_once('#').expect("payload format");
        assert_eq!(subject, key, "payload travels with its key");
        let n: usize = n.parse().expect("number");
        let id = msg
            .headers()
            .expect("headers")
            .iter()
            .find(|h| h.key == "seam-event-id")
            .and_then(|h| h.value);
        assert_eq!(
            id,
            Some(format!("test/{n}").as_bytes()),
            "headers travel with the record"
        );
        let p = *partition_of.entry(key.clone()).or_insert(msg.partition());
        assert_eq!(p, msg.partition(), "one key, one partition");
        seen.entry(key).or_default().push(n);
        total += 1;
    }
    assert_eq!(total, 400, "no duplicates");
    for (key, ns) in &seen {
        let mut sorted = ns.clone();
        sorted.sort_unstable();
        assert_eq!(ns, &sorted, "records of {key} arrive in the order they were written");
        assert_eq!(ns.len(), 100);
    }
}
