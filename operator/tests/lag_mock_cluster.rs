//! Lag and dead-letter counts read from librdkafka's mock cluster (in-process brokers on
//! 127.0.0.1): figures per partition and in total, a missing dead-letter topic, a cluster that
//! goes down, a bootstrap address nobody listens on.

#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use kcp_crds::config::SecurityProtocol;
use kcp_operator::{
    lag::{
        Credentials, KafkaLagSource, LagError, LagObservation, LagReadings, LagSource, LagTarget,
        ProbeLimits, error_chain,
    },
    metrics::Metrics,
    reconcile::status,
};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
    mocking::MockCluster,
    producer::{BaseProducer, BaseRecord, Producer},
};

fn produce(bootstrap: &str, topic: &str, per_partition: &[usize]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for (partition, n) in per_partition.iter().enumerate() {
        for i in 0..*n {
            let payload = format!("record-{i}");
            producer
                .send(
                    BaseRecord::<str, str>::to(topic)
                        .partition(i32::try_from(partition).unwrap())
                        .payload(&payload),
                )
                .unwrap();
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Commits `offsets` for `group` the way a consumer of the group would.
fn commit(bootstrap: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

fn target(bootstrap: String, topics: &[&str], dlq: &[&str]) -> LagTarget {
    LagTarget {
        bootstrap_servers: bootstrap,
        group_id: "shop.orders".into(),
        topics: topics.iter().map(|t| t.to_string()).collect(),
        dead_letter_topics: dlq.iter().map(|t| t.to_string()).collect(),
        protocol: SecurityProtocol::Plaintext,
        sasl_mechanism: None,
    }
}

fn fast_limits() -> ProbeLimits {
    ProbeLimits {
        call_timeout: Duration::from_secs(2),
        total: Duration::from_secs(4),
        ..ProbeLimits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_per_partition_total_and_dead_letter_count() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 3, 1).unwrap();
    mock.create_topic("orders-dlq", 2, 1).unwrap();
    produce(&bootstrap, "orders", &[10, 7, 4]);
    produce(&bootstrap, "orders-dlq", &[2, 1]);
    // Partition 2: the group never committed there.
    commit(&bootstrap, "shop.orders", "orders", &[(0, 6), (1, 7)]);
    // Another group's commits must not count.
    commit(&bootstrap, "someone-else", "orders", &[(2, 4)]);

    let source = KafkaLagSource::new(fast_limits());
    let snap = source
        .probe(
            target(bootstrap.clone(), &["orders"], &["orders-dlq"]),
            Credentials::default(),
        )
        .await
        .unwrap();

    let rows: Vec<_> = snap
        .partitions
        .iter()
        .map(|p| (p.partition, p.committed_offset, p.high_watermark, p.lag))
        .collect();
    assert_eq!(
        rows,
        vec![(0, Some(6), 10, 4), (1, Some(7), 7, 0), (2, None, 4, 4)]
    );
    assert_eq!(snap.total, 8);
    assert_eq!(snap.dead_letter.count, 3);
    assert_eq!(snap.dead_letter.topics, vec!["orders-dlq".to_string()]);
    assert!(snap.missing_topics.is_empty());

    // The group commits more; the cached client reads the new figures.
    commit(&bootstrap, "shop.orders", "orders", &[(0, 10), (2, 1)]);
    let snap = source
        .probe(
            target(bootstrap, &["orders"], &["orders-dlq"]),
            Credentials::default(),
        )
        .await
        .unwrap();
    assert_eq!(snap.total, 3);
    assert_eq!(
        source.cached_clients(),
        1,
        "one client reused across probes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topics_count_zero_and_are_named() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 1, 1).unwrap();
    produce(&bootstrap, "orders", &[5]);
    let snap = KafkaLagSource::new(fast_limits())
        .probe(
            target(
                bootstrap,
                &["orders", "payments"],
                &["orders-dlq", "payments-dlq"],
            ),
            Credentials::default(),
        )
        .await
        .unwrap();
    assert_eq!(snap.total, 5, "no committed offset: high - low");
    assert_eq!(snap.dead_letter.count, 0);
    assert_eq!(snap.missing_topics, vec!["payments".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_goes_down_gives_an_error_not_a_hang_or_panic() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 1, 1).unwrap();
    let source = KafkaLagSource::new(fast_limits());
    source
        .probe(
            target(bootstrap.clone(), &["orders"], &[]),
            Credentials::default(),
        )
        .await
        .unwrap();
    assert_eq!(source.cached_clients(), 1);

    mock.broker_down(-1).unwrap();
    let started = std::time::Instant::now();
    let err = source
        .probe(target(bootstrap, &["orders"], &[]), Credentials::default())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "bounded by the probe limits"
    );
    assert!(
        matches!(
            err,
            LagError::Metadata { .. }
                | LagError::Committed { .. }
                | LagError::Watermarks { .. }
                | LagError::Timeout(_)
        ),
        "{err:?}"
    );
    assert!(!error_chain(&err).is_empty());
    assert_eq!(source.cached_clients(), 0, "a failed client is dropped");
}

/// A real probe failure, through `LagReadings` and `status::compute`: the last figures are
/// kept, marked stale, and `KafkaReachable` turns False with reason `KafkaUnreachable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_marks_lag_stale_in_the_status() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 1, 1).unwrap();
    produce(&bootstrap, "orders", &[4]);
    let metrics = Arc::new(Metrics::default());
    let readings = LagReadings::new(
        Arc::new(KafkaLagSource::new(fast_limits())),
        Duration::ZERO,
        metrics.clone(),
    );
    let compute = |lag: &LagObservation, previous| {
        status::compute(&status::Input {
            generation: Some(1),
            selector: "kafkaproxy.io/instance=orders".into(),
            outcome: status::Outcome::Applied { suspended: true },
            deployment: None,
            lag,
            previous,
            now: kcp_operator::now_seconds(),
        })
    };
    let target = || target(bootstrap.clone(), &["orders"], &[]);
    let up = readings
        .observe("shop/orders/uid", target(), Credentials::default())
        .await;
    let before = compute(&up, None);
    assert_eq!(
        before.lag.as_ref().map(|l| (l.total, l.stale)),
        Some((4, false))
    );

    mock.broker_down(-1).unwrap();
    let down = readings
        .observe("shop/orders/uid", target(), Credentials::default())
        .await;
    assert!(matches!(down, LagObservation::Failed { .. }), "{down:?}");
    let after = compute(&down, Some(&before));
    assert_eq!(
        after.lag.as_ref().map(|l| (l.total, l.stale)),
        Some((4, true))
    );
    let kafka = after
        .conditions
        .iter()
        .find(|c| c.type_ == "KafkaReachable")
        .unwrap();
    assert_eq!(
        (kafka.status.as_str(), kafka.reason.as_str()),
        ("False", "KafkaUnreachable")
    );
    assert_eq!(metrics.lag_probe_failures.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_gives_an_error() {
    // Bind then drop a listener: nothing listens on that port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = KafkaLagSource::new(fast_limits())
        .probe(
            target(format!("127.0.0.1:{port}"), &["orders"], &[]),
            Credentials::default(),
        )
        .await
        .unwrap_err();
    let message = error_chain(&err);
    assert!(message.contains("orders"), "names what it tried: {message}");
}
