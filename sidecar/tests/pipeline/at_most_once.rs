//! `delivery.guarantee: atMostOnce`, as the original proxy's level 1 meant it: offsets are
//! committed ahead, a round of records at a time, and only then are the records sent; a request
//! that may have reached the app is never sent again. A crash may lose records, never repeat one.

use std::collections::BTreeMap;

use serde_json::json;

use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, unique},
    wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_once_never_sends_a_record_twice_and_commits_in_batches() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("amo-batch"), unique("g"));
    kafka.create_topic(&topic, 2).await;
    let n = 200;
    let records: Vec<Rec> = (0..n)
        .map(|i| Rec::new(i % 2, None, i.to_string()))
        .collect();
    kafka.produce(&topic, &records).await;
    // Every tenth record fails with a retryable status.
    let app = App::start(behaviour(|r| {
        if r.offset() % 10 == 0 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    }))
    .await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["guarantee"] = json!("atMostOnce");
        c["delivery"]["ordering"] = json!("unordered");
        c["delivery"]["maxInFlight"] = json!(16);
        c["delivery"]["retry"]["maxAttempts"] = json!(5);
        c["delivery"]["onExhausted"] = json!("skip");
        c["delivery"]["commitInterval"] = json!("1h");
    }));
    wait_until("every record reached the app", || {
        app.received().len() >= n as usize
    })
    .await;
    let stats = run.stop().await;
    let mut sent: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    for r in app.received() {
        *sent.entry((r.partition(), r.offset())).or_default() += 1;
    }
    let repeated: Vec<_> = sent.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "sent more than once: {repeated:?}");
    assert_eq!(sent.len(), n as usize, "every record was sent once");
    assert_eq!(
        kafka.committed(&group, &topic, 2).await,
        vec![Some(100), Some(100)]
    );
    assert!(
        stats.commits <= n as u64 / 4,
        "commits ahead go a round of records at a time, not one per record: {} commits",
        stats.commits
    );
}
