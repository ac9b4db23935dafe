//! Rewind, fast-forward and skip end to end: the operation's reconcile against the in-memory
//! API server (`support`), the proxy's own reconcile stopping and restarting its pods, and
//! librdkafka's mock cluster holding the group. The group's consumer before and after is a
//! plain member of the group, as the sidecar is: it commits, leaves, and the next one starts
//! where the group's commits say.

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use kcp_crds::v1alpha1::KafkaConsumerProxyOperation;
use kcp_operator::{
    operations::{
        controller::{OpContext, OpLimits, reconcile as reconcile_op},
        quiesce::HOLD_ANNOTATION,
    },
    reconcile::reconcile,
};
use kube::{
    core::DeserializeGuard,
    runtime::events::{Recorder, Reporter},
};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
    mocking::MockCluster,
    producer::{BaseProducer, BaseRecord, Producer},
};
use serde_json::{Value, json};
use support::*;

const GROUP: &str = "shop.orders";
const OPS: &str = "/apis/kafkaproxy.io/v1alpha1/namespaces/shop/kafkaconsumerproxyoperations";

fn produce(bootstrap: &str, partitions: i32, per_partition: i64) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for p in 0..partitions {
        for i in 0..per_partition {
            let key = format!("k-{p}-{i}");
            let value = format!("value-{p}-{i}");
            producer
                .send(
                    BaseRecord::to("orders")
                        .partition(p)
                        .key(&key)
                        .payload(&value),
                )
                .unwrap();
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

fn member(bootstrap: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        // The mock cluster waits session.timeout.ms after the last member leaves before a new
        // member is given partitions (a real broker: group.initial.rebalance.delay.ms).
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    c.subscribe(&["orders"]).unwrap();
    c
}

/// A member of the group that reads what the group's commits say is next, until `expected`
/// records came or nothing more comes; then commits `commit` (if any) and leaves.
fn consume(bootstrap: &str, expected: usize, commit: &[(i32, i64)]) -> BTreeMap<i32, Vec<i64>> {
    let c = member(bootstrap);
    let mut seen: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let start = Instant::now();
    let mut quiet_since = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                seen.entry(m.partition()).or_default().push(m.offset());
                quiet_since = Instant::now();
            }
            _ if seen.values().map(Vec::len).sum::<usize>() >= expected
                && quiet_since.elapsed() > Duration::from_secs(2)
                && c.assignment().unwrap().count() == 3 =>
            {
                break;
            }
            _ => {}
        }
    }
    if !commit.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in commit {
            tpl.add_partition_offset("orders", *p, Offset::Offset(*o))
                .unwrap();
        }
        c.commit(&tpl, CommitMode::Sync).unwrap();
    }
    c.unsubscribe();
    drop(c);
    seen
}

fn committed(bootstrap: &str) -> Vec<Option<i64>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition("orders", p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(5)).unwrap();
    (0..3)
        .map(
            |p| match got.find_partition("orders", p).unwrap().offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            },
        )
        .collect()
}

struct World {
    _mock: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    bootstrap: String,
    fake: Arc<FakeApi>,
}

/// 3 partitions of 10 records; the group read all and committed 8 on each, then left.
fn world() -> World {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 3, 1).unwrap();
    produce(&bootstrap, 3, 10);
    consume(&bootstrap, 30, &[(0, 8), (1, 8), (2, 8)]);
    assert_eq!(committed(&bootstrap), vec![Some(8), Some(8), Some(8)]);
    let fake = FakeApi::new();
    fake.put(
        KCP_PATH,
        json!({
            "apiVersion": "kafkaproxy.io/v1alpha1", "kind": "KafkaConsumerProxy",
            "metadata": {"name": "orders", "namespace": "shop", "uid": "uid-orders", "generation": 1},
            "spec": {
                "kafka": {"bootstrapServers": bootstrap, "topics": ["orders"]},
                "endpoint": {"url": "http://orders.shop.svc:8080/events"},
                "replicas": 2
            }
        }),
    );
    World {
        _mock: mock,
        bootstrap,
        fake,
    }
}

fn op_context(fake: &Arc<FakeApi>) -> Arc<OpContext> {
    let client = fake.client();
    Arc::new(OpContext {
        client: client.clone(),
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "kafka-consumer-proxy-operator".into(),
                instance: Some("test".into()),
            },
        ),
        limits: OpLimits {
            join_timeout: Duration::from_secs(20),
            call_timeout: Duration::from_secs(5),
            poll: Duration::from_millis(10),
            ..OpLimits::default()
        },
    })
}

fn put_op(fake: &FakeApi, name: &str, spec: Value) {
    fake.put(
        &format!("{OPS}/{name}"),
        json!({
            "apiVersion": "kafkaproxy.io/v1alpha1", "kind": "KafkaConsumerProxyOperation",
            "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}")},
            "spec": spec
        }),
    );
}

fn op(fake: &FakeApi, name: &str) -> Value {
    fake.get(&format!("{OPS}/{name}")).unwrap()
}

/// What the cluster does between reconciles: the proxy's reconcile applies its Deployment,
/// whose pods then all run (or are all gone).
async fn proxy_converges(w: &World) -> Value {
    let lag = StubLag::new(0);
    let (ctx, _) = context(&w.fake, &lag, REFRESH);
    let kcp = || -> Arc<DeserializeGuard<kcp_crds::KafkaConsumerProxy>> {
        Arc::new(serde_json::from_value(w.fake.get(KCP_PATH).unwrap()).unwrap())
    };
    reconcile(kcp(), ctx.clone()).await.unwrap();
    w.fake.mark_deployment_available(DEPLOYMENT_PATH);
    // Again, as the Deployment's change would trigger: the status sees the pods as they are.
    reconcile(kcp(), ctx).await.unwrap();
    w.fake.get(DEPLOYMENT_PATH).unwrap()
}

/// Reconciles the operation (and the proxy between its steps) until it finishes; returns the
/// proxy's Deployment replicas seen on the way and the Ready reasons of the proxy.
async fn run_to_end(w: &World, name: &str) -> (Vec<i64>, Vec<String>) {
    let ctx = op_context(&w.fake);
    let mut replicas = Vec::new();
    let mut reasons = Vec::new();
    for _ in 0..200 {
        let d = proxy_converges(w).await;
        replicas.push(d["spec"]["replicas"].as_i64().unwrap());
        let kcp = w.fake.get(KCP_PATH).unwrap();
        if let Some(c) = kcp["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        {
            reasons.push(c["reason"].as_str().unwrap().to_owned());
        }
        let current: KafkaConsumerProxyOperation =
            serde_json::from_value(op(&w.fake, name)).unwrap();
        if current
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| p.finished())
        {
            let d = proxy_converges(w).await;
            replicas.push(d["spec"]["replicas"].as_i64().unwrap());
            replicas.dedup();
            reasons.dedup();
            return (replicas, reasons);
        }
        reconcile_op(Arc::new(current), ctx.clone()).await.unwrap();
    }
    panic!("operation {name} did not finish: {:#}", op(&w.fake, name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_redelivers_exactly_from_the_offset_asked() {
    let w = world();
    put_op(
        &w.fake,
        "rewind-1",
        json!({"proxy": "orders", "rewind": {"toOffset": 3, "topic": "orders", "partitions": [0, 2]}}),
    );
    let (replicas, reasons) = run_to_end(&w, "rewind-1").await;
    let o = op(&w.fake, "rewind-1");
    assert_eq!(o["status"]["phase"], "Succeeded", "{o:#}");
    assert_eq!(
        o["status"]["moves"],
        json!([
            {"topic": "orders", "partition": 0, "from": 8, "to": 3},
            {"topic": "orders", "partition": 2, "from": 8, "to": 3}
        ])
    );
    assert_eq!(
        replicas,
        vec![2, 0, 2],
        "the pods stop for the change, then come back"
    );
    assert!(
        reasons.contains(&"OperationInProgress".to_owned()),
        "the proxy said why it runs no pod: {reasons:?}"
    );
    let kcp = w.fake.get(KCP_PATH).unwrap();
    assert!(
        kcp["metadata"]["annotations"]
            .get(HOLD_ANNOTATION)
            .is_none(),
        "the hold is released: {kcp:#}"
    );
    assert_eq!(committed(&w.bootstrap), vec![Some(3), Some(8), Some(3)]);
    let again = consume(&w.bootstrap, 7 + 2 + 7, &[]);
    assert_eq!(again[&0], (3..10).collect::<Vec<_>>());
    assert_eq!(again[&1], vec![8, 9]);
    assert_eq!(again[&2], (3..10).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_never_moves_ahead_and_fast_forward_skips_to_the_end() {
    let w = world();
    // Partition 1 is at 8: a rewind "to" 9 leaves it; 0 and 2 move back to 5.
    put_op(
        &w.fake,
        "back",
        json!({"proxy": "orders", "rewind": {"toOffset": 5, "topic": "orders", "partitions": [0, 2]}}),
    );
    run_to_end(&w, "back").await;
    put_op(
        &w.fake,
        "not-ahead",
        json!({"proxy": "orders", "rewind": {"toOffset": 9, "topic": "orders", "partitions": [0, 1, 2]}}),
    );
    run_to_end(&w, "not-ahead").await;
    let o = op(&w.fake, "not-ahead");
    assert_eq!(o["status"]["phase"], "Succeeded");
    assert!(o["status"]["moves"].is_null(), "{o:#}");
    assert!(
        o["status"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing changed"),
        "{o:#}"
    );
    assert_eq!(committed(&w.bootstrap), vec![Some(5), Some(8), Some(5)]);

    put_op(
        &w.fake,
        "ahead",
        json!({"proxy": "orders", "fastForward": {"toLatest": true}}),
    );
    run_to_end(&w, "ahead").await;
    assert_eq!(committed(&w.bootstrap), vec![Some(10), Some(10), Some(10)]);
    assert!(
        consume(&w.bootstrap, 0, &[]).is_empty(),
        "nothing left to deliver"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_moves_past_one_record_and_records_it() {
    let w = world();
    put_op(
        &w.fake,
        "skip-1",
        json!({"proxy": "orders", "skip": {"topic": "orders", "partition": 1, "offset": 8, "reason": "poison pill, INC-42"}}),
    );
    run_to_end(&w, "skip-1").await;
    let o = op(&w.fake, "skip-1");
    assert_eq!(o["status"]["phase"], "Succeeded", "{o:#}");
    assert_eq!(
        o["status"]["skipped"],
        json!({"topic": "orders", "partition": 1, "offset": 8, "key": "k-1-8",
               "valueBytes": 9, "reason": "poison pill, INC-42",
               "timestamp": o["status"]["skipped"]["timestamp"]})
    );
    assert!(o["status"]["skipped"]["timestamp"].as_i64().unwrap() > 0);
    assert_eq!(committed(&w.bootstrap), vec![Some(8), Some(9), Some(8)]);
    let events = w.fake.take_calls();
    assert!(
        events.iter().any(|c| c.method == "POST"
            && c.path == EVENTS_PATH
            && String::from_utf8_lossy(&c.raw_body).contains("skipped orders/1 offset 8")),
        "an Event says what was skipped"
    );
    let again = consume(&w.bootstrap, 2 + 1 + 2, &[]);
    assert_eq!(
        again[&1],
        vec![9],
        "only the skipped record is not delivered"
    );
    assert_eq!(again[&0], vec![8, 9]);

    // Skipping a record the group is not at would skip others too: refused, nothing changes.
    put_op(
        &w.fake,
        "skip-2",
        json!({"proxy": "orders", "skip": {"topic": "orders", "partition": 0, "offset": 9}}),
    );
    run_to_end(&w, "skip-2").await;
    let o = op(&w.fake, "skip-2");
    assert_eq!(o["status"]["phase"], "Failed");
    let message = o["status"]["message"].as_str().unwrap();
    assert!(message.contains("skip offset 8 first"), "{message}");
    assert_eq!(committed(&w.bootstrap), vec![Some(8), Some(9), Some(8)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_still_in_the_group_keeps_the_offsets_unchanged() {
    let w = world();
    // A pod that has not left: a member polling in the group.
    let stop = Arc::new(AtomicBool::new(false));
    let joined = Arc::new(AtomicBool::new(false));
    let stay = {
        let (stop, joined, bootstrap) = (stop.clone(), joined.clone(), w.bootstrap.clone());
        std::thread::spawn(move || {
            let c = member(&bootstrap);
            while !stop.load(Ordering::Relaxed) {
                let _ = c.poll(Duration::from_millis(100));
                if c.assignment().unwrap().count() == 3 {
                    joined.store(true, Ordering::Relaxed);
                }
            }
            c.unsubscribe();
        })
    };
    let start = Instant::now();
    while !joined.load(Ordering::Relaxed) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the member never joined"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    put_op(
        &w.fake,
        "busy",
        json!({"proxy": "orders", "rewind": {"toEarliest": true}}),
    );
    let ctx = op_context(&w.fake);
    // Two steps: the hold, then one try to join. (More tries are not this test's point: the
    // mock cluster drops a member that is slow to rejoin sooner than a broker does, after its
    // session timeout instead of max.poll.interval.ms.)
    let mut messages = Vec::new();
    for _ in 0..2 {
        proxy_converges(&w).await;
        let current: KafkaConsumerProxyOperation =
            serde_json::from_value(op(&w.fake, "busy")).unwrap();
        reconcile_op(Arc::new(current), ctx.clone()).await.unwrap();
        messages.push(
            op(&w.fake, "busy")["status"]["message"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert!(
        messages
            .iter()
            .any(|m| m.contains("still has other members")),
        "{messages:#?}"
    );
    assert_eq!(op(&w.fake, "busy")["status"]["phase"], "Quiescing");
    assert_eq!(committed(&w.bootstrap), vec![Some(8), Some(8), Some(8)]);

    stop.store(true, Ordering::Relaxed);
    stay.join().unwrap();
    run_to_end(&w, "busy").await;
    assert_eq!(op(&w.fake, "busy")["status"]["phase"], "Succeeded");
    assert_eq!(committed(&w.bootstrap), vec![Some(0), Some(0), Some(0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_offset_change_at_a_time_and_a_missing_proxy_fails() {
    let w = world();
    put_op(
        &w.fake,
        "first",
        json!({"proxy": "orders", "rewind": {"toEarliest": true}}),
    );
    put_op(
        &w.fake,
        "second",
        json!({"proxy": "orders", "fastForward": {"toLatest": true}}),
    );
    let ctx = op_context(&w.fake);
    let step = |name: &'static str| {
        let (fake, ctx) = (w.fake.clone(), ctx.clone());
        async move {
            let current: KafkaConsumerProxyOperation =
                serde_json::from_value(op(&fake, name)).unwrap();
            reconcile_op(Arc::new(current), ctx).await.unwrap();
            op(&fake, name)["status"].clone()
        }
    };
    assert_eq!(step("first").await["phase"], "Quiescing");
    let second = step("second").await;
    assert_eq!(second["phase"], "Pending");
    assert_eq!(
        second["message"],
        "waiting for operation first on orders to finish"
    );
    run_to_end(&w, "first").await;
    run_to_end(&w, "second").await;
    assert_eq!(op(&w.fake, "second")["status"]["phase"], "Succeeded");
    assert_eq!(committed(&w.bootstrap), vec![Some(10), Some(10), Some(10)]);

    put_op(
        &w.fake,
        "lost",
        json!({"proxy": "payments", "rewind": {"toEarliest": true}}),
    );
    let lost = step("lost").await;
    assert_eq!(lost["phase"], "Failed");
    assert!(
        lost["message"]
            .as_str()
            .unwrap()
            .contains("payments does not exist")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_sends_the_dead_letters_back_once_and_guards_loops() {
    let w = world();
    w._mock.create_topic("orders-dlq", 1, 1).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &w.bootstrap)
        .create()
        .unwrap();
    // As the sidecar dead-letters: the original headers, then its own.
    for (i, (count, reason)) in [
        (None, "status 503"),
        (Some("3"), "status 503"),
        (None, "status 422"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "trace",
            value: Some(format!("t{i}").as_str()),
        });
        if let Some(c) = count {
            headers = headers.insert(rdkafka::message::Header {
                key: "kcp-redrive-count",
                value: Some(c),
            });
        }
        for (key, value) in [
            ("kcp-dlq-original-topic", "orders"),
            ("kcp-dlq-original-partition", "2"),
            ("kcp-dlq-original-offset", "4"),
            ("kcp-dlq-group", GROUP),
            ("kcp-dlq-reason", reason),
        ] {
            headers = headers.insert(rdkafka::message::Header {
                key,
                value: Some(value),
            });
        }
        producer
            .send(
                BaseRecord::to("orders-dlq")
                    .key("k")
                    .payload(&format!("dead-{i}"))
                    .headers(headers),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    put_op(
        &w.fake,
        "redrive",
        json!({"proxy": "orders", "redrive": {"reasonContains": "503", "ratePerSecond": 50}}),
    );
    let (replicas, _) = run_to_end(&w, "redrive").await;
    assert_eq!(replicas, vec![2], "a redrive never stops the pods");
    let o = op(&w.fake, "redrive");
    assert_eq!(o["status"]["phase"], "Succeeded", "{o:#}");
    let r = &o["status"]["redrive"];
    assert_eq!(
        (
            r["read"].as_i64(),
            r["redriven"].as_i64(),
            r["filtered"].as_i64(),
            r["loopGuarded"].as_i64()
        ),
        (Some(3), Some(1), Some(1), Some(1)),
        "{o:#}"
    );
    // The one redriven record is on its source partition, once, with its count.
    let again = member(&w.bootstrap);
    let start = Instant::now();
    let mut landed = Vec::new();
    while start.elapsed() < Duration::from_secs(60) && landed.is_empty() {
        if let Some(Ok(m)) = again.poll(Duration::from_millis(100))
            && m.partition() == 2
            && m.offset() >= 10
        {
            use rdkafka::message::Headers;
            let headers: Vec<(String, String)> = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            landed.push((
                m.payload().map(|p| String::from_utf8_lossy(p).into_owned()),
                headers,
            ));
        }
    }
    let (value, headers) = landed
        .first()
        .expect("the redriven record reached orders/2")
        .clone();
    assert_eq!(value.as_deref(), Some("dead-0"));
    assert_eq!(headers[0], ("trace".to_owned(), "t0".to_owned()));
    assert!(
        headers.contains(&("kcp-redrive-count".to_owned(), "1".to_owned())),
        "{headers:?}"
    );
    assert!(
        !headers.iter().any(|(k, _)| k.starts_with("kcp-dlq-")),
        "{headers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_failing_fails_the_operation_after_five_tries_and_lets_the_pods_go() {
    let w = world();
    // Brokers that do not answer: every try fails, and counts.
    w.fake.edit(KCP_PATH, |k| {
        k["spec"]["kafka"]["bootstrapServers"] = json!("127.0.0.1:9");
    });
    put_op(
        &w.fake,
        "doomed",
        json!({"proxy": "orders", "rewind": {"toEarliest": true}}),
    );
    let (replicas, _) = run_to_end(&w, "doomed").await;
    let o = op(&w.fake, "doomed");
    assert_eq!(o["status"]["phase"], "Failed", "{o:#}");
    assert_eq!(o["status"]["failures"], 5, "{o:#}");
    let message = o["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("failed 5 times; create a new operation"),
        "{message}"
    );
    assert_eq!(replicas, vec![2, 0, 2], "the pods come back when it fails");
    let kcp = w.fake.get(KCP_PATH).unwrap();
    assert!(
        kcp["metadata"]["annotations"]
            .get(HOLD_ANNOTATION)
            .is_none(),
        "the hold is released: {kcp:#}"
    );
    assert_eq!(committed(&w.bootstrap), vec![Some(8), Some(8), Some(8)]);
}
