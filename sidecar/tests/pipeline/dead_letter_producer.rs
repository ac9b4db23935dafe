//! The dead-letter producer itself: it outlives a fatal idempotence error (injected with the
//! mock cluster, so skipped against a real broker), and its copy carries the time it was
//! dead-lettered, not the original's, so the dead-letter topic's retention does not delete an
//! old record at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kcp_sidecar::{
    deadletter::{DeadLetter, DeadLetterError, FailureLog, LastFailure},
    record::{Record, Tp},
};
use rdkafka::{
    ClientConfig, Message, Timestamp,
    producer::{FutureProducer, FutureRecord},
    types::{RDKafkaApiKey, RDKafkaRespErr},
};
use serde_json::json;

use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{TestKafka, header, unique},
    wait_until_async,
};

/// 2001-01-01T00:00:00Z in ms: far older than any topic's retention.
const OLD_TIMESTAMP_MS: i64 = 978_307_200_000;

fn record(topic: &str, offset: i64) -> Record {
    Record {
        tp: Tp::new(topic, 0),
        offset,
        timestamp: Some(OLD_TIMESTAMP_MS),
        key: Some(Bytes::from(format!("k{offset}"))),
        value: Bytes::from(format!("v{offset}")),
        headers: vec![],
        unreadable_headers: 0,
    }
}

fn failure() -> FailureLog {
    FailureLog {
        attempts: 1,
        last: LastFailure::Status(422),
        first_at: SystemTime::now(),
        last_at: SystemTime::now(),
    }
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_millis()).expect("ms fit in i64")
}

/// A broker refuses the producer id (`CLUSTER_AUTHORIZATION_FAILED`, what a broker before
/// Kafka 2.8 answers without the IdempotentWrite ACL): librdkafka makes the idempotent producer
/// fail fatally, and every later produce on it would fail too. The dead-letter producer is
/// recreated once, however many produces saw the error, and the next attempt succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_idempotence_error_recreates_the_producer_once() {
    init_logging();
    let kafka = TestKafka::start(1);
    let Some(mock) = kafka.mock() else {
        eprintln!("skipped: fault injection needs the mock cluster");
        return;
    };
    let topic = unique("fatal");
    let dlq = format!("{topic}-dlq");
    kafka.create_topic(&dlq, 1).await;
    // Only the dead-letter producer asks for a producer id: the first request is refused.
    mock.request_errors(
        RDKafkaApiKey::InitProducerId,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED],
    );
    let config = config(
        &kafka.bootstrap,
        &topic,
        &unique("g"),
        "http://unused",
        |_| {},
    );
    // Down until all four produces are queued: none can end before the producer id is refused.
    mock.broker_down(1).expect("broker down");
    let dead_letter = DeadLetter::new(&config, &|_| None).expect("dead-letter producer");

    let (dl, t) = (&dead_letter, topic.as_str());
    let produces = futures::future::join_all(
        (0..4).map(|o| async move { dl.produce(&record(t, o), &failure(), "status 422").await }),
    );
    // `join!` polls in order: the four produces are queued before the broker comes up.
    let (first, ()) = futures::join!(produces, async {
        mock.broker_up(1).expect("broker up");
    });
    for result in &first {
        assert!(
            matches!(result, Err(DeadLetterError::Fatal { .. })),
            "the refused producer id fails each produce as fatal: {result:?}"
        );
    }
    assert_eq!(
        dead_letter.recreated(),
        1,
        "one recreation for four failures"
    );

    let (got_topic, partition, offset) = dead_letter
        .produce(&record(&topic, 4), &failure(), "status 422")
        .await
        .expect("the recreated producer produces");
    assert_eq!((got_topic.as_str(), partition), (dlq.as_str(), 0));
    let copy = kafka.read(&dlq, 1, 1).await;
    assert_eq!(copy[0].offset(), offset);
    assert_eq!(copy[0].payload(), Some(&b"v4"[..]));
    assert_eq!(dead_letter.recreated(), 1, "a healthy producer is kept");
}

/// An old record (2001) refused by the app: its dead-letter copy is written with the time it was
/// dead-lettered (so retention counts from then), and the original time is in its header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_record_is_dead_lettered_with_the_current_time() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("old"), unique("g"));
    let dlq = format!("{topic}-dlq");
    kafka.create_topic(&topic, 1).await;
    kafka.create_topic(&dlq, 1).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap)
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&topic)
                .partition(0)
                .payload(&b"old"[..])
                .timestamp(OLD_TIMESTAMP_MS),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("old record produced");
    let app = App::start(behaviour(|_| Reply::status(422))).await;

    let before = now_ms();
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["retry"]["maxAttempts"] = json!(1);
    }));
    wait_until_async("the record is dead-lettered and committed", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(1)]
    })
    .await;
    run.stop().await;

    let copy = &kafka.read(&dlq, 1, 1).await[0];
    assert_eq!(copy.payload(), Some(&b"old"[..]));
    match copy.timestamp() {
        Timestamp::CreateTime(t) => assert!(
            t >= before,
            "the copy's CreateTime {t} is the time it was dead-lettered (>= {before})"
        ),
        other => panic!("the copy has a CreateTime: {other:?}"),
    }
    assert_eq!(
        header(copy, "kcp-dlq-original-timestamp"),
        Some(OLD_TIMESTAMP_MS.to_string()),
        "the original time is kept in its header"
    );
}
