//! The run's report: a JSON file (every figure, plus time series) and a text summary, and
//! `compare`, which prints B/A ratios of the headline figures of two reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::lag::LagReport;
use crate::procs::ProcessReport;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub scenario: String,
    pub title: String,
    pub note: Option<String>,
    pub started_at_unix_s: i64,
    pub topic_prefix: String,
    pub target: String,
    pub params: Params,
    pub triggers: Triggers,
    pub deliveries: Deliveries,
    /// Trigger send time (in the payload) to first successful receipt at the sink, expected groups.
    pub latency_ms: Latency,
    pub groups: Vec<GroupReport>,
    pub rate_limit: Option<RateLimitReport>,
    pub processes: Vec<ProcessReport>,
    pub lag: Vec<LagReport>,
    pub projector_lag: String,
    /// Per second since generation started: triggers accepted and deliveries received so far.
    pub timeline: Vec<TimelinePoint>,
    pub hookline_stop: Option<String>,
    /// The machine: other work on it skews every figure.
    pub host: Host,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Host {
    pub cpus: usize,
    /// `/proc/loadavg` (1, 5, 15 min) when generation started and when the run ended.
    pub loadavg_start: String,
    pub loadavg_end: String,
    /// Topics and partitions on the broker before the run created its own (absent when the
    /// broker did not answer, and in reports of older versions of the tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_topics: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_partitions: Option<usize>,
}

impl Host {
    pub fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub path: String,
    pub count: u64,
    /// Target triggers/s; none = closed loop (as fast as acknowledged).
    pub rate: Option<f64>,
    pub duration_s: f64,
    pub deadline_s: f64,
    pub batch: usize,
    pub concurrency: usize,
    pub endpoints: usize,
    pub partitions: u32,
    pub verify_signatures: bool,
    pub payload_pad_bytes: usize,
    /// Triggers sent in the first this many seconds are not in the latency figures.
    #[serde(default)]
    pub warmup_s: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Triggers {
    pub attempted: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub errors: u64,
    pub shed: u64,
    /// First send to last acknowledgement.
    pub seconds: f64,
    pub per_s: f64,
    pub outcomes: BTreeMap<String, u64>,
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Deliveries {
    pub expected: u64,
    pub received: u64,
    /// Expected but not received before the deadline.
    pub lost: u64,
    pub duplicates: u64,
    /// First trigger sent to last delivery received.
    pub seconds: f64,
    pub per_s: f64,
    pub sink_requests: u64,
    pub failed_by_design: u64,
    pub hung: u64,
    pub bad_signature: u64,
    pub bad_request: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    pub fn from_us(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| (us as f64 / 10.0).round() / 100.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean: (h.mean() / 10.0).round() / 100.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupReport {
    pub name: String,
    pub endpoints: usize,
    /// Whether this group's deliveries count towards expected/lost.
    pub counted: bool,
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RateLimitReport {
    pub meaningful: bool,
    pub configured_per_s: f64,
    /// Highest deliveries within one wall-clock second at any one endpoint.
    pub max_observed_per_s: u64,
    /// Mean over endpoints of received / (last − first receipt).
    pub mean_observed_per_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub t_s: f64,
    pub accepted: u64,
    pub delivered: u64,
    /// Latency of the deliveries first received in this second (absent when none were, and in
    /// reports of older versions of the tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Verdict {
    pub ok: bool,
    pub problems: Vec<String>,
}

fn rate(n: u64, s: f64) -> f64 {
    if s > 0.0 { (n as f64 / s * 10.0).round() / 10.0 } else { 0.0 }
}

pub fn per_s(n: u64, seconds: f64) -> f64 {
    rate(n, seconds)
}

impl Report {
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, serde_json::to_vec_pretty(self)?).with_context(|| format!("writing {}", path.display()))
    }

    pub fn text(&self) -> String {
        let mut o = String::new();
        let p = &self.params;
        let t = &self.triggers;
        let d = &self.deliveries;
        let l = &self.latency_ms;
        let mode = match p.rate {
            Some(r) => format!("open loop at {r} triggers/s for at most {} s", p.duration_s),
            None => "closed loop (as fast as acknowledged)".into(),
        };
        let _ = writeln!(o, "== scenario {}: {}", self.scenario, self.title);
        if let Some(n) = &self.note {
            let _ = writeln!(o, "   NOTE: {n}");
        }
        let _ = writeln!(
            o,
            "   path {}, {mode}, count {}, batch {}, concurrency {}, {} endpoint(s), {} partitions, deadline {} s{}",
            p.path,
            p.count,
            p.batch,
            p.concurrency,
            p.endpoints,
            p.partitions,
            p.deadline_s,
            if p.verify_signatures { ", signatures verified" } else { "" }
        );
        let _ = writeln!(o, "   target {}, topic prefix {}", self.target, self.topic_prefix);
        let _ = writeln!(
            o,
            "triggers    accepted {}/{} in {:.2} s = {} /s   (rejected {}, errors {}, shed {})",
            t.accepted, t.attempted, t.seconds, t.per_s, t.rejected, t.errors, t.shed
        );
        if let Some(e) = &t.first_error {
            let _ = writeln!(o, "            first error: {e}");
        }
        let _ = writeln!(
            o,
            "deliveries  received {}/{} in {:.2} s = {} /s   lost {}, duplicates {}",
            d.received, d.expected, d.seconds, d.per_s, d.lost, d.duplicates
        );
        let _ = writeln!(
            o,
            "            sink requests {}, failed on purpose {}, hung {}, bad signature {}, bad request {}",
            d.sink_requests, d.failed_by_design, d.hung, d.bad_signature, d.bad_request
        );
        let _ = writeln!(
            o,
            "latency     p50 {} ms  p90 {} ms  p99 {} ms  p99.9 {} ms  max {} ms  (mean {} ms, n {}{})",
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            l.mean,
            l.count,
            if self.params.warmup_s > 0.0 {
                format!("; triggers of the first {} s left out", self.params.warmup_s)
            } else {
                String::new()
            }
        );
        let mut p99s: Vec<(f64, f64)> = self.timeline.iter().filter_map(|p| Some((p.p99_ms?, p.t_s))).collect();
        if !p99s.is_empty() {
            p99s.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (median, (worst, at)) = (p99s[p99s.len() / 2].0, p99s[p99s.len() - 1]);
            let _ = writeln!(
                o,
                "            p99 by second: median {median:.1} ms, worst {worst:.1} ms (at t={at:.0} s), over {} seconds",
                p99s.len()
            );
        }
        if self.groups.len() > 1 {
            for g in &self.groups {
                let gl = &g.latency_ms;
                let _ = writeln!(
                    o,
                    "  group {:<9} {:>5} endpoints  received {}/{}{}  dup {}  p50 {} ms  p99 {} ms  max {} ms",
                    g.name,
                    g.endpoints,
                    g.received,
                    g.expected,
                    if g.counted { format!("  lost {}", g.lost) } else { "  (not expected)".into() },
                    g.duplicates,
                    gl.p50,
                    gl.p99,
                    gl.max
                );
            }
        }
        if let Some(r) = &self.rate_limit {
            let _ = writeln!(
                o,
                "rate limit  configured {} /s; observed max {} in one second, mean {} /s per endpoint{}",
                r.configured_per_s,
                r.max_observed_per_s,
                r.mean_observed_per_s,
                if r.meaningful { "" } else { "  [not meaningful until rate limits exist]" }
            );
        }
        let _ = writeln!(
            o,
            "processes   {:<12} {:>8} {:>9} {:>9} {:>11} {:>9}",
            "name", "pid", "cpu s", "cpu %", "peak RSS", "VmHWM"
        );
        for pr in &self.processes {
            let secs = pr.samples.last().map_or(0.0, |s| s.0);
            let _ = writeln!(
                o,
                "            {:<12} {:>8} {:>9.1} {:>9.0} {:>8.0} MB {:>6.0} MB",
                pr.name,
                pr.pid,
                pr.cpu_seconds,
                if secs > 0.0 { pr.cpu_seconds / secs * 100.0 } else { 0.0 },
                pr.peak_rss_mb,
                pr.vm_hwm_mb
            );
        }
        for lag in &self.lag {
            let _ = writeln!(
                o,
                "lag         {:<24} on {:<24} max {:>7}  at end {:>5}",
                lag.group, lag.topic, lag.max, lag.last
            );
        }
        let _ = writeln!(o, "lag         projector: {}", self.projector_lag);
        let _ = writeln!(
            o,
            "host        {} cpus, load average {} at start, {} at end",
            self.host.cpus, self.host.loadavg_start, self.host.loadavg_end
        );
        if let (Some(t), Some(p)) = (self.host.broker_topics, self.host.broker_partitions) {
            let _ = writeln!(o, "broker      {t} topics, {p} partitions before the run");
        }
        if let Some(s) = &self.hookline_stop {
            let _ = writeln!(o, "hookline    {s}");
        }
        if self.verdict.ok {
            let _ = writeln!(o, "verdict     OK");
        } else {
            let _ = writeln!(o, "verdict     FAIL: {}", self.verdict.problems.join("; "));
        }
        o
    }
}

/// Headline figures: (label, JSON pointer, higher is better).
const HEADLINES: &[(&str, &str, bool)] = &[
    ("triggers accepted /s", "/triggers/per_s", true),
    ("deliveries /s", "/deliveries/per_s", true),
    ("latency p50 ms", "/latency_ms/p50", false),
    ("latency p90 ms", "/latency_ms/p90", false),
    ("latency p99 ms", "/latency_ms/p99", false),
    ("latency max ms", "/latency_ms/max", false),
    ("lost", "/deliveries/lost", false),
    ("duplicates", "/deliveries/duplicates", false),
];

/// `loadtest compare A.json B.json`: B/A for every headline figure and every process present
/// in both.
pub fn compare(a_path: &Path, b_path: &Path) -> anyhow::Result<String> {
    let load = |p: &Path| -> anyhow::Result<Value> {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not a loadtest JSON report", p.display()))
    };
    let (a, b) = (load(a_path)?, load(b_path)?);
    let mut rows: Vec<(String, Option<f64>, Option<f64>, bool)> =
        HEADLINES.iter().map(|(label, ptr, up)| (label.to_string(), num(&a, ptr), num(&b, ptr), *up)).collect();
    let procs = |v: &Value| -> BTreeMap<String, (f64, f64)> {
        v["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((p["name"].as_str()?.to_string(), (p["cpu_seconds"].as_f64()?, p["peak_rss_mb"].as_f64()?)))
            })
            .collect()
    };
    let (pa, pb) = (procs(&a), procs(&b));
    for (name, (cpu_a, rss_a)) in &pa {
        if let Some((cpu_b, rss_b)) = pb.get(name) {
            rows.push((format!("{name} cpu s"), Some(*cpu_a), Some(*cpu_b), false));
            rows.push((format!("{name} peak RSS MB"), Some(*rss_a), Some(*rss_b), false));
        }
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "A: {} (scenario {}, {})",
        a_path.display(),
        a["scenario"].as_str().unwrap_or("?"),
        a["params"]["path"].as_str().unwrap_or("?")
    );
    let _ = writeln!(
        o,
        "B: {} (scenario {}, {})",
        b_path.display(),
        b["scenario"].as_str().unwrap_or("?"),
        b["params"]["path"].as_str().unwrap_or("?")
    );
    let _ = writeln!(o, "{:<26} {:>12} {:>12} {:>8}", "figure", "A", "B", "B/A");
    for (label, x, y, up) in rows {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let ratio = match (x, y) {
            (Some(x), Some(y)) if x != 0.0 => {
                let r = y / x;
                let better = if up { r > 1.05 } else { r < 0.95 };
                let worse = if up { r < 0.95 } else { r > 1.05 };
                format!(
                    "{r:.2}{}",
                    if better {
                        " +"
                    } else if worse {
                        " -"
                    } else {
                        ""
                    }
                )
            }
            (Some(x), Some(y)) if x == y => "1.00".into(),
            _ => "n/a".into(),
        };
        let _ = writeln!(o, "{label:<26} {:>12} {:>12} {:>8}", f(x), f(y), ratio);
    }
    let _ = writeln!(o, "(+ better, - worse by more than 5%)");
    Ok(o)
}

fn num(v: &Value, ptr: &str) -> Option<f64> {
    v.pointer(ptr).and_then(Value::as_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_reported_in_milliseconds() {
        let mut h = crate::sink::new_histogram();
        for us in [1000, 2000, 3000, 100_000] {
            h.record(us).unwrap();
        }
        let l = Latency::from_us(&h);
        assert_eq!(l.count, 4);
        assert!((l.p50 - 2.0).abs() < 0.01, "{l:?}");
        assert!((l.max - 100.0).abs() < 0.1, "{l:?}");
    }

    #[test]
    fn compare_prints_ratios() {
        let dir = std::env::temp_dir().join(format!("lt-compare-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = serde_json::json!({"scenario":"a","params":{"path":"kafka"},"triggers":{"per_s":100.0},
            "deliveries":{"per_s":50.0,"lost":0,"duplicates":0},"latency_ms":{"p50":10.0,"p90":20.0,"p99":40.0,"max":80.0},
            "processes":[{"name":"hookline","cpu_seconds":2.0,"peak_rss_mb":100.0}]});
        let mut b = a.clone();
        b["triggers"]["per_s"] = 200.0.into();
        b["processes"][0]["peak_rss_mb"] = 50.0.into();
        std::fs::write(dir.join("a.json"), a.to_string()).unwrap();
        std::fs::write(dir.join("b.json"), b.to_string()).unwrap();
        let out = compare(&dir.join("a.json"), &dir.join("b.json")).unwrap();
        assert!(out.lines().any(|l| l.starts_with("triggers accepted /s") && l.contains("2.00 +")), "{out}");
        assert!(out.lines().any(|l| l.starts_with("hookline peak RSS MB") && l.contains("0.50 +")), "{out}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
