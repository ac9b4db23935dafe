//! Consumer lag and dead-letter counts, read from Kafka: the only operator code that talks to
//! Kafka.
//!
//! For a resource's group, per partition of each source topic: the committed offset (an
//! OffsetFetch through a consumer that has the group's `group.id` but never subscribes, so it
//! never joins the group or commits), the high watermark, and lag = high − committed, or
//! high − low when the group never committed there. Dead-letter count = Σ (high − low) over
//! the partitions of the dead-letter topics; a missing dead-letter topic counts 0.
//!
//! The librdkafka calls, their bounds and the client cache are in [`kafka`]; this module holds
//! the types the rest of the operator sees and the per-resource memo. Credentials live only in
//! memory here.
//!
//! [`LagReadings`] memoizes the last observation per resource for the refresh interval, so a
//! reconcile triggered by a watch event (our own status write, a pod becoming ready) does not
//! probe Kafka again; lag is refreshed by the periodic requeue.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;
use kcp_crds::{
    config::SecurityProtocol,
    v1alpha1::{DeadLetterStatus, PartitionLag, SaslMechanism},
};
use rdkafka::{error::KafkaError, types::RDKafkaRespErr};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

mod kafka;
use kafka::connection_key;
pub use kafka::{KafkaLagSource, ProbeLimits};

use crate::metrics::Metrics;

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

/// Secret material for the probe's client. In memory only; `Debug` shows no values.
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

/// Figures read from Kafka in one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagSnapshot {
    /// Sorted by topic, then partition.
    pub partitions: Vec<PartitionLag>,
    pub total: i64,
    pub dead_letter: DeadLetterStatus,
    /// Source topics that do not exist (no partitions, no lag).
    pub missing_topics: Vec<String>,
}

/// The lag figures a reconcile works with.
#[derive(Debug, Clone, PartialEq)]
pub enum LagObservation {
    /// Read from Kafka at `read_at`.
    Fresh {
        snapshot: LagSnapshot,
        read_at: Timestamp,
    },
    /// The last attempt failed; `message` says why.
    Failed { message: String, at: Timestamp },
    /// Not attempted (the reconcile stopped before it).
    NotProbed,
}

/// Why a probe failed. Displayed with its source chain in the `KafkaReachable` condition.
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
    #[error("reading watermarks of {topic}/{partition}")]
    Watermarks {
        topic: String,
        partition: i32,
        #[source]
        source: KafkaError,
    },
    #[error("probe did not finish within {0:?}")]
    Timeout(Duration),
    #[error("probe task failed")]
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

/// Something that reads lag; Kafka in production, a stub in the mocked-API tests.
pub trait LagSource: Send + Sync + 'static {
    fn probe(
        &self,
        target: LagTarget,
        credentials: Credentials,
    ) -> BoxFuture<'static, Result<LagSnapshot, LagError>>;
}

/// Hash of everything a probe depends on: a change means the memoized figures are void.
fn probe_fingerprint(t: &LagTarget, c: &Credentials) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(connection_key(t, c));
    for topic in t
        .topics
        .iter()
        .chain([&String::new()])
        .chain(&t.dead_letter_topics)
    {
        h.update((topic.len() as u64).to_le_bytes());
        h.update(topic.as_bytes());
    }
    h.finalize().into()
}

/// The last lag observation of each resource, refreshed at most once per interval.
pub struct LagReadings {
    source: Arc<dyn LagSource>,
    refresh: Duration,
    metrics: Arc<Metrics>,
    memo: Mutex<HashMap<String, Memo>>,
}

struct Memo {
    fingerprint: [u8; 32],
    at: Instant,
    observation: LagObservation,
}

impl LagReadings {
    pub fn new(source: Arc<dyn LagSource>, refresh: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            source,
            refresh,
            metrics,
            memo: Mutex::new(HashMap::new()),
        }
    }

    /// The lag of resource `key` (namespace/name/uid): memoized when read less than ~one
    /// refresh interval ago for the same target, else probed now.
    pub async fn observe(
        &self,
        key: &str,
        target: LagTarget,
        credentials: Credentials,
    ) -> LagObservation {
        let fingerprint = probe_fingerprint(&target, &credentials);
        // 90%: the periodic requeue fires one interval after the reconcile *ended*, so it
        // always refreshes, while watch-triggered reconciles in between reuse the figures.
        let fresh_for = self.refresh.mul_f64(0.9);
        let mut failing_already = false;
        if let Ok(memo) = self.memo.lock()
            && let Some(m) = memo.get(key)
        {
            if m.fingerprint == fingerprint && m.at.elapsed() < fresh_for {
                return m.observation.clone();
            }
            failing_already = matches!(m.observation, LagObservation::Failed { .. });
        }

        let started = Instant::now();
        let result = self.source.probe(target, credentials).await;
        self.metrics
            .lag_probe_duration
            .observe(started.elapsed().as_secs_f64());
        let now = crate::now_seconds();
        let observation = match result {
            Ok(snapshot) => LagObservation::Fresh {
                snapshot,
                read_at: now,
            },
            Err(e) => {
                self.metrics.lag_probe_failures.inc();
                let message = error_chain(&e);
                if failing_already {
                    debug!(resource = key, error = %message, "Still cannot read lag from Kafka");
                } else {
                    warn!(resource = key, error = %message, "Could not read lag from Kafka");
                }
                LagObservation::Failed { message, at: now }
            }
        };
        if let Ok(mut memo) = self.memo.lock() {
            let forget_after = self.refresh * 10;
            memo.retain(|_, m| m.at.elapsed() < forget_after);
            memo.insert(
                key.to_owned(),
                Memo {
                    fingerprint,
                    at: Instant::now(),
                    observation: observation.clone(),
                },
            );
        }
        observation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use kcp_crds::config::SecurityProtocol;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize);

    impl LagSource for Arc<Counting> {
        fn probe(
            &self,
            _: LagTarget,
            _: Credentials,
        ) -> BoxFuture<'static, Result<LagSnapshot, LagError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            async {
                Ok(LagSnapshot {
                    partitions: vec![],
                    total: 0,
                    dead_letter: DeadLetterStatus::default(),
                    missing_topics: vec![],
                })
            }
            .boxed()
        }
    }

    fn target(topics: &[&str]) -> LagTarget {
        LagTarget {
            bootstrap_servers: "k:9092".into(),
            group_id: "g".into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            dead_letter_topics: vec![],
            protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: None,
        }
    }

    #[tokio::test]
    async fn readings_are_memoized_per_resource_until_the_target_changes() {
        let counting = Arc::new(Counting(AtomicUsize::new(0)));
        let readings = LagReadings::new(
            Arc::new(counting.clone()),
            Duration::from_secs(3600),
            Arc::new(Metrics::default()),
        );
        let creds = Credentials::default();
        readings.observe("a", target(&["t"]), creds.clone()).await;
        readings.observe("a", target(&["t"]), creds.clone()).await;
        assert_eq!(counting.0.load(Ordering::SeqCst), 1, "second read memoized");
        readings.observe("b", target(&["t"]), creds.clone()).await;
        assert_eq!(counting.0.load(Ordering::SeqCst), 2, "per resource");
        readings.observe("a", target(&["t", "u"]), creds).await;
        assert_eq!(
            counting.0.load(Ordering::SeqCst),
            3,
            "new topics, new probe"
        );
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
