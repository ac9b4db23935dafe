//! The `kcp-sidecar` binary as a child process: JSON config file, `--pod-name`, stderr captured
//! to a file (checked for panics), `kill -9`, SIGTERM, and its admin endpoints (`/metrics`,
//! `/status`) on the port it logs.

use std::{
    net::SocketAddr,
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
        Self::start_with_env(config, pod_name, &[])
    }

    /// [`Sidecar::start`] with extra environment variables (what the operator sets).
    pub fn start_with_env(config: &Value, pod_name: Option<&str>, env: &[(&str, &str)]) -> Self {
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
        cmd.envs(env.iter().copied());
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

    /// The admin server's address, from its `Admin server listening` log line (waits for it).
    pub async fn admin_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = strip_ansi(&self.stderr());
            let addr = log
                .lines()
                .filter(|l| l.contains("Admin server listening"))
                .find_map(|l| {
                    l.split_once("addr=")?
                        .1
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                });
            if let Some(addr) = addr {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no admin address logged\n{}",
                self.name,
                self.tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GETs `path` (`/metrics`, `/status`) from the admin server: the body of its 200 answer.
    pub async fn admin_get(&self, path: &str) -> String {
        let (status, body) = http_get(self.admin_addr().await, path).await;
        assert_eq!(status, 200, "{}: GET {path}: {body}", self.name);
        body
    }

    /// The value of the sample `name` (with its labels, as written: `a_total{x="y"}`) in the
    /// admin server's `/metrics`; panics when it is not there.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.admin_get("/metrics").await;
        metric(&text, name).unwrap_or_else(|| panic!("{}: no {name} in\n{text}", self.name))
    }

    /// The sum of every sample of the metric `name` (whatever its labels) in `/metrics`; `None`
    /// when the sidecar does not expose it.
    pub async fn metric_sum(&self, name: &str) -> Option<f64> {
        metric_sum(&self.admin_get("/metrics").await, name)
    }
}

/// `GET path` on `addr` (HTTP/1.1, one request per connection): the status code and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("read the response");
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path} on {addr}: not an HTTP response: {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("GET {path} on {addr}: no status in {head:?}"));
    (status, body.to_owned())
}

/// The value of the sample `name` (labels included, as written) in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum of the samples of `name`, any labels, in Prometheus text; `None` without one.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once('}')?.1,
                None => rest,
            };
            value
                .strip_prefix(' ')?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .reduce(|a, b| a + b)
}

/// The log without terminal colour sequences (`ESC [ ... m`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
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

#[cfg(test)]
mod tests {
    #[test]
    fn metric_sum_adds_every_labelled_sample_and_sees_absence() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total{p=\"0\"} 2\na_total{p=\"1\"} 3\n\
                    a_total_x 9\nb_total 4\n";
        assert_eq!(super::metric_sum(text, "a_total"), Some(5.0));
        assert_eq!(super::metric_sum(text, "b_total"), Some(4.0));
        assert_eq!(super::metric_sum(text, "c_total"), None);
    }
}
