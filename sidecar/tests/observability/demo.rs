//! The demo's short form runs the real pipeline and passes its own checks.

use kcp_crds::v1alpha1::Ordering;
use kcp_sidecar::demo::{self, DemoOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_short_form_passes_its_checks() {
    let report = demo::run(DemoOptions {
        records: 300,
        partitions: 3,
        keys: 20,
        fail_rate: 0.2,
        reject_every: 50,
        ordering: Ordering::Key,
        quiet: true,
        ..DemoOptions::default()
    })
    .await
    .expect("the demo runs");
    assert!(report.passed(), "{report}");
    assert!(report.missing.is_empty(), "{report}");
    assert_eq!(report.rejected, 6, "{report}");
    assert_eq!(report.dead_lettered, 6, "{report}");
    assert_eq!(report.accepted, 294, "{report}");
    assert_eq!(report.order_violations, Some(vec![]), "{report}");
    assert!(report.failed_first_attempts > 0, "{report}");
    assert_eq!(report.stats.delivered, 294);
    assert_eq!(report.stats.dead_lettered, 6);
}

/// The demo with CloudEvents and Avro records decoded through the registry stand-in: every
/// request is a CloudEvent, the undecodable records are dead-lettered, the rest accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_runs_with_cloudevents_and_avro_through_the_registry_stand_in() {
    let report = demo::run(DemoOptions {
        records: 200,
        partitions: 2,
        keys: 10,
        fail_rate: 0.0,
        reject_every: 0,
        ordering: Ordering::Key,
        format: kcp_crds::config::Format::CloudeventsBinary,
        avro: true,
        undecodable_every: 40,
        quiet: true,
        ..DemoOptions::default()
    })
    .await
    .expect("the demo runs");
    assert!(report.passed(), "{report}");
    assert_eq!(report.not_cloudevents, 0, "{report}");
    assert_eq!(report.undecodable, 5, "{report}");
    assert_eq!(report.dead_lettered, 5, "{report}");
    assert_eq!(report.accepted, 195, "{report}");
}

/// The demo delivering in batches: per-entry results (500 for a first attempt, 422 for a
/// rejected record) take the normal path, key order holds, nothing is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_runs_batched_and_keeps_key_order() {
    let report = demo::run(DemoOptions {
        records: 300,
        partitions: 3,
        keys: 20,
        fail_rate: 0.2,
        reject_every: 50,
        ordering: Ordering::Key,
        batch: 20,
        quiet: true,
        ..DemoOptions::default()
    })
    .await
    .expect("the demo runs");
    assert!(report.passed(), "{report}");
    assert_eq!(report.rejected, 6, "{report}");
    assert_eq!(report.dead_lettered, 6, "{report}");
    assert_eq!(report.accepted, 294, "{report}");
    assert_eq!(report.order_violations, Some(vec![]), "{report}");
    assert!(report.failed_first_attempts > 0, "{report}");
}

/// Batches of Avro records decoded by the sidecar (`valueJson` entries), unordered; the
/// undecodable ones are dead-lettered without being sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_runs_batched_with_avro_unordered() {
    let report = demo::run(DemoOptions {
        records: 200,
        partitions: 2,
        keys: 10,
        fail_rate: 0.1,
        reject_every: 0,
        ordering: Ordering::Unordered,
        avro: true,
        undecodable_every: 40,
        batch: 50,
        quiet: true,
        ..DemoOptions::default()
    })
    .await
    .expect("the demo runs");
    assert!(report.passed(), "{report}");
    assert_eq!(report.undecodable, 5, "{report}");
    assert_eq!(report.dead_lettered, 5, "{report}");
    assert_eq!(report.accepted, 195, "{report}");
}
