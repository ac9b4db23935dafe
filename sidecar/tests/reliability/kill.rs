//! `kill -9` at random moments during a stream of keyed records, restart, repeat.
//!
//! Asserts: every record accepted by the app or dead-lettered (poison records only); after each
//! restart nothing below the offset committed at the kill is delivered again (so duplicates are
//! only records in flight or finished-but-uncommitted at the kill); per-key (key mode) or
//! per-partition (partition mode) order of first deliveries. Reports duplicates per episode.

use std::{collections::HashSet, time::Duration};

use rand::Rng;

use crate::support::{
    Row,
    broker::Broker,
    check::{Order, check},
    config, keyed, pick, report, rng, settle,
    sidecar::Sidecar,
    sink::{Action, Sink, behaviour},
    unique,
};

const PARTITIONS: i32 = 3;

async fn kill_episodes(ordering: &str, order: Order) {
    let test = format!("kill -9 ({ordering} order)");
    let (seed, mut rng) = rng(&test);
    let broker = Broker::start(1);
    let (topic, group) = (unique("kill"), unique("g"));
    let dlq = format!("{topic}-dlq");
    broker.create_topic(&topic, PARTITIONS).await;
    broker.create_topic(&dlq, 1).await;
    // Accepts after 0-19 ms; a few first attempts get 503; poison records get 422.
    let sink = Sink::start(behaviour(|h| {
        if h.poison {
            Action::Status {
                status: 422,
                retry_after: None,
            }
        } else if h.attempt == 1 && h.digest % 16 == 0 {
            Action::Status {
                status: 503,
                retry_after: None,
            }
        } else {
            Action::Accept(Duration::from_millis(h.digest % 20))
        }
    }))
    .await;
    let ledger = Default::default();
    let producer = broker.producer(&ledger);
    let episodes = pick(2, 20);
    let per_episode = pick(200, 400);
    let cfg = config(&broker.bootstrap, &topic, &group, &sink.url(), ordering);
    let mut seqs = Vec::new();
    let mut sidecar = Sidecar::start(&cfg, Some("kill-pod-0"));
    let mut kills = Vec::new();
    let mut restarted = std::time::Instant::now();
    let mut restart_to_delivery = Vec::new();
    for e in 0..episodes {
        sink.set_epoch(e as u32);
        let msgs = keyed(&mut rng, 24, per_episode, &mut seqs, |s| s % 41 == 7);
        let (p, t) = (producer.clone(), topic.clone());
        let produce = tokio::spawn(async move {
            for chunk in msgs.chunks(10) {
                p.send(&t, chunk).await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !sink.hits().iter().any(|h| h.epoch == e as u32) {
            assert!(
                std::time::Instant::now() < deadline,
                "episode {e}: nothing delivered\n{}",
                sidecar.tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        restart_to_delivery.push(restarted.elapsed().as_millis());
        let after = Duration::from_millis(rng.random_range(0..2000));
        tokio::time::sleep(after).await;
        assert!(
            sidecar.is_running(),
            "episode {e}: sidecar died\n{}",
            sidecar.tail()
        );
        sidecar.assert_no_panic();
        sidecar.kill9();
        produce.await.expect("producer task");
        let committed = broker.committed(&group, &topic, PARTITIONS).await;
        let before: HashSet<(i32, i64)> = sink
            .hits()
            .iter()
            .filter(|h| h.accepted)
            .map(|h| (h.partition, h.offset))
            .collect();
        eprintln!(
            "{test}: episode {e}: killed {after:?} after the first delivery; {} accepted so far; committed {committed:?}",
            before.len()
        );
        kills.push((committed, before));
        sink.set_epoch(e as u32 + 1);
        restarted = std::time::Instant::now();
        sidecar = Sidecar::start(&cfg, Some("kill-pod-0"));
    }
    let dead = settle(
        &broker,
        &sink,
        &ledger,
        Some((&dlq, 1)),
        Duration::from_secs(90),
    )
    .await;
    sidecar.stop().await;
    let hits = sink.hits();
    // After each restart nothing under the offsets committed at the kill comes back, so the
    // duplicates are records in flight or finished-but-uncommitted at the kill.
    let mut dup_per_episode = Vec::new();
    for (e, (committed, before)) in kills.iter().enumerate() {
        let later = hits.iter().filter(|h| h.epoch == e as u32 + 1);
        let mut dups = HashSet::new();
        for h in later {
            if let Some(c) = committed[h.partition as usize] {
                assert!(
                    h.offset >= c,
                    "episode {e}: {}/{} was committed ({c}) before the kill but delivered again",
                    h.partition,
                    h.offset
                );
            }
            if h.accepted && before.contains(&(h.partition, h.offset)) {
                dups.insert((h.partition, h.offset));
            }
        }
        dup_per_episode.push(dups.len());
    }
    let produced = ledger.lock().expect("ledger lock").clone();
    let r = check(&produced, &hits, &dead, order);
    eprintln!("{test}: seed {seed}: {r:?}");
    let max = dup_per_episode.iter().copied().max().unwrap_or(0);
    let mean = dup_per_episode.iter().sum::<usize>() as f64 / episodes as f64;
    report(&Row {
        class: &test,
        episodes,
        records: r.produced,
        lost: r.lost.len(),
        dup_max: max,
        dup_mean: mean,
        notes: format!(
            "seed {seed}; dead-lettered {} (all poison); redelivered per episode {dup_per_episode:?}; start-to-first-delivery ms {restart_to_delivery:?}",
            r.dead_lettered
        ),
    });
    r.assert_ok(&test);
    assert!(
        r.dead_lettered > 0,
        "poison records reach the dead-letter topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_key_order() {
    kill_episodes("key", Order::Key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_partition_order() {
    kill_episodes("partition", Order::Partition).await;
}
