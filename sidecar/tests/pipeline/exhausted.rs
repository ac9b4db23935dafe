//! What happens to records the app refuses: dead-letter, skip, block; and an app that is down.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::SeqCst},
    },
    time::Duration,
};

use rdkafka::Message;
use serde_json::json;

use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, header, unique},
    wait_until, wait_until_async,
};

/// A 4xx goes to the dead-letter topic at once (attempt 1); a 5xx that never passes goes there
/// after maxAttempts; both carry the original key, value, headers and the kcp-dlq-* headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_records_are_dead_lettered_with_their_history() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("dlq"), unique("g"));
    let dlq = format!("{topic}-dlq");
    kafka.create_topic(&topic, 1).await;
    kafka.create_topic(&dlq, 1).await;
    let app = App::start(behaviour(|r| match &r.body[..] {
        b"bad" => Reply::status(422),
        b"flaky" => Reply::status(503),
        b"app-says-dlq" => {
            let mut reply = Reply::ok();
            reply.headers.push(("x-kcp-action", "dead-letter".into()));
            reply
        }
        _ => Reply::ok(),
    }))
    .await;
    let mut bad = Rec::new(0, Some("order-7"), "bad");
    bad.headers = vec![
        ("origin".into(), b"web".to_vec()),
        ("bin".into(), vec![0xff, 0x00]),
    ];
    let records = vec![
        Rec::new(0, Some("a"), "ok"),
        bad,
        Rec::new(0, Some("b"), "ok"),
        Rec::new(0, None, "flaky"),
        Rec::new(0, Some("c"), "ok"),
        Rec::new(0, Some("d"), "app-says-dlq"),
    ];
    kafka.produce(&topic, &records).await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["retry"]["maxAttempts"] = json!(3);
        c["endpoint"]["actionHeader"] = json!("x-kcp-action");
    }));
    wait_until_async("all six finished and committed", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(6)]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(stats.dead_lettered, 3);
    assert_eq!(stats.delivered, 3);

    let bad_attempts: Vec<u32> = app
        .received()
        .iter()
        .filter(|r| &r.body[..] == b"bad")
        .map(|r| r.attempt())
        .collect();
    assert_eq!(bad_attempts, [1], "a 4xx is not retried");
    let flaky_attempts: Vec<u32> = app
        .received()
        .iter()
        .filter(|r| &r.body[..] == b"flaky")
        .map(|r| r.attempt())
        .collect();
    assert_eq!(
        flaky_attempts,
        [1, 2, 3],
        "a 5xx is retried up to maxAttempts"
    );

    let dead = kafka.read(&dlq, 1, 3).await;
    let asked = dead
        .iter()
        .find(|m| m.payload() == Some(&b"app-says-dlq"[..]))
        .expect("the app's dead-letter action");
    assert_eq!(
        header(asked, "kcp-dlq-reason").as_deref(),
        Some("app asked to dead-letter (status 200)")
    );
    assert_eq!(header(asked, "kcp-dlq-last-status").as_deref(), Some("200"));
    let bad = dead
        .iter()
        .find(|m| m.payload() == Some(&b"bad"[..]))
        .expect("bad record dead-lettered");
    assert_eq!(bad.key(), Some(&b"order-7"[..]));
    {
        use rdkafka::message::Headers;
        let hs = bad.headers().expect("headers");
        assert_eq!(hs.get(0).key, "origin");
        assert_eq!(hs.get(0).value, Some(&b"web"[..]));
        assert_eq!(hs.get(1).key, "bin");
        assert_eq!(hs.get(1).value, Some(&[0xff, 0x00][..]));
    }
    assert_eq!(
        header(bad, "kcp-dlq-original-topic").as_deref(),
        Some(topic.as_str())
    );
    assert_eq!(
        header(bad, "kcp-dlq-original-partition").as_deref(),
        Some("0")
    );
    assert_eq!(header(bad, "kcp-dlq-original-offset").as_deref(), Some("1"));
    assert!(header(bad, "kcp-dlq-original-timestamp").is_some());
    assert_eq!(header(bad, "kcp-dlq-attempts").as_deref(), Some("1"));
    assert_eq!(header(bad, "kcp-dlq-last-status").as_deref(), Some("422"));
    assert_eq!(
        header(bad, "kcp-dlq-group").as_deref(),
        Some(group.as_str())
    );
    assert_eq!(header(bad, "kcp-dlq-reason").as_deref(), Some("status 422"));
    let first: u128 = header(bad, "kcp-dlq-first-failure")
        .expect("first")
        .parse()
        .expect("ms");
    let last: u128 = header(bad, "kcp-dlq-last-failure")
        .expect("last")
        .parse()
        .expect("ms");
    assert!(
        first <= last && first > 1_600_000_000_000,
        "failure times are epoch ms"
    );

    let flaky = dead
        .iter()
        .find(|m| m.payload() == Some(&b"flaky"[..]))
        .expect("flaky record dead-lettered");
    assert_eq!(flaky.key(), None, "a null key stays null");
    assert_eq!(
        header(flaky, "kcp-dlq-original-offset").as_deref(),
        Some("3")
    );
    assert_eq!(header(flaky, "kcp-dlq-attempts").as_deref(), Some("3"));
    assert_eq!(header(flaky, "kcp-dlq-last-status").as_deref(), Some("503"));
    assert_eq!(
        header(flaky, "kcp-dlq-reason").as_deref(),
        Some("retries exhausted: status 503")
    );
}

/// `skip`: the refused record is passed over (once), counted, and the commit moves past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_moves_on_past_a_refused_record() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("skip"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    let app = App::start(behaviour(|r| {
        if &r.body[..] == b"bad" {
            Reply::status(400)
        } else {
            Reply::ok()
        }
    }))
    .await;
    let records = vec![
        Rec::new(0, None, "ok"),
        Rec::new(0, None, "bad"),
        Rec::new(0, None, "ok"),
    ];
    kafka.produce(&topic, &records).await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["onExhausted"] = json!("skip");
    }));
    wait_until_async("committed past the skipped record", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(3)]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(stats.skipped, 1);
    assert_eq!(stats.dead_lettered, 0);
    assert_eq!(stats.delivered, 2);
    assert_eq!(
        app.received()
            .iter()
            .filter(|r| &r.body[..] == b"bad")
            .count(),
        1
    );
}

/// `block` in key mode: the failing key keeps retrying past maxAttempts at maxBackoff, other
/// keys go on, and the commit stays at the blocked record until it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_holds_only_its_key_and_the_commit() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("block"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    let healed = Arc::new(AtomicBool::new(false));
    let h = Arc::clone(&healed);
    let app = App::start(behaviour(move |r| {
        if r.key() == Some("stuck") && !h.load(SeqCst) {
            Reply::status(500)
        } else {
            Reply::ok()
        }
    }))
    .await;
    let mut records = vec![Rec::new(0, Some("a"), "0"), Rec::new(0, Some("stuck"), "1")];
    records.extend(
        (2..12).map(|i| Rec::new(0, Some(if i % 2 == 0 { "a" } else { "b" }), i.to_string())),
    );
    kafka.produce(&topic, &records).await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["ordering"] = json!("key");
        c["delivery"]["onExhausted"] = json!("block");
        c["delivery"]["retry"]["maxAttempts"] = json!(2);
    }));
    let stuck_attempts = || {
        app.received()
            .iter()
            .filter(|r| r.key() == Some("stuck"))
            .count()
    };
    wait_until(
        "other keys delivered while one key is blocked past maxAttempts",
        || app.delivered().len() == 11 && stuck_attempts() > 3,
    )
    .await;
    wait_until_async("the commit reaches the blocked record", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(1)]
    })
    .await;
    assert_eq!(run.snapshot().dead_lettered, 0);
    assert_eq!(run.snapshot().skipped, 0);
    // Still exactly at the blocked record after more commits had the chance to move it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        kafka.committed(&group, &topic, 1).await,
        vec![Some(1)],
        "never past the blocked record"
    );
    healed.store(true, SeqCst);
    wait_until_async("the healed record is delivered and committed", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(12)]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(stats.dead_lettered, 0);
    assert!(app.delivered().contains(&(0, 1)));
}

/// An app that is not listening (yet) costs no attempts: with maxAttempts 1, nothing is
/// dead-lettered, and the first request that reaches the app is attempt 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_app_does_not_consume_attempts() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("down"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    kafka.create_topic(&format!("{topic}-dlq"), 1).await;
    // Reserve a free port, then leave it closed: connections are refused.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let url = format!("http://{addr}/deliver");
    kafka
        .produce(
            &topic,
            &(0..5)
                .map(|i| Rec::new(0, None, i.to_string()))
                .collect::<Vec<_>>(),
        )
        .await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &url, |c| {
        c["delivery"]["retry"]["maxAttempts"] = json!(1);
        c["delivery"]["ordering"] = json!("unordered");
    }));
    // The app is not up yet: the readiness gate keeps every partition paused (`gate.rs`).
    wait_until("joined with every partition paused for the app", || {
        let s = run.snapshot();
        s.joined && s.gate_paused && !s.gate_open
    })
    .await;
    assert_eq!(run.snapshot().dead_lettered, 0);
    let app = App::start_on(addr, behaviour(|_| Reply::ok())).await;
    wait_until("all delivered once the app is up", || {
        app.delivered().len() == 5
    })
    .await;
    // The app crashes mid-stream and comes back: still no attempt is burnt.
    app.stop();
    drop(app);
    kafka
        .produce(
            &topic,
            &(5..8)
                .map(|i| Rec::new(0, None, i.to_string()))
                .collect::<Vec<_>>(),
        )
        .await;
    let before = run.snapshot().app_down;
    // Noticed by a refused delivery or by the readiness probe, whichever comes first.
    wait_until("the app is seen down again", || {
        let s = run.snapshot();
        s.app_down > before || !s.gate_open
    })
    .await;
    let app = App::start_on(addr, behaviour(|_| Reply::ok())).await;
    wait_until("the rest delivered", || app.delivered().len() == 3).await;
    wait_until_async("committed to the end", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(8)]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(
        stats.dead_lettered, 0,
        "an app that is down is not a bad record"
    );
    assert!(
        app.received().iter().all(|r| r.attempt() == 1),
        "refused connections are not attempts"
    );
}

/// At most once: the commit passes a record before it is forwarded, so a record the app never
/// accepted is already committed (and would be lost by a crash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_once_commits_before_forwarding() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("amo"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    let app = App::start(behaviour(|_| Reply::status(503))).await;
    kafka
        .produce(
            &topic,
            &(0..3)
                .map(|i| Rec::new(0, None, i.to_string()))
                .collect::<Vec<_>>(),
        )
        .await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["guarantee"] = json!("atMostOnce");
        c["delivery"]["ordering"] = json!("unordered");
        c["delivery"]["retry"]["maxAttempts"] = json!(0);
        c["delivery"]["commitInterval"] = json!("1h");
    }));
    wait_until("every record reached the app", || {
        (0..3).all(|o| app.received().iter().any(|r| r.offset() == o))
    })
    .await;
    assert_eq!(
        kafka.committed(&group, &topic, 1).await,
        vec![Some(3)],
        "committed before any was accepted"
    );
    let stats = run.kill().await;
    assert_eq!(stats.delivered, 0);
    assert!(app.delivered().is_empty());
}
