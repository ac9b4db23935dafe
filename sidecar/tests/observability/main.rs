//! Admin endpoint, metrics, readiness gating and the demo, against librdkafka's mock cluster and
//! in-process apps. Each test asserts what an operator would see (probe answers, metric values,
//! nothing lost); none asserts a duration.

mod demo;
mod gating;
mod metrics;
mod probes;
mod support;
