//! The `kcp-sidecar` binary as a child process: JSON config file, `--pod-name`, stderr captured
//! to a file (checked for panics), `kill -9`, SIGTERM.

use std::{
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::unique;

pub struct Sidecar {
    child: Child,
    pub name: String,
    pub log: PathBuf,
    dir: PathBuf,
}

impl Sidecar {
    /// Starts the binary with `config` (written to a file) and, when given, a pod name.
    pub fn start(config: &Value, pod_name: Option<&str>) -> Self {
        let name = unique("sidecar");
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("config.json");
        std::fs::write(&path, config.to_string()).expect("write config");
        let log = dir.join("stderr.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kcp-sidecar"));
        cmd.arg("--config")
            .arg(&path)
            .env_remove("KCP_CONFIG")
            .env_remove("KCP_POD_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        if let Some(pod) = pod_name {
            cmd.arg("--pod-name").arg(pod);
        }
        let child = cmd.spawn().expect("kcp-sidecar starts");
        eprintln!("started {name} (pid {}, pod {pod_name:?})", child.id());
        Self {
            child,
            name,
            log,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running (neither exited nor killed).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// SIGKILL, then reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (graceful: drain, commit, leave).
    pub fn term(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM {}", self.pid());
    }

    /// Waits for the exit, up to `limit` (then kills it and panics).
    pub async fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!(
                    "{} did not exit within {limit:?}\n{}",
                    self.name,
                    self.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM and wait for a clean exit (code 0), checking the log for panics. Waits first for
    /// the sidecar's first log line: its signal handlers are installed before it logs anything,
    /// and a SIGTERM before that meets the default action (exit by signal), as for any process.
    pub async fn stop(&mut self) {
        let started = Instant::now() + Duration::from_secs(30);
        while self.stderr().is_empty() && self.is_running() && Instant::now() < started {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.term();
        let status = self.wait(Duration::from_secs(60)).await;
        assert_eq!(
            status.code(),
            Some(0),
            "{} exit\n{}",
            self.name,
            self.tail()
        );
        self.assert_no_panic();
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn tail(&self) -> String {
        let s = self.stderr();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn assert_no_panic(&self) {
        let s = self.stderr();
        assert!(!s.contains("panicked"), "{} panicked:\n{s}", self.name);
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("{} log kept at {}", self.name, self.log.display());
        }
    }
}
