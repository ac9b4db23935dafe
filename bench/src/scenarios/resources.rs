//! The sidecar's own resident memory (idle, and peak while draining a backlog) and CPU time
//! per 10,000 records, read from `/proc/<pid>` of the sidecar child.
//!
//! Idle: a sidecar joined to an empty 8-partition topic, after it settled. Draining: a second
//! sidecar on a preloaded topic (unordered, maxInFlight 64: the throughput target's setup; 8
//! partitions, or on the mock broker as many as it takes to keep the whole backlog); peak is `VmHWM` at the end (sampled `VmRSS` maximum beside it). CPU is
//! `utime + stime` from the first request at the sink to the last answer, per record delivered.
//! The drain stops after `backlogCapSecs` even if records remain (the report says how many
//! were delivered).

use std::time::Duration;

use kcp_crds::v1alpha1::Ordering;
use serde::Serialize;

use super::{Ctx, Verdict};
use crate::{
    kafka::{self, Preload},
    proc::ProcSample,
    sidecar::Flow,
    sink::Delay,
};

pub const TARGET_IDLE_MIB: f64 = 20.0;
pub const TARGET_DRAIN_MIB: f64 = 64.0;
pub const TARGET_CPU_PER_10K: f64 = 0.2;
const PARTITIONS: i32 = 8;
const MAX_IN_FLIGHT: u32 = 64;
const ORDERING: Ordering = Ordering::Unordered;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub backlog: u64,
    /// Records delivered before the drain ended (all of the backlog unless capped).
    pub delivered: u64,
    pub cap_secs: u64,
    /// Partitions of the idle topic.
    pub partitions: i32,
    /// Partitions of the backlog topic (more on the mock broker, which keeps 5 MiB each).
    pub backlog_partitions: i32,
    pub ordering: &'static str,
    pub max_in_flight: u32,
    pub idle_rss_mib: f64,
    pub idle_hwm_mib: f64,
    /// CPU the joined, idle sidecar uses per second of wall time (ms/s), over 3 s.
    pub idle_cpu_ms_per_sec: f64,
    pub drain_peak_mib: f64,
    pub drain_max_sampled_rss_mib: f64,
    pub drain_seconds: f64,
    pub drain_rate: f64,
    pub cpu_seconds: f64,
    pub cpu_seconds_per_10k: f64,
    /// The same, less what the sidecar burns idle over the drain's duration (informative: at a
    /// low delivery rate the fixed per-second cost dominates the per-record figure).
    pub cpu_seconds_per_10k_above_idle: f64,
    pub verdict_idle: Verdict,
    pub verdict_drain: Verdict,
    pub verdict_cpu: Verdict,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<Resources> {
    let plan = ctx.plan;
    // Idle.
    let idle_topic = ctx.topic("idle", PARTITIONS).await?;
    ctx.sink.reset(Delay::None, false);
    let child = ctx
        .start_sidecar(
            &idle_topic,
            PARTITIONS,
            ORDERING,
            MAX_IN_FLIGHT,
            Vec::new(),
            Flow::default(),
        )
        .await?;
    let idle_start = child.sample().unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = child.sample().unwrap_or_default();
    let idle_cpu_ms_per_sec = idle.cpu.saturating_sub(idle_start.cpu).as_secs_f64() * 1000.0 / 3.0;
    child.stop(Duration::from_secs(30)).await?;
    eprintln!(
        "[resources] idle RSS {:.1} MiB (HWM {:.1} MiB)",
        mib(idle.rss_kib),
        mib(idle.hwm_kib)
    );

    // Backlog: on the mock broker (5 MiB kept per partition) spread over as many partitions as
    // it takes to keep every record.
    let backlog_partitions =
        ctx.broker
            .records_per_partition(plan.value_size)
            .map_or(PARTITIONS, |per| {
                let needed = plan.backlog.div_ceil(per.max(1));
                (needed.div_ceil(8) * 8).max(PARTITIONS as u64) as i32
            });
    let topic = ctx.topic("backlog", backlog_partitions).await?;
    let spec = Preload {
        topic: topic.clone(),
        partitions: backlog_partitions,
        records: plan.backlog,
        keys_per_partition: plan.throughput_keys_per_partition,
        value_size: plan.value_size,
        batch_bytes: plan.preload_batch_bytes,
    };
    let took = kafka::preload(&ctx.bootstrap, &spec)?;
    eprintln!(
        "[resources] preloaded {} records on {backlog_partitions} partitions in {took:.1?}",
        plan.backlog
    );
    ctx.sink.reset(Delay::None, false);
    let child = ctx
        .start_sidecar(
            &topic,
            backlog_partitions,
            ORDERING,
            MAX_IN_FLIGHT,
            Vec::new(),
            Flow::default(),
        )
        .await?;
    let mut first: Option<(ProcSample, tokio::time::Instant)> = None;
    let mut max_rss = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(plan.backlog_cap_secs);
    let mut last_report = tokio::time::Instant::now();
    let end = loop {
        let c = ctx.sink.counts();
        let s = child.sample();
        if let Some(s) = s {
            max_rss = max_rss.max(s.rss_kib);
            if c.done > 0 && first.is_none() {
                first = Some((s, tokio::time::Instant::now()));
            }
        }
        if c.done >= plan.backlog || tokio::time::Instant::now() > deadline {
            break (c, s.unwrap_or_default(), tokio::time::Instant::now());
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "[resources] draining: {} of {} delivered",
                c.done, plan.backlog
            );
            last_report = tokio::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.stop(Duration::from_secs(30)).await?;
    let (counts, last, last_at) = end;
    anyhow::ensure!(counts.done > 0, "sidecar delivered nothing of the backlog");
    let (first, first_at) = first.unwrap_or((ProcSample::default(), last_at));
    let cpu = last.cpu.saturating_sub(first.cpu).as_secs_f64();
    let tens_of_thousands = counts.done as f64 / 10_000.0;
    let per_10k = cpu / tens_of_thousands;
    let idle_share = idle_cpu_ms_per_sec / 1000.0 * (last_at - first_at).as_secs_f64();
    let above_idle = (cpu - idle_share).max(0.0) / tens_of_thousands;
    let out = Resources {
        backlog: plan.backlog,
        delivered: counts.done,
        cap_secs: plan.backlog_cap_secs,
        partitions: PARTITIONS,
        backlog_partitions,
        ordering: crate::sidecar::ordering_name(ORDERING),
        max_in_flight: MAX_IN_FLIGHT,
        idle_rss_mib: mib(idle.rss_kib),
        idle_hwm_mib: mib(idle.hwm_kib),
        idle_cpu_ms_per_sec,
        drain_peak_mib: mib(last.hwm_kib),
        drain_max_sampled_rss_mib: mib(max_rss),
        drain_seconds: counts.window_secs(),
        drain_rate: counts.rate(),
        cpu_seconds: cpu,
        cpu_seconds_per_10k: per_10k,
        cpu_seconds_per_10k_above_idle: above_idle,
        verdict_idle: Verdict::at_most(Some(mib(idle.rss_kib)), TARGET_IDLE_MIB),
        verdict_drain: Verdict::at_most(Some(mib(last.hwm_kib)), TARGET_DRAIN_MIB),
        verdict_cpu: Verdict::at_most(Some(per_10k), TARGET_CPU_PER_10K),
    };
    eprintln!(
        "[resources] drained {} of {} in {:.1}s: peak {:.1} MiB, {:.3} CPU s per 10k",
        counts.done, plan.backlog, out.drain_seconds, out.drain_peak_mib, per_10k
    );
    Ok(out)
}
