//! The outage scenario (issue 17, 3b): the app answers 503 for 30 s, then recovers. Records
//! dead-lettered (goal 0) and the time from recovery to full speed, with the default outage
//! settings (`delivery.outage`: 5 records, 30 s window, probes up to 30 s apart).
//!
//! The app model ([`crate::sink::app`]) has 16 workers serving a request in 5 ms (a queue of
//! 16 behind them, shed past it); while down, a proxy in front of it answers every request 503
//! at once, without `Retry-After`. Each run: normal service for `outageBeforeSecs` from the
//! sidecar's first request (the reference throughput, its first second left out), down for
//! `outageSecs`, up for `outageAfterSecs`. Three runs, in the same run of the bench:
//! `maxInFlight` 16 fixed (the resource's default), adaptive up to 64, and the first again with
//! detection off (`delivery.outage: null`): what the defaults did before the breaker.
//! [`figures`] computes the figures from the app's answers.

pub mod figures;

use std::time::Duration;

use kcp_crds::config::{Concurrency, OutageConfig};
use serde::Serialize;
use tokio::time::Instant;

use super::{
    Ctx, Verdict,
    flow::{self, Counters, ORDERING, PARTITIONS},
};
use crate::{
    clock::now_ns,
    sidecar::{Flow, ordering_name},
    sink::app::App,
    stats::Summary,
};
pub use figures::{Figures, Timeline};

/// The app's workers.
pub const CAPACITY: u32 = 16;

/// One way the sidecar meets the outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Variant {
    pub concurrency: Concurrency,
    pub max_in_flight: u32,
    /// Outage detection on with its defaults, or off (`delivery.outage: null`).
    pub detection: bool,
}

impl Variant {
    pub fn label(self) -> String {
        let c = match self.concurrency {
            Concurrency::Fixed => format!("maxInFlight {} fixed", self.max_in_flight),
            Concurrency::Adaptive => format!("adaptive ≤ {}", self.max_in_flight),
        };
        let d = if self.detection {
            "outage detection on (defaults)"
        } else {
            "detection off (reference)"
        };
        format!("{c}, {d}")
    }
}

pub const VARIANTS: [Variant; 3] = [
    Variant {
        concurrency: Concurrency::Fixed,
        max_in_flight: 16,
        detection: true,
    },
    Variant {
        concurrency: Concurrency::Adaptive,
        max_in_flight: 64,
        detection: true,
    },
    Variant {
        concurrency: Concurrency::Fixed,
        max_in_flight: 16,
        detection: false,
    },
];

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub variant: Variant,
    pub figures: Figures,
    pub counters: Counters,
    /// The sidecar's limit over the run (every 250 ms).
    pub limit: Option<Summary>,
    /// Records given up (dead-lettered or skipped): 0 with detection on.
    pub verdict_dead_letters: Verdict,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outage {
    pub before_secs: f64,
    pub outage_secs: f64,
    pub after_secs: f64,
    pub capacity: u32,
    pub service_ms: u64,
    pub partitions: i32,
    pub ordering: &'static str,
    pub records: u64,
    pub detection: OutageConfig,
    /// When the breaker's next probe is due after recovery, had it opened as the outage began.
    pub next_probe_after_secs: f64,
    pub runs: Vec<Run>,
    pub errors: Vec<String>,
}

pub async fn run(ctx: &Ctx<'_>) -> anyhow::Result<Outage> {
    let plan = ctx.plan;
    let service = Duration::from_millis(plan.app_service_ms);
    let total = plan.outage_before_secs + plan.outage_secs + plan.outage_after_secs;
    // Every second at capacity, with room: more than any run takes.
    let wanted = (f64::from(CAPACITY) / service.as_secs_f64().max(1e-6) * total * 1.5) as u64;
    let (topic, records) = flow::topic(ctx, "outage", wanted).await?;
    let detection = OutageConfig::default();
    let mut runs = Vec::new();
    let mut errors = Vec::new();
    for v in VARIANTS {
        match run_one(ctx, &topic, v, service).await {
            Ok(r) => {
                if r.counters.received >= records {
                    errors.push(format!(
                        "{}: the sidecar read every record; the topic was too small",
                        v.label()
                    ));
                }
                runs.push(r);
            }
            Err(e) => errors.push(format!("{}: {e:#}", v.label())),
        }
    }
    Ok(Outage {
        before_secs: plan.outage_before_secs,
        outage_secs: plan.outage_secs,
        after_secs: plan.outage_after_secs,
        capacity: CAPACITY,
        service_ms: plan.app_service_ms,
        partitions: PARTITIONS,
        ordering: ordering_name(ORDERING),
        records,
        next_probe_after_secs: figures::next_probe_after(
            Duration::from_secs_f64(plan.outage_secs),
            detection.max_probe_interval.as_std(),
        )
        .as_secs_f64(),
        detection,
        runs,
        errors,
    })
}

async fn run_one(ctx: &Ctx<'_>, topic: &str, v: Variant, service: Duration) -> anyhow::Result<Run> {
    let plan = ctx.plan;
    let app = App::new(CAPACITY as usize, service);
    let sidecar = Flow {
        concurrency: v.concurrency,
        outage_off: !v.detection,
        resource_retry: true,
    };
    let (child, first_ns) = flow::start(ctx, topic, &app, v.max_in_flight, sidecar).await?;
    let started = Instant::now() - Duration::from_nanos(now_ns().saturating_sub(first_ns));
    let mut limits = Vec::new();
    let mut at = started + Duration::from_secs_f64(plan.outage_before_secs);
    flow::sample_until(&child, at, &mut limits).await;
    app.set_down(true);
    let down_ns = now_ns();
    eprintln!("[outage] {}: app down", v.label());
    at += Duration::from_secs_f64(plan.outage_secs);
    flow::sample_until(&child, at, &mut limits).await;
    app.set_down(false);
    let up_ns = now_ns();
    at += Duration::from_secs_f64(plan.outage_after_secs);
    flow::sample_until(&child, at, &mut limits).await;
    let end_ns = now_ns();
    let counters = flow::finish(child).await?;
    let f = figures::figures(
        &app.answers(),
        Timeline {
            first_ns,
            down_ns,
            up_ns,
            end_ns,
        },
    );
    eprintln!(
        "[outage] {}: {:.0} rec/s before; {} requests while down; first delivery {:?} s and full speed {:?} s after recovery; {} given up",
        v.label(),
        f.before.rate,
        f.during.errors,
        f.first_delivery_secs,
        f.full_speed_secs,
        counters.given_up()
    );
    Ok(Run {
        variant: v,
        figures: f,
        counters,
        limit: Summary::of(&limits),
        verdict_dead_letters: if v.detection {
            Verdict::at_most(Some(counters.given_up() as f64), 0.0)
        } else {
            Verdict::NoTarget
        },
    })
}
