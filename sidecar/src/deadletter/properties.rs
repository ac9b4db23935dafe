//! The dead-letter producer's librdkafka properties ([`producer_config`]).
//!
//! Pure: config and environment in, properties out. Three sources, later ones winning:
//!
//! 1. `kafka.clientConfig`, but only its general properties (marked `*` in librdkafka's
//!    `CONFIGURATION.md`: sockets, timeouts, metadata refresh, `client.rack`, `debug`, ...).
//!    Consumer-only ones (`kcp_crds::librdkafka::CONSUMER_ONLY_PROPERTIES`) are left out: a
//!    producer would ignore each with a warning. So are [`NOT_FOR_THE_PRODUCER`].
//! 2. The connection and security settings every client of the cluster has
//!    ([`connection_config`]; `clientConfig` cannot set them).
//! 3. [`PRODUCER_SETTINGS`]: what the dead-letter guarantee rests on. They win over
//!    `clientConfig`.

use kcp_crds::{config::KafkaConfig, librdkafka::is_consumer_only_property};
use rdkafka::ClientConfig;

use crate::consumer::{ConsumerError, connection_config};

/// Properties the dead-letter producer always sets, over `clientConfig`.
pub const PRODUCER_SETTINGS: &[(&str, &str)] = &[
    // Acknowledged by every in-sync replica, once and in order: only then is the original
    // finished.
    ("acks", "all"),
    ("enable.idempotence", "true"),
    ("message.timeout.ms", "30000"),
    ("linger.ms", "5"),
    // The copy is the original plus the kcp-dlq-* headers, so a record near librdkafka's
    // default client-side limit (1000000 bytes) would be refused before it is sent, and
    // retried forever. The broker's own limit for the dead-letter topic decides instead.
    ("message.max.bytes", "100000000"),
    // Tells the producer apart from the consumer in broker logs, quotas and ACL denials.
    ("client.id", "kcp-sidecar-dlq"),
];

/// General properties `clientConfig` may set for the consumer that the dead-letter producer
/// does not take, each with the reason.
pub const NOT_FOR_THE_PRODUCER: &[(&str, &str)] = &[
    (
        "max.in.flight",
        "the idempotent producer needs at most 5; librdkafka picks it",
    ),
    (
        "max.in.flight.requests.per.connection",
        "the idempotent producer needs at most 5; librdkafka picks it",
    ),
    (
        "statistics.interval.ms",
        "the consumer's statistics feed /metrics; nothing reads the producer's",
    ),
];

/// Whether the `clientConfig` property `key` is given to the dead-letter producer.
pub fn applies_to_producer(key: &str) -> bool {
    !is_consumer_only_property(key) && !NOT_FOR_THE_PRODUCER.iter().any(|(k, _)| *k == key)
}

/// Every dead-letter producer property (see the module docs for the order).
pub fn producer_config(
    kafka: &KafkaConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ClientConfig, ConsumerError> {
    let mut c = ClientConfig::new();
    for (key, value) in &kafka.client_config {
        if applies_to_producer(key) {
            c.set(key, value);
        }
    }
    // Not via `config_map()`: it hides secrets behind a placeholder.
    connection_config(&mut c, kafka, env)?;
    for (key, value) in PRODUCER_SETTINGS {
        c.set(*key, *value);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use kcp_crds::{
        SidecarConfig,
        config::{SASL_PASSWORD_ENV, SASL_USERNAME_ENV},
    };
    use rdkafka::producer::BaseProducer;

    use super::*;

    fn kafka(extra: &str) -> KafkaConfig {
        let text = format!(
            r#"{{
            "kafka": {{"bootstrapServers": "b1:9092", "topics": ["orders"], "groupId": "g" {extra}}},
            "endpoint": {{"url": "http://127.0.0.1:8080/", "connectTimeout": "1s",
                          "requestTimeout": "5s", "retryOn": ["5xx"]}},
            "delivery": {{"ordering": "partition", "maxInFlight": 4, "guarantee": "atLeastOnce",
                          "commitInterval": "5s", "drainTimeout": "10s",
                          "retry": {{"maxAttempts": 3, "initialBackoff": "10ms", "maxBackoff": "1s",
                                     "multiplier": 2.0}},
                          "onExhausted": "deadLetter"}}
        }}"#
        );
        SidecarConfig::parse(&text)
            .expect("valid test config")
            .kafka
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn general_client_config_applies_and_consumer_only_does_not() {
        let k = kafka(
            r#", "clientConfig": {"socket.timeout.ms": "12345", "client.rack": "zone-a",
                "debug": "broker", "fetch.max.bytes": "2097152", "session.timeout.ms": "6000",
                "max.in.flight": "100", "statistics.interval.ms": "1000"}"#,
        );
        let c = producer_config(&k, &no_env).expect("config");
        assert_eq!(c.get("socket.timeout.ms"), Some("12345"));
        assert_eq!(c.get("client.rack"), Some("zone-a"));
        assert_eq!(c.get("debug"), Some("broker"));
        assert_eq!(c.get("fetch.max.bytes"), None, "consumer-only");
        assert_eq!(c.get("session.timeout.ms"), None, "consumer-only");
        assert_eq!(c.get("max.in.flight"), None);
        assert_eq!(c.get("statistics.interval.ms"), None);
        // librdkafka accepts the result: `max.in.flight=100` would stop an idempotent producer.
        c.create::<BaseProducer>()
            .expect("librdkafka creates the producer");
    }

    #[test]
    fn the_producer_settings_win_over_client_config() {
        let k = kafka(r#", "clientConfig": {"client.id": "mine", "message.max.bytes": "1000000"}"#);
        let c = producer_config(&k, &no_env).expect("config");
        for (key, value) in PRODUCER_SETTINGS {
            assert_eq!(c.get(key), Some(*value), "{key}");
        }
    }

    #[test]
    fn connection_and_security_are_the_consumer_s() {
        let k = kafka(
            r#", "security": {"protocol": "SASL_SSL", "saslMechanism": "PLAIN",
                "caFile": "/etc/kcp/tls/ca.crt"}"#,
        );
        let env = |name: &str| match name {
            SASL_USERNAME_ENV => Some("alice".to_owned()),
            SASL_PASSWORD_ENV => Some("s3cret".to_owned()),
            _ => None,
        };
        let c = producer_config(&k, &env).expect("config");
        assert_eq!(c.get("bootstrap.servers"), Some("b1:9092"));
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(c.get("sasl.username"), Some("alice"));
        assert_eq!(c.get("sasl.password"), Some("s3cret"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/kcp/tls/ca.crt"));
        assert!(matches!(
            producer_config(&k, &no_env),
            Err(ConsumerError::MissingCredential(SASL_USERNAME_ENV))
        ));
    }

    #[test]
    fn only_general_keys_apply() {
        assert!(applies_to_producer("socket.keepalive.enable"));
        assert!(applies_to_producer("topic.metadata.refresh.interval.ms"));
        assert!(!applies_to_producer("heartbeat.interval.ms"));
        assert!(!applies_to_producer("max.in.flight"));
    }
}
