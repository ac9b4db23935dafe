//! The sidecar config's record-format parts: the schema registry it fetches schemas from, and
//! the CloudEvents attributes it sets. The endpoint's `format` and `decode` are the spec's own
//! enums ([`Format`], [`Decode`]).
//!
//! Pure. Rendered from the spec by [`render_registry`] and [`render_cloud_events`] (every default
//! resolved), checked by [`problems`]. Registry credentials are never here: the username and
//! password arrive as [`SCHEMA_REGISTRY_USERNAME_ENV`] / [`SCHEMA_REGISTRY_PASSWORD_ENV`] (from a
//! Secret by `secretKeyRef`), TLS material as files under [`REGISTRY_TLS_MOUNT_DIR`].

use serde::{Deserialize, Serialize};

use super::{SidecarConfig, check_http_url};
use crate::{
    Duration,
    v1alpha1::{DEFAULT_CLOUDEVENTS_TYPE, EndpointSpec, SchemaRegistrySpec},
};

pub use crate::v1alpha1::{Decode, Format};

/// Environment variable carrying the registry's basic-auth username (from a Secret).
pub const SCHEMA_REGISTRY_USERNAME_ENV: &str = "KCP_SCHEMA_REGISTRY_USERNAME";
/// Environment variable carrying the registry's basic-auth password (from a Secret).
pub const SCHEMA_REGISTRY_PASSWORD_ENV: &str = "KCP_SCHEMA_REGISTRY_PASSWORD";
/// Where the registry's TLS material is mounted in the sidecar container.
pub const REGISTRY_TLS_MOUNT_DIR: &str = "/etc/kcp/registry-tls";

/// The schema registry as the sidecar uses it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// Base URL; schemas are read from `<url>/schemas/ids/<id>`.
    pub url: String,
    /// Send HTTP basic authentication, with the credentials from the environment.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub basic_auth: bool,
    /// PEM CA file trusted instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// PEM client certificate file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// PEM client key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    pub request_timeout: Duration,
    /// Schemas kept in the cache.
    pub max_schemas: u32,
    /// How long "no such schema" (or "unusable schema") is remembered.
    pub error_ttl: Duration,
}

/// The CloudEvents attributes the resource sets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudEventsConfig {
    /// The events' `type`.
    #[serde(rename = "type", default = "default_type")]
    pub type_: String,
    /// The events' `source`; `None`: `kafka://<first bootstrap server>/<topic>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Default for CloudEventsConfig {
    fn default() -> Self {
        Self {
            type_: default_type(),
            source: None,
        }
    }
}

fn default_type() -> String {
    DEFAULT_CLOUDEVENTS_TYPE.to_owned()
}

/// The registry config for `kafka.schemaRegistry`. Pure.
pub fn render_registry(spec: Option<&SchemaRegistrySpec>) -> Option<SchemaRegistryConfig> {
    let r = spec?;
    let file = |key: &Option<String>| {
        key.as_ref()
            .map(|k| format!("{REGISTRY_TLS_MOUNT_DIR}/{k}"))
    };
    let tls = r.tls.as_ref();
    Some(SchemaRegistryConfig {
        url: r.url.clone(),
        basic_auth: r.basic_auth.is_some(),
        ca_file: tls.and_then(|t| file(&t.ca_key)),
        cert_file: tls.and_then(|t| file(&t.cert_key)),
        key_file: tls.and_then(|t| file(&t.key_key)),
        request_timeout: r.request_timeout,
        max_schemas: u32::try_from(r.cache.max_schemas).unwrap_or(1).max(1),
        error_ttl: r.cache.error_ttl,
    })
}

/// The CloudEvents attributes for a `cloudevents-*` format; `None` for `raw`. Pure.
pub fn render_cloud_events(endpoint: &EndpointSpec) -> Option<CloudEventsConfig> {
    if endpoint.format.is_raw() {
        return None;
    }
    let spec = endpoint.cloud_events.clone().unwrap_or_default();
    Some(CloudEventsConfig {
        type_: spec.type_.unwrap_or_else(default_type),
        source: spec.source,
    })
}

/// What the types alone cannot check about the record-format settings.
pub(super) fn problems(c: &SidecarConfig) -> Vec<String> {
    let mut p = Vec::new();
    let e = &c.endpoint;
    if e.decode.is_some() && c.kafka.schema_registry.is_none() {
        p.push(
            "endpoint.decode needs kafka.schemaRegistry: the records' schemas are fetched from it"
                .into(),
        );
    }
    if e.cloud_events.is_some() && e.format.is_raw() {
        p.push(
            "endpoint.cloudEvents sets CloudEvents attributes, but endpoint.format is raw".into(),
        );
    }
    if let Some(ce) = &e.cloud_events {
        let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| (b' '..=b'~').contains(&b));
        if !printable(&ce.type_) || ce.type_.trim() != ce.type_ {
            p.push(format!(
                "endpoint.cloudEvents.type {:?} must be printable ASCII without leading or trailing spaces",
                ce.type_
            ));
        }
        if let Some(source) = &ce.source
            && (source.is_empty() || !source.bytes().all(|b| b.is_ascii_graphic()))
        {
            p.push(format!(
                "endpoint.cloudEvents.source {source:?} must be a URI reference: printable ASCII without spaces"
            ));
        }
    }
    if let Some(r) = &c.kafka.schema_registry {
        if let Err(why) = check_http_url(&r.url) {
            p.push(format!("kafka.schemaRegistry.url: {why}"));
        }
        let tls_files = r.ca_file.is_some() || r.cert_file.is_some();
        if tls_files && !r.url.starts_with("https://") {
            p.push("kafka.schemaRegistry: caFile/certFile need an https:// url".into());
        }
        if r.cert_file.is_some() != r.key_file.is_some() {
            p.push("kafka.schemaRegistry: certFile and keyFile go together (a client certificate needs its key)".into());
        }
        if r.request_timeout.as_std().is_zero() {
            p.push("kafka.schemaRegistry.requestTimeout must be longer than 0s".into());
        }
        if r.max_schemas == 0 {
            p.push("kafka.schemaRegistry.maxSchemas must be at least 1".into());
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{
        config::tests::{assert_refused, resource},
        v1alpha1::KafkaConsumerProxy,
    };

    fn with_formats() -> KafkaConsumerProxy {
        resource(json!({
            "kafka": {
                "bootstrapServers": "kafka:9092", "topics": ["orders"],
                "schemaRegistry": {
                    "url": "https://registry.kafka.svc:8081/base",
                    "basicAuth": { "secretName": "registry" },
                    "tls": { "secretName": "registry-tls", "caKey": "ca.crt", "certKey": "tls.crt", "keyKey": "tls.key" },
                    "cache": { "maxSchemas": 50 }
                }
            },
            "endpoint": {
                "url": "http://app:8080/events",
                "format": "cloudevents-structured",
                "cloudEvents": { "source": "/shop/orders" },
                "decode": "auto"
            }
        }))
    }

    #[test]
    fn render_resolves_the_format_defaults_and_names_no_secret() {
        let c = SidecarConfig::render(&with_formats()).expect("renders");
        assert_eq!(c.endpoint.format, Format::CloudeventsStructured);
        assert_eq!(c.endpoint.decode, Some(Decode::Auto));
        let ce = c
            .endpoint
            .cloud_events
            .as_ref()
            .expect("cloudEvents rendered");
        assert_eq!(ce.type_, DEFAULT_CLOUDEVENTS_TYPE);
        assert_eq!(ce.source.as_deref(), Some("/shop/orders"));
        let r = c.kafka.schema_registry.as_ref().expect("registry rendered");
        assert_eq!(r.url, "https://registry.kafka.svc:8081/base");
        assert!(r.basic_auth);
        assert_eq!(r.ca_file.as_deref(), Some("/etc/kcp/registry-tls/ca.crt"));
        assert_eq!(r.key_file.as_deref(), Some("/etc/kcp/registry-tls/tls.key"));
        assert_eq!(r.request_timeout, Duration::from_secs(10));
        assert_eq!(r.max_schemas, 50);
        assert_eq!(r.error_ttl, Duration::from_secs(30));
        assert_eq!(c.problems(), Vec::<String>::new());
        let text = c.to_json_pretty();
        assert!(
            !text.contains("registry-tls\""),
            "no Secret name in the config: {text}"
        );
        assert!(
            !text.contains("\"registry\""),
            "no Secret name in the config: {text}"
        );
    }

    #[test]
    fn the_format_fields_round_trip_through_json() {
        let c = SidecarConfig::render(&with_formats()).expect("renders");
        assert_eq!(SidecarConfig::parse(&c.to_json_pretty()), Ok(c));
    }

    #[test]
    fn raw_without_a_registry_renders_nothing_new() {
        let kcp = resource(json!({
            "kafka": { "bootstrapServers": "kafka:9092", "topics": ["orders"] },
            "endpoint": { "url": "http://app:8080/events" }
        }));
        let c = SidecarConfig::render(&kcp).expect("renders");
        let v = serde_json::to_value(&c).expect("serializes");
        for absent in ["format", "decode", "cloudEvents"] {
            assert!(v["endpoint"].get(absent).is_none(), "{absent} in {v}");
        }
        assert!(v["kafka"].get("schemaRegistry").is_none(), "{v}");
    }

    #[test]
    fn unusable_format_settings_are_all_reported() {
        let mut v = serde_json::to_value(SidecarConfig::render(&with_formats()).expect("renders"))
            .expect("serializes");
        v["kafka"]["schemaRegistry"]["url"] = json!("http://registry:8081");
        v["kafka"]["schemaRegistry"]["keyFile"] = serde_json::Value::Null;
        v["kafka"]["schemaRegistry"]["requestTimeout"] = json!("0s");
        v["kafka"]["schemaRegistry"]["maxSchemas"] = json!(0);
        v["endpoint"]["cloudEvents"]["type"] = json!(" spaced ");
        v["endpoint"]["cloudEvents"]["source"] = json!("not a uri");
        assert_refused(
            &v,
            &[
                "caFile/certFile need an https:// url",
                "certFile and keyFile go together",
                "requestTimeout must be longer than 0s",
                "maxSchemas must be at least 1",
                "endpoint.cloudEvents.type \" spaced \"",
                "endpoint.cloudEvents.source \"not a uri\"",
            ],
        );

        let mut v = serde_json::to_value(SidecarConfig::render(&with_formats()).expect("renders"))
            .expect("serializes");
        v["kafka"]
            .as_object_mut()
            .expect("object")
            .remove("schemaRegistry");
        v["endpoint"]["format"] = json!("raw");
        assert_refused(
            &v,
            &[
                "endpoint.decode needs kafka.schemaRegistry",
                "but endpoint.format is raw",
            ],
        );
    }
}
