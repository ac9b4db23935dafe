//! `delivery.maxUncommitted`: records sent to the app whose end is not yet committed are
//! bounded (`commit/window.rs`), so a crash can deliver at most that many again.

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::json;

use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, unique},
    wait_until, wait_until_async,
};

/// Commits refused.
const REFUSALS: usize = 30;
const MAX_UNCOMMITTED: usize = 6;

/// While Kafka refuses every commit, the app gets exactly `maxUncommitted` records and no more:
/// none of their ends can be made durable, so a crash now would deliver at most those again.
/// Once commits are accepted the rest flows, each record once, everything committed. The
/// window is below `maxInFlight`, so it bounds the requests in flight as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commits_stop_new_requests_at_max_uncommitted_then_the_rest_flows() {
    init_logging();
    let kafka = TestKafka::start(1);
    let Some(mock) = kafka.mock() else {
        eprintln!("skipped: fault injection needs the mock cluster");
        return;
    };
    let (topic, group) = (unique("window"), unique("g"));
    kafka.create_topic(&topic, 2).await;
    let app = App::start(behaviour(|_| Reply::ok())).await;
    let records: Vec<Rec> = (0..100)
        .map(|i| Rec::new(i % 2, None, i.to_string()))
        .collect();
    kafka.produce(&topic, &records).await;
    // Every commit from now on is refused, for REFUSALS commits (the committer pauses between
    // failed commits, so that is seconds).
    mock.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_COMMIT_OFFSET_SIZE; REFUSALS],
    );
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["ordering"] = json!("unordered");
        c["delivery"]["maxInFlight"] = json!(8);
        c["delivery"]["maxUncommitted"] = json!(MAX_UNCOMMITTED);
        c["delivery"]["commitInterval"] = json!("50ms");
    }));
    wait_until("the window filled", || {
        app.delivered().len() >= MAX_UNCOMMITTED
    })
    .await;
    wait_until("a few commits refused", || {
        run.snapshot().commit_failures >= 3
    })
    .await;
    let failures = run.snapshot().commit_failures;
    assert!(
        failures < REFUSALS as u64,
        "still refusing ({failures} of {REFUSALS} refused)"
    );
    assert_eq!(
        app.delivered().len(),
        MAX_UNCOMMITTED,
        "while no commit is accepted, only maxUncommitted records reach the app"
    );
    wait_until("kcp_uncommitted_records shows the window full", || {
        run.snapshot().uncommitted == MAX_UNCOMMITTED as u64
    })
    .await;
    wait_until_async("everything delivered and committed", || async {
        kafka.committed(&group, &topic, 2).await == vec![Some(50), Some(50)]
    })
    .await;
    run.stop().await;
    let received = app.received();
    assert_eq!(received.len(), 100, "each record once");
    assert_eq!(app.delivered().len(), 100);
    assert!(
        app.max_concurrency() <= MAX_UNCOMMITTED,
        "a window below maxInFlight (8) bounds the requests in flight too: {}",
        app.max_concurrency()
    );
}
