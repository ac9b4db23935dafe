//! The librdkafka properties a consumer accepts, from the `CONFIGURATION.md` of the librdkafka
//! version the sidecar links (rdkafka-sys 4.10.0+2.12.1, librdkafka 2.12.1): global and topic
//! properties marked `*` or `C`, without those only the C API can set (callbacks, opaque
//! pointers). `kafka.clientConfig` may only name these (the CRD refuses other keys; so does the
//! sidecar's config parser). A test in the sidecar crate checks each one against the linked
//! librdkafka. [`CONSUMER_ONLY_PROPERTIES`] says which of them only a consumer uses, so the
//! dead-letter producer is given the others.
//!
//! Pure data. Regenerate after a librdkafka upgrade:
//!
//! ```sh
//! awk -F'|' '/^[a-z][a-z0-9._]* +\|/ { n=$1; gsub(/ /,"",n); c=$2; gsub(/ /,"",c);
//!   if ((c=="*"||c=="C") && $0 !~ /see dedicated API/) print "    \"" n "\"," }' \
//!   "$(ls -d ~/.cargo/registry/src/*/rdkafka-sys-*/librdkafka)/CONFIGURATION.md" | sort -u
//! ```

/// The librdkafka version [`CONSUMER_PROPERTIES`] was taken from.
pub const LIBRDKAFKA_VERSION: &str = "2.12.1";

/// Every consumer property of the linked librdkafka that can be set as a string, sorted.
pub const CONSUMER_PROPERTIES: &[&str] = &[
    "allow.auto.create.topics",
    "api.version.fallback.ms",
    "api.version.request",
    "api.version.request.timeout.ms",
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "bootstrap.servers",
    "broker.address.family",
    "broker.address.ttl",
    "broker.version.fallback",
    "builtin.features",
    "check.crcs",
    "client.dns.lookup",
    "client.id",
    "client.rack",
    "connections.max.idle.ms",
    "consume.callback.max.messages",
    "coordinator.query.interval.ms",
    "debug",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.metrics.push",
    "enable.partition.eof",
    "enable.random.seed",
    "enable.sasl.oauthbearer.unsecure.jwt",
    "enable.ssl.certificate.verification",
    "enabled_events",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.protocol.type",
    "group.remote.assignor",
    "heartbeat.interval.ms",
    "https.ca.location",
    "https.ca.pem",
    "internal.termination.signal",
    "isolation.level",
    "log.connection.close",
    "log.queue",
    "log.thread.name",
    "log_level",
    "max.in.flight",
    "max.in.flight.requests.per.connection",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "message.copy.max.bytes",
    "message.max.bytes",
    "metadata.broker.list",
    "metadata.max.age.ms",
    "metadata.recovery.rebootstrap.trigger.ms",
    "metadata.recovery.strategy",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "partition.assignment.strategy",
    "plugin.library.paths",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "receive.message.max.bytes",
    "reconnect.backoff.jitter.ms",
    "reconnect.backoff.max.ms",
    "reconnect.backoff.ms",
    "retry.backoff.max.ms",
    "retry.backoff.ms",
    "sasl.kerberos.keytab",
    "sasl.kerberos.kinit.cmd",
    "sasl.kerberos.min.time.before.relogin",
    "sasl.kerberos.principal",
    "sasl.kerberos.service.name",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.oauthbearer.assertion.algorithm",
    "sasl.oauthbearer.assertion.claim.aud",
    "sasl.oauthbearer.assertion.claim.exp.seconds",
    "sasl.oauthbearer.assertion.claim.iss",
    "sasl.oauthbearer.assertion.claim.jti.include",
    "sasl.oauthbearer.assertion.claim.nbf.seconds",
    "sasl.oauthbearer.assertion.claim.sub",
    "sasl.oauthbearer.assertion.file",
    "sasl.oauthbearer.assertion.jwt.template.file",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
    "sasl.oauthbearer.client.credentials.client.id",
    "sasl.oauthbearer.client.credentials.client.secret",
    "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.extensions",
    "sasl.oauthbearer.grant.type",
    "sasl.oauthbearer.metadata.authentication.type",
    "sasl.oauthbearer.method",
    "sasl.oauthbearer.scope",
    "sasl.oauthbearer.token.endpoint.url",
    "sasl.password",
    "sasl.username",
    "security.protocol",
    "session.timeout.ms",
    "socket.blocking.max.ms",
    "socket.connection.setup.timeout.ms",
    "socket.keepalive.enable",
    "socket.max.fails",
    "socket.nagle.disable",
    "socket.receive.buffer.bytes",
    "socket.send.buffer.bytes",
    "socket.timeout.ms",
    "ssl.ca.certificate.stores",
    "ssl.ca.location",
    "ssl.ca.pem",
    "ssl.certificate.location",
    "ssl.certificate.pem",
    "ssl.cipher.suites",
    "ssl.crl.location",
    "ssl.curves.list",
    "ssl.endpoint.identification.algorithm",
    "ssl.engine.id",
    "ssl.engine.location",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.providers",
    "ssl.sigalgs.list",
    "statistics.interval.ms",
    "topic.blacklist",
    "topic.metadata.propagation.max.ms",
    "topic.metadata.refresh.fast.cnt",
    "topic.metadata.refresh.fast.interval.ms",
    "topic.metadata.refresh.interval.ms",
    "topic.metadata.refresh.sparse",
];

/// Whether librdkafka's consumer knows the property `key`.
pub fn is_consumer_property(key: &str) -> bool {
    CONSUMER_PROPERTIES.binary_search(&key).is_ok()
}

/// The properties of [`CONSUMER_PROPERTIES`] only a consumer uses (marked `C` in
/// `CONFIGURATION.md`, the others are marked `*`: every client uses them), sorted. The sidecar's
/// dead-letter producer takes the rest of `clientConfig` (sockets, timeouts, metadata, `debug`,
/// `client.rack`, ...), never these. Pure data. Regenerate after a librdkafka upgrade:
///
/// ```sh
/// awk -F'|' '/^[a-z][a-z0-9._]* +\|/ { n=$1; gsub(/ /,"",n); c=$2; gsub(/ /,"",c);
///   if (c=="C" && $0 !~ /see dedicated API/) print "    \"" n "\"," }' \
///   "$(ls -d ~/.cargo/registry/src/*/rdkafka-sys-*/librdkafka)/CONFIGURATION.md" | sort -u
/// ```
pub const CONSUMER_ONLY_PROPERTIES: &[&str] = &[
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "check.crcs",
    "consume.callback.max.messages",
    "coordinator.query.interval.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.protocol.type",
    "group.remote.assignor",
    "heartbeat.interval.ms",
    "isolation.level",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "partition.assignment.strategy",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "session.timeout.ms",
];

/// Whether only a consumer uses the property `key` (a producer ignores it, with a warning).
pub fn is_consumer_only_property(key: &str) -> bool {
    CONSUMER_ONLY_PROPERTIES.binary_search(&key).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_and_unique_so_binary_search_works() {
        assert!(CONSUMER_PROPERTIES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn the_consumer_only_list_is_sorted_unique_and_part_of_the_consumer_list() {
        assert!(CONSUMER_ONLY_PROPERTIES.windows(2).all(|w| w[0] < w[1]));
        let strays: Vec<&str> = CONSUMER_ONLY_PROPERTIES
            .iter()
            .copied()
            .filter(|k| !is_consumer_property(k))
            .collect();
        assert!(strays.is_empty(), "not consumer properties: {strays:?}");
    }

    #[test]
    fn consumer_only_and_general_keys() {
        for key in [
            "fetch.max.bytes",
            "group.id",
            "session.timeout.ms",
            "auto.offset.reset",
        ] {
            assert!(is_consumer_only_property(key), "{key} is consumer-only");
        }
        for key in [
            "socket.timeout.ms",
            "client.rack",
            "debug",
            "client.id",
            "acks",
        ] {
            assert!(
                !is_consumer_only_property(key),
                "{key} is not consumer-only"
            );
        }
    }

    #[test]
    fn known_and_unknown_keys() {
        assert!(is_consumer_property("fetch.max.bytes"));
        assert!(is_consumer_property("auto.offset.reset"));
        assert!(!is_consumer_property("fetch.max.byte"));
        assert!(!is_consumer_property("acks"), "a producer-only property");
    }
}
