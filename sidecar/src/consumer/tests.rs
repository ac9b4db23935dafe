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
    let pod = Identity {
        pod_name: Some("pod-0".into()),
        group_instance_id: None,
    };
    let c = consumer_config(&config(""), &pod, &no_env).expect("config");
    assert_eq!(c.get("bootstrap.servers"), Some("b1:9092,b2:9092"));
    assert_eq!(c.get("group.id"), Some("g"));
    // A Deployment's pod names are random: a static member named after one would hold its
    // partitions for session.timeout.ms after each rollout. Dynamic membership, the pod in the
    // client id.
    assert_eq!(c.get("group.instance.id"), None);
    assert_eq!(c.get("client.id"), Some("kcp-sidecar-pod-0"));
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
    let c = consumer_config(&config(""), &Identity::default(), &no_env).expect("config");
    assert_eq!(c.get("client.id"), Some("kcp-sidecar"));
    let stable = Identity {
        pod_name: Some("pod-0".into()),
        group_instance_id: Some("orders-0".into()),
    };
    let c = consumer_config(&config(""), &stable, &no_env).expect("config");
    assert_eq!(
        c.get("group.instance.id"),
        Some("orders-0"),
        "static membership only from an explicit stable identity"
    );
    let own = consumer_config(
        &config(r#", "clientConfig": {"client.id": "mine"}"#),
        &pod,
        &no_env,
    )
    .expect("config");
    assert_eq!(
        own.get("client.id"),
        Some("mine"),
        "clientConfig's client.id wins"
    );
}

#[test]
fn client_config_overrides_defaults() {
    let c = consumer_config(
        &config(r#", "clientConfig": {"partition.assignment.strategy": "range", "queued.max.messages.kbytes": "1024"}"#),
        &Identity::default(),
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
    let c = consumer_config(&cfg, &Identity::default(), &env).expect("config");
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
        consumer_config(&cfg, &Identity::default(), &no_env),
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
