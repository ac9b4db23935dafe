//! Operations: `KafkaConsumerProxyOperation` objects (rewind, fast-forward, skip, redrive),
//! each run once by the operator. Why operations are objects of their own, and how each runs
//! safely: ARCHITECTURE.md "Operations".
//!
//! - `controller`: the reconcile of one operation (orchestration and status);
//! - `offsets_flow` + `seek`: rewind, fast-forward, skip (the pods stop; the operator changes
//!   the offsets as the group's only member);
//! - `redrive_flow` + `redrive`: dead letters produced back to their source partitions;
//! - `quiesce`: the hold annotation that stops a proxy's pods during an offset change.

pub mod controller;
mod offsets_flow;
pub mod quiesce;
pub mod redrive;
mod redrive_flow;
pub mod seek;
