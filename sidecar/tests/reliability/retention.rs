//! Retention below the committed offset: the group committed offset 5, then retention deleted
//! past it while no sidecar ran (the app was down over a weekend). The binary, started with
//! `initialOffset: latest`, resumes at the earliest retained record, not at the end.
//!
//! Asserts: the first delivered offset is the log start; every retained record is delivered,
//! once, in order; the commit reaches the end; `/metrics` shows `kcp_offset_resets_total 1`.
//!
//! On `kcp-mock-kafka`, retention is librdkafka's per-partition log limit (5 MiB): about 700
//! records of 10 KiB push the oldest message sets out. Against a real broker
//! (`KAFKA_BOOTSTRAP_SERVERS`) DeleteRecords moves the log start instead.

use std::time::{Duration, Instant};

use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions},
    client::DefaultClientContext,
};
use serde_json::json;

use crate::support::{
    Overflows, Row,
    broker::{Broker, Msg, Producer},
    check::{Order, check},
    config, report,
    sidecar::Sidecar,
    sink::{Action, Sink, behaviour},
    unique,
};

const COMMITTED: i64 = 5;

/// Moves the log start of partition 0 past `beyond`, as retention does.
async fn retention_deletes_past(broker: &Broker, producer: &Producer, topic: &str, beyond: i64) {
    if broker.is_mock() {
        let big = vec![b'r'; 10 * 1024];
        for batch in 0..7 {
            let msgs: Vec<Msg> = (0..100)
                .map(|i| Msg {
                    value: Some([format!("big#{batch}#{i}#").as_bytes(), &big].concat()),
                    seq: 100 + batch * 100 + i,
                    ..Msg::default()
                })
                .collect();
            producer.send(topic, &msgs).await;
        }
    } else {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &broker.bootstrap)
            .create()
            .expect("admin client");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(beyond + 10))
            .expect("offset");
        admin
            .delete_records(&tpl, &AdminOptions::new())
            .await
            .expect("delete records");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_past_the_committed_offset_resumes_at_the_log_start() {
    let test = "retention below the committed offset";
    let broker = Broker::start(1);
    let (topic, group) = (unique("retained"), unique("g"));
    broker.create_topic(&topic, 1).await;
    let sink = Sink::start(behaviour(|_| Action::ok())).await;
    let ledger = Default::default();
    let producer = broker.producer(&ledger);
    let first: Vec<Msg> = (0..20)
        .map(|i| Msg {
            value: Some(format!("r{i}").into_bytes()),
            seq: i,
            ..Msg::default()
        })
        .collect();
    producer.send(&topic, &first).await;
    broker.commit(&group, &topic, 0, COMMITTED).await;
    retention_deletes_past(&broker, &producer, &topic, COMMITTED).await;
    let (start, end) = broker.watermarks(&topic, 1).await[0];
    assert!(
        start > COMMITTED,
        "precondition: retention moved the log start ({start}) past the commit ({COMMITTED})"
    );
    assert_eq!(
        broker.committed(&group, &topic, 1).await,
        vec![Some(COMMITTED)],
        "precondition: the group's commit"
    );
    // What a sidecar can still deliver: the records retention kept.
    let retained: std::collections::BTreeMap<_, _> = ledger
        .lock()
        .expect("ledger lock")
        .iter()
        .filter(|((_, o), _)| *o >= start)
        .map(|(c, p)| (*c, p.clone()))
        .collect();
    assert_eq!(retained.len() as i64, end - start, "precondition: ledger");

    let mut cfg = config(&broker.bootstrap, &topic, &group, &sink.url(), "partition");
    // A new group would start at the end; this group has a commit, so `latest` is moot.
    cfg["kafka"]["initialOffset"] = json!("latest");
    cfg["delivery"]["maxInFlight"] = json!(16);
    let mut sidecar = Sidecar::start(&cfg, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let accepted = sink.hits().iter().filter(|h| h.accepted).count();
        if accepted >= retained.len() {
            break;
        }
        assert!(sidecar.is_running(), "{}", sidecar.tail());
        assert!(
            Instant::now() < deadline,
            "{accepted} of {} retained records delivered\n{}",
            retained.len(),
            sidecar.tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resets = sidecar.metric("kcp_offset_resets_total").await;
    sidecar.stop().await;
    let hits = sink.hits();
    let committed = broker.committed(&group, &topic, 1).await;
    let r = check(&retained, &hits, &[], Order::Partition);
    eprintln!("{test}: log start {start}, end {end}: {r:?}");
    report(&Row::of(
        test,
        1,
        &r,
        Overflows::NotRead,
        format!(
            "committed {COMMITTED}, log start {start}: {} records removed by retention \
             before delivery",
            start - COMMITTED
        ),
    ));
    r.assert_ok(test);
    let first_delivered = hits.iter().map(|h| h.offset).min();
    assert_eq!(
        first_delivered,
        Some(start),
        "resumes at the earliest retained record"
    );
    assert_eq!(
        r.delivered,
        retained.len(),
        "every retained record delivered"
    );
    assert_eq!(r.duplicates, 0, "each retained record once");
    assert_eq!(committed, vec![Some(end)], "committed to the end");
    assert_eq!(
        resets, 1.0,
        "the out-of-range position is reported (kcp_offset_resets_total)"
    );
}
