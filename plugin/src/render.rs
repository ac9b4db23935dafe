//! What the user reads: the `status` screen, the operation list, and (in [`dlq`]) the
//! dead-letter listing and one record in full.
//!
//! Pure: objects in, text out; `now` is passed in. Nothing here reads the cluster or Kafka.

use std::fmt::Write as _;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};
use kcp_crds::{
    KafkaConsumerProxy,
    v1alpha1::{KafkaConsumerProxyOperation, LagStatus},
};

use crate::{
    dlq::dead_letter_topics,
    when::{human, rfc3339, with_age},
};

pub mod dlq;
mod operations;

pub use operations::{FollowLog, kind_of, operation_list, outcome, recent_operations};

/// Partitions shown on the status screen.
const TOP_PARTITIONS: usize = 10;
/// Operations shown on the status screen.
const RECENT_OPERATIONS: usize = 5;
/// Longest table cell before it is shortened with `…`.
const MAX_CELL: usize = 120;

/// The proxy's operations, as far as they could be listed.
#[derive(Debug, Clone)]
pub enum Operations {
    /// Every operation of the namespace (the screen keeps the proxy's).
    Listed(Vec<KafkaConsumerProxyOperation>),
    /// The KafkaConsumerProxyOperation CRD is not installed.
    NotInstalled,
    /// Listing failed; why.
    Unreadable(String),
}

/// `kubectl kcp status`: one screen about the proxy.
pub fn status_screen(p: &KafkaConsumerProxy, operations: &Operations, now: Timestamp) -> String {
    let name = p.metadata.name.as_deref().unwrap_or_default();
    let ns = p.metadata.namespace.as_deref().unwrap_or("default");
    let status = p.status.clone().unwrap_or_default();
    let mut out = format!("KafkaConsumerProxy {ns}/{name}\n");
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    field(
        &mut out,
        "Ready:",
        &ready.map_or_else(
            || "Unknown (the operator has not reported on it yet)".to_owned(),
            |c| format!("{} ({}): {}", c.status, c.reason, c.message),
        ),
    );
    if let (Some(seen), Some(generation)) = (status.observed_generation, p.metadata.generation)
        && seen < generation
    {
        field(
            &mut out,
            "Status of:",
            &format!(
                "generation {seen}; the spec is at generation {generation} (the operator has not caught up yet)"
            ),
        );
    }
    let opt = |n: Option<i32>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
    field(
        &mut out,
        "Replicas:",
        &format!(
            "{} desired, {} running, {} ready",
            p.spec.replicas,
            opt(status.replicas),
            opt(status.ready_replicas)
        ),
    );
    field(
        &mut out,
        "Paused:",
        &if p.spec.paused {
            format!(
                "yes: the pods take no records and keep their partitions (`kubectl kcp resume {name} -n {ns}`)"
            )
        } else {
            "no".to_owned()
        },
    );
    field(
        &mut out,
        "Suspended:",
        if p.spec.suspend {
            "yes: no pod runs (spec.suspend)"
        } else {
            "no"
        },
    );
    field(&mut out, "Lag:", &lag_line(status.lag.as_ref()));
    for (i, c) in status.conditions.iter().filter(|c| abnormal(c)).enumerate() {
        let label = if i == 0 { "Conditions:" } else { "" };
        field(
            &mut out,
            label,
            &format!("{}={} ({}): {}", c.type_, c.status, c.reason, c.message),
        );
    }

    if let Some(lag) = status.lag.as_ref().filter(|l| !l.partitions.is_empty()) {
        let mut parts: Vec<_> = lag.partitions.iter().collect();
        parts.sort_by(|a, b| {
            b.lag
                .cmp(&a.lag)
                .then_with(|| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)))
        });
        parts.truncate(TOP_PARTITIONS);
        let of = lag
            .partition_count
            .map_or(lag.partitions.len(), |n| n.max(0) as usize);
        let _ = writeln!(out, "\nPartitions by lag (top {} of {of}):", parts.len());
        let mut rows = vec![row([
            "TOPIC",
            "PARTITION",
            "LAG",
            "BEHIND",
            "COMMITTED",
            "HIGH WATERMARK",
        ])];
        rows.extend(parts.iter().map(|q| {
            vec![
                q.topic.clone(),
                q.partition.to_string(),
                q.lag.to_string(),
                q.lag_seconds.map_or_else(|| "-".into(), human),
                q.committed_offset
                    .map_or_else(|| "none".into(), |o| o.to_string()),
                q.high_watermark.to_string(),
            ]
        }));
        out.push_str(&table(&rows, "  "));
    }

    if !status.stuck.is_empty() {
        let _ = writeln!(out, "\nStuck partitions ({}):", status.stuck.len());
        for s in &status.stuck {
            let at = s
                .offset
                .map(|o| format!(" at offset {o}"))
                .unwrap_or_default();
            let what = s
                .record
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}/{}{at} since {}{what}",
                s.topic,
                s.partition,
                with_age(s.since.0, now)
            );
        }
        let _ = writeln!(
            out,
            "  (`kubectl kcp skip {name} -n {ns} --topic T --partition P --offset O` moves past one record)"
        );
    }

    out.push('\n');
    match (dead_letter_topics(name, &p.spec), &status.dead_letter) {
        (Err(off), None) => field(&mut out, "Dead letters:", &format!("off: {off}")),
        (_, None) => field(&mut out, "Dead letters:", "none reported yet"),
        (_, Some(d)) => {
            let held = d
                .in_topics
                .map(|n| format!("{n} in {}", d.topics.join(", ")))
                .unwrap_or_else(|| format!("topics {}", d.topics.join(", ")));
            field(
                &mut out,
                "Dead letters:",
                &format!("{} dead-lettered by this group; {held}", d.count),
            );
            if !d.recent.is_empty() {
                out.push_str(&table(&dlq::status_rows(&d.recent), "  "));
                let _ = writeln!(
                    out,
                    "  (`kubectl kcp dlq {name} -n {ns}` reads them from Kafka)"
                );
            }
        }
    }

    out.push('\n');
    match operations {
        Operations::NotInstalled => field(
            &mut out,
            "Operations:",
            &crate::error::Error::operation_crd_missing().to_string(),
        ),
        Operations::Unreadable(why) => {
            field(&mut out, "Operations:", &format!("cannot list them: {why}"))
        }
        Operations::Listed(all) => {
            let total = all.iter().filter(|o| o.spec.proxy == name).count();
            let recent = recent_operations(all, name, RECENT_OPERATIONS);
            if recent.is_empty() {
                field(&mut out, "Operations:", "none");
            } else {
                let _ = writeln!(
                    out,
                    "Operations (newest first, {} of {total}):",
                    recent.len()
                );
                out.push_str(&operation_list(&recent));
            }
        }
    }
    out
}

fn lag_line(lag: Option<&LagStatus>) -> String {
    let Some(l) = lag else {
        return "not read yet (the operator reads it from Kafka every 30s by default)".into();
    };
    let behind = l.behind.clone().or(l.seconds.map(human)).map_or_else(
        || "time behind unknown (no record timestamps)".into(),
        |b| format!("{b} behind"),
    );
    let mut line = format!("{} records", l.total);
    if let Some(n) = l.partition_count {
        let _ = write!(line, " over {n} partitions");
    }
    let _ = write!(line, ", {behind}");
    if let Some(t) = &l.updated_at {
        let _ = write!(line, "; changed {}", rfc3339(t.0));
    }
    if l.stale {
        line.push_str(" (STALE: the operator's last read from Kafka failed)");
    }
    line
}

/// A condition worth a line: one that is not in its healthy state.
fn abnormal(c: &Condition) -> bool {
    match c.type_.as_str() {
        "Ready" => false,
        "Reconciling" | "Stalled" | "PartitionsStuck" | "EndpointOutage" => c.status == "True",
        _ => c.status != "True",
    }
}

/// `label` padded to one width, then `value`.
fn field(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "{label:<14}{value}");
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Rows as aligned columns (two spaces apart, the last one not padded), each line indented.
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clip(c)).collect())
        .collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &rows {
        let mut line = indent.to_owned();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One line of at most [`MAX_CELL`] characters.
fn clip(cell: &str) -> String {
    let one_line = cell.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= MAX_CELL {
        return one_line;
    }
    let mut short: String = one_line.chars().take(MAX_CELL - 1).collect();
    short.push('…');
    short
}
