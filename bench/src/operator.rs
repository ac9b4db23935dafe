//! The operator under test, as a child process of the bench.
//!
//! The bench re-executes itself (a pinned copy, see [`crate::sidecar::pin_executable`]) with the
//! hidden `operator-child` subcommand, which runs the operator's library as `kcp-operator`'s
//! `main` does: parse [`kcp_operator::cli::Args`], `kcp_operator::telemetry::init`, then
//! [`kcp_operator::run::run`] on a multi-threaded tokio runtime. Running it as a child isolates
//! its resident memory, read from `/proc/<pid>/status`. One difference, outside the operator:
//! the end of stdin (the bench closes it, or dies) ends the process, as well as SIGTERM.
//!
//! The child gets its settings as flags ([`child_args`]): one namespace, no leader election,
//! `/metrics` on a loopback port, a one-hour lag refresh and a one-second lag probe timeout.
//! The bench reads its counters over plain HTTP ([`OperatorProc::scrape`]).

use std::{
    ffi::OsString,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, bail};
use clap::Parser;
use kcp_operator::{cli::Args, run, telemetry};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, ChildStdin, Command},
};

use crate::{
    proc::{ProcSample, clock_ticks_per_sec, sample},
    prom,
};

/// Name of the hidden subcommand that runs the operator.
pub const CHILD_SUBCOMMAND: &str = "operator-child";

/// Lag refresh interval of the child: longer than any run, so the periodic resync never fires
/// during the measurement and every reconcile in it reuses the memoized lag.
pub const LAG_REFRESH: &str = "1h";

/// Lag probe timeout of the child: the resources point at a closed port, so every first probe
/// fails. The lag reader's deadline includes waiting for one of its few slots per cluster, so
/// with one second each of 1,000 first probes has failed (and asked for the reconcile that
/// writes `KafkaReachable=False`) within about a second of its resource's first reconcile.
pub const LAG_PROBE_TIMEOUT: &str = "1s";

/// The operator's flags for a bench run (see the module docs).
pub fn child_args(namespace: &str, metrics_addr: SocketAddr) -> Vec<String> {
    vec![
        format!("--namespace={namespace}"),
        "--leader-election=false".into(),
        format!("--metrics-addr={metrics_addr}"),
        format!("--lag-refresh-interval={LAG_REFRESH}"),
        format!("--lag-probe-timeout={LAG_PROBE_TIMEOUT}"),
        "--log-format=plain".into(),
        format!("--identity=kcp-bench-{}", std::process::id()),
    ]
}

/// Parses the operator's flags as `kcp-operator` would.
pub fn parse_args(args: &[String]) -> anyhow::Result<Args> {
    Args::try_parse_from(std::iter::once("kcp-operator".to_owned()).chain(args.iter().cloned()))
        .map_err(|e| anyhow::anyhow!("operator flags: {e}"))
}

/// The child side: runs the operator until stdin closes or SIGTERM.
pub fn run_child(args: &[String]) -> anyhow::Result<()> {
    let args = parse_args(args)?;
    telemetry::init(args.log_format)?;
    std::thread::Builder::new()
        .name("kcp-bench-stdin".into())
        .spawn(|| {
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin().lock();
            while matches!(std::io::Read::read(&mut stdin, &mut buf), Ok(n) if n > 0) {}
            // Nothing to drain: no leader Lease is held, and every write is already sent.
            std::process::exit(0);
        })?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run::run(args))
}

/// A free loopback address for the child's `/metrics` (bound, then released for the child).
pub fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// A running operator child.
pub struct OperatorProc {
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    log: PathBuf,
    metrics_addr: SocketAddr,
    ticks: u64,
}

impl OperatorProc {
    /// Starts `exe operator-child <flags>` for `namespace`, with `KUBECONFIG=kubeconfig`,
    /// `RUST_LOG=warn` and `NO_COLOR=1`; its log goes to `<dir>/operator.log`.
    pub fn spawn(
        exe: &Path,
        kubeconfig: &OsString,
        namespace: &str,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let metrics_addr = free_loopback_addr()?;
        let log = dir.join("operator.log");
        let mut child = Command::new(exe)
            .arg(CHILD_SUBCOMMAND)
            .arg("--")
            .args(child_args(namespace, metrics_addr))
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            // Plain text in the log file, not terminal colours.
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .context("starting the operator child")?;
        let pid = child.id().context("operator child has no pid")?;
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            pid,
            stdin,
            log,
            metrics_addr,
            ticks: clock_ticks_per_sec(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Resident memory (and CPU time) now.
    pub fn sample(&self) -> Option<ProcSample> {
        sample(self.pid, self.ticks)
    }

    /// The last lines of the child's log, for an error message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Fails with the log's tail when the child has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the operator exited with {status}: {} (log: {})",
                self.log_tail(),
                self.log.display()
            );
        }
        Ok(())
    }

    /// GET `path` on the child's admin server; the body of a 200 answer.
    async fn get(&self, path: &str) -> anyhow::Result<String> {
        let io = async {
            let mut stream = TcpStream::connect(self.metrics_addr).await?;
            stream
                .write_all(
                    format!(
                        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                        self.metrics_addr
                    )
                    .as_bytes(),
                )
                .await?;
            let mut buf = Vec::new();
            stream.read_to_end(&mut buf).await?;
            std::io::Result::Ok(buf)
        };
        let buf = tokio::time::timeout(Duration::from_secs(5), io)
            .await
            .map_err(|_| anyhow::anyhow!("GET {path} on {} timed out", self.metrics_addr))?
            .with_context(|| format!("GET {path} on {}", self.metrics_addr))?;
        let text = String::from_utf8_lossy(&buf);
        prom::ok_body(&text)
            .map(str::to_owned)
            .map_err(|e| anyhow::anyhow!("GET {path} on {}: {e}", self.metrics_addr))
    }

    /// The child's `/metrics` text.
    pub async fn scrape(&self) -> anyhow::Result<String> {
        self.get("/metrics").await
    }

    /// Waits until `/readyz` answers 200 (connected, CRD found), failing early if the child
    /// exits (e.g. it cannot reach the cluster) or after `timeout`.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        loop {
            self.check_alive()?;
            if self.get("/readyz").await.is_ok() {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "the operator was not ready within {timeout:?}: {} (log: {})",
                    self.log_tail(),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Closes stdin (the child exits at once) and waits; kills it after `timeout`.
    pub async fn stop(mut self, timeout: Duration) -> anyhow::Result<()> {
        drop(self.stdin.take());
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => {
                status?;
                Ok(())
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("operator child did not stop within {timeout:?}; killed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_flags_parse_as_the_operator_reads_them() {
        let addr: SocketAddr = "127.0.0.1:45678".parse().expect("addr");
        let args = parse_args(&child_args("kcp-bench-1", addr)).expect("operator accepts them");
        assert_eq!(args.namespace.as_deref(), Some("kcp-bench-1"));
        assert!(!args.leader_election);
        assert_eq!(args.metrics_addr, addr);
        assert_eq!(
            args.lag_refresh_interval.as_std(),
            Duration::from_secs(3600)
        );
        assert_eq!(args.lag_probe_timeout.as_std(), Duration::from_secs(1));
        assert!(parse_args(&["--no-such-flag".into()]).is_err());
    }
}
