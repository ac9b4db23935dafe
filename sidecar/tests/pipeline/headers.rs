//! Records whose headers are hostile: a header name that is not UTF-8, a header name too long
//! for an HTTP header once encoded. Each is delivered, and the records behind it keep flowing.

use kcp_sidecar::metrics;

use crate::support::{
    Running,
    app::{App, Reply, behaviour},
    config, init_logging,
    kafka::{Rec, TestKafka, unique},
    raw::{self, RawRec},
    wait_until_async,
};

fn raw(value: &str, headers: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> RawRec {
    RawRec {
        key: None,
        value: Some(value.as_bytes().to_vec()),
        headers,
    }
}

/// rdkafka 0.39 panics reading a header name that is not UTF-8 (`CStr::to_str().unwrap()`); on
/// the poll thread that stopped the sidecar, on every restart, on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_does_not_stop_the_sidecar() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("hname"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    let app = App::start(behaviour(|_| Reply::ok())).await;
    raw::produce(
        &kafka.bootstrap,
        &topic,
        0,
        vec![
            raw(
                "first",
                vec![
                    (b"\xff\xfebad".to_vec(), Some(b"x".to_vec())),
                    (b"ok".to_vec(), Some(b"1".to_vec())),
                ],
            ),
            raw("second", vec![]),
            raw("third", vec![(b"ok".to_vec(), None)]),
        ],
    )
    .await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |_| {}));
    wait_until_async("all three delivered and committed", || async {
        assert!(!run.is_finished(), "the pipeline stopped");
        kafka.committed(&group, &topic, 1).await == vec![Some(3)]
    })
    .await;
    let metrics = metrics::encode(&metrics::registry(&run.stats));
    let stats = run.stop().await;
    let received = app.received();
    let bodies: Vec<&[u8]> = received.iter().map(|r| &r.body[..]).collect();
    assert_eq!(bodies, [&b"first"[..], b"second", b"third"]);
    assert_eq!(stats.delivered, 3);
    // The unreadable header is replaced by a count the app sees; the readable one is kept.
    assert_eq!(received[0].header("kcp-headers-unreadable"), Some("1"));
    assert_eq!(received[0].header("kcp-h-ok"), Some("1"));
    assert_eq!(received[1].header("kcp-headers-unreadable"), None);
    assert_eq!(received[2].header("kcp-h-ok"), Some(""));
    assert_eq!(stats.headers_unreadable, 1);
    assert!(
        metrics.contains("kcp_record_headers_unreadable_total 1"),
        "{metrics}"
    );
}

/// A header name of 32,765-32,768 bytes that is not an HTTP token passed the header size cap,
/// and its `kcp-hx-<hex>` name overflowed http's 64 KiB name limit: the lane task panicked and
/// every later record of the partition queued behind a dead task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_header_name_does_not_stop_its_partition() {
    init_logging();
    let kafka = TestKafka::start(1);
    let (topic, group) = (unique("hlong"), unique("g"));
    kafka.create_topic(&topic, 1).await;
    let app = App::start(behaviour(|_| Reply::ok())).await;
    let mut first = Rec::new(0, None, "first");
    let name = format!("x y{}", "z".repeat(32_766 - 3));
    first.headers = vec![(name, vec![])];
    let mut records = vec![first];
    records.extend((1..4).map(|i| Rec::new(0, None, format!("r{i}"))));
    kafka.produce(&topic, &records).await;
    let run = Running::start(config(&kafka.bootstrap, &topic, &group, &app.url(), |_| {}));
    wait_until_async("all four delivered and committed", || async {
        kafka.committed(&group, &topic, 1).await == vec![Some(4)]
    })
    .await;
    let stats = run.stop().await;
    assert_eq!(stats.delivered, 4);
    assert_eq!(stats.lane_panics, 0);
    let first = &app.received()[0];
    assert_eq!(&first.body[..], b"first");
    assert_eq!(first.header("kcp-headers-dropped"), Some("1"));
}
