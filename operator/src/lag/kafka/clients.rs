//! The librdkafka clients of the lag reads: created, shared, cached and dropped here only.
//!
//! - One **cluster client** per connection key (bootstrap servers, security protocol, SASL
//!   mechanism, credentials): a consumer without a group, for the metadata and watermarks of
//!   every resource on that cluster, whatever their group.
//! - One **offsets client** per connection key and group. A group's committed offsets can only
//!   be read through a consumer configured with that `group.id` (rdkafka 0.39 does not wrap
//!   librdkafka's ListConsumerGroupOffsets, and the workspace forbids `unsafe`). It is asked for
//!   only after the cluster client got the topics' metadata in the same read, so a cluster that
//!   does not answer costs one client, however many resources point at it. It also reads the
//!   oldest uncommitted record of each lagging partition (`peek`): `assign` with explicit
//!   offsets, never `subscribe`, so it still never joins the group; one peek at a time per
//!   client (its [`Lease`]'s lock), as an assignment is the client's state.
//!
//! A client whose read failed is forgotten (the next read starts clean; reads still using it
//! keep it until they end); clients unused for `idle_eviction` are dropped. Dropping a client
//! with a group blocks until librdkafka closes it, so it happens on the caller's blocking
//! thread, outside the lock.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kcp_crds::v1alpha1::SaslMechanism;
use rdkafka::{ClientConfig, config::RDKafkaLogLevel, consumer::BaseConsumer};
use sha2::{Digest, Sha256};
use tracing::debug;

use super::peek;
use crate::lag::{Credentials, LagError, LagTarget};

/// Which client: a cluster's, or a group's on a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Cluster([u8; 32]),
    Offsets([u8; 32], String),
}

struct Cached {
    consumer: Arc<BaseConsumer>,
    busy: Arc<Mutex<()>>,
    last_used: Instant,
}

/// A cached client and the lock that serializes what changes its state (a peek's assignment).
pub(super) struct Lease {
    pub(super) consumer: Arc<BaseConsumer>,
    pub(super) busy: Arc<Mutex<()>>,
}

/// The cache of clients, shared by every read.
pub(super) struct Clients {
    call_timeout: Duration,
    idle_eviction: Duration,
    cached: Mutex<HashMap<Key, Cached>>,
}

impl Clients {
    pub(super) fn new(call_timeout: Duration, idle_eviction: Duration) -> Self {
        Self {
            call_timeout,
            idle_eviction,
            cached: Mutex::new(HashMap::new()),
        }
    }

    /// Clients cached now.
    pub(super) fn len(&self) -> usize {
        self.cached.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// The cluster client of `target`'s connection settings.
    pub(super) fn cluster(
        &self,
        target: &LagTarget,
        credentials: &Credentials,
    ) -> Result<Arc<BaseConsumer>, LagError> {
        let key = Key::Cluster(connection_key(target, credentials));
        self.get_or_create(key, || {
            client_config(target, credentials, self.call_timeout, None)
        })
        .map(|lease| lease.consumer)
    }

    /// The offsets client of `target`'s group.
    pub(super) fn offsets(
        &self,
        target: &LagTarget,
        credentials: &Credentials,
    ) -> Result<Lease, LagError> {
        let key = Key::Offsets(connection_key(target, credentials), target.group_id.clone());
        self.get_or_create(key, || {
            client_config(
                target,
                credentials,
                self.call_timeout,
                Some(&target.group_id),
            )
        })
    }

    /// After a failed read of `target` with the cluster client `cluster`: forgets that client
    /// (unless another read already replaced it) and the group's offsets client.
    pub(super) fn forget(
        &self,
        target: &LagTarget,
        credentials: &Credentials,
        cluster: &Arc<BaseConsumer>,
    ) {
        let connection = connection_key(target, credentials);
        let removed: Vec<Cached> = self
            .cached
            .lock()
            .map(|mut cached| {
                let mut removed = Vec::new();
                let key = Key::Cluster(connection);
                if cached
                    .get(&key)
                    .is_some_and(|c| Arc::ptr_eq(&c.consumer, cluster))
                {
                    removed.extend(cached.remove(&key));
                }
                removed.extend(cached.remove(&Key::Offsets(connection, target.group_id.clone())));
                removed
            })
            .unwrap_or_default();
        // Dropped here, on the caller's blocking thread, outside the lock.
        drop(removed);
    }

    fn get_or_create(
        &self,
        key: Key,
        config: impl FnOnce() -> ClientConfig,
    ) -> Result<Lease, LagError> {
        let mut evicted = Vec::new();
        let consumer = {
            let mut cached = self.cached.lock().map_err(|_| LagError::Task)?;
            let now = Instant::now();
            let idle: Vec<Key> = cached
                .iter()
                .filter(|(_, c)| now.duration_since(c.last_used) > self.idle_eviction)
                .map(|(k, _)| k.clone())
                .collect();
            for k in idle {
                evicted.extend(cached.remove(&k));
            }
            match cached.get_mut(&key) {
                Some(c) => {
                    c.last_used = now;
                    Lease {
                        consumer: c.consumer.clone(),
                        busy: c.busy.clone(),
                    }
                }
                None => {
                    let consumer = Arc::new(
                        config()
                            .create::<BaseConsumer>()
                            .map_err(LagError::CreateClient)?,
                    );
                    debug!(client = ?key_kind(&key), "Created Kafka client for lag");
                    let busy = Arc::new(Mutex::new(()));
                    cached.insert(
                        key,
                        Cached {
                            consumer: consumer.clone(),
                            busy: busy.clone(),
                            last_used: now,
                        },
                    );
                    Lease { consumer, busy }
                }
            }
        };
        drop(evicted);
        Ok(consumer)
    }
}

fn key_kind(key: &Key) -> &'static str {
    match key {
        Key::Cluster(_) => "cluster",
        Key::Offsets(..) => "offsets",
    }
}

pub(super) fn client_config(
    target: &LagTarget,
    c: &Credentials,
    call_timeout: Duration,
    group: Option<&str>,
) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &target.bootstrap_servers)
        .set("client.id", "kafka-consumer-proxy-operator")
        .set("allow.auto.create.topics", "false")
        .set("security.protocol", target.protocol.as_str())
        .set(
            "socket.connection.setup.timeout.ms",
            call_timeout.as_millis().max(1000).to_string(),
        )
        .set_log_level(RDKafkaLogLevel::Warning);
    if let Some(group) = group {
        // Never subscribes, so it never joins the group; never commits.
        cfg.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        peek::configure(&mut cfg);
    }
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

/// Hash of what a client connects with (not the group): one cluster client per value.
fn connection_key(t: &LagTarget, c: &Credentials) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field(&t.bootstrap_servers);
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

    fn target(group: &str) -> LagTarget {
        LagTarget {
            // Nothing listens on the discard port; the clients are never used for a call.
            bootstrap_servers: "127.0.0.1:9".into(),
            group_id: group.into(),
            topics: vec!["t".into()],
            dead_letter_topics: vec![],
            protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: None,
        }
    }

    #[test]
    fn credentials_change_the_connection_key_and_never_print() {
        let a = Credentials {
            sasl: Some(("u".into(), "p1".into())),
            ..Credentials::default()
        };
        let b = Credentials {
            sasl: Some(("u".into(), "p2".into())),
            ..Credentials::default()
        };
        assert_ne!(
            connection_key(&target("g"), &a),
            connection_key(&target("g"), &b)
        );
        assert!(!format!("{a:?}").contains("p1"));
    }

    #[test]
    fn groups_share_the_cluster_client() {
        let clients = Clients::new(Duration::from_secs(1), Duration::from_secs(600));
        let creds = Credentials::default();
        let a = clients.cluster(&target("a"), &creds).expect("client");
        let b = clients.cluster(&target("b"), &creds).expect("client");
        assert!(Arc::ptr_eq(&a, &b), "one cluster client for both groups");
        let a1 = clients.offsets(&target("a"), &creds).expect("client");
        let a2 = clients.offsets(&target("a"), &creds).expect("client");
        assert!(
            Arc::ptr_eq(&a1.busy, &a2.busy),
            "one peek at a time per client"
        );
        clients.offsets(&target("b"), &creds).expect("client");
        assert_eq!(
            clients.len(),
            3,
            "one cluster client, one offsets client per group"
        );

        clients.forget(&target("a"), &creds, &a);
        assert_eq!(
            clients.len(),
            1,
            "a failed read forgets its clients, not b's"
        );
        let c = clients.cluster(&target("a"), &creds).expect("client");
        assert!(!Arc::ptr_eq(&a, &c), "the next read starts clean");
        clients.forget(&target("b"), &creds, &a);
        assert_eq!(
            clients.len(),
            1,
            "forgetting an old client spares its replacement"
        );
    }
}
