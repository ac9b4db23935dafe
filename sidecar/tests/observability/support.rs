//! Shared harness: the pipeline suite's Kafka and recording app, plus an admin server and a
//! minimal HTTP GET.

#[allow(dead_code)]
#[path = "../pipeline/support/app.rs"]
pub mod app;
#[allow(dead_code)]
#[path = "../pipeline/support/kafka.rs"]
pub mod kafka;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use kcp_crds::SidecarConfig;
use kcp_sidecar::{Pipeline, PipelineError, Stats, admin::Admin};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

/// A test config: short backoffs and intervals, librdkafka statistics every 100 ms.
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
            "clientConfig": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500",
                             "statistics.interval.ms": "100"}
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
            "retry": {"maxAttempts": 10, "initialBackoff": "5ms", "maxBackoff": "50ms", "multiplier": 2.0},
            "onExhausted": "deadLetter"
        },
        "log": {"level": "debug", "format": "plain"}
    });
    patch(&mut v);
    SidecarConfig::parse(&v.to_string()).unwrap_or_else(|e| panic!("test config invalid: {e}"))
}

/// A pipeline and its admin server, running in-process.
pub struct Observed {
    pub stats: Arc<Stats>,
    pub admin: SocketAddr,
    shutdown: CancellationToken,
    stop_admin: CancellationToken,
    task: JoinHandle<Result<(), PipelineError>>,
}

impl Observed {
    pub async fn start(config: SidecarConfig, health_threshold: Duration) -> Self {
        let pipeline = Pipeline::new(config);
        let stats = pipeline.stats();
        let admin = Admin::new(Arc::clone(&stats))
            .health_threshold(health_threshold)
            .bind("127.0.0.1:0".parse().expect("valid addr"))
            .await
            .expect("admin binds");
        let addr = admin.local_addr();
        let stop_admin = CancellationToken::new();
        tokio::spawn(admin.serve(stop_admin.clone()));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(pipeline.run(shutdown.clone()));
        Self {
            stats,
            admin: addr,
            shutdown,
            stop_admin,
            task,
        }
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        get(self.admin, path).await
    }

    /// Graceful stop of the pipeline; the admin server keeps serving.
    pub async fn stop_pipeline(&mut self) {
        self.shutdown.cancel();
        (&mut self.task)
            .await
            .expect("pipeline task")
            .expect("pipeline ran cleanly");
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.stop_admin.cancel();
    }
}

/// `GET path` over HTTP/1.0: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the admin server");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nhost: test\r\n\r\n").as_bytes())
        .await
        .expect("send request");
    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .await
        .expect("read response");
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {raw:?}"));
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the metric line `series` (name with labels, exactly as exposed), if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().expect("numeric metric value"))
    })
}

/// Waits until `cond` holds; the bound only stops a broken build from hanging.
pub async fn wait_until_async<F: std::future::Future<Output = bool>>(
    what: &str,
    mut cond: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free local port (bound then released) for an app that starts later.
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr")
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
