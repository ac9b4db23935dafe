//! `GET /drain`: the app containers' `preStop` hook. Answers once the sidecar sends the app
//! nothing more, so the kubelet stops the app only after that (ARCHITECTURE.md "Pod lifecycle").
//!
//! - **The pod is being deleted** (the sidecar got SIGTERM at the same moment, or gets it within
//!   [`SIGNAL_GRACE`]): waits until the shutdown finished: dispatched records finished against
//!   the still-running app (or given up at the shutdown's deadline), offsets committed, the group
//!   left. Answers `200 stopped`.
//! - **Only the app container stops** (a failed liveness probe restarts it alone): the sidecar
//!   stays in the group with its partitions. The readiness gate is held ([`Gate::hold`]): nothing
//!   new is sent until the app was seen down and answers again. Answers `200 held` once no request
//!   is in flight (or after `drainTimeout`, `503` with the count).
//!
//! Kubernetes bounds the hook by the pod's termination grace period; so is the wait here.
//!
//! [`Gate::hold`]: crate::gate::Gate::hold

use std::{
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};

use http::StatusCode;
use tracing::info;

use crate::stats::Stats;

/// How long a `/drain` call waits for a SIGTERM before it treats the stop as the app's alone:
/// the kubelet runs the app's hook and signals the sidecar at about the same moment.
pub const SIGNAL_GRACE: Duration = Duration::from_secs(1);
/// How often the handler looks at the shutdown and the requests in flight.
const CHECK: Duration = Duration::from_millis(20);

/// What `/drain` answers, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
}

/// Serves one `/drain` call; `drain_timeout` bounds the wait for requests in flight when only
/// the app stops.
pub async fn drain(stats: &Stats, drain_timeout: Duration) -> Answer {
    let called = Instant::now();
    if !stats.shutdown.is_started() {
        stats.gate.hold(drain_timeout + SIGNAL_GRACE);
        // A shutdown that began meanwhile lifted holds already: this one must not outlive it.
        if stats.shutdown.is_started() {
            stats.gate.release_hold();
        }
    }
    loop {
        if stats.shutdown.is_started() {
            stats.shutdown.finished().await;
            stats.shutdown.set_hook_answered();
            info!(
                waited_ms = called.elapsed().as_millis() as u64,
                "Answered the app's preStop hook: drained, committed, left the group"
            );
            return Answer {
                status: StatusCode::OK,
                body: "stopped: dispatched records finished or handed back, offsets committed, left the group\n".into(),
            };
        }
        let in_flight = stats.in_flight.load(Relaxed);
        let waited = called.elapsed();
        if waited >= SIGNAL_GRACE && in_flight == 0 {
            info!(
                "Answered the app's preStop hook: nothing in flight; sending resumes when the app is ready again"
            );
            return Answer {
                status: StatusCode::OK,
                body: "held: nothing in flight; records are sent again once the app answers after its restart\n".into(),
            };
        }
        if waited >= SIGNAL_GRACE + drain_timeout {
            return Answer {
                status: StatusCode::SERVICE_UNAVAILABLE,
                body: format!(
                    "held, but {in_flight} requests still in flight after drainTimeout; they wait for the app\n"
                ),
            };
        }
        tokio::time::sleep(CHECK).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn an_app_restart_alone_holds_the_gate_and_answers_when_nothing_is_in_flight() {
        let stats = Stats::default();
        stats.gate.open();
        stats.in_flight.store(1, Relaxed);
        let stats = Arc::new(stats);
        let call = {
            let stats = Arc::clone(&stats);
            tokio::spawn(async move { drain(&stats, Duration::from_secs(60)).await })
        };
        while !stats.gate.is_held() {
            tokio::time::sleep(CHECK).await;
        }
        assert!(!stats.gate.is_open(), "nothing new is fetched");
        assert!(!call.is_finished(), "a request is still in flight");
        stats.in_flight.store(0, Relaxed);
        let answer = call.await.expect("handler");
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.body.starts_with("held"), "{answer:?}");
        assert!(stats.gate.is_held(), "still held until the app restarts");
        assert!(!stats.shutdown.hook_answered());
    }

    #[tokio::test]
    async fn at_pod_deletion_it_answers_only_once_the_shutdown_finished() {
        let stats = Arc::new(Stats::default());
        let call = {
            let stats = Arc::clone(&stats);
            tokio::spawn(async move { drain(&stats, Duration::from_secs(60)).await })
        };
        // SIGTERM arrives just after the hook's call (the pipeline lifts the hold then).
        while !stats.gate.is_held() {
            tokio::time::sleep(CHECK).await;
        }
        stats.shutdown.begin(Duration::from_secs(60));
        stats.gate.release_hold();
        // Longer than the grace for a signal: the handler must keep waiting for the shutdown.
        tokio::time::sleep(SIGNAL_GRACE + Duration::from_millis(200)).await;
        assert!(!call.is_finished(), "answered before the sidecar finished");
        stats.shutdown.finish();
        let answer = call.await.expect("handler");
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.body.starts_with("stopped"), "{answer:?}");
        assert!(stats.shutdown.hook_answered());
    }
}
