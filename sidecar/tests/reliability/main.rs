//! Reliability suite: production failures injected against the real `kcp-sidecar` binary, with
//! the broker in its own process (`kcp-mock-kafka`, or `KAFKA_BOOTSTRAP_SERVERS`), a recording
//! HTTP sink and a producer-side ledger as the independent record of what must arrive.
//!
//! Short mode by default (a few episodes per fault class); `KCP_RELIABILITY_LONG=1` for the long
//! mode; `KCP_RELIABILITY_SEED=<n>` replays a randomized run. See `docs/reliability.md`.

mod bad_input;
mod blocked_key;
mod broker_faults;
mod crash_loop;
mod drain_hook;
mod endpoint;
mod header_names;
mod kill;
mod outage;
mod rebalance;
mod retention;
mod rollout;
mod sigterm;
mod support;
mod unready;
