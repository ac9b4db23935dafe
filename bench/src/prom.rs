//! Reads counters from Prometheus / OpenMetrics text, as served on the operator's `/metrics`.
//!
//! Pure: text in, numbers out. Only what the operator scenario needs: the samples of one
//! counter (summed over their labels, or listed by label set) and the body of a plain HTTP/1.x
//! response.

use std::collections::BTreeMap;

/// Why a metrics text could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromError {
    /// The family has neither a `# TYPE` line nor a sample: the process does not export it.
    Missing(String),
    /// A sample line of the family that does not parse.
    Malformed { line: usize, text: String },
}

impl std::fmt::Display for PromError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(name) => write!(f, "metric {name} is not exported"),
            Self::Malformed { line, text } => {
                write!(f, "malformed sample on line {line}: {text:?}")
            }
        }
    }
}

impl std::error::Error for PromError {}

/// The family name a `# TYPE` line declares for the sample name `name`: OpenMetrics declares a
/// counter `foo` and writes samples `foo_total`; the older text format declares `foo_total`.
fn declared(text: &str, name: &str) -> bool {
    let base = name.strip_suffix("_total").unwrap_or(name);
    text.lines().any(|l| {
        let mut w = l.split_whitespace();
        w.next() == Some("#")
            && w.next() == Some("TYPE")
            && matches!(w.next(), Some(n) if n == name || n == base)
    })
}

/// Splits a sample line `name{labels} value [timestamp]` into its label set (without braces,
/// empty when none) and value. `None` when the line is not a sample of `name`; `Some(Err)`
/// when it is but does not parse.
fn sample<'a>(line: &'a str, name: &str) -> Option<Result<(&'a str, f64), ()>> {
    let rest = line.strip_prefix(name)?;
    let (labels, after) = if let Some(inner) = rest.strip_prefix('{') {
        // Label values are quoted and may hold `}` and escaped quotes.
        let mut in_quotes = false;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in inner.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_quotes => escaped = true,
                '"' => in_quotes = !in_quotes,
                '}' if !in_quotes => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        match end {
            Some(i) => (&inner[..i], &inner[i + 1..]),
            None => return Some(Err(())),
        }
    } else if rest.starts_with([' ', '\t']) {
        ("", rest)
    } else {
        // Another metric whose name starts with `name` (`foo_total_created`, `foo_totalx`).
        return None;
    };
    let value = after.split_whitespace().next().and_then(|v| match v {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        v => v.parse::<f64>().ok(),
    });
    Some(value.ok_or(()).map(|v| (labels, v)))
}

/// Every sample of the counter `name` (e.g. `kcp_operator_api_writes_total`), by label set
/// (the text between the braces, `""` when none). A family declared but without samples (no
/// label set seen yet) is empty; an undeclared one is [`PromError::Missing`]; any sample of it
/// that does not parse is [`PromError::Malformed`] rather than being skipped, so a sum is never
/// quietly short.
pub fn counter_samples(text: &str, name: &str) -> Result<BTreeMap<String, f64>, PromError> {
    let mut out = BTreeMap::new();
    let mut seen = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with('#') {
            continue;
        }
        match sample(line, name) {
            None => {}
            Some(Ok((labels, v))) => {
                seen = true;
                *out.entry(labels.to_owned()).or_insert(0.0) += v;
            }
            Some(Err(())) => {
                return Err(PromError::Malformed {
                    line: i + 1,
                    text: line.to_owned(),
                });
            }
        }
    }
    if !seen && !declared(text, name) {
        return Err(PromError::Missing(name.to_owned()));
    }
    Ok(out)
}

/// The counter `name` summed over all its label sets.
pub fn counter_sum(text: &str, name: &str) -> Result<f64, PromError> {
    Ok(counter_samples(text, name)?.values().sum())
}

/// The body of an HTTP/1.x response read to its end, when its status is 200.
pub fn ok_body(response: &str) -> Result<&str, String> {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| "no end of the response head".to_owned())?;
    let status = head.lines().next().unwrap_or_default();
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(body),
        _ => Err(format!("answered {status:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What prometheus-client 0.24 serves for the operator's registry (OpenMetrics).
    const OPERATOR: &str = "\
# HELP kcp_operator_reconciles Reconciles started.
# TYPE kcp_operator_reconciles counter
kcp_operator_reconciles_total 214
# HELP kcp_operator_api_writes Writes sent to the Kubernetes API server by reconciles, by resource.
# TYPE kcp_operator_api_writes counter
kcp_operator_api_writes_total{resource=\"configmaps\"} 100
kcp_operator_api_writes_total{resource=\"deployments\"} 100
kcp_operator_api_writes_total{resource=\"kafkaconsumerproxies/status\"} 212
kcp_operator_api_writes_total{resource=\"events\"} 100
# HELP kcp_operator_reconcile_duration_seconds Duration of one reconcile.
# TYPE kcp_operator_reconcile_duration_seconds histogram
# UNIT kcp_operator_reconcile_duration_seconds seconds
kcp_operator_reconcile_duration_seconds_sum 12.5
kcp_operator_reconcile_duration_seconds_count 213
kcp_operator_reconcile_duration_seconds_bucket{le=\"+Inf\"} 213
# HELP kcp_operator_lease_writes Writes to the leader-election Lease.
# TYPE kcp_operator_lease_writes counter
kcp_operator_lease_writes_total 0
# EOF
";

    #[test]
    fn sums_a_counter_family_over_its_labels() {
        assert_eq!(
            counter_sum(OPERATOR, "kcp_operator_api_writes_total"),
            Ok(512.0)
        );
        assert_eq!(
            counter_sum(OPERATOR, "kcp_operator_reconciles_total"),
            Ok(214.0)
        );
        let by = counter_samples(OPERATOR, "kcp_operator_api_writes_total").expect("parses");
        assert_eq!(by.get("resource=\"events\""), Some(&100.0));
        assert_eq!(by.len(), 4);
        // A histogram's count is read the same way (no `_total`, no labels).
        assert_eq!(
            counter_sum(OPERATOR, "kcp_operator_reconcile_duration_seconds_count"),
            Ok(213.0)
        );
    }

    #[test]
    fn a_declared_family_without_samples_is_zero_and_an_unknown_one_is_missing() {
        let text =
            "# HELP kcp_operator_api_writes x\n# TYPE kcp_operator_api_writes counter\n# EOF\n";
        assert_eq!(counter_sum(text, "kcp_operator_api_writes_total"), Ok(0.0));
        assert_eq!(
            counter_sum(OPERATOR, "kcp_operator_nope_total"),
            Err(PromError::Missing("kcp_operator_nope_total".into()))
        );
    }

    #[test]
    fn names_that_only_share_a_prefix_are_not_counted() {
        let text = "# TYPE foo counter\nfoo_total 1\nfoo_total_created 1700000000\nfoo_totally{a=\"b\"} 5\n";
        assert_eq!(counter_sum(text, "foo_total"), Ok(1.0));
    }

    #[test]
    fn label_values_may_hold_braces_and_quotes_and_timestamps_are_ignored() {
        let text =
            "foo_total{path=\"/a}b\",q=\"x\\\"}\"} 2 1700000000\nfoo_total{path=\"c\"} 3.5\n";
        let by = counter_samples(text, "foo_total").expect("parses");
        assert_eq!(by.get("path=\"/a}b\",q=\"x\\\"}\""), Some(&2.0));
        assert_eq!(counter_sum(text, "foo_total"), Ok(5.5));
    }

    #[test]
    fn a_malformed_sample_of_the_family_is_an_error_not_a_short_sum() {
        for bad in [
            "foo_total{resource=\"a\"} 1\nfoo_total{resource=\"b\"} many\n",
            "foo_total{resource=\"a\" 1\n",
            "foo_total{resource=\"a\"}\n",
        ] {
            match counter_sum(bad, "foo_total") {
                Err(PromError::Malformed { text, .. }) => assert!(text.starts_with("foo_total")),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        // Malformed lines of other families do not matter.
        let text = "bar_total{ 1\n# TYPE foo counter\nfoo_total 4\ngarbage\n";
        assert_eq!(counter_sum(text, "foo_total"), Ok(4.0));
    }

    #[test]
    fn only_a_200_response_has_a_body() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nfoo_total 1\n";
        assert_eq!(ok_body(ok), Ok("foo_total 1\n"));
        let unavailable = "HTTP/1.1 503 Service Unavailable\r\n\r\nstarting";
        assert!(ok_body(unavailable).expect_err("503").contains("503"));
        assert!(ok_body("HTTP/1.1 200 OK\r\n").is_err());
    }
}
