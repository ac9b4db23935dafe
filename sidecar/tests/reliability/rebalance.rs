//! Rebalances during a stream: grow from 1 to 3 sidecars and back, with distinct pod names
//! (the client id; membership is dynamic either way) or none. Asserts: nothing lost, key order of
//! first deliveries; with `KCP_RELIABILITY_STRICT_REPLAYS=1`, no finished record delivered again
//! (a revoke finishes what was answered). Reports the pause each membership change causes
//! (largest gap between arrivals at the sink in the window after it): a figure, not an
//! assertion. Each change starts an epoch of the sink, so in-flight duplicates are per change.

use std::time::{Duration, Instant};

use crate::support::{
    Overflows, Row,
    broker::Broker,
    check::{Order, check},
    config, keyed, largest_gap, pick, report, rng, settle,
    sidecar::Sidecar,
    sink::{Action, Sink, behaviour},
    unique,
};

async fn grow_and_shrink(static_membership: bool) {
    let test = if static_membership {
        "rebalance 1→3→1 (pod names)"
    } else {
        "rebalance 1→3→1 (no pod names)"
    };
    let (seed, mut rng) = rng(test);
    let broker = Broker::start(1);
    let (topic, group) = (unique("rb"), unique("g"));
    broker.create_topic(&topic, 6).await;
    let sink = Sink::start(behaviour(|h| {
        Action::Accept(Duration::from_millis(h.digest % 10))
    }))
    .await;
    let ledger = Default::default();
    let producer = broker.producer(&ledger);
    let cfg = config(&broker.bootstrap, &topic, &group, &sink.url(), "key");
    let pod = |i: usize| static_membership.then(|| format!("rb-pod-{i}"));
    let window = Duration::from_secs(pick(5, 8));
    let cycles = pick(1, 3);
    // A steady stream for the whole test: 20 records every 100 ms.
    let total_windows = 1 + cycles * 4;
    let batches = (total_windows as u64 * window.as_millis() as u64 / 100) as usize;
    let msgs = keyed(&mut rng, 32, batches * 20, &mut Vec::new(), |_| false);
    let (p, t) = (producer.clone(), topic.clone());
    let produce = tokio::spawn(async move {
        for chunk in msgs.chunks(20) {
            p.send(&t, chunk).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut overflows = Overflows::default();
    let mut epoch = 0;
    let mut next_epoch = || {
        epoch += 1;
        sink.set_epoch(epoch);
    };
    let mut first = Sidecar::start(&cfg, pod(0).as_deref());
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.len() == 0 {
        assert!(Instant::now() < deadline, "{}", first.tail());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    // The same figure with no change: fetch batching alone makes gaps this long.
    let mut pauses = vec![format!(
        "baseline: {} ms",
        largest_gap(&sink.hits(), t0, Instant::now()).as_millis()
    )];
    for _ in 0..cycles {
        let mut others = Vec::new();
        for i in 1..=2 {
            next_epoch();
            let t0 = Instant::now();
            others.push(Sidecar::start(&cfg, pod(i).as_deref()));
            tokio::time::sleep(window).await;
            pauses.push(format!(
                "+{i}: {} ms",
                largest_gap(&sink.hits(), t0, Instant::now()).as_millis()
            ));
        }
        for (i, mut s) in others.into_iter().enumerate().rev() {
            next_epoch();
            let t0 = Instant::now();
            overflows.read(&s).await;
            s.stop().await;
            tokio::time::sleep(window).await;
            pauses.push(format!(
                "-{}: {} ms",
                i + 1,
                largest_gap(&sink.hits(), t0, Instant::now()).as_millis()
            ));
        }
    }
    produce.await.expect("producer task");
    settle(&broker, &sink, &ledger, None, Duration::from_secs(90)).await;
    assert!(first.is_running(), "{}", first.tail());
    overflows.read(&first).await;
    first.stop().await;
    let produced = ledger.lock().expect("ledger lock").clone();
    let r = check(&produced, &sink.hits(), &[], Order::Key);
    eprintln!("{test}: seed {seed}: {r:?}; pauses {pauses:?}");
    report(&Row::of(
        test,
        cycles * 4,
        &r,
        overflows,
        format!(
            "seed {seed}; largest arrival gap after each change: {}; finished replays delivered \
             after each change: {}; in-flight duplicates: {}",
            pauses.join(", "),
            per_change(r.finished_replays.iter().map(|p| p.again_epoch)),
            r.inflight_duplicates
        ),
    ));
    r.assert_ok(test);
    r.assert_no_finished_replays_if_strict(test);
}

/// `epochs` counted per change: epoch 0 is the baseline window, epoch `i` the window after the
/// `i`-th membership change (`+1`, `+2`, `-2`, `-1` in each cycle).
fn per_change(epochs: impl Iterator<Item = u32>) -> String {
    let mut n = std::collections::BTreeMap::new();
    for e in epochs {
        *n.entry(e).or_insert(0usize) += 1;
    }
    let name = |e: u32| match e {
        0 => "baseline".to_owned(),
        e => ["+1", "+2", "-2", "-1"][(e as usize - 1) % 4].to_owned(),
    };
    if n.is_empty() {
        return "none".to_owned();
    }
    n.iter()
        .map(|(e, c)| format!("{} {c}", name(*e)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_with_pod_names() {
    grow_and_shrink(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_without_pod_names() {
    grow_and_shrink(false).await;
}
