//! Redrive against librdkafka's mock cluster (in-process brokers on 127.0.0.1): dead letters
//! written as the sidecar writes them, planned and stepped through, and what lands back on the
//! source topic: exactly the selected records, once each, in their original partition, with
//! their original headers; at the spec's rate and within `maxRecords`; resumed from a saved
//! progress without repeating or skipping beyond one lost step; not past the end fixed by the
//! plan; and not at all when the broker refuses the produce.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kcp_crds::v1alpha1::{RedrivePosition, RedriveProgress, RedriveSpec};
use kcp_operator::operations::redrive::{
    self, Owner, REDRIVE_COUNT_HEADER, REDRIVEN_FROM_HEADER, RedriveError, StepOutcome, StepState,
};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::{Header, Headers, OwnedHeaders},
    mocking::MockCluster,
    producer::{BaseProducer, BaseRecord, Producer},
    types::{RDKafkaApiKey, RDKafkaRespErr},
};

type Headers_ = Vec<(String, Option<Vec<u8>>)>;

const GROUP: &str = "shop.orders";
const TIMEOUT: Duration = Duration::from_secs(10);

fn h(name: &str, value: &str) -> (String, Option<Vec<u8>>) {
    (name.to_owned(), Some(value.as_bytes().to_vec()))
}

fn base(bootstrap: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap);
    cfg
}

fn owner() -> Owner {
    Owner {
        group: GROUP.into(),
        source_topics: vec!["orders".into()],
    }
}

/// A record as the sidecar dead-letters it.
struct Letter {
    topic: &'static str,
    partition: i32,
    reason: &'static str,
    group: &'static str,
    /// The original record's headers.
    headers: Headers_,
    key: Option<String>,
    value: Option<String>,
}

fn letter(topic: &'static str, partition: i32, reason: &'static str, name: &str) -> Letter {
    Letter {
        topic,
        partition,
        reason,
        group: GROUP,
        headers: vec![h("trace", name)],
        key: Some(format!("k-{name}")),
        value: Some(format!("v-{name}")),
    }
}

/// Produces `letters` to `orders-dlq`/`dlq_partition`, with the sidecar's `kcp-dlq-*` headers
/// after the original ones.
fn dead_letter(bootstrap: &str, dlq_partition: i32, letters: &[Letter]) {
    let producer: BaseProducer = base(bootstrap).create().unwrap();
    send(&producer, dlq_partition, letters);
    producer.flush(TIMEOUT).unwrap();
}

fn send(producer: &BaseProducer, dlq_partition: i32, letters: &[Letter]) {
    for (i, l) in letters.iter().enumerate() {
        let mut all = l.headers.clone();
        all.extend([
            h("kcp-dlq-original-topic", l.topic),
            h("kcp-dlq-original-partition", &l.partition.to_string()),
            h("kcp-dlq-original-offset", &(100 + i).to_string()),
            h("kcp-dlq-original-timestamp", "1000"),
            h("kcp-dlq-attempts", "5"),
            h("kcp-dlq-last-status", "503"),
            h("kcp-dlq-first-failure", "4000"),
            h("kcp-dlq-last-failure", "5000"),
            h("kcp-dlq-group", l.group),
            h("kcp-dlq-reason", l.reason),
        ]);
        let mut headers = OwnedHeaders::new();
        for (key, value) in &all {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let mut record = BaseRecord::<str, str>::to("orders-dlq")
            .partition(dlq_partition)
            .headers(headers);
        if let Some(k) = &l.key {
            record = record.key(k);
        }
        if let Some(v) = &l.value {
            record = record.payload(v);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
}

/// A record read back from the source topic (values as text, for readable failures).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Landed {
    partition: i32,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<(String, Option<String>)>,
}

/// `(name, value)` as the text header `read_all` gives back.
fn t(name: &str, value: &str) -> (String, Option<String>) {
    (name.to_owned(), Some(value.to_owned()))
}

/// Every record of `topic` (partitions `0..partitions`), each partition in offset order.
fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Landed> {
    let consumer: BaseConsumer = base(bootstrap)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut expected = 0;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, TIMEOUT).unwrap();
        expected += high - low;
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let give_up = Instant::now() + TIMEOUT;
    while i64::try_from(out.len()).unwrap() < expected {
        assert!(Instant::now() < give_up, "read {} of {expected}", out.len());
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.unwrap();
        let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
        out.push(Landed {
            partition: m.partition(),
            key: text(m.key()),
            value: text(m.payload()),
            headers: m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_owned(), text(h.value)))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    out
}

/// Steps from `progress` until the redrive is finished (at most 50 steps).
fn step_until_finished(
    bootstrap: &str,
    spec: &RedriveSpec,
    progress: &mut RedriveProgress,
    per_step: usize,
) -> Vec<StepOutcome> {
    let mut outcomes = Vec::new();
    for _ in 0..50 {
        let o = redrive::step(
            &base(bootstrap),
            spec,
            &owner(),
            progress,
            per_step,
            Instant::now() + Duration::from_secs(5),
        )
        .unwrap();
        outcomes.push(o);
        if o.finished() {
            return outcomes;
        }
    }
    panic!("not finished after 50 steps: {progress:?}");
}

fn planned(bootstrap: &str) -> RedriveProgress {
    RedriveProgress {
        partitions: redrive::plan(&base(bootstrap), &["orders-dlq".into()], TIMEOUT).unwrap(),
        ..RedriveProgress::default()
    }
}

fn cluster(
    dlq_partitions: i32,
) -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    String,
) {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 3, 1).unwrap();
    mock.create_topic("orders-dlq", dlq_partitions, 1).unwrap();
    (mock, bootstrap)
}

fn counts(p: &RedriveProgress) -> (i64, i64, i64, i64) {
    (p.read, p.redriven, p.filtered, p.loop_guarded)
}

#[test]
fn redrives_exactly_the_selected_dead_letters_once_each() {
    let (_mock, bootstrap) = cluster(2);
    let guarded = Letter {
        headers: vec![h("trace", "c"), h(REDRIVE_COUNT_HEADER, "3")],
        ..letter("orders", 1, "status 503", "c")
    };
    let null = Letter {
        headers: vec![],
        key: None,
        value: None,
        ..letter("orders", 2, "retries exhausted: status 503", "d")
    };
    let again = Letter {
        headers: vec![
            h("trace", "f"),
            h(REDRIVE_COUNT_HEADER, "1"),
            h(REDRIVEN_FROM_HEADER, "orders-dlq/0/0"),
        ],
        ..letter("orders", 1, "status 503", "f")
    };
    let a = Letter {
        headers: vec![h("trace", "a"), ("empty".to_owned(), None), h("z", "1")],
        ..letter("orders", 0, "retries exhausted: status 503", "a")
    };
    dead_letter(
        &bootstrap,
        0,
        &[a, letter("orders", 1, "status 422", "b"), guarded, null],
    );
    let other_group = Letter {
        group: "billing",
        ..letter("orders", 0, "status 503", "g")
    };
    dead_letter(
        &bootstrap,
        1,
        &[
            letter("payments", 0, "status 503", "e"),
            again,
            other_group,
            letter("orders", 0, "status 503", "h"),
        ],
    );

    let spec = RedriveSpec {
        reason_contains: Some("503".into()),
        max_redrives: 3,
        ..RedriveSpec::default()
    };
    let mut progress = planned(&bootstrap);
    assert_eq!(
        progress.partitions,
        vec![
            RedrivePosition {
                topic: "orders-dlq".into(),
                partition: 0,
                next: 0,
                end: 4
            },
            RedrivePosition {
                topic: "orders-dlq".into(),
                partition: 1,
                next: 0,
                end: 4
            },
        ]
    );
    let outcomes = step_until_finished(&bootstrap, &spec, &mut progress, 100);
    assert_eq!(outcomes.last().unwrap().state, StepState::Done);

    let count = |n: &str| t(REDRIVE_COUNT_HEADER, n);
    let from = |at: &str| t(REDRIVEN_FROM_HEADER, at);
    let some = |s: &str| Some(s.to_owned());
    let mut expected = vec![
        Landed {
            partition: 0,
            key: some("k-a"),
            value: some("v-a"),
            headers: vec![
                t("trace", "a"),
                ("empty".to_owned(), None),
                t("z", "1"),
                count("1"),
                from("orders-dlq/0/0"),
            ],
        },
        Landed {
            partition: 2,
            key: None,
            value: None,
            headers: vec![count("1"), from("orders-dlq/0/3")],
        },
        Landed {
            partition: 1,
            key: some("k-f"),
            value: some("v-f"),
            headers: vec![t("trace", "f"), count("2"), from("orders-dlq/1/1")],
        },
        Landed {
            partition: 0,
            key: some("k-h"),
            value: some("v-h"),
            headers: vec![t("trace", "h"), count("1"), from("orders-dlq/1/3")],
        },
    ];
    let mut landed = read_all(&bootstrap, "orders", 3);
    landed.sort();
    expected.sort();
    assert_eq!(landed, expected);
    assert_eq!(
        counts(&progress),
        (8, 4, 3, 1),
        "read, redriven, filtered (422, payments, billing), loop-guarded"
    );
    assert!(progress.partitions.iter().all(|p| p.next == p.end));

    // Done is done: another step produces nothing.
    let before = progress.clone();
    let again = step_until_finished(&bootstrap, &spec, &mut progress, 100);
    assert_eq!(
        again,
        vec![StepOutcome {
            state: StepState::Done,
            redriven: 0,
            expired: 0
        }]
    );
    assert_eq!(progress, before);
    assert_eq!(read_all(&bootstrap, "orders", 3).len(), 4);
}

/// `n` dead letters of `orders`, reason `status 503`, keys `k-<prefix><i>`, partition i % 3.
fn matching(n: usize, prefix: &str) -> Vec<Letter> {
    (0..n)
        .map(|i| Letter {
            key: Some(format!("k-{prefix}{i:02}")),
            ..letter("orders", i32::try_from(i % 3).unwrap(), "status 503", "x")
        })
        .collect()
}

#[test]
fn a_step_produces_at_most_its_duration_times_the_rate_plus_one() {
    let (_mock, bootstrap) = cluster(1);
    dead_letter(&bootstrap, 0, &matching(30, ""));
    let spec = RedriveSpec {
        rate_per_second: 10,
        ..RedriveSpec::default()
    };
    let mut progress = planned(&bootstrap);
    let mut steps = 0;
    loop {
        steps += 1;
        assert!(steps <= 30, "{progress:?}");
        let o = redrive::step(
            &base(&bootstrap),
            &spec,
            &owner(),
            &mut progress,
            1_000,
            Instant::now() + Duration::from_secs(1),
        )
        .unwrap();
        assert!(o.redriven <= 10 + 1, "a 1 s step at 10/s: {o:?}");
        assert_eq!(
            i64::try_from(read_all(&bootstrap, "orders", 3).len()).unwrap(),
            progress.redriven,
            "every counted record is on the topic"
        );
        assert_eq!(
            progress.partitions[0].next, progress.redriven,
            "all match: the position moved by what was produced"
        );
        if o.finished() {
            break;
        }
    }
    assert_eq!(progress.redriven, 30);
    assert!(steps >= 3, "30 records at 10 per 1 s step: {steps} steps");
}

#[test]
fn max_records_stops_the_redrive() {
    let (_mock, bootstrap) = cluster(1);
    dead_letter(&bootstrap, 0, &matching(10, ""));
    let spec = RedriveSpec {
        rate_per_second: 1_000,
        max_records: Some(4),
        ..RedriveSpec::default()
    };
    let mut progress = planned(&bootstrap);
    let outcomes = step_until_finished(&bootstrap, &spec, &mut progress, 100);
    assert_eq!(outcomes.last().unwrap().state, StepState::LimitReached);
    assert_eq!(counts(&progress), (4, 4, 0, 0));
    assert_eq!(progress.partitions[0].next, 4, "the rest waits");
    let again = step_until_finished(&bootstrap, &spec, &mut progress, 100);
    assert_eq!(
        again,
        vec![StepOutcome {
            state: StepState::LimitReached,
            redriven: 0,
            expired: 0
        }]
    );
    assert_eq!(read_all(&bootstrap, "orders", 3).len(), 4);
}

#[test]
fn a_lost_step_is_repeated_never_skipped() {
    let (_mock, bootstrap) = cluster(2);
    dead_letter(&bootstrap, 0, &matching(6, "a"));
    dead_letter(&bootstrap, 1, &matching(6, "b"));
    let spec = RedriveSpec {
        rate_per_second: 1_000,
        ..RedriveSpec::default()
    };
    let step = |progress: &mut RedriveProgress| {
        redrive::step(
            &base(&bootstrap),
            &spec,
            &owner(),
            progress,
            5,
            Instant::now() + Duration::from_secs(5),
        )
        .unwrap()
    };
    let keys = || -> Vec<String> {
        read_all(&bootstrap, "orders", 3)
            .into_iter()
            .filter_map(|l| l.key)
            .collect()
    };
    // The status as written after each step.
    let mut saved = planned(&bootstrap);
    let first = step(&mut saved);
    assert_eq!(first.state, StepState::More);
    assert_eq!(saved.read, 5, "at most max_records read in a step");
    let after_first = keys();
    // A step whose progress is never written (the operator restarted): its records are on
    // the topic, its progress lost.
    let mut lost = saved.clone();
    let lost_step = step(&mut lost);
    assert!(
        lost_step.redriven > 0 && lost_step.redriven <= 5,
        "{lost_step:?}"
    );
    let mut lost_keys: Vec<String> = keys()
        .into_iter()
        .filter(|k| !after_first.contains(k))
        .collect();
    let rest = step_until_finished(&bootstrap, &spec, &mut saved, 5);
    assert_eq!(rest.last().unwrap().state, StepState::Done);
    assert_eq!(counts(&saved), (12, 12, 0, 0));

    let landed = read_all(&bootstrap, "orders", 3);
    let all = keys();
    let mut twice: Vec<String> = Vec::new();
    for prefix in ["a", "b"] {
        for i in 0..6 {
            let key = format!("k-{prefix}{i:02}");
            match all.iter().filter(|k| **k == key).count() {
                0 => panic!("{key} skipped"),
                1 => {}
                2 => twice.push(key),
                n => panic!("{key} redriven {n} times"),
            }
        }
    }
    lost_keys.sort();
    assert_eq!(
        twice, lost_keys,
        "the lost step's records, and only those, are on the topic twice"
    );
    // Within one source partition, records of one dead-letter partition keep their order
    // (first landings; a repeat comes after them).
    for partition in 0..3 {
        for prefix in ["k-a", "k-b"] {
            let mut firsts: Vec<&String> = Vec::new();
            for l in landed.iter().filter(|l| l.partition == partition) {
                let k = l.key.as_ref().unwrap();
                if k.starts_with(prefix) && !firsts.contains(&k) {
                    firsts.push(k);
                }
            }
            assert!(firsts.is_sorted(), "{partition}: {firsts:?}");
        }
    }
}

#[test]
fn a_record_dead_lettered_after_the_plan_is_left_for_another_redrive() {
    let (_mock, bootstrap) = cluster(1);
    dead_letter(&bootstrap, 0, &matching(2, ""));
    let mut progress = planned(&bootstrap);
    let end = progress.partitions[0].end;
    dead_letter(&bootstrap, 0, &matching(1, "late"));
    let outcomes = step_until_finished(&bootstrap, &RedriveSpec::default(), &mut progress, 100);
    assert_eq!(outcomes.last().unwrap().state, StepState::Done);
    assert_eq!(counts(&progress), (2, 2, 0, 0));
    assert_eq!(progress.partitions[0].next, end);
    let keys: Vec<Option<String>> = read_all(&bootstrap, "orders", 3)
        .into_iter()
        .map(|l| l.key)
        .collect();
    assert!(!keys.contains(&Some("k-late00".into())), "{keys:?}");
    assert_eq!(keys.len(), 2);
    assert_eq!(
        planned(&bootstrap).partitions[0].end,
        end + 1,
        "the next plan has it"
    );
}

#[test]
fn a_missing_dead_letter_topic_plans_nothing_and_the_redrive_succeeds_with_zero() {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 3, 1).unwrap();
    let mut progress = planned(&bootstrap);
    assert!(progress.partitions.is_empty());
    let outcomes = step_until_finished(&bootstrap, &RedriveSpec::default(), &mut progress, 100);
    assert_eq!(outcomes.last().unwrap().state, StepState::Done);
    assert_eq!(counts(&progress), (0, 0, 0, 0));
}

#[test]
fn a_failed_produce_leaves_the_progress_untouched() {
    let (mock, bootstrap) = cluster(1);
    dead_letter(&bootstrap, 0, &matching(3, ""));
    let mut progress = planned(&bootstrap);
    let before = progress.clone();
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 10],
    );
    let err = redrive::step(
        &base(&bootstrap),
        &RedriveSpec::default(),
        &owner(),
        &mut progress,
        100,
        Instant::now() + Duration::from_secs(5),
    )
    .unwrap_err();
    assert!(matches!(err, RedriveError::Produce { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("to orders/"), "{message}");
    assert!(
        message.contains("resumes from the last acknowledged step"),
        "{message}"
    );
    assert_eq!(progress, before, "nothing acknowledged, nothing counted");

    mock.clear_request_errors(RDKafkaApiKey::Produce);
    let outcomes = step_until_finished(&bootstrap, &RedriveSpec::default(), &mut progress, 100);
    assert_eq!(outcomes.last().unwrap().state, StepState::Done);
    assert_eq!(counts(&progress), (3, 3, 0, 0));
    assert_eq!(read_all(&bootstrap, "orders", 3).len(), 3);
}

/// Offsets are not contiguous: the last offsets below a position's end may never reach a
/// consumer (a transaction's commit marker, compacted records, a truncated log). The position
/// is still done within the step, when the consumer reaches the partition's end. (The mock
/// cluster writes no transaction markers and does not compact: the end is set one past the
/// last record instead, as a commit marker there would.)
#[test]
fn offsets_that_never_arrive_before_the_end_do_not_hold_the_redrive() {
    let (_mock, bootstrap) = cluster(1);
    dead_letter(&bootstrap, 0, &matching(2, ""));
    let mut progress = planned(&bootstrap);
    assert_eq!(
        (progress.partitions[0].next, progress.partitions[0].end),
        (0, 2)
    );
    progress.partitions[0].end = 3;
    let o = redrive::step(
        &base(&bootstrap),
        &RedriveSpec::default(),
        &owner(),
        &mut progress,
        100,
        Instant::now() + Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(o.state, StepState::Done, "{progress:?}");
    assert_eq!(counts(&progress), (2, 2, 0, 0));
    assert_eq!(progress.partitions[0].next, 3);
    assert_eq!(read_all(&bootstrap, "orders", 3).len(), 2);
}
