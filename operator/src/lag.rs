//! Consumer lag and dead-letter counts, read from Kafka: the only operator code that talks to
//! Kafka.
//!
//! For a resource's group, per partition of each source topic: the committed offset (an
//! OffsetFetch through a consumer that has the group's `group.id` but never subscribes, so it
//! never joins the group or commits), the high watermark, and lag = high − committed, or
//! high − low when the group never committed there. Dead-letter count = Σ (high − low) over
//! the partitions of the dead-letter topics; a missing dead-letter topic counts 0. From the same
//! metadata, the read also says which dead-letter topics do not exist, or may not be described
//! with the resource's credentials ([`DeadLetterCheck`]), for the `DeadLetterTopicsReady`
//! condition.
//!
//! Three rooms:
//! - this module: the types the rest of the operator sees, and the pure summary of a read
//!   ([`LagSnapshot::new`]: totals over every partition, a bounded list of the most lagging);
//! - [`reader`]: the lag reader service. A reconcile only reads its cache and asks for a
//!   refresh; it never waits for Kafka. The reader reads in the background, a bounded number at
//!   once per cluster, each read within a deadline, and asks for a reconcile when figures change;
//! - [`kafka`]: the librdkafka calls (batched: a few requests per read, whatever the number of
//!   partitions) and the clients, shared per cluster;
//! - [`stuck`]: the pure window that tells a partition that does not move from a slow one.
//!
//! Credentials live only in memory here.

use std::{fmt, time::Duration};

use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;
use kcp_crds::{
    config::SecurityProtocol,
    v1alpha1::{DeadLetterStatus, LagStatus, PartitionLag, SaslMechanism, StuckPartition},
};
use rdkafka::{error::KafkaError, types::RDKafkaRespErr};

mod kafka;
mod reader;
pub mod stuck;
pub use kafka::{
    KafkaLagSource, KafkaLimits, ListOffsetsError, MAX_PEEKED, Oldest, base_client_config,
    list_offsets, merge_notes, record_state, seconds_behind,
};
pub use reader::{LagReader, ReadLimits, ResourceKey};

/// What to read: one resource's cluster, group and topics.
#[derive(Clone, PartialEq, Eq)]
pub struct LagTarget {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub topics: Vec<String>,
    pub dead_letter_topics: Vec<String>,
    pub protocol: SecurityProtocol,
    pub sasl_mechanism: Option<SaslMechanism>,
}

impl fmt::Debug for LagTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LagTarget")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("group_id", &self.group_id)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl LagTarget {
    /// Which cluster this is, for the reader's per-cluster bound: the bootstrap servers, trimmed,
    /// lowercased and sorted, so `b:9092,a:9092` and `a:9092, b:9092` are one cluster.
    pub fn cluster(&self) -> String {
        let mut servers: Vec<String> = self
            .bootstrap_servers
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        servers.sort_unstable();
        servers.dedup();
        servers.join(",")
    }
}

/// Secret material for the reader's clients. In memory only; `Debug` shows no values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// SASL username and password.
    pub sasl: Option<(String, String)>,
    /// PEM CA certificate, client certificate and client key.
    pub tls_ca: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("sasl", &self.sasl.as_ref().map(|_| "<redacted>"))
            .field("tls_ca", &self.tls_ca.is_some())
            .field("tls_cert", &self.tls_cert.is_some())
            .field("tls_key", &self.tls_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Figures read from Kafka in one read, summarized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LagSnapshot {
    /// At most [`LagStatus::MAX_PARTITIONS`]: the most lagging, sorted by topic, then partition.
    pub partitions: Vec<PartitionLag>,
    /// Partitions of the source topics, listed or not.
    pub partition_count: i32,
    /// Lag over every partition, listed or not.
    pub total: i64,
    pub dead_letter: DeadLetterStatus,
    /// Source topics that do not exist (no partitions, no lag).
    pub missing_topics: Vec<String>,
    /// Dead-letter topics a dead-letter produce would fail on.
    pub dead_letter_check: DeadLetterCheck,
    /// Age in seconds of the oldest uncommitted record over every partition whose age is
    /// known; `None` when none is.
    pub seconds: Option<i64>,
    /// Every partition's position and what its commit says, for the stuck window. Not
    /// reported; [`LagReader`] turns it into `stuck`.
    pub positions: Vec<Position>,
    /// Partitions stuck for the window, at most [`StuckPartition::MAX`], set by the reader.
    pub stuck: Vec<StuckPartition>,
    /// Stuck partitions in all, listed or not.
    pub stuck_count: usize,
    /// An endpoint outage the sidecars' last commits report.
    pub outage: Option<OutageSeen>,
}

/// An endpoint outage, as the group's commits report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutageSeen {
    /// How the records fail: `5xx`, `429`, `404`, `401/403`, `3xx`, `timeout`,
    /// `connection error`.
    pub class: &'static str,
    /// When it began, in milliseconds since the Unix epoch (the earliest reported).
    pub since_ms: u64,
    /// The partitions whose last commit reports it, sorted.
    pub partitions: Vec<String>,
}

/// Where one partition of the group stands, and what its last commit said of the record there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    pub lag: i64,
    /// `kafka::record_state` of the committed offset's record.
    pub record: Option<String>,
}

/// What one read learnt about the dead-letter topics besides their counts: those a dead-letter
/// produce is known to fail on. Each list in the order of `LagTarget::dead_letter_topics`.
///
/// Only what topic metadata tells: whether the resource's Kafka user may *write* a topic it can
/// describe is not known here (rdkafka 0.39 does not expose a topic's authorized operations);
/// the sidecar reports failed produces (`kcp_dead_letter_produce_failures_total`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterCheck {
    /// Topics that do not exist. A produce to one fails unless the brokers create topics on
    /// first use (`auto.create.topics.enable`).
    pub missing: Vec<String>,
    /// Topics the resource's Kafka user may not describe (`TOPIC_AUTHORIZATION_FAILED`), so it
    /// may not write them either: Kafka's Write implies Describe.
    pub unauthorized: Vec<String>,
}

impl DeadLetterCheck {
    /// Whether no problem was found.
    pub fn is_clear(&self) -> bool {
        self.missing.is_empty() && self.unauthorized.is_empty()
    }
}

impl LagSnapshot {
    /// Summarizes the lag of every partition: totals over all of them, and the
    /// [`LagStatus::MAX_PARTITIONS`] with the most lag (ties: first by topic and partition, so
    /// equal figures always give the same list), sorted by topic and partition.
    pub fn new(
        mut all: Vec<PartitionLag>,
        dead_letter: DeadLetterStatus,
        missing_topics: Vec<String>,
        dead_letter_check: DeadLetterCheck,
    ) -> Self {
        let total = all.iter().map(|p| p.lag).sum();
        let seconds = all.iter().filter_map(|p| p.lag_seconds).max();
        let partition_count = i32::try_from(all.len()).unwrap_or(i32::MAX);
        let by_position = |a: &PartitionLag, b: &PartitionLag| {
            (&a.topic, a.partition).cmp(&(&b.topic, b.partition))
        };
        all.sort_by(|a, b| b.lag.cmp(&a.lag).then_with(|| by_position(a, b)));
        all.truncate(LagStatus::MAX_PARTITIONS);
        all.sort_by(by_position);
        Self {
            partitions: all,
            partition_count,
            total,
            dead_letter,
            missing_topics,
            dead_letter_check,
            seconds,
            positions: Vec::new(),
            stuck: Vec::new(),
            stuck_count: 0,
            outage: None,
        }
    }
}

/// The lag figures a reconcile works with.
// One per resource, moved rarely: boxing the snapshot would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum LagObservation {
    /// Read from Kafka at `read_at`.
    Fresh {
        snapshot: LagSnapshot,
        read_at: Timestamp,
    },
    /// The last read failed; `message` says why.
    Failed { message: String, at: Timestamp },
    /// The first read of this target is still running: nothing to report yet.
    Pending,
    /// Not asked for (the reconcile stopped before it).
    NotProbed,
}

/// Why a read failed. Displayed with its source chain in the `KafkaReachable` condition.
#[derive(Debug, thiserror::Error)]
pub enum LagError {
    #[error("creating a Kafka client")]
    CreateClient(#[source] KafkaError),
    #[error("fetching metadata of topic {topic:?}")]
    Metadata {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("topic {topic:?} reported error {code:?}")]
    Topic { topic: String, code: RDKafkaRespErr },
    #[error("reading committed offsets of group {group:?}")]
    Committed {
        group: String,
        #[source]
        source: KafkaError,
    },
    #[error("reading the watermarks of {partitions} partitions")]
    Watermarks {
        partitions: usize,
        #[source]
        source: KafkaError,
    },
    #[error("reading the watermark of {topic}/{partition}")]
    Partition {
        topic: String,
        partition: i32,
        #[source]
        source: KafkaError,
    },
    #[error("reading the oldest uncommitted records")]
    Peek(#[source] KafkaError),
    #[error("the broker did not report a watermark of {topic}/{partition}")]
    NoWatermark { topic: String, partition: i32 },
    #[error("the read did not finish within {0:?}")]
    Timeout(Duration),
    #[error("the read's deadline passed before its last request")]
    DeadlinePassed,
    #[error(
        "no read slot for this cluster within {deadline:?}: {running} reads of other resources on \
         it are still running (the cluster is slow or unreachable)"
    )]
    NoSlot { deadline: Duration, running: usize },
    #[error("the read task failed")]
    Task,
}

/// `err` and its sources, `: `-joined: what a user reads in the condition message.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        // librdkafka's errors already print their cause; do not say it twice.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Something that reads lag: Kafka in production, a stub in the mocked-API tests. Only the
/// [`LagReader`] calls it.
pub trait LagSource: Send + Sync + 'static {
    /// Reads the figures of `target`, giving up at `deadline`.
    fn read(
        &self,
        target: LagTarget,
        credentials: Credentials,
        deadline: std::time::Instant,
    ) -> BoxFuture<'static, Result<LagSnapshot, LagError>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    fn partition(topic: &str, partition: i32, lag: i64) -> PartitionLag {
        PartitionLag {
            topic: topic.into(),
            partition,
            committed_offset: None,
            high_watermark: lag,
            lag,
            lag_seconds: None,
        }
    }

    #[test]
    fn a_snapshot_totals_every_partition_and_lists_the_most_lagging() {
        let mut all: Vec<PartitionLag> = (0..99).map(|p| partition("a", p, 1)).collect();
        all.push(partition("a", 99, 0));
        all.push(partition("b", 7, 50));
        all.reverse();
        let s = LagSnapshot::new(
            all,
            DeadLetterStatus::default(),
            vec![],
            DeadLetterCheck::default(),
        );
        assert_eq!(s.total, 99 + 50);
        assert_eq!(s.partition_count, 101);
        let listed: Vec<_> = s
            .partitions
            .iter()
            .map(|p| (p.topic.as_str(), p.partition))
            .collect();
        // The 50 of b/7, then the lowest-numbered of the partitions tied at 1, by position.
        let mut expected: Vec<_> = (0..19).map(|p| ("a", p)).collect();
        expected.push(("b", 7));
        assert_eq!(listed, expected);

        let small = LagSnapshot::new(
            vec![partition("t", 1, 0), partition("t", 0, 3)],
            DeadLetterStatus::default(),
            vec![],
            DeadLetterCheck::default(),
        );
        let listed: Vec<_> = small.partitions.iter().map(|p| p.partition).collect();
        assert_eq!(listed, [0, 1], "few partitions: all listed, by partition");
    }

    #[test]
    fn the_bound_is_the_schemas_max_items() {
        let crd = serde_json::to_value(kcp_crds::KafkaConsumerProxy::crd()).expect("serializes");
        let status = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
            ["properties"];
        assert_eq!(
            status["lag"]["properties"]["partitions"]["maxItems"],
            serde_json::json!(LagStatus::MAX_PARTITIONS)
        );
    }

    #[test]
    fn a_cluster_is_its_set_of_bootstrap_servers() {
        let t = |servers: &str| LagTarget {
            bootstrap_servers: servers.into(),
            group_id: "g".into(),
            topics: vec![],
            dead_letter_topics: vec![],
            protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: None,
        };
        assert_eq!(t("B:9092, a:9092").cluster(), t("a:9092,b:9092").cluster());
        assert_ne!(t("a:9092").cluster(), t("a:9093").cluster());
    }

    #[test]
    fn error_chain_names_each_cause_once() {
        let err = LagError::Metadata {
            topic: "orders".into(),
            source: KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure,
            ),
        };
        let text = error_chain(&err);
        assert!(
            text.starts_with("fetching metadata of topic \"orders\": "),
            "{text}"
        );
        assert_eq!(text.matches("BrokerTransportFailure").count(), 1, "{text}");
    }
}
