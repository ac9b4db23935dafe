//! Formats through the whole pipeline (mock Kafka, the registry stand-in, a recording app): what
//! the app receives, which records are dead-lettered for not decoding, and that a registry
//! outage dead-letters nothing.

use kcp_sidecar::demo::RegistryStandIn;
use rdkafka::Message;
use serde_json::{Value, json};

use super::fixtures::{self, framed};
use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, header, unique},
    wait_until, wait_until_async,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_binary_requests_carry_the_records_as_events() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("ce"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    let app = App::start(behaviour(|_| Reply::ok())).await;
    let mut own = Rec::new(0, Some("k2"), r#"{"n":2}"#);
    own.headers = vec![
        ("ce_type".into(), b"com.example.order.paid".to_vec()),
        ("ce_id".into(), b"evt-2".to_vec()),
        ("content-type".into(), b"application/json".to_vec()),
        ("origin".into(), b"web".to_vec()),
    ];
    kafka
        .produce(&topic, &[Rec::new(0, Some("k1"), "one"), own])
        .await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["endpoint"]["format"] = json!("cloudevents-binary");
        c["endpoint"]["cloudEvents"] = json!({"source": "/shop/orders"});
    }));
    wait_until_async("both committed", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(2)]
    })
    .await;
    run.stop().await;
    let got = app.received();
    assert_eq!(got.len(), 2);
    let first = &got[0];
    assert_eq!(first.header("ce-specversion"), Some("1.0"));
    assert_eq!(first.header("ce-id"), Some(format!("{topic}/0/0").as_str()));
    assert_eq!(first.header("ce-source"), Some("/shop/orders"));
    assert_eq!(first.header("ce-type"), Some("io.kafkaproxy.record"));
    assert_eq!(first.header("ce-partitionkey"), Some("k1"));
    assert!(first.header("ce-time").is_some_and(|t| t.ends_with('Z')));
    assert_eq!(
        first.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(&first.body[..], b"one");
    let second = &got[1];
    assert_eq!(
        second.header("ce-id"),
        Some("evt-2"),
        "the record's own attributes win"
    );
    assert_eq!(second.header("ce-type"), Some("com.example.order.paid"));
    assert_eq!(second.header("content-type"), Some("application/json"));
    assert_eq!(second.header("kcp-h-origin"), Some("web"));
    assert_eq!(
        second.header("kcp-h-ce_id"),
        None,
        "used as an attribute, not forwarded"
    );
    assert_eq!(
        second.header("idempotency-key"),
        Some(format!("{topic}/0/1").as_str())
    );
    assert_eq!(&second.body[..], br#"{"n":2}"#);
}

/// Good Avro records reach the app as JSON; a record with an unknown schema id, one not in the
/// wire format and one whose payload is cut short are dead-lettered, each with its reason, and
/// the partition goes on past them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_records_are_dead_lettered_alone_and_the_rest_arrive_as_json() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("avro"), unique("g"));
    let dlq = format!("{topic}-dlq");
    kafka.create_topic(&topic, 1).await;
    kafka.create_topic(&dlq, 1).await;
    let registry = RegistryStandIn::start().await.expect("registry");
    let id = fixtures::register_avro(&registry);
    let app = App::start(behaviour(|_| Reply::ok())).await;
    let mut cut = fixtures::avro_order(id, 99);
    cut.truncate(12);
    let records = vec![
        Rec::new(0, Some("a"), fixtures::avro_order(id, 1)),
        Rec::new(0, Some("b"), framed(id + 100, &[], b"\x02")),
        Rec::new(0, Some("c"), fixtures::avro_order(id, 2)),
        Rec::new(0, Some("d"), r#"{"not":"avro"}"#),
        Rec::new(0, Some("e"), cut),
        Rec::new(0, Some("f"), fixtures::avro_order(id, 3)),
        Rec::new(0, Some("g"), ""),
    ];
    kafka.produce(&topic, &records).await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["kafka"]["schemaRegistry"] = json!({
            "url": registry.url(), "requestTimeout": "5s", "maxSchemas": 10, "errorTtl": "30s"
        });
        c["endpoint"]["decode"] = json!("avro");
    }));
    wait_until_async("all seven finished and committed", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(7)]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(stats.delivered, 4, "three orders and the empty value");
    assert_eq!(stats.dead_lettered, 3);
    // What the operator reports: the commit counts them, each noted as undecodable.
    let commit = kafka.committed_with_metadata(&group, &topic, 1).await;
    let (offset, metadata) = commit[0].clone().expect("committed");
    let progress = kcp_sidecar::progress::Progress::decode(&metadata, offset).expect("ours");
    assert_eq!(progress.dead_lettered, 3);
    assert!(
        progress
            .notes
            .iter()
            .all(|n| n.reason() == "could not be decoded (endpoint.decode)"),
        "{:?}",
        progress.notes
    );

    let got = app.received();
    let ids: Vec<Value> = got
        .iter()
        .filter(|r| !r.body.is_empty())
        .map(|r| {
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert_eq!(r.header("kcp-schema-id"), Some(id.to_string().as_str()));
            let json: Value = serde_json::from_slice(&r.body).expect("json body");
            assert_eq!(json["price"], json!("12.50"));
            json["id"].clone()
        })
        .collect();
    assert_eq!(ids, vec![json!("o-1"), json!("o-2"), json!("o-3")]);
    assert!(
        got.iter()
            .all(|r| r.key() != Some("b") && r.key() != Some("d") && r.key() != Some("e")),
        "undecodable records are never sent"
    );
    let tombstone = got
        .iter()
        .find(|r| r.key() == Some("g"))
        .expect("empty value sent");
    assert!(tombstone.body.is_empty() && tombstone.header("kcp-schema-id").is_none());

    let dead = kafka.read(&dlq, 1, 3).await;
    assert_eq!(dead.len(), 3);
    let reason = |key: &str| {
        let m = dead
            .iter()
            .find(|m| m.key() == Some(key.as_bytes()))
            .unwrap_or_else(|| panic!("record {key} dead-lettered"));
        assert_eq!(
            header(m, "kcp-dlq-attempts").as_deref(),
            Some("1"),
            "no retries wasted"
        );
        header(m, "kcp-dlq-reason").expect("reason")
    };
    let unknown = reason("b");
    assert!(
        unknown.starts_with("cannot decode: ")
            && unknown.contains(&format!("no schema id {}", id + 100)),
        "{unknown}"
    );
    assert!(reason("d").contains("expected the magic byte 0x00"));
    assert!(reason("e").contains(&format!("payload of schema {id}")));
    let original = dead
        .iter()
        .find(|m| m.key() == Some(&b"d"[..]))
        .and_then(|m| m.payload());
    assert_eq!(
        original,
        Some(&br#"{"not":"avro"}"#[..]),
        "the value as consumed"
    );
}

/// While the registry answers 503, records wait: none is delivered, none is dead-lettered, the
/// offset does not move. When it answers again, every record is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_dead_letters_nothing() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("outage"), unique("g"));
    let dlq = format!("{topic}-dlq");
    kafka.create_topic(&topic, 1).await;
    kafka.create_topic(&dlq, 1).await;
    let registry = RegistryStandIn::start().await.expect("registry");
    let id = fixtures::register_avro(&registry);
    registry.set_available(false);
    let app = App::start(behaviour(|_| Reply::ok())).await;
    let records: Vec<Rec> = (1..=4)
        .map(|n| Rec::new(0, Some("k"), fixtures::avro_order(id, n)))
        .collect();
    kafka.produce(&topic, &records).await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["kafka"]["schemaRegistry"] = json!({
            "url": registry.url(), "requestTimeout": "2s", "maxSchemas": 10, "errorTtl": "30s"
        });
        c["endpoint"]["decode"] = json!("avro");
        c["delivery"]["retry"]["maxAttempts"] = json!(1);
    }));
    // Several outage answers: more than maxAttempts would allow if waits counted.
    wait_until(
        "the registry was asked several times, or a record finished",
        || {
            let s = run.snapshot();
            registry.requests() >= 5 || s.delivered + s.dead_lettered + s.skipped > 0
        },
    )
    .await;
    let during = run.snapshot();
    assert_eq!(during.delivered, 0);
    assert_eq!(
        during.dead_lettered + during.skipped,
        0,
        "an outage is not the record's fault"
    );
    assert!(
        during
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("schema registry") && e.contains("503")),
        "{:?}",
        during.last_error
    );
    // Nothing passed: no commit, or one at 0 carrying what is known above it.
    let committed = kafka.committed(&group, &topic, 1).await;
    assert!(
        committed == vec![None] || committed == vec![Some(0)],
        "{committed:?}"
    );
    assert!(app.received().is_empty());

    registry.set_available(true);
    wait_until_async("all four committed", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(4)]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(stats.delivered, 4);
    assert_eq!(stats.dead_lettered, 0);
    assert_eq!(app.received().len(), 4);
}
