//! The capacity scenario (issue 17, 3a): an app whose capacity changes while the sidecar
//! delivers to it, with `concurrency: adaptive` against every fixed `maxInFlight` of a sweep,
//! all in the same run.
//!
//! The app model ([`crate::sink::app`]): a pool of workers, each request served in 5 ms; past
//! the pool requests wait in a queue as long as the pool (latency rises up to 10 ms), past the
//! queue they are shed with 503 at once. The pool has 8 workers, then 32, then 4
//! (`Plan::capacity_phases`). The first phase starts with the sidecar's first request; the
//! bench changes the capacity at each phase's end. Per phase and run: records/s (2xx answers),
//! p99 latency at the app (arrival to answer, 2xx), errors (non-2xx answers), and for the
//! adaptive run its limit. [`figures`] picks the best and worst fixed setting per phase and
//! judges the goals: within 10% of the best in each phase; no error storm after a drop.

pub mod figures;

use std::time::Duration;

use kcp_crds::config::Concurrency;
use serde::Serialize;
use tokio::time::Instant;

use super::{
    Ctx,
    flow::{self, ORDERING, PARTITIONS, VALUE_SIZE},
};
use crate::{
    answers,
    clock::now_ns,
    sidecar::{Flow, ordering_name},
    sink::app::App,
    stats::Summary,
};
pub use figures::{Phase, PhaseGoal, Run, Setting};

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    pub phases: Vec<Phase>,
    pub service_ms: u64,
    pub partitions: i32,
    pub ordering: &'static str,
    pub value_size: usize,
    pub records: u64,
    pub runs: Vec<Run>,
    pub goals: Vec<PhaseGoal>,
    pub errors: Vec<String>,
}

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<Capacity> {
    let plan = ctx.plan;
    let phases = plan.capacity_phases.clone();
    anyhow::ensure!(!phases.is_empty(), "no capacity phases");
    let service = Duration::from_millis(plan.app_service_ms);
    let (topic, records) =
        flow::topic(ctx, "capacity", figures::records_needed(&phases, service)).await?;
    let settings = plan
        .capacity_sweep
        .iter()
        .map(|&n| Setting::Fixed(n))
        .chain([Setting::Adaptive(plan.capacity_adaptive_max_in_flight)]);
    let mut runs = Vec::new();
    let mut errors = Vec::new();
    for setting in settings {
        match run_one(ctx, &topic, setting, &phases, service).await {
            Ok(r) => {
                if r.phases.iter().map(|w| w.ok + w.errors).sum::<u64>() >= records {
                    errors.push(format!(
                        "{}: every record was delivered before the end; the topic was too small",
                        setting.label()
                    ));
                }
                runs.push(r);
            }
            Err(e) => errors.push(format!("{}: {e:#}", setting.label())),
        }
    }
    Ok(Capacity {
        goals: figures::goals(&phases, &runs),
        phases,
        service_ms: plan.app_service_ms,
        partitions: PARTITIONS,
        ordering: ordering_name(ORDERING),
        value_size: VALUE_SIZE,
        records,
        runs,
        errors,
    })
}

async fn run_one(
    ctx: &Ctx<'_>,
    topic: &str,
    setting: Setting,
    phases: &[Phase],
    service: Duration,
) -> anyhow::Result<Run> {
    let app = App::new(phases[0].capacity as usize, service);
    let (max_in_flight, concurrency) = match setting {
        Setting::Fixed(n) => (n, Concurrency::Fixed),
        Setting::Adaptive(n) => (n, Concurrency::Adaptive),
    };
    let sidecar = Flow {
        concurrency,
        outage_off: false,
        resource_retry: true,
    };
    let (child, first_ns) = flow::start(ctx, topic, &app, max_in_flight, sidecar).await?;
    // The first phase began with the first request, a moment ago.
    let started = Instant::now() - Duration::from_nanos(now_ns().saturating_sub(first_ns));
    let mut bounds = vec![first_ns];
    let mut limits = vec![Vec::new(); phases.len()];
    let mut end = started;
    for (i, phase) in phases.iter().enumerate() {
        if i > 0 {
            app.set_capacity(phase.capacity as usize);
            bounds.push(now_ns());
        }
        end += Duration::from_secs_f64(phase.seconds);
        flow::sample_until(&child, end, &mut limits[i]).await;
    }
    bounds.push(now_ns());
    let counters = flow::finish(child).await?;
    let answers = app.answers();
    let run = Run {
        setting,
        phases: answers::split(&answers, &bounds),
        settled: figures::settled(&answers, &bounds, phases),
        limit: limits.iter().map(|l| Summary::of(l)).collect(),
        retried: counters.retried,
        dead_lettered: counters.dead_lettered,
        skipped: counters.skipped,
        endpoint_outages: counters.endpoint_outages,
    };
    let line: Vec<String> = run
        .phases
        .iter()
        .zip(phases)
        .map(|(w, p)| {
            format!(
                "cap {} {:.0} rec/s p99 {:.1} ms {} err",
                p.capacity,
                w.rate,
                w.p99_ms.unwrap_or(f64::NAN),
                w.errors
            )
        })
        .collect();
    eprintln!("[capacity] {}: {}", setting.label(), line.join("; "));
    Ok(run)
}
