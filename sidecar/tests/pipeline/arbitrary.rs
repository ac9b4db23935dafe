//! Arbitrary records through the whole path (raw Kafka batch → mock broker → consumer → lanes →
//! HTTP request → app): bytes everywhere, null and empty keys and values, header names that are
//! not UTF-8 or hold NUL, CR, LF, thousands of headers, and sizes exactly at each limit of
//! `forward::request`. Every record must reach the app (or the dead-letter topic) with its
//! value, key and headers intact or accounted for, and nothing may panic.
//!
//! One pipeline serves every case (joining a group costs seconds); each case is a batch of
//! records produced to the next partition, and waits until the batch is committed. A fixed batch
//! of edge cases runs first; then a small fixed number of generated batches, so the test stays
//! well under a minute on two cores.

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::STANDARD};
use kcp_sidecar::forward::request::{
    MAX_FORWARDED_HEADER_BYTES, MAX_FORWARDED_HEADERS, MAX_KEY_BYTES, MAX_TRACE_HEADER_BYTES,
};
use proptest::{
    collection::vec,
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};

use crate::support::{
    Running,
    app::{App, Received, Reply, behaviour},
    config, init_logging,
    kafka::{TestKafka, unique},
    raw::{self, RawRec},
};

const PARTITIONS: i32 = 2;
/// Generated batches after the edge batch.
const CASES: u32 = 12;

/// A byte that is often one HTTP cares about.
fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => b'a'..=b'z',
        1 => Just(b'\r'),
        1 => Just(b'\n'),
        1 => Just(0u8),
        1 => Just(b' '),
        1 => Just(b'\t'),
        2 => 0x80u8..=0xff,
        2 => any::<u8>(),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(byte(), 0..=max)
}

/// `len` pseudo-random bytes, cheap for large sizes (no per-byte shrinking needed).
fn filled(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sized(len: usize) -> impl Strategy<Value = Vec<u8>> {
    any::<u64>().prop_map(move |seed| filled(len, seed))
}

fn key() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        Just(Some(vec![])),
        bytes(24).prop_map(Some),
        "[ -~]{0,24}".prop_map(|s| Some(s.into_bytes())),
        Just(Some(vec![b'k'; MAX_KEY_BYTES])),
        Just(Some(vec![b'k'; MAX_KEY_BYTES + 1])),
        sized(MAX_KEY_BYTES).prop_map(Some),
        sized(50_000).prop_map(Some),
    ]
}

fn value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        Just(Some(vec![])),
        bytes(64).prop_map(Some),
        sized(40_000).prop_map(Some),
        sized(128 * 1024).prop_map(Some),
    ]
}

fn header_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "[a-zA-Z][a-zA-Z0-9_.-]{0,12}".prop_map(String::into_bytes),
        2 => bytes(16),
        1 => bytes(8).prop_map(|mut b| { b.insert(0, 0xff); b }),
        1 => Just(b"ab\0cd".to_vec()),
        1 => Just(b"traceparent".to_vec()),
        1 => Just(b"TraceState".to_vec()),
        1 => (32_760usize..=32_770).prop_map(|n| {
            let mut name = b"x y".to_vec();
            name.resize(n, b'z');
            name
        }),
    ]
}

fn header_value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        bytes(32).prop_map(Some),
        (MAX_TRACE_HEADER_BYTES - 2..=MAX_TRACE_HEADER_BYTES + 2).prop_map(|n| Some(vec![b'v'; n])),
        sized(2_000).prop_map(Some),
        Just(Some(vec![b'v'; MAX_FORWARDED_HEADER_BYTES])),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(Vec<u8>, Option<Vec<u8>>)>> {
    prop_oneof![
        4 => vec((header_name(), header_value()), 0..6),
        1 => vec(("[a-z]{1,3}".prop_map(String::into_bytes), bytes(4).prop_map(Some)),
            MAX_FORWARDED_HEADERS - 1..=MAX_FORWARDED_HEADERS + 1),
        1 => (1_000usize..3_000).prop_map(|n| {
            (0..n).map(|i| (format!("h{i}").into_bytes(), Some(b"x".to_vec()))).collect()
        }),
    ]
}

fn record() -> impl Strategy<Value = RawRec> {
    (key(), value(), headers()).prop_map(|(key, value, headers)| RawRec {
        key,
        value,
        headers,
    })
}

/// Records exactly at (and just past) each limit of the request builder.
fn edges() -> Vec<RawRec> {
    let rec = |headers: Vec<(Vec<u8>, Option<Vec<u8>>)>| RawRec {
        key: Some(b"edge".to_vec()),
        value: Some(b"v".to_vec()),
        headers,
    };
    // A plain header whose name and value as sent (`kcp-h-a`) are exactly the byte cap.
    let exact = MAX_FORWARDED_HEADER_BYTES - "kcp-h-a".len();
    let mut out = vec![
        rec(vec![(b"a".to_vec(), Some(vec![b'v'; exact]))]),
        rec(vec![(b"a".to_vec(), Some(vec![b'v'; exact + 1]))]),
        rec((0..MAX_FORWARDED_HEADERS)
            .map(|i| (format!("n{i}").into_bytes(), None))
            .collect()),
        rec((0..=MAX_FORWARDED_HEADERS)
            .map(|i| (format!("n{i}").into_bytes(), None))
            .collect()),
        rec(vec![
            (
                b"traceparent".to_vec(),
                Some(vec![b't'; MAX_TRACE_HEADER_BYTES]),
            ),
            (
                b"tracestate".to_vec(),
                Some(vec![b's'; MAX_TRACE_HEADER_BYTES + 1]),
            ),
        ]),
        rec(vec![(
            b"\r\n\0".to_vec(),
            Some(b"\r\nInjected: 1".to_vec()),
        )]),
        RawRec {
            key: Some(vec![b'k'; MAX_KEY_BYTES]),
            value: None,
            headers: vec![],
        },
        RawRec {
            key: Some(vec![b'k'; MAX_KEY_BYTES + 1]),
            value: Some(vec![]),
            headers: vec![],
        },
        RawRec {
            key: None,
            value: None,
            headers: vec![(vec![0xc3, 0x28], None)],
        },
    ];
    // Non-token names of 32,765-32,768 bytes: `kcp-hx-<hex>` would pass http's name limit.
    for n in 32_765..=32_768 {
        let mut name = b"x y".to_vec();
        name.resize(n, b'z');
        out.push(rec(vec![(name, None)]));
    }
    out
}

/// Sends every generated case through one running pipeline.
struct Harness {
    kafka: TestKafka,
    topic: String,
    group: String,
    app: App,
    run: Running,
    /// Records produced so far per partition (= the next offset).
    produced: Vec<i64>,
    rt: tokio::runtime::Runtime,
    dead_lettered: u64,
}

impl Harness {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let kafka = TestKafka::start(1);
        let (topic, group) = (unique("arbitrary"), unique("g"));
        let (app, run) = rt.block_on(async {
            kafka.create_topic(&topic, PARTITIONS).await;
            kafka.create_topic(&format!("{topic}-dlq"), 1).await;
            let app = App::start(behaviour(|_| Reply::ok())).await;
            let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |_| {}));
            (app, run)
        });
        Self {
            kafka,
            topic,
            group,
            app,
            run,
            produced: vec![0; PARTITIONS as usize],
            rt,
            dead_lettered: 0,
        }
    }

    /// Produces `batch` to `partition`, waits until it is committed, and checks each record.
    fn check(&mut self, partition: i32, batch: Vec<RawRec>) -> Result<(), TestCaseError> {
        let first = self.produced[partition as usize];
        let end = first + batch.len() as i64;
        let (kafka, topic, group) = (&self.kafka, &self.topic, &self.group);
        let run = &self.run;
        self.rt.block_on(async {
            raw::produce(&kafka.bootstrap, topic, partition, batch.clone()).await;
            let mut want = vec![None; PARTITIONS as usize];
            for (p, n) in self.produced.iter().enumerate() {
                want[p] = (*n > 0).then_some(*n);
            }
            want[partition as usize] = Some(end);
            crate::support::wait_until_async("the batch committed", || async {
                assert!(!run.is_finished(), "the pipeline stopped");
                kafka.committed(group, topic, PARTITIONS).await == want
            })
            .await;
        });
        self.produced[partition as usize] = end;
        let stats = self.run.snapshot();
        prop_assert_eq!(stats.lane_panics, 0, "a lane panicked");
        prop_assert_eq!(stats.broken, None);
        let received: HashMap<i64, Received> = self
            .app
            .received()
            .into_iter()
            .filter(|r| r.partition() == partition && (200..300).contains(&r.status))
            .map(|r| (r.offset(), r))
            .collect();
        for (i, rec) in batch.iter().enumerate() {
            let offset = first + i as i64;
            match received.get(&offset) {
                Some(r) => check_request(r, rec)
                    .map_err(|e| TestCaseError::fail(format!("{partition}/{offset}: {e}")))?,
                // Refused by the app's HTTP server (a 4xx): it must be in the dead-letter topic.
                None => self.dead_lettered += 1,
            }
        }
        prop_assert_eq!(
            stats.dead_lettered,
            self.dead_lettered,
            "every record not delivered is dead-lettered"
        );
        Ok(())
    }
}

/// The request carries the record's value, key and headers, or says what it left out.
fn check_request(r: &Received, rec: &RawRec) -> Result<(), String> {
    let h = |name: &str| r.headers.get(name).map(|v| v.as_bytes().to_vec());
    for (name, value) in &r.headers {
        if !value.as_bytes().is_ascii() {
            return Err(format!("{name}: non-ASCII value"));
        }
    }
    if r.body[..] != *rec.value.as_deref().unwrap_or_default() {
        return Err("body differs from the value".into());
    }
    match &rec.key {
        None => {
            if h("kcp-key").is_some()
                || h("kcp-key-base64").is_some()
                || h("kcp-key-dropped").is_some()
            {
                return Err("a null key was sent".into());
            }
        }
        Some(k) if k.len() > MAX_KEY_BYTES => {
            if h("kcp-key-dropped") != Some(k.len().to_string().into_bytes()) {
                return Err("an oversized key is not reported".into());
            }
        }
        Some(k) => {
            let got = match (h("kcp-key"), h("kcp-key-base64")) {
                (Some(plain), None) => plain,
                (None, Some(b64)) => STANDARD.decode(b64).map_err(|e| e.to_string())?,
                other => return Err(format!("key headers {other:?}")),
            };
            if got != *k {
                return Err("key differs".into());
            }
        }
    }

    // What rdkafka can read of each header: its name up to the first NUL, when UTF-8.
    let mut unreadable = 0;
    let mut expected: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for (name, value) in &rec.headers {
        let name = name.split(|b| *b == 0).next().unwrap_or_default();
        if std::str::from_utf8(name).is_err() {
            unreadable += 1;
            continue;
        }
        let token =
            !name.is_empty() && http::HeaderName::from_bytes(&[b"kcp-h-", name].concat()).is_ok();
        let name = if token {
            name.to_ascii_lowercase()
        } else {
            name.to_vec()
        };
        expected.push((name, value.clone().unwrap_or_default()));
    }
    let got_unreadable = h("kcp-headers-unreadable")
        .map_or(Ok(0), |v| String::from_utf8_lossy(&v).parse::<usize>())
        .map_err(|e| e.to_string())?;
    if got_unreadable != unreadable {
        return Err(format!(
            "unreadable: {got_unreadable}, expected {unreadable}"
        ));
    }
    let dropped = h("kcp-headers-dropped")
        .map_or(Ok(0), |v| String::from_utf8_lossy(&v).parse::<usize>())
        .map_err(|e| e.to_string())?;
    let mut forwarded = Vec::new();
    for (name, value) in &r.headers {
        let n = name.as_str();
        let v = value.as_bytes();
        let pair = if let Some(rest) = n.strip_prefix("kcp-h-") {
            (rest.as_bytes().to_vec(), v.to_vec())
        } else if let Some(rest) = n.strip_prefix("kcp-hb-") {
            (
                rest.as_bytes().to_vec(),
                STANDARD.decode(v).map_err(|e| e.to_string())?,
            )
        } else if let Some(hex) = n.strip_prefix("kcp-hx-") {
            let name = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|e| e.to_string())?;
            (name, STANDARD.decode(v).map_err(|e| e.to_string())?)
        } else if n == "traceparent" || n == "tracestate" {
            (n.as_bytes().to_vec(), v.to_vec())
        } else {
            continue;
        };
        forwarded.push(pair);
    }
    if forwarded.len() + dropped != expected.len() {
        return Err(format!(
            "{} forwarded + {dropped} dropped != {} readable headers",
            forwarded.len(),
            expected.len()
        ));
    }
    let wire: usize = r
        .headers
        .iter()
        .filter(|(n, _)| {
            ["kcp-h-", "kcp-hb-", "kcp-hx-"]
                .iter()
                .any(|p| n.as_str().starts_with(p))
        })
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if wire > MAX_FORWARDED_HEADER_BYTES {
        return Err(format!("{wire} bytes of forwarded headers"));
    }
    for pair in forwarded {
        // Trace headers match whatever case the Kafka name had.
        let at = expected
            .iter()
            .position(|e| e.0.eq_ignore_ascii_case(&pair.0) && e.1 == pair.1)
            .ok_or_else(|| {
                format!(
                    "forwarded header {:?} is not one of the record's",
                    String::from_utf8_lossy(&pair.0)
                )
            })?;
        expected.swap_remove(at);
    }
    Ok(())
}

#[test]
fn arbitrary_records_are_all_delivered_and_nothing_panics() {
    init_logging();
    let mut harness = Harness::start();
    harness
        .check(0, edges())
        .unwrap_or_else(|e| panic!("edge records: {e}"));
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        // Every case is a real batch through the pipeline: report the failing one as is.
        max_shrink_iters: 0,
        failure_persistence: None,
        ..Config::default()
    });
    // `run` takes an `Fn`: the harness and the partition turn are cells.
    let harness = std::cell::RefCell::new(harness);
    let partition = std::cell::Cell::new(0);
    let result = runner.run(&vec(record(), 1..5), |batch| {
        partition.set((partition.get() + 1) % PARTITIONS);
        harness.borrow_mut().check(partition.get(), batch)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Stopped while the broker still runs (the harness, and its mock cluster, live until the end).
    let h = harness.into_inner();
    let stats = h.rt.block_on(h.run.stop());
    assert_eq!(stats.lane_panics, 0);
}
