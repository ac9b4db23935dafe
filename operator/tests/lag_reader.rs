//! The lag reader with real Kafka clients: one cluster that accepts connections and never
//! answers (a blackholed broker) does not hold up the reconcile, or the lag read, of a resource
//! on a healthy cluster (librdkafka's mock cluster). Asserted by order, not by time: the healthy
//! resource's status gets fresh figures while all 100 reads of the dead cluster are still
//! blocked in librdkafka.

#![allow(clippy::unwrap_used)]

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use kcp_crds::{KafkaConsumerProxy, config::SecurityProtocol};
use kcp_operator::{
    lag::{
        Credentials, KafkaLagSource, KafkaLimits, LagObservation, LagReader, LagTarget, ReadLimits,
        ResourceKey,
    },
    metrics::Metrics,
    reconcile::{
        Context,
        build::BuildOptions,
        reconcile,
        testing::{UID, url_spec},
    },
};
use kube::{
    core::DeserializeGuard,
    runtime::events::{Recorder, Reporter},
};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
    mocking::MockCluster,
    producer::{BaseProducer, BaseRecord, Producer},
};
use serde_json::json;
use support::*;

/// Longer than the test: the dead cluster's reads never end while it runs.
const DEAD_DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn a_healthy_resource_is_not_held_up_by_100_on_an_unreachable_cluster() {
    let runtime = Background(Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    ));
    runtime.0.as_ref().unwrap().block_on(scenario());
}

/// A runtime that, dropped (also when the test fails), does not wait for its blocking tasks:
/// the dead cluster's reads are still blocked in librdkafka.
struct Background(Option<tokio::runtime::Runtime>);

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A TCP listener on loopback that accepts every connection and never answers.
async fn blackhole() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (address, accepted)
}

/// A cluster with `orders` (one partition, 5 records), where group `shop.orders` committed 2.
fn healthy_cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("orders", 1, 1).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for _ in 0..5 {
        producer
            .send(
                BaseRecord::<str, str>::to("orders")
                    .partition(0)
                    .payload("x"),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "shop.orders")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("orders", 0, Offset::Offset(2))
        .unwrap();
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
    mock
}

fn current(fake: &FakeApi) -> Arc<DeserializeGuard<KafkaConsumerProxy>> {
    Arc::new(serde_json::from_value(fake.get(KCP_PATH).unwrap()).unwrap())
}

async fn scenario() {
    let (dead, accepted) = blackhole().await;
    let mock = healthy_cluster();

    let fake = FakeApi::new();
    let mut spec = url_spec();
    spec["kafka"]["bootstrapServers"] = json!(mock.bootstrap_servers());
    fake.put(
        KCP_PATH,
        json!({
            "apiVersion": "kafkaproxy.io/v1alpha1", "kind": "KafkaConsumerProxy",
            "metadata": {"name": "orders", "namespace": "shop", "uid": UID, "generation": 1},
            "spec": spec
        }),
    );
    let metrics = Arc::new(Metrics::default());
    let source = KafkaLagSource::new(KafkaLimits {
        call_timeout: DEAD_DEADLINE,
        ..KafkaLimits::default()
    });
    let limits = ReadLimits {
        deadline: DEAD_DEADLINE,
        per_cluster: 4,
        ..ReadLimits::default()
    };
    let (reader, mut updates) =
        LagReader::new(Arc::new(source.clone()), REFRESH, limits, metrics.clone());
    let client = fake.client();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "kafka-consumer-proxy-operator".into(),
            instance: None,
        },
    );
    let build = BuildOptions {
        default_sidecar_image: "kcp-sidecar:test".into(),
    };
    let ctx = Arc::new(Context::new(
        client,
        recorder,
        metrics.clone(),
        reader,
        build,
        REFRESH,
    ));

    // 100 resources on the dead cluster, each with its own group, ask for reads.
    let unreachable = |i: usize| {
        let key = ResourceKey {
            namespace: "shop".into(),
            name: format!("unreachable-{i}"),
            uid: format!("uid-{i}"),
        };
        let target = LagTarget {
            bootstrap_servers: dead.clone(),
            group_id: format!("group-{i}"),
            topics: vec!["orders".into()],
            dead_letter_topics: vec![],
            protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: None,
        };
        ctx.lag.observe(&key, target, Credentials::default())
    };
    for i in 0..100 {
        assert_eq!(unreachable(i), LagObservation::Pending);
    }
    // Every read task has started, and the broker has been reached: those with a slot are stuck
    // in librdkafka calls, not merely queued.
    while metrics.lag_reads_running.get() + metrics.lag_reads_waiting.get() < 100
        || accepted.load(Ordering::SeqCst) == 0
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(metrics.lag_reads_running.get(), 4, "bounded per cluster");
    assert_eq!(metrics.lag_reads_waiting.get(), 96);

    // The healthy resource's reconcile returns at once, before its figures are read...
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    let status = &fake.get(KCP_PATH).unwrap()["status"];
    assert_eq!(status.get("lag"), None, "no figures yet, and not awaited");

    // ...its read runs in a slot of its own cluster and asks for a reconcile, which writes them.
    let first = updates.next().await.unwrap();
    assert_eq!(
        first.name, "orders",
        "the first read to end is the healthy one, not one of the unreachable cluster"
    );
    reconcile(current(&fake), ctx.clone()).await.unwrap();
    let status = fake.get(KCP_PATH).unwrap()["status"].clone();
    assert_eq!(
        status["lag"]["total"], 3,
        "fresh lag from the mock cluster: {status}"
    );
    assert_eq!(status["lag"]["partitionCount"], 1);
    let kafka = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "KafkaReachable")
        .unwrap();
    assert_eq!(kafka["status"], "True");

    // All the while, the 100 reads of the dead cluster are pending, 4 of them in librdkafka.
    for i in 0..100 {
        assert_eq!(unreachable(i), LagObservation::Pending, "unreachable-{i}");
    }
    assert_eq!(metrics.lag_reads_running.get(), 4);
    assert_eq!(metrics.lag_reads_waiting.get(), 96);
    assert_eq!(metrics.lag_probe_failures.get(), 0, "none timed out yet");
    assert_eq!(
        source.cached_clients(),
        3,
        "one client for the dead cluster (shared by its 100 resources), one for the healthy \
         cluster, one for the healthy group's offsets"
    );
}
