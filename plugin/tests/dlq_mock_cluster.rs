//! `kubectl kcp dlq` against librdkafka's mock cluster (in-process brokers on 127.0.0.1): the
//! newest dead letters of each partition merged newest first, one record in full, a missing
//! dead-letter topic, nothing committed for the reading client's group, and a cluster nobody listens on.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use kubectl_kcp::{
    dlq::Coordinates,
    kafka::{self, KafkaAccess, KafkaError, Limits},
};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::{Header, OwnedHeaders},
    mocking::MockCluster,
    producer::{BaseProducer, BaseRecord, Producer},
};

/// 2026-03-01T10:00:00Z in ms since the epoch.
const T0: i64 = 1_772_359_200_000;

/// Produces one dead letter of `orders/<original offset>` to `orders-dlq`/`partition`, failed
/// last at `T0 + seconds`.
fn dead_letter(producer: &BaseProducer, partition: i32, original: i64, seconds: i64, reason: &str) {
    let last_failure = (T0 + seconds * 1000).to_string();
    let original = original.to_string();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "traceparent",
            value: Some("00-abc-def-01"),
        })
        .insert(Header {
            key: "kcp-dlq-original-topic",
            value: Some("orders"),
        })
        .insert(Header {
            key: "kcp-dlq-original-partition",
            value: Some("3"),
        })
        .insert(Header {
            key: "kcp-dlq-original-offset",
            value: Some(original.as_str()),
        })
        .insert(Header {
            key: "kcp-dlq-attempts",
            value: Some("5"),
        })
        .insert(Header {
            key: "kcp-dlq-last-failure",
            value: Some(last_failure.as_str()),
        })
        .insert(Header {
            key: "kcp-dlq-reason",
            value: Some(reason),
        });
    producer
        .send(
            BaseRecord::to("orders-dlq")
                .partition(partition)
                .key("customer-7")
                .payload(&format!("{{\"order\":{original}}}"))
                .timestamp(T0)
                .headers(headers),
        )
        .unwrap();
}

fn cluster() -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    KafkaAccess,
) {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("orders-dlq", 2, 1).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .create()
        .unwrap();
    // Partition 0: offsets 0..=2; partition 1: offsets 0..=1. Seconds after T0 say which is
    // newest: 0/2 (50s) and 1/0 (40s), then 0/1 (30s); 0/0 (99s) is outside the last 2 of
    // its partition.
    dead_letter(&producer, 0, 100, 99, "oldest offset, newest failure");
    dead_letter(&producer, 0, 101, 30, "status 500");
    dead_letter(
        &producer,
        0,
        102,
        50,
        "retries exhausted after 5 attempts (last 503)",
    );
    dead_letter(
        &producer,
        1,
        200,
        40,
        "endpoint refused the record: status 422",
    );
    dead_letter(&producer, 1, 201, 10, "status 502");
    producer.flush(Duration::from_secs(10)).unwrap();
    let access = KafkaAccess::new(mock.bootstrap_servers(), vec![]);
    (mock, access)
}

#[test]
fn the_two_newest_dead_letters_with_their_reasons() {
    let (_mock, access) = cluster();
    let read = kafka::read_newest(
        &access,
        &["orders-dlq".to_string(), "payments-dlq".to_string()],
        2,
        Limits::default(),
    )
    .unwrap();
    let got: Vec<_> = read
        .records
        .iter()
        .map(|r| (r.partition, r.offset, r.original(), r.reason()))
        .collect();
    assert_eq!(
        got,
        [
            (
                0,
                2,
                Some("orders/3/102".to_string()),
                Some("retries exhausted after 5 attempts (last 503)".to_string())
            ),
            (
                1,
                0,
                Some("orders/3/200".to_string()),
                Some("endpoint refused the record: status 422".to_string())
            ),
        ]
    );
    assert_eq!(read.missing_topics, ["payments-dlq"]);
    assert!(read.incomplete.is_empty(), "{:?}", read.incomplete);
}

#[test]
fn show_one_dead_letter() {
    let (_mock, access) = cluster();
    let coordinates = Coordinates {
        topic: "orders-dlq".into(),
        partition: 0,
        offset: 1,
    };
    let r = kafka::read_one(&access, &coordinates, Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.topic.as_str(), r.partition, r.offset),
        ("orders-dlq", 0, 1)
    );
    assert_eq!(r.reason().as_deref(), Some("status 500"));
    assert_eq!(r.header("traceparent").as_deref(), Some("00-abc-def-01"));
    assert_eq!(r.key.as_deref(), Some(&b"customer-7"[..]));
    assert_eq!(r.value.as_deref(), Some(&b"{\"order\":101}"[..]));
    assert_eq!(r.timestamp, Some(T0));

    let past_the_end = Coordinates {
        offset: 9,
        ..coordinates
    };
    assert!(
        kafka::read_one(&access, &past_the_end, Limits::default())
            .unwrap()
            .is_none()
    );
}

#[test]
fn reading_commits_nothing_for_its_group() {
    let (mock, access) = cluster();
    assert!(
        access.group_id.starts_with("kubectl-kcp-"),
        "{}",
        access.group_id
    );
    kafka::read_newest(&access, &["orders-dlq".to_string()], 2, Limits::default()).unwrap();
    kafka::read_one(
        &access,
        &Coordinates {
            topic: "orders-dlq".into(),
            partition: 1,
            offset: 1,
        },
        Limits::default(),
    )
    .unwrap()
    .unwrap();

    // What that group has committed, asked as a member of it would.
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("group.id", &access.group_id)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("orders-dlq", 0);
    tpl.add_partition("orders-dlq", 1);
    let committed = probe
        .committed_offsets(tpl, Duration::from_secs(5))
        .unwrap();
    let offsets: Vec<_> = committed.elements().iter().map(|e| e.offset()).collect();
    assert_eq!(
        offsets,
        [Offset::Invalid, Offset::Invalid],
        "nothing committed"
    );
}

#[test]
fn an_unreachable_cluster_is_reported_as_such() {
    // Nobody listens on port 1.
    let access = KafkaAccess::new("127.0.0.1:1".into(), vec![]);
    let limits = Limits {
        connect: Duration::from_secs(1),
        ..Limits::default()
    };
    let err = kafka::read_newest(&access, &["orders-dlq".to_string()], 2, limits).unwrap_err();
    assert!(matches!(err, KafkaError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}
