//! The kafka-consumer-proxy sidecar: consumes Kafka records and delivers each one to an HTTP
//! endpoint, committing only what is finished.
//!
//! Stages, one module each: [`consumer`] (librdkafka setup and callbacks) → [`dispatch`]
//! (ordering lanes, buffer budgets) → [`deliver`] (per-record state machine) → [`forward`]
//! (HTTP, and the pure reply contract in [`forward::classify`]; record formats in
//! [`forward::cloudevents`] and [`decode`], with the schema registry client) → [`deadletter`] (producer) →
//! [`offsets`] (pure commit bookkeeping) → [`commit`] (the only code that commits). [`pipeline`]
//! wires them and is the one entry point: [`Pipeline`] / [`run`]. [`stats`] is the observability
//! handle; [`gate`] pauses consumption while the app does not answer, and [`control`] on request; [`admin`] serves probes,
//! [`metrics`] and status; [`telemetry`] sets up logs; [`unwind`] catches the panics that must not stop it; [`demo`] is the self-contained demo. The delivery
//! contract is written down in ARCHITECTURE.md ("The delivery contract").

pub mod admin;
pub mod commit;
pub mod concurrency;
pub mod consumer;
pub mod control;
pub mod deadletter;
pub mod decode;
pub mod deliver;
pub mod demo;
pub mod dispatch;
pub mod forward;
pub mod gate;
pub mod metrics;
pub mod offsets;
pub mod outage;
pub mod pipeline;
pub mod record;
pub mod reset;
pub mod retry;
pub mod serve;
pub mod shutdown;
pub mod stats;
pub mod telemetry;
pub mod unwind;

/// The commit-metadata codec lives in `kcp-crds`: the operator reads it back for the status.
pub use kcp_crds::progress;
pub use pipeline::{Pipeline, PipelineError, run};
pub use stats::{Stats, StatsSnapshot};
