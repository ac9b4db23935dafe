//! The reader with a stub source: a reconcile never waits, reads are bounded per cluster, and
//! only changed figures ask for a reconcile.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use kcp_crds::{config::SecurityProtocol, v1alpha1::DeadLetterStatus};

use super::*;
use crate::lag::DeadLetterCheck;

/// Answers reads of `alive:9092` at once with `total`; reads of any other cluster never end.
struct Stub {
    total: Mutex<i64>,
    reads: AtomicUsize,
}

impl LagSource for Arc<Stub> {
    fn read(
        &self,
        target: LagTarget,
        _: Credentials,
        _: Instant,
    ) -> BoxFuture<'static, Result<LagSnapshot, LagError>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        if target.bootstrap_servers != "alive:9092" {
            return futures::future::pending().boxed();
        }
        let total = *self.total.lock().expect("not poisoned");
        let snapshot = LagSnapshot::new(
            vec![],
            DeadLetterStatus::default(),
            vec![],
            DeadLetterCheck::default(),
        );
        async move { Ok(LagSnapshot { total, ..snapshot }) }.boxed()
    }
}

fn stub() -> Arc<Stub> {
    Arc::new(Stub {
        total: Mutex::new(5),
        reads: AtomicUsize::new(0),
    })
}

fn reader(
    stub: &Arc<Stub>,
    refresh: Duration,
    limits: ReadLimits,
) -> (LagReader, Updates, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let (reader, updates) =
        LagReader::new(Arc::new(stub.clone()), refresh, limits, metrics.clone());
    (reader, updates, metrics)
}

fn key(name: &str) -> ResourceKey {
    ResourceKey {
        namespace: "shop".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
    }
}

fn target(servers: &str, topics: &[&str]) -> LagTarget {
    LagTarget {
        bootstrap_servers: servers.into(),
        group_id: "g".into(),
        topics: topics.iter().map(|t| t.to_string()).collect(),
        dead_letter_topics: vec![],
        protocol: SecurityProtocol::Plaintext,
        sasl_mechanism: None,
    }
}

fn total(o: &LagObservation) -> Option<i64> {
    match o {
        LagObservation::Fresh { snapshot, .. } => Some(snapshot.total),
        _ => None,
    }
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn a_reconcile_gets_the_cached_figures_and_asks_for_a_read_once() {
    let stub = stub();
    let (reader, mut updates, _) = reader(&stub, HOUR, ReadLimits::default());
    let observe = || {
        reader.observe(
            &key("a"),
            target("alive:9092", &["t"]),
            Credentials::default(),
        )
    };

    assert_eq!(
        observe(),
        LagObservation::Pending,
        "nothing read yet, nothing awaited"
    );
    assert_eq!(
        updates.next().await,
        Some(key("a")),
        "the first figures ask for a reconcile"
    );
    assert_eq!(total(&observe()), Some(5));
    assert_eq!(total(&observe()), Some(5));
    assert_eq!(
        stub.reads.load(Ordering::SeqCst),
        1,
        "fresh for an hour: read once"
    );
}

#[tokio::test]
async fn unchanged_figures_ask_for_no_reconcile_and_a_new_target_voids_them() {
    let stub = stub();
    let (reader, mut updates, _) = reader(&stub, Duration::ZERO, ReadLimits::default());
    let observe = |topics: &[&str]| {
        reader.observe(
            &key("a"),
            target("alive:9092", topics),
            Credentials::default(),
        )
    };

    observe(&["t"]);
    reader.idle().await;
    assert_eq!(updates.next().await, Some(key("a")));
    assert_eq!(total(&observe(&["t"])), Some(5), "and a second read starts");
    reader.idle().await;
    assert!(
        updates.try_recv().is_err(),
        "same figures: no reconcile asked for"
    );

    *stub.total.lock().expect("not poisoned") = 9;
    assert_eq!(total(&observe(&["t"])), Some(5));
    reader.idle().await;
    assert_eq!(updates.next().await, Some(key("a")), "new figures");
    assert_eq!(total(&observe(&["t"])), Some(9));

    reader.idle().await;
    assert_eq!(
        observe(&["t", "u"]),
        LagObservation::Pending,
        "new topics, old figures void"
    );
    reader.idle().await;
    assert_eq!(stub.reads.load(Ordering::SeqCst), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_cluster_holds_its_own_slots_only() {
    let stub = stub();
    let limits = ReadLimits {
        deadline: HOUR,
        per_cluster: 2,
        ..ReadLimits::default()
    };
    let (reader, mut updates, metrics) = reader(&stub, HOUR, limits);
    for i in 0..10 {
        let k = key(&format!("dead-{i}"));
        assert_eq!(
            reader.observe(&k, target("dead:9092", &["t"]), Credentials::default()),
            LagObservation::Pending
        );
    }
    while metrics.lag_reads_running.get() < 2 || metrics.lag_reads_waiting.get() < 8 {
        tokio::task::yield_now().await;
    }

    reader.observe(
        &key("a"),
        target("alive:9092", &["t"]),
        Credentials::default(),
    );
    assert_eq!(
        updates.next().await,
        Some(key("a")),
        "read while the dead cluster hangs"
    );
    let a = reader.observe(
        &key("a"),
        target("alive:9092", &["t"]),
        Credentials::default(),
    );
    assert_eq!(total(&a), Some(5));
    assert_eq!(
        metrics.lag_reads_running.get(),
        2,
        "the dead cluster's slots"
    );
    assert_eq!(metrics.lag_reads_waiting.get(), 8);
    assert_eq!(
        stub.reads.load(Ordering::SeqCst),
        3,
        "2 dead reads started, 1 alive"
    );
    let dead = reader.observe(
        &key("dead-9"),
        target("dead:9092", &["t"]),
        Credentials::default(),
    );
    assert_eq!(
        dead,
        LagObservation::Pending,
        "still pending, not read again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_past_its_deadline_fails_and_keeps_its_slot_until_its_work_ends() {
    let stub = stub();
    let limits = ReadLimits {
        deadline: Duration::from_millis(50),
        per_cluster: 1,
        ..ReadLimits::default()
    };
    let (reader, mut updates, metrics) = reader(&stub, HOUR, limits);
    let observe = |name: &str| {
        reader.observe(
            &key(name),
            target("dead:9092", &["t"]),
            Credentials::default(),
        )
    };
    observe("a");
    while metrics.lag_reads_running.get() < 1 {
        tokio::task::yield_now().await;
    }
    observe("b");
    let mut failed = vec![updates.next().await, updates.next().await];
    failed.sort_by_key(|k| k.as_ref().map(|k| k.name.clone()));
    assert_eq!(failed, [Some(key("a")), Some(key("b"))]);

    let message = |o: LagObservation| match o {
        LagObservation::Failed { message, .. } => message,
        other => panic!("expected a failure, got {other:?}"),
    };
    let a = message(observe("a"));
    assert_eq!(a, "the read did not finish within 50ms");
    let b = message(observe("b"));
    assert!(
        b.starts_with("no read slot for this cluster within 50ms: 1 reads"),
        "{b}"
    );
    assert_eq!(metrics.lag_probe_failures.get(), 2);
    assert_eq!(
        metrics.lag_reads_running.get(),
        1,
        "a's work never ended: its slot stays taken"
    );
    assert_eq!(
        stub.reads.load(Ordering::SeqCst),
        1,
        "b never reached the cluster"
    );
}
