//! Produces records that cannot be delivered to their dead-letter topic.
//!
//! Owns the idempotent producer (`acks=all`, `enable.idempotence=true`). [`DeadLetter::produce`]
//! returns `Ok` only after the broker acknowledged the record; the caller marks the original
//! finished only then, so an offset is never committed past a record that is neither delivered
//! nor safely dead-lettered. It never retries by itself (the caller does, with backoff).
//!
//! The dead-letter record has the original key, value and headers (all of them, in order), plus:
//!
//! | header | value |
//! |---|---|
//! | `kcp-dlq-original-topic`, `-partition`, `-offset` | where the record came from |
//! | `kcp-dlq-original-timestamp` | its timestamp, ms since the epoch (absent when it had none) |
//! | `kcp-dlq-attempts` | delivery attempts made (app-down waits do not count) |
//! | `kcp-dlq-last-status` | the last HTTP status, when the last failure was a reply |
//! | `kcp-dlq-last-error` | the last transport error (timeout, reset), otherwise |
//! | `kcp-dlq-first-failure`, `kcp-dlq-last-failure` | ms since the epoch |
//! | `kcp-dlq-group` | the consumer group |
//! | `kcp-dlq-reason` | why: `status 422`, `retries exhausted: status 503`, `app asked to dead-letter (status 200)`, `sidecar error: <panic>` |
//! | `kcp-dlq-headers-unreadable` | how many original headers are missing because their name is not UTF-8 (absent when none; see `record`) |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kcp_crds::SidecarConfig;
use rdkafka::{
    ClientContext,
    config::RDKafkaLogLevel,
    error::KafkaError,
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use tracing::warn;

use crate::{consumer::connection_config, consumer::log_librdkafka, record::Record};

/// How the last failed attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LastFailure {
    Status(u16),
    Error(String),
}

/// The failure history of one record, carried into its dead-letter headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureLog {
    pub attempts: u32,
    pub last: LastFailure,
    pub first_at: SystemTime,
    pub last_at: SystemTime,
}

impl FailureLog {
    /// Records a failed attempt.
    pub fn record(log: &mut Option<Self>, attempts: u32, last: LastFailure, now: SystemTime) {
        match log {
            Some(l) => {
                l.attempts = attempts;
                l.last = last;
                l.last_at = now;
            }
            None => {
                *log = Some(Self {
                    attempts,
                    last,
                    first_at: now,
                    last_at: now,
                })
            }
        }
    }
}

/// Why a dead-letter produce failed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("creating the dead-letter producer")]
    Create(#[source] KafkaError),
    #[error("configuring the dead-letter producer")]
    Config(#[source] crate::consumer::ConsumerError),
    #[error("producing to {topic}")]
    Produce {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

fn millis(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .to_string()
}

/// The dead-letter record's headers: the original ones, then the `kcp-dlq-*` ones. Pure.
pub fn dead_letter_headers(
    record: &Record,
    failure: &FailureLog,
    reason: &str,
    group: &str,
) -> Vec<(String, Option<Vec<u8>>)> {
    let mut h: Vec<(String, Option<Vec<u8>>)> = record
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.as_ref().map(|b| b.to_vec())))
        .collect();
    let mut add = |k: &str, v: String| h.push((k.to_owned(), Some(v.into_bytes())));
    add("kcp-dlq-original-topic", record.tp.topic.to_string());
    add(
        "kcp-dlq-original-partition",
        record.tp.partition.to_string(),
    );
    add("kcp-dlq-original-offset", record.offset.to_string());
    if let Some(ts) = record.timestamp {
        add("kcp-dlq-original-timestamp", ts.to_string());
    }
    add("kcp-dlq-attempts", failure.attempts.to_string());
    match &failure.last {
        LastFailure::Status(s) => add("kcp-dlq-last-status", s.to_string()),
        LastFailure::Error(e) => add("kcp-dlq-last-error", e.clone()),
    }
    add("kcp-dlq-first-failure", millis(failure.first_at));
    add("kcp-dlq-last-failure", millis(failure.last_at));
    add("kcp-dlq-group", group.to_owned());
    add("kcp-dlq-reason", reason.to_owned());
    if record.unreadable_headers > 0 {
        add(
            "kcp-dlq-headers-unreadable",
            record.unreadable_headers.to_string(),
        );
    }
    h
}

struct ProducerCtx;

impl ClientContext for ProducerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        warn!(%error, reason, "Dead-letter producer error; librdkafka keeps retrying");
    }
}

/// The dead-letter producer.
pub struct DeadLetter {
    producer: FutureProducer<ProducerCtx>,
    config: kcp_crds::config::DeliveryConfig,
    group: String,
}

impl DeadLetter {
    pub fn new(
        config: &SidecarConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, DeadLetterError> {
        let mut c = rdkafka::ClientConfig::new();
        connection_config(&mut c, &config.kafka, env).map_err(DeadLetterError::Config)?;
        c.set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5")
            // The copy is the original plus the kcp-dlq-* headers, so a record near librdkafka's
            // default client-side limit (1000000 bytes) would be refused before it is sent, and
            // retried forever. The broker's own limit for the dead-letter topic decides instead.
            .set("message.max.bytes", "100000000")
            .set("client.id", "kcp-sidecar-dlq");
        let producer = c
            .create_with_context(ProducerCtx)
            .map_err(DeadLetterError::Create)?;
        Ok(Self {
            producer,
            config: config.delivery.clone(),
            group: config.kafka.group_id.clone(),
        })
    }

    /// The dead-letter topic for `record`.
    pub fn topic_for(&self, record: &Record) -> String {
        self.config.dead_letter_topic_for(&record.tp.topic)
    }

    /// Produces `record` to its dead-letter topic; `Ok((topic, partition, offset))` once the
    /// broker acknowledged it.
    pub async fn produce(
        &self,
        record: &Record,
        failure: &FailureLog,
        reason: &str,
    ) -> Result<(String, i32, i64), DeadLetterError> {
        let topic = self.topic_for(record);
        let headers = dead_letter_headers(record, failure, reason, &self.group)
            .iter()
            .fold(OwnedHeaders::new(), |acc, (k, v)| {
                acc.insert(Header {
                    key: k.as_str(),
                    value: v.as_deref(),
                })
            });
        let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic)
            .payload(&record.value[..])
            .headers(headers);
        if let Some(key) = &record.key {
            fr = fr.key(&key[..]);
        }
        if let Some(ts) = record.timestamp {
            fr = fr.timestamp(ts);
        }
        match self.producer.send(fr, Duration::from_secs(5)).await {
            Ok(d) => Ok((topic, d.partition, d.offset)),
            Err((source, _)) => Err(DeadLetterError::Produce { topic, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::record::Tp;

    #[test]
    fn headers_keep_the_originals_and_add_the_failure() {
        let record = Record {
            tp: Tp::new("orders", 2),
            offset: 17,
            timestamp: Some(1234),
            key: None,
            value: Bytes::new(),
            headers: vec![
                ("a".into(), Some(Bytes::from_static(b"\xff"))),
                ("n".into(), None),
            ],
            unreadable_headers: 2,
        };
        let t0 = UNIX_EPOCH + Duration::from_millis(5000);
        let mut log = None;
        FailureLog::record(&mut log, 1, LastFailure::Error("timeout".into()), t0);
        FailureLog::record(
            &mut log,
            2,
            LastFailure::Status(503),
            t0 + Duration::from_millis(7),
        );
        let log = log.expect("recorded");
        let h = dead_letter_headers(&record, &log, "retries exhausted: status 503", "grp");
        let get = |k: &str| {
            h.iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.clone())
                .map(|v| String::from_utf8(v).expect("utf8"))
        };
        assert_eq!(h[0], ("a".to_owned(), Some(vec![0xff])));
        assert_eq!(h[1], ("n".to_owned(), None));
        assert_eq!(get("kcp-dlq-original-topic").as_deref(), Some("orders"));
        assert_eq!(get("kcp-dlq-original-partition").as_deref(), Some("2"));
        assert_eq!(get("kcp-dlq-original-offset").as_deref(), Some("17"));
        assert_eq!(get("kcp-dlq-original-timestamp").as_deref(), Some("1234"));
        assert_eq!(get("kcp-dlq-attempts").as_deref(), Some("2"));
        assert_eq!(get("kcp-dlq-last-status").as_deref(), Some("503"));
        assert_eq!(get("kcp-dlq-last-error"), None);
        assert_eq!(get("kcp-dlq-first-failure").as_deref(), Some("5000"));
        assert_eq!(get("kcp-dlq-last-failure").as_deref(), Some("5007"));
        assert_eq!(get("kcp-dlq-group").as_deref(), Some("grp"));
        assert_eq!(
            get("kcp-dlq-reason").as_deref(),
            Some("retries exhausted: status 503")
        );
        assert_eq!(get("kcp-dlq-headers-unreadable").as_deref(), Some("2"));
    }
}
