//! Test harness: a Kafka (mock or real), a recording app, configs, and a running pipeline.

pub mod app;
pub mod kafka;
pub mod raw;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use kcp_crds::SidecarConfig;
use kcp_sidecar::{Pipeline, PipelineError, Stats, StatsSnapshot};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A test config: short backoffs and intervals; `patch` edits the JSON before parsing.
pub fn config(
    bootstrap: &str,
    topic: &str,
    group: &str,
    url: &str,
    patch: impl FnOnce(&mut Value),
) -> SidecarConfig {
    let mut v = json!({
        "kafka": {
            "bootstrapServers": bootstrap,
            "topics": [topic],
            "groupId": group,
            "initialOffset": "earliest",
            "clientConfig": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}
        },
        "endpoint": {
            "url": url,
            "connectTimeout": "1s",
            "requestTimeout": "5s",
            "retryOn": ["5xx", "408", "429"]
        },
        "delivery": {
            "ordering": "partition",
            "maxInFlight": 4,
            "guarantee": "atLeastOnce",
            "commitInterval": "20ms",
            "drainTimeout": "10s",
            "retry": {"maxAttempts": 3, "initialBackoff": "5ms", "maxBackoff": "20ms", "multiplier": 2.0},
            "onExhausted": "deadLetter"
        },
        "log": {"level": "debug", "format": "plain"}
    });
    patch(&mut v);
    SidecarConfig::parse(&v.to_string()).unwrap_or_else(|e| panic!("test config invalid: {e}"))
}

/// A pipeline running in-process on the test's runtime.
pub struct Running {
    pub shutdown: CancellationToken,
    pub abort: CancellationToken,
    pub stats: Arc<Stats>,
    task: JoinHandle<Result<(), PipelineError>>,
}

impl Running {
    pub fn start(config: SidecarConfig) -> Self {
        Self::start_with(config, |p| p)
    }

    /// [`Running::start`] with the pipeline's other settings (`build`), e.g. a control file.
    pub fn start_with(config: SidecarConfig, build: impl FnOnce(Pipeline) -> Pipeline) -> Self {
        let (shutdown, abort) = (CancellationToken::new(), CancellationToken::new());
        let pipeline = build(Pipeline::new(config)).abort_on(abort.clone());
        let stats = pipeline.stats();
        let task = tokio::spawn(pipeline.run(shutdown.clone()));
        Self {
            shutdown,
            abort,
            stats,
            task,
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Graceful shutdown: drain, commit, leave.
    pub async fn stop(self) -> StatsSnapshot {
        self.shutdown.cancel();
        self.task
            .await
            .expect("pipeline task")
            .expect("pipeline ran cleanly");
        self.stats.snapshot()
    }

    /// Abrupt stop: no drain, no further commit.
    pub async fn kill(self) -> StatsSnapshot {
        self.abort.cancel();
        self.task
            .await
            .expect("pipeline task")
            .expect("pipeline ran cleanly");
        self.stats.snapshot()
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Waits until `cond` holds; panics with `what` after a generous bound (not a timing assert:
/// the bound only stops a broken build from hanging).
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Like [`wait_until`] with an async condition.
pub async fn wait_until_async<F: Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
