//! A batch holding a record of a crash loop: in the ordered modes the record is dead-lettered
//! when its turn comes, after the entries before it ended, and the entries after it go in the
//! next request; against librdkafka's mock cluster and an in-process app.

use std::{convert::Infallible, sync::Mutex as StdMutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use rdkafka::mocking::MockCluster;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::super::*;
use crate::{
    dispatch::{Job, PartitionState},
    progress::RecordState,
    record::Record,
};

/// An app answering every request 200 with an empty body; returns its URL and the offsets of
/// each request's entries, in arrival order.
async fn app() -> (String, Arc<StdMutex<Vec<Vec<i64>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Arc<StdMutex<Vec<Vec<i64>>>> = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let log = Arc::clone(&log);
                    async move {
                        let body = req.into_body().collect().await.expect("body").to_bytes();
                        let entries: Vec<serde_json::Value> =
                            serde_json::from_slice(&body).expect("a batch");
                        let offsets = entries
                            .iter()
                            .map(|e| e["offset"].as_i64().expect("offset"));
                        log.lock().expect("log").push(offsets.collect());
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (format!("http://{addr}/x"), seen)
}

fn config(bootstrap: &str, url: &str, ordering: &str) -> SidecarConfig {
    let json = serde_json::json!({
        "kafka": {"bootstrapServers": bootstrap, "topics": ["t"], "groupId": "g"},
        "endpoint": {"url": url, "connectTimeout": "1s", "requestTimeout": "5s", "retryOn": ["5xx"]},
        "delivery": {"ordering": ordering, "maxInFlight": 4, "guarantee": "atLeastOnce",
                     "commitInterval": "1s", "drainTimeout": "1s", "maxCrashes": 3,
                     "retry": {"maxAttempts": 3, "initialBackoff": "5ms", "maxBackoff": "20ms", "multiplier": 2.0},
                     "onExhausted": "deadLetter",
                     "batch": {"maxRecords": 10, "maxBytes": 1_048_576}}
    });
    SidecarConfig::parse(&json.to_string()).unwrap_or_else(|e| panic!("test config invalid: {e}"))
}

/// Runs offsets 5, 6 and 7 as one batch, 6 having been in flight during 3 crashes; returns
/// the requests the app saw and how many records were delivered and dead-lettered.
async fn run(ordering: &str) -> (Vec<Vec<i64>>, u64, u64) {
    let mock = MockCluster::new(1).expect("mock cluster");
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("t-dlq", 1, 1).expect("dead-letter topic");
    let (url, seen) = app().await;
    let config = config(&bootstrap, &url, ordering);
    let stats = Arc::new(Stats::default());
    let tracker = Arc::new(Mutex::new(OffsetTracker::new()));
    let tp = Tp::new("t", 0);
    let epoch = {
        let mut t = tracker.lock().expect("tracker");
        let epoch = t.assign(tp.clone());
        for o in 5..8 {
            t.dispatched(&tp, o);
        }
        epoch
    };
    let deliverer = Deliverer::new(
        &config,
        Forwarder::from_config(&config, None).expect("forwarder"),
        DeadLetter::new(&config, &|_| None).expect("dead-letter producer"),
        Arc::clone(&tracker),
        Arc::clone(&stats),
    );
    let state = Arc::new(PartitionState::new(
        tp.clone(),
        epoch,
        CancellationToken::new(),
        CancellationToken::new(),
    ));
    let jobs: Vec<Arc<Job>> = (5..8)
        .map(|offset| {
            let record = Record {
                tp: tp.clone(),
                offset,
                timestamp: None,
                key: Some(Bytes::from_static(b"k")),
                value: Bytes::from_static(b"v"),
                headers: vec![],
                unreadable_headers: 0,
            };
            let job = Job::new(record, Arc::clone(&state));
            let crashes = if offset == 6 { 3 } else { 0 };
            Arc::new(job.with_prior(RecordState {
                crashes,
                ..Default::default()
            }))
        })
        .collect();
    deliverer.process_batch(&jobs).await;
    let seen = seen.lock().expect("log").clone();
    (
        seen,
        stats.delivered.load(Relaxed),
        stats.dead_lettered.load(Relaxed),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_order_a_crash_looped_entry_waits_for_its_turn() {
    let (seen, delivered, dead_lettered) = run("key").await;
    assert_eq!(seen, vec![vec![5], vec![7]], "the request stops before it");
    assert_eq!((delivered, dead_lettered), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_a_crash_looped_entry_is_left_out_of_the_request() {
    let (seen, delivered, dead_lettered) = run("unordered").await;
    assert_eq!(seen, vec![vec![5, 7]]);
    assert_eq!((delivered, dead_lettered), (2, 1));
}
