//! Operations on the screen: the proxy's newest ones, as a table, and the lines `--wait`
//! prints while following one.
//!
//! Pure.

use std::fmt::Write as _;

use k8s_openapi::jiff::Timestamp;
use kcp_crds::v1alpha1::{KafkaConsumerProxyOperation, OperationStatus, Phase};

use super::{row, table};
use crate::when::rfc3339;

/// `proxy`'s operations (by `spec.proxy`, so ones applied without the label count too), newest
/// first, at most `max`.
pub fn recent_operations<'a>(
    all: &'a [KafkaConsumerProxyOperation],
    proxy: &str,
    max: usize,
) -> Vec<&'a KafkaConsumerProxyOperation> {
    let mut mine: Vec<_> = all.iter().filter(|o| o.spec.proxy == proxy).collect();
    mine.sort_by(|a, b| {
        let key = |o: &KafkaConsumerProxyOperation| {
            (
                o.metadata.creation_timestamp.as_ref().map(|t| t.0),
                o.metadata.name.clone(),
            )
        };
        key(b).cmp(&key(a))
    });
    mine.truncate(max);
    mine
}

/// Operations as a table: name, operation, phase, message.
pub fn operation_list(ops: &[&KafkaConsumerProxyOperation]) -> String {
    let mut rows = vec![row(["NAME", "OPERATION", "PHASE", "MESSAGE"])];
    rows.extend(ops.iter().map(|o| {
        let status = o.status.clone().unwrap_or_default();
        vec![
            o.metadata.name.clone().unwrap_or_default(),
            kind_of(o).to_owned(),
            status
                .phase
                .map_or_else(|| "-".to_owned(), |p| format!("{p:?}")),
            status.message.unwrap_or_default(),
        ]
    }));
    table(&rows, "  ")
}

/// `rewind`, `fast-forward`, `skip` or `redrive`.
pub fn kind_of(o: &KafkaConsumerProxyOperation) -> &'static str {
    let s = &o.spec;
    match (&s.rewind, &s.fast_forward, &s.skip, &s.redrive) {
        (Some(_), ..) => "rewind",
        (_, Some(_), ..) => "fast-forward",
        (_, _, Some(_), _) => "skip",
        (.., Some(_)) => "redrive",
        _ => "?",
    }
}

/// The lines printed while following an operation (`--wait`): one per change of phase or
/// message.
#[derive(Debug, Default)]
pub struct FollowLog {
    last: Option<(Option<Phase>, Option<String>)>,
}

impl FollowLog {
    /// The line for `status` seen at `at`, when it changed since the last one.
    pub fn line(&mut self, status: &OperationStatus, at: Timestamp) -> Option<String> {
        let seen = (status.phase, status.message.clone());
        if self.last.as_ref() == Some(&seen) {
            return None;
        }
        self.last = Some(seen);
        let phase = status.phase.map_or_else(
            || "(not picked up by the operator yet)".to_owned(),
            |p| format!("{p:?}"),
        );
        let message = status
            .message
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        Some(format!("{} {phase}{message}\n", rfc3339(at)))
    }
}

/// What a finished operation changed: its offset moves, skipped record, redrive counts.
pub fn outcome(status: &OperationStatus) -> String {
    let mut out = String::new();
    for m in &status.moves {
        let from = m.from.map_or_else(|| "none".into(), |f| f.to_string());
        let _ = writeln!(
            out,
            "  {}/{}: committed offset {from} -> {}",
            m.topic, m.partition, m.to
        );
    }
    if let Some(s) = &status.skipped {
        let _ = writeln!(out, "  skipped {}/{}/{}", s.topic, s.partition, s.offset);
    }
    if let Some(r) = &status.redrive {
        let _ = writeln!(
            out,
            "  read {}, redriven {}, filtered {}, loop-guarded {}",
            r.read, r.redriven, r.filtered, r.loop_guarded
        );
    }
    out
}
