//! The flow scenarios' sections of the report: adaptive concurrency against a sweep of fixed
//! settings on an app whose capacity changes, and an endpoint outage.
//!
//! Pure: figures in, markdown out. Goals are printed beside the figures with a verdict.

use std::fmt::Write as _;

use super::{num, pct, thousands};
use crate::{
    answers::Window,
    scenarios::{
        capacity::{
            Capacity, Run, Setting,
            figures::{SETTLE, STORM_SHARE, TARGET_RATIO},
        },
        outage::{
            Outage,
            figures::{FIRST_PROBE_WAIT, FULL_SPEED_SHARE, SPAN, WARM_UP},
        },
    },
};

fn ms(x: Option<f64>) -> String {
    x.map_or("—".into(), |x| num(x, 1))
}

/// `1,600 rec/s, p99 5.1 ms, 0 errors`.
fn brief(w: &Window) -> String {
    format!(
        "{} rec/s, p99 {} ms, {} errors",
        thousands(w.rate),
        ms(w.p99_ms),
        thousands(w.errors as f64)
    )
}

fn run_of(c: &Capacity, setting: Setting) -> Option<&Run> {
    c.runs.iter().find(|r| r.setting == setting)
}

pub(super) fn capacity_md(o: &mut String, c: &Capacity) {
    let phases: Vec<String> = c
        .phases
        .iter()
        .map(|p| format!("{} workers for {} s", p.capacity, num(p.seconds, 1)))
        .collect();
    let _ = writeln!(
        o,
        "## Adaptive concurrency: an app whose capacity changes ({} ordering, {} partitions, {} B records)\n\n\
         The app: a pool of workers serving a request in {} ms, a queue as long as the pool (latency rises up to twice the service time), 503 at once past it. \
         Phases: {}; the first begins with the sidecar's first request. One sidecar run per setting, all in this run of the bench, \
         with the resource's default retries (5 attempts, 1 s doubling) and dead-letter topic. \
         rec/s: 2xx answers per second; p99: latency at the app (queue and service) of the 2xx answers; errors: non-2xx answers (503, shed).\n",
        c.ordering,
        c.partitions,
        c.value_size,
        c.service_ms,
        phases.join(", then ")
    );
    let mut head = String::from("| setting |");
    let mut rule = String::from("|---|");
    for p in &c.phases {
        let _ = write!(head, " {0} workers: rec/s | p99 ms | errors |", p.capacity);
        rule.push_str("---:|---:|---:|");
    }
    let _ = writeln!(
        o,
        "{head} limit (median per phase) | breaker opened | dead-lettered |\n{rule}---|---:|---:|"
    );
    for r in &c.runs {
        let mut row = format!("| {} |", r.setting.label());
        for w in &r.phases {
            let _ = write!(
                row,
                " {} | {} | {} |",
                thousands(w.rate),
                ms(w.p99_ms),
                thousands(w.errors as f64)
            );
        }
        let limits: Vec<String> = r
            .limit
            .iter()
            .map(|l| l.map_or("—".into(), |l| num(l.median, 0)))
            .collect();
        let _ = writeln!(
            o,
            "{row} {} | {} | {} |",
            limits.join(" / "),
            r.endpoint_outages,
            thousands(r.dead_lettered as f64)
        );
    }
    let _ = writeln!(
        o,
        "\n| phase | best fixed | worst fixed | adaptive | adaptive ÷ best | target | verdict |\n|---|---|---|---|---:|---|---|"
    );
    let adaptive = c
        .runs
        .iter()
        .find(|r| matches!(r.setting, Setting::Adaptive(_)));
    for (i, g) in c.goals.iter().enumerate() {
        let fixed = |n: Option<u32>| {
            n.and_then(|n| run_of(c, Setting::Fixed(n)))
                .and_then(|r| r.phases.get(i))
                .zip(n)
                .map_or("—".into(), |(w, n)| format!("{n}: {}", brief(w)))
        };
        let a = adaptive
            .and_then(|r| r.phases.get(i))
            .map_or("—".into(), brief);
        let _ = writeln!(
            o,
            "| {} workers | {} | {} | {a} | {} | ≥ {} of the best | {} |",
            g.capacity,
            fixed(g.best_fixed),
            fixed(g.worst_fixed),
            g.ratio_to_best.map_or("—".into(), pct),
            pct(TARGET_RATIO),
            g.verdict_throughput.label()
        );
    }
    for (i, g) in c.goals.iter().enumerate() {
        let Some(storm) = g.verdict_storm else {
            continue;
        };
        let phase = adaptive.and_then(|r| r.phases.get(i));
        let after = adaptive
            .and_then(|r| r.settled.get(i))
            .and_then(Option::as_ref);
        let _ = writeln!(
            o,
            "\n**Error storm when the capacity dropped to {} workers** (goal: errors ≤ {} of the answers once the limit had {} s to adapt): adaptive, {} errors in the phase, {} of {} answers after its first {} s ({}): {}.",
            g.capacity,
            pct(STORM_SHARE),
            SETTLE.as_secs(),
            phase.map_or("—".into(), |w| thousands(w.errors as f64)),
            after.map_or("—".into(), |w| thousands(w.errors as f64)),
            after.map_or("—".into(), |w| thousands((w.ok + w.errors) as f64)),
            SETTLE.as_secs(),
            after.map_or("—".into(), |w| pct(w.error_share())),
            storm.label()
        );
    }
    for e in &c.errors {
        let _ = writeln!(o, "\n- error: {e}");
    }
    o.push('\n');
}

fn secs(x: Option<f64>, run_secs: f64) -> String {
    x.map_or(format!("not within {} s", num(run_secs, 0)), |x| {
        format!("{} s", num(x, 2))
    })
}

pub(super) fn outage_md(o: &mut String, x: &Outage) {
    let d = &x.detection;
    let _ = writeln!(
        o,
        "## Endpoint outage: 503 for {} s, then recovered ({} ordering, {} partitions)\n\n\
         The app: {} workers serving a request in {} ms; while down, a proxy answers every new request 503 at once (no `Retry-After`); what the app had taken before is still answered 200. \
         Each run: {} s of service (the reference: its rate after the first {} s), {} s down, {} s up again. \
         Outage detection with its defaults: {} records, window {}, maxProbeInterval {}; retries and dead-letter topic as the resource's defaults. \
         Full speed: a {} ms span at ≥ {} of the rate before the outage, counted to the span's end. \
         The breaker probes {} s after it opens, then with waits doubling up to maxProbeInterval: after this outage, the next probe is due ≈ {} s after recovery.\n",
        num(x.outage_secs, 0),
        x.ordering,
        x.partitions,
        x.capacity,
        x.service_ms,
        num(x.before_secs, 0),
        WARM_UP.as_secs(),
        num(x.outage_secs, 0),
        num(x.after_secs, 0),
        d.records,
        d.window,
        d.max_probe_interval,
        SPAN.as_millis(),
        pct(FULL_SPEED_SHARE),
        FIRST_PROBE_WAIT.as_secs(),
        num(x.next_probe_after_secs, 1)
    );
    let _ = writeln!(
        o,
        "| run | rec/s before (reference) | requests while down (after its first {} s) | first delivery after recovery | full speed after recovery | rec/s after | dead-lettered | skipped | breaker opened | goal | verdict |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        WARM_UP.as_secs()
    );
    for r in &x.runs {
        let f = &r.figures;
        let down = format!(
            "{} ({})",
            thousands((f.during.ok + f.during.errors) as f64),
            thousands((f.during_settled.ok + f.during_settled.errors) as f64)
        );
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.variant.label(),
            thousands(f.before.rate),
            down,
            secs(f.first_delivery_secs, x.after_secs),
            secs(f.full_speed_secs, x.after_secs),
            thousands(f.after.rate),
            thousands(r.counters.dead_lettered as f64),
            thousands(r.counters.skipped as f64),
            r.counters.endpoint_outages,
            if r.variant.detection {
                "0 dead-lettered"
            } else {
                ""
            },
            r.verdict_dead_letters.label()
        );
    }
    for e in &x.errors {
        let _ = writeln!(o, "\n- error: {e}");
    }
    o.push('\n');
}
