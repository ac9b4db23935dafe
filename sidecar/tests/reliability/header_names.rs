//! Poison header names: records whose Kafka header name is not UTF-8 (rdkafka 0.39 panics
//! reading one), written by the raw producer and interleaved with ordinary records while the
//! binary runs. Asserts: the process stays up and exits cleanly; every record is delivered, in
//! partition order; the app sees `kcp-headers-unreadable: <n>` on exactly the poison records
//! (their readable headers still forwarded); `/metrics` counts every unreadable header.
//!
//! The raw producer writes to the first bootstrap broker, which must lead the partitions: the
//! one-broker mock, or a single-broker Kafka when `KAFKA_BOOTSTRAP_SERVERS` is set.

#[path = "../pipeline/support/raw.rs"]
mod raw;

use std::{collections::BTreeMap, time::Duration};

use rand::Rng;

use crate::support::{
    Overflows, Row,
    broker::{Broker, Msg, Produced},
    check::{Order, check},
    config, digest, pick, report, rng, settle,
    sidecar::Sidecar,
    sink::{Action, Sink, behaviour},
    unique,
};
use raw::RawRec;

const PARTITIONS: i32 = 2;

/// Header names that are not UTF-8: a lone continuation byte, an invalid lead byte, a
/// truncated sequence, an overlong encoding.
const POISON_NAMES: [&[u8]; 4] = [b"\x80", b"\xff\xfebad", b"trace\xe2\x82", b"\xc0\xaf"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_header_names_are_delivered_and_counted() {
    let test = "poison header names";
    let (seed, mut rng) = rng(test);
    let broker = Broker::start(1);
    let (topic, group) = (unique("hname"), unique("g"));
    broker.create_topic(&topic, PARTITIONS).await;
    let sink = Sink::start(behaviour(|_| Action::ok())).await;
    let ledger = Default::default();
    let producer = broker.producer(&ledger);
    let cfg = config(&broker.bootstrap, &topic, &group, &sink.url(), "partition");
    let mut sidecar = Sidecar::start(&cfg, None);
    // (partition, offset) -> unreadable header names the record carries.
    let mut unreadable: BTreeMap<(i32, i64), usize> = BTreeMap::new();
    let rounds = pick(3, 10);
    let mut seq = 0;
    for round in 0..rounds {
        let normal: Vec<Msg> = (0..30)
            .map(|i| {
                seq += 1;
                Msg {
                    key: Some(format!("k{}", rng.random_range(0..8)).into_bytes()),
                    value: Some(format!("normal#{round}#{i}").into_bytes()),
                    headers: vec![("ok".into(), Some(b"1".to_vec()))],
                    seq,
                    poison: false,
                }
            })
            .collect();
        producer.send(&topic, &normal).await;
        for p in 0..PARTITIONS {
            // Raw records: every third one carries 1-2 unreadable header names next to a
            // readable one; the others only readable headers.
            let records: Vec<(RawRec, usize)> = (0..12)
                .map(|i| {
                    let bad = if i % 3 == 0 {
                        rng.random_range(1..=2)
                    } else {
                        0
                    };
                    let mut headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..bad)
                        .map(|_| {
                            let name = POISON_NAMES[rng.random_range(0..POISON_NAMES.len())];
                            (name.to_vec(), Some(b"x".to_vec()))
                        })
                        .collect();
                    headers.push((b"ok".to_vec(), Some(b"1".to_vec())));
                    let rec = RawRec {
                        key: None,
                        value: Some(format!("raw#{round}#{p}#{i}#{bad}").into_bytes()),
                        headers,
                    };
                    (rec, bad)
                })
                .collect();
            // Nothing else writes to the partition meanwhile: the batch lands at its end.
            let base = broker.watermarks(&topic, PARTITIONS).await[p as usize].1;
            raw::produce(
                &broker.bootstrap,
                &topic,
                p,
                records.iter().map(|(r, _)| r.clone()).collect(),
            )
            .await;
            let mut ledger = ledger.lock().expect("ledger lock");
            for (i, (rec, bad)) in records.into_iter().enumerate() {
                let offset = base + i as i64;
                let value = rec.value.unwrap_or_default();
                seq += 1;
                ledger.insert(
                    (p, offset),
                    Produced {
                        key: None,
                        seq,
                        digest: digest(&value),
                        len: value.len(),
                        poison: false,
                    },
                );
                if bad > 0 {
                    unreadable.insert((p, offset), bad);
                }
            }
        }
        assert!(
            sidecar.is_running(),
            "round {round}: sidecar exited\n{}",
            sidecar.tail()
        );
    }
    // The ledger matches what the topic holds: the raw batches landed where expected.
    let ends: Vec<i64> = broker
        .watermarks(&topic, PARTITIONS)
        .await
        .iter()
        .map(|w| w.1)
        .collect();
    let produced = ledger.lock().expect("ledger lock").clone();
    assert_eq!(
        ends.iter().sum::<i64>(),
        produced.len() as i64,
        "precondition: every record of the topic is in the ledger"
    );
    settle(&broker, &sink, &ledger, None, Duration::from_secs(60)).await;
    assert!(sidecar.is_running(), "{}", sidecar.tail());
    let counted = sidecar.metric("kcp_record_headers_unreadable_total").await;
    let hits = sink.hits();
    sidecar.stop().await;
    let committed = broker.committed(&group, &topic, PARTITIONS).await;

    let r = check(&produced, &hits, &[], Order::Partition);
    eprintln!("{test}: seed {seed}: {r:?}");
    let expected: usize = unreadable.values().sum();
    report(&Row::of(
        test,
        rounds,
        &r,
        Overflows::NotRead,
        format!(
            "seed {seed}; {} records with {expected} unreadable header names",
            unreadable.len()
        ),
    ));
    r.assert_ok(test);
    assert_eq!(r.delivered, r.produced, "every record delivered");
    assert_eq!(
        committed,
        ends.iter().map(|e| Some(*e)).collect::<Vec<_>>(),
        "committed to the end"
    );
    assert!(
        !unreadable.is_empty(),
        "precondition: poison records produced"
    );
    for h in hits.iter().filter(|h| h.accepted) {
        let got = h
            .headers
            .get("kcp-headers-unreadable")
            .map(|v| v.to_str().expect("ASCII count"));
        let want = unreadable
            .get(&(h.partition, h.offset))
            .map(|n| n.to_string());
        assert_eq!(
            got,
            want.as_deref(),
            "kcp-headers-unreadable of {}/{}",
            h.partition,
            h.offset
        );
        assert_eq!(
            h.headers.get("kcp-h-ok").map(|v| v.as_bytes()),
            Some(&b"1"[..]),
            "the readable header of {}/{} is forwarded",
            h.partition,
            h.offset
        );
    }
    assert_eq!(
        counted, expected as f64,
        "kcp_record_headers_unreadable_total counts every unreadable header"
    );
}
