//! Prometheus metrics: one registry, one `Metrics` struct per stage, `kcp_` names with units.
//!
//! Two kinds of series. Distributions and labelled counters that only a metrics library can
//! hold (attempt duration, end-to-end latency, failed attempts by class) live in
//! [`DeliveryMetrics`], updated by `deliver` through [`Stats`]. Everything else is read from
//! [`Stats`] at scrape time by [`StatsCollector`], so `/metrics` and `/status` can never disagree
//! and a revoked partition's series disappear with it. Labels are bounded: `outcome` and `class`
//! are fixed sets, `topic` and `partition` are bounded by the assignment. Never a key or offset.
//! Text exposition only; no HTTP here (that is `admin`).

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{
    forward::Outcome,
    record::Record,
    stats::{Stall, Stats},
};

/// Failed-attempt class label: `2xx`..`5xx`, `timeout`, `connect`, `error`, `undecodable`,
/// `registry`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    pub class: &'static str,
}

/// The delivery stage's own series.
#[derive(Debug, Clone)]
pub struct DeliveryMetrics {
    /// One HTTP attempt, from sending the request to the end of the reply (or the timeout).
    pub attempt_duration: Histogram,
    /// Record timestamp → delivered (2xx accepted).
    pub end_to_end: Histogram,
    /// Attempts that did not deliver (and were not an app's `skip`), by class.
    pub failed_attempts: Family<ClassLabel, Counter>,
    /// Records per batch request (`delivery.batch`).
    pub batch_records: Histogram,
}

impl Default for DeliveryMetrics {
    fn default() -> Self {
        Self {
            // 1 ms .. ~33 s
            attempt_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            // 5 ms .. ~45 min
            end_to_end: Histogram::new(exponential_buckets(0.005, 3.0, 14)),
            failed_attempts: Family::default(),
            // 1 .. 1024
            batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
        }
    }
}

impl DeliveryMetrics {
    /// The class of a failed attempt's outcome.
    pub fn class(outcome: &Outcome) -> &'static str {
        match outcome {
            Outcome::Response { status, .. } => match status / 100 {
                1 => "1xx",
                2 => "2xx",
                3 => "3xx",
                4 => "4xx",
                _ => "5xx",
            },
            Outcome::Timeout => "timeout",
            Outcome::Unreachable(_) => "connect",
            Outcome::Failed(_) => "error",
            Outcome::Undecodable(_) => "undecodable",
            Outcome::RegistryUnavailable(_) => "registry",
        }
    }

    pub fn attempt_failed(&self, outcome: &Outcome) {
        self.failed_attempts
            .get_or_create(&ClassLabel {
                class: Self::class(outcome),
            })
            .inc();
    }

    /// A batch request carried `records` records.
    pub fn batch_sent(&self, records: usize) {
        self.batch_records.observe(records as f64);
    }

    pub fn attempt_took(&self, elapsed: Duration) {
        self.attempt_duration.observe(elapsed.as_secs_f64());
    }

    /// A record was delivered now: observe its end-to-end latency (when it has a timestamp).
    pub fn delivered(&self, record: &Record, now_ms: i64) {
        if let Some(ts) = record.timestamp {
            // Saturating: a record's timestamp is whatever its producer wrote.
            let ms = now_ms.saturating_sub(ts).max(0);
            self.end_to_end.observe(ms as f64 / 1000.0);
        }
    }
}

/// The registry served at `/metrics` for one pipeline.
pub fn registry(stats: &Arc<Stats>) -> Registry {
    let mut registry = Registry::with_prefix("kcp");
    let m = &stats.metrics;
    registry.register(
        "delivery_attempt_duration_seconds",
        "Duration of one HTTP delivery attempt",
        m.attempt_duration.clone(),
    );
    registry.register(
        "end_to_end_latency_seconds",
        "Record timestamp to delivered (accepted by the app)",
        m.end_to_end.clone(),
    );
    registry.register(
        "delivery_failed_attempts",
        "Delivery attempts that did not deliver, by class (2xx with a retry action or a failed bodyAck, 4xx, 5xx, timeout, connect, error, undecodable: the record could not be decoded or shaped, registry: the schema registry could not be read)",
        m.failed_attempts.clone(),
    );
    registry.register(
        "batch_records",
        "Records per batch request (delivery.batch; none without it)",
        m.batch_records.clone(),
    );
    registry.register_collector(Box::new(StatsCollector(Arc::clone(stats))));
    registry
}

/// Encodes `registry` in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("invariant: writing to a String never fails");
    out
}

/// Reads [`Stats`] at scrape time (names get the registry's `kcp_` prefix).
#[derive(Debug)]
pub struct StatsCollector(pub Arc<Stats>);

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for StatsCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let stats = &self.0;
        let s = stats.snapshot();
        counter(
            &mut e,
            "records_received",
            "Records handed over by the consumer",
            s.received,
        )?;
        {
            let c = ConstCounter::new(0u64);
            let mut d = e.encode_descriptor(
                "deliveries",
                "Delivery results: delivered, dead_lettered and skipped are final; retried counts attempts that will be tried again",
                None,
                c.metric_type(),
            )?;
            for (outcome, v) in [
                ("delivered", s.delivered),
                ("retried", s.retried),
                ("dead_lettered", s.dead_lettered),
                ("skipped", s.skipped),
            ] {
                ConstCounter::new(v).encode(d.encode_family(&[("outcome", outcome)])?)?;
            }
        }
        counter(
            &mut e,
            "app_unreachable_attempts",
            "Attempts that found the endpoint unreachable (not counted against maxAttempts)",
            s.app_down,
        )?;
        counter(
            &mut e,
            "dead_letter_produce_failures",
            "Dead-letter produce attempts that failed (the record stays uncommitted and is retried)",
            s.dead_letter_failures,
        )?;
        counter(
            &mut e,
            "record_headers_unreadable",
            "Kafka headers left out of a delivered record because their name is not UTF-8 (the request says how many in kcp-headers-unreadable)",
            s.headers_unreadable,
        )?;
        counter(
            &mut e,
            "lane_panics",
            "Panics caught while processing a record (a sidecar bug, logged at ERROR): the record is dead-lettered, or, when that fails too, kcp_restart_needed is set",
            s.lane_panics,
        )?;
        gauge(
            &mut e,
            "restart_needed",
            "1 when a record was left without an outcome after an internal error: /healthz fails so that Kubernetes restarts the pod",
            i64::from(s.broken.is_some()),
        )?;
        gauge(
            &mut e,
            "requests_in_flight",
            "HTTP requests in flight",
            s.in_flight as i64,
        )?;
        counter(
            &mut e,
            "commits",
            "Offset commits acknowledged by Kafka",
            s.commits,
        )?;
        counter(
            &mut e,
            "commit_failures",
            "Offset commits refused or failed",
            s.commit_failures,
        )?;
        counter(
            &mut e,
            "offset_resets",
            "Partitions whose position was out of range (records deleted by retention, a truncated or recreated topic) and resumed at the earliest retained record",
            s.offset_resets,
        )?;
        counter(
            &mut e,
            "finished_records_skipped",
            "Records not delivered again because a previous owner of their partition had finished them (its commit said so)",
            s.finished_skipped,
        )?;
        counter(
            &mut e,
            "commit_metadata_overflows",
            "Commits whose metadata could not list every record unfinished above the committed offset; records finished above those left out may be delivered again after a handover",
            s.metadata_overflows,
        )?;
        counter(
            &mut e,
            "crash_loop_dead_letters",
            "Records dead-lettered because they were in flight during delivery.maxCrashes consecutive crashes of the sidecar",
            s.crash_looped,
        )?;
        counter(
            &mut e,
            "rebalances",
            "Rebalance events (assign or revoke)",
            s.rebalances,
        )?;
        counter(
            &mut e,
            "buffer_pauses",
            "Times the sidecar stopped taking records because a buffer (a partition's, or all partitions' together) was full",
            s.pauses,
        )?;
        gauge(
            &mut e,
            "buffered_records",
            "Records taken from Kafka and not yet finished, all partitions together",
            s.buffered_records as i64,
        )?;
        gauge(
            &mut e,
            "buffered_bytes",
            "Bytes of the records taken from Kafka and not yet finished, all partitions together",
            s.buffered_bytes as i64,
        )?;
        gauge(
            &mut e,
            "unassigned_fetch_queued_records",
            "Records librdkafka still holds for partitions this replica no longer has (revoked queues are drained, so this returns to 0)",
            s.unassigned_fetch_queued as i64,
        )?;
        gauge(
            &mut e,
            "left_group_for_app",
            "1 while the replica is out of the group because its app was not ready for endpoint.unreadyTimeout",
            i64::from(s.left_for_app),
        )?;
        gauge(
            &mut e,
            "parked_records",
            "Of the buffered records, those parked behind a record that has not finished for 20 s (a blocked key, partition or record), all partitions together",
            s.parked_records as i64,
        )?;
        gauge(
            &mut e,
            "parked_bytes",
            "Bytes of the parked records, all partitions together",
            s.parked_bytes as i64,
        )?;
        {
            let g = ConstGauge::new(0i64);
            let mut d = e.encode_descriptor(
                "stalled_partitions",
                "Assigned partitions not read because of records that do not finish, by reason: record_not_finishing (partition order: the partition's record), partition_parked_bound, replica_parked_bound (records parked behind them reached a bound)",
                None,
                g.metric_type(),
            )?;
            for reason in Stall::ALL {
                let n = s
                    .partitions
                    .values()
                    .filter(|p| p.stalled == Some(reason))
                    .count();
                ConstGauge::new(n as i64)
                    .encode(d.encode_family(&[("reason", reason.label())])?)?;
            }
        }
        counter(
            &mut e,
            "partition_stalls",
            "Times a partition stopped being read because of records that do not finish (see kcp_stalled_partitions)",
            s.stalls,
        )?;
        gauge(
            &mut e,
            "group_joined",
            "1 when the consumer has joined its group (an assignment, possibly empty)",
            i64::from(s.joined),
        )?;
        gauge(
            &mut e,
            "app_ready",
            "1 when the app answers (readiness gate open), 0 while fetching is paused for it",
            i64::from(s.gate_open),
        )?;
        gauge(
            &mut e,
            "paused",
            "1 while a pause was requested (the control file): no record is taken, the partitions stay assigned",
            i64::from(s.paused),
        )?;
        gauge(
            &mut e,
            "concurrency_limit",
            "Requests to the app allowed in flight now: maxInFlight, or the adaptive limit under it",
            i64::try_from(s.concurrency_limit).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut e,
            "uncommitted_records",
            "Records sent to the app whose end is not yet committed: at most delivery.maxUncommitted, the most a crash can deliver again",
            i64::try_from(s.uncommitted).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut e,
            "endpoint_outage",
            "1 while the endpoint fails every record alike: attempts are not counted, nothing is dead-lettered, fetching is paused and one request at a time probes it",
            i64::from(s.endpoint_outage.is_some()),
        )?;
        counter(
            &mut e,
            "endpoint_outages",
            "Endpoint outages seen begin",
            s.endpoint_outages,
        )?;
        {
            let c = ConstCounter::new(stats.gate.closed_time().as_secs_f64());
            c.encode(e.encode_descriptor(
                "app_not_ready_paused_seconds",
                "Time fetching was paused because the app did not answer (startup included)",
                None,
                c.metric_type(),
            )?)?;
        }
        gauge(
            &mut e,
            "assigned_partitions",
            "Partitions assigned to this replica",
            s.partitions.len() as i64,
        )?;
        gauge(
            &mut e,
            "paused_partitions",
            "Assigned partitions the sidecar is not taking records from (their buffer full, stalled, the app not ready, or paused by request)",
            s.partitions
                .values()
                .filter(|p| p.paused || p.stalled.is_some() || s.gate_paused)
                .count() as i64,
        )?;
        {
            let g = ConstGauge::new(s.poll_age_ms as f64 / 1000.0);
            g.encode(e.encode_descriptor(
                "poll_heartbeat_age_seconds",
                "Time since the poll loop last ticked (liveness fails past a threshold)",
                None,
                g.metric_type(),
            )?)?;
        }
        let parts = stats.partitions();
        {
            let g = ConstGauge::new(0i64);
            let mut d = e.encode_descriptor(
                "partition_committed_offset",
                "Next offset to consume, as last committed by this replica (acknowledged, or sent by the periodic commit)",
                None,
                g.metric_type(),
            )?;
            for (tp, p) in &parts {
                if let Some(o) = p.committed.max(p.commit_requested) {
                    let labels = [
                        ("topic", tp.topic.to_string()),
                        ("partition", tp.partition.to_string()),
                    ];
                    ConstGauge::new(o).encode(d.encode_family(&labels)?)?;
                }
            }
        }
        {
            let g = ConstGauge::new(0i64);
            let mut d = e.encode_descriptor(
                "partition_lag_records",
                "Records between the committed offset and the end of the partition (librdkafka statistics)",
                None,
                g.metric_type(),
            )?;
            for (tp, p) in &parts {
                if let Some(lag) = p.lag {
                    let labels = [
                        ("topic", tp.topic.to_string()),
                        ("partition", tp.partition.to_string()),
                    ];
                    ConstGauge::new(lag).encode(d.encode_family(&labels)?)?;
                }
            }
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        {
            let g = ConstGauge::new(0i64);
            let mut d = e.encode_descriptor(
                "partition_lag_seconds",
                "Age in seconds of the oldest record this replica took from the partition and has not finished (0 when it has none and the partition has no lag)",
                None,
                g.metric_type(),
            )?;
            for (tp, p) in &parts {
                let seconds = match p.oldest_unfinished_ms {
                    Some(ms) => Some(now_ms.saturating_sub(ms).max(0) / 1000),
                    None if p.pending == 0 && p.lag == Some(0) => Some(0),
                    None => None,
                };
                if let Some(seconds) = seconds {
                    let labels = [
                        ("topic", tp.topic.to_string()),
                        ("partition", tp.partition.to_string()),
                    ];
                    ConstGauge::new(seconds).encode(d.encode_family(&labels)?)?;
                }
            }
        }
        {
            let g = ConstGauge::new(0i64);
            let mut d = e.encode_descriptor(
                "partition_dead_lettered_records",
                "Records of the partition the consumer group dead-lettered, over every replica that owned it (carried in the commits)",
                None,
                g.metric_type(),
            )?;
            for (tp, p) in &parts {
                if let Some(n) = p.dead_lettered {
                    let labels = [
                        ("topic", tp.topic.to_string()),
                        ("partition", tp.partition.to_string()),
                    ];
                    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                        .encode(d.encode_family(&labels)?)?;
                }
            }
        }
        {
            let g = ConstGauge::new(0i64);
            let mut d = e.encode_descriptor(
                "partition_paused",
                "1 when the sidecar is not taking the partition's records (its buffer full, stalled, the app not ready, or paused by request)",
                None,
                g.metric_type(),
            )?;
            for (tp, p) in &parts {
                let labels = [
                    ("topic", tp.topic.to_string()),
                    ("partition", tp.partition.to_string()),
                ];
                ConstGauge::new(i64::from(p.paused || p.stalled.is_some() || s.gate_paused))
                    .encode(d.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
