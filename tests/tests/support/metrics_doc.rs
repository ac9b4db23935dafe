//! The metric tables of `docs/observability.md`, section "## Metrics": every metric the sidecar
//! and the operator document, with its type and labels. The operator's table is the one under a
//! `###` heading naming the operator; every other table of the section is the sidecar's. Other
//! tests check these tables against the real `/metrics` of each; the monitoring kit's tests
//! check what the kit uses against the tables.

use std::collections::{BTreeMap, BTreeSet};

use super::read;

/// Which process serves a metric, which decides the labels Prometheus adds to its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Each sidecar's admin port, scraped by the kit's PodMonitor.
    Sidecar,
    /// The operator's metrics Service, scraped by the kit's ServiceMonitor.
    Operator,
}

#[derive(Debug, Clone)]
pub struct Metric {
    pub name: String,
    /// `counter`, `gauge`, `histogram`.
    pub kind: String,
    pub source: Source,
    /// The labels the table names.
    pub labels: BTreeSet<String>,
    /// For a label whose cell lists its values (`outcome` = `delivered`, ...): those values.
    pub values: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Debug)]
pub struct Documented {
    pub metrics: BTreeMap<String, Metric>,
}

impl Documented {
    pub fn load() -> Self {
        Self::parse(&read("docs/observability.md"))
            .unwrap_or_else(|e| panic!("docs/observability.md: {e}"))
    }

    pub fn parse(markdown: &str) -> Result<Self, String> {
        let section = markdown
            .split("\n## Metrics")
            .nth(1)
            .ok_or("no \"## Metrics\" section")?;
        let section = section.split("\n## ").next().unwrap_or_default();
        let mut metrics = BTreeMap::new();
        let mut source = Source::Sidecar;
        let mut in_table = false;
        for line in section.lines() {
            if let Some(heading) = line.strip_prefix("### ") {
                source = if heading.to_lowercase().contains("operator") {
                    Source::Operator
                } else {
                    Source::Sidecar
                };
                continue;
            }
            let cells = cells(line);
            if cells.first().map(String::as_str) == Some("name")
                && cells.get(1).map(String::as_str) == Some("type")
            {
                in_table = true;
                continue;
            }
            if !line.starts_with('|') {
                in_table = false;
                continue;
            }
            if !in_table || cells.iter().all(|c| c.chars().all(|ch| ch == '-')) {
                continue;
            }
            let [name, kind, labels, ..] = cells.as_slice() else {
                return Err(format!(
                    "a metrics row without name, type and labels: {line}"
                ));
            };
            let name = name.trim_matches('`').to_owned();
            let (labels, values) = labels_of(labels);
            let metric = Metric {
                name: name.clone(),
                kind: kind.clone(),
                source,
                labels,
                values,
            };
            if metrics.insert(name.clone(), metric).is_some() {
                return Err(format!("{name} is documented twice"));
            }
        }
        if metrics.is_empty() {
            return Err("no metric table under \"## Metrics\"".into());
        }
        Ok(Self { metrics })
    }

    /// The documented metric a series belongs to, and the labels its series may carry beyond
    /// the table's: a histogram `x` is scraped as `x_bucket` (with `le`), `x_sum` and `x_count`.
    pub fn series(&self, series: &str) -> Option<(&Metric, Option<&'static str>)> {
        if let Some(m) = self.metrics.get(series) {
            return Some((m, None));
        }
        for (suffix, extra) in [("_bucket", Some("le")), ("_sum", None), ("_count", None)] {
            if let Some(m) = series
                .strip_suffix(suffix)
                .and_then(|base| self.metrics.get(base))
                .filter(|m| m.kind == "histogram")
            {
                return Some((m, extra));
            }
        }
        None
    }

    pub fn from(&self, source: Source) -> impl Iterator<Item = &Metric> {
        self.metrics.values().filter(move |m| m.source == source)
    }
}

/// The cells of a Markdown table row, trimmed (`\|` does not split a cell).
fn cells(line: &str) -> Vec<String> {
    let Some(inner) = line.trim().strip_prefix('|') else {
        return Vec::new();
    };
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().expect("a cell").push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            c => out.last_mut().expect("a cell").push(c),
        }
    }
    if out.last().is_some_and(|c| c.trim().is_empty()) {
        out.pop();
    }
    out.into_iter().map(|c| c.trim().to_owned()).collect()
}

/// The label names of a labels cell, and the values listed for any of them. Forms:
/// "`topic`, `partition`" and "`outcome` = `delivered`, `dead_lettered` (final), ...".
fn labels_of(cell: &str) -> (BTreeSet<String>, BTreeMap<String, BTreeSet<String>>) {
    let mut labels = BTreeSet::new();
    let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let parts: Vec<&str> = cell.split('`').collect();
    // Odd indexes are code spans; the text after each decides what it is.
    for i in (1..parts.len()).step_by(2) {
        let token = parts[i].to_owned();
        let after = parts.get(i + 1).copied().unwrap_or_default();
        if after.trim_start().starts_with('=') {
            labels.insert(token.clone());
            current = Some(token);
        } else if let Some(label) = &current {
            values.entry(label.clone()).or_default().insert(token);
        } else {
            labels.insert(token);
        }
    }
    (labels, values)
}
