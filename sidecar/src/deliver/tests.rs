//! Recovering a record after a panic, against librdkafka's mock cluster.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::Headers,
    mocking::MockCluster,
};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::{dispatch::PartitionState, offsets::NextOffset, record::Record};

fn config(bootstrap: &str, on_exhausted: &str) -> SidecarConfig {
    let json = serde_json::json!({
        "kafka": {"bootstrapServers": bootstrap, "topics": ["t"], "groupId": "g"},
        "endpoint": {"url": "http://127.0.0.1:9/x", "connectTimeout": "1s", "requestTimeout": "1s",
                     "retryOn": ["5xx"]},
        "delivery": {"ordering": "partition", "maxInFlight": 1, "guarantee": "atLeastOnce",
                     "commitInterval": "1s", "drainTimeout": "1s",
                     "retry": {"maxAttempts": 3, "initialBackoff": "5ms", "maxBackoff": "20ms", "multiplier": 2.0},
                     "onExhausted": on_exhausted}
    });
    SidecarConfig::parse(&json.to_string()).unwrap_or_else(|e| panic!("test config invalid: {e}"))
}

/// Reads the first record of `topic`/0.
fn read_first(bootstrap: &str, topic: &str) -> rdkafka::message::OwnedMessage {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("valid offset");
    consumer.assign(&tpl).expect("assign");
    // A bound against a hang, not a timing assertion.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "nothing in {topic}");
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            return m.expect("consume").detach();
        }
    }
}

/// A record the sidecar panicked on is dead-lettered — even with `onExhausted: skip`, since
/// skipping it would commit past a record neither delivered nor dead-lettered — and only then
/// finished, so the commit moves past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_panicked_is_dead_lettered_then_finished() {
    let mock = MockCluster::new(1).expect("mock cluster");
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("t-dlq", 1, 1).expect("dead-letter topic");
    let config = config(&bootstrap, "skip");
    let stats = Arc::new(Stats::default());
    let tracker = Arc::new(Mutex::new(OffsetTracker::new()));
    let tp = Tp::new("t", 0);
    let epoch = {
        let mut t = tracker.lock().expect("tracker");
        let epoch = t.assign(tp.clone());
        t.dispatched(&tp, 5);
        epoch
    };
    let deliverer = Deliverer::new(
        &config,
        Forwarder::new(&config.endpoint, "g", 1).expect("forwarder"),
        DeadLetter::new(&config, &|_| None).expect("dead-letter producer"),
        Arc::clone(&tracker),
        Arc::clone(&stats),
    );
    let state = Arc::new(PartitionState::new(
        tp.clone(),
        epoch,
        CancellationToken::new(),
        CancellationToken::new(),
    ));
    let record = Record {
        tp: tp.clone(),
        offset: 5,
        timestamp: None,
        key: Some(Bytes::from_static(b"k")),
        value: Bytes::from_static(b"v"),
        headers: vec![],
        unreadable_headers: 0,
    };
    let job = Job::new(record, state);
    assert_eq!(
        tracker.lock().expect("tracker").committable(&tp),
        Some(NextOffset::at(5))
    );
    deliverer.recover(&job, "index out of bounds").await;

    assert_eq!(stats.dead_lettered.load(Relaxed), 1);
    assert_eq!(stats.skipped.load(Relaxed), 0);
    assert_eq!(
        tracker.lock().expect("tracker").committable(&tp),
        Some(NextOffset::after(5)),
        "finished: the commit passes it"
    );
    let b = bootstrap.clone();
    let dead = tokio::task::spawn_blocking(move || read_first(&b, "t-dlq"))
        .await
        .expect("reader thread");
    assert_eq!(dead.payload(), Some(&b"v"[..]));
    let reason = dead
        .headers()
        .and_then(|hs| hs.iter().find(|h| h.key == "kcp-dlq-reason"))
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned());
    assert_eq!(
        reason.as_deref(),
        Some("sidecar error: index out of bounds")
    );
}
