//! Several records in one HTTP request: `delivery.batch`.
//!
//! Pure types. Rustdoc ships in the CRD and `kubectl explain`. The wire format of a batch and
//! of its reply is the sidecar's (`sidecar/src/forward/batch.rs`) and docs/batch.md's.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// Batch delivery: one request carries up to `maxRecords` records of one lane (a partition in
/// `partition` order, one key of a partition in `key` order, any records of a partition in
/// `unordered` order) as a JSON array; the reply may give each record its own result. The
/// format and the reply contract: docs/batch.md.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.maxWait) || duration(self.maxWait) <= duration('10s')")
    .message("delivery.batch.maxWait must be at most 10s: records wait for it before they are sent"))]
#[serde(rename_all = "camelCase")]
pub struct BatchSpec {
    /// The most records in one request (default 100). At most `delivery.maxUncommitted`.
    #[serde(default = "default_max_records")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_records: i32,
    /// The most bytes of record keys and values in one request (default 1048576, 1 MiB); a
    /// record larger than this is sent alone, in a batch of one.
    #[serde(default = "default_max_bytes")]
    #[schemars(range(min = 1024, max = 67108864))]
    pub max_bytes: i32,
    /// How long the first record of a batch waits for more before the batch is sent (default
    /// `0s`: a batch takes what is waiting and goes). A full batch goes at once.
    #[serde(default)]
    pub max_wait: Duration,
}

impl Default for BatchSpec {
    fn default() -> Self {
        Self {
            max_records: default_max_records(),
            max_bytes: default_max_bytes(),
            max_wait: Duration::default(),
        }
    }
}

/// `delivery.batch.maxRecords` when unset.
pub const DEFAULT_BATCH_RECORDS: i32 = 100;

fn default_max_records() -> i32 {
    DEFAULT_BATCH_RECORDS
}
fn default_max_bytes() -> i32 {
    1024 * 1024
}
