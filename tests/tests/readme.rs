//! The README's quick start, as a newcomer runs it: its two commands must stay runnable and CI
//! must run the README's test command.

use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The commands of the first ```sh block under "## Quick start", comments stripped.
fn quick_start() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let section = readme
        .split("## Quick start")
        .nth(1)
        .expect("a Quick start section");
    let block = section
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh code block");
    block
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn quick_start_has_a_demo_and_a_test_command() {
    let cmds = quick_start();
    assert_eq!(
        cmds.len(),
        2,
        "two commands: the demo and the tests: {cmds:?}"
    );
    assert!(cmds[0].starts_with("cargo run"), "{cmds:?}");
    assert!(cmds[1].starts_with("cargo test"), "{cmds:?}");
}

#[test]
fn ci_runs_the_readme_test_command() {
    let ci = std::fs::read_to_string(repo().join(".ci/run")).expect(".ci/run");
    let test = &quick_start()[1];
    assert!(
        ci.lines().any(|l| l.trim() == test),
        ".ci/run must run the README's test command `{test}` as is"
    );
}

#[test]
fn cargo_run_in_the_quick_start_picks_one_binary() {
    // `cargo run -p X` fails when X has several binaries and no `default-run`.
    for cmd in quick_start().iter().filter(|c| c.starts_with("cargo run")) {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let package = words
            .iter()
            .position(|w| *w == "-p")
            .and_then(|i| words.get(i + 1))
            .expect("the command names its package with -p");
        let dir = repo().join(package.trim_start_matches("kcp-"));
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("package manifest");
        let several_bins = dir.join("src/bin").is_dir() && dir.join("src/main.rs").exists();
        assert!(
            !several_bins || manifest.contains(&format!("default-run = \"{package}\"")),
            "`{cmd}`: {package} has several binaries; set default-run = \"{package}\" in its Cargo.toml"
        );
    }
}
