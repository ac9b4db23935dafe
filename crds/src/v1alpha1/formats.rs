//! The record-format parts of the spec: `endpoint.format` (raw or CloudEvents),
//! `endpoint.cloudEvents` (attribute overrides), `endpoint.decode` (schema-registry records to
//! JSON) and `kafka.schemaRegistry` (where schemas come from).
//!
//! Pure types. Rustdoc ships in the CRD and `kubectl explain`; the rules the API server can
//! enforce are here as schema constraints and CEL rules (each within the cost budget checked by
//! `crds/tests/cel_budget.rs`). The cross-field rule "`decode` needs `kafka.schemaRegistry`" is on
//! the spec itself (`v1alpha1.rs`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// The CloudEvents `type` of events built from records, unless `endpoint.cloudEvents.type`
/// sets one.
pub const DEFAULT_CLOUDEVENTS_TYPE: &str = "io.kafkaproxy.record";

/// How each record is shaped into an HTTP request.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// The record value is the body; coordinates and Kafka headers travel as `kcp-*` headers.
    #[default]
    Raw,
    /// A CloudEvent in HTTP binary content mode: attributes in `ce-*` headers, data as the body.
    CloudeventsBinary,
    /// A CloudEvent in HTTP structured content mode: one `application/cloudevents+json` body.
    CloudeventsStructured,
}

impl Format {
    pub fn is_raw(&self) -> bool {
        *self == Self::Raw
    }
}

// How record values in the schema registry's wire format are decoded to JSON. (A `//` comment:
// the field's rustdoc is what the CRD shows for `endpoint.decode`.)
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Decode {
    /// Avro records.
    Avro,
    /// Protobuf records.
    Protobuf,
    /// JSON Schema records (the payload is JSON already; it is validated against its schema).
    Jsonschema,
    /// Whichever of the three the registry says the record's schema is.
    Auto,
}

impl Decode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Avro => "avro",
            Self::Protobuf => "protobuf",
            Self::Jsonschema => "jsonschema",
            Self::Auto => "auto",
        }
    }
}

/// CloudEvents attributes set by the resource instead of the defaults. An attribute a record
/// already carries in a `ce_*` Kafka header (or in its own structured event) is kept as is.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CloudEventsSpec {
    /// The events' `type` (default `io.kafkaproxy.record`): printable ASCII, e.g.
    /// `com.example.order.created`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[!-~]([ -~]*[!-~])?$"))]
    pub type_: Option<String>,
    /// The events' `source`, a URI reference such as `/orders-service` or
    /// `https://shop.example.com/orders` (default `kafka://<first bootstrap server>/<topic>`).
    /// The event `id` includes the topic, so `source` + `id` stay unique across topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^[!-~]+$"))]
    pub source: Option<String>,
}

/// A schema registry with the Confluent REST API (Confluent Schema Registry, Redpanda, Apicurio's
/// compatibility API, Karapace), from which `endpoint.decode` fetches schemas by id.
#[derive(kube::KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.tls) || self.url.startsWith('https://')").message(
    "kafka.schemaRegistry.tls needs an https:// url"
))]
#[x_kube(validation = Rule::new(
    "!has(self.basicAuth) || self.url.startsWith('https://') || (has(self.allowCleartextPassword) && self.allowCleartextPassword)"
).message(
    "kafka.schemaRegistry.basicAuth over http:// sends the password in clear text: use an https:// url, or set allowCleartextPassword: true for a registry on a trusted network"
))]
#[x_kube(validation = Rule::new("!has(self.requestTimeout) || duration(self.requestTimeout) > duration('0s')")
    .message("kafka.schemaRegistry.requestTimeout must be longer than 0s"))]
#[serde(rename_all = "camelCase")]
pub struct SchemaRegistrySpec {
    /// Base URL of the registry, `http://` or `https://` (schemas are read from
    /// `<url>/schemas/ids/<id>` and references from `<url>/subjects/<subject>/versions/<version>`).
    #[schemars(
        length(min = 1, max = 2048),
        regex(pattern = r"^https?://[A-Za-z0-9.\[\]:_~%!$&'()*+,;=-]+([/?#][\x21-\x7e]*)?$")
    )]
    pub url: String,

    /// HTTP basic authentication, username and password from a Secret in the resource's
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<RegistryBasicAuth>,

    /// Allows `basicAuth` over `http://`, which sends the password over the network in clear
    /// text (refused otherwise). Only for a registry on a network you trust.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_cleartext_password: bool,

    /// A CA certificate to trust instead of the system's roots, and an optional client
    /// certificate, from a Secret. Needs an `https://` url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RegistryTls>,

    /// How long one request to the registry may take (default `10s`). A registry that does not
    /// answer in time is an outage: records wait for it, none is dead-lettered.
    #[serde(default = "default_registry_timeout")]
    pub request_timeout: Duration,

    /// The schema cache.
    #[serde(default)]
    pub cache: SchemaCacheSpec,
}

/// Registry credentials, read from a Secret in the resource's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegistryBasicAuth {
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

/// TLS material for the registry, from a Secret in the resource's namespace.
#[derive(kube::KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.certKey) == has(self.keyKey)")
    .message("kafka.schemaRegistry.tls.certKey and keyKey go together: set both for a client certificate, or neither"))]
#[x_kube(validation = Rule::new("has(self.caKey) || has(self.certKey)")
    .message("kafka.schemaRegistry.tls names no key: set caKey, or certKey and keyKey (an https:// url without tls trusts the system's CA roots)"))]
#[serde(rename_all = "camelCase")]
pub struct RegistryTls {
    /// Secret holding the CA certificate and the optional client certificate and key. The
    /// Secret must allow this resource: annotation `kafkaproxy.io/allowed-consumers` listing
    /// its name (or `*`).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key of the PEM CA certificate in the Secret (e.g. `ca.crt`), trusted instead of the
    /// system's roots.
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

/// The sidecar's schema cache. A schema id always names the same schema, so a schema found
/// stays until the cache is full and it is the least recently used.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SchemaCacheSpec {
    /// Schemas kept (default 1000), each with the schemas it references.
    #[serde(default = "default_max_schemas")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_schemas: i32,
    /// How long the registry's answer that a schema does not exist (or cannot be used) is
    /// remembered before it is asked again (default `30s`); records with that schema are
    /// handled by `delivery.onExhausted` meanwhile.
    #[serde(default = "default_error_ttl")]
    pub error_ttl: Duration,
}

impl Default for SchemaCacheSpec {
    fn default() -> Self {
        Self {
            max_schemas: default_max_schemas(),
            error_ttl: default_error_ttl(),
        }
    }
}

/// The default `kafka.schemaRegistry.requestTimeout`.
pub fn default_registry_timeout() -> Duration {
    Duration::from_secs(10)
}
/// The default `kafka.schemaRegistry.cache.maxSchemas`.
pub fn default_max_schemas() -> i32 {
    1000
}
/// The default `kafka.schemaRegistry.cache.errorTtl`.
pub fn default_error_ttl() -> Duration {
    Duration::from_secs(30)
}
fn default_username_key() -> String {
    "username".into()
}
fn default_password_key() -> String {
    "password".into()
}
