//! Rebalances, abrupt stops, graceful shutdown and an unreachable broker.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::SeqCst},
    },
    time::Duration,
};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, unique},
    wait_until, wait_until_async,
};

/// A second replica joins while the first has requests in flight: partitions move (revoke →
/// drain → commit), and every record is still delivered and committed. Records keep arriving
/// until the second replica has delivered some, so the revoke happens mid-stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_consumer_joining_mid_stream_loses_nothing() {
    init_logging();
    let kafka = TestKafka::start(2);
    let (topic, group) = (unique("rebal"), unique("g"));
    let partitions = 4;
    kafka.create_topic(&topic, partitions).await;
    // While `slow` is set (the second replica joining), each request takes 200 ms: slower than
    // the feed, so every partition has a request in flight when the revoke comes.
    let slow = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&slow);
    let app = App::start(behaviour(move |_| {
        let ms = if s.load(SeqCst) { 200 } else { 2 };
        Reply::ok().delayed(Duration::from_millis(ms))
    }))
    .await;
    let cfg = config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["maxInFlight"] = json!(4);
        c["delivery"]["commitInterval"] = json!("1h");
    });
    // Keep producing (8 records every 40 ms) until told to stop.
    let producing = CancellationToken::new();
    let producer = kafka.producer();
    let (t, stop) = (topic.clone(), producing.clone());
    let feeder = tokio::spawn(async move {
        let mut produced = [0i64; 4];
        while !stop.is_cancelled() {
            let batch: Vec<Rec> = (0..8)
                .map(|i| Rec::new(i % partitions, None, "v"))
                .collect();
            producer.produce(&t, &batch).await;
            for r in &batch {
                produced[r.partition as usize] += 1;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        produced
    });
    let first = Running::start(cfg.clone());
    wait_until("the first replica is delivering", || {
        app.delivered().len() >= 20
    })
    .await;
    // A backlog of 50 records per partition (10 s of work while slow) on top of the feed.
    slow.store(true, SeqCst);
    let burst: Vec<Rec> = (0..200)
        .map(|i| Rec::new(i % partitions, None, "v"))
        .collect();
    kafka.produce(&topic, &burst).await;
    let second = Running::start(cfg);
    wait_until("the second replica got partitions and delivered", || {
        second.snapshot().delivered > 0
    })
    .await;
    slow.store(false, SeqCst);
    producing.cancel();
    let mut produced = feeder.await.expect("feeder");
    for r in &burst {
        produced[r.partition as usize] += 1;
    }
    let total: i64 = produced.iter().sum();
    wait_until("every record delivered", || {
        app.delivered().len() == total as usize
    })
    .await;
    let first_stats = first.snapshot();
    assert!(
        first_stats.rebalances >= 2,
        "the first replica saw a revoke after its assign: {first_stats:?}"
    );
    assert!(
        first_stats.drain_waited > 0,
        "the revoke found requests in flight and waited for them: {first_stats:?}"
    );
    // The revoke commits synchronously (the periodic commit is 1h away). Kafka may refuse that
    // commit while the group is mid-rebalance (seen under CPU load); the contract allows it (a
    // refused commit only causes redelivery, and the shutdown commit below must still reach the
    // end), so the check is that a commit was made, not that it was accepted.
    assert!(
        first_stats.commits + first_stats.commit_failures > 0,
        "the revoke committed or tried to: {first_stats:?}"
    );
    let s1 = first.stop().await;
    let s2 = second.stop().await;
    assert_eq!(
        kafka.committed(&group, &topic, partitions).await,
        produced.iter().map(|n| Some(*n)).collect::<Vec<_>>(),
        "everything committed"
    );
    let delivered = app.delivered();
    for p in 0..partitions {
        for o in 0..produced[p as usize] {
            assert!(delivered.contains(&(p, o)), "{p}/{o} lost");
        }
    }
    eprintln!("first: {s1:?}\nsecond: {s2:?}");
}

/// After an abrupt stop, a restart delivers only what was not committed: the committed records
/// are not sent again, the unfinished ones are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_abrupt_stop_redelivers_only_unfinished() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("crash"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    // Offsets 10.. fail until the restart.
    let app = App::start(behaviour(|r| {
        if r.offset() >= 10 {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    }))
    .await;
    kafka
        .produce(
            &topic,
            &(0..20)
                .map(|i| Rec::new(0, None, i.to_string()))
                .collect::<Vec<_>>(),
        )
        .await;
    let cfg = config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["retry"]["maxAttempts"] = json!(0);
        c["delivery"]["ordering"] = json!("unordered");
        // Ten records failing alike with nothing succeeding is an outage to the breaker, which
        // would then send one probe at a time; this test is about the restart, not that.
        c["delivery"]["outage"] = json!(null);
    });
    let run = Running::start(cfg.clone());
    wait_until_async("the delivered prefix is committed", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(10)]
    })
    .await;
    wait_until("the failing records are being retried", || {
        app.received().iter().filter(|r| r.offset() >= 10).count() >= 20
    })
    .await;
    run.kill().await;
    assert_eq!(
        kafka.committed(&group, &topic, 1).await,
        vec![Some(10)],
        "the kill committed nothing past unfinished"
    );

    let app2 = App::start(behaviour(|_| Reply::ok())).await;
    let mut cfg2 = cfg;
    cfg2.endpoint.url = app2.url();
    let run = Running::start(cfg2);
    wait_until_async("the rest delivered and committed", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(20)]
    })
    .await;
    run.stop().await;
    let mut again: Vec<i64> = app2.received().iter().map(|r| r.offset()).collect();
    again.sort_unstable();
    assert_eq!(
        again,
        (10..20).collect::<Vec<_>>(),
        "only the unfinished records are delivered again"
    );
}

/// Graceful shutdown waits for the request in flight, then commits: with no periodic commit
/// due, the committed offset is the end only thanks to the shutdown commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_and_commits() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("drain"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    let app = App::start(behaviour(|r| {
        let delay = if r.offset() == 29 {
            Duration::from_millis(500)
        } else {
            Duration::ZERO
        };
        Reply::ok().delayed(delay)
    }))
    .await;
    kafka
        .produce(
            &topic,
            &(0..30)
                .map(|i| Rec::new(0, None, i.to_string()))
                .collect::<Vec<_>>(),
        )
        .await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["commitInterval"] = json!("1h");
    }));
    wait_until("the last record is in flight", || {
        app.received().iter().any(|r| r.offset() == 29)
    })
    .await;
    assert_eq!(
        kafka.committed(&group, &topic, 1).await,
        vec![None],
        "nothing committed yet"
    );
    assert!(
        !app.delivered().contains(&(0, 29)),
        "still in flight when the shutdown starts"
    );
    let stats = run.stop().await;
    assert!(
        app.delivered().contains(&(0, 29)),
        "the in-flight request finished"
    );
    assert_eq!(stats.delivered, 30);
    assert_eq!(kafka.committed(&group, &topic, 1).await, vec![Some(30)]);
    assert!(!stats.joined);
}

/// An unreachable broker is retried and reported, never a crash; shutdown still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_is_retried_not_fatal() {
    init_logging();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let app = App::start(behaviour(|_| Reply::ok())).await;
    let run = Running::start(config(
        &format!("127.0.0.1:{port}"),
        "nowhere",
        &unique("g"),
        &app.url(),
        |_| {},
    ));
    wait_until("the error is reported", || {
        run.snapshot().last_error.is_some()
    })
    .await;
    assert!(!run.is_finished(), "the pipeline keeps running");
    let stats = run.stop().await;
    assert_eq!(stats.received, 0);
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}

fn write_config(cfg: &kcp_crds::SidecarConfig) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("kcp-sidecar-bin"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("config.json");
    std::fs::write(&path, cfg.to_json_pretty()).expect("write config");
    path
}

/// The binary: SIGTERM drains, commits and exits 0; a second signal exits at once with 130
/// and commits nothing past the record still in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_sigterm_drains_and_a_second_signal_exits_at_once() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("sig"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    // Offset 5 hangs (far longer than the test) so the second run has a request in flight.
    let app = App::start(behaviour(|r| {
        let delay = if r.offset() == 5 {
            Duration::from_secs(3600)
        } else {
            Duration::ZERO
        };
        Reply::ok().delayed(delay)
    }))
    .await;
    kafka
        .produce(
            &topic,
            &(0..5)
                .map(|i| Rec::new(0, None, i.to_string()))
                .collect::<Vec<_>>(),
        )
        .await;
    let cfg = config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["commitInterval"] = json!("1h");
        // Longer than the test waits (and within max.poll.interval.ms, as the config requires).
        c["delivery"]["drainTimeout"] = json!("250s");
        c["log"]["level"] = json!("warn");
    });
    let path = write_config(&cfg);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kcp-sidecar"))
        .env("KCP_CONFIG", &path)
        .spawn()
        .expect("start sidecar");
    let pid = child.id().expect("pid");
    wait_until("five records delivered", || app.delivered().len() == 5).await;
    signal(pid, "TERM");
    let status = child.wait().await.expect("sidecar exits");
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        kafka.committed(&group, &topic, 1).await,
        vec![Some(5)],
        "committed at shutdown"
    );

    kafka
        .produce(
            &topic,
            &(5..6)
                .map(|i| Rec::new(0, None, i.to_string()))
                .collect::<Vec<_>>(),
        )
        .await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kcp-sidecar"))
        .env("KCP_CONFIG", &path)
        .spawn()
        .expect("start sidecar");
    let pid = child.id().expect("pid");
    wait_until("offset 5 in flight", || {
        app.received().iter().any(|r| r.offset() == 5)
    })
    .await;
    signal(pid, "TERM");
    // The first signal drains (for up to an hour); the second must not wait.
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(pid, "INT");
    let status = child.wait().await.expect("sidecar exits");
    assert_eq!(status.code(), Some(130));
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    assert_eq!(
        kafka.committed(&group, &topic, 1).await,
        vec![Some(5)],
        "nothing past the unfinished record"
    );
}
