//! Consume → forward → commit against librdkafka's mock cluster (or `KAFKA_BOOTSTRAP_SERVERS`)
//! and in-process recording HTTP apps. Each test asserts what a user would notice: records
//! delivered, order, committed offsets, dead-letter contents. No test asserts a duration.

mod arbitrary;
mod at_most_once;
mod batch;
mod binary;
mod dead_letter_producer;
mod exhausted;
mod failures;
mod faults;
mod formats;
mod handover;
mod headers;
mod lifecycle;
mod lost;
mod ordering;
mod outage;
mod pause;
mod reported;
mod retention;
mod shutdown;
mod stuck;
mod support;
mod tls;
mod unready;
mod window;
