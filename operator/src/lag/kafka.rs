//! The Kafka side of the lag probe: the only code in the operator that calls librdkafka.
//!
//! Bounds: the blocking librdkafka calls run in `spawn_blocking`, each with a call timeout and
//! all of them within one deadline per probe; at most `concurrency` probes run at once.
//! Clients are cached by connection settings (brokers, group, security, credentials hash) and
//! reused across reconciles; a client whose probe failed is dropped (on the blocking thread)
//! so the next probe starts clean, and clients idle for long are dropped.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{FutureExt, future::BoxFuture};
use kcp_crds::v1alpha1::{DeadLetterStatus, PartitionLag, SaslMechanism};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, Consumer},
    types::RDKafkaRespErr,
};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tracing::debug;

use super::{Credentials, LagError, LagSnapshot, LagSource, LagTarget};

/// Bounds on the work of the Kafka probe.
#[derive(Debug, Clone, Copy)]
pub struct ProbeLimits {
    /// Longest single librdkafka call.
    pub call_timeout: Duration,
    /// Longest whole probe.
    pub total: Duration,
    /// Probes running at once (each holds a blocking thread).
    pub concurrency: usize,
    /// Cached clients unused for this long are dropped.
    pub idle_eviction: Duration,
}

impl Default for ProbeLimits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(5),
            total: Duration::from_secs(15),
            concurrency: 4,
            idle_eviction: Duration::from_secs(600),
        }
    }
}

/// Reads lag from Kafka with cached clients.
#[derive(Clone)]
pub struct KafkaLagSource {
    inner: Arc<Inner>,
}

struct Inner {
    limits: ProbeLimits,
    permits: Arc<Semaphore>,
    clients: Mutex<HashMap<[u8; 32], Cached>>,
}

struct Cached {
    consumer: Arc<BaseConsumer>,
    last_used: Instant,
}

impl KafkaLagSource {
    pub fn new(limits: ProbeLimits) -> Self {
        Self {
            inner: Arc::new(Inner {
                limits,
                permits: Arc::new(Semaphore::new(limits.concurrency.max(1))),
                clients: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Number of cached clients (for tests and debugging).
    pub fn cached_clients(&self) -> usize {
        self.inner.clients.lock().map(|c| c.len()).unwrap_or(0)
    }
}

impl LagSource for KafkaLagSource {
    fn probe(
        &self,
        target: LagTarget,
        credentials: Credentials,
    ) -> BoxFuture<'static, Result<LagSnapshot, LagError>> {
        let inner = self.inner.clone();
        async move {
            let permit = inner
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| LagError::Task)?;
            let total = inner.limits.total;
            let task = tokio::task::spawn_blocking(move || {
                // Held until the blocking work really ends, even if the caller gave up.
                let _permit = permit;
                inner.probe_blocking(&target, &credentials)
            });
            match tokio::time::timeout(total + Duration::from_secs(5), task).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(LagError::Task),
                Err(_) => Err(LagError::Timeout(total)),
            }
        }
        .boxed()
    }
}

impl Inner {
    fn probe_blocking(
        &self,
        target: &LagTarget,
        credentials: &Credentials,
    ) -> Result<LagSnapshot, LagError> {
        let key = connection_key(target, credentials);
        let consumer = self.client(key, target, credentials)?;
        let deadline = Instant::now() + self.limits.total;
        let result = read_lag(&consumer, target, self.limits, deadline);
        if result.is_err() {
            // Start clean next time; the client is dropped on this blocking thread.
            if let Ok(mut clients) = self.clients.lock() {
                clients.remove(&key);
            }
        }
        result
    }

    fn client(
        &self,
        key: [u8; 32],
        target: &LagTarget,
        credentials: &Credentials,
    ) -> Result<Arc<BaseConsumer>, LagError> {
        let mut evicted = Vec::new();
        let consumer = {
            let mut clients = self.clients.lock().map_err(|_| LagError::Task)?;
            let now = Instant::now();
            let idle = self.limits.idle_eviction;
            let stale: Vec<_> = clients
                .iter()
                .filter(|(_, c)| now.duration_since(c.last_used) > idle)
                .map(|(k, _)| *k)
                .collect();
            for k in stale {
                evicted.extend(clients.remove(&k));
            }
            match clients.get_mut(&key) {
                Some(c) => {
                    c.last_used = now;
                    c.consumer.clone()
                }
                None => {
                    let consumer = Arc::new(
                        client_config(target, credentials, self.limits)
                            .create::<BaseConsumer>()
                            .map_err(LagError::CreateClient)?,
                    );
                    debug!(group = %target.group_id, "Created Kafka client for lag");
                    clients.insert(
                        key,
                        Cached {
                            consumer: consumer.clone(),
                            last_used: now,
                        },
                    );
                    consumer
                }
            }
        };
        // Closing evicted clients may block; this runs on the blocking thread, outside the lock.
        drop(evicted);
        Ok(consumer)
    }
}

fn client_config(target: &LagTarget, c: &Credentials, limits: ProbeLimits) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &target.bootstrap_servers)
        .set("group.id", &target.group_id)
        .set("client.id", "kafka-consumer-proxy-operator")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("allow.auto.create.topics", "false")
        .set("security.protocol", target.protocol.as_str())
        .set(
            "socket.connection.setup.timeout.ms",
            limits.call_timeout.as_millis().max(1000).to_string(),
        )
        .set_log_level(RDKafkaLogLevel::Warning);
    if let Some(m) = target.sasl_mechanism {
        cfg.set("sasl.mechanism", m.as_str());
    }
    if let Some((user, password)) = &c.sasl {
        cfg.set("sasl.username", user)
            .set("sasl.password", password);
    }
    for (key, value) in [
        ("ssl.ca.pem", &c.tls_ca),
        ("ssl.certificate.pem", &c.tls_cert),
        ("ssl.key.pem", &c.tls_key),
    ] {
        if let Some(v) = value {
            cfg.set(key, v);
        }
    }
    cfg
}

/// Time left for the next call, or a timeout error when the probe's deadline passed.
fn budget(limits: ProbeLimits, deadline: Instant) -> Result<Duration, LagError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(LagError::Timeout(limits.total));
    }
    Ok(left.min(limits.call_timeout))
}

/// Partition ids of `topic`, or `None` when the topic does not exist.
fn partitions_of(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Option<Vec<i32>>, LagError> {
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| LagError::Metadata {
            topic: topic.to_owned(),
            source,
        })?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        None => {
            let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            ids.sort_unstable();
            Ok(Some(ids))
        }
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => Ok(None),
        Some(code) => Err(LagError::Topic {
            topic: topic.to_owned(),
            code,
        }),
    }
}

fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<(i64, i64), LagError> {
    consumer
        .fetch_watermarks(topic, partition, timeout)
        .map_err(|source| LagError::Watermarks {
            topic: topic.to_owned(),
            partition,
            source,
        })
}

fn read_lag(
    consumer: &BaseConsumer,
    target: &LagTarget,
    limits: ProbeLimits,
    deadline: Instant,
) -> Result<LagSnapshot, LagError> {
    let mut missing_topics = Vec::new();
    let mut assigned: Vec<(String, i32)> = Vec::new();
    for topic in &target.topics {
        match partitions_of(consumer, topic, budget(limits, deadline)?)? {
            Some(ids) => assigned.extend(ids.into_iter().map(|p| (topic.clone(), p))),
            None => missing_topics.push(topic.clone()),
        }
    }

    let mut committed: HashMap<(String, i32), i64> = HashMap::new();
    if !assigned.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in &assigned {
            tpl.add_partition(t, *p);
        }
        let group_error = |source| LagError::Committed {
            group: target.group_id.clone(),
            source,
        };
        let offsets = consumer
            .committed_offsets(tpl, budget(limits, deadline)?)
            .map_err(group_error)?;
        for e in offsets.elements() {
            e.error().map_err(group_error)?;
            if let Offset::Offset(n) = e.offset()
                && n >= 0
            {
                committed.insert((e.topic().to_owned(), e.partition()), n);
            }
        }
    }

    let mut partitions = Vec::with_capacity(assigned.len());
    for (topic, partition) in assigned {
        let (low, high) = watermarks(consumer, &topic, partition, budget(limits, deadline)?)?;
        let committed_offset = committed.get(&(topic.clone(), partition)).copied();
        let lag = match committed_offset {
            Some(c) => high - c,
            None => high - low,
        }
        .max(0);
        partitions.push(PartitionLag {
            topic,
            partition,
            committed_offset,
            high_watermark: high,
            lag,
        });
    }
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let total = partitions.iter().map(|p| p.lag).sum();

    let mut count = 0;
    for topic in &target.dead_letter_topics {
        if let Some(ids) = partitions_of(consumer, topic, budget(limits, deadline)?)? {
            for p in ids {
                let (low, high) = watermarks(consumer, topic, p, budget(limits, deadline)?)?;
                count += (high - low).max(0);
            }
        }
    }

    Ok(LagSnapshot {
        partitions,
        total,
        dead_letter: DeadLetterStatus {
            topics: target.dead_letter_topics.clone(),
            count,
        },
        missing_topics,
    })
}

/// Hash of what a client connects with: one cached client per distinct value.
pub(super) fn connection_key(t: &LagTarget, c: &Credentials) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field(&t.bootstrap_servers);
    field(&t.group_id);
    field(t.protocol.as_str());
    field(t.sasl_mechanism.map_or("", SaslMechanism::as_str));
    let (user, password) = c.sasl.clone().unwrap_or_default();
    field(&user);
    field(&password);
    for pem in [&c.tls_ca, &c.tls_cert, &c.tls_key] {
        field(pem.as_deref().unwrap_or("\0none"));
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcp_crds::config::SecurityProtocol;

    #[test]
    fn credentials_change_the_connection_key_and_never_print() {
        let t = LagTarget {
            bootstrap_servers: "k:9092".into(),
            group_id: "g".into(),
            topics: vec!["t".into()],
            dead_letter_topics: vec![],
            protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: None,
        };
        let a = Credentials {
            sasl: Some(("u".into(), "p1".into())),
            ..Credentials::default()
        };
        let b = Credentials {
            sasl: Some(("u".into(), "p2".into())),
            ..Credentials::default()
        };
        assert_ne!(connection_key(&t, &a), connection_key(&t, &b));
        assert!(!format!("{a:?}").contains("p1"));
    }
}
