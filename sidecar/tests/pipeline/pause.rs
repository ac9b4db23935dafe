//! A pause by request (the control file, `control.rs`) stops taking records without leaving the
//! group: nothing produced meanwhile reaches the app, the assignment is kept (no rebalance), the
//! sidecar stays Ready and Live, and once resumed every record produced meanwhile is delivered
//! exactly once and committed.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use kcp_sidecar::{admin::Admin, metrics};
use serde_json::{Value, json};

use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, unique},
    wait_until, wait_until_async,
};

const PARTITIONS: i32 = 3;

/// A control file in a directory of its own, as the operator mounts it.
fn control_file() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("kcp-control"));
    std::fs::create_dir_all(&dir).expect("control dir");
    dir.join("control.json")
}

/// Writes the control file whole, at once, as the kubelet updates a ConfigMap volume; with a
/// field this version does not know, which it must ignore.
fn write_control(path: &Path, paused: bool) {
    let tmp = path.with_extension("next");
    let text = json!({"paused": paused, "reason": "maintenance window"}).to_string();
    std::fs::write(&tmp, text).expect("write control file");
    std::fs::rename(&tmp, path).expect("swap control file");
}

fn remove_control(path: &Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// What `/status` answers.
fn status(run: &Running) -> Value {
    serde_json::to_value(Admin::new(Arc::clone(&run.stats)).status()).expect("status as JSON")
}

/// The value of one sample of `/metrics`.
fn metric(run: &Running, sample: &str) -> f64 {
    let text = metrics::encode(&metrics::registry(&run.stats));
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {sample} in:\n{text}"))
        .parse()
        .expect("a number")
}

/// `n` records spread over the partitions, values tagged `tag`.
fn records(n: usize, tag: &str) -> Vec<Rec> {
    (0..n)
        .map(|i| Rec::new(i as i32 % PARTITIONS, None, format!("{tag}{i}")))
        .collect()
}

/// Requests the app got per record: every record exactly once.
fn requests_per_record(app: &App) -> BTreeMap<(i32, i64), usize> {
    let mut seen = BTreeMap::new();
    for r in app.received() {
        *seen.entry((r.partition(), r.offset())).or_insert(0) += 1;
    }
    seen
}

/// Statistics every 200 ms: each report is served by the poll loop (`consumer.poll`), so their
/// count shows it kept polling.
fn statistics_often(c: &mut Value) {
    c["kafka"]["clientConfig"]["statistics.interval.ms"] = json!("200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_by_request_keeps_the_assignment_and_delivers_nothing_until_resumed() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("pause"), unique("g"));
    kafka.create_topic(&topic, PARTITIONS).await;
    let control = control_file();
    write_control(&control, false);
    let app = App::start(behaviour(|_| Reply::ok())).await;
    let cfg = config(
        &kafka.bootstrap,
        &topic,
        &group,
        &app.url(),
        statistics_often,
    );
    let run = Running::start_with(cfg, |p| p.control(&control));

    let before = records(30, "a");
    kafka.produce(&topic, &before).await;
    wait_until_async("the first records are delivered and committed", || async {
        kafka.committed(&group, &topic, PARTITIONS).await == vec![Some(10); 3]
    })
    .await;
    assert_eq!(app.delivered().len(), 30);
    assert_eq!(status(&run)["paused"], json!(false));
    assert_eq!(metric(&run, "kcp_paused"), 0.0);

    write_control(&control, true);
    wait_until("the pause is on and nothing is in flight", || {
        let s = status(&run);
        s["paused"] == json!(true) && s["inFlight"] == json!(0) && s["bufferedRecords"] == json!(0)
    })
    .await;
    let paused = run.snapshot();
    let s = status(&run);
    assert_eq!(
        (s["ready"].clone(), s["live"].clone()),
        (json!(true), json!(true)),
        "a paused sidecar is Ready and Live: {s:#}"
    );
    assert_eq!(metric(&run, "kcp_paused"), 1.0);
    assert_eq!(paused.app_outages, 0, "a pause is not an app closure");
    assert_eq!(metric(&run, "kcp_app_ready"), 1.0, "the app still answers");

    let during = records(30, "b");
    kafka.produce(&topic, &during).await;
    // Two seconds' worth of statistics reports: the poll loop kept polling meanwhile.
    wait_until("the poll loop served 10 more statistics reports", || {
        run.snapshot().librdkafka_reports >= paused.librdkafka_reports + 10
    })
    .await;
    let still = run.snapshot();
    assert_eq!(
        app.received().len(),
        30,
        "no record produced during the pause reached the app"
    );
    assert_eq!(still.received, paused.received, "no record was taken");
    assert_eq!(
        still.rebalances, paused.rebalances,
        "the group did not rebalance"
    );
    assert_eq!(
        still.partitions.keys().collect::<Vec<_>>(),
        paused.partitions.keys().collect::<Vec<_>>(),
        "the assignment is kept"
    );
    assert_eq!(still.partitions.len(), PARTITIONS as usize);
    assert!(still.joined && still.paused);
    assert!(
        still.gate_paused,
        "fetching of every assigned partition is paused"
    );
    assert_eq!(metric(&run, "kcp_paused_partitions"), f64::from(PARTITIONS));

    write_control(&control, false);
    wait_until_async("everything is delivered and committed", || async {
        kafka.committed(&group, &topic, PARTITIONS).await == vec![Some(20); 3]
    })
    .await;
    assert_eq!(status(&run)["paused"], json!(false));
    assert_eq!(metric(&run, "kcp_paused"), 0.0);
    assert_eq!(
        run.snapshot().rebalances,
        paused.rebalances,
        "resumed on the same assignment"
    );
    // Stopping leaves the group: a revoke, counted as a rebalance.
    let stats = run.stop().await;
    let seen = requests_per_record(&app);
    assert_eq!(seen.len(), 60, "every record reached the app");
    assert!(
        seen.values().all(|n| *n == 1),
        "each exactly once: {seen:?}"
    );
    assert_eq!(stats.delivered, 60);
    assert_eq!(stats.app_outages, 0);
    remove_control(&control);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_started_paused_takes_nothing_until_resumed() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("start-paused"), unique("g"));
    kafka.create_topic(&topic, PARTITIONS).await;
    kafka.produce(&topic, &records(30, "a")).await;
    let control = control_file();
    write_control(&control, true);
    let app = App::start(behaviour(|_| Reply::ok())).await;
    let cfg = config(
        &kafka.bootstrap,
        &topic,
        &group,
        &app.url(),
        statistics_often,
    );
    let run = Running::start_with(cfg, |p| p.control(&control));
    wait_until("joined, the app answers, and paused", || {
        let s = run.snapshot();
        s.joined && s.gate_open && s.paused && s.partitions.len() == PARTITIONS as usize
    })
    .await;
    let joined = run.snapshot();
    wait_until("the poll loop served 10 more statistics reports", || {
        run.snapshot().librdkafka_reports >= joined.librdkafka_reports + 10
    })
    .await;
    assert!(app.received().is_empty(), "nothing was sent while paused");
    assert_eq!(run.snapshot().received, 0, "nothing was taken");

    write_control(&control, false);
    wait_until_async("everything is delivered and committed", || async {
        kafka.committed(&group, &topic, PARTITIONS).await == vec![Some(10); 3]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(stats.delivered, 30);
    assert!(requests_per_record(&app).values().all(|n| *n == 1));
    remove_control(&control);
}
