//! Helpers shared by this crate's test files: the repository, the external tools some checks
//! run (skipped when missing, a failure when `CI` is set), YAML documents and kustomize output.
//! Each test file compiles its own copy and uses a part of it.
#![allow(dead_code, unused_imports)]

pub mod crd_schema;
pub mod kit;
pub mod metrics_doc;
pub mod promql;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file of the repository, by its path from the root.
pub fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The tool's name when it can run here; `None` (after saying so) when it cannot and CI is off.
pub fn tool(name: &str, install: &str) -> Option<&'static str> {
    let found = Command::new(name)
        .arg("--help")
        .output()
        .map(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty())
        .unwrap_or(false);
    if found {
        return Some(name.to_owned().leak());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{name} is required in CI: {install}"
    );
    eprintln!("SKIPPED: {name} not found ({install})");
    None
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The strings of a JSON list (none when it is not a list).
pub fn strings(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Every non-empty document of a YAML stream.
pub fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The objects `kubectl apply -k <dir>` would create, rendered by kubectl's kustomize.
pub fn rendered_at(dir: &str) -> Option<Vec<Value>> {
    let kubectl = tool("kubectl", "install kubectl (it bundles kustomize)")?;
    let out = run(Command::new(kubectl).arg("kustomize").arg(repo().join(dir)));
    Some(yaml_docs(&out))
}

/// Every document of every `manifests/examples/*.yaml`, with its file name, in file order.
pub fn examples() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("manifests/examples"))
        .expect("manifests/examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).expect("read example");
        out.extend(yaml_docs(&text).into_iter().map(|doc| (name.clone(), doc)));
    }
    out
}

/// The fenced code blocks of a Markdown text whose info string is `lang`, in order.
pub fn code_blocks(markdown: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut current, fence) {
            (None, Some(info)) if info.trim() == lang => current = Some(String::new()),
            (Some(block), Some(_)) => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), None) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The `## ` headings of a Markdown text, as GitHub makes them into anchors (lowercase, spaces
/// as `-`, punctuation other than `-` and `_` dropped).
pub fn h2_anchors(markdown: &str) -> Vec<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}
