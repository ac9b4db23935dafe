use kcp_crds::SidecarConfig;

use super::*;

fn config(extra_kafka: &str) -> SidecarConfig {
    let text = format!(
        r#"{{
        "kafka": {{"bootstrapServers": "b1:9092,b2:9092", "topics": ["orders"], "groupId": "g",
                   "initialOffset": "latest" {extra_kafka}}},
        "endpoint": {{"url": "http://127.0.0.1:8080/", "connectTimeout": "1s", "requestTimeout": "5s",
                      "retryOn": ["5xx"]}},
        "delivery": {{"ordering": "partition", "maxInFlight": 4, "guarantee": "atLeastOnce",
                      "commitInterval": "5s", "drainTimeout": "10s",
                      "retry": {{"maxAttempts": 3, "initialBackoff": "10ms", "maxBackoff": "1s", "multiplier": 2.0}},
                      "onExhausted": "deadLetter"}}
    }}"#
    );
    SidecarConfig::parse(&text).expect("valid test config")
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn owned_keys_and_defaults_are_set() {
    let c = consumer_config(&config(""), Some("pod-0"), &no_env).expect("config");
    assert_eq!(c.get("bootstrap.servers"), Some("b1:9092,b2:9092"));
    assert_eq!(c.get("group.id"), Some("g"));
    assert_eq!(c.get("group.instance.id"), Some("pod-0"));
    assert_eq!(c.get("enable.auto.commit"), Some("false"));
    assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
    // Even with `initialOffset: latest`: an out-of-range position resumes at the earliest
    // retained record; `latest` is applied at assignment, to partitions never committed on.
    assert_eq!(c.get("auto.offset.reset"), Some("earliest"));
    assert_eq!(
        c.get("partition.assignment.strategy"),
        Some("cooperative-sticky")
    );
    assert_eq!(c.get("queued.max.messages.kbytes"), Some("64"));
    assert_eq!(c.get("fetch.wait.max.ms"), Some("25"));
    assert_eq!(c.get("security.protocol"), Some("plaintext"));
    let c = consumer_config(&config(""), None, &no_env).expect("config");
    assert_eq!(
        c.get("group.instance.id"),
        None,
        "no pod name, no static membership"
    );
}

#[test]
fn client_config_overrides_defaults() {
    let c = consumer_config(
        &config(r#", "clientConfig": {"partition.assignment.strategy": "range", "queued.max.messages.kbytes": "1024"}"#),
        None,
        &no_env,
    )
    .expect("config");
    assert_eq!(c.get("partition.assignment.strategy"), Some("range"));
    assert_eq!(c.get("queued.max.messages.kbytes"), Some("1024"));
}

#[test]
fn sasl_ssl_maps_to_librdkafka_and_reads_credentials_from_env() {
    let cfg = config(
        r#", "security": {"protocol": "SASL_SSL", "saslMechanism": "SCRAM-SHA-512",
            "caFile": "/etc/kcp/tls/ca.crt", "certFile": "/etc/kcp/tls/tls.crt", "keyFile": "/etc/kcp/tls/tls.key"}"#,
    );
    let env = |name: &str| match name {
        SASL_USERNAME_ENV => Some("alice".to_owned()),
        SASL_PASSWORD_ENV => Some("s3cret".to_owned()),
        _ => None,
    };
    let c = consumer_config(&cfg, None, &env).expect("config");
    assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
    assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
    assert_eq!(c.get("sasl.username"), Some("alice"));
    assert_eq!(c.get("sasl.password"), Some("s3cret"));
    assert_eq!(c.get("ssl.ca.location"), Some("/etc/kcp/tls/ca.crt"));
    assert_eq!(
        c.get("ssl.certificate.location"),
        Some("/etc/kcp/tls/tls.crt")
    );
    assert_eq!(c.get("ssl.key.location"), Some("/etc/kcp/tls/tls.key"));
    assert!(matches!(
        consumer_config(&cfg, None, &no_env),
        Err(ConsumerError::MissingCredential(SASL_USERNAME_ENV))
    ));
}

#[test]
fn records_queued_for_partitions_not_held_are_counted() {
    let queued = [
        (Tp::new("t", 0), 5),
        (Tp::new("t", 1), 439),
        (Tp::new("u", 0), -1),
    ];
    let held = Tp::new("t", 0);
    assert_eq!(unassigned_queued(&queued, |tp| *tp == held), 439);
    assert_eq!(unassigned_queued(&queued, |_| true), 0);
}
