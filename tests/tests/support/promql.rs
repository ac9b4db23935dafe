//! PromQL as Prometheus reads it, with `promql-parser` (GreptimeDB's port of Prometheus' own
//! grammar): an expression either parses or the test fails, and the metrics and labels it uses
//! come from its syntax tree, never from a pattern over its text.

use std::collections::BTreeSet;

use promql_parser::{
    label::{METRIC_NAME, MatchOp},
    parser::{self, Expr, VectorSelector},
    util::{ExprVisitor, walk_expr},
};

/// One series selector of an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub metric: String,
    /// `(label, value)` of each `label="value"` matcher.
    pub equal: Vec<(String, String)>,
    /// Every label a matcher names, whatever its operator.
    pub labels: BTreeSet<String>,
}

/// What an expression reads: its selectors, and the labels it groups or matches on
/// (`by`, `without`, `on`, `ignoring`, `group_left`, `group_right`).
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub selectors: Vec<Selector>,
    pub grouping: BTreeSet<String>,
}

impl Query {
    pub fn metrics(&self) -> BTreeSet<&str> {
        self.selectors.iter().map(|s| s.metric.as_str()).collect()
    }
}

/// Parses `expr`; an error is Prometheus' refusal, or a selector without a metric name.
pub fn parse(expr: &str) -> Result<Query, String> {
    let ast = parser::parse(expr).map_err(|e| format!("does not parse: {e}"))?;
    let mut visitor = Collect::default();
    walk_expr(&mut visitor, &ast)?;
    Ok(visitor.query)
}

/// A Grafana query as Prometheus receives it: Grafana replaces its interval variables (a
/// range must be a duration) before sending. Template variables inside label values (`"$name"`)
/// stay, as they are valid PromQL strings.
pub fn from_grafana(expr: &str) -> String {
    ["$__rate_interval", "$__interval", "$__range"]
        .iter()
        .fold(expr.to_owned(), |e, var| e.replace(var, "5m"))
}

#[derive(Default)]
struct Collect {
    query: Query,
}

impl Collect {
    fn selector(&mut self, vs: &VectorSelector) -> Result<(), String> {
        let mut equal = Vec::new();
        let mut labels = BTreeSet::new();
        let mut name = vs.name.clone();
        for m in &vs.matchers.matchers {
            if m.name == METRIC_NAME {
                match (&m.op, &name) {
                    (MatchOp::Equal, None) => name = Some(m.value.clone()),
                    (MatchOp::Equal, Some(n)) if *n == m.value => {}
                    _ => return Err(format!("{vs}: select a metric by its exact name")),
                }
                continue;
            }
            labels.insert(m.name.clone());
            if matches!(m.op, MatchOp::Equal) {
                equal.push((m.name.clone(), m.value.clone()));
            }
        }
        if !vs.matchers.or_matchers.is_empty() {
            return Err(format!(
                "{vs}: `or` inside a selector is not supported here"
            ));
        }
        let metric = name.ok_or_else(|| format!("{vs}: a selector without a metric name"))?;
        self.query.selectors.push(Selector {
            metric,
            equal,
            labels,
        });
        Ok(())
    }
}

impl ExprVisitor for Collect {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        match expr {
            Expr::VectorSelector(vs) => self.selector(vs)?,
            Expr::MatrixSelector(ms) => self.selector(&ms.vs)?,
            Expr::Aggregate(a) => {
                if let Some(m) = &a.modifier {
                    self.query
                        .grouping
                        .extend(m.labels().labels.iter().cloned());
                }
            }
            Expr::Binary(b) => {
                if let Some(m) = &b.modifier {
                    if let Some(matching) = &m.matching {
                        self.query
                            .grouping
                            .extend(matching.labels().labels.iter().cloned());
                    }
                    if let Some(extra) = m.card.labels() {
                        self.query.grouping.extend(extra.labels.iter().cloned());
                    }
                }
            }
            _ => {}
        }
        Ok(true)
    }
}
