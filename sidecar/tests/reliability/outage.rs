//! Endpoint outages against the real binary: the app behind a proxy answers 502/503/504 to
//! every record for a while, then a misconfiguration answers 404 to every record, then a storm of
//! 429 with `Retry-After`; records keep arriving throughout, and the app refuses some records
//! with 422 all along. `maxAttempts` is 5: without outage detection each phase would dead-letter
//! the records in flight.
//!
//! Asserts: nothing lost; the dead-letter topic holds exactly the records the app refuses (0
//! wrongly dead-lettered); key order of first deliveries; every phase was exercised (the sink
//! answered its status to records that were delivered later).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};

use crate::support::{
    Overflows, Row,
    broker::Broker,
    check::{Order, check},
    config, keyed, pick, report, rng, settle,
    sidecar::Sidecar,
    sink::{Action, Sink, behaviour},
    unique,
};

/// The phases, in order; `Healthy` between them.
const PHASES: [(&str, u8); 3] = [("502/503/504", 1), ("404", 2), ("429 + Retry-After", 3)];

fn answer(mode: u8, poison: bool, d: u64) -> Action {
    let status = |status, retry_after| Action::Status {
        status,
        retry_after,
    };
    match mode {
        1 => status([502, 503, 504][(d % 3) as usize], None),
        2 => status(404, None),
        3 => status(429, Some(1)),
        _ if poison => status(422, None),
        _ => Action::Accept(Duration::from_millis(d % 3)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_behind_a_proxy_dead_letter_nothing_but_refused_records() {
    let test = "endpoint outages";
    let (seed, mut rng) = rng(test);
    let broker = Broker::start(1);
    let (topic, group) = (unique("outage"), unique("g"));
    let dlq = format!("{topic}-dlq");
    broker.create_topic(&topic, 3).await;
    broker.create_topic(&dlq, 1).await;
    let mode = Arc::new(AtomicU8::new(0));
    // How many requests each phase answered with its status.
    let answered: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
    let (m, a) = (Arc::clone(&mode), Arc::clone(&answered));
    let sink = Sink::start(behaviour(move |h| {
        let phase = m.load(SeqCst);
        a[usize::from(phase)].fetch_add(1, SeqCst);
        answer(phase, h.poison, h.digest)
    }))
    .await;
    let ledger = Default::default();
    let producer = broker.producer(&ledger);
    let cfg = config(&broker.bootstrap, &topic, &group, &sink.url(), "key");
    let mut sidecar = Sidecar::start(&cfg, None);
    let rounds = pick(1, 3);
    let mut seqs = Vec::new();
    for round in 0..rounds {
        for (name, phase) in PHASES {
            let msgs = keyed(&mut rng, 16, 100, &mut seqs, |s| s % 29 == 7);
            producer.send(&topic, &msgs).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            mode.store(phase, SeqCst);
            eprintln!("{test}: round {round}: {name} for every record");
            let more = keyed(&mut rng, 16, 50, &mut seqs, |s| s % 29 == 7);
            producer.send(&topic, &more).await;
            tokio::time::sleep(Duration::from_secs(4)).await;
            assert!(sidecar.is_running(), "{}", sidecar.tail());
            mode.store(0, SeqCst);
            eprintln!("{test}: round {round}: fixed");
        }
    }
    let dead = settle(
        &broker,
        &sink,
        &ledger,
        Some((&dlq, 1)),
        Duration::from_secs(120),
    )
    .await;
    sidecar.stop().await;
    let produced = ledger.lock().expect("ledger lock").clone();
    let hits = sink.hits();
    let r = check(&produced, &hits, &dead, Order::Key);
    eprintln!("{test}: seed {seed}: {r:?}");
    report(&Row::of(
        test,
        rounds * PHASES.len(),
        &r,
        Overflows::NotRead,
        format!(
            "seed {seed}; {} requests; dead-lettered {} (all refused with 422)",
            hits.len(),
            r.dead_lettered
        ),
    ));
    r.assert_ok(test);
    let poison = produced.values().filter(|p| p.poison).count();
    assert_eq!(
        r.dead_lettered, poison,
        "exactly the refused records: 0 wrongly dead-lettered"
    );
    // Each phase was exercised; nothing lost (above) means its records were delivered later.
    for (name, phase) in PHASES {
        let n = answered[usize::from(phase)].load(SeqCst);
        assert!(n > 0, "{name}: never answered");
        eprintln!("{test}: {name}: {n} requests answered");
    }
}
