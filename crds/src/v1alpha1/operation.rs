//! `kafkaproxy.io/v1alpha1` `KafkaConsumerProxyOperation`: one operation on one
//! `KafkaConsumerProxy` (rewind, fast-forward, skip a record, redrive dead letters).
//!
//! Pure types. Rustdoc ships in the CRD and `kubectl explain`. Why operations are objects of
//! their own and how the operator runs them: ARCHITECTURE.md "Operations".

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema::object_name_schema;

/// One operation on a KafkaConsumerProxy of this namespace: it runs once, and its status says
/// how far it went and what it changed. Leaving it in Git is safe: a finished operation never
/// runs again, and its spec cannot be changed.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kafkaproxy.io",
    version = "v1alpha1",
    kind = "KafkaConsumerProxyOperation",
    plural = "kafkaconsumerproxyoperations",
    shortname = "kcpop",
    category = "kafkaproxy",
    doc = "One operation on a KafkaConsumerProxy (rewind, fast-forward, skip a record, redrive dead letters): it runs once, and its status says how far it went and what it changed.",
    namespaced,
    status = "OperationStatus",
    derive = "PartialEq",
    printcolumn(name = "Proxy", type_ = "string", json_path = ".spec.proxy"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self == oldSelf").message(
    "an operation's spec cannot change: it runs once; create a new operation instead"
))]
#[x_kube(validation = Rule::new(
    "(has(self.rewind) ? 1 : 0) + (has(self.fastForward) ? 1 : 0) + (has(self.skip) ? 1 : 0) + (has(self.redrive) ? 1 : 0) == 1"
).message("set exactly one of rewind, fastForward, skip, redrive"))]
#[x_kube(validation = Rule::new("!has(self.rewind) || !has(self.rewind.toLatest)").message(
    "rewind moves back: use toTime, toOffset or toEarliest (fastForward takes toLatest)"
))]
#[x_kube(validation = Rule::new("!has(self.fastForward) || !has(self.fastForward.toEarliest)").message(
    "fastForward moves ahead: use toTime, toOffset or toLatest (rewind takes toEarliest)"
))]
#[serde(rename_all = "camelCase")]
pub struct KafkaConsumerProxyOperationSpec {
    /// The KafkaConsumerProxy (in this namespace) to operate on.
    #[schemars(schema_with = "object_name_schema")]
    pub proxy: String,

    /// Move the group's committed position back, so records are delivered again. Partitions
    /// already before the point asked are left where they are. The proxy's pods are stopped
    /// while the offsets change (ARCHITECTURE.md "Operations").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewind: Option<SeekSpec>,

    /// Move the group's committed position ahead: the records in between are never delivered.
    /// Partitions already past the point asked are left where they are. The proxy's pods are
    /// stopped while the offsets change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_forward: Option<SeekSpec>,

    /// Skip one record: the group moves past it only if it is the next record of its
    /// partition to be committed. The skipped record is described in the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<SkipSpec>,

    /// Produce dead-lettered records back to the partition they came from, at a bounded rate,
    /// so they take the normal delivery path again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive: Option<RedriveSpec>,
}

/// Where to move the group's committed position, and which partitions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new(
    "(has(self.toTime) ? 1 : 0) + (has(self.toOffset) ? 1 : 0) + (has(self.toEarliest) ? 1 : 0) + (has(self.toLatest) ? 1 : 0) == 1"
).message("set exactly one of toTime, toOffset, toEarliest, toLatest"))]
#[x_kube(validation = Rule::new("!has(self.toOffset) || (has(self.topic) && has(self.partitions))").message(
    "toOffset is an offset of particular partitions: set topic and partitions too"
))]
#[x_kube(validation = Rule::new("!has(self.partitions) || has(self.topic)").message(
    "partitions are partitions of one topic: set topic too"
))]
#[serde(rename_all = "camelCase")]
pub struct SeekSpec {
    /// The first record at or after this time (RFC 3339, e.g. `2026-11-29T10:00:00Z`); for a
    /// partition with no record since then, its end (where a fast-forward moves it and a rewind
    /// leaves it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_time: Option<Time>,
    /// This offset (needs `topic` and `partitions`); an offset past a partition's end stands for
    /// its end, one before its start for its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub to_offset: Option<i64>,
    /// The oldest record still kept (rewind only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_earliest: Option<bool>,
    /// The end: only records produced after the operation are delivered (fastForward only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_latest: Option<bool>,
    /// Only this topic of the proxy; every topic of the proxy when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub topic: Option<String>,
    /// Only these partitions of `topic`; all of them when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1000))]
    pub partitions: Option<Vec<i32>>,
}

/// The record to skip.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SkipSpec {
    /// Its topic (one of the proxy's).
    #[schemars(length(min = 1, max = 249))]
    pub topic: String,
    /// Its partition.
    #[schemars(range(min = 0))]
    pub partition: i32,
    /// Its offset: the partition's committed offset, i.e. the record the group waits for.
    #[schemars(range(min = 0))]
    pub offset: i64,
    /// Why it is skipped; kept in the status and the Event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
}

/// Which dead letters to send again, and how fast.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedriveSpec {
    /// Only records dead-lettered at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// Only records dead-lettered before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Time>,
    /// Only records whose dead-letter reason (`kcp-dlq-reason`) contains this text, e.g.
    /// `status 503`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub reason_contains: Option<String>,
    /// Records produced per second at most (default 100).
    #[serde(default = "default_rate")]
    #[schemars(range(min = 1, max = 10000))]
    pub rate_per_second: i32,
    /// The loop guard: a record already redriven this many times (its `kcp-redrive-count`
    /// header) is not redriven again, and is counted in `status.redrive.loopGuarded` (default
    /// 3).
    #[serde(default = "default_max_redrives")]
    #[schemars(range(min = 1, max = 100))]
    pub max_redrives: i32,
    /// Stop after redriving this many records (no limit when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_records: Option<i64>,
}

impl Default for RedriveSpec {
    fn default() -> Self {
        Self {
            since: None,
            until: None,
            reason_contains: None,
            rate_per_second: default_rate(),
            max_redrives: default_max_redrives(),
            max_records: None,
        }
    }
}

fn default_rate() -> i32 {
    100
}

fn default_max_redrives() -> i32 {
    3
}

/// What the operation did so far.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    /// `Pending` (waiting for another operation on the proxy), `Quiescing` (the proxy's pods
    /// are stopping), `Running`, `Succeeded` or `Failed`. A finished operation never runs
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// What it is doing or did, or why it failed and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Failed tries so far; the operation fails after 5.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: i32,
    /// The partitions a rewind, fast-forward or skip moved, from and to which committed
    /// offset; written once the new offsets are committed and read back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<OffsetMove>,
    /// The record a skip moved past.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<SkippedRecord>,
    /// A redrive's progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive: Option<RedriveProgress>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// An operation's phase.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Quiescing,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    /// Whether the operation ended (it never runs again).
    pub fn finished(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// One partition's committed offset before and after.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OffsetMove {
    pub topic: String,
    pub partition: i32,
    /// The committed offset before (absent when the group had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
    /// The committed offset after.
    pub to: i64,
}

/// What was skipped: enough to find the record again, and why.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SkippedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Its timestamp (ms since the epoch), when it was still readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// Its key as text (base64 when not UTF-8), at most 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its value's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_bytes: Option<i64>,
    /// The reason given in the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A redrive's counts and where it is in each dead-letter partition.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RedriveProgress {
    /// Dead-letter records read.
    pub read: i64,
    /// Records produced back to their source partition.
    pub redriven: i64,
    /// Records left out by `since`, `until` or `reasonContains`, or not from this proxy's
    /// topics.
    pub filtered: i64,
    /// Records left out by the loop guard (`maxRedrives`).
    pub loop_guarded: i64,
    /// Per dead-letter partition: the next offset to read and the end fixed at the start
    /// (records dead-lettered after the start, redriven ones included, wait for another
    /// redrive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<RedrivePosition>,
}

/// Where a redrive is in one dead-letter partition.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RedrivePosition {
    pub topic: String,
    pub partition: i32,
    /// The next offset to read.
    pub next: i64,
    /// The redrive ends here.
    pub end: i64,
}
