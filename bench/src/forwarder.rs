//! The bare forwarder as a throughput limit: the sidecar's work with none of its features.
//!
//! A child process (`forwarder-child`, the bench re-executing itself as for the sidecar, so its
//! CPU is read from `/proc/<pid>` the same way and includes librdkafka's threads) runs a bare
//! consumer assigned every partition of a preloaded topic from the beginning, with the
//! sidecar's fetch settings ([`kafka::assigned_consumer`], as the latency scenario's forwarder),
//! and POSTs each record through one pooled hyper client ([`client`]) with at most
//! `concurrency` requests in flight. Offsets are committed every second (the consumer's
//! position, no tracking of what was answered). The rate is read from the sink, as for the
//! sidecar.

use std::{
    io::{BufRead as _, Write as _},
    path::Path,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::Uri;
use rdkafka::{
    Message, Offset,
    consumer::{CommitMode, Consumer},
};
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::Semaphore,
};

use crate::{
    client, kafka,
    proc::{ProcSample, clock_ticks_per_sec, sample},
};

/// Name of the hidden subcommand that runs the bare forwarder.
pub const CHILD_SUBCOMMAND: &str = "forwarder-child";

/// What one forwarder child does (passed as JSON on its command line).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub records: u64,
    pub url: String,
    pub concurrency: u32,
    pub overrides: Vec<(String, String)>,
}

/// CPU seconds per 10,000 records; `None` without records or CPU figure.
pub fn cpu_per_10k(cpu: Option<Duration>, records: u64) -> Option<f64> {
    let cpu = cpu?;
    (records > 0).then(|| cpu.as_secs_f64() * 10_000.0 / records as f64)
}

/// The child's side: forwards `job.records` records (or until stdin closes), then waits for
/// the requests in flight, commits and exits.
pub fn run_child(job: &str) -> anyhow::Result<()> {
    let job: Job = serde_json::from_str(job).context("forwarder job")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let uri: Uri = job.url.parse()?;
    let http = client::client(job.concurrency as usize);
    let permits = Arc::new(Semaphore::new(job.concurrency.max(1) as usize));
    let c = kafka::assigned_consumer(
        &job.bootstrap,
        &job.topic,
        job.partitions,
        Offset::Beginning,
        &job.overrides,
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let stdin = std::thread::spawn(move || {
        // Stdin closing is the parent's stop signal.
        for _ in std::io::stdin().lock().lines() {}
        flag.store(true, Relaxed);
    });
    let (mut n, mut committed) = (0, Instant::now());
    while n < job.records && !stop.load(Relaxed) {
        match c.poll(Duration::from_millis(10)) {
            Some(Ok(m)) => {
                if n == 0 {
                    // Connected and fetching: the parent stops waiting for the start.
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ready")?;
                    out.flush()?;
                }
                let body = Bytes::copy_from_slice(m.payload().unwrap_or_default());
                let permit = rt.block_on(Arc::clone(&permits).acquire_owned())?;
                let (http, uri) = (http.clone(), uri.clone());
                rt.spawn(async move {
                    if let Err(e) = client::post(&http, &uri, body).await {
                        eprintln!("bare forwarder: {e:#}");
                    }
                    drop(permit);
                });
                n += 1;
            }
            Some(Err(e)) => bail!("bare forwarder consumer: {e}"),
            None => {}
        }
        if committed.elapsed() >= Duration::from_secs(1) {
            c.commit(&c.position()?, CommitMode::Async)?;
            committed = Instant::now();
        }
    }
    let _all_answered = rt.block_on(permits.acquire_many(job.concurrency.max(1)))?;
    c.commit(&c.position()?, CommitMode::Sync)?;
    // Stay until the parent read this process's CPU and closed stdin.
    stdin
        .join()
        .map_err(|_| anyhow::anyhow!("stdin reader panicked"))?;
    Ok(())
}

/// A running forwarder child.
pub struct ForwarderProc {
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    ticks: u64,
}

impl ForwarderProc {
    /// Starts `exe forwarder-child` (the pinned copy of this program) and waits until its
    /// consumer read its first record; its log goes to `<dir>/<label>.log`.
    pub async fn spawn(exe: &Path, job: &Job, dir: &Path, label: &str) -> anyhow::Result<Self> {
        let log = dir.join(format!("{label}.log"));
        let mut child = Command::new(exe)
            .arg(CHILD_SUBCOMMAND)
            .arg(serde_json::to_string(job)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .context("starting the forwarder child")?;
        let pid = child.id().context("forwarder child has no pid")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("forwarder child stdout")?;
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .context("forwarder child not ready within 30 s")??;
        if line.trim() != "ready" {
            bail!("forwarder child failed to start; see {}", log.display());
        }
        Ok(Self {
            child,
            pid,
            stdin,
            ticks: clock_ticks_per_sec(),
        })
    }

    /// CPU time (user + system) and memory now.
    pub fn sample(&self) -> Option<ProcSample> {
        sample(self.pid, self.ticks)
    }

    /// Closes its stdin and waits for it to exit.
    pub async fn stop(mut self, timeout: Duration) -> anyhow::Result<()> {
        drop(self.stdin.take());
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) if status.as_ref().is_ok_and(|s| s.success()) => Ok(()),
            Ok(status) => bail!("forwarder child exited with {:?}", status?),
            Err(_) => {
                self.child.kill().await?;
                bail!("forwarder child did not stop within {timeout:?}; killed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_10k_records() {
        let s = |ms| Some(Duration::from_millis(ms));
        assert_eq!(cpu_per_10k(s(500), 20_000), Some(0.25));
        assert_eq!(cpu_per_10k(s(0), 10_000), Some(0.0));
        assert_eq!(cpu_per_10k(s(500), 0), None);
        assert_eq!(cpu_per_10k(None, 10_000), None);
    }
}
