//! What the figures were measured on: CPU count and model, kernel, memory, load.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub mem_total_mib: u64,
    /// 1-minute load average when the run started (other builds on a shared machine show here).
    pub load_avg_at_start: String,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let mem_total_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| crate::proc::field_kib(&m, "MemTotal:"))
            .map_or(0, |kib| kib / 1024);
        let load_avg_at_start = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into());
        Self {
            nproc: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model,
            kernel,
            mem_total_mib,
            load_avg_at_start,
        }
    }

    /// One line for the top of the report.
    pub fn line(&self) -> String {
        format!(
            "{} × {} · Linux {} · {} MiB RAM · load {} at start",
            self.nproc, self.cpu_model, self.kernel, self.mem_total_mib, self.load_avg_at_start
        )
    }
}
