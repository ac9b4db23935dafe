//! Handovers through Kafka's committed metadata: a record finished above one that did not
//! finish is not delivered again after a crash, and a record's attempts go on counting with the
//! next owner (`offsets/carry.rs`, `progress.rs`).

use std::time::Duration;

use serde_json::json;

use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, unique},
    wait_until, wait_until_async,
};

/// Key order: record 0 (key `stuck`) never finishes, records 1..=20 (other keys) do. The
/// committed offset stays 0; after a crash (abort: no drain, no further commit) the next
/// replica delivers record 0 only, the finished ones are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_finished_above_an_unfinished_one_are_not_delivered_after_a_crash() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("carry"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    let records: Vec<Rec> = std::iter::once(Rec::new(0, Some("stuck"), "0"))
        .chain((1..=20).map(|i| Rec::new(0, Some(&format!("k{i}")), i.to_string())))
        .collect();
    kafka.produce(&topic, &records).await;
    let first_app = App::start(behaviour(|r| {
        if r.offset() == 0 {
            Reply::ok().delayed(Duration::from_secs(3600))
        } else {
            Reply::ok()
        }
    }))
    .await;
    let cfg = |url: String| {
        config(&kafka.bootstrap, &topic, &group, &url, |c| {
            c["delivery"]["ordering"] = json!("key");
            c["endpoint"]["requestTimeout"] = json!("300s");
        })
    };
    let first = Running::start(cfg(first_app.url()));
    wait_until("records 1..=20 delivered, record 0 in flight", || {
        first_app.delivered().len() == 20
    })
    .await;
    // The periodic commit carries what finished above offset 0 in its metadata.
    wait_until_async("the commit at 0 says 1..=20 are finished", || async {
        stored(&kafka, &group, &topic).await.is_some_and(|p| {
            p.committed == 0 && (1..=20).all(|o| p.is_finished(o)) && !p.is_finished(0)
        })
    })
    .await;
    first.kill().await;

    let second_app = App::start(behaviour(|_| Reply::ok())).await;
    let second = Running::start(cfg(second_app.url()));
    wait_until_async("record 0 delivered and committed past the end", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(21)]
    })
    .await;
    let stats = second.stop().await;
    let offsets: Vec<i64> = second_app.received().iter().map(|r| r.offset()).collect();
    assert_eq!(
        offsets,
        vec![0],
        "only the unfinished record is delivered again"
    );
    assert_eq!(stats.finished_skipped, 20, "{stats:?}");
}

/// A record failing with 503 makes two attempts, then its replica shuts down (a revoke commits
/// the same way). The next replica's first request for it is attempt 3, and it is dead-lettered
/// after the fifth in all: `maxAttempts` counts attempts, not attempts per assignment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_attempts_go_on_counting_after_a_handover() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("attempts"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    kafka.create_topic(&format!("{topic}-dlq"), 1).await;
    kafka.produce(&topic, &[Rec::new(0, None, "fails")]).await;
    let app = App::start(behaviour(|_| Reply::status(503))).await;
    let cfg = config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        // Long enough that the shutdown stops waiting for the record (no progress for 2 s)
        // and hands it over in its backoff.
        c["delivery"]["retry"] = json!({"maxAttempts": 8, "initialBackoff": "3s",
            "maxBackoff": "3s", "multiplier": 1.0});
    });
    let first = Running::start(cfg.clone());
    wait_until("two attempts", || app.received().len() >= 2).await;
    first.stop().await;
    let made = app.received().len() as u32;
    assert!(
        (2..8).contains(&made),
        "{made} attempts before the handover"
    );

    let second = Running::start(cfg);
    wait_until_async("dead-lettered and committed", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(1)]
    })
    .await;
    second.stop().await;
    let attempts: Vec<u32> = app.received().iter().map(|r| r.attempt()).collect();
    assert_eq!(
        attempts,
        (1..=8).collect::<Vec<u32>>(),
        "the next replica went on from attempt {}",
        made + 1
    );
    let dlq = kafka.read(&format!("{topic}-dlq"), 1, 1).await;
    assert_eq!(
        crate::support::kafka::header(&dlq[0], "kcp-dlq-attempts").as_deref(),
        Some("8")
    );
}

/// More records waiting behind a blocked key than the commit's metadata can list: the commit
/// lists the lowest ones and claims nothing above the first left out (counted as an overflow).
/// After a crash nothing unfinished is skipped; finished records below the cut are, those above
/// it are delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_overflow_replays_above_the_cut_and_never_skips_an_unfinished_record() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("overflow"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    // Offset 0 and every odd offset: key `stuck`, held behind 0. Even offsets: other keys.
    let records: Vec<Rec> = (0..2001)
        .map(|o| {
            if o == 0 || o % 2 == 1 {
                Rec::new(0, Some("stuck"), o.to_string())
            } else {
                Rec::new(0, Some(&format!("k{o}")), o.to_string())
            }
        })
        .collect();
    kafka.produce(&topic, &records).await;
    let first_app = App::start(behaviour(|r| {
        if r.offset() == 0 {
            Reply::ok().delayed(Duration::from_secs(3600))
        } else {
            Reply::ok()
        }
    }))
    .await;
    let cfg = |url: String| {
        config(&kafka.bootstrap, &topic, &group, &url, |c| {
            c["delivery"]["ordering"] = json!("key");
            c["delivery"]["maxInFlight"] = json!(200);
            c["endpoint"]["requestTimeout"] = json!("300s");
        })
    };
    let first = Running::start(cfg(first_app.url()));
    wait_until("every other key delivered", || {
        first_app.delivered().len() == 1000
    })
    .await;
    wait_until("a commit overflowed", || {
        first.snapshot().metadata_overflows > 0
    })
    .await;
    // A record finished after the last commit may repeat after a crash: wait until the commit
    // Kafka holds knows every other key finished.
    wait_until_async("the stored commit lists only held records", || async {
        stored(&kafka, &group, &topic)
            .await
            .is_some_and(|p| p.unfinished.keys().all(|o| *o == 0 || o % 2 == 1))
    })
    .await;
    first.kill().await;
    let cut = stored(&kafka, &group, &topic)
        .await
        .expect("stored progress")
        .highest;

    let second_app = App::start(behaviour(|_| Reply::ok())).await;
    let second = Running::start(cfg(second_app.url()));
    wait_until_async("everything delivered and committed", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(2001)]
    })
    .await;
    let stats = second.stop().await;
    let got: std::collections::BTreeSet<i64> =
        second_app.received().iter().map(|r| r.offset()).collect();
    for o in 0..2001i64 {
        let unfinished = o == 0 || o % 2 == 1;
        if unfinished || o > cut {
            assert!(got.contains(&o), "{o} was not delivered again (cut {cut})");
        } else {
            assert!(!got.contains(&o), "{o} was finished below the cut {cut}");
        }
    }
    assert!(
        cut > 0 && cut < 2000,
        "the metadata listed part of it: cut {cut}"
    );
    assert_eq!(stats.finished_skipped as i64, (cut + 1) / 2, "{stats:?}");
}

/// What the commit Kafka holds for partition 0 carries.
async fn stored(
    kafka: &TestKafka,
    group: &str,
    topic: &str,
) -> Option<kcp_sidecar::progress::Progress> {
    match &kafka.committed_with_metadata(group, topic, 1).await[0] {
        Some((at, metadata)) => kcp_sidecar::progress::Progress::decode(metadata, *at),
        None => None,
    }
}

/// A broker that stores less metadata than the sidecar sends refuses the whole commit
/// (`OFFSET_METADATA_TOO_LARGE`): the sidecar sends less from then on, and the commit goes
/// through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_a_broker_refuses_is_shrunk_and_the_commit_goes_through() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    init_logging();
    let kafka = TestKafka::start(1);
    let Some(mock) = kafka.mock() else {
        eprintln!("skipped: fault injection needs the mock cluster");
        return;
    };
    let (topic, group) = (unique("toolarge"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    let app = App::start(behaviour(|_| Reply::ok())).await;
    kafka
        .produce(
            &topic,
            &(0..10)
                .map(|i| Rec::new(0, None, i.to_string()))
                .collect::<Vec<_>>(),
        )
        .await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |c| {
        c["delivery"]["commitInterval"] = json!("1h");
    }));
    wait_until("all delivered", || app.delivered().len() == 10).await;
    let before = run.stats.metadata_max_len();
    mock.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE; 1],
    );
    let stats_handle = std::sync::Arc::clone(&run.stats);
    let stats = run.stop().await;
    assert!(stats.commit_failures >= 1, "{stats:?}");
    assert_eq!(stats_handle.metadata_max_len(), before / 2);
    assert_eq!(kafka.committed(&group, &topic, 1).await, vec![Some(10)]);
}
