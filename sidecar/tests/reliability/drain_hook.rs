//! Pod deletion as the kubelet does it: the app container's `preStop` hook calls the sidecar's
//! `/drain` and the sidecar gets SIGTERM at the same moment. The hook must return only once the
//! sidecar sends the app nothing more (drained, committed, left the group): after its answer the
//! kubelet stops the app, so a request after it would hit a stopping app. The next pod delivers
//! the rest, and sends no record the first one finished.

use std::time::{Duration, Instant};

use crate::support::{
    Overflows, Row,
    broker::Broker,
    check::{Order, check},
    config, keyed, report, rng, settle,
    sidecar::{Sidecar, http_get},
    sink::{Action, Sink, behaviour},
    unique,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_hook_returns_only_after_the_last_request_to_the_app() {
    let test = "preStop /drain with SIGTERM";
    let (seed, mut rng) = rng(test);
    let broker = Broker::start(1);
    let (topic, group) = (unique("hook"), unique("g"));
    broker.create_topic(&topic, 2).await;
    // Slow app: requests are in flight when the pod is deleted.
    let sink = Sink::start(behaviour(|_| Action::Accept(Duration::from_millis(150)))).await;
    let ledger = Default::default();
    let producer = broker.producer(&ledger);
    let cfg = config(&broker.bootstrap, &topic, &group, &sink.url(), "key");
    let msgs = keyed(&mut rng, 16, 400, &mut Vec::new(), |_| false);
    producer.send(&topic, &msgs).await;
    let mut sidecar =
        Sidecar::start_with_env(&cfg, Some("orders-0"), &[("KCP_DRAIN_HOOK", "true")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.len() < 20 {
        assert!(Instant::now() < deadline, "{}", sidecar.tail());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut overflows = Overflows::default();
    overflows.read(&sidecar).await;
    // The kubelet: the app's hook and the sidecar's SIGTERM together.
    let hook = {
        let addr = sidecar.admin_addr().await;
        tokio::spawn(async move { http_get(addr, "/drain").await })
    };
    sidecar.term();
    let (status, body) = hook.await.expect("hook task");
    let answered = Instant::now();
    assert_eq!(status, 200, "{body}\n{}", sidecar.tail());
    assert!(body.starts_with("stopped"), "{body}");
    let exit = sidecar.wait(Duration::from_secs(60)).await;
    assert_eq!(exit.code(), Some(0), "{}", sidecar.tail());
    sidecar.assert_no_panic();
    let hits = sink.hits();
    let late: Vec<_> = hits.iter().filter(|h| h.at > answered).collect();
    assert!(
        late.is_empty(),
        "{} requests reached the app after the hook returned: {:?}",
        late.len(),
        late.iter()
            .map(|h| (h.partition, h.offset))
            .collect::<Vec<_>>()
    );
    let before_restart = hits.len();
    // What was not finished is delivered by the next pod; nothing lost.
    sink.set_epoch(1);
    let mut next = Sidecar::start(&cfg, Some("orders-1"));
    settle(&broker, &sink, &ledger, None, Duration::from_secs(90)).await;
    overflows.read(&next).await;
    next.stop().await;
    let produced = ledger.lock().expect("ledger lock").clone();
    let r = check(&produced, &sink.hits(), &[], Order::Key);
    eprintln!("{test}: seed {seed}; {before_restart} delivered before the hook answered; {r:?}");
    report(&Row::of(
        test,
        1,
        &r,
        overflows,
        format!("seed {seed}; {before_restart} requests before the hook answered"),
    ));
    r.assert_ok(test);
    r.assert_no_finished_replays(test);
}
