//! What the operator reports reaches it from the sidecar's commits, without scraping a pod: a
//! record the app keeps refusing makes its partition stuck, named with how often it was tried
//! and the app's last answer; the records this group dead-lettered are counted and listed; once
//! the record passes, the partition moves and is no longer stuck.
//!
//! The sidecar runs in-process against the test Kafka; the operator's own lag reader
//! (`kcp_operator::lag`) reads the group's commits from the same Kafka.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::SeqCst},
    },
    time::Duration,
};

use kcp_crds::config::SecurityProtocol;
use kcp_operator::{
    lag::{
        Credentials, KafkaLagSource, KafkaLimits, LagObservation, LagReader, LagSnapshot,
        LagTarget, ReadLimits, ResourceKey,
    },
    metrics::Metrics,
};
use kcp_sidecar::metrics;
use serde_json::json;

use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, unique},
    wait_until, wait_until_async,
};

/// The value of one `/metrics` sample, if present.
fn sample(run: &Running, name: &str) -> Option<i64> {
    let text = metrics::encode(&metrics::registry(&run.stats));
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a whole number"))
}

struct Operator {
    reader: LagReader,
    key: ResourceKey,
    target: LagTarget,
}

impl Operator {
    fn new(bootstrap: &str, topic: &str, group: &str) -> Self {
        let (reader, _updates) = LagReader::new(
            Arc::new(KafkaLagSource::new(KafkaLimits::default())),
            Duration::ZERO,
            ReadLimits {
                // Stuck at the first read that sees it: the window is `lag/stuck.rs`'s to test.
                stuck_after: Duration::ZERO,
                ..ReadLimits::default()
            },
            Arc::new(Metrics::default()),
        );
        let key = ResourceKey::of(&kube::api::ObjectMeta {
            namespace: Some("shop".into()),
            name: Some("orders".into()),
            ..Default::default()
        });
        let target = LagTarget {
            bootstrap_servers: bootstrap.into(),
            group_id: group.into(),
            topics: vec![topic.into()],
            dead_letter_topics: vec![format!("{topic}-dlq")],
            protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: None,
        };
        Self {
            reader,
            key,
            target,
        }
    }

    /// A fresh read of the group's figures.
    async fn read(&self) -> LagSnapshot {
        let observe = || {
            self.reader
                .observe(&self.key, self.target.clone(), Credentials::default())
        };
        // A read started by the last call may predate what the test did since: let it end,
        // then start one (the refresh interval is zero: one is due whenever none runs).
        self.reader.idle().await;
        observe();
        self.reader.idle().await;
        match observe() {
            LagObservation::Fresh { snapshot, .. } => snapshot,
            other => panic!("no figures: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_is_reported_stuck_with_its_why_and_dead_letters_are_counted() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("reported"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    kafka.create_topic(&format!("{topic}-dlq"), 1).await;
    let healed = Arc::new(AtomicBool::new(false));
    let h = Arc::clone(&healed);
    let app = App::start(behaviour(move |r| match &r.body[..] {
        b"stuck" if !h.load(SeqCst) => Reply::status(503),
        b"bad" => {
            let mut reply = Reply::ok();
            reply.headers.push(("x-kcp-action", "dead-letter".into()));
            reply
        }
        _ => Reply::ok(),
    }))
    .await;
    // Offsets 0-1 are dead-lettered, 2 passes, 3 is refused until healed, 4-5 wait behind it.
    let records: Vec<Rec> = ["bad", "bad", "ok", "stuck", "ok", "ok"]
        .iter()
        .map(|body| Rec::new(0, Some("k"), *body))
        .collect();
    kafka.produce(&topic, &records).await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["endpoint"]["actionHeader"] = json!("x-kcp-action");
        c["delivery"]["onExhausted"] = json!("block");
        c["delivery"]["retry"]["maxAttempts"] = json!(2);
        c["delivery"]["retry"]["maxBackoff"] = json!("50ms");
    }));
    let operator = Operator::new(&kafka.bootstrap, &topic, &group);

    let tried_twice = |s: &LagSnapshot| {
        let named = s.stuck.first().and_then(|p| p.record.as_deref());
        named.is_some_and(|r| r.starts_with("record tried ") && !r.contains("once"))
    };
    wait_until_async(
        "the operator names the stuck record, tried more than once",
        || async { tried_twice(&operator.read().await) },
    )
    .await;
    let s = operator.read().await;
    assert!(tried_twice(&s), "{:?}", s.stuck);
    assert_eq!(s.stuck_count, 1);
    let p = &s.stuck[0];
    assert_eq!((p.partition, p.offset), (0, Some(3)));
    let why = p.record.as_deref().expect("why");
    assert!(
        why.starts_with("record tried ") && why.ends_with(" times, last 503"),
        "{why}"
    );
    assert_eq!(
        s.dead_letter.count, 2,
        "this group dead-lettered two records"
    );
    let recent: Vec<_> = s
        .dead_letter
        .recent
        .iter()
        .map(|r| (r.offset, r.reason.as_str()))
        .collect();
    assert_eq!(
        recent.iter().map(|r| r.0).collect::<Vec<_>>().len(),
        2,
        "{recent:?}"
    );
    assert!(
        recent
            .iter()
            .all(|(_, reason)| *reason == "refused by the app after 1 attempt (last 200)"),
        "{recent:?}"
    );
    assert!(
        s.partitions[0].lag_seconds.is_some(),
        "the oldest uncommitted record's age"
    );
    // The sidecar's own view, per partition.
    let labels = format!(r#"{{topic="{topic}",partition="0"}}"#);
    wait_until("the sidecar's metrics refresh", || {
        sample(
            &run,
            &format!("kcp_partition_dead_lettered_records{labels}"),
        ) == Some(2)
    })
    .await;
    assert!(
        sample(&run, &format!("kcp_partition_lag_seconds{labels}")).is_some(),
        "the blocked record's age"
    );

    healed.store(true, SeqCst);
    wait_until_async("every record committed", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(6)]
    })
    .await;
    let after = operator.read().await;
    assert_eq!(
        after.stuck_count, 0,
        "the record passed: the partition moved: {after:?}"
    );
    assert_eq!(after.total, 0);
    assert_eq!(after.seconds, Some(0), "caught up");
    assert_eq!(after.dead_letter.count, 2, "the count stays across commits");
    run.stop().await;
}
