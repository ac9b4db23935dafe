//! The batch section of the report: the unbatched limit against a sink with a fixed cost per
//! request, and the sidecar's rows unbatched and batched beside it.
//!
//! Pure: figures in, markdown out.

use std::fmt::Write as _;

use super::{
    num, spread, thousands,
    throughput::{cpu, ratio},
};
use crate::{
    scenarios::batch::{Batch, label},
    stats::Summary,
};

/// Records per request: the median to one decimal, with its spread over more than one repeat.
fn per_request(x: Option<Summary>) -> String {
    match x {
        Some(x) if x.n > 1 => format!("{} ({}–{})", num(x.median, 1), num(x.min, 1), num(x.max, 1)),
        Some(x) => num(x.median, 1),
        None => "—".into(),
    }
}

pub(super) fn batch_md(o: &mut String, b: &Batch) {
    let _ = writeln!(
        o,
        "## Batch delivery ({} records of {} B on {} partitions, maxInFlight {}, sink {} ms per request, {} repeat(s))\n",
        thousands(b.records as f64),
        b.value_size,
        b.partitions,
        b.max_in_flight,
        b.sink_cost_ms,
        b.repeats
    );
    let (m, s) = spread(b.unbatched_limit.summary, thousands);
    let lanes = i64::from(b.partitions).min(i64::from(b.max_in_flight));
    let _ = writeln!(
        o,
        "The sink answers 200 with an empty body after a fixed {} ms per request, whatever the request carries. \
         **Unbatched limit** (a bare hyper client → the same sink, one record per request, {} in flight): **{m} req/s** (spread {s}); \
         maxInFlight ÷ cost = {} req/s. \
         Batched rows: `delivery.batch` with `maxBytes` {} and `maxWait` {}. \
         Records per request: as the sink counted them (a request with `kcp-batch: <n>` counts n records, any other one). \
         Ratios are per repeat against the unbatched limit of that repeat; median (min–max). \
         In `partition` order the sidecar has at most one request in flight per partition ({} here), so one record per request reaches at most {lanes} ÷ {} of the limit. \
         A run stops {} s after the sidecar joined even if records remain; \"capped\" counts such runs (rate over what was delivered). \
         CPU: the sidecar's seconds (user + system) per 10,000 records, over its whole life (start and group join included).\n",
        b.sink_cost_ms,
        b.max_in_flight,
        thousands(b.nominal_unbatched_limit),
        b.max_bytes,
        b.max_wait,
        b.partitions,
        b.max_in_flight,
        b.cap_secs
    );
    let _ = writeln!(
        o,
        "| ordering | batch | sidecar rec/s | spread | records per request | ÷ unbatched limit | sidecar CPU s/10k | capped |\n\
         |---|---|---:|---:|---:|---:|---:|---:|"
    );
    for r in &b.rows {
        let (m, s) = spread(r.rate, thousands);
        let capped = if r.capped_runs > 0 {
            format!("{}/{}", r.capped_runs, r.samples.len())
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "| {} | {} | {m} | {s} | {} | {} | {} | {capped} |",
            r.ordering,
            label(r.max_records),
            per_request(r.records_per_request),
            ratio(r.ratio_to_unbatched_limit),
            cpu(r.cpu_per_10k)
        );
    }
    for e in &b.errors {
        let _ = writeln!(o, "\n- error: {e}");
    }
    o.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::{batch::Row, throughput::Limit};

    fn row(max_records: Option<u32>, rate: f64, per_req: f64, capped_runs: u32) -> Row {
        Row {
            ordering: "unordered",
            max_records,
            samples: vec![rate],
            rate: Summary::of(&[rate]),
            records_per_request_samples: vec![per_req],
            records_per_request: Summary::of(&[per_req]),
            ratio_to_unbatched_limit: Summary::of(&[rate / 8000.0]),
            cpu_per_10k_samples: vec![0.25],
            cpu_per_10k: Summary::of(&[0.25]),
            capped_runs,
        }
    }

    fn batch() -> Batch {
        Batch {
            records: 20_000,
            partitions: 8,
            value_size: 1024,
            keys_per_partition: 256,
            max_in_flight: 16,
            sink_cost_ms: 2.0,
            max_bytes: 1 << 20,
            max_wait: "0s".into(),
            repeats: 1,
            cap_secs: 8,
            nominal_unbatched_limit: 8000.0,
            unbatched_limit: Limit {
                at: 16,
                samples: vec![7600.0],
                summary: Summary::of(&[7600.0]),
            },
            rows: vec![row(None, 6000.0, 1.0, 0), row(Some(100), 40_000.0, 99.5, 1)],
            errors: vec!["partition maxRecords 10: boom".into()],
        }
    }

    #[test]
    fn the_limit_and_every_row_are_printed() {
        let mut o = String::new();
        batch_md(&mut o, &batch());
        assert!(o.contains("## Batch delivery (20,000 records of 1024 B on 8 partitions, maxInFlight 16, sink 2 ms per request, 1 repeat(s))"), "{o}");
        assert!(o.contains("**7,600 req/s** (spread (1 run))"), "{o}");
        assert!(o.contains("maxInFlight ÷ cost = 8,000 req/s"), "{o}");
        assert!(o.contains("at most 8 ÷ 16 of the limit"), "{o}");
        assert!(
            o.contains("| unordered | unbatched | 6,000 | (1 run) | 1.0 | 75% | 0.250 |  |"),
            "{o}"
        );
        assert!(
            o.contains(
                "| unordered | maxRecords 100 | 40,000 | (1 run) | 99.5 | 500% | 0.250 | 1/1 |"
            ),
            "{o}"
        );
        assert!(o.contains("- error: partition maxRecords 10: boom"), "{o}");
    }

    #[test]
    fn records_per_request_cells() {
        assert_eq!(per_request(Summary::of(&[10.0])), "10.0");
        assert_eq!(
            per_request(Summary::of(&[9.5, 10.0, 10.0])),
            "10.0 (9.5–10.0)"
        );
        assert_eq!(per_request(None), "—");
    }
}
