//! The throughput section of the report: the limits measured in the same run (HTTP, Kafka, the
//! bare forwarder) and the sidecar's rows beside them.
//!
//! Pure: figures in, markdown out.

use std::fmt::Write as _;

use super::{num, pct, spread, thousands};
use crate::{scenarios::throughput::Throughput, stats::Summary};

/// A ratio's median, with its spread over more than one repeat.
pub(super) fn ratio(x: Option<Summary>) -> String {
    match x {
        Some(x) if x.n > 1 => format!("{} ({}–{})", pct(x.median), pct(x.min), pct(x.max)),
        Some(x) => pct(x.median),
        None => "—".into(),
    }
}

/// CPU seconds per 10,000 records: the median, with its spread over more than one repeat.
pub(super) fn cpu(x: Option<Summary>) -> String {
    match x {
        Some(x) if x.n > 1 => format!("{} ({}–{})", num(x.median, 3), num(x.min, 3), num(x.max, 3)),
        Some(x) => num(x.median, 3),
        None => "—".into(),
    }
}

pub(super) fn throughput_md(o: &mut String, t: &Throughput, value_size: usize) {
    let _ = writeln!(
        o,
        "## Limits, measured in the same run\n\n| limit | at | median | spread (min–max) | CPU s per 10k records |\n|---|---|---:|---:|---:|"
    );
    for l in &t.http_limit {
        let (m, s) = spread(l.summary, thousands);
        let _ = writeln!(
            o,
            "| HTTP: bare hyper client → sink | {} in flight | {m} req/s | {s} | |",
            l.at
        );
    }
    for l in &t.kafka_limit {
        let (m, s) = spread(l.summary, thousands);
        let _ = writeln!(
            o,
            "| Kafka: bare consumer, sidecar's fetch settings | {} partition(s) | {m} rec/s | {s} | |",
            l.at
        );
    }
    for l in &t.kafka_limit_librdkafka_defaults {
        let (m, s) = spread(l.summary, thousands);
        let _ = writeln!(
            o,
            "| Kafka: bare consumer, librdkafka defaults | {} partition(s) | {m} rec/s | {s} | |",
            l.at
        );
    }
    for l in &t.bare_forwarder {
        let (m, s) = spread(l.summary, thousands);
        let capped = if l.capped_runs > 0 {
            format!(" ({}/{} capped)", l.capped_runs, l.samples.len())
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "| bare forwarder: consumer + hyper client → sink | {} in flight, {} partition(s) | {m} rec/s{capped} | {s} | {} |",
            l.max_in_flight,
            l.partitions,
            cpu(l.cpu_per_10k)
        );
    }
    let topics: Vec<String> = t
        .topics
        .iter()
        .map(|x| {
            format!(
                "{} records on {} partition(s)",
                thousands(x.records as f64),
                x.partitions
            )
        })
        .collect();
    let _ = writeln!(
        o,
        "\nHTTP: {} requests of {} B per run. Kafka limit, bare forwarder and sidecar: each run reads a whole preloaded topic ({}) for at most {} s; {} of the Kafka runs hit that cap (rate over what was read). \
         The bare forwarder is a child process (a bare consumer with the sidecar's fetch settings, every record POSTed through one pooled hyper client at the row's maxInFlight, the consumer's position committed every second); \
         its CPU and the sidecar's are user + system time from `/proc/<pid>/stat`, over the child's whole life up to the last answer (start, group join or connect included), in clock ticks (10 ms per run: coarse for the short runs of `--quick`).",
        thousands(t.http_requests_per_run as f64),
        value_size,
        topics.join(", "),
        t.cap_secs,
        t.kafka_capped_runs
    );
    let _ = writeln!(
        o,
        "\n## Throughput ({} B records, {} keys per partition, {} repeat(s))\n\n\
         Ratios are per repeat against the limit measured in that repeat (same concurrency; same topic and fetch settings); median (min–max). \
         A run stops {} s after the sidecar joined even if records remain; \"capped\" counts such runs (rate over what was delivered). \
         CPU: seconds (user + system) per 10,000 records, the sidecar's and the bare forwarder's at the same maxInFlight and partitions.\n\n\
         | maxInFlight | ordering | partitions | sidecar rec/s | spread | ÷ bare forwarder | ÷ HTTP limit | ÷ Kafka limit | sidecar CPU s/10k | forwarder CPU s/10k | capped | target | verdict |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        value_size, t.keys_per_partition, t.repeats, t.cap_secs
    );
    for r in &t.rows {
        let (m, s) = spread(r.rate, thousands);
        let (target, verdict) = match r.target {
            Some(v) => ("≥ 90% of HTTP", v.label()),
            None => ("", ""),
        };
        let capped = if r.capped_runs > 0 {
            format!("{}/{}", r.capped_runs, r.samples.len())
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {m} | {s} | {} | {} | {} | {} | {} | {capped} | {target} | {verdict} |",
            r.max_in_flight,
            r.ordering,
            r.partitions,
            ratio(r.ratio_to_forwarder),
            ratio(r.ratio_to_http),
            ratio(r.ratio_to_kafka),
            cpu(r.cpu_per_10k),
            cpu(r.forwarder_cpu_per_10k)
        );
    }
    for e in &t.errors {
        let _ = writeln!(o, "\n- error: {e}");
    }
    o.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_ratio_cells() {
        let one = Summary::of(&[0.25]);
        let two = Summary::of(&[0.2, 0.3]);
        assert_eq!(cpu(one), "0.250");
        assert_eq!(cpu(two), "0.250 (0.200–0.300)");
        assert_eq!(cpu(None), "—");
        assert_eq!(ratio(Summary::of(&[0.5])), "50%");
        assert_eq!(ratio(None), "—");
    }
}
