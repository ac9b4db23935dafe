//! `kafkaproxy.io/v1alpha1` `KafkaConsumerProxy`: the resource users write.
//!
//! Pure types. Rustdoc on spec and status fields ships in the CRD schema and in `kubectl explain`,
//! so it is written for users; developer notes are `//` comments. Validation the API server can
//! enforce lives here as schema constraints and CEL rules (`x_kube(validation = ...)`); the
//! operator's `validate` step only does what needs other objects.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
    },
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

mod batch;
mod flow;
mod formats;
mod operation;
mod schema;
pub use batch::{BatchSpec, DEFAULT_BATCH_RECORDS};
pub use flow::{Concurrency, OutageSpec};
pub use formats::{
    CloudEventsSpec, DEFAULT_CLOUDEVENTS_TYPE, Decode, Format, RegistryBasicAuth, RegistryTls,
    SchemaCacheSpec, SchemaRegistrySpec,
};
pub use operation::{
    KafkaConsumerProxyOperation, KafkaConsumerProxyOperationSpec, OffsetMove, OperationStatus,
    Phase, RedrivePosition, RedriveProgress, RedriveSpec, SeekSpec, SkipSpec, SkippedRecord,
};
pub use schema::{RESERVED_CONTAINER_NAME, SELECTOR_LABEL};
use schema::{
    client_config_schema, node_selector_schema, object_name_schema, pod_labels_schema,
    pod_template_schema, static_headers_schema, terse_schema,
};

/// A Kafka consumer group that delivers every record of its topics to an HTTP endpoint, run as
/// a sidecar next to your application.
// Each `printcolumn(...)` repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kafkaproxy.io",
    version = "v1alpha1",
    kind = "KafkaConsumerProxy",
    plural = "kafkaconsumerproxies",
    shortname = "kcp",
    category = "kafkaproxy",
    doc = "A Kafka consumer group that delivers every record of its topics to an HTTP endpoint, run as a sidecar next to your application.",
    namespaced,
    status = "KafkaConsumerProxyStatus",
    derive = "PartialEq",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.lag.total"),
    printcolumn(name = "Behind", type_ = "string", json_path = ".status.lag.behind"),
    printcolumn(
        name = "DLQ",
        type_ = "integer",
        json_path = ".status.deadLetter.count"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[kube(validation = Rule::new("!has(self.metadata.name) || self.metadata.name.size() <= 63").message(
    "metadata.name must be at most 63 characters: it is used as the value of the pods' kafkaproxy.io/instance label"
))]
#[x_kube(validation = Rule::new("!has(self.endpoint.port) || has(self.template)").message(
    "spec.template is required when endpoint.port is set: the port belongs to your app's container in the same pod"
))]
#[x_kube(validation = Rule::new(
    "!has(self.endpoint.port) || self.endpoint.port != (has(self.sidecar) && has(self.sidecar.adminPort) ? self.sidecar.adminPort : 9090)"
).message(
    "endpoint.port and sidecar.adminPort are the same port: the app and the sidecar share the pod's network; pick another sidecar.adminPort"
))]
#[x_kube(validation = Rule::new("!has(self.pod) || !has(self.template)").message(
    "spec.pod is for pods without spec.template (endpoint.url): with a template, set these in the template instead (labels and annotations in spec.template.metadata, the rest in spec.template.spec)"
))]
#[x_kube(validation = Rule::new(
    "!has(self.delivery) || !has(self.delivery.deadLetter) || !has(self.delivery.deadLetter.topic) || !(self.delivery.deadLetter.topic in self.kafka.topics)"
).message(
    "delivery.deadLetter.topic is also a source topic: failed records would be consumed again; pick another dead-letter topic"
))]
#[x_kube(validation = Rule::new(
    "(has(self.delivery) && has(self.delivery.deadLetter) && has(self.delivery.deadLetter.topic)) || self.kafka.topics.all(t, !((t + '-dlq') in self.kafka.topics))"
).message(kube::core::Message::Expression(
    "'the default dead-letter topic of ' + self.kafka.topics.filter(t, (t + '-dlq') in self.kafka.topics)[0] + ' is ' + self.kafka.topics.filter(t, (t + '-dlq') in self.kafka.topics)[0] + '-dlq, which is also a source topic: failed records would be consumed again; set delivery.deadLetter.topic or rename the topics'".into()
)))]
#[x_kube(validation = Rule::new(
    "!has(self.delivery) || !has(self.delivery.drainTimeout) || duration(self.delivery.drainTimeout) + duration('10s') < ((has(self.kafka.clientConfig) && 'max.poll.interval.ms' in self.kafka.clientConfig && self.kafka.clientConfig['max.poll.interval.ms'].matches('^[0-9]{1,9}$')) ? duration(self.kafka.clientConfig['max.poll.interval.ms'] + 'ms') : duration('300s'))"
).message(
    "delivery.drainTimeout must be at least 10s shorter than kafka.clientConfig max.poll.interval.ms (300000, 5 minutes, unless set): a revocation drains for up to drainTimeout without polling, and a consumer that does not poll for max.poll.interval.ms is removed from the group"
))]
#[x_kube(validation = Rule::new(
    "!has(self.delivery) || !has(self.delivery.batch) || ((!has(self.endpoint.format) || self.endpoint.format == 'raw') && !has(self.endpoint.bodyAck))"
).message(
    "delivery.batch sends records as one JSON array with its own reply format (docs/batch.md): it needs endpoint.format raw and no endpoint.bodyAck"
))]
#[x_kube(validation = Rule::new("!has(self.endpoint.decode) || has(self.kafka.schemaRegistry)").message(
    "endpoint.decode needs kafka.schemaRegistry: the records' schemas are fetched from it"
))]
#[serde(rename_all = "camelCase")]
pub struct KafkaConsumerProxySpec {
    /// Where to consume from: brokers, topics, consumer group, authentication.
    pub kafka: KafkaSpec,

    /// Where each record is delivered, and how the endpoint's reply is read.
    pub endpoint: EndpointSpec,

    /// Ordering, parallelism, delivery guarantee, retries and dead-lettering.
    #[serde(default)]
    pub delivery: DeliverySpec,

    /// Number of pods, each running one consumer of the group. Supports `kubectl scale` and
    /// HorizontalPodAutoscalers. More replicas than partitions leaves some idle.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,

    /// Run zero pods without deleting anything; lag keeps being reported.
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,

    /// Stop taking records while the pods keep running and keep their partitions: records
    /// already taken are finished, then nothing is delivered until `paused` is false again,
    /// when delivery resumes where it stopped. Reaches running pods without restarting them,
    /// within about a minute (the kubelet's ConfigMap refresh); lag keeps being reported.
    /// `kubectl kcp pause NAME` sets it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,

    /// The application's pod template (a standard PodTemplateSpec). Required with
    /// `endpoint.port`; omit it with `endpoint.url` to run the sidecar alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_template_schema")]
    // Kept as raw JSON so that a template the operator cannot parse becomes an `InvalidSpec`
    // condition on this one object instead of a deserialization error that breaks the watch.
    // The CRD describes only its outline; see ARCHITECTURE.md "Why template is loosely typed".
    pub template: Option<serde_json::Value>,

    /// Labels, annotations, scheduling, image pull secrets and ServiceAccount of the pods when
    /// there is no `template` (`endpoint.url`). With a `template`, set these in the template
    /// instead: setting both is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodSettings>,

    /// Settings of the sidecar container the operator adds to each pod.
    #[serde(default)]
    pub sidecar: SidecarSpec,
}

/// The pod settings of a resource without a `template`: the fields of a pod template that every
/// pod needs to be labelled, scheduled, pulled and run as a ServiceAccount. Scheduling fields have
/// their standard Kubernetes form.
// The Kubernetes types come from k8s-openapi (pinned to one Kubernetes version) with their
// schema in the CRD, so a typo is refused at `kubectl apply`; their nested descriptions are
// left out to keep the CRD small (ARCHITECTURE.md, "Why `spec.pod` is typed when `template`
// is not").
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodSettings {
    /// Labels added to the pods (at most 64). `kafkaproxy.io/instance` is the operator's: it
    /// selects the pods, and may not be set here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "pod_labels_schema")]
    pub labels: BTreeMap<String, String>,

    /// Annotations added to the pods (a service mesh's, a log collector's). The operator's
    /// `kafkaproxy.io/config-hash` wins over one set here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Secrets in the resource's namespace holding registry credentials for the sidecar image,
    /// as `[{name: regcred}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "terse_schema::<Vec<LocalObjectReference>>")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// Node labels a node must have to run the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "node_selector_schema")]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the pods tolerate (a standard Kubernetes `tolerations` list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "terse_schema::<Vec<Toleration>>")]
    pub tolerations: Vec<Toleration>,

    /// Node affinity, pod affinity and anti-affinity (a standard Kubernetes `affinity`). The
    /// pods carry the label `kafkaproxy.io/instance: <resource name>` to select them by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "terse_schema::<Affinity>")]
    pub affinity: Option<Affinity>,

    /// How the pods spread over zones or nodes (a standard Kubernetes
    /// `topologySpreadConstraints` list). Select the pods with the label
    /// `kafkaproxy.io/instance: <resource name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "terse_schema::<Vec<TopologySpreadConstraint>>")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "object_name_schema")]
    pub priority_class_name: Option<String>,

    /// ServiceAccount the pods run as, e.g. for its image pull secrets or for policies that
    /// select pods by ServiceAccount. Its API token is still not mounted: the sidecar never
    /// calls the Kubernetes API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "object_name_schema")]
    pub service_account_name: Option<String>,

    /// RuntimeClass of the pods (e.g. a sandboxed runtime such as gVisor or Kata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "object_name_schema")]
    pub runtime_class_name: Option<String>,
}

/// Kafka connection and consumption.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(
    "(has(self.groupId) ? self.groupId : '') == (has(oldSelf.groupId) ? oldSelf.groupId : '')"
).message(
    "kafka.groupId is immutable: changing it silently restarts consumption from initialOffset; create a new resource instead"
))]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Comma-separated `host:port` list of brokers to bootstrap from.
    #[schemars(length(min = 1, max = 4096))]
    pub bootstrap_servers: String,

    /// Topics to consume (at least one). Names follow Kafka's rule: 1-249 characters of
    /// `a-z A-Z 0-9 . _ -`, and not `.` or `..`.
    #[schemars(
        length(min = 1, max = 64),
        inner(
            length(min = 1, max = 249),
            regex(pattern = r"^(\.{0,2}[a-zA-Z0-9_-][a-zA-Z0-9._-]*|\.{3,}[a-zA-Z0-9._-]*)$")
        )
    )]
    pub topics: Vec<String>,

    /// Consumer group id. Defaults to `<namespace>.<name>`. Cannot be changed after creation.
    /// Printable ASCII without leading or trailing spaces: it is sent to your app in the
    /// `kcp-group` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[!-~]([ -~]*[!-~])?$"))]
    pub group_id: Option<String>,

    /// Where a group with no committed offset on a partition starts: `earliest` (default) or
    /// `latest`. It never applies to a group that committed: a committed offset that retention
    /// deleted (or a truncated or recreated topic) resumes at the earliest retained record,
    /// logged at ERROR with how many records were removed before delivery.
    #[serde(default)]
    pub initial_offset: InitialOffset,

    /// Extra librdkafka consumer properties, e.g. `fetch.max.bytes`. Only consumer properties
    /// librdkafka knows are accepted. Keys the sidecar owns are refused: `bootstrap.servers`
    /// (and `metadata.broker.list`), `group.id`, `group.instance.id`, `enable.auto.commit` (and
    /// `auto.commit.enable`), `enable.auto.offset.store`, `auto.offset.reset` (see
    /// `initialOffset`), and security settings (`security.protocol`, `sasl.*`, `ssl.*`), which
    /// are set through `auth`. The general (not consumer-only) properties also apply to the
    /// dead-letter producer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "client_config_schema")]
    pub client_config: BTreeMap<String, String>,

    /// Authentication and encryption. Secret values are read from Secrets, never written here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<KafkaAuth>,

    /// The schema registry that `endpoint.decode` fetches the records' schemas from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry: Option<SchemaRegistrySpec>,
}

/// Where a group with no committed offset starts.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum InitialOffset {
    #[default]
    Earliest,
    Latest,
}

/// Kafka authentication: SASL, TLS, or both (SASL over TLS).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new(
    "!has(self.sasl) || self.sasl.mechanism != 'PLAIN' || has(self.tls) || (has(self.allowCleartextPassword) && self.allowCleartextPassword)"
).message(
    "auth.sasl.mechanism PLAIN without auth.tls sends the password in clear text: add auth.tls (tls: {} trusts the system CA roots), use SCRAM, or set auth.allowCleartextPassword: true for a broker on a trusted network"
))]
#[serde(rename_all = "camelCase")]
pub struct KafkaAuth {
    /// SASL username/password authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslAuth>,
    /// TLS to the brokers. `tls: {}` uses the system's CA roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsAuth>,
    /// Allows SASL `PLAIN` without `tls`, which sends the password over the network in clear
    /// text (refused otherwise). Only for a broker on a network you trust.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_cleartext_password: bool,
}

impl KafkaAuth {
    /// Why this authentication is refused, when it is: SASL `PLAIN` without TLS sends the
    /// password in clear text unless [`KafkaAuth::allow_cleartext_password`] says so.
    pub fn cleartext_problem(&self) -> Option<&'static str> {
        let plain = self
            .sasl
            .as_ref()
            .is_some_and(|s| s.mechanism == SaslMechanism::Plain);
        (plain && self.tls.is_none() && !self.allow_cleartext_password).then_some(
            "kafka.auth.sasl.mechanism PLAIN without kafka.auth.tls sends the password in clear text: add auth.tls (tls: {} trusts the system CA roots), use SCRAM, or set auth.allowCleartextPassword: true for a broker on a trusted network",
        )
    }
}

/// SASL credentials, read from a Secret in the resource's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SaslAuth {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: SaslMechanism,
    /// Name of the Secret holding the username and password. The Secret must allow this
    /// resource: annotation `kafkaproxy.io/allowed-consumers` listing its name (or `*`).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key of the username in the Secret (default `username`).
    #[serde(default = "default_username_key")]
    #[schemars(length(min = 1, max = 253))]
    pub username_key: String,
    /// Key of the password in the Secret (default `password`).
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub password_key: String,
}

/// A SASL mechanism.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The value librdkafka expects in `sasl.mechanism`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// TLS to the brokers, with an optional CA and client certificate from a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("has(self.certKey) == has(self.keyKey)")
    .message("auth.tls.certKey and auth.tls.keyKey go together: set both for a client certificate, or neither"))]
#[x_kube(validation = Rule::new("has(self.secretName) || (!has(self.caKey) && !has(self.certKey))")
    .message("auth.tls.secretName is required when caKey, certKey or keyKey is set"))]
#[serde(rename_all = "camelCase")]
pub struct TlsAuth {
    /// Secret holding the CA certificate and optional client certificate and key. Omit it to
    /// trust the system's CA roots with no client certificate. The Secret must allow this
    /// resource: annotation `kafkaproxy.io/allowed-consumers` listing its name (or `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// Key of the PEM CA certificate in the Secret (e.g. `ca.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub ca_key: Option<String>,
    /// Key of the PEM client certificate in the Secret (e.g. `tls.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub cert_key: Option<String>,
    /// Key of the PEM client private key in the Secret (e.g. `tls.key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key_key: Option<String>,
}

/// The HTTP endpoint every record is delivered to, and its reply contract.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.port) != has(self.url)").message(
    "set exactly one of endpoint.port (your app in the same pod) or endpoint.url (a remote endpoint)"
))]
#[x_kube(validation = Rule::new("!has(self.connectTimeout) || duration(self.connectTimeout) > duration('0s')")
    .message("endpoint.connectTimeout must be longer than 0s"))]
#[x_kube(validation = Rule::new("!has(self.requestTimeout) || duration(self.requestTimeout) > duration('0s')")
    .message("endpoint.requestTimeout must be longer than 0s"))]
#[x_kube(validation = Rule::new("!has(self.unreadyTimeout) || duration(self.unreadyTimeout) > duration('0s')")
    .message("endpoint.unreadyTimeout must be longer than 0s"))]
#[x_kube(validation = Rule::new("!has(self.cloudEvents) || (has(self.format) && self.format != 'raw')").message(
    "endpoint.cloudEvents sets CloudEvents attributes, but endpoint.format is raw: set format to cloudevents-binary or cloudevents-structured"
))]
#[serde(rename_all = "camelCase")]
pub struct EndpointSpec {
    /// Port of your app's container in the same pod; records go to `http://127.0.0.1:<port><path>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,

    /// Request path with `port` (default `/`): printable ASCII, no spaces (percent-encode the rest).
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^/[!-~]*$"))]
    pub path: String,

    /// Full `http://` or `https://` URL of a remote endpoint (instead of `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = r"^https?://[A-Za-z0-9.\[\]:_~%!$&'()*+,;=-]+([/?#][\x21-\x7e]*)?$")
    )]
    pub url: Option<String>,

    /// HTTP method: `POST` (default) or `PUT`.
    #[serde(default)]
    pub method: HttpMethod,

    /// Value of the `Host` header, when the endpoint routes on it (printable ASCII, no spaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[!-~]+$"))]
    pub host_header: Option<String>,

    /// Static headers added to every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "static_headers_schema")]
    pub headers: BTreeMap<String, String>,

    /// How long to wait for a connection (default `10s`).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,

    /// How long one request may take in all, after which it is retried (default `60s`).
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,

    /// Log requests slower than this at WARN (rate-limited). Off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_request_threshold: Option<Duration>,

    /// Path the sidecar polls (GET, 2xx = ready) before delivering, and while your app is down.
    /// Unset: the sidecar treats "connection refused" as not ready and anything else as ready.
    /// While the app is not ready, fetching pauses and the replica keeps its partitions, for
    /// up to `unreadyTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^/[!-~]*$"))]
    pub readiness_path: Option<String>,

    /// Statuses that mean "try again later": `5xx`, `4xx`, or exact codes like `429`
    /// (default `5xx`, `408`, `429`). Any other non-2xx status means the record itself is bad
    /// and goes straight to `delivery.onExhausted`.
    #[serde(default = "default_retry_on")]
    #[schemars(
        length(min = 0, max = 32),
        inner(regex(pattern = r"^([1-5]xx|[1-5][0-9][0-9])$"))
    )]
    pub retry_on: Vec<String>,

    /// A response header by which your app overrides the status: `retry`, `skip` or
    /// `dead-letter` (e.g. `X-Kcp-Action`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    )]
    pub action_header: Option<String>,

    /// How long your app may stay not ready before this replica gives its partitions back to
    /// the group, so that other replicas consume them (default `2m`). It rejoins when the app
    /// answers again. Shorter outages (a restart) only pause fetching.
    #[serde(default = "default_unready_timeout")]
    pub unready_timeout: Duration,

    /// For apps that answer 2xx with an error code in a JSON body: the record counts as
    /// delivered only when the value at `pointer` equals `equals`; otherwise it is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_ack: Option<BodyAck>,

    /// How each record becomes a request: `raw` (default: the value is the body, coordinates
    /// and Kafka headers in `kcp-*` headers), `cloudevents-binary` (a CloudEvent: attributes in
    /// `ce-*` headers, the data as the body) or `cloudevents-structured` (a CloudEvent as one
    /// `application/cloudevents+json` body). The `kcp-*` headers are sent in every format.
    #[serde(default, skip_serializing_if = "Format::is_raw")]
    pub format: Format,

    /// CloudEvents attributes to set instead of the defaults (with a `cloudevents-*` format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_events: Option<CloudEventsSpec>,

    /// Decode record values in the schema registry's wire format (a zero byte, a 4-byte schema
    /// id, the payload) to JSON before sending them (`content-type: application/json`): `avro`,
    /// `protobuf`, `jsonschema`, or `auto` (by the schema's type). Needs
    /// `kafka.schemaRegistry`. A record that cannot be decoded (not in the wire format, a schema
    /// id the registry does not have, a payload that does not match its schema) is bad: it goes
    /// to `delivery.onExhausted` at once. A registry that cannot be reached is an outage: records
    /// wait for it and are never dead-lettered for it. Empty values (tombstones) are sent empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode: Option<Decode>,
}

/// An application-level acknowledgement read from the JSON response body.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BodyAck {
    /// JSON pointer (RFC 6901) into the response body, e.g. `/errno`.
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^/"))]
    pub pointer: String,
    /// The value meaning success, compared with the JSON value's text: `0`, `true`, `OK`.
    #[schemars(length(max = 256))]
    pub equals: String,
}

/// HTTP method used to deliver records.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Post,
    Put,
}

/// Ordering, parallelism and delivery guarantee.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.commitInterval) || duration(self.commitInterval) > duration('0s')")
    .message("delivery.commitInterval must be longer than 0s"))]
#[x_kube(validation = Rule::new(
    "!(has(self.guarantee) && self.guarantee == 'atMostOnce' && has(self.onExhausted) && self.onExhausted == 'block')"
).message(
    "delivery.onExhausted: block sends a failing record again forever, which guarantee: atMostOnce forbids; use skip or deadLetter"
))]
#[x_kube(validation = Rule::new(
    "!has(self.batch) || !has(self.maxUncommitted) || (has(self.batch.maxRecords) ? self.batch.maxRecords : 100) <= self.maxUncommitted"
).message(
    "delivery.batch.maxRecords must not be more than delivery.maxUncommitted: a batch is sent whole, so it must fit in the records that may be uncommitted"
))]
#[serde(rename_all = "camelCase")]
pub struct DeliverySpec {
    /// `partition` (default): one request in flight per partition, in offset order.
    /// `key`: records with the same key in order, different keys in parallel.
    /// `unordered`: any order, most parallel.
    #[serde(default)]
    pub ordering: Ordering,

    /// The most requests in flight at once per replica (default 16). In `partition` mode at
    /// most one per partition is in flight, so the effective limit is the smaller of the two.
    #[serde(default = "default_max_in_flight")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_in_flight: i32,

    /// `atLeastOnce` (default): commit only after delivery; never loses a record, may repeat
    /// some after a crash. `atMostOnce`: each round of records is committed before it is sent,
    /// and a request that may have reached the app (any answer, or a timeout) is never sent
    /// again: a failure goes straight to `onExhausted` (`skip` or `deadLetter`; not `block`).
    /// A crash or a revocation may lose what was committed and not yet delivered; nothing is
    /// delivered twice.
    #[serde(default)]
    pub guarantee: Guarantee,

    /// How often finished offsets are committed at the latest (default `1s`); sooner when half
    /// of `maxUncommitted` ended records wait for a commit. Also committed on rebalance and
    /// shutdown.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: Duration,

    /// The most records sent to the app whose end is not yet committed (default: 1000, or twice
    /// `maxInFlight` when that is more). A crash of the sidecar (`kill -9`, an OOM kill, a lost
    /// node) delivers at most this many records again; records the acknowledged commits name
    /// finished are never delivered again (unless the broker keeps no commit metadata, or the
    /// metadata overflowed: see ARCHITECTURE.md, "Guarantee"). A record counts from the start of an attempt until
    /// a commit carrying its end is acknowledged (not while it waits for a retry). When the
    /// bound is reached, no new request starts until a commit frees room: set it to
    /// `maxInFlight` for "only what was in flight repeats", at the cost of a commit per half
    /// window. Below `maxInFlight` it also lowers the requests in flight. Not used with
    /// `atMostOnce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_uncommitted: Option<i32>,

    /// How long shutdown and partition revocation wait for in-flight requests (default `30s`).
    /// At least 10s shorter than librdkafka's `max.poll.interval.ms` (5 minutes unless
    /// `kafka.clientConfig` sets it): a revocation drains without polling Kafka.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: Duration,

    /// Retry policy for retryable failures.
    #[serde(default)]
    pub retry: RetrySpec,

    /// What happens to a record whose retries ran out, or that the endpoint refused as bad:
    /// `deadLetter` (default), `skip`, or `block` (retry forever; only its partition or key waits,
    /// until the records held behind blocked ones reach the sidecar's bound: then their whole
    /// partition waits, which the sidecar reports; nothing is skipped).
    #[serde(default)]
    pub on_exhausted: OnExhausted,

    /// Dead-letter topic settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterSpec>,

    /// A record that was in flight during this many consecutive crashes of the sidecar (default
    /// 3) is dead-lettered, with `kcp-dlq-reason: crash loop: ...`, instead of taking every replica
    /// down in turn. `0` turns it off. Counted in the commit's metadata, so it holds across pods;
    /// a crash counts only for records a periodic commit saw in flight (one that crashes the
    /// sidecar within `commitInterval` of being sent is not caught).
    #[serde(default = "default_max_crashes")]
    #[schemars(range(min = 0, max = 100))]
    pub max_crashes: i32,

    /// `fixed` (default): up to `maxInFlight` requests at once. `adaptive`: a limit under
    /// `maxInFlight` that follows the app's response times and back-pressure answers. Either
    /// way an answer's `Retry-After` (on a 429 or a 503) holds every new request until then.
    /// Ordering is unchanged: this bounds requests in flight across lanes.
    #[serde(default)]
    pub concurrency: Concurrency,

    /// When the endpoint fails every record alike (an app down behind a Service, an Ingress or
    /// a mesh answering 502/503/504, or a misconfiguration answering 404, 401/403 or a
    /// redirect), it is an outage, not bad records: attempts stop counting, nothing is
    /// dead-lettered, records stop being taken, and the sidecar probes until the endpoint
    /// answers. A record that fails while other records succeed is still the record's fault.
    #[serde(default)]
    pub outage: OutageSpec,

    /// Send several records of a lane in one request, with a result per record in the reply
    /// (docs/batch.md). Each record is then delivered, retried, skipped or dead-lettered on its
    /// own, with its own attempts; in `partition` and `key` order the first record to be
    /// retried and every record after it in the batch are sent again, so order holds. Unset
    /// (default): one record per request. Needs `endpoint.format: raw` and no `bodyAck`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchSpec>,
}

/// Delivery order.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Ordering {
    #[default]
    Partition,
    Key,
    Unordered,
}

/// Delivery guarantee.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Guarantee {
    #[default]
    AtLeastOnce,
    AtMostOnce,
}

/// What to do when a record cannot be delivered.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum OnExhausted {
    #[default]
    DeadLetter,
    Skip,
    Block,
}

/// Capped exponential backoff with full jitter.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new(
    "!has(self.initialBackoff) || !has(self.maxBackoff) || duration(self.initialBackoff) <= duration(self.maxBackoff)"
).message("delivery.retry.initialBackoff must not be longer than delivery.retry.maxBackoff"))]
#[serde(rename_all = "camelCase")]
pub struct RetrySpec {
    /// Attempts per record, the first included (default 5; `0` = unlimited).
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_attempts: i32,
    /// Wait before the second attempt (default `1s`).
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// Longest wait between attempts (default `60s`).
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// Growth factor of the wait per attempt (default 2).
    #[serde(default = "default_multiplier")]
    #[schemars(range(min = 1.0, max = 10.0))]
    pub multiplier: f64,
}

/// Dead-letter topic settings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterSpec {
    /// Topic for records that could not be delivered (default `<source topic>-dlq`). It may
    /// not be one of `kafka.topics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 249),
        regex(pattern = r"^(\.{0,2}[a-zA-Z0-9_-][a-zA-Z0-9._-]*|\.{3,}[a-zA-Z0-9._-]*)$")
    )]
    pub topic: Option<String>,
}

/// The sidecar container.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    /// Sidecar image; defaults to the operator's configured image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub image: Option<String>,
    /// Resource requests and limits of the sidecar container (a default is applied when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// `error`, `warn`, `info` (default), `debug` or `trace`.
    #[serde(default)]
    pub log_level: LogLevel,
    /// Port of the sidecar's admin server (probes, `/metrics`, `/status`; default 9090).
    #[serde(default = "default_admin_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub admin_port: i32,
}

/// Log verbosity.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// Observed state, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaConsumerProxyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling` and `Stalled`, following the kstatus conventions, and three that
    /// do not affect `Ready`: `KafkaReachable` (the operator could read lag from Kafka),
    /// `DeadLetterTopicsReady` (each dead-letter topic exists and the Kafka user may describe it;
    /// `Unknown` when Kafka could not be read) and `PartitionsStuck` (`True` while a partition's
    /// committed offset has not moved for the stuck window though it has records to consume;
    /// its message names each, see `stuck`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Pods of the Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Pods that passed their readiness probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Label selector of the pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Consumer lag, read from Kafka by the operator (works with zero pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<LagStatus>,
    /// Records this consumer group dead-lettered, and the last few of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterStatus>,
    /// Partitions whose committed offset has not moved for the stuck window (the operator's
    /// `--stuck-after`, 5 minutes by default) while they had records to consume, at most 20,
    /// each with what the sidecar said of the record at that offset.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub stuck: Vec<StuckPartition>,
}

/// A partition that does not move.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StuckPartition {
    pub topic: String,
    pub partition: i32,
    /// The committed offset that has not moved: the record there is not finishing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Since when the operator has seen it at that offset with records to consume.
    pub since: Time,
    /// What the sidecar's last commit said of that record, when it said something: attempts,
    /// the last failure, crashes it was in flight during.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

impl StuckPartition {
    /// Most partitions listed (the schema's `maxItems`).
    pub const MAX: usize = 20;
}

/// Consumer lag of the group.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LagStatus {
    /// Sum of the lag of every partition of the source topics, listed or not.
    pub total: i64,
    /// How far behind in time: the age in seconds of the oldest record not yet committed, over
    /// every partition (the most lagging 1,000 are looked at), read from the record's
    /// timestamp (producer's create time, or the broker's log-append time). 0 when caught up;
    /// a timestamp in the future (a producer clock ahead) counts 0; absent when no lagging
    /// partition's record time could be read (records without timestamps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<i64>,
    /// `seconds` for people, as in `4m12s` (the `Behind` column of `kubectl get kcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind: Option<String>,
    /// Number of partitions of the source topics, listed or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_count: Option<i32>,
    /// Lag of at most 20 partitions: those with the most lag (on a tie, the first by topic
    /// and partition), listed by topic and partition. A topic with thousands of partitions
    /// would not fit in the status; `total` and `partitionCount` cover them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub partitions: Vec<PartitionLag>,
    /// When these figures last changed. The operator re-reads them from Kafka every refresh
    /// interval (30s by default) and writes only when they change; `stale` says whether the
    /// last read failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Time>,
    /// True when the last attempt to read them failed and these are older figures.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stale: bool,
}

impl LagStatus {
    /// Most partitions listed in `partitions` (the schema's `maxItems`).
    pub const MAX_PARTITIONS: usize = 20;
}

/// Lag of one partition.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLag {
    /// Source topic.
    pub topic: String,
    /// Partition number within the topic.
    pub partition: i32,
    /// The group's committed offset; absent when the group never committed on this partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_offset: Option<i64>,
    /// The partition's high watermark (offset of the next record to be written).
    pub high_watermark: i64,
    /// Records not yet committed by the group.
    pub lag: i64,
    /// Age in seconds of its oldest record not yet committed (see `lag.seconds`); absent when
    /// unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<i64>,
}

/// Dead-letter counts.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterStatus {
    /// The dead-letter topics of this resource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// Records this consumer group dead-lettered, summed over the source partitions. The
    /// sidecars keep the count in their commits' metadata, so it covers every pod that ever
    /// consumed, does not fall when retention deletes dead letters, and does not count other
    /// resources' records sharing the topic. It starts over if a commit's metadata is lost
    /// (another client committed for the group, or the broker keeps no metadata).
    pub count: i64,
    /// Records currently held in the dead-letter topics, whoever wrote them (high minus low
    /// watermark, summed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_topics: Option<i64>,
    /// The newest dead-lettered records, newest first, at most 10 (the sidecars keep the
    /// last 3 of each partition).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub recent: Vec<DeadLetteredRecord>,
}

impl DeadLetterStatus {
    /// Most records listed in `recent` (the schema's `maxItems`).
    pub const MAX_RECENT: usize = 10;
}

/// One record sent to the dead-letter topic.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetteredRecord {
    /// Where it came from.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// `<topic>/<partition>/<offset>`: the `idempotency-key` it was delivered with, and the
    /// `kcp-dlq-*` coordinates headers of its dead-letter record.
    pub idempotency_key: String,
    /// Why, for example `retries exhausted after 5 attempts (last 503)`.
    pub reason: String,
    /// When it was dead-lettered.
    pub at: Time,
}

// ---- defaults (each is documented on its field) ----

fn default_replicas() -> i32 {
    1
}
fn default_path() -> String {
    "/".into()
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}
/// The default `retryOn` list.
pub fn default_retry_on() -> Vec<String> {
    vec!["5xx".into(), "408".into(), "429".into()]
}
/// The default `endpoint.unreadyTimeout`.
pub fn default_unready_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_max_in_flight() -> i32 {
    16
}
fn default_max_crashes() -> i32 {
    3
}
fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_attempts() -> i32 {
    5
}
fn default_initial_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_admin_port() -> i32 {
    9090
}
fn default_username_key() -> String {
    "username".into()
}
fn default_password_key() -> String {
    "password".into()
}
fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for DeliverySpec {
    fn default() -> Self {
        Self {
            ordering: Ordering::default(),
            max_in_flight: default_max_in_flight(),
            guarantee: Guarantee::default(),
            commit_interval: default_commit_interval(),
            max_uncommitted: None,
            drain_timeout: default_drain_timeout(),
            retry: RetrySpec::default(),
            on_exhausted: OnExhausted::default(),
            dead_letter: None,
            max_crashes: default_max_crashes(),
            concurrency: Concurrency::default(),
            outage: OutageSpec::default(),
            batch: None,
        }
    }
}

impl Default for RetrySpec {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            multiplier: default_multiplier(),
        }
    }
}

impl Default for SidecarSpec {
    fn default() -> Self {
        Self {
            image: None,
            resources: None,
            log_level: LogLevel::default(),
            admin_port: default_admin_port(),
        }
    }
}
