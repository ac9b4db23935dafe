//! Operations against a real cluster (kind, k3d, any conformant 1.32+), the operator run
//! in-process: what only a real API server shows about `KafkaConsumerProxyOperation`
//! (admission with its CEL rules, the spec that cannot change, the hold that stops the pods
//! and lets them go), and, when `KAFKA_BOOTSTRAP_SERVERS` names a broker reachable from the
//! test, a rewind and a redrive end to end.
//!
//! Run with `.ci/cluster-tests` (see CONTRIBUTING.md), or:
//! `cargo test -p kcp-operator --test e2e_operations -- --ignored --test-threads=1`

#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
mod e2e_support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kcp_crds::{KafkaConsumerProxy, v1alpha1::KafkaConsumerProxyOperation};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, CommitMode, Consumer},
    producer::{BaseProducer, BaseRecord, Producer},
};
use serde_json::{Value, json};

use e2e_support::{
    Operator, apply, client, condition, delete_all_kcps, eventually, example, fresh_namespace,
    install,
};

fn operation(namespace: &str, name: &str, spec: Value) -> KafkaConsumerProxyOperation {
    serde_json::from_value(json!({
        "apiVersion": "kafkaproxy.io/v1alpha1", "kind": "KafkaConsumerProxyOperation",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec
    }))
    .unwrap()
}

async fn create(
    ops: &Api<KafkaConsumerProxyOperation>,
    op: &KafkaConsumerProxyOperation,
) -> Result<KafkaConsumerProxyOperation, kube::Error> {
    ops.create(&PostParams::default(), op).await
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn operations_are_admitted_and_refused_by_the_api_server() {
    let namespace = "kcp-e2e-operations";
    let client = client().await;
    install(&client).await;
    fresh_namespace(&client, namespace).await;
    let ops: Api<KafkaConsumerProxyOperation> = Api::namespaced(client.clone(), namespace);
    let _ = ops
        .delete_collection(&DeleteParams::default(), &Default::default())
        .await;

    for (spec, expected) in [
        (
            json!({"proxy": "orders"}),
            "set exactly one of rewind, fastForward, skip, redrive",
        ),
        (
            json!({"proxy": "orders", "rewind": {"toOffset": 3}}),
            "toOffset is an offset of particular partitions",
        ),
        (
            json!({"proxy": "orders", "fastForward": {"toEarliest": true}}),
            "fastForward moves ahead",
        ),
        (
            json!({"proxy": "orders", "rewind": {"toTime": "yesterday"}}),
            "toTime",
        ),
    ] {
        let refused = create(&ops, &operation(namespace, "refused", spec.clone())).await;
        match refused {
            Err(kube::Error::Api(s)) => {
                assert!(s.message.contains(expected), "{spec}: {}", s.message)
            }
            other => panic!("{spec} was not refused: {other:?}"),
        }
    }

    let admitted = operation(
        namespace,
        "replay",
        json!({"proxy": "orders", "rewind": {"toTime": "2026-11-29T10:00:00Z", "topic": "orders"}}),
    );
    create(&ops, &admitted).await.unwrap();
    let changed = ops
        .patch(
            "replay",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rewind": {"toTime": "2026-11-29T11:00:00Z"}}})),
        )
        .await;
    match changed {
        Err(kube::Error::Api(s)) => assert!(
            s.message.contains("an operation's spec cannot change"),
            "{}",
            s.message
        ),
        other => panic!("the spec change was admitted: {other:?}"),
    }
    ops.delete("replay", &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn an_operation_stops_the_pods_and_a_deleted_one_lets_them_go() {
    let namespace = "kcp-e2e-operation-hold";
    let client = client().await;
    install(&client).await;
    fresh_namespace(&client, namespace).await;
    let _operator = Operator::start(namespace, "5s").await;
    let kcps: Api<KafkaConsumerProxy> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let ops: Api<KafkaConsumerProxyOperation> = Api::namespaced(client.clone(), namespace);
    // Brokers that do not exist: the operation can stop the pods, never change offsets.
    apply(&kcps, &example(namespace, "orders", 1)).await;
    let replicas = |d: &Deployment| d.spec.as_ref().and_then(|s| s.replicas);
    eventually("the Deployment with 1 replica", || async {
        let d = deployments.get_opt("orders").await.unwrap()?;
        (replicas(&d) == Some(1)).then_some(())
    })
    .await;

    let op = operation(
        namespace,
        "rewind",
        json!({"proxy": "orders", "rewind": {"toEarliest": true}}),
    );
    create(&ops, &op).await.unwrap();
    eventually("the Deployment scaled to 0 for the operation", || async {
        let d = deployments.get("orders").await.unwrap();
        (replicas(&d) == Some(0)).then_some(())
    })
    .await;
    let ready = eventually("Ready reason OperationInProgress", || async {
        let kcp = kcps.get("orders").await.unwrap();
        condition(&kcp, "Ready").filter(|c| c.reason == "OperationInProgress")
    })
    .await;
    assert!(ready.message.contains("rewind"), "{}", ready.message);
    let status = eventually("the operation reports its phase", || async {
        ops.get("rewind").await.unwrap().status
    })
    .await;
    assert!(status.phase.is_some(), "{status:?}");

    ops.delete("rewind", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the Deployment back to 1 replica", || async {
        let d = deployments.get("orders").await.unwrap();
        (replicas(&d) == Some(1)).then_some(())
    })
    .await;
    delete_all_kcps(&client, namespace).await;
}

/// A broker reachable from the test and from the in-process operator, when one is given.
fn broker() -> Option<String> {
    std::env::var("KAFKA_BOOTSTRAP_SERVERS")
        .ok()
        .filter(|s| !s.is_empty())
}

async fn create_topics(bootstrap: &str, topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, 2, TopicReplication::Fixed(1)))
        .collect();
    for r in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
}

fn committed(bootstrap: &str, group: &str, topic: &str) -> Vec<Option<i64>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    tpl.add_partition(topic, 1);
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    (0..2)
        .map(|p| match got.find_partition(topic, p).unwrap().offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG (and KAFKA_BOOTSTRAP_SERVERS for this one)"]
async fn rewind_and_redrive_against_a_real_broker() {
    let Some(bootstrap) = broker() else {
        eprintln!("SKIPPED: set KAFKA_BOOTSTRAP_SERVERS to a broker the test can reach");
        return;
    };
    let namespace = "kcp-e2e-operation-kafka";
    let client = client().await;
    install(&client).await;
    fresh_namespace(&client, namespace).await;
    let _operator = Operator::start(namespace, "5s").await;
    let suffix = std::process::id();
    let topic = format!("kcp-e2e-orders-{suffix}");
    let dlq = format!("{topic}-dlq");
    create_topics(&bootstrap, &[&topic, &dlq]).await;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for p in 0..2 {
        for i in 0..10 {
            producer
                .send(
                    BaseRecord::to(&topic)
                        .partition(p)
                        .key("k")
                        .payload(&format!("{i}")),
                )
                .unwrap();
        }
    }
    let group = format!("{namespace}.orders");
    // Two dead letters of partition 1 by this proxy's group, one already redriven three times.
    for count in ["0", "3"] {
        let headers = rdkafka::message::OwnedHeaders::new()
            .insert(rdkafka::message::Header {
                key: "kcp-redrive-count",
                value: Some(count),
            })
            .insert(rdkafka::message::Header {
                key: "kcp-dlq-original-topic",
                value: Some(topic.as_str()),
            })
            .insert(rdkafka::message::Header {
                key: "kcp-dlq-original-partition",
                value: Some("1"),
            })
            .insert(rdkafka::message::Header {
                key: "kcp-dlq-original-offset",
                value: Some("4"),
            })
            .insert(rdkafka::message::Header {
                key: "kcp-dlq-group",
                value: Some(group.as_str()),
            })
            .insert(rdkafka::message::Header {
                key: "kcp-dlq-reason",
                value: Some("status 503"),
            });
        producer
            .send(
                BaseRecord::to(&dlq)
                    .partition(0)
                    .key("k")
                    .payload("again")
                    .headers(headers),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    // The group has read everything: a commit from outside, while it has no member.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(10))
        .unwrap();
    tpl.add_partition_offset(&topic, 1, Offset::Offset(10))
        .unwrap();
    c.commit(&tpl, CommitMode::Sync).unwrap();
    drop(c);

    let kcps: Api<KafkaConsumerProxy> = Api::namespaced(client.clone(), namespace);
    let mut proxy = example(namespace, "orders", 0);
    proxy["spec"]["kafka"] = json!({"bootstrapServers": bootstrap, "topics": [topic]});
    apply(&kcps, &proxy).await;
    let ops: Api<KafkaConsumerProxyOperation> = Api::namespaced(client.clone(), namespace);
    let finished = |name: &'static str| {
        let ops = ops.clone();
        async move {
            eventually(&format!("operation {name} to finish"), || async {
                let op = ops.get(name).await.unwrap();
                let status = op.status?;
                status.phase.filter(|p| p.finished()).map(|_| status)
            })
            .await
        }
    };

    create(
        &ops,
        &operation(namespace, "rewind", json!({"proxy": "orders", "rewind": {"toOffset": 4, "topic": topic, "partitions": [1]}})),
    )
    .await
    .unwrap();
    let status = finished("rewind").await;
    assert_eq!(
        status.message.as_deref().map(|m| m.starts_with("moved 1")),
        Some(true),
        "{status:?}"
    );
    assert_eq!(
        committed(&bootstrap, &group, &topic),
        vec![Some(10), Some(4)]
    );

    // A time after every record: ListOffsets by timestamp finds none, so each partition moves
    // to its end; partition 0 is there already.
    create(
        &ops,
        &operation(
            namespace,
            "ahead",
            json!({"proxy": "orders", "fastForward": {"toTime": "2099-01-01T00:00:00Z"}}),
        ),
    )
    .await
    .unwrap();
    let status = finished("ahead").await;
    assert_eq!(
        status.phase,
        Some(kcp_crds::v1alpha1::Phase::Succeeded),
        "{status:?}"
    );
    assert_eq!(
        committed(&bootstrap, &group, &topic),
        vec![Some(10), Some(10)]
    );

    create(
        &ops,
        &operation(
            namespace,
            "redrive",
            json!({"proxy": "orders", "redrive": {"ratePerSecond": 5}}),
        ),
    )
    .await
    .unwrap();
    let status = finished("redrive").await;
    let progress = status.redrive.unwrap();
    assert_eq!(
        (progress.read, progress.redriven, progress.loop_guarded),
        (2, 1, 1),
        "{progress:?}"
    );
    delete_all_kcps(&client, namespace).await;
}
