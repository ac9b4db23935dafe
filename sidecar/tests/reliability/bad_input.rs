//! Bad input. Records: empty and null values and keys, binary keys and values, invalid UTF-8
//! header values, odd header names, thousands of headers, huge values: each forwarded unchanged
//! (the sink compares the body digest with the produced value's) or dead-lettered with a
//! reason, never a crash. Configs: arbitrary and malformed JSON fed to the binary: never a
//! panic or a signal, always exit 64 with every problem `SidecarConfig::parse` finds.

use std::{process::Command, time::Duration};

use kcp_crds::SidecarConfig;
use proptest::prelude::*;
use rand::Rng;
use serde_json::{Value, json};

use crate::support::{
    Overflows, Row,
    broker::{Broker, Msg, dead_letter_coordinates},
    check::{Order, check},
    config, pick, report, rng, settle,
    sidecar::Sidecar,
    sink::{Action, Sink, behaviour},
    unique,
};

/// The largest value (of `candidates`, largest first) the broker accepts.
async fn largest_accepted(broker: &Broker, topic: &str, candidates: &[usize]) -> usize {
    let probe = unique("probe");
    broker.create_topic(&probe, 1).await;
    for &n in candidates {
        let p: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &broker.bootstrap)
            .set("message.max.bytes", "8000000")
            .set("message.timeout.ms", "10000")
            .create()
            .expect("probe producer");
        let value = vec![b'x'; n];
        let sent = p
            .send(
                rdkafka::producer::FutureRecord::<(), _>::to(&probe).payload(&value),
                Duration::from_secs(10),
            )
            .await;
        eprintln!(
            "{topic}: probe value of {n} bytes: {:?}",
            sent.as_ref().map_err(|(e, _)| e)
        );
        if sent.is_ok() {
            return n;
        }
    }
    panic!("the broker accepted none of {candidates:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_records_are_forwarded_unchanged_or_dead_lettered() {
    let test = "bad records";
    let (seed, mut rng) = rng(test);
    let broker = Broker::start(1);
    let (topic, group) = (unique("odd"), unique("g"));
    let dlq = format!("{topic}-dlq");
    broker.create_topic(&topic, 1).await;
    broker.create_topic(&dlq, 1).await;
    let huge = largest_accepted(&broker, &topic, &[1_000_000, 900_000]).await;
    let sink = Sink::start(behaviour(|h| {
        if h.poison {
            Action::Status {
                status: 422,
                retry_after: None,
            }
        } else {
            Action::ok()
        }
    }))
    .await;
    let ledger = Default::default();
    let producer = broker.producer(&ledger);
    let binary = |rng: &mut rand::rngs::StdRng, n: usize| -> Vec<u8> {
        (0..n).map(|_| rng.random::<u8>()).collect()
    };
    let m = |key: Option<Vec<u8>>, value: Option<Vec<u8>>| Msg {
        key,
        value,
        ..Msg::default()
    };
    let many_headers: Vec<(String, Option<Vec<u8>>)> = (0..3000)
        .map(|i| (format!("h{i}"), Some(format!("v{i}").into_bytes())))
        .collect();
    let mut poison_huge = vec![b'p'; huge - 16];
    poison_huge.extend_from_slice(b"#poison#");
    let mut msgs = vec![
        m(Some(b"k".to_vec()), Some(vec![])),
        m(Some(b"k".to_vec()), None),
        m(Some(vec![]), Some(b"empty key".to_vec())),
        m(None, Some(b"null key".to_vec())),
        m(None, None),
        m(Some(binary(&mut rng, 64)), Some(binary(&mut rng, 4096))),
        m(Some(vec![0, 0xff, b'\n', b' ']), Some(vec![0; 100])),
        m(
            Some(" edge whitespace ".into()),
            Some("é ü \u{0} \u{7f}".into()),
        ),
        Msg {
            key: Some(b"hdr".to_vec()),
            value: Some(b"invalid utf-8 header values".to_vec()),
            headers: vec![
                ("bad".into(), Some(vec![0xff, 0xfe, 0x00])),
                ("null".into(), None),
                ("not a token".into(), Some(b"v".to_vec())),
                ("é".into(), Some(b"\r\n injected: 1".to_vec())),
                ("".into(), Some(b"empty name".to_vec())),
                ("traceparent".into(), Some(vec![0xc3, 0x28])),
            ],
            ..Msg::default()
        },
        Msg {
            key: Some(b"many".to_vec()),
            value: Some(b"3000 headers".to_vec()),
            headers: many_headers,
            ..Msg::default()
        },
        Msg {
            key: Some(b"bigheader".to_vec()),
            value: Some(b"one 100 KiB header".to_vec()),
            headers: vec![("big".into(), Some(vec![b'a'; 100 * 1024]))],
            ..Msg::default()
        },
        m(Some(b"huge".to_vec()), Some(binary(&mut rng, huge - 1024))),
        Msg {
            key: Some(b"huge-poison".to_vec()),
            value: Some(poison_huge),
            poison: true,
            ..Msg::default()
        },
    ];
    for (i, msg) in msgs.iter_mut().enumerate() {
        msg.seq = i as u64;
    }
    producer.send(&topic, &msgs).await;
    let cfg = config(&broker.bootstrap, &topic, &group, &sink.url(), "partition");
    let mut sidecar = Sidecar::start(&cfg, None);
    let dead = settle(
        &broker,
        &sink,
        &ledger,
        Some((&dlq, 1)),
        Duration::from_secs(60),
    )
    .await;
    assert!(sidecar.is_running(), "{}", sidecar.tail());
    sidecar.stop().await;
    let reasons: Vec<String> = broker
        .read_all(&dlq, 1)
        .await
        .iter()
        .map(|m| dead_letter_coordinates(m).3)
        .collect();
    let produced = ledger.lock().expect("ledger lock").clone();
    let hits = sink.hits();
    let r = check(&produced, &hits, &dead, Order::Partition);
    eprintln!(
        "{test}: seed {seed}: largest value {huge} bytes; {r:?}; dead-letter reasons {reasons:?}"
    );
    report(&Row::of(
        test,
        1,
        &r,
        Overflows::NotRead,
        format!(
            "seed {seed}; largest value the broker took: {huge} bytes; dead-lettered {}",
            r.dead_lettered
        ),
    ));
    r.assert_ok(test);
    assert!(reasons.iter().all(|r| !r.is_empty()), "{reasons:?}");
    let many = hits
        .iter()
        .find(|h| h.key.as_deref() == Some(b"many"))
        .expect("the 3000-header record arrived");
    assert_eq!(
        many.headers
            .get("kcp-headers-dropped")
            .and_then(|v| v.to_str().ok()),
        Some("2936"),
        "64 of 3000 headers forwarded"
    );
}

fn base() -> Value {
    config("127.0.0.1:1", "t", "g", "http://127.0.0.1:1/x", "key")
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "0s",
            "1s",
            "-1s",
            "99999999999h",
            "5xx",
            "key",
            "http://"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z.]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: &[(&str, &str)] = &[
    ("kafka", "bootstrapServers"),
    ("kafka", "topics"),
    ("kafka", "groupId"),
    ("kafka", "initialOffset"),
    ("kafka", "clientConfig"),
    ("kafka", "security"),
    ("endpoint", "url"),
    ("endpoint", "method"),
    ("endpoint", "headers"),
    ("endpoint", "connectTimeout"),
    ("endpoint", "requestTimeout"),
    ("endpoint", "retryOn"),
    ("endpoint", "actionHeader"),
    ("endpoint", "bodyAck"),
    ("delivery", "ordering"),
    ("delivery", "maxInFlight"),
    ("delivery", "guarantee"),
    ("delivery", "commitInterval"),
    ("delivery", "drainTimeout"),
    ("delivery", "retry"),
    ("delivery", "onExhausted"),
    ("delivery", "deadLetterTopic"),
    ("admin", "listen"),
    ("log", "level"),
    ("log", "format"),
];

/// A config text: a valid one with some fields replaced or removed, or arbitrary JSON or text.
fn config_text() -> impl Strategy<Value = String> {
    let mutated = prop::collection::vec(
        (
            prop::sample::select(FIELDS),
            prop::option::of(arbitrary_json()),
        ),
        1..5,
    )
    .prop_map(|edits| {
        let mut v = base();
        for ((section, field), value) in edits {
            match value {
                Some(x) => v[section][field] = x,
                None => {
                    if let Some(o) = v[section].as_object_mut() {
                        o.remove(field);
                    }
                }
            }
        }
        v.to_string()
    });
    prop_oneof![
        6 => mutated,
        1 => arbitrary_json().prop_map(|v| v.to_string()),
        1 => ".{0,40}",
    ]
}

fn run_binary(text: &str) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(unique("kcp-badcfg"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("config.json");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_kcp-sidecar"))
        .arg("--config")
        .arg(&path)
        .env_remove("KCP_CONFIG")
        .env_remove("KCP_POD_NAME")
        .output()
        .expect("run kcp-sidecar");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(pick(48, 400)))]

    /// Every invalid config makes the binary exit 64 listing each problem, never a panic.
    #[test]
    fn invalid_configs_exit_64_with_every_problem(text in config_text()) {
        // A valid config would start a pipeline; only invalid ones are fed to the binary.
        let Err(problems) = SidecarConfig::parse(&text) else {
            return Ok(());
        };
        let (code, stderr) = run_binary(&text);
        prop_assert!(!stderr.contains("panicked"), "panic: {}", stderr);
        prop_assert_eq!(code, Some(64), "stderr: {}", stderr);
        for p in &problems.0 {
            prop_assert!(stderr.contains(p.as_str()), "{:?} not listed in {}", p, stderr);
        }
    }
}

/// The mutation strategy above reaches valid configs too (it is not only producing garbage),
/// and the unmodified base config is valid: the property test above is not vacuous.
#[test]
fn the_config_strategy_produces_invalid_configs() {
    assert!(SidecarConfig::parse(&base().to_string()).is_ok());
    let mut v = base();
    v["delivery"]["maxInFlight"] = json!(0);
    v["endpoint"]["url"] = json!("ftp://x");
    let problems = SidecarConfig::parse(&v.to_string()).expect_err("invalid");
    let (code, stderr) = run_binary(&v.to_string());
    assert_eq!(code, Some(64));
    assert_eq!(problems.0.len(), 2);
    for p in &problems.0 {
        assert!(stderr.contains(p.as_str()), "{p} in {stderr}");
    }
}
