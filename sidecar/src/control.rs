//! The control file: pausing and resuming the sidecar by request, keeping its partitions.
//!
//! The operator writes `control.json` into the sidecar's ConfigMap (`<name>-kcp-config`) next to
//! `config.json`, mounted as a directory at `/etc/kcp/config` and left out of the config hash
//! (so a change does not roll the pods); it holds `{"paused": true}` or `{"paused": false}`
//! (`spec.paused`). Fields this version
//! does not know are ignored (later versions may add some) and a missing `paused` is `false`.
//! The sidecar is given the file's path by `--control` ([`CONTROL_PATH_ENV`]); without one it is
//! never paused. The kubelet replaces the file in place when the ConfigMap changes (an atomic
//! swap of the `..data` symlink), without restarting the pod, so the file is read once at start,
//! before any record is taken, then every [`READ_INTERVAL`] until the pipeline shuts down.
//!
//! What a pause does: no more records are taken from Kafka. The poll loop pauses fetching of
//! every assigned partition, as it does while the app does not answer (`gate.rs`,
//! `pipeline/poll.rs`), within its idle wait (100 ms) of the read; resuming takes as long.
//! What it does not do: leave the group. The consumer keeps polling and heartbeating, so the
//! assignment is kept and no rebalance happens however long the pause lasts. Records already
//! taken are delivered and committed as usual. Lag grows meanwhile and is still reported by the
//! operator, which reads it from Kafka (`status.lag`, `kcp_operator_resource_lag_*`); the
//! sidecar's own `kcp_partition_lag_records` (and `lag` in `/status`) keeps its last value, as
//! librdkafka learns a partition's end from fetch responses and a paused partition is not
//! fetched (librdkafka 2.12, seen against its mock cluster). A pause is not the app being
//! unready: the sidecar stays Ready and Live, it is not counted as an app closure, and the
//! replica never leaves the group for it (`endpoint.unreadyTimeout`). `paused` in `/status` and
//! `kcp_paused` show it.
//!
//! A file missing at start means not paused (said once, at INFO). A file that cannot be read or
//! parsed keeps the current state: WARN once per distinct problem, never a flood, never a crash.
//! Each change is logged at INFO. [`parse`] and [`Watch::judge`] are pure; [`Watch`] is the
//! only code that reads the file, and [`Gate::set_paused`] the only effect.

use std::{io, path::PathBuf, time::Duration};

use serde::Deserialize;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::gate::Gate;

/// Environment variable naming the control file (the sidecar's `--control` flag), set by the
/// operator.
pub use kcp_crds::config::CONTROL_PATH_ENV;

/// How often the control file is read again.
pub const READ_INTERVAL: Duration = Duration::from_secs(2);

/// What the control file asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Control {
    /// Take no records (the partitions stay assigned).
    pub paused: bool,
}

/// Parses the control file's text: a JSON object; unknown fields are ignored.
pub fn parse(text: &str) -> Result<Control, String> {
    let problem =
        |e: serde_json::Error| format!("not a control document like {{\"paused\": true}}: {e}");
    // An object first: serde would take `[true]` for a struct too.
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(problem)?;
    serde_json::from_value(serde_json::Value::Object(object)).map_err(problem)
}

/// What one read of the control file comes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Set the pause to this (only a change is logged).
    Apply(bool),
    /// No file, and there never was one: not paused; said once.
    Absent,
    /// The file cannot be read or parsed: keep the current state, and say why.
    Problem(String),
    /// Nothing to do or say (the same problem again, the file still absent).
    Keep,
}

/// Reads the control file and remembers what it already said about it.
#[derive(Debug)]
pub struct Watch {
    path: PathBuf,
    /// A read succeeded: from then on a missing file is a problem.
    seen: bool,
    /// [`Step::Absent`] was said.
    absent_said: bool,
    /// The problem last said, so that the same one is said once.
    problem: Option<String>,
}

impl Watch {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            seen: false,
            absent_said: false,
            problem: None,
        }
    }

    /// Pure: what a read's result means, given what was said before.
    pub fn judge(&mut self, read: io::Result<String>) -> Step {
        let parsed = match read {
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.seen => {
                self.problem = None;
                return if std::mem::replace(&mut self.absent_said, true) {
                    Step::Keep
                } else {
                    Step::Absent
                };
            }
            Err(e) => Err(format!("cannot be read: {e}")),
            Ok(text) => parse(&text),
        };
        match parsed {
            Ok(control) => {
                self.seen = true;
                self.problem = None;
                Step::Apply(control.paused)
            }
            Err(problem) if self.problem.as_ref() == Some(&problem) => Step::Keep,
            Err(problem) => {
                self.problem = Some(problem.clone());
                Step::Problem(problem)
            }
        }
    }

    /// Reads the file now and applies it to `gate`.
    pub async fn read_now(&mut self, gate: &Gate) {
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(path))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
        let step = self.judge(read);
        let path = self.path.display();
        match step {
            Step::Apply(paused) if gate.set_paused(paused) => {
                if paused {
                    info!(%path, "Paused by request; taking no records, keeping the partitions");
                } else {
                    info!(%path, "Resumed by request");
                }
            }
            Step::Apply(_) | Step::Keep => {}
            Step::Absent => info!(%path, "No control file; not paused"),
            Step::Problem(problem) => warn!(%path, %problem, paused = gate.paused(),
                "Control file unusable; keeping the current state (said once per problem)"),
        }
    }

    /// Reads the file every [`READ_INTERVAL`] (the first read is [`Watch::read_now`]'s) until
    /// `stop` fires.
    pub async fn run(mut self, gate: &Gate, stop: CancellationToken) {
        let mut every = tokio::time::interval_at(Instant::now() + READ_INTERVAL, READ_INTERVAL);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => self.read_now(gate).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_paused_and_ignores_what_it_does_not_know() {
        assert_eq!(parse(r#"{"paused": true}"#), Ok(Control { paused: true }));
        assert_eq!(parse(r#"{"paused": false}"#), Ok(Control { paused: false }));
        assert_eq!(
            parse(r#"{"paused": true, "until": "2030-01-01T00:00:00Z", "by": {"user": "x"}}"#),
            Ok(Control { paused: true }),
            "unknown fields are ignored"
        );
        assert_eq!(parse("{}"), Ok(Control { paused: false }));
    }

    #[test]
    fn parse_refuses_garbage_and_says_what_it_expected() {
        for text in ["paused", "", "null", "[true]", r#"{"paused": "yes"}"#] {
            let e = parse(text).expect_err(text);
            assert!(
                e.starts_with(r#"not a control document like {"paused": true}: "#),
                "{text:?}: {e}"
            );
        }
        assert!(parse(r#"{"paused": "yes"}"#).is_err_and(|e| e.contains("expected a boolean")));
    }

    fn missing() -> io::Result<String> {
        Err(io::ErrorKind::NotFound.into())
    }

    #[test]
    fn a_file_missing_at_start_is_not_paused_and_said_once() {
        let mut watch = Watch::new("/etc/kcp/control/control.json");
        assert_eq!(watch.judge(missing()), Step::Absent);
        assert_eq!(watch.judge(missing()), Step::Keep);
        assert_eq!(
            watch.judge(Ok(r#"{"paused": true}"#.into())),
            Step::Apply(true)
        );
    }

    #[test]
    fn a_problem_keeps_the_state_and_is_said_once_per_distinct_problem() {
        let mut watch = Watch::new("control.json");
        assert_eq!(
            watch.judge(Ok(r#"{"paused": true}"#.into())),
            Step::Apply(true)
        );
        let garbage = || Ok("{not json".to_owned());
        assert!(matches!(watch.judge(garbage()), Step::Problem(_)));
        assert_eq!(watch.judge(garbage()), Step::Keep, "no flood");
        let Step::Problem(gone) = watch.judge(missing()) else {
            panic!("a file that was there and is gone is a new problem");
        };
        assert!(gone.starts_with("cannot be read: "), "{gone}");
        assert_eq!(watch.judge(missing()), Step::Keep);
        assert_eq!(
            watch.judge(Ok(r#"{"paused": false}"#.into())),
            Step::Apply(false)
        );
        assert!(
            matches!(watch.judge(garbage()), Step::Problem(_)),
            "said again once it was fixed in between"
        );
    }
}
