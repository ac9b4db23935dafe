//! The parallel-consumer table's section of the report.
//!
//! Pure: figures in, markdown out.

use std::fmt::Write as _;

use super::{num, spread, thousands};
use crate::scenarios::parallel::Parallel;

pub(super) fn parallel_md(o: &mut String, pc: &Parallel) {
    let _ = writeln!(
        o,
        "## Parallel-consumer table ({} records of {} B, 1 partition, sink sleeps 0–{} ms at random per record, maxInFlight {}, {} repeat(s))\n",
        thousands(pc.records as f64),
        pc.value_size,
        pc.max_sleep_us as f64 / 1000.0,
        pc.max_in_flight,
        pc.repeats
    );
    let bare = pc
        .bare_client
        .map_or("—".into(), |s| format!("{:.2} s", s.median));
    let sequential = pc
        .bare_client_sequential
        .map_or("—".into(), |s| format!("{:.2} s", s.median));
    let _ = writeln!(
        o,
        "Sum of the sleeps (partition mode's floor): **{:.2} s**. Bare hyper client, same sleeps: {bare} at {} in flight, {sequential} one at a time (partition mode with no Kafka and no sidecar: the sleeps plus the sink's and HTTP's own cost). Floor = perfect scheduling with these sleeps. Published for Confluent's Parallel Consumer (16 threads): ~22 s partition, ~2.1 s key.\n",
        pc.sum_of_sleeps_seconds, pc.max_in_flight
    );
    let _ = writeln!(
        o,
        "| mode | seconds to drain | spread | floor | ÷ floor | Parallel Consumer | target | verdict |\n|---|---:|---:|---:|---:|---:|---|---|"
    );
    for r in &pc.rows {
        let (m, s) = if r.capped.is_empty() {
            spread(r.seconds, |x| num(x, 2))
        } else {
            (
                format!("> {:.0} (capped: {})", pc.cap_seconds, r.capped.join("; ")),
                String::new(),
            )
        };
        let ratio = r.ratio_to_floor.map_or("—".into(), |x| num(x.median, 2));
        let published = r
            .published_seconds
            .map_or(String::new(), |x| format!("~{x} s"));
        let _ = writeln!(
            o,
            "| {} | {m} | {s} | {:.2} | {ratio} | {published} | {} | {} |",
            r.mode,
            r.floor_seconds,
            r.target.as_deref().unwrap_or(""),
            r.verdict.label()
        );
    }
    for e in &pc.errors {
        let _ = writeln!(o, "\n- error: {e}");
    }
    o.push('\n');
}
