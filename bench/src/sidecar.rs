//! The sidecar under test, as a child process of the bench.
//!
//! The bench re-executes itself (`std::env::current_exe()`) with the hidden `sidecar-child`
//! subcommand, which runs the sidecar's library as `kcp-sidecar` does: parse the config with
//! `SidecarConfig::parse`, `kcp_sidecar::telemetry::init`, then `kcp_sidecar::serve::serve`
//! (the pipeline and its admin server) on `kcp_sidecar::serve::runtime()` — the very functions
//! `sidecar/src/main.rs` calls. Running it as a child isolates its resident memory and CPU time, which
//! are read from `/proc/<pid>`. Two differences, both outside the pipeline: shutdown is
//! triggered by the end of stdin (the bench closes it, or dies) instead of SIGTERM, and every
//! 250 ms the child prints its pipeline `StatsSnapshot` as a JSON line on stdout so the bench
//! knows when it has joined the group.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, bail};
use kcp_crds::{
    SidecarConfig,
    config::{BatchConfig, Concurrency, OutageConfig},
    v1alpha1::{OnExhausted, Ordering, RetrySpec},
};
use kcp_sidecar::{serve, telemetry};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, ChildStdin, Command},
};
use tokio_util::sync::CancellationToken;

use crate::proc::{ProcSample, clock_ticks_per_sec, sample};

/// Name of the hidden subcommand that runs the sidecar.
pub const CHILD_SUBCOMMAND: &str = "sidecar-child";

/// What a benchmark run changes in the sidecar's config; everything else is fixed below.
#[derive(Clone, Debug)]
pub struct Setup {
    pub topic: String,
    pub group: String,
    pub ordering: Ordering,
    pub max_in_flight: u32,
    /// Extra librdkafka properties (`kafka.clientConfig`).
    pub client_config: Vec<(String, String)>,
    pub flow: Flow,
    /// `delivery.batch` (docs/batch.md); `None`: left out of the config, one record per request.
    pub batch: Option<BatchConfig>,
}

/// The delivery settings the flow scenarios (capacity, outage) choose. `Flow::default()` is
/// what the other scenarios run: fixed `maxInFlight`, outage detection with its defaults, and
/// quick retries (3 attempts, 10–100 ms) that skip a record they give up, so a failure never
/// stalls a throughput run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    pub concurrency: Concurrency,
    /// `delivery.outage: null` (detection off) instead of its defaults.
    pub outage_off: bool,
    /// The resource's defaults for `delivery.retry` and `delivery.onExhausted` (5 attempts,
    /// 1 s doubling up to 60 s, then the dead-letter topic `<topic>-dlq`), as a user gets them.
    pub resource_retry: bool,
}

/// The JSON name of an ordering mode.
pub fn ordering_name(o: Ordering) -> &'static str {
    match o {
        Ordering::Partition => "partition",
        Ordering::Key => "key",
        Ordering::Unordered => "unordered",
    }
}

/// The config the sidecar gets: built as JSON and checked by the sidecar's own parser.
pub fn config(bootstrap: &str, sink_url: &str, s: &Setup) -> anyhow::Result<SidecarConfig> {
    let client_config: serde_json::Map<String, Value> = s
        .client_config
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut v = json!({
        "kafka": {
            "bootstrapServers": bootstrap,
            "topics": [s.topic],
            "groupId": s.group,
            "initialOffset": "earliest",
            "clientConfig": client_config,
        },
        "endpoint": {
            "url": sink_url,
            "connectTimeout": "1s",
            "requestTimeout": "10s",
            "retryOn": ["5xx", "408", "429"],
        },
        "delivery": {
            "ordering": ordering_name(s.ordering),
            "maxInFlight": s.max_in_flight,
            "guarantee": "atLeastOnce",
            "commitInterval": "1s",
            "drainTimeout": "5s",
            "retry": { "maxAttempts": 3, "initialBackoff": "10ms", "maxBackoff": "100ms", "multiplier": 2.0 },
            "onExhausted": "skip",
            "concurrency": s.flow.concurrency,
            "outage": (!s.flow.outage_off).then(OutageConfig::default),
        },
        "admin": { "listen": "127.0.0.1:0" },
        "log": { "level": "warn", "format": "plain" },
    });
    if s.flow.resource_retry {
        v["delivery"]["retry"] = serde_json::to_value(RetrySpec::default())?;
        v["delivery"]["onExhausted"] = serde_json::to_value(OnExhausted::default())?;
    }
    if let Some(batch) = &s.batch {
        v["delivery"]["batch"] = serde_json::to_value(batch)?;
    }
    SidecarConfig::parse(&v.to_string()).map_err(|e| anyhow::anyhow!("bench sidecar config: {e}"))
}

/// The child side: runs the pipeline until stdin closes, through the same `serve` as the binary.
pub fn run_child(config_path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let config = SidecarConfig::parse(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    telemetry::init(config.log.format, config.log.level.as_str());
    // The same runtime and admin wiring as `kcp-sidecar` (kcp_sidecar::serve); only what stops
    // it differs: stdin closing instead of SIGTERM.
    serve::runtime()?.block_on(async move {
        let shutdown = CancellationToken::new();
        let on_eof = shutdown.clone();
        std::thread::Builder::new()
            .name("kcp-bench-stdin".into())
            .spawn(move || {
                let mut buf = [0u8; 64];
                let mut stdin = std::io::stdin().lock();
                while matches!(std::io::Read::read(&mut stdin, &mut buf), Ok(n) if n > 0) {}
                on_eof.cancel();
            })?;
        serve::serve(config, Default::default(), false, shutdown, |stats| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    let line = serde_json::to_string(&stats.snapshot()).unwrap_or_default();
                    let mut out = std::io::stdout().lock();
                    if std::io::Write::write_all(&mut out, format!("{line}\n").as_bytes()).is_err()
                    {
                        return;
                    }
                    let _ = std::io::Write::flush(&mut out);
                }
            });
        })
        .await
        .context("running the pipeline")
    })
}

/// Copies this program into `dir` and returns the copy's path. Every sidecar child runs the
/// copy, so a rebuild of `target/` during a run (other builders share it) can neither break the
/// run nor mix two versions of the sidecar in one report.
pub fn pin_executable(dir: &Path) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let pinned = dir.join("kcp-bench-pinned");
    std::fs::copy(&exe, &pinned)
        .with_context(|| format!("copying {} to {}", exe.display(), pinned.display()))?;
    Ok(pinned)
}

/// A running sidecar child.
pub struct SidecarProc {
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    latest: Arc<Mutex<Option<Value>>>,
    log: PathBuf,
    ticks: u64,
}

impl SidecarProc {
    /// Writes the config under `dir` and starts `exe sidecar-child` (a pinned copy of this
    /// program, see [`pin_executable`]); its log goes to `<dir>/<label>.log`.
    pub async fn spawn(
        exe: &Path,
        config: &SidecarConfig,
        dir: &Path,
        label: &str,
    ) -> anyhow::Result<Self> {
        let cfg_path = dir.join(format!("{label}.json"));
        std::fs::write(&cfg_path, config.to_json_pretty())?;
        let log = dir.join(format!("{label}.log"));
        let mut child = Command::new(exe)
            .arg(CHILD_SUBCOMMAND)
            .arg("--config")
            .arg(&cfg_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .context("starting the sidecar child")?;
        let pid = child.id().context("sidecar child has no pid")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("sidecar child stdout")?;
        let latest = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&latest);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    *sink.lock().expect("invariant: stats lock never poisoned") = Some(v);
                }
            }
        });
        Ok(Self {
            child,
            pid,
            stdin,
            latest,
            log,
            ticks: clock_ticks_per_sec(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Resident memory and CPU time now.
    pub fn sample(&self) -> Option<ProcSample> {
        sample(self.pid, self.ticks)
    }

    /// The latest `StatsSnapshot` the child printed, as JSON.
    pub fn stats(&self) -> Option<Value> {
        self.latest
            .lock()
            .expect("invariant: stats lock never poisoned")
            .clone()
    }

    /// A counter of the latest `StatsSnapshot` by its JSON name (`deadLettered`); 0 when absent.
    pub fn stat_u64(&self, name: &str) -> u64 {
        self.stats()
            .and_then(|v| v.get(name).and_then(Value::as_u64))
            .unwrap_or(0)
    }

    /// Records the sidecar's pipeline says it delivered.
    pub fn delivered(&self) -> u64 {
        self.stat_u64("delivered")
    }

    /// Waits until the child holds an assignment with `partitions` partitions.
    pub async fn wait_joined(
        &mut self,
        partitions: usize,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let started = tokio::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "sidecar child exited with {status} before joining; see {}",
                    self.log.display()
                );
            }
            let joined = self.stats().is_some_and(|v| {
                v.get("joined").and_then(Value::as_bool) == Some(true)
                    && v.get("partitions")
                        .and_then(Value::as_object)
                        .map(|m| m.len())
                        == Some(partitions)
            });
            if joined {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!(
                    "sidecar child did not join within {timeout:?}; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Closes stdin (graceful shutdown: drain, commit, leave the group) and waits; kills the
    /// child after `timeout`.
    pub async fn stop(mut self, timeout: Duration) -> anyhow::Result<()> {
        drop(self.stdin.take());
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!(
                        "sidecar child exited with {status}; see {}",
                        self.log.display()
                    );
                }
                Ok(())
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("sidecar child did not stop within {timeout:?}; killed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(flow: Flow) -> Setup {
        Setup {
            topic: "t".into(),
            group: "g".into(),
            ordering: Ordering::Key,
            max_in_flight: 64,
            client_config: Vec::new(),
            flow,
            batch: None,
        }
    }

    fn parsed(flow: Flow) -> SidecarConfig {
        config("127.0.0.1:9092", "http://127.0.0.1:1/records", &setup(flow)).expect("valid config")
    }

    #[test]
    fn the_default_flow_is_fixed_with_outage_detection_and_quick_skipping_retries() {
        let c = parsed(Flow::default());
        assert_eq!(c.delivery.concurrency, Concurrency::Fixed);
        assert_eq!(c.delivery.outage, Some(OutageConfig::default()));
        assert_eq!(c.delivery.retry.max_attempts, 3);
        assert_eq!(c.delivery.on_exhausted, OnExhausted::Skip);
    }

    #[test]
    fn a_flow_turns_adaptive_detection_off_and_the_resource_retries_on() {
        let c = parsed(Flow {
            concurrency: Concurrency::Adaptive,
            outage_off: true,
            resource_retry: true,
        });
        assert_eq!(c.delivery.concurrency, Concurrency::Adaptive);
        assert_eq!(c.delivery.outage, None);
        let r = RetrySpec::default();
        assert_eq!(
            (
                c.delivery.retry.max_attempts,
                c.delivery.retry.initial_backoff
            ),
            (r.max_attempts as u32, r.initial_backoff)
        );
        assert_eq!(c.delivery.on_exhausted, OnExhausted::DeadLetter);
        assert_eq!(c.delivery.dead_letter_topic_for("t"), "t-dlq");
    }

    #[test]
    fn a_batch_goes_into_the_config_only_when_set() {
        let batch = BatchConfig {
            max_records: 100,
            max_bytes: 1 << 20,
            max_wait: kcp_crds::Duration::from_millis(0),
        };
        let with = Setup {
            batch: Some(batch.clone()),
            ..setup(Flow::default())
        };
        let c = config("127.0.0.1:9092", "http://127.0.0.1:1/records", &with).expect("valid");
        assert_eq!(c.delivery.batch, Some(batch));
        assert_eq!(parsed(Flow::default()).delivery.batch, None);
        let json = parsed(Flow::default()).to_json_pretty();
        assert!(!json.contains("\"batch\""), "{json}");
    }
}
