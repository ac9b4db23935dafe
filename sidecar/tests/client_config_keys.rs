//! The `clientConfig` allow-list (`kcp_crds::librdkafka::CONSUMER_PROPERTIES`, which the CRD and
//! the config parser enforce) against the librdkafka this sidecar links: every key on the list
//! is one librdkafka knows, so the API server never admits a key that would stop the sidecar at
//! start, and a key librdkafka does not know is off the list.

use kcp_crds::librdkafka::{CONSUMER_PROPERTIES, is_consumer_property};
use rdkafka::{ClientConfig, error::KafkaError, types::RDKafkaConfRes};

/// Whether librdkafka refuses `key` as unknown (a bad value is another error).
fn unknown_to_librdkafka(key: &str) -> bool {
    match ClientConfig::new().set(key, "x").create_native_config() {
        Err(KafkaError::ClientConfig(res, ..)) => res == RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN,
        _ => false,
    }
}

#[test]
fn every_allowed_key_is_known_to_the_linked_librdkafka() {
    let unknown: Vec<&str> = CONSUMER_PROPERTIES
        .iter()
        .copied()
        .filter(|k| unknown_to_librdkafka(k))
        .collect();
    assert!(
        unknown.is_empty(),
        "librdkafka does not know {unknown:?}: regenerate crds/src/librdkafka.rs (its header says how)"
    );
}

#[test]
fn keys_librdkafka_does_not_know_are_off_the_list() {
    for key in ["fetch.max.byte", "group.idd", "kafka.bootstrap", "x"] {
        assert!(unknown_to_librdkafka(key), "{key} is unknown to librdkafka");
        assert!(!is_consumer_property(key), "{key} must not be allowed");
    }
}
