//! The Kafka consumer: client configuration and the rebalance/commit/error callbacks.
//!
//! Owns how a [`SidecarConfig`] becomes librdkafka properties ([`consumer_config`], and the
//! connection/security part shared with the dead-letter producer, [`connection_config`]) and the
//! [`ConsumerCtx`] whose callbacks run on the poll thread. It never commits (that is `commit`)
//! and never decides what a rebalance does: it hands assignments and revocations to a
//! [`RebalanceHandler`], which blocks the poll thread until revoked partitions are drained and
//! committed; librdkafka acknowledges the revocation only when the handler returns.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use kcp_crds::{
    SidecarConfig,
    config::{KafkaConfig, SASL_PASSWORD_ENV, SASL_USERNAME_ENV},
    v1alpha1::InitialOffset,
};
use rdkafka::{
    ClientConfig, ClientContext, Offset, TopicPartitionList,
    config::RDKafkaLogLevel,
    consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol},
    error::{KafkaError, KafkaResult},
    types::RDKafkaRespErr,
};
use tracing::{debug, info, warn};

use crate::{
    progress::Progress,
    record::Tp,
    reset::{self, Resets},
    stats::Stats,
};

/// librdkafka defaults the sidecar changes; `kafka.clientConfig` may override each of them.
///
/// Every assigned partition has its own librdkafka queue (`pipeline/poll.rs`), so the queue
/// limits below apply **per partition**, and what the sidecar holds grows with the partitions
/// it is assigned: about `queued.max.messages.kbytes` plus the fetch response its records are
/// in (records point into the whole response until read; a broker never splits a record
/// batch, so a partition holds at least one of the producer's batches). Past that, the
/// sidecar's own buffer is bounded for all partitions together (`dispatch::Budget`).
/// Measured with `kcp-bench --scenario resources` (1,000,000 × 1 KiB records on the mock
/// broker, which needs 264 partitions to keep them; 16 KiB producer batches): peak 58–61 MiB
/// and 45–49k records/s with these values; 440 MiB with librdkafka's queue defaults, and 4k
/// records/s on 8 partitions with a 500 ms `fetch.wait.max.ms`.
pub const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("partition.assignment.strategy", "cooperative-sticky"),
    ("queued.max.messages.kbytes", "64"),
    ("queued.min.messages", "64"),
    // Per partition per fetch; a larger first batch is still returned whole.
    ("fetch.message.max.bytes", "32768"),
    // Per fetch response; at least `message.max.bytes` (librdkafka refuses less).
    ("fetch.max.bytes", "1048576"),
    // A partition whose queue was read empty again joins the next fetch; an in-flight fetch
    // the broker holds for caught-up partitions would otherwise delay it up to this long
    // (librdkafka's default is 500 ms). Costs up to 40 empty fetches a second when idle.
    ("fetch.wait.max.ms", "25"),
    // After a full queue librdkafka waits this long before fetching the partition again (its
    // default is 1000 ms). With queues this small a partition is often full for a moment: one
    // partition drained at 8k records/s with 10 ms and 63k/s with 1 ms (bare consumer, mock).
    ("fetch.queue.backoff.ms", "1"),
    ("enable.partition.eof", "false"),
    ("client.id", "kcp-sidecar"),
];

/// How often librdkafka reports statistics (per-partition lag), unless `clientConfig` says.
pub const STATISTICS_INTERVAL_MS: &str = "5000";

/// Why a Kafka client could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("environment variable {0} is not set; SASL needs it")]
    MissingCredential(&'static str),
    #[error("creating the Kafka consumer")]
    Create(#[source] KafkaError),
    #[error("subscribing to {topics:?}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: KafkaError,
    },
}

/// Sets bootstrap servers and security: what every client of the cluster needs.
pub fn connection_config(
    c: &mut ClientConfig,
    kafka: &KafkaConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConsumerError> {
    c.set("bootstrap.servers", &kafka.bootstrap_servers);
    let s = &kafka.security;
    c.set("security.protocol", s.protocol.as_str());
    if let Some(mechanism) = s.sasl_mechanism {
        c.set("sasl.mechanism", mechanism.as_str());
        let user =
            env(SASL_USERNAME_ENV).ok_or(ConsumerError::MissingCredential(SASL_USERNAME_ENV))?;
        let pass =
            env(SASL_PASSWORD_ENV).ok_or(ConsumerError::MissingCredential(SASL_PASSWORD_ENV))?;
        c.set("sasl.username", user);
        c.set("sasl.password", pass);
    }
    for (key, file) in [
        ("ssl.ca.location", &s.ca_file),
        ("ssl.certificate.location", &s.cert_file),
        ("ssl.key.location", &s.key_file),
    ] {
        if let Some(file) = file {
            c.set(key, file);
        }
    }
    Ok(())
}

/// Who this consumer is in its group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The pod's name: `client.id` becomes `kcp-sidecar-<pod>` (unless `clientConfig` sets one),
    /// so the group's description shows which pod holds which partition.
    pub pod_name: Option<String>,
    /// A stable `group.instance.id` (static membership), only for a stable identity: a member
    /// with one does not leave the group when it stops, so its partitions wait for
    /// `session.timeout.ms`. Never a Deployment's pod name (ARCHITECTURE.md "Pod lifecycle").
    pub group_instance_id: Option<String>,
}

/// Every consumer property: sidecar defaults, then `clientConfig`, then the keys the sidecar
/// owns (group, membership, manual offset handling, connection and security).
pub fn consumer_config(
    config: &SidecarConfig,
    identity: &Identity,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ClientConfig, ConsumerError> {
    let k = &config.kafka;
    let mut c = ClientConfig::new();
    for (key, value) in CONSUMER_DEFAULTS {
        c.set(*key, *value);
    }
    if let Some(pod) = identity.pod_name.as_deref().filter(|p| !p.is_empty()) {
        c.set("client.id", format!("kcp-sidecar-{pod}"));
    }
    // Per-partition lag for `/metrics` and `/status` (`ConsumerCtx::stats`); overridable.
    c.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    for (key, value) in &k.client_config {
        c.set(key, value);
    }
    // An out-of-range position resumes at the earliest retained record, never at the end;
    // `kafka.initialOffset` is applied at assignment, to partitions never committed on
    // (`reset.rs`, `ConsumerCtx::rebalance`).
    c.set("auto.offset.reset", "earliest");
    // rdkafka takes librdkafka's log level from the `log` crate's, which is `Error` when nothing
    // logs through it: the warning an out-of-range reset is reported by must get through.
    if (c.log_level as i32) < (RDKafkaLogLevel::Warning as i32) {
        c.set_log_level(RDKafkaLogLevel::Warning);
    }
    // Not via `config_map()`: it hides secrets behind a placeholder.
    connection_config(&mut c, k, env)?;
    c.set("group.id", &k.group_id);
    if let Some(id) = identity
        .group_instance_id
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        c.set("group.instance.id", id);
    }
    c.set("enable.auto.commit", "false");
    c.set("enable.auto.offset.store", "false");
    Ok(c)
}

/// What the pipeline does when the group changes; called on the poll thread.
pub trait RebalanceHandler: Send + Sync + 'static {
    /// Partitions were assigned; called before librdkafka starts fetching them. `inherited`:
    /// what the group's last commit of each said above its offset (`progress.rs`), when it
    /// could be read and parsed.
    fn assigned(
        &self,
        consumer: &BaseConsumer<ConsumerCtx>,
        tps: &[Tp],
        inherited: HashMap<Tp, Progress>,
    );
    /// Partitions are being revoked (or were lost); must return only once they are drained and
    /// their offsets committed (or `drainTimeout` passed).
    fn revoking(&self, consumer: &BaseConsumer<ConsumerCtx>, tps: &[Tp], lost: bool);
    /// Kafka answered an asynchronous commit.
    fn commit_done(&self, result: &KafkaResult<()>, offsets: &TopicPartitionList);
    /// Whether the consumer is being closed (its last handle is being dropped): an assignment
    /// then is revoked again before anything is read, and nothing may wait on Kafka.
    fn closing(&self) -> bool;
}

/// The consumer's context: routes librdkafka callbacks to tracing, [`Stats`] and the handler.
pub struct ConsumerCtx {
    pub handler: Arc<dyn RebalanceHandler>,
    pub stats: Arc<Stats>,
    /// Where partitions the group never committed on start.
    pub initial_offset: InitialOffset,
    /// Out-of-range resets read from librdkafka's log, for the poll loop to report.
    pub resets: Arc<Resets>,
    /// What the committed metadata of the partitions being assigned said, read in `rebalance`
    /// and handed to the handler in `pre_rebalance`.
    pub inherited: Mutex<HashMap<Tp, Progress>>,
}

/// How long reading the group's committed offsets at assignment may take.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(10);

/// The partitions in a list.
pub fn tps_of(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| Tp::new(e.topic(), e.partition()))
        .collect()
}

impl ClientContext for ConsumerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if let Some((tp, was)) = reset::parse_reset(message) {
            // Reported at ERROR, with what it cost, when the partition's next record arrives.
            debug!(target: "librdkafka", fac, "{message}");
            self.resets.reported(tp, was);
            return;
        }
        log_librdkafka(level, fac, message);
    }

    /// librdkafka's statistics: records each assigned partition's `consumer_lag`.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut queued = Vec::new();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 {
                    let tp = Tp::new(topic.as_str(), *partition);
                    self.stats.set_lag(&tp, p.consumer_lag);
                    queued.push((tp, p.fetchq_cnt));
                }
            }
        }
        let unassigned = unassigned_queued(&queued, |tp| self.stats.is_assigned(tp));
        self.stats
            .unassigned_fetch_queued
            .store(unassigned, std::sync::atomic::Ordering::Relaxed);
        Stats::incr(&self.stats.librdkafka_reports);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        warn!(%error, reason, "Kafka client error; librdkafka keeps retrying");
        self.stats
            .set_last_error(format!("kafka: {error}: {reason}"));
    }
}

impl ConsumerContext for ConsumerCtx {
    /// rdkafka's own rebalance (pre-rebalance, assign or unassign, post-rebalance), with the
    /// start offsets of `kafka.initialOffset` put into a new assignment first.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let assign = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        // While closing, an assignment is revoked again at once: reading the committed offsets
        // would hold the close for their whole timeout (the group is being left).
        if assign && !self.handler.closing() {
            let inherited = self.read_committed(consumer, tpl);
            *self
                .inherited
                .lock()
                .expect("invariant: inherited lock never poisoned") = inherited;
        }
        let rebalance = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Rebalance::Assign(tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(tpl),
            other => Rebalance::Error(KafkaError::Rebalance(other.into())),
        };
        self.pre_rebalance(consumer, &rebalance);
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match (err, cooperative) {
            (RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, true) => {
                consumer.incremental_assign(tpl)
            }
            (RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, false) => consumer.assign(tpl),
            (_, true) => consumer.incremental_unassign(tpl),
            (_, false) => consumer.unassign(),
        };
        if let Err(e) = result {
            warn!(error = %e, assign, "Applying the rebalance failed");
            self.stats.set_last_error(format!("rebalance: {e}"));
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        Stats::incr(&self.stats.rebalances);
        match rebalance {
            Rebalance::Assign(tpl) => {
                let tps = tps_of(tpl);
                info!(partitions = ?tps.iter().map(Tp::to_string).collect::<Vec<_>>(), "Partitions assigned");
                let inherited = std::mem::take(
                    &mut *self
                        .inherited
                        .lock()
                        .expect("invariant: inherited lock never poisoned"),
                );
                self.handler.assigned(consumer, &tps, inherited);
                self.stats
                    .joined
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Rebalance::Revoke(tpl) => {
                let tps = tps_of(tpl);
                let lost = rdkafka::consumer::Consumer::assignment_lost(consumer);
                info!(partitions = ?tps.iter().map(Tp::to_string).collect::<Vec<_>>(), lost, "Partitions revoked");
                self.handler.revoking(consumer, &tps, lost);
                if lost {
                    self.stats
                        .joined
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Rebalance::Error(e) => {
                warn!(error = %e, "Rebalance failed");
                self.stats.set_last_error(format!("rebalance: {e}"));
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.handler.commit_done(&result, offsets);
    }
}

impl ConsumerCtx {
    /// Reads the group's committed offsets of the partitions being assigned: sets those never
    /// committed on to start at the end (`initialOffset: latest`), and returns what each
    /// commit's metadata says above its offset (`progress.rs`; another client's or a corrupt
    /// string says nothing). When they cannot be read, librdkafka starts uncommitted partitions
    /// at the earliest record and nothing is known above the offsets: a duplicate, never a skip.
    fn read_committed(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
    ) -> HashMap<Tp, Progress> {
        let committed = match consumer.committed_offsets(tpl.clone(), COMMITTED_TIMEOUT) {
            Ok(list) => list,
            Err(e) => {
                warn!(error = %e, "Could not read the committed offsets; partitions without one start at the earliest record, and finished records above them may be delivered again");
                return HashMap::new();
            }
        };
        let mut inherited = HashMap::new();
        for e in committed.elements() {
            let Offset::Offset(at) = e.offset() else {
                continue;
            };
            // rdkafka panics on metadata that is not UTF-8 (another client's bytes): no claim.
            let text =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| e.metadata().to_owned()))
                    .unwrap_or_default();
            let tp = Tp::new(e.topic(), e.partition());
            match Progress::decode(&text, at) {
                Some(p) => {
                    debug!(%tp, committed = at, highest = p.highest, unfinished = p.unfinished.len(), clean = p.clean, "Committed progress read");
                    inherited.insert(tp, p);
                }
                None if !text.is_empty() => {
                    debug!(%tp, "Committed metadata not ours; records above the offset are delivered again")
                }
                None => {}
            }
        }
        if self.initial_offset == InitialOffset::Latest {
            self.set_start_offsets(&committed, tpl);
        }
        inherited
    }

    /// Sets the partitions of `tpl` the group never committed on (per `committed`) to start at
    /// the end (`initialOffset: latest`).
    fn set_start_offsets(&self, committed: &TopicPartitionList, tpl: &mut TopicPartitionList) {
        let known: Vec<(Tp, Option<i64>)> = committed
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                (Tp::new(e.topic(), e.partition()), offset)
            })
            .collect();
        for (tp, offset) in reset::start_offsets(&known, self.initial_offset) {
            info!(%tp, "No committed offset: starting after the last record (initialOffset: latest)");
            if let Err(e) = tpl.set_partition_offset(&tp.topic, tp.partition, offset) {
                warn!(%tp, error = %e, "Could not set the start offset; starting at the earliest record");
            }
        }
    }
}

/// Records librdkafka queues (`fetchq_cnt` per partition in its statistics) for partitions
/// this replica does not hold: what a revoked partition's undrained queue would pin.
pub fn unassigned_queued(queued: &[(Tp, i64)], assigned: impl Fn(&Tp) -> bool) -> u64 {
    queued
        .iter()
        .filter(|(tp, _)| !assigned(tp))
        .map(|(_, n)| (*n).max(0) as u64)
        .sum()
}

/// librdkafka's own log lines, at a matching level. Its "errors" (a broker unreachable) are
/// retried internally, so they are warnings here: nothing is lost by them.
pub fn log_librdkafka(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error
        | RDKafkaLogLevel::Warning => warn!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            info!(target: "librdkafka", fac, "{message}")
        }
        RDKafkaLogLevel::Debug => debug!(target: "librdkafka", fac, "{message}"),
    }
}

#[cfg(test)]
mod tests;
