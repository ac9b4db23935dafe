//! Produces records that cannot be delivered to their dead-letter topic.
//!
//! Owns the idempotent producer (`acks=all`, `enable.idempotence=true`; its properties, with
//! the general part of `kafka.clientConfig`, are [`properties`]). [`DeadLetter::produce`]
//! returns `Ok` only after the broker acknowledged the record; the caller marks the original
//! finished only then, so an offset is never committed past a record that is neither delivered
//! nor safely dead-lettered. It never retries by itself (the caller does, with backoff).
//!
//! A fatal error (librdkafka INTRODUCTION.md, "Fatal producer errors": the broker refused the
//! producer id, e.g. without the IdempotentWrite ACL on brokers before Kafka 2.8, or the
//! broker lost the producer's sequence state) fails every later produce of that producer.
//! The produce that sees one replaces the producer, once per fatal error however many produces
//! saw it (a generation number decides), and returns [`DeadLetterError::Fatal`]; the caller's
//! next attempt runs on the new producer. Records the old one had not sent are not lost: their
//! produces fail, and their callers retry them too.
//!
//! The dead-letter record has the original key, value and headers (all of them, in order). Its
//! timestamp (CreateTime) is the time it was dead-lettered, so the dead-letter topic's
//! retention counts from then and does not delete the copy of an old record at once; the
//! original timestamp is in a header. It has these headers too ([`headers`]):
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

pub mod headers;
pub mod properties;

use std::{
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime},
};

use kcp_crds::SidecarConfig;
use rdkafka::{
    ClientConfig, ClientContext,
    config::RDKafkaLogLevel,
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer as _},
};
use tracing::{error, warn};

pub use headers::{FailureLog, LastFailure, dead_letter_headers};

use crate::{consumer::log_librdkafka, record::Record};

/// How long a produce waits for room in librdkafka's queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

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
    #[error(
        "producing to {topic}: the producer failed fatally ({reason}); the next attempt uses a new one"
    )]
    Fatal {
        topic: String,
        code: RDKafkaErrorCode,
        reason: String,
    },
}

/// What an operator should check after the producer failed fatally with `code`. Pure.
pub fn fatal_advice(code: RDKafkaErrorCode) -> &'static str {
    match code {
        RDKafkaErrorCode::ClusterAuthorizationFailed => {
            "the broker refused the idempotent producer id: grant the sidecar's principal the \
             IdempotentWrite ACL on the cluster (needed by brokers before Kafka 2.8)"
        }
        RDKafkaErrorCode::UnsupportedFeature => {
            "the broker does not support idempotent producers (Kafka 0.11 or later is needed)"
        }
        RDKafkaErrorCode::OutOfOrderSequenceNumber
        | RDKafkaErrorCode::UnknownProducerId
        | RDKafkaErrorCode::InvalidProducerEpoch
        | RDKafkaErrorCode::Inconsistent => {
            "the broker lost the producer's state (an unclean leader election, a truncated or \
             deleted dead-letter partition): check the brokers and the dead-letter topic"
        }
        _ => "see the reason; check the broker logs for the sidecar's principal",
    }
}

struct ProducerCtx;

impl ClientContext for ProducerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            warn!(%error, reason, "Dead-letter producer failed fatally; it is replaced at its next produce");
        } else {
            warn!(%error, reason, "Dead-letter producer error; librdkafka keeps retrying");
        }
    }
}

type DlqProducer = FutureProducer<ProducerCtx>;

/// The producer in use, and how many it replaced.
struct Current {
    generation: u64,
    producer: DlqProducer,
}

/// The dead-letter producer.
pub struct DeadLetter {
    /// What a replacement producer is created from.
    properties: ClientConfig,
    current: Mutex<Current>,
    config: kcp_crds::config::DeliveryConfig,
    group: String,
}

impl DeadLetter {
    pub fn new(
        config: &SidecarConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, DeadLetterError> {
        let properties =
            properties::producer_config(&config.kafka, env).map_err(DeadLetterError::Config)?;
        let producer = properties
            .create_with_context(ProducerCtx)
            .map_err(DeadLetterError::Create)?;
        Ok(Self {
            properties,
            current: Mutex::new(Current {
                generation: 0,
                producer,
            }),
            config: config.delivery.clone(),
            group: config.kafka.group_id.clone(),
        })
    }

    /// The dead-letter topic for `record`.
    pub fn topic_for(&self, record: &Record) -> String {
        self.config.dead_letter_topic_for(&record.tp.topic)
    }

    /// How many times the producer was replaced after a fatal error.
    pub fn recreated(&self) -> u64 {
        self.lock().generation
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
            .headers(headers)
            .timestamp(headers::epoch_millis(SystemTime::now()));
        if let Some(key) = &record.key {
            fr = fr.key(&key[..]);
        }
        let (generation, producer) = {
            let current = self.lock();
            (current.generation, current.producer.clone())
        };
        let result = match producer.send(fr, QUEUE_TIMEOUT).await {
            Ok(d) => Ok((topic, d.partition, d.offset)),
            Err((source, _)) => Err(match producer.client().fatal_error() {
                Some((code, reason)) => {
                    self.replace(generation, code, &reason);
                    DeadLetterError::Fatal {
                        topic,
                        code,
                        reason,
                    }
                }
                None => DeadLetterError::Produce { topic, source },
            }),
        };
        if generation != self.lock().generation {
            retire(producer);
        }
        result
    }

    fn lock(&self) -> MutexGuard<'_, Current> {
        // Nothing panics while holding it; a poisoned lock still holds a usable producer.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the producer of `generation`, unless another produce already did.
    fn replace(&self, generation: u64, code: RDKafkaErrorCode, reason: &str) {
        let mut current = self.lock();
        if current.generation != generation {
            return;
        }
        match self.properties.create_with_context(ProducerCtx) {
            Ok(producer) => {
                let old = std::mem::replace(&mut current.producer, producer);
                current.generation += 1;
                drop(current);
                error!(
                    ?code,
                    reason,
                    advice = fatal_advice(code),
                    replaced = generation + 1,
                    "Dead-letter producer failed fatally; replaced it with a new one"
                );
                retire(old);
            }
            Err(e) => {
                error!(?code, reason, advice = fatal_advice(code), error = %e,
                    "Dead-letter producer failed fatally and a new one could not be created; the next attempt tries again");
            }
        }
    }
}

/// Drops a replaced producer off the async workers: dropping its last handle waits for
/// librdkafka (a flush of up to 500 ms, then its threads).
fn retire(producer: DlqProducer) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || drop(producer));
        }
        Err(_) => drop(producer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_advice_names_the_acl_for_a_refused_producer_id() {
        assert!(
            fatal_advice(RDKafkaErrorCode::ClusterAuthorizationFailed).contains("IdempotentWrite")
        );
        assert!(fatal_advice(RDKafkaErrorCode::OutOfOrderSequenceNumber).contains("lost"));
    }
}
