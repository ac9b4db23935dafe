//! `kubectl kcp`: a kubectl plugin to operate KafkaConsumerProxy resources.
//!
//! It only creates and edits Kubernetes objects (`KafkaConsumerProxyOperation`s, the proxy's
//! `spec.paused`) and reads (the proxy, its operations, and for `dlq` the dead-letter topics);
//! the operator does the work. Pure stages: [`cli`] (flags), [`objects`] (flags to the exact
//! object or patch sent), [`render`] (text shown), [`dlq`] and [`when`]. The only effects:
//! [`kube`] (the API server) and [`kafka`] (reads of dead-letter topics), driven by [`run`].

pub mod cli;
pub mod dlq;
pub mod error;
pub mod kafka;
pub mod kube;
pub mod objects;
pub mod render;
pub mod run;
pub mod when;

pub use error::{Error, UsageError};
