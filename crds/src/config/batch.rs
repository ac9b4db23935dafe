//! The sidecar config's `delivery.batch`: several records in one request.
//!
//! Pure. Rendered from the spec by [`render_batch`], checked by [`problems`] (the same limits
//! the CRD's schema and CEL rules enforce, for a config written by hand).

use serde::{Deserialize, Serialize};

use super::{Format, SidecarConfig};
use crate::{Duration, v1alpha1::BatchSpec};

/// Batching as the sidecar runs it. `None` in the config: one record per request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchConfig {
    /// The most records in one request.
    pub max_records: u32,
    /// The most bytes of keys and values in one request (a larger record goes alone).
    pub max_bytes: u32,
    /// How long the first record of a batch waits for more.
    #[serde(default)]
    pub max_wait: Duration,
}

/// `delivery.batch` as the sidecar runs it.
pub fn render_batch(spec: Option<&BatchSpec>) -> Option<BatchConfig> {
    spec.map(|b| BatchConfig {
        max_records: u32::try_from(b.max_records).unwrap_or(1).max(1),
        max_bytes: u32::try_from(b.max_bytes).unwrap_or(1).max(1),
        max_wait: b.max_wait,
    })
}

/// What is wrong with the batch settings (the spec's schema refuses the same).
pub(super) fn problems(c: &SidecarConfig) -> Vec<String> {
    let mut p = Vec::new();
    let Some(b) = &c.delivery.batch else {
        return p;
    };
    if !(1..=1000).contains(&b.max_records) {
        p.push(format!(
            "delivery.batch.maxRecords ({}) must be between 1 and 1000",
            b.max_records
        ));
    }
    if let Some(window) = c.delivery.window()
        && b.max_records > window
    {
        p.push(format!(
            "delivery.batch.maxRecords ({}) must not be more than delivery.maxUncommitted ({window}): a batch is sent whole",
            b.max_records
        ));
    }
    if b.max_wait.as_std() > std::time::Duration::from_secs(10) {
        p.push("delivery.batch.maxWait must be at most 10s".into());
    }
    if c.endpoint.format != Format::Raw {
        p.push(
            "delivery.batch needs endpoint.format raw: a batch is one JSON array (docs/batch.md)"
                .into(),
        );
    }
    if c.endpoint.body_ack.is_some() {
        p.push("delivery.batch cannot be used with endpoint.bodyAck: a batch's reply has its own format (docs/batch.md)".into());
    }
    p
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::tests::resource;

    fn with_batch(batch: serde_json::Value) -> crate::v1alpha1::KafkaConsumerProxy {
        resource(json!({
            "kafka": { "bootstrapServers": "kafka:9092", "topics": ["orders"] },
            "endpoint": { "url": "http://app:8080/" },
            "delivery": { "batch": batch }
        }))
    }

    #[test]
    fn a_batch_renders_with_its_defaults_and_round_trips() {
        let c = SidecarConfig::render(&with_batch(json!({}))).expect("renders");
        let b = c.delivery.batch.clone().expect("batching on");
        assert_eq!(
            b,
            BatchConfig {
                max_records: 100,
                max_bytes: 1024 * 1024,
                max_wait: Duration::default(),
            }
        );
        let parsed = SidecarConfig::parse(&c.to_json_pretty()).expect("parses");
        assert_eq!(parsed.delivery.batch, Some(b));
        let none = SidecarConfig::render(&resource(json!({
            "kafka": { "bootstrapServers": "kafka:9092", "topics": ["orders"] },
            "endpoint": { "url": "http://app:8080/" }
        })))
        .expect("renders");
        assert_eq!(none.delivery.batch, None, "unset: one record per request");
    }

    #[test]
    fn a_hand_written_config_is_checked_like_the_resource() {
        let c = SidecarConfig::render(&with_batch(json!({"maxRecords": 10}))).expect("renders");
        let mut v: serde_json::Value = serde_json::from_str(&c.to_json_pretty()).expect("json");
        v["delivery"]["batch"]["maxRecords"] = json!(2000);
        v["delivery"]["maxUncommitted"] = json!(1500);
        v["delivery"]["batch"]["maxWait"] = json!("11s");
        v["endpoint"]["format"] = json!("cloudevents-binary");
        let err = SidecarConfig::parse(&v.to_string()).expect_err("refused");
        for expected in [
            "delivery.batch.maxRecords (2000) must be between 1 and 1000",
            "delivery.batch.maxRecords (2000) must not be more than delivery.maxUncommitted (1500)",
            "delivery.batch.maxWait must be at most 10s",
            "delivery.batch needs endpoint.format raw",
        ] {
            assert!(err.to_string().contains(expected), "{expected:?} in {err}");
        }
    }
}
