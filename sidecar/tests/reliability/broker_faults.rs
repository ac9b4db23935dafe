//! Broker faults via `kcp-mock-kafka` while records stream: errors on Fetch, OffsetCommit and
//! Produce (the dead-letter path), a broker going down and coming back, a partition leader
//! moving, added latency. Asserts: the sidecar is never restarted and never exits, nothing is
//! lost, the dead-letter topic holds exactly the refused records, partition order holds.

use std::time::{Duration, Instant};

use crate::support::{
    Overflows, Row,
    broker::Broker,
    check::{Order, check},
    config, keyed, pick, report, rng, settle,
    sidecar::Sidecar,
    sink::{Action, Sink, behaviour},
    unique,
};

const PARTITIONS: i32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_faults_recover_without_restart() {
    let test = "broker faults";
    let broker = Broker::start(2);
    if !broker.is_mock() {
        eprintln!("{test}: skipped: fault injection needs kcp-mock-kafka, not a real broker");
        return;
    }
    let (seed, mut rng) = rng(test);
    let (topic, group) = (unique("bf"), unique("g"));
    let dlq = format!("{topic}-dlq");
    broker.create_topic(&topic, PARTITIONS).await;
    broker.create_topic(&dlq, 1).await;
    let sink = Sink::start(behaviour(|h| {
        if h.poison {
            Action::Status {
                status: 422,
                retry_after: None,
            }
        } else {
            Action::Accept(Duration::from_millis(h.digest % 5))
        }
    }))
    .await;
    let ledger = Default::default();
    let producer = broker.producer(&ledger);
    let cfg = config(&broker.bootstrap, &topic, &group, &sink.url(), "partition");
    let mut sidecar = Sidecar::start(&cfg, None);
    let faults: Vec<(&str, Vec<String>, Vec<String>)> = vec![
        (
            "fetch errors",
            vec![
                "errors Fetch 20 NOT_LEADER_FOR_PARTITION".into(),
                "errors Fetch 5 _TRANSPORT".into(),
            ],
            vec!["clear Fetch".into()],
        ),
        (
            "commit errors",
            vec![
                "errors OffsetCommit 10 REQUEST_TIMED_OUT".into(),
                "errors OffsetCommit 5 NOT_COORDINATOR".into(),
            ],
            vec!["clear OffsetCommit".into()],
        ),
        (
            "produce errors (dead-letter path)",
            vec![
                "errors Produce 10 NOT_ENOUGH_REPLICAS".into(),
                "errors Produce 3 _TRANSPORT".into(),
            ],
            vec!["clear Produce".into()],
        ),
        (
            "latency",
            vec!["rtt -1 300".into()],
            vec!["rtt -1 0".into()],
        ),
        ("broker 1 down", vec!["down 1".into()], vec!["up 1".into()]),
        ("broker 2 down", vec!["down 2".into()], vec!["up 2".into()]),
        (
            "leaders move",
            (0..PARTITIONS)
                .map(|p| format!("leader {topic} {p} {}", 1 + (p + 1) % 2))
                .collect(),
            vec![],
        ),
    ];
    let rounds = pick(1, 5);
    let mut seqs = Vec::new();
    let mut recoveries = Vec::new();
    for round in 0..rounds {
        for (name, inject, clear) in &faults {
            let msgs = keyed(&mut rng, 16, 60, &mut seqs, |s| s % 19 == 3);
            let (p, t) = (producer.clone(), topic.clone());
            let produce = tokio::spawn(async move {
                for chunk in msgs.chunks(10) {
                    p.send(&t, chunk).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
            for c in inject {
                broker.control(c);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            for c in clear {
                broker.control(c);
            }
            produce.await.expect("producer task");
            assert!(
                sidecar.is_running(),
                "{name}: sidecar exited\n{}",
                sidecar.tail()
            );
            // Recovery: everything produced so far is delivered or dead-lettered.
            let t0 = Instant::now();
            settle(
                &broker,
                &sink,
                &ledger,
                Some((&dlq, 1)),
                Duration::from_secs(60),
            )
            .await;
            recoveries.push(format!("{name}: {} ms", t0.elapsed().as_millis()));
            eprintln!("{test}: round {round}: {name}: recovered");
        }
    }
    let dead = settle(
        &broker,
        &sink,
        &ledger,
        Some((&dlq, 1)),
        Duration::from_secs(30),
    )
    .await;
    assert!(sidecar.is_running(), "{}", sidecar.tail());
    sidecar.stop().await;
    let produced = ledger.lock().expect("ledger lock").clone();
    let r = check(&produced, &sink.hits(), &dead, Order::Partition);
    eprintln!("{test}: seed {seed}: {r:?}");
    report(&Row::of(
        test,
        rounds * faults.len(),
        &r,
        Overflows::NotRead,
        format!(
            "seed {seed}; dead-lettered {}; time to drain after each fault: {}",
            r.dead_lettered,
            recoveries.join(", ")
        ),
    ));
    r.assert_ok(test);
    let poison = produced.values().filter(|p| p.poison).count();
    assert_eq!(r.dead_lettered, poison, "exactly the refused records");
}
