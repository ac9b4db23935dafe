//! The results: one serializable [`Report`], written as JSON and rendered as markdown.
//!
//! Pure: figures in, text out. Targets are printed beside figures with a verdict; nothing is
//! asserted.

mod batch;
mod flow;
mod operator;
mod parallel;
mod throughput;

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    machine::Machine,
    scenarios::{
        Plan, Verdict, batch::Batch, capacity::Capacity, latency::Latency,
        operator::OperatorResult, outage::Outage, parallel::Parallel, resources::Resources,
        throughput::Throughput,
    },
    stats::Summary,
};
use batch::batch_md;
use flow::{capacity_md, outage_md};
use operator::operator_md;
use parallel::parallel_md;
use throughput::throughput_md;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub tool: String,
    pub started_unix_secs: u64,
    pub wall_seconds: f64,
    pub machine: Machine,
    pub broker: String,
    pub sidecar_runner: String,
    pub plan: Plan,
    pub throughput: Option<Throughput>,
    pub batch: Option<Batch>,
    pub latency: Option<Latency>,
    pub resources: Option<Resources>,
    pub parallel: Option<Parallel>,
    pub capacity: Option<Capacity>,
    pub outage: Option<Outage>,
    pub operator: OperatorResult,
    /// Scenarios that were selected but could not be measured, with the reason.
    pub not_measured: Vec<String>,
}

/// `12345.6` → `12,346`.
pub fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

fn spread(s: Option<Summary>, f: impl Fn(f64) -> String) -> (String, String) {
    match s {
        Some(s) if s.n > 1 => (f(s.median), format!("{}–{}", f(s.min), f(s.max))),
        Some(s) => (f(s.median), "(1 run)".into()),
        None => ("—".into(), "—".into()),
    }
}

fn pct(x: f64) -> String {
    if x.abs() < 0.1 {
        format!("{:.1}%", x * 100.0)
    } else {
        format!("{:.0}%", x * 100.0)
    }
}

fn num(x: f64, digits: usize) -> String {
    format!("{x:.digits$}")
}

impl Report {
    /// Whether any scenario failed or recorded an error.
    pub fn has_errors(&self) -> bool {
        !self.not_measured.is_empty()
            || self
                .throughput
                .as_ref()
                .is_some_and(|t| !t.errors.is_empty())
            || self.batch.as_ref().is_some_and(|b| !b.errors.is_empty())
            || self.latency.as_ref().is_some_and(|l| !l.errors.is_empty())
            || self.parallel.as_ref().is_some_and(|p| !p.errors.is_empty())
            || self.capacity.as_ref().is_some_and(|c| !c.errors.is_empty())
            || self.outage.as_ref().is_some_and(|x| !x.errors.is_empty())
            || self.operator.is_error()
    }

    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# kafka-consumer-proxy benchmark\n");
        let _ = writeln!(o, "- Machine: {}", self.machine.line());
        let _ = writeln!(o, "- Broker: {}", self.broker);
        let _ = writeln!(o, "- Sidecar: {}", self.sidecar_runner);
        let p = &self.plan;
        let _ = writeln!(
            o,
            "- Plan: {}, {} repeat(s), {} B records, producer batches up to {} B; wall time {:.0} s\n",
            if p.quick { "quick" } else { "full" },
            p.repeat,
            p.value_size,
            p.preload_batch_bytes,
            self.wall_seconds
        );
        if !p.kafka_settings.is_empty() {
            let kv: Vec<String> = p
                .kafka_settings
                .iter()
                .map(|(k, v)| format!("`{k}={v}`"))
                .collect();
            let _ = writeln!(
                o,
                "- Extra librdkafka settings (sidecar and bare consumer): {}\n",
                kv.join(", ")
            );
        }
        if let Some(t) = &self.throughput {
            throughput_md(&mut o, t, self.plan.value_size);
        }
        if let Some(b) = &self.batch {
            batch_md(&mut o, b);
        }
        if let Some(l) = &self.latency {
            latency_md(&mut o, l);
        }
        if let Some(r) = &self.resources {
            resources_md(&mut o, r);
        }
        if let Some(pc) = &self.parallel {
            parallel_md(&mut o, pc);
        }
        if let Some(c) = &self.capacity {
            capacity_md(&mut o, c);
        }
        if let Some(x) = &self.outage {
            outage_md(&mut o, x);
        }
        operator_md(&mut o, &self.operator);
        if !self.not_measured.is_empty() {
            let _ = writeln!(o, "## Not measured\n");
            for n in &self.not_measured {
                let _ = writeln!(o, "- {n}");
            }
            o.push('\n');
        }
        o
    }
}

fn latency_md(o: &mut String, l: &Latency) {
    let _ = writeln!(
        o,
        "## Added latency ({} req/s for {} s per repeat, {} repeat(s); sidecar {} ordering, maxInFlight {}, {} partition)\n",
        l.rate_per_sec, l.seconds_per_repeat, l.repeats, l.ordering, l.max_in_flight, l.partitions
    );
    if !l.client_config.is_empty() {
        let kv: Vec<String> = l
            .client_config
            .iter()
            .map(|(k, v)| format!("`{k}={v}`"))
            .collect();
        let _ = writeln!(
            o,
            "Consumer setting for this scenario (bare consumer and sidecar alike): {}. The mock broker holds an empty fetch for the whole wait instead of answering when a record arrives.\n",
            kv.join(", ")
        );
    }
    let _ = writeln!(
        o,
        "| path | p50 µs | p50 spread | p99 µs | p99 spread | target | verdict (p50, p99) |\n|---|---:|---:|---:|---:|---|---|"
    );
    let rows: [(
        &str,
        &crate::scenarios::latency::Percentiles,
        Option<[Verdict; 2]>,
    ); 6] = [
        ("HTTP limit: bare hyper client → sink", &l.http, None),
        (
            "Kafka transit: producer → bare consumer",
            &l.kafka_transit,
            None,
        ),
        (
            "bare forwarder: producer → bare consumer → bare hyper client → sink",
            &l.bare_forwarder,
            None,
        ),
        ("end to end: producer → sidecar → sink", &l.end_to_end, None),
        (
            "**added** = end to end − HTTP limit (issue's definition)",
            &l.added,
            Some(l.verdict_added),
        ),
        (
            "added over the bare forwarder = end to end − bare forwarder",
            &l.added_over_bare_forwarder,
            Some(l.verdict_over_bare_forwarder),
        ),
    ];
    for (name, p, v) in rows {
        let (m50, s50) = spread(p.p50, |x| num(x, 0));
        let (m99, s99) = spread(p.p99, |x| num(x, 0));
        let (target, verdict) = match v {
            Some([a, b]) => (
                "p50 ≤ 100 µs, p99 ≤ 1 ms".to_owned(),
                format!("{}, {}", a.label(), b.label()),
            ),
            None => (String::new(), String::new()),
        };
        let _ = writeln!(
            o,
            "| {name} | {m50} | {s50} | {m99} | {s99} | {target} | {verdict} |"
        );
    }
    for e in &l.errors {
        let _ = writeln!(o, "\n- error: {e}");
    }
    o.push('\n');
}

fn resources_md(o: &mut String, r: &Resources) {
    let _ = writeln!(
        o,
        "## Sidecar resources (its own process, /proc; {} ordering, maxInFlight {}; idle on {} partitions, backlog on {})\n\n\
         | figure | value | target | verdict |\n|---|---:|---|---|",
        r.ordering, r.max_in_flight, r.partitions, r.backlog_partitions
    );
    let _ = writeln!(
        o,
        "| resident memory, idle (joined, empty topic) | {:.1} MiB | ≤ 20 MiB | {} |",
        r.idle_rss_mib,
        r.verdict_idle.label()
    );
    let drained = if r.delivered < r.backlog {
        format!(
            "a backlog of {} records ({} delivered before the {} s cap)",
            thousands(r.backlog as f64),
            thousands(r.delivered as f64),
            r.cap_secs
        )
    } else {
        format!("a backlog of {} records", thousands(r.backlog as f64))
    };
    let _ = writeln!(
        o,
        "| resident memory, peak while draining {drained} (VmHWM) | {:.1} MiB | ≤ 64 MiB | {} |",
        r.drain_peak_mib,
        r.verdict_drain.label()
    );
    let _ = writeln!(
        o,
        "| CPU seconds per 10,000 records (user + system) | {:.3} s | ≤ 0.2 s | {} |",
        r.cpu_seconds_per_10k,
        r.verdict_cpu.label()
    );
    let _ = writeln!(
        o,
        "| drain (informative) | {} records in {:.1} s, {} rec/s, {:.1} CPU s | | |",
        thousands(r.delivered as f64),
        r.drain_seconds,
        thousands(r.drain_rate),
        r.cpu_seconds
    );
    let _ = writeln!(
        o,
        "| CPU while idle (informative; joined, empty topic, over 3 s) | {:.1} ms/s | | |",
        r.idle_cpu_ms_per_sec
    );
    let _ = writeln!(
        o,
        "| CPU seconds per 10,000 records above the idle rate (informative) | {:.3} s | | |\n",
        r.cpu_seconds_per_10k_above_idle
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1000.0), "-1,000");
        assert_eq!(thousands(f64::NAN), "—");
    }
}
