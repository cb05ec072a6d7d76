//! An Avro record registered in the real registry round-trips through Kafka in the
//! Confluent wire format (magic byte 0, 4-byte schema id, Avro body), with subjects named
//! by the topic-record strategy so one topic can carry several event types.

use std::time::Duration;

use apache_avro::types::Value;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{SchemaType, SubjectNameStrategy, SuppliedSchema};
use seam_testkit::{unique_name, TestCluster};

const ENROLLED: &str = r#"{"type":"record","name":"StudentEnrolled","namespace":"seam.test","fields":[{"name":"student_id","type":"string"},{"name":"course","type":"string"},{"name":"term","type":"int"}]}"#;
const GRADED: &str = r#"{"type":"record","name":"StudentGraded","namespace":"seam.test","fields":[{"name":"student_id","type":"string"},{"name":"grade","type":"double"}]}"#;

fn strategy(topic: &str, name: &str, schema: &str) -> SubjectNameStrategy {
    SubjectNameStrategy::TopicRecordNameStrategyWithSchema(
        topic.to_string(),
        SuppliedSchema::new(Some(name.to_string()), SchemaType::Avro, schema.to_string()),
    )
}

#[tokio::test]
async fn two_event_types_on_one_topic_round_trip_in_confluent_wire_format() {
    let cluster = TestCluster::connect();
    let registry = cluster.registry();
    let topic = unique_name("avro");
    cluster
        .create_topic(&topic, 1, cluster.broker_count().min(3) as i32, &[])
        .await;

    let encoder = AvroEncoder::new(SrSettings::new(registry.clone()));
    let enrolled = encoder
        .encode(
            vec![
                ("student_id", Value::String("4711".into())),
                ("course", Value::String("modelling".into())),
                ("term", Value::Int(2026)),
            ],
            strategy(&topic, "seam.test.StudentEnrolled", ENROLLED),
        )
        .await
        .expect("register and encode StudentEnrolled");
    let graded = encoder
        .encode(
            vec![
                ("student_id", Value::String("4711".into())),
                ("grade", Value::Double(1.3)),
            ],
            strategy(&topic, "seam.test.StudentGraded", GRADED),
        )
        .await
        .expect("register and encode StudentGraded");

    // The ids in the frames are the ones the registry gives for the topic-record subjects.
    let http = reqwest::Client::new();
    for (bytes, record) in [
        (&enrolled, "seam.test.StudentEnrolled"),
        (&graded, "seam.test.StudentGraded"),
    ] {
        let latest: serde_json::Value = http
            .get(format!("{registry}/subjects/{topic}-{record}/versions/latest"))
            .send()
            .await
            .expect("registry answers")
            .error_for_status()
            .expect("subject registered under the topic-record name")
            .json()
            .await
            .expect("json");
        let id = latest["id"].as_u64().expect("id") as u32;
        assert_eq!(bytes.first(), Some(&0u8), "magic byte");
        assert_eq!(
            bytes.get(1..5),
            Some(id.to_be_bytes().as_slice()),
            "schema id, big endian"
        );
    }

    let producer: FutureProducer = cluster.client_config().set("acks", "all").create().expect("producer");
    for bytes in [&enrolled, &graded] {
        producer
            .send(
                FutureRecord::to(&topic).key("student/4711").payload(bytes.as_slice()),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }

    let consumer: BaseConsumer = cluster
        .client_config()
        .set("group.id", unique_name("avro-group"))
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning).expect("assign");
    consumer.assign(&tpl).expect("assign");
    let mut payloads = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while payloads.len() < 2 && std::time::Instant::now() < deadline {
        if let Some(msg) = consumer.poll(Duration::from_millis(200)) {
            payloads.push(msg.expect("message").payload().expect("payload").to_vec());
        }
    }
    assert_eq!(
        payloads,
        vec![enrolled.clone(), graded.clone()],
        "bytes arrive unchanged and in order"
    );

    let decoder = AvroDecoder::new(SrSettings::new(registry));
    let first = decoder
        .decode(Some(&payloads[0]))
        .await
        .expect("decode StudentEnrolled");
    assert_eq!(
        first.value,
        Value::Record(vec![
            ("student_id".into(), Value::String("4711".into())),
            ("course".into(), Value::String("modelling".into())),
            ("term".into(), Value::Int(2026)),
        ])
    );
    let second = decoder.decode(Some(&payloads[1])).await.expect("decode StudentGraded");
    assert_eq!(
        second.value,
        Value::Record(vec![
            ("student_id".into(), Value::String("4711".into())),
            ("grade".into(), Value::Double(1.3))
        ])
    );
}
