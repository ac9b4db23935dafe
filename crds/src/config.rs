//! The sidecar's config: the one contract between the operator and the sidecar.
//!
//! Pure. The operator renders a [`SidecarConfig`] from a resource ([`SidecarConfig::render`],
//! every default resolved) into a ConfigMap; the sidecar parses it ([`SidecarConfig::parse`]).
//! Secret values are never part of it: SASL credentials arrive as the environment variables
//! [`SASL_USERNAME_ENV`] / [`SASL_PASSWORD_ENV`], TLS material as files under [`TLS_MOUNT_DIR`].
//!
//! [`SidecarConfig::parse`] reports *every* problem it finds, not just the first: each section
//! is deserialized on its own, then the whole is checked ([`SidecarConfig::problems`]).

use std::{collections::BTreeMap, fmt, net::SocketAddr, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::DeserializeOwned};

use crate::{
    Duration, forbidden_static_header, is_owned_client_config_key,
    librdkafka::{LIBRDKAFKA_VERSION, is_consumer_property},
    v1alpha1::{
        Guarantee, HttpMethod, InitialOffset, KafkaConsumerProxy, LogLevel, OnExhausted, Ordering,
        SaslMechanism,
    },
};

pub use crate::v1alpha1::BodyAck;

mod batch;
mod flow;
mod formats;
pub use batch::{BatchConfig, render_batch};
pub use flow::{Concurrency, OutageConfig, render_outage};
pub use formats::{
    CloudEventsConfig, Decode, Format, REGISTRY_TLS_MOUNT_DIR, SCHEMA_REGISTRY_PASSWORD_ENV,
    SCHEMA_REGISTRY_USERNAME_ENV, SchemaRegistryConfig,
};

/// librdkafka's default `max.poll.interval.ms`.
pub const DEFAULT_MAX_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);
/// What `delivery.drainTimeout` must leave of `max.poll.interval.ms` for the commit that
/// follows a drain.
pub const DRAIN_COMMIT_MARGIN: std::time::Duration = std::time::Duration::from_secs(10);

fn default_unready_timeout() -> Duration {
    crate::v1alpha1::default_unready_timeout()
}

/// Environment variable carrying the SASL username (from a Secret via `secretKeyRef`).
pub const SASL_USERNAME_ENV: &str = "KCP_SASL_USERNAME";
/// Environment variable carrying the SASL password (from a Secret via `secretKeyRef`).
pub const SASL_PASSWORD_ENV: &str = "KCP_SASL_PASSWORD";
/// Where TLS material from the referenced Secret is mounted in the sidecar container.
pub const TLS_MOUNT_DIR: &str = "/etc/kcp/tls";
/// Where the rendered config is mounted in the sidecar container.
pub const CONFIG_MOUNT_DIR: &str = "/etc/kcp/config";
/// File name of the rendered config inside the ConfigMap and the mount.
pub const CONFIG_FILE_NAME: &str = "config.json";
/// Environment variable naming the config file (the sidecar's `--config` flag).
pub const CONFIG_PATH_ENV: &str = "KCP_CONFIG";

/// The key of the sidecar's ConfigMap holding what may change without restarting the pods
/// (`{"paused": bool}`); mounted beside the config and left out of the config hash.
pub const CONTROL_FILE_NAME: &str = "control.json";

/// Environment variable the operator sets to the control file's path.
pub const CONTROL_PATH_ENV: &str = "KCP_CONTROL_PATH";
/// Environment variable with the pod's name: the consumer's `client.id` suffix and log context.
/// Never the `group.instance.id`: a Deployment's pod names are random, and a static member that
/// goes away holds its partitions until `session.timeout.ms` (ARCHITECTURE.md "Pod lifecycle").
pub const POD_NAME_ENV: &str = "KCP_POD_NAME";
/// Environment variable with a stable `group.instance.id` (static membership), for a sidecar run
/// with a stable identity (a StatefulSet, a VM). The operator never sets it.
pub const GROUP_INSTANCE_ID_ENV: &str = "KCP_GROUP_INSTANCE_ID";
/// The sidecar's admin path the app containers' `preStop` hook calls: it returns once the sidecar
/// sends the app nothing more (at pod deletion: drained, committed, left the group).
pub const DRAIN_PATH: &str = "/drain";
/// Environment variable set (to `true`) by the operator when the app containers call
/// [`DRAIN_PATH`] from their `preStop` hook: after its shutdown the sidecar waits briefly for that
/// call, so the hook gets its answer instead of a refused connection.
pub const DRAIN_HOOK_ENV: &str = "KCP_DRAIN_HOOK";

/// Everything the sidecar needs, with every default resolved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarConfig {
    pub kafka: KafkaConfig,
    pub endpoint: EndpointConfig,
    pub delivery: DeliveryConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub topics: Vec<String>,
    pub group_id: String,
    #[serde(default)]
    pub initial_offset: InitialOffset,
    /// Extra librdkafka properties, passed through (owned keys refused by [`SidecarConfig::problems`]).
    #[serde(default)]
    pub client_config: BTreeMap<String, String>,
    #[serde(default)]
    pub security: SecurityConfig,
    /// Where `endpoint.decode` fetches schemas; absent without `kafka.schemaRegistry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistryConfig>,
}

/// How the sidecar authenticates to Kafka. Credentials are not here: see the module docs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityConfig {
    #[serde(default)]
    pub protocol: SecurityProtocol,
    /// Set with `SASL_*` protocols; username and password come from the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// PEM CA file (`ssl.ca.location`); system roots when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// PEM client certificate file (`ssl.certificate.location`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// PEM client key file (`ssl.key.location`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

/// librdkafka's `security.protocol`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// The value librdkafka expects in `security.protocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointConfig {
    /// Full URL every record is sent to.
    pub url: String,
    #[serde(default)]
    pub method: HttpMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_header: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_request_threshold: Option<Duration>,
    /// Full URL polled (GET, 2xx = ready) before and while delivering is paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_url: Option<String>,
    pub retry_on: Vec<StatusMatcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_ack: Option<BodyAck>,
    /// How long the app may stay unready before the sidecar leaves the group (it rejoins when
    /// the app answers). A config without it (an older operator) gets the resource's default.
    #[serde(default = "default_unready_timeout")]
    pub unready_timeout: Duration,
    /// How records are shaped into requests (`raw` when absent).
    #[serde(default, skip_serializing_if = "Format::is_raw")]
    pub format: Format,
    /// CloudEvents attributes, with a `cloudevents-*` format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_events: Option<CloudEventsConfig>,
    /// Decode schema-registry records to JSON; `None`: send values as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode: Option<Decode>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliveryConfig {
    pub ordering: Ordering,
    pub max_in_flight: u32,
    pub guarantee: Guarantee,
    pub commit_interval: Duration,
    pub drain_timeout: Duration,
    pub retry: RetryConfig,
    pub on_exhausted: OnExhausted,
    /// Fixed dead-letter topic; `None` means `<source topic>-dlq` per source topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    /// Crashes a record may be in flight for before it is dead-lettered; 0 = never. A config
    /// without it (an older operator) gets the resource's default.
    #[serde(default = "default_max_crashes")]
    pub max_crashes: u32,
    /// The resource's `maxUncommitted`; `None`: its default ([`DeliveryConfig::window`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uncommitted: Option<u32>,
    /// Fixed or adaptive requests in flight; a config without it gets `fixed`.
    #[serde(default)]
    pub concurrency: Concurrency,
    /// The endpoint outage detector; `null`: off. A config without it gets the defaults (on).
    #[serde(default = "flow::default_outage")]
    pub outage: Option<OutageConfig>,
    /// Several records per request; `None`: one record per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchConfig>,
}

fn default_max_crashes() -> u32 {
    3
}

/// `maxUncommitted` when the resource does not set it: at least this many.
pub const DEFAULT_MAX_UNCOMMITTED: u32 = 1000;

impl DeliveryConfig {
    /// The most records sent and not yet committed (`maxUncommitted`, or its default: 1000 or
    /// twice `maxInFlight`); `None` with `atMostOnce`, which commits before sending.
    pub fn window(&self) -> Option<u32> {
        (self.guarantee == Guarantee::AtLeastOnce).then(|| {
            self.max_uncommitted.unwrap_or_else(|| {
                DEFAULT_MAX_UNCOMMITTED.max(self.max_in_flight.saturating_mul(2))
            })
        })
    }

    /// The dead-letter topic for records of `source_topic`.
    pub fn dead_letter_topic_for(&self, source_topic: &str) -> String {
        self.dead_letter_topic
            .clone()
            .unwrap_or_else(|| default_dead_letter_topic(source_topic))
    }
}

/// `<source topic>-dlq`: the default dead-letter topic.
pub fn default_dead_letter_topic(source_topic: &str) -> String {
    format!("{source_topic}-dlq")
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per record, the first included; 0 = unlimited.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub multiplier: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin server (probes, metrics, status).
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub level: LogLevel,
    #[serde(default)]
    pub format: LogFormat,
}

/// Log output format.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum LogFormat {
    /// One JSON object per line (what log collectors want; the default in pods).
    #[default]
    Json,
    /// Human-readable lines.
    Plain,
}

/// One `retryOn` entry: a status class (`5xx`) or an exact status (`429`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusMatcher {
    /// `Nxx`: any status from N00 to N99.
    Class(u8),
    /// One exact status code.
    Exact(u16),
}

impl StatusMatcher {
    pub fn matches(self, status: u16) -> bool {
        match self {
            Self::Class(c) => status / 100 == u16::from(c),
            Self::Exact(s) => status == s,
        }
    }
}

impl FromStr for StatusMatcher {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("invalid status {s:?}: write a class like `5xx` or a code like `429`");
        let b = s.as_bytes();
        if b.len() != 3 || !(b'1'..=b'5').contains(&b[0]) {
            return Err(err());
        }
        if &b[1..] == b"xx" {
            return Ok(Self::Class(b[0] - b'0'));
        }
        s.parse::<u16>().map(Self::Exact).map_err(|_| err())
    }
}

impl fmt::Display for StatusMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Class(c) => write!(f, "{c}xx"),
            Self::Exact(s) => write!(f, "{s}"),
        }
    }
}

impl Serialize for StatusMatcher {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StatusMatcher {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Every problem found in a config, in the order found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sidecar config ({} problem{}):\n  - {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("\n  - "))]
pub struct ConfigErrors(pub Vec<String>);

/// Why a resource could not be rendered into a config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("resource has no {0}: it must be read from the API server")]
    MissingMetadata(&'static str),
    #[error("endpoint needs exactly one of port or url")]
    EndpointTarget,
    #[error("delivery.maxInFlight must be at least 1, got {0}")]
    MaxInFlight(i32),
    #[error("delivery.retry.maxAttempts must not be negative, got {0}")]
    MaxAttempts(i32),
    #[error("sidecar.adminPort {0} is outside 1-65535")]
    AdminPort(i32),
    #[error("endpoint.port {0} is outside 1-65535")]
    EndpointPort(i32),
    #[error("endpoint.retryOn: {0}")]
    RetryOn(String),
}

const SECTIONS: [&str; 5] = ["kafka", "endpoint", "delivery", "admin", "log"];

impl SidecarConfig {
    /// Parses a JSON config and checks it, reporting every problem found.
    pub fn parse(text: &str) -> Result<Self, ConfigErrors> {
        let root: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| ConfigErrors(vec![format!("config is not valid JSON: {e}")]))?;
        let serde_json::Value::Object(mut map) = root else {
            return Err(ConfigErrors(vec![
                "config must be a JSON object with kafka, endpoint and delivery sections".into(),
            ]));
        };
        let mut problems: Vec<String> = map
            .keys()
            .filter(|k| !SECTIONS.contains(&k.as_str()))
            .map(|k| {
                format!(
                    "unknown section `{k}` (expected one of {})",
                    SECTIONS.join(", ")
                )
            })
            .collect();
        let kafka = required::<KafkaConfig>(&mut map, "kafka", &mut problems);
        let endpoint = required::<EndpointConfig>(&mut map, "endpoint", &mut problems);
        let delivery = required::<DeliveryConfig>(&mut map, "delivery", &mut problems);
        let admin = optional::<AdminConfig>(&mut map, "admin", &mut problems);
        let log = optional::<LogConfig>(&mut map, "log", &mut problems);
        if let (Some(kafka), Some(endpoint), Some(delivery), Some(admin), Some(log)) =
            (kafka, endpoint, delivery, admin, log)
        {
            let config = Self {
                kafka,
                endpoint,
                delivery,
                admin,
                log,
            };
            problems.extend(config.problems());
            if problems.is_empty() {
                return Ok(config);
            }
        }
        Err(ConfigErrors(problems))
    }

    /// Checks what types alone cannot; empty when the config is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let k = &self.kafka;
        if k.bootstrap_servers.trim().is_empty() {
            p.push("kafka.bootstrapServers is empty: give at least one host:port".into());
        }
        if k.topics.is_empty() {
            p.push("kafka.topics is empty: give at least one topic".into());
        }
        for t in &k.topics {
            if !is_valid_topic_name(t) {
                p.push(format!(
                    "kafka.topics: {t:?} is not a valid topic name (1-249 of [a-zA-Z0-9._-])"
                ));
            }
        }
        if k.group_id.trim().is_empty() {
            p.push("kafka.groupId is empty".into());
        } else if !is_plain_header_value(k.group_id.as_bytes()) {
            p.push(format!(
                "kafka.groupId {:?} must be printable ASCII without leading or trailing spaces: it is sent in the kcp-group header",
                k.group_id
            ));
        }
        for key in k.client_config.keys() {
            if is_owned_client_config_key(key) {
                p.push(format!(
                    "kafka.clientConfig must not set {key:?}: the sidecar owns it; use bootstrapServers, groupId or security instead"
                ));
            } else if !is_consumer_property(key) {
                p.push(format!(
                    "kafka.clientConfig: {key:?} is not a consumer property of librdkafka {LIBRDKAFKA_VERSION}; check its spelling against librdkafka's CONFIGURATION.md"
                ));
            }
        }
        let s = &k.security;
        if s.protocol.uses_sasl() != s.sasl_mechanism.is_some() {
            p.push("kafka.security: saslMechanism must be set exactly when protocol is SASL_PLAINTEXT or SASL_SSL".into());
        }
        if s.cert_file.is_some() != s.key_file.is_some() {
            p.push(
                "kafka.security: certFile and keyFile go together (a client certificate needs its key)"
                    .into(),
            );
        }
        let uses_tls = matches!(
            s.protocol,
            SecurityProtocol::Ssl | SecurityProtocol::SaslSsl
        );
        if !uses_tls && (s.ca_file.is_some() || s.cert_file.is_some()) {
            p.push("kafka.security: caFile/certFile need protocol SSL or SASL_SSL".into());
        }

        let e = &self.endpoint;
        if let Err(why) = check_http_url(&e.url) {
            p.push(format!("endpoint.url: {why}"));
        }
        if let Some(url) = &e.readiness_url
            && let Err(why) = check_http_url(url)
        {
            p.push(format!("endpoint.readinessUrl: {why}"));
        }
        if e.connect_timeout.as_std().is_zero() {
            p.push("endpoint.connectTimeout must be longer than 0s".into());
        }
        if e.request_timeout.as_std().is_zero() {
            p.push("endpoint.requestTimeout must be longer than 0s".into());
        }
        if e.unready_timeout.as_std().is_zero() {
            p.push("endpoint.unreadyTimeout must be longer than 0s".into());
        }
        for name in e.headers.keys().chain(e.action_header.iter()) {
            if !is_header_token(name) {
                p.push(format!(
                    "endpoint: {name:?} is not a valid HTTP header name"
                ));
            }
        }
        for (name, value) in &e.headers {
            if let Some(why) = forbidden_static_header(name) {
                p.push(format!("endpoint.headers must not set {name:?}: {why}"));
            }
            if !value
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            {
                p.push(format!(
                    "endpoint.headers: the value of {name:?} must be tab and printable ASCII (no line breaks or control characters)"
                ));
            }
        }
        if let Some(host) = &e.host_header
            && (host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()))
        {
            p.push(format!(
                "endpoint.hostHeader {host:?} must be printable ASCII without spaces"
            ));
        }
        if let Some(ack) = &e.body_ack
            && !ack.pointer.starts_with('/')
        {
            p.push(format!(
                "endpoint.bodyAck.pointer {:?} must be a JSON pointer starting with `/`",
                ack.pointer
            ));
        }

        let d = &self.delivery;
        let max_poll_interval = k
            .client_config
            .get("max.poll.interval.ms")
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(DEFAULT_MAX_POLL_INTERVAL, std::time::Duration::from_millis);
        if d.drain_timeout.as_std() + DRAIN_COMMIT_MARGIN >= max_poll_interval {
            p.push(format!(
                "delivery.drainTimeout ({}) must be at least 10s shorter than max.poll.interval.ms ({} ms): a revocation drains without polling, and librdkafka removes a consumer that does not poll for that long",
                d.drain_timeout,
                max_poll_interval.as_millis()
            ));
        }
        if d.max_in_flight == 0 {
            p.push("delivery.maxInFlight must be at least 1".into());
        }
        if d.max_uncommitted == Some(0) {
            p.push(
                "delivery.maxUncommitted must be at least 1 (or left out for its default)".into(),
            );
        }
        if d.guarantee == Guarantee::AtMostOnce && d.on_exhausted == OnExhausted::Block {
            p.push("delivery.onExhausted: block sends a failing record again forever, which guarantee: atMostOnce forbids; use skip or deadLetter".into());
        }
        if d.commit_interval.as_std().is_zero() {
            p.push("delivery.commitInterval must be longer than 0s".into());
        }
        let r = &d.retry;
        if r.initial_backoff > r.max_backoff {
            p.push(format!(
                "delivery.retry.initialBackoff ({}) is longer than maxBackoff ({})",
                r.initial_backoff, r.max_backoff
            ));
        }
        if !(1.0..=10.0).contains(&r.multiplier) {
            p.push(format!(
                "delivery.retry.multiplier must be between 1 and 10, got {}",
                r.multiplier
            ));
        }
        if let Some(t) = &d.dead_letter_topic
            && !is_valid_topic_name(t)
        {
            p.push(format!(
                "delivery.deadLetterTopic: {t:?} is not a valid topic name"
            ));
        }
        p.extend(formats::problems(self));
        p.extend(flow::problems(self));
        p.extend(batch::problems(self));
        p
    }

    /// Renders the config for a resource, resolving every default. Pure.
    pub fn render(kcp: &KafkaConsumerProxy) -> Result<Self, RenderError> {
        let namespace = kcp
            .metadata
            .namespace
            .as_deref()
            .ok_or(RenderError::MissingMetadata("namespace"))?;
        let name = kcp
            .metadata
            .name
            .as_deref()
            .ok_or(RenderError::MissingMetadata("name"))?;
        let spec = &kcp.spec;

        let mut security = SecurityConfig::default();
        if let Some(auth) = &spec.kafka.auth {
            security.protocol = match (&auth.sasl, &auth.tls) {
                (Some(_), Some(_)) => SecurityProtocol::SaslSsl,
                (Some(_), None) => SecurityProtocol::SaslPlaintext,
                (None, Some(_)) => SecurityProtocol::Ssl,
                (None, None) => SecurityProtocol::Plaintext,
            };
            security.sasl_mechanism = auth.sasl.as_ref().map(|s| s.mechanism);
            if let Some(tls) = &auth.tls {
                let file =
                    |key: &Option<String>| key.as_ref().map(|k| format!("{TLS_MOUNT_DIR}/{k}"));
                security.ca_file = file(&tls.ca_key);
                security.cert_file = file(&tls.cert_key);
                security.key_file = file(&tls.key_key);
            }
        }

        let ep = &spec.endpoint;
        let (url, readiness_url) = match (ep.port, &ep.url) {
            (Some(port), None) => {
                let port = u16::try_from(port)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or(RenderError::EndpointPort(port))?;
                let base = format!("http://127.0.0.1:{port}");
                (
                    format!("{base}{}", ep.path),
                    ep.readiness_path.as_ref().map(|p| format!("{base}{p}")),
                )
            }
            (None, Some(url)) => {
                let readiness = ep.readiness_path.as_ref().map(|p| {
                    let origin_end = url
                        .find("://")
                        .map(|i| i + 3)
                        .and_then(|start| url[start..].find('/').map(|j| start + j))
                        .unwrap_or(url.len());
                    format!("{}{p}", &url[..origin_end])
                });
                (url.clone(), readiness)
            }
            _ => return Err(RenderError::EndpointTarget),
        };
        let retry_on = ep
            .retry_on
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<_>, _>>()
            .map_err(RenderError::RetryOn)?;

        let d = &spec.delivery;
        let max_in_flight = u32::try_from(d.max_in_flight)
            .ok()
            .filter(|n| *n > 0)
            .ok_or(RenderError::MaxInFlight(d.max_in_flight))?;
        let max_attempts = u32::try_from(d.retry.max_attempts)
            .map_err(|_| RenderError::MaxAttempts(d.retry.max_attempts))?;
        let admin_port = u16::try_from(spec.sidecar.admin_port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or(RenderError::AdminPort(spec.sidecar.admin_port))?;

        Ok(Self {
            kafka: KafkaConfig {
                bootstrap_servers: spec.kafka.bootstrap_servers.clone(),
                topics: spec.kafka.topics.clone(),
                group_id: spec
                    .kafka
                    .group_id
                    .clone()
                    .unwrap_or_else(|| format!("{namespace}.{name}")),
                initial_offset: spec.kafka.initial_offset,
                client_config: spec.kafka.client_config.clone(),
                security,
                schema_registry: formats::render_registry(spec.kafka.schema_registry.as_ref()),
            },
            endpoint: EndpointConfig {
                url,
                method: ep.method,
                host_header: ep.host_header.clone(),
                headers: ep.headers.clone(),
                connect_timeout: ep.connect_timeout,
                request_timeout: ep.request_timeout,
                slow_request_threshold: ep.slow_request_threshold,
                readiness_url,
                retry_on,
                action_header: ep.action_header.clone(),
                body_ack: ep.body_ack.clone(),
                unready_timeout: ep.unready_timeout,
                format: ep.format,
                cloud_events: formats::render_cloud_events(ep),
                decode: ep.decode,
            },
            delivery: DeliveryConfig {
                ordering: d.ordering,
                max_in_flight,
                guarantee: d.guarantee,
                commit_interval: d.commit_interval,
                drain_timeout: d.drain_timeout,
                retry: RetryConfig {
                    max_attempts,
                    initial_backoff: d.retry.initial_backoff,
                    max_backoff: d.retry.max_backoff,
                    multiplier: d.retry.multiplier,
                },
                on_exhausted: d.on_exhausted,
                dead_letter_topic: d.dead_letter.as_ref().and_then(|dl| dl.topic.clone()),
                max_crashes: u32::try_from(d.max_crashes).unwrap_or(0),
                max_uncommitted: d
                    .max_uncommitted
                    .and_then(|n| u32::try_from(n).ok())
                    .map(|n| n.max(1)),
                concurrency: d.concurrency,
                outage: render_outage(&d.outage),
                batch: render_batch(d.batch.as_ref()),
            },
            admin: AdminConfig {
                listen: SocketAddr::from(([0, 0, 0, 0], admin_port)),
            },
            log: LogConfig {
                level: spec.sidecar.log_level,
                format: LogFormat::Json,
            },
        })
    }

    /// The config as the operator writes it into the ConfigMap: pretty JSON, stable key order.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("invariant: SidecarConfig always serializes")
    }
}

/// Deserializes a required section, recording a problem instead of failing.
fn required<T: DeserializeOwned>(
    map: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    problems: &mut Vec<String>,
) -> Option<T> {
    match map.remove(name) {
        None => {
            problems.push(format!("missing section `{name}`"));
            None
        }
        Some(value) => decode(name, value, problems),
    }
}

/// Deserializes an optional section (its default when absent), recording a problem instead of failing.
fn optional<T: DeserializeOwned + Default>(
    map: &mut serde_json::Map<String, serde_json::Value>,
    name: &str,
    problems: &mut Vec<String>,
) -> Option<T> {
    match map.remove(name) {
        None => Some(T::default()),
        Some(value) => decode(name, value, problems),
    }
}

fn decode<T: DeserializeOwned>(
    name: &str,
    value: serde_json::Value,
    problems: &mut Vec<String>,
) -> Option<T> {
    serde_path_to_error::deserialize::<_, T>(value)
        .map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." {
                name.to_owned()
            } else {
                format!("{name}.{path}")
            };
            problems.push(format!("{at}: {}", e.into_inner()));
        })
        .ok()
}

fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} must start with http:// or https://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority_ok = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".[]:_~%!$&'()*+,;=-".contains(&b));
    if !authority_ok {
        return Err(format!("{url:?} has no valid host[:port]"));
    }
    // What an HTTP request line can carry: visible ASCII, no spaces (percent-encode the rest).
    if let Some(bad) = tail.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "{url:?} contains {bad:?}: percent-encode spaces and non-ASCII characters"
        ));
    }
    Ok(())
}

/// Kafka's topic name rule: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn is_valid_topic_name(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether bytes can travel as an HTTP header value unchanged: printable ASCII (space
/// included), no leading or trailing space (which parsers strip). The sidecar sends such values
/// as they are (and the group id must be one).
pub fn is_plain_header_value(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| (0x20..0x7f).contains(b))
        && bytes.first() != Some(&b' ')
        && bytes.last() != Some(&b' ')
}

/// RFC 9110 token characters, what an HTTP header name may contain.
fn is_header_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1alpha1::KafkaConsumerProxySpec;
    use proptest::prelude::*;
    use serde_json::json;

    /// Parses `v`, which must be refused with exactly the problems containing `expected`.
    pub(super) fn assert_refused(v: &serde_json::Value, expected: &[&str]) {
        let err = SidecarConfig::parse(&v.to_string()).expect_err("invalid");
        let text = err.to_string();
        for e in expected {
            assert!(text.contains(e), "missing {e:?} in:\n{text}");
        }
        assert_eq!(err.0.len(), expected.len(), "{text}");
    }

    /// A resource named `orders` in `shop` (also used by `formats`' tests).
    pub(super) fn resource(spec: serde_json::Value) -> KafkaConsumerProxy {
        let spec: KafkaConsumerProxySpec = serde_json::from_value(spec).expect("valid spec");
        let mut kcp = KafkaConsumerProxy::new("orders", spec);
        kcp.metadata.namespace = Some("shop".into());
        kcp
    }

    fn in_pod() -> KafkaConsumerProxy {
        resource(json!({
            "kafka": { "bootstrapServers": "kafka:9092", "topics": ["orders"] },
            "endpoint": { "port": 8080, "path": "/events", "readinessPath": "/ready" },
            "template": { "spec": { "containers": [{ "name": "app" }] } }
        }))
    }

    #[test]
    fn max_uncommitted_defaults_to_a_thousand_or_twice_max_in_flight() {
        let mut r = in_pod();
        let window =
            |r: &KafkaConsumerProxy| SidecarConfig::render(r).expect("renders").delivery.window();
        assert_eq!(window(&r), Some(DEFAULT_MAX_UNCOMMITTED));
        r.spec.delivery.max_in_flight = 900;
        assert_eq!(window(&r), Some(1800));
        r.spec.delivery.max_uncommitted = Some(16);
        assert_eq!(window(&r), Some(16), "set, it wins");
        r.spec.delivery.guarantee = crate::v1alpha1::Guarantee::AtMostOnce;
        r.spec.delivery.on_exhausted = crate::v1alpha1::OnExhausted::Skip;
        assert_eq!(window(&r), None, "atMostOnce commits before sending");
    }

    #[test]
    fn render_resolves_every_default() {
        let c = SidecarConfig::render(&in_pod()).expect("renders");
        assert_eq!(c.kafka.group_id, "shop.orders");
        assert_eq!(c.kafka.initial_offset, InitialOffset::Earliest);
        assert_eq!(c.kafka.security.protocol, SecurityProtocol::Plaintext);
        assert_eq!(c.endpoint.url, "http://127.0.0.1:8080/events");
        assert_eq!(
            c.endpoint.readiness_url.as_deref(),
            Some("http://127.0.0.1:8080/ready")
        );
        assert_eq!(c.endpoint.method, HttpMethod::Post);
        assert_eq!(c.endpoint.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.endpoint.request_timeout, Duration::from_secs(60));
        assert_eq!(
            c.endpoint.retry_on,
            vec![
                StatusMatcher::Class(5),
                StatusMatcher::Exact(408),
                StatusMatcher::Exact(429)
            ]
        );
        assert_eq!(c.delivery.ordering, Ordering::Partition);
        assert_eq!(c.delivery.max_in_flight, 16);
        assert_eq!(c.delivery.guarantee, Guarantee::AtLeastOnce);
        assert_eq!(c.delivery.commit_interval, Duration::from_secs(1));
        assert_eq!(c.delivery.retry.max_attempts, 5);
        assert_eq!(c.delivery.retry.initial_backoff, Duration::from_secs(1));
        assert_eq!(c.delivery.retry.max_backoff, Duration::from_secs(60));
        assert_eq!(c.delivery.on_exhausted, OnExhausted::DeadLetter);
        assert_eq!(c.delivery.dead_letter_topic_for("orders"), "orders-dlq");
        assert_eq!(c.admin.listen.port(), 9090);
        assert_eq!(c.problems(), Vec::<String>::new());
    }

    #[test]
    fn render_maps_auth_to_protocol_and_mounted_files_without_secrets() {
        let kcp = resource(json!({
            "kafka": {
                "bootstrapServers": "kafka:9093", "topics": ["t"], "groupId": "g",
                "auth": {
                    "sasl": { "mechanism": "SCRAM-SHA-512", "secretName": "creds" },
                    "tls": { "secretName": "tls", "caKey": "ca.crt", "certKey": "tls.crt", "keyKey": "tls.key" }
                }
            },
            "endpoint": { "url": "https://svc.example.com:8443/hook?x=1", "readinessPath": "/ready" },
        }));
        let c = SidecarConfig::render(&kcp).expect("renders");
        assert_eq!(c.kafka.group_id, "g");
        let s = &c.kafka.security;
        assert_eq!(s.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(s.sasl_mechanism, Some(SaslMechanism::ScramSha512));
        assert_eq!(s.ca_file.as_deref(), Some("/etc/kcp/tls/ca.crt"));
        assert_eq!(s.key_file.as_deref(), Some("/etc/kcp/tls/tls.key"));
        assert_eq!(c.endpoint.url, "https://svc.example.com:8443/hook?x=1");
        assert_eq!(
            c.endpoint.readiness_url.as_deref(),
            Some("https://svc.example.com:8443/ready")
        );
        // The config names the Secret nowhere: values arrive by env and mounted files only.
        assert!(!c.to_json_pretty().contains("creds"));
    }

    #[test]
    fn config_round_trips_through_json() {
        let c = SidecarConfig::render(&in_pod()).expect("renders");
        assert_eq!(SidecarConfig::parse(&c.to_json_pretty()), Ok(c));
    }

    #[test]
    fn parse_lists_every_problem_at_once() {
        let mut v = serde_json::to_value(SidecarConfig::render(&in_pod()).expect("renders"))
            .expect("serializes");
        v["kafka"]["clientConfig"] = json!({ "group.id": "x", "ssl.key.location": "/k" });
        v["kafka"]["topics"] = json!(["ok", "bad topic"]);
        v["endpoint"]["url"] = json!("ftp://x");
        v["delivery"]["retry"]["initialBackoff"] = json!("2m");
        v["delivery"]["maxInFlight"] = json!(0);
        let err = SidecarConfig::parse(&v.to_string()).expect_err("invalid");
        let text = err.to_string();
        for expected in [
            "must not set \"group.id\"",
            "must not set \"ssl.key.location\"",
            "\"bad topic\" is not a valid topic name",
            "endpoint.url: \"ftp://x\" must start with http:// or https://",
            "initialBackoff (2m) is longer than maxBackoff (1m)",
            "maxInFlight must be at least 1",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(err.0.len(), 6, "{text}");
    }

    /// What the schema refuses at admission, the parser refuses too: a config written by hand
    /// or by an older operator cannot start a sidecar that would cut bodies, fail to build its
    /// requests, or hand librdkafka a key it does not know.
    #[test]
    fn headers_group_ids_and_client_config_keys_the_sidecar_cannot_use_are_refused() {
        let mut v = serde_json::to_value(SidecarConfig::render(&in_pod()).expect("renders"))
            .expect("serializes");
        v["kafka"]["groupId"] = json!("bestellungen-\u{fc}");
        v["kafka"]["clientConfig"] =
            json!({ "fetch.max.byte": "1", "auto.commit.enable": "true", "fetch.max.bytes": "1" });
        v["endpoint"]["headers"] = json!({
            "content-LENGTH": "1",
            "Transfer-Encoding": "chunked",
            "X-Ok": "tab\tand text",
            "X-Bad": "a\r\nX-Evil: 1",
        });
        v["endpoint"]["hostHeader"] = json!("a host");
        let err = SidecarConfig::parse(&v.to_string()).expect_err("invalid");
        let text = err.to_string();
        for expected in [
            "kafka.groupId \"bestellungen-\u{fc}\" must be printable ASCII",
            "\"fetch.max.byte\" is not a consumer property of librdkafka",
            "must not set \"auto.commit.enable\"",
            "endpoint.headers must not set \"content-LENGTH\": the sidecar frames each request itself",
            "endpoint.headers must not set \"Transfer-Encoding\"",
            "the value of \"X-Bad\" must be tab and printable ASCII",
            "endpoint.hostHeader \"a host\" must be printable ASCII without spaces",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(err.0.len(), 7, "{text}");
    }

    #[test]
    fn type_errors_in_different_sections_are_all_reported_with_paths() {
        let mut v = serde_json::to_value(SidecarConfig::render(&in_pod()).expect("renders"))
            .expect("serializes");
        v["endpoint"]["requestTimeout"] = json!("10 seconds");
        v["delivery"]["ordering"] = json!("random");
        v["admin"]["listen"] = json!("nowhere");
        v["surprise"] = json!(1);
        let err = SidecarConfig::parse(&v.to_string()).expect_err("invalid");
        let text = err.to_string();
        for expected in [
            "unknown section `surprise`",
            "endpoint.requestTimeout: invalid duration \"10 seconds\"",
            "delivery.ordering: unknown variant `random`",
            "admin.listen:",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(err.0.len(), 4, "{text}");
    }

    #[test]
    fn missing_sections_and_non_objects_are_reported() {
        let err = SidecarConfig::parse("{}").expect_err("empty");
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(SidecarConfig::parse("[]").is_err());
        assert!(SidecarConfig::parse("not json").is_err());
        assert!(SidecarConfig::parse("").is_err());
    }

    #[test]
    fn urls_the_http_client_would_refuse_are_refused_here() {
        for bad in [
            "http://app.example/a b",
            "http://app.example/\u{e9}",
            "http:///path",
            "http://ho st/",
            "ftp://x/",
            "http://x/\t",
        ] {
            assert!(check_http_url(bad).is_err(), "{bad:?} should be refused");
        }
        for good in [
            "http://127.0.0.1:8080/events",
            "https://svc.ns.svc.cluster.local/hook?x=1&y=%20#frag",
            "http://[::1]:8080/",
            "http://app",
        ] {
            assert_eq!(check_http_url(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn status_matchers() {
        assert_eq!("5xx".parse(), Ok(StatusMatcher::Class(5)));
        assert_eq!("429".parse(), Ok(StatusMatcher::Exact(429)));
        for bad in ["6xx", "0xx", "42", "4299", "x5x", ""] {
            assert!(bad.parse::<StatusMatcher>().is_err(), "{bad}");
        }
        assert!(StatusMatcher::Class(5).matches(503));
        assert!(!StatusMatcher::Class(5).matches(499));
        assert!(StatusMatcher::Exact(429).matches(429));
    }

    fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[a-z0-9:/. -]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("kafka".to_owned()),
                        Just("endpoint".to_owned()),
                        Just("delivery".to_owned()),
                        Just("topics".to_owned()),
                        Just("url".to_owned()),
                        "[a-zA-Z]{1,8}",
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any input gives a config or a non-empty list of problems; never a panic.
        #[test]
        fn parse_never_panics(v in arbitrary_json()) {
            if let Err(e) = SidecarConfig::parse(&v.to_string()) {
                prop_assert!(!e.0.is_empty());
            }
        }

        /// Mutating one field of a valid config never panics and keeps the other fields' problems.
        #[test]
        fn parse_survives_field_mutations(
            section in prop::sample::select(vec!["kafka", "endpoint", "delivery"]),
            field in "[a-zA-Z]{1,16}",
            value in arbitrary_json(),
        ) {
            let mut v = serde_json::to_value(SidecarConfig::render(&in_pod()).expect("renders"))
                .expect("serializes");
            v[section][field.as_str()] = value;
            let _ = SidecarConfig::parse(&v.to_string());
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,64}") {
            let _ = SidecarConfig::parse(&s);
        }
    }
}
