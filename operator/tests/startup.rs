//! The `kcp-operator` binary at startup, before it needs a cluster: a probe and metrics port it
//! cannot bind stops it with an error that names the flag, instead of leaving it running with no
//! `/readyz` (never ready, nothing logged).

use std::{net::TcpListener, process::Command, time::Duration};

#[test]
fn a_taken_metrics_port_stops_the_operator_with_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to occupy");
    let addr = taken.local_addr().expect("local addr");
    let dir = std::env::temp_dir().join(format!("kcp-operator-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // A kubeconfig for a server that is never contacted: the client is built without a request.
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: t\n",
    )
    .expect("write kubeconfig");

    let mut child = Command::new(env!("CARGO_BIN_EXE_kcp-operator"))
        .env("KUBECONFIG", &kubeconfig)
        .env("KCP_METRICS_ADDR", addr.to_string())
        .env("KCP_LEADER_ELECTION", "false")
        .env("KCP_LOG_FORMAT", "plain")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start kcp-operator");
    // Bounded wait: a regression (the operator keeps running) must fail, not hang.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("kcp-operator kept running although its metrics port {addr} is taken");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "must exit non-zero; stderr: {stderr}"
    );
    assert!(
        stderr.contains(&format!("binding the probe and metrics address {addr}"))
            && stderr.contains("--metrics-addr"),
        "the error names the address and the flag; stderr: {stderr}"
    );
    drop(taken);
    let _ = std::fs::remove_dir_all(&dir);
}
