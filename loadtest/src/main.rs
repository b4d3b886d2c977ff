//! `loadtest`: drives Hookline under load and reports what it saw.
//!
//! - [`run`]: one scenario end to end: start `hookline all` (or use a running API), start the
//!   sink, create endpoints, generate triggers, wait for the deliveries, stop, report.
//! - [`scenario`]: the named scenarios (endpoints, behaviours, routing, expected deliveries).
//! - [`sink`]: the receiving HTTP server (hyper 1, no framework) and what it records.
//! - [`generate`]: open/closed-loop trigger generators for the HTTP API and for Kafka.
//! - [`hookline`]: the `hookline` child process configured for one run.
//! - [`procs`] and [`lag`]: CPU/RSS sampling from `/proc`, consumer lag from Kafka.
//! - [`report`]: the JSON report, its text summary and `compare`.
//! - [`api`]: a small HTTP client for Hookline's API, with the loopback-only guard.

mod api;
mod clock;
mod generate;
mod hookline;
mod lag;
mod procs;
mod report;
mod run;
mod scenario;
mod sink;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::generate::TriggerPath;

#[derive(Parser)]
#[command(name = "loadtest", version, about = "Load test for Hookline: generators, a fast receiving sink, a report")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario (a..g or its name) or `all`.
    Run(Box<RunArgs>),
    /// List the scenarios.
    List,
    /// Print B/A ratios of two JSON reports.
    Compare { a: PathBuf, b: PathBuf },
}

#[derive(Args, Clone)]
pub struct RunArgs {
    /// Scenario key or name (a/steady, b/fanout, c/dead, d/retry-storm, e/burst, f/rate-limited,
    /// g/many-endpoints) or `all`.
    pub scenario: String,
    /// How triggers enter Hookline.
    #[arg(long, value_enum, default_value = "http-batch")]
    pub path: TriggerPath,
    /// Number of triggers (default: the scenario's). With --rate and --duration but no
    /// --count, rate × duration.
    #[arg(long)]
    pub count: Option<u64>,
    /// Open loop at this many triggers/s; without it the generator runs closed loop (max speed).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Longest time the generator may send, seconds [default 300].
    #[arg(long)]
    pub duration: Option<f64>,
    /// How long to wait for the remaining deliveries once the generator finished, seconds;
    /// what has not arrived by then is reported lost.
    #[arg(long, default_value_t = 60.0)]
    pub deadline: f64,
    /// Extra wait after the last expected delivery, to catch late duplicates, seconds.
    #[arg(long, default_value_t = 2.0)]
    pub grace: f64,
    /// Leave the triggers sent in the first this many seconds out of the latency figures (they
    /// still count for lost and duplicates): freshly started consumers and JVMs warming up.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Override the scenario's number of (healthy) endpoints.
    #[arg(long)]
    pub endpoints: Option<usize>,
    /// Triggers per batch request (http-batch; at most 500) and per Kafka chunk.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Closed loop: parallel senders (each waits for its acknowledgement).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Verify every delivery's Standard Webhooks v1 signature at the sink.
    #[arg(long)]
    pub verify_signatures: bool,
    /// How the scenario's main endpoints answer instead of its default: ok, hang, delay:MS,
    /// fail:RATIO:STATUS (each request fails with probability RATIO) or fail-first:RATIO:STATUS
    /// (the first attempt of a fraction RATIO of the messages fails).
    #[arg(long)]
    pub sink_behaviour: Option<sink::Behaviour>,
    /// Give the scenario's main endpoints this rate limit (per second; burst = a tenth of it,
    /// at least 1): to measure the limiter's cost with a limit that does not bind.
    #[arg(long)]
    pub rate_limit: Option<f64>,
    /// Pad each payload with this many extra bytes.
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
    /// The hookline binary to start (default: `hookline` beside this binary).
    #[arg(long, env = "HOOKLINE_BIN")]
    pub hookline: Option<PathBuf>,
    /// Extra environment for the started hookline, KEY=VALUE (repeatable).
    #[arg(long = "hookline-env", value_parser = parse_kv)]
    pub hookline_env: Vec<(String, String)>,
    /// Partitions of the run's topics.
    #[arg(long, default_value_t = 12)]
    pub partitions: u32,
    /// Use an already running Hookline API instead of starting one (loopback only).
    #[arg(long, requires = "token")]
    pub api: Option<String>,
    /// Bearer token for --api.
    #[arg(long)]
    pub token: Option<String>,
    /// Topic prefix of the running Hookline (with --api; needed for the kafka path and lag).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Keep the run's topics and keyspace (for inspection). By default they are deleted after
    /// the report: a stack holding the topics and tables of many runs gets slower, and later
    /// runs would measure that.
    #[arg(long)]
    pub keep: bool,
    /// Kafka bootstrap servers (loopback only).
    #[arg(long, env = "HOOKLINE_KAFKA__BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// The stack's directory (pid files in run/), fallback for finding server pids.
    #[arg(long, env = "HOOKLINE_STACK_DIR")]
    pub stack_dir: Option<PathBuf>,
    /// Tenant id of the run's endpoints and triggers.
    #[arg(long, default_value = "lt")]
    pub tenant: String,
    /// Sink port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub sink_port: u16,
    /// JSON report path (with `all`: a directory). Default artifacts/loadtest/<scenario>-<time>.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut interrupted_by = None;
    let result = match cli.command {
        Command::List => {
            for s in scenario::SCENARIOS {
                println!(
                    "{} {:<15} {}{}",
                    s.key,
                    s.name,
                    s.title,
                    s.note.map(|n| format!(" ({n})")).unwrap_or_default()
                );
            }
            Ok(true)
        }
        Command::Compare { a, b } => report::compare(&a, &b).map(|text| {
            print!("{text}");
            true
        }),
        Command::Run(args) => rt.block_on(async {
            let outcome = tokio::select! {
                r = run::run_all(*args) => Ok(r),
                sig = interrupted() => Err(sig),
            };
            // Past the select, the run's future is dropped: its `hookline all` child is killed.
            match outcome {
                Ok(r) => r,
                Err(sig) => {
                    eprintln!("loadtest: interrupted by {sig}");
                    hookline::clean_up_after_interrupt().await;
                    interrupted_by = Some(sig);
                    Ok(false)
                }
            }
        }),
    };
    match result {
        _ if interrupted_by.is_some() => ExitCode::from(130),
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The first SIGINT, SIGTERM or SIGHUP: a run stops, kills its `hookline all` and removes its
/// topics, instead of dying and leaving the child running (and loading the stack).
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}
