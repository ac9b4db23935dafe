//! An endpoint that fails every record alike is an outage, not a flood of dead letters; a bad
//! record among good ones is still the record's fault; `Retry-After` slows the whole endpoint;
//! an adaptive limit settles under the app's capacity (`concurrency.rs`, `outage.rs`).

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};

use kcp_sidecar::progress::Progress;
use serde_json::{Value, json};

use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, unique},
    wait_until, wait_until_async,
};

/// Records over three partitions and twelve keys.
fn records(n: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            Rec::new(
                (i % 3) as i32,
                Some(&format!("k{}", i % 12)),
                format!("r{i}"),
            )
        })
        .collect()
}

/// Key order, 8 in flight, 2 attempts (an outage would exhaust them at once), a quick breaker.
fn outage_config(c: &mut Value) {
    c["delivery"]["ordering"] = json!("key");
    c["delivery"]["maxInFlight"] = json!(8);
    c["delivery"]["retry"]["maxAttempts"] = json!(2);
    c["delivery"]["outage"] = json!({"records": 3, "window": "10s", "maxProbeInterval": "1s"});
}

/// While `broken`, the app answers `status` to everything; then 200.
async fn broken_app(status: u16) -> (App, Arc<AtomicBool>) {
    let broken = Arc::new(AtomicBool::new(true));
    let b = Arc::clone(&broken);
    let app = App::start(behaviour(move |_| {
        if b.load(SeqCst) {
            Reply::status(status)
        } else {
            Reply::ok()
        }
    }))
    .await;
    (app, broken)
}

async fn outage_then_recovery(status: u16) {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("outage"), unique("g"));
    kafka.create_topic(&topic, 3).await;
    kafka.create_topic(&format!("{topic}-dlq"), 1).await;
    kafka.produce(&topic, &records(60)).await;
    let (app, broken) = broken_app(status).await;
    let run = Running::start(config(
        &kafka.bootstrap,
        &topic,
        &group,
        &app.url(),
        outage_config,
    ));
    wait_until("the breaker sees the outage and probes it", || {
        let s = run.snapshot();
        s.endpoint_outages >= 1 && app.received().len() >= 20
    })
    .await;
    let during = run.snapshot();
    assert_eq!(
        (during.dead_lettered, during.skipped, during.delivered),
        (0, 0, 0),
        "an outage dead-letters nothing"
    );
    assert!(during.endpoint_outage.is_some());
    // The commits say so, for the operator's `EndpointOutage` condition.
    let reported = |commits: Vec<Option<(i64, String)>>| {
        commits.into_iter().flatten().any(|(offset, metadata)| {
            Progress::decode(&metadata, offset).is_some_and(|p| p.outage.is_some())
        })
    };
    wait_until_async("a commit reports the outage", || async {
        reported(kafka.committed_with_metadata(&group, &topic, 3).await)
    })
    .await;

    broken.store(false, SeqCst);
    wait_until_async("everything delivered and committed", || async {
        kafka.committed(&group, &topic, 3).await == vec![Some(20), Some(20), Some(20)]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(stats.dead_lettered, 0, "0 wrongly dead-lettered");
    assert_eq!(stats.delivered, 60);
    assert_eq!(
        stats.endpoint_outage, None,
        "over once the endpoint answered"
    );
    assert!(stats.endpoint_outages >= 1);
    assert!(
        !reported(kafka.committed_with_metadata(&group, &topic, 3).await),
        "the last commits say it is over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_outage_dead_letters_nothing_and_everything_arrives_after_it() {
    outage_then_recovery(503).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_for_every_record_then_fixed_dead_letters_nothing() {
    outage_then_recovery(404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_bad_record_among_good_ones_is_dead_lettered_at_once_and_the_breaker_stays_closed() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("lone-bad"), unique("g"));
    kafka.create_topic(&topic, 3).await;
    kafka.create_topic(&format!("{topic}-dlq"), 1).await;
    kafka.produce(&topic, &records(60)).await;
    let app = App::start(behaviour(|r| {
        if &r.body[..] == b"r7" {
            Reply::status(404)
        } else {
            Reply::ok()
        }
    }))
    .await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        outage_config(c);
        // Long enough that only a success elsewhere, never the window, can judge it.
        c["delivery"]["outage"]["window"] = json!("1h");
    }));
    wait_until_async("everything finished and committed", || async {
        kafka.committed(&group, &topic, 3).await == vec![Some(20), Some(20), Some(20)]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!((stats.dead_lettered, stats.delivered), (1, 59));
    assert_eq!(stats.endpoint_outages, 0, "the breaker stayed closed");
    let tries = app
        .received()
        .iter()
        .filter(|r| &r.body[..] == b"r7")
        .count();
    assert_eq!(
        tries, 1,
        "a 404 is not retried: dead-lettered on its first answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_with_retry_after_dead_letters_nothing() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("throttled"), unique("g"));
    kafka.create_topic(&topic, 3).await;
    kafka.create_topic(&format!("{topic}-dlq"), 1).await;
    kafka.produce(&topic, &records(60)).await;
    // The first 40 requests are throttled with Retry-After: 1.
    let seen = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&seen);
    let app = App::start(behaviour(move |_| {
        if s.fetch_add(1, SeqCst) < 40 {
            let mut reply = Reply::status(429);
            reply.headers.push(("retry-after", "1".into()));
            reply
        } else {
            Reply::ok()
        }
    }))
    .await;
    let run = Running::start(config(
        &kafka.bootstrap,
        &topic,
        &group,
        &app.url(),
        outage_config,
    ));
    wait_until_async("everything delivered and committed", || async {
        kafka.committed(&group, &topic, 3).await == vec![Some(20), Some(20), Some(20)]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(stats.dead_lettered, 0, "0 wrongly dead-lettered");
    assert_eq!(stats.delivered, 60);
}

/// An app that can serve 4 requests at once (5 ms each) and answers 503 beyond that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adaptive_limit_shrinks_to_the_apps_capacity_and_loses_nothing() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("adaptive"), unique("g"));
    kafka.create_topic(&topic, 3).await;
    kafka.create_topic(&format!("{topic}-dlq"), 1).await;
    kafka.produce(&topic, &records(600)).await;
    let arrivals: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
    let a = Arc::clone(&arrivals);
    let app = App::start(behaviour(move |_| {
        let now = Instant::now();
        let mut a = a.lock().expect("lock");
        while a
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_millis(5))
        {
            a.pop_front();
        }
        if a.len() >= 4 {
            return Reply::status(503);
        }
        a.push_back(now);
        Reply::ok().delayed(Duration::from_millis(5))
    }))
    .await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["ordering"] = json!("unordered");
        c["delivery"]["maxInFlight"] = json!(64);
        c["delivery"]["concurrency"] = json!("adaptive");
        c["delivery"]["retry"]["maxAttempts"] = json!(0);
    }));
    wait_until_async("everything delivered and committed", || async {
        kafka.committed(&group, &topic, 3).await == vec![Some(200), Some(200), Some(200)]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!((stats.delivered, stats.dead_lettered), (600, 0));
    // It starts at a quarter of maxInFlight (16) and grows only without congestion.
    assert!(
        (1..16).contains(&stats.concurrency_limit),
        "the 503s beyond the app's capacity shrank it: {}",
        stats.concurrency_limit
    );
}
