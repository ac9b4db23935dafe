//! The kafka-consumer-proxy operator: turns each `KafkaConsumerProxy` into a ConfigMap (the
//! rendered sidecar config) and a Deployment (the app's pods plus the sidecar), and reports
//! rollout state, consumer lag and dead-letter counts in the resource's status.
//!
//! The library holds all logic; `main.rs` only parses flags, starts telemetry and calls
//! [`run::run`]. Pure stages (`reconcile::validate`, `reconcile::build`, `reconcile::status`,
//! `reconcile::drift`) never touch the network; every write to the API server goes through
//! `reconcile::apply` (plus the Lease in `leader`), every Kafka call through `lag`. The API
//! calls the operator makes are listed, once, in [`api_calls`].

pub mod admin;
pub mod api_calls;
pub mod cli;
pub mod error;
pub mod lag;
pub mod leader;
pub mod metrics;
pub mod operations;
pub mod reconcile;
pub mod run;
pub mod telemetry;

pub use error::{Error, ErrorKind};

/// The one field manager for every server-side apply, and the `managed-by` label value.
pub const FIELD_MANAGER: &str = "kafka-consumer-proxy-operator";

/// Now, truncated to whole seconds: what the API server keeps of a `Time`, so a timestamp we
/// write compares equal to the one we read back.
pub fn now_seconds() -> k8s_openapi::jiff::Timestamp {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now)
}
