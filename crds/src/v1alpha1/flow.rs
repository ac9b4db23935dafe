//! How hard the sidecar pushes the app: `delivery.concurrency` (a fixed or an adaptive number of
//! requests in flight) and `delivery.outage` (telling an endpoint that fails every record from
//! records that fail).
//!
//! Pure types. Rustdoc ships in the CRD and `kubectl explain`; the rules the API server can
//! enforce are here as schema ranges and CEL rules (each within the cost budget checked by
//! `crds/tests/cel_budget.rs`).

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// How the number of requests in flight is chosen.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Concurrency {
    /// Always up to `maxInFlight`.
    #[default]
    Fixed,
    /// A limit between 1 and `maxInFlight` that grows by one while the app's response time
    /// stays near its baseline and requests use the whole limit, and shrinks by 10 % when the
    /// response time rises or the app answers 429 or 503 or does not answer in time (AIMD, as
    /// in Vector's adaptive request concurrency). Shown as `kcp_concurrency_limit`.
    Adaptive,
}

/// Telling an endpoint outage from bad records.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.window) || duration(self.window) >= duration('1s')")
    .message("delivery.outage.window must be at least 1s"))]
#[x_kube(validation = Rule::new(
    "!has(self.maxProbeInterval) || duration(self.maxProbeInterval) >= duration('1s')"
).message("delivery.outage.maxProbeInterval must be at least 1s"))]
#[serde(rename_all = "camelCase")]
pub struct OutageSpec {
    /// Whether the sidecar watches for outages (default true). When off, every failed attempt
    /// counts against its record, as a record's own failure. With `onExhausted: block` it is
    /// off whatever this says: nothing is ever given up, so there is no flood to stop.
    #[serde(default = "default_true")]
    pub detect: bool,
    /// How many distinct records must fail the same way (5xx, 429, 404, 401/403, 3xx, a
    /// timeout or a broken connection) within `window`, with no success since, for the
    /// endpoint to be out (default 5). While it is out no attempt is counted, nothing is
    /// dead-lettered, no record is taken from Kafka, and one request at a time probes it (after
    /// 1s, doubling up to `maxProbeInterval`) until it answers.
    #[serde(default = "default_outage_records")]
    #[schemars(range(min = 2, max = 1000))]
    pub records: i32,
    /// How long failures are remembered (default `30s`). Also the longest a record that failed
    /// that way waits for the endpoint to be seen working before it is given up on its own
    /// (dead-lettered or skipped): with other records succeeding meanwhile, it goes at once.
    #[serde(default = "default_outage_window")]
    pub window: Duration,
    /// Longest wait between two probes of an endpoint that is out (default `30s`).
    #[serde(default = "default_max_probe_interval")]
    pub max_probe_interval: Duration,
}

impl Default for OutageSpec {
    fn default() -> Self {
        Self {
            detect: true,
            records: default_outage_records(),
            window: default_outage_window(),
            max_probe_interval: default_max_probe_interval(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_outage_records() -> i32 {
    5
}
fn default_outage_window() -> Duration {
    Duration::from_secs(30)
}
fn default_max_probe_interval() -> Duration {
    Duration::from_secs(30)
}
