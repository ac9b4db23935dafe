//! Broker faults injected with the mock cluster (skipped against a real broker, which cannot
//! be told to fail).

use std::time::Duration;

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::json;

use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, unique},
    wait_until, wait_until_async,
};

/// The broker goes away mid-stream and comes back: the pipeline reports it, keeps running, and
/// delivers and commits everything once the broker is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_mid_stream_then_back_loses_nothing() {
    init_logging();
    let kafka = TestKafka::start(1);
    let Some(mock) = kafka.mock() else {
        eprintln!("skipped: fault injection needs the mock cluster");
        return;
    };
    let (topic, group) = (unique("down"), unique("g"));
    kafka.create_topic(&topic, 2).await;
    let app = App::start(behaviour(|_| Reply::ok().delayed(Duration::from_millis(5)))).await;
    kafka
        .produce(
            &topic,
            &(0..40)
                .map(|i| Rec::new(i % 2, None, i.to_string()))
                .collect::<Vec<_>>(),
        )
        .await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |_| {}));
    wait_until("some records delivered", || app.delivered().len() >= 10).await;
    let before = run.snapshot().last_error;
    mock.broker_down(1).expect("broker down");
    wait_until("the outage is reported", || {
        run.snapshot().last_error != before
    })
    .await;
    eprintln!(
        "before: {before:?}; during the outage: {:?}",
        run.snapshot().last_error
    );
    assert!(!run.is_finished(), "an unreachable broker is not fatal");
    mock.broker_up(1).expect("broker up");
    kafka
        .produce(
            &topic,
            &(40..60)
                .map(|i| Rec::new(i % 2, None, i.to_string()))
                .collect::<Vec<_>>(),
        )
        .await;
    wait_until_async("everything committed", || async {
        kafka.committed(&group, &topic, 2).await == vec![Some(30), Some(30)]
    })
    .await;
    run.stop().await;
    let delivered = app.delivered();
    for p in 0..2 {
        for o in 0..30 {
            assert!(delivered.contains(&(p, o)), "{p}/{o} lost");
        }
    }
}

/// The group refuses the shutdown commit (as during a rebalance): it is retried until accepted,
/// within drainTimeout, so the committed offset still reaches the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_shutdown_commit_is_retried() {
    init_logging();
    let kafka = TestKafka::start(1);
    let Some(mock) = kafka.mock() else {
        eprintln!("skipped: fault injection needs the mock cluster");
        return;
    };
    let (topic, group) = (unique("refuse"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    let app = App::start(behaviour(|_| Reply::ok())).await;
    kafka
        .produce(
            &topic,
            &(0..10)
                .map(|i| Rec::new(0, None, i.to_string()))
                .collect::<Vec<_>>(),
        )
        .await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["commitInterval"] = json!("1h");
    }));
    wait_until("all delivered", || app.delivered().len() == 10).await;
    // The next three OffsetCommit requests fail; the periodic commit is an hour away, so they
    // hit the shutdown commit.
    mock.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS; 3],
    );
    let stats = run.stop().await;
    assert!(
        stats.commit_failures >= 1,
        "the injected refusals were seen: {stats:?}"
    );
    assert_eq!(kafka.committed(&group, &topic, 1).await, vec![Some(10)]);
}
