//! The sidecar config's flow parts: how many requests may be in flight (`concurrency`) and the
//! endpoint outage detector (`outage`).
//!
//! Pure. Rendered from the spec by [`render_outage`], checked by [`problems`]. A config without
//! them (written by an older operator) gets the resource's defaults.

use serde::{Deserialize, Serialize};

use super::SidecarConfig;
use crate::{Duration, v1alpha1::OutageSpec};

pub use crate::v1alpha1::Concurrency;

/// The outage detector as the sidecar runs it. `None` in the config: detection off.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutageConfig {
    /// Distinct records failing alike within `window` that make an outage.
    pub records: u32,
    pub window: Duration,
    pub max_probe_interval: Duration,
}

impl Default for OutageConfig {
    fn default() -> Self {
        render_outage(&OutageSpec::default()).expect("invariant: detection is on by default")
    }
}

/// The default of `delivery.outage` in a config that does not say.
pub(super) fn default_outage() -> Option<OutageConfig> {
    Some(OutageConfig::default())
}

/// `delivery.outage` as the sidecar runs it; `None` when detection is off.
pub fn render_outage(spec: &OutageSpec) -> Option<OutageConfig> {
    spec.detect.then(|| OutageConfig {
        records: u32::try_from(spec.records).unwrap_or(0),
        window: spec.window,
        max_probe_interval: spec.max_probe_interval,
    })
}

/// What is wrong with the flow settings (the spec's schema refuses the same).
pub(super) fn problems(c: &SidecarConfig) -> Vec<String> {
    let mut p = Vec::new();
    if let Some(o) = &c.delivery.outage {
        if o.records < 2 {
            p.push(format!(
                "delivery.outage.records ({}) must be at least 2: one record failing is that record's fault",
                o.records
            ));
        }
        if o.window.as_std() < std::time::Duration::from_secs(1) {
            p.push("delivery.outage.window must be at least 1s".into());
        }
        if o.max_probe_interval.as_std() < std::time::Duration::from_secs(1) {
            p.push("delivery.outage.maxProbeInterval must be at least 1s".into());
        }
    }
    p
}
