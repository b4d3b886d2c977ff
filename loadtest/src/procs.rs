//! CPU time and memory of the processes under test, read from `/proc` once a second.
//!
//! Servers are found by the TCP port they listen on (`/proc/net/tcp*` inode → `/proc/PID/fd`),
//! which is exact even when two stacks run side by side; the stack's pid files under
//! `$HOOKLINE_STACK_DIR/run/` are the fallback.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

/// One watched process.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

/// What the sampler measured for one process over the window.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ProcessReport {
    pub name: String,
    pub pid: u32,
    /// user + system CPU seconds spent inside the measured window.
    pub cpu_seconds: f64,
    /// Highest RSS seen by the once-a-second sampler, MiB.
    pub peak_rss_mb: f64,
    /// The kernel's high-water mark (VmHWM) at the end, MiB: covers the process's whole life.
    pub vm_hwm_mb: f64,
    /// (seconds since start, RSS MiB, CPU % of one core) per sample.
    pub samples: Vec<(f64, f64, f64)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    cpu_ticks: u64,
    rss_kb: u64,
    hwm_kb: u64,
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

fn snapshot(pid: u32) -> Option<Snapshot> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised comm; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let cpu_ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(Snapshot { cpu_ticks, rss_kb: kb("VmRSS:"), hwm_kb: kb("VmHWM:") })
}

/// Samples every watched process once a second on its own thread until [`Sampler::finish`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<ProcessReport>>>,
}

impl Sampler {
    pub fn start(watched: Vec<Watched>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let hz = clock_ticks() as f64;
            let t0 = Instant::now();
            let first: Vec<Option<Snapshot>> = watched.iter().map(|w| snapshot(w.pid)).collect();
            let mut last = first.clone();
            let mut reports: Vec<ProcessReport> = watched
                .iter()
                .zip(&first)
                .map(|(w, s)| ProcessReport {
                    name: w.name.clone(),
                    pid: w.pid,
                    cpu_seconds: 0.0,
                    peak_rss_mb: s.map_or(0.0, |s| s.rss_kb as f64 / 1024.0),
                    vm_hwm_mb: s.map_or(0.0, |s| s.hwm_kb as f64 / 1024.0),
                    samples: vec![],
                })
                .collect();
            let mut prev_t = 0.0;
            loop {
                let stopping = flag.load(Ordering::Relaxed);
                if !stopping {
                    std::thread::sleep(Duration::from_millis(1000));
                }
                let t = t0.elapsed().as_secs_f64();
                for (i, w) in watched.iter().enumerate() {
                    let Some(now) = snapshot(w.pid) else { continue };
                    let r = &mut reports[i];
                    let base = first[i].unwrap_or(now);
                    let prev = last[i].unwrap_or(now);
                    let cpu_pct =
                        (now.cpu_ticks.saturating_sub(prev.cpu_ticks)) as f64 / hz / (t - prev_t).max(1e-3) * 100.0;
                    r.cpu_seconds = now.cpu_ticks.saturating_sub(base.cpu_ticks) as f64 / hz;
                    let rss = now.rss_kb as f64 / 1024.0;
                    r.peak_rss_mb = r.peak_rss_mb.max(rss);
                    r.vm_hwm_mb = now.hwm_kb as f64 / 1024.0;
                    r.samples.push((round1(t), round1(rss), round1(cpu_pct)));
                    last[i] = Some(now);
                }
                prev_t = t;
                if stopping {
                    break;
                }
            }
            reports
        });
        Self { stop, handle: Some(handle) }
    }

    /// Takes a last sample and returns the reports.
    pub fn finish(mut self) -> Vec<ProcessReport> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// The pid of the process listening on TCP `port` (any local address), if it can be seen.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = vec![];
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEX_IP:HEX_PORT; state 0A is LISTEN; inode is field 9.
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else { continue };
            let listening = *state == "0A";
            let p = local.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if listening && p == Some(port) {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| target.as_os_str() == i.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// The pid recorded by `dev/stack` for `service` ("PID STARTTIME"), if that process still runs.
pub fn pid_from_stack_dir(stack_dir: &Path, service: &str) -> Option<u32> {
    let text = std::fs::read_to_string(stack_dir.join("run").join(format!("{service}.pid"))).ok()?;
    let pid: u32 = text.split_whitespace().next()?.parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// Pids of running processes whose command name is `comm` (e.g. an externally started hookline).
pub fn pids_named(comm: &str) -> Vec<u32> {
    let mut out = vec![];
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|c| c.trim() == comm) {
            out.push(pid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_process() {
        let s = snapshot(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kb > 0 && s.hwm_kb >= s.rss_kb);
    }

    #[test]
    fn finds_the_listener_of_a_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(pid_listening_on(port), Some(std::process::id()));
    }
}
