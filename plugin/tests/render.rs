//! What the user reads: the `status` screen from a fixture KafkaConsumerProxy (lag, a stuck
//! partition, dead letters, operations), the dead-letter listing and one record in full.

#![allow(clippy::unwrap_used)]

use k8s_openapi::jiff::Timestamp;
use kcp_crds::{KafkaConsumerProxy, v1alpha1::KafkaConsumerProxyOperation};
use kubectl_kcp::{
    dlq::{DeadLetter, newest},
    render::{self, Operations},
};

fn now() -> Timestamp {
    "2026-03-01T10:15:30Z".parse().unwrap()
}

fn proxy() -> KafkaConsumerProxy {
    serde_json::from_str(include_str!("fixtures/proxy.json")).unwrap()
}

fn operations() -> Vec<KafkaConsumerProxyOperation> {
    serde_json::from_str(include_str!("fixtures/operations.json")).unwrap()
}

fn line<'a>(screen: &'a str, starts: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.starts_with(starts))
        .unwrap_or_else(|| panic!("no line starting with {starts:?} in\n{screen}"))
}

/// The rows of the table under the line starting with `title`, up to the next blank line.
fn section<'a>(screen: &'a str, title: &str) -> Vec<&'a str> {
    let mut lines = screen.lines().skip_while(|l| !l.starts_with(title));
    assert!(lines.next().is_some(), "no section {title:?} in\n{screen}");
    lines.take_while(|l| !l.trim().is_empty()).collect()
}

fn first_columns(rows: &[&str], n: usize) -> Vec<String> {
    rows.iter()
        .map(|r| r.split_whitespace().take(n).collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn status_screen_shows_ready_replicas_and_lag() {
    let screen = render::status_screen(&proxy(), &Operations::Listed(operations()), now());
    assert!(
        screen.starts_with("KafkaConsumerProxy shop/orders\n"),
        "{screen}"
    );
    let ready = line(&screen, "Ready:");
    assert!(
        ready.contains("True") && ready.contains("Available"),
        "{ready}"
    );
    assert!(ready.contains("3 of 3 pods available"), "{ready}");
    let replicas = line(&screen, "Replicas:");
    assert!(
        replicas.contains("3 desired") && replicas.contains("3 ready"),
        "{replicas}"
    );
    assert!(line(&screen, "Paused:").contains("no"));
    assert!(line(&screen, "Suspended:").contains("no"));
    let lag = line(&screen, "Lag:");
    assert!(
        lag.contains("2868 records") && lag.contains("5m0s behind"),
        "{lag}"
    );
    assert!(
        line(&screen, "Conditions:").contains("PartitionsStuck"),
        "an abnormal condition is named"
    );
}

#[test]
fn status_screen_lists_the_ten_most_lagging_partitions() {
    let screen = render::status_screen(&proxy(), &Operations::Listed(operations()), now());
    let rows = section(&screen, "Partitions by lag");
    assert_eq!(
        rows[0].split_whitespace().next(),
        Some("TOPIC"),
        "a header row"
    );
    assert_eq!(
        first_columns(&rows[1..], 3),
        [
            "orders 0 1200",
            "orders 2 800",
            "payments 1 500",
            "payments 3 150",
            "orders 5 77",
            "payments 5 64",
            "orders 3 40",
            "payments 4 20",
            "payments 2 9",
            "orders 1 5",
        ],
        "most lag first; payments/0 (3) and orders/4 (0) left out"
    );
    assert!(line(&screen, "Partitions by lag").contains("top 10 of 12"));
}

#[test]
fn status_screen_shows_stuck_partitions_and_dead_letters() {
    let screen = render::status_screen(&proxy(), &Operations::Listed(operations()), now());
    let stuck = section(&screen, "Stuck partitions");
    assert_eq!(stuck.len(), 2, "{stuck:?}");
    assert!(
        stuck[1].contains("kubectl kcp skip orders -n shop"),
        "how to move on: {}",
        stuck[1]
    );
    assert!(stuck[0].contains("orders/0 at offset 1000"), "{}", stuck[0]);
    assert!(
        stuck[0].contains("since 2026-03-01T10:00:00Z (15m30s ago)"),
        "{}",
        stuck[0]
    );
    assert!(
        stuck[0].contains("record tried 17 times, last 503"),
        "{}",
        stuck[0]
    );

    let dead = line(&screen, "Dead letters:");
    assert!(dead.contains("12 dead-lettered"), "{dead}");
    assert!(dead.contains("40 in orders-dlq, payments-dlq"), "{dead}");
    let recent = section(&screen, "Dead letters:");
    let body = recent.join("\n");
    assert!(body.contains("orders/2/1001"), "{body}");
    assert!(
        body.contains("retries exhausted after 5 attempts (last 503)"),
        "{body}"
    );
    assert!(body.contains("payments/1/77"), "{body}");
    assert!(
        body.contains("endpoint refused the record: status 422"),
        "{body}"
    );
    assert!(body.contains("kubectl kcp dlq orders -n shop"), "{body}");
}

#[test]
fn status_screen_lists_the_proxys_five_newest_operations() {
    let screen = render::status_screen(&proxy(), &Operations::Listed(operations()), now());
    let rows = section(&screen, "Operations");
    assert_eq!(
        first_columns(&rows[1..], 3),
        [
            "from-git fast-forward -",
            "orders-skip-20260301-101000 skip Running",
            "orders-redrive-20260301-090000 redrive Failed",
            "orders-rewind-20260301-080000 rewind Succeeded",
            "orders-fast-forward-20260301-070000 fast-forward Succeeded",
        ]
    );
    assert!(rows[3].contains("dead-letter topic orders-dlq does not exist"));
    assert!(!screen.contains("payments-redrive"), "another proxy's");
}

#[test]
fn status_screen_without_status_or_operations() {
    let mut p = proxy();
    p.status = None;
    p.spec.paused = true;
    let screen = render::status_screen(&p, &Operations::NotInstalled, now());
    assert!(line(&screen, "Ready:").contains("Unknown"), "{screen}");
    assert!(line(&screen, "Paused:").contains("yes"), "{screen}");
    assert!(line(&screen, "Lag:").contains("not read yet"), "{screen}");
    assert!(
        line(&screen, "Operations:").contains("kubectl apply -f manifests/crds/"),
        "{screen}"
    );
}

fn record(
    partition: i32,
    offset: i64,
    last_failure: Option<i64>,
    ts: i64,
    reason: &str,
) -> DeadLetter {
    let mut headers = vec![
        ("traceparent".to_string(), Some(b"00-abc-def-01".to_vec())),
        (
            "kcp-dlq-original-topic".to_string(),
            Some(b"orders".to_vec()),
        ),
        (
            "kcp-dlq-original-partition".to_string(),
            Some(b"2".to_vec()),
        ),
        (
            "kcp-dlq-original-offset".to_string(),
            Some(format!("{}", offset + 100).into_bytes()),
        ),
        ("kcp-dlq-attempts".to_string(), Some(b"5".to_vec())),
        (
            "kcp-dlq-reason".to_string(),
            Some(reason.as_bytes().to_vec()),
        ),
    ];
    if let Some(ms) = last_failure {
        headers.push((
            "kcp-dlq-last-failure".to_string(),
            Some(ms.to_string().into_bytes()),
        ));
    }
    DeadLetter {
        topic: "orders-dlq".into(),
        partition,
        offset,
        timestamp: Some(ts),
        key: Some(b"customer-7".to_vec()),
        value: Some(br#"{"id":1}"#.to_vec()),
        headers,
    }
}

#[test]
fn newest_first_by_last_failure_then_record_time() {
    // 2026-03-01T10:00:00Z = 1772359200000 ms.
    let t = 1_772_359_200_000;
    let records = vec![
        record(0, 1, Some(t + 1_000), t + 9_000, "a"),
        record(0, 2, Some(t + 3_000), t, "b"),
        record(1, 7, None, t + 2_000, "c"),
        record(1, 8, Some(t - 5_000), t + 60_000, "d"),
    ];
    let reasons: Vec<_> = newest(records.clone(), 10)
        .iter()
        .map(|r| r.reason().unwrap_or_default())
        .collect();
    assert_eq!(reasons, ["b", "c", "a", "d"]);
    assert_eq!(newest(records, 2).len(), 2);
}

#[test]
fn dlq_listing_has_both_coordinates_attempts_reason_and_time() {
    let t = 1_772_359_200_000;
    let listing = render::dlq::listing(&[
        record(
            1,
            8,
            Some(t + 3_000),
            t,
            "retries exhausted after 5 attempts (last 503)",
        ),
        record(0, 4, Some(t), t, "endpoint refused the record: status 422"),
    ]);
    let rows: Vec<&str> = listing.lines().collect();
    assert_eq!(
        first_columns(&rows, 5),
        [
            "DEAD LETTER ORIGINAL ATTEMPTS TIME",
            "orders-dlq/1/8 orders/2/108 5 2026-03-01T10:00:03Z retries",
            "orders-dlq/0/4 orders/2/104 5 2026-03-01T10:00:00Z endpoint",
        ]
    );
    assert!(rows[1].ends_with("retries exhausted after 5 attempts (last 503)"));
    assert!(rows[2].ends_with("endpoint refused the record: status 422"));
}

#[test]
fn dlq_fallback_lists_the_status_records() {
    let p = proxy();
    let recent = &p
        .status
        .as_ref()
        .unwrap()
        .dead_letter
        .as_ref()
        .unwrap()
        .recent;
    let listing = render::dlq::from_status(recent);
    assert!(listing.contains("orders/2/1001"), "{listing}");
    assert!(listing.contains("2026-03-01T10:12:00Z"), "{listing}");
    assert!(
        listing.contains("retries exhausted after 5 attempts (last 503)"),
        "{listing}"
    );
}

#[test]
fn one_record_in_full() {
    let mut r = record(1, 8, Some(1_772_359_203_000), 1_772_359_200_000, "poison");
    r.headers.push(("binary".into(), Some(vec![0xff, 0xfe])));
    r.headers.push(("empty".into(), None));
    let shown = render::dlq::record(&r, false);
    assert!(shown.contains("Dead letter:  orders-dlq/1/8"), "{shown}");
    assert!(shown.contains("Original:     orders/2/108"), "{shown}");
    assert!(shown.contains("  traceparent: 00-abc-def-01"), "{shown}");
    assert!(shown.contains("  kcp-dlq-reason: poison"), "{shown}");
    assert!(
        shown.contains("  binary: //4= (base64: not UTF-8)"),
        "{shown}"
    );
    assert!(shown.contains("  empty: (null)"), "{shown}");
    assert!(shown.contains("Key (10 bytes):\ncustomer-7\n"), "{shown}");
    assert!(shown.contains("Value (8 bytes):\n{\"id\":1}\n"), "{shown}");

    r.value = Some(vec![b'x'; 5000]);
    let shown = render::dlq::record(&r, false);
    assert!(
        shown.contains(&format!("Value (5000 bytes):\n{}\n", "x".repeat(4096))),
        "truncated"
    );
    assert!(
        shown.contains("(truncated at 4096 of 5000 bytes; --full shows all)"),
        "{shown}"
    );
    let full = render::dlq::record(&r, true);
    assert!(full.contains(&"x".repeat(5000)));
    assert!(!full.contains("truncated"));

    r.value = Some(vec![0, 159, 146, 150]);
    r.key = None;
    let shown = render::dlq::record(&r, false);
    assert!(shown.contains("Key: (null)"), "{shown}");
    assert!(
        shown.contains("Value (4 bytes, base64: not UTF-8):\nAJ+Slg==\n"),
        "{shown}"
    );
}
