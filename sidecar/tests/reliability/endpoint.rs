//! Endpoint faults: 5xx bursts, requests that hang past `requestTimeout`, connections closed
//! without a reply, 429 with `Retry-After`, and the app down for longer than all retries.
//!
//! Asserts: nothing lost; the dead-letter topic holds exactly the records the app refuses
//! (422), none that it would have accepted; key order of first deliveries; each fault was
//! actually exercised (the sink saw it and a later attempt of the same record).

use std::time::Duration;

use serde_json::json;

use crate::support::{
    Overflows, Row,
    broker::Broker,
    check::{Order, check},
    config, keyed, pick, report, rng, settle,
    sidecar::Sidecar,
    sink::{Action, Sink, behaviour},
    unique,
};

/// What the app does with attempt `attempt` of a record with body digest `d`.
fn faulty(poison: bool, d: u64, attempt: u32) -> Action {
    let status = |status, retry_after| Action::Status {
        status,
        retry_after,
    };
    match (poison, d % 10, attempt) {
        (true, _, _) => status(422, None),
        (_, 1, 1..=2) => status(503, None),
        (_, 2, 1) => Action::Hang(Duration::from_millis(1500)),
        (_, 3, 1) => Action::Close,
        (_, 4, 1) => status(429, Some(1)),
        (_, 5, 1) => status(500, None),
        _ => Action::Accept(Duration::from_millis(d % 5)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_faults_lose_nothing_and_dead_letter_only_refused_records() {
    let test = "endpoint faults";
    let (seed, mut rng) = rng(test);
    let broker = Broker::start(1);
    let (topic, group) = (unique("ep"), unique("g"));
    let dlq = format!("{topic}-dlq");
    broker.create_topic(&topic, 3).await;
    broker.create_topic(&dlq, 1).await;
    let sink = Sink::start(behaviour(|h| faulty(h.poison, h.digest, h.attempt))).await;
    let ledger = Default::default();
    let producer = broker.producer(&ledger);
    let mut cfg = config(&broker.bootstrap, &topic, &group, &sink.url(), "key");
    cfg["endpoint"]["requestTimeout"] = json!("500ms");
    let mut sidecar = Sidecar::start(&cfg, None);
    let rounds = pick(2, 10);
    let mut seqs = Vec::new();
    for round in 0..rounds {
        let msgs = keyed(&mut rng, 16, 150, &mut seqs, |s| s % 23 == 5);
        producer.send(&topic, &msgs).await;
        let target = sink.len() + 50;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while sink.len() < target && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The app goes away for longer than all retries take (5 attempts, <= 100 ms apart),
        // while more records arrive.
        sink.down();
        eprintln!("{test}: round {round}: app down");
        let more = keyed(&mut rng, 16, 50, &mut seqs, |s| s % 23 == 5);
        producer.send(&topic, &more).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(sidecar.is_running(), "{}", sidecar.tail());
        sink.up().await;
        eprintln!("{test}: round {round}: app back");
    }
    // A `Retry-After` holds every new request, not only its record's (`concurrency.rs`, the
    // contract of issue 17): each record answered 429 with `Retry-After: 1` may stop the whole
    // stream for a second, so those seconds are part of the time the app asked for. 90 s alone
    // was not enough for the 200 of the long mode (395 records undelivered at the deadline,
    // 2026-11-29).
    let throttled = ledger
        .lock()
        .expect("ledger lock")
        .values()
        .filter(|p| {
            matches!(
                faulty(p.poison, p.digest, 1),
                Action::Status { status: 429, .. }
            )
        })
        .count();
    let budget = Duration::from_secs(90 + throttled as u64);
    let settling = std::time::Instant::now();
    let dead = settle(&broker, &sink, &ledger, Some((&dlq, 1)), budget).await;
    let settled = settling.elapsed();
    sidecar.stop().await;
    let produced = ledger.lock().expect("ledger lock").clone();
    let hits = sink.hits();
    let r = check(&produced, &hits, &dead, Order::Key);
    eprintln!("{test}: seed {seed}: {r:?}");
    report(&Row::of(
        test,
        rounds,
        &r,
        Overflows::NotRead,
        format!(
            "seed {seed}; {} requests; dead-lettered {} (all refused with 422); settled {:.0} s after the last round (budget {} s: 90 + one per record answered 429 with Retry-After: 1)",
            hits.len(),
            r.dead_lettered,
            settled.as_secs_f64(),
            budget.as_secs()
        ),
    ));
    r.assert_ok(test);
    let poison = produced.values().filter(|p| p.poison).count();
    assert_eq!(r.dead_lettered, poison, "exactly the refused records");
    // Every fault happened and was followed by another attempt of the same record.
    for (name, d, first) in [
        ("5xx", 1, 1),
        ("hang", 2, 1),
        ("close", 3, 1),
        ("429", 4, 1),
    ] {
        let faulted = hits
            .iter()
            .find(|h| !h.poison && h.digest % 10 == d && h.attempt == first);
        let h = faulted.unwrap_or_else(|| panic!("no {name} fault was injected"));
        assert!(
            hits.iter()
                .any(|l| (l.partition, l.offset) == (h.partition, h.offset)
                    && l.index > h.index
                    && l.accepted),
            "{name}: {}/{} never retried to success",
            h.partition,
            h.offset
        );
    }
}
