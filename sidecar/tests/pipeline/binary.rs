//! The binary's exit codes and error output.

use std::process::Command;

fn sidecar() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kcp-sidecar"))
}

#[test]
fn invalid_config_prints_every_problem_and_exits_64() {
    let dir = std::env::temp_dir().join(format!("kcp-sidecar-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bad.json");
    std::fs::write(
        &path,
        r#"{"kafka": {"bootstrapServers": "", "topics": [], "groupId": "g"},
            "endpoint": {"url": "ftp://x", "connectTimeout": "1s", "requestTimeout": "1s", "retryOn": []},
            "delivery": {"ordering": "partition", "maxInFlight": 0, "guarantee": "atLeastOnce",
                         "commitInterval": "1s", "drainTimeout": "1s",
                         "retry": {"maxAttempts": 1, "initialBackoff": "1s", "maxBackoff": "1s", "multiplier": 2},
                         "onExhausted": "skip"}}"#,
    )
    .expect("write config");
    let out = sidecar()
        .arg("--config")
        .arg(&path)
        .env_remove("KCP_CONFIG")
        .output()
        .expect("run sidecar");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "stderr: {stderr}");
    for needle in ["bootstrapServers", "topics", "endpoint.url", "maxInFlight"] {
        assert!(
            stderr.contains(needle),
            "{needle} not reported in: {stderr}"
        );
    }
}

#[test]
fn config_path_comes_from_the_environment_and_a_missing_file_exits_66() {
    let out = sidecar()
        .env("KCP_CONFIG", "/nonexistent/kcp.json")
        .output()
        .expect("run sidecar");
    assert_eq!(out.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/kcp.json"));
}

#[test]
fn an_unusable_endpoint_url_is_invalid_input() {
    let dir = std::env::temp_dir().join(format!("kcp-sidecar-test-url-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("url.json");
    // A space is refused by the config check itself; an unclosed IPv6 bracket passes the
    // config check (it only checks characters) and is refused when the URI is parsed.
    for (url, expected) in [
        ("http://app.example/a b", "percent-encode spaces"),
        ("http://[::1/x", "not a valid URI"),
    ] {
        std::fs::write(
            &path,
            format!(
                r#"{{"kafka": {{"bootstrapServers": "127.0.0.1:1", "topics": ["t"], "groupId": "g"}},
            "endpoint": {{"url": "{url}", "connectTimeout": "1s", "requestTimeout": "1s", "retryOn": ["5xx"]}},
            "delivery": {{"ordering": "partition", "maxInFlight": 1, "guarantee": "atLeastOnce",
                         "commitInterval": "1s", "drainTimeout": "1s",
                         "retry": {{"maxAttempts": 1, "initialBackoff": "1s", "maxBackoff": "1s", "multiplier": 2}},
                         "onExhausted": "skip"}},
            "log": {{"level": "info", "format": "plain"}}}}"#
            ),
        )
        .expect("write config");
        let out = sidecar()
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run sidecar");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{url}: stderr: {stderr}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
