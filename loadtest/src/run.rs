//! One scenario end to end, and `all` of them in turn.
//!
//! Order: check bounds and loopback → start `hookline all` with a fresh topic prefix (or use
//! `--api`) → start the sink → create the endpoints → start the samplers → generate → wait for
//! the expected deliveries or the deadline (+ a short grace for late duplicates) → stop the
//! samplers → SIGTERM hookline → report.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::ValueEnum;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::RunArgs;
use crate::api::{Api, ensure_loopback, host_of};
use crate::clock::now_us;
use crate::generate::{GenConfig, Generator, Target, TriggerPath};
use crate::hookline::{Hookline, free_port, run_env, set_pending_clean_up};
use crate::lag::LagSampler;
use crate::procs::{Sampler, Watched, pid_from_stack_dir, pid_listening_on, pids_named};
use crate::report::{
    Deliveries, GroupReport, Host, Latency, Params, RateLimitReport, Report, TimelinePoint, Triggers, Verdict, per_s,
};
use crate::scenario::{self, MAX_COUNT, MAX_DURATION, MAX_ENDPOINTS, Plan, SCENARIOS, Scenario};
use crate::sink::{EndpointSpec, Sink, SinkState, new_histogram};

const ENDPOINT_CREATE_CONCURRENCY: usize = 32;
const MAX_API_BATCH: usize = 500;
/// Longest time the generator may send when --duration is not given, seconds.
const DEFAULT_DURATION_S: f64 = 300.0;

pub async fn run_all(args: RunArgs) -> anyhow::Result<bool> {
    let all = args.scenario == "all";
    let scenarios: Vec<Scenario> =
        if all {
            SCENARIOS.to_vec()
        } else {
            vec![scenario::find(&args.scenario).with_context(|| {
                format!("unknown scenario `{}` (loadtest list shows them; or `all`)", args.scenario)
            })?]
        };
    let stamp = now_us() / 1_000_000;
    let mut ok = true;
    for s in scenarios {
        let name = format!("{}-{}-{stamp}.json", s.key, s.name);
        let out = match (&args.out, all) {
            (Some(p), false) => p.clone(),
            (Some(dir), true) => dir.join(name),
            (None, _) => PathBuf::from("artifacts/loadtest").join(name),
        };
        let report = run_one(&args, &s).await?;
        report.write_json(&out)?;
        println!("{}", report.text());
        println!("report: {}\n", out.display());
        ok &= report.verdict.ok;
    }
    Ok(ok)
}

fn check_bounds(args: &RunArgs, count: u64, endpoints: usize) -> anyhow::Result<()> {
    for broker in args.brokers.split(',') {
        ensure_loopback("Kafka broker", host_of(broker.trim()))?;
    }
    ensure!((1..=MAX_COUNT).contains(&count), "--count must be between 1 and {MAX_COUNT}");
    ensure!((1..=MAX_ENDPOINTS).contains(&endpoints), "--endpoints must be between 1 and {MAX_ENDPOINTS}");
    let max = MAX_DURATION.as_secs_f64();
    for (name, v) in
        [("--duration", args.duration.unwrap_or(1.0)), ("--deadline", args.deadline), ("--grace", args.grace)]
    {
        ensure!(v.is_finite() && v > 0.0 && v <= max, "{name} must be more than 0 and at most {max} s");
    }
    if let Some(r) = args.rate {
        ensure!(r.is_finite() && r > 0.0 && r <= 1_000_000.0, "--rate must be more than 0 and at most 1,000,000");
    }
    ensure!(args.batch >= 1, "--batch must be at least 1");
    if args.path == TriggerPath::HttpBatch {
        ensure!(args.batch <= MAX_API_BATCH, "--batch must be at most {MAX_API_BATCH} on the http-batch path");
    }
    ensure!(args.payload_bytes <= 512 * 1024, "--payload-bytes must be at most 512 KiB");
    Ok(())
}

/// Where the servers under test run: by listening port, else by the stack's pid files.
fn watched_servers(args: &RunArgs) -> Vec<Watched> {
    let port_of = |s: &str| -> Option<u16> {
        let digits: String = s.rsplit(':').next()?.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    let redis = std::env::var("HOOKLINE_REDIS__URL").ok();
    let cql = std::env::var("HOOKLINE_CQL__NODES").ok();
    let candidates = [
        ("kafka", args.brokers.split(',').next().and_then(port_of)),
        ("redis", redis.as_deref().map(|u| u.trim_end_matches('/')).and_then(port_of)),
        ("cassandra", cql.as_deref().and_then(|n| n.split(',').next()).and_then(port_of)),
    ];
    let mut out = vec![];
    for (name, port) in candidates {
        let pid = port
            .and_then(pid_listening_on)
            .or_else(|| args.stack_dir.as_deref().and_then(|d| pid_from_stack_dir(d, name)));
        if let Some(pid) = pid {
            out.push(Watched { name: name.into(), pid });
        }
    }
    out
}

async fn create_endpoints(
    api: &Api,
    plan: &Plan,
    tenant: &str,
    sink_port: u16,
    secret: &str,
    quiet: bool,
) -> anyhow::Result<()> {
    let n = plan.endpoints.len();
    let bar = progress(quiet, n as u64, "creating endpoints {pos}/{len} {bar:30} {elapsed}");
    let mut results = futures::stream::iter(0..n)
        .map(|i| {
            let body = plan.endpoint_body(i, tenant, sink_port, secret);
            async move { api.post_json("/api/endpoints", &body).await }
        })
        .buffer_unordered(ENDPOINT_CREATE_CONCURRENCY);
    while let Some(r) = results.next().await {
        let (status, body) = r.context("creating an endpoint")?;
        if status.as_u16() != 201 {
            bail!("POST /api/endpoints answered {status}: {body}");
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

fn progress(quiet: bool, len: u64, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

async fn run_one(args: &RunArgs, s: &Scenario) -> anyhow::Result<Report> {
    let endpoints = args.endpoints.unwrap_or(s.default_endpoints);
    let count = match (args.count, args.rate, args.duration) {
        (Some(c), _, _) => c,
        (None, Some(r), Some(d)) => (r * d).ceil() as u64,
        _ => s.default_count,
    };
    check_bounds(args, count, endpoints)?;
    let gen_duration = Duration::from_secs_f64(args.duration.unwrap_or(DEFAULT_DURATION_S));
    let mut plan = Plan::build(s, endpoints);
    if let Some(b) = args.sink_behaviour {
        // Overrides how the first group (the healthy / main endpoints) answers.
        plan.endpoints.iter_mut().filter(|e| e.group == 0).for_each(|e| e.behaviour = b);
    }
    if let Some(r) = args.rate_limit {
        let burst = ((r / 10.0) as i32).max(1);
        plan.endpoints.iter_mut().filter(|e| e.group == 0).for_each(|e| e.rate_limit = Some((r, burst)));
    }
    let plan = Arc::new(plan);

    // What the broker already holds: topics left by other runs or by tests make it slower.
    let footprint = broker_footprint(&args.brokers).await;
    if let Some((topics, partitions)) = footprint
        && partitions > LEFTOVER_PARTITIONS
    {
        eprintln!(
            "loadtest: warning: the broker holds {topics} topics with {partitions} partitions before this run; \
             the topics and keyspaces that tests and killed runs leave behind slow the stack down \
             (`dev/stack down --wipe` starts afresh)"
        );
    }

    // Hookline: started by us with a fresh prefix, or already running.
    let token = uuid::Uuid::new_v4().simple().to_string();
    let (mut child, api_url, token, prefix) = match &args.api {
        Some(url) => (None, url.clone(), args.token.clone().unwrap_or_default(), args.prefix.clone()),
        None => {
            let prefix = format!("lt{}.", &uuid::Uuid::new_v4().simple().to_string()[..8]);
            let bin = match &args.hookline {
                Some(b) => b.clone(),
                None => std::env::current_exe()?.with_file_name("hookline"),
            };
            let port = free_port()?;
            let env = run_env(&prefix, &token, port, args.partitions, &args.hookline_env);
            let log_dir = PathBuf::from("artifacts/loadtest");
            std::fs::create_dir_all(&log_dir)?;
            let log = log_dir.join(format!("{}hookline.log", prefix));
            eprintln!("loadtest: starting {} all (topic prefix {prefix}, log {})", bin.display(), log.display());
            if !args.keep {
                set_pending_clean_up(Some((&args.brokers, &prefix)));
            }
            let h = Hookline::start(&bin, &env, port, &token, log).await?;
            let url = h.api_url.clone();
            (Some(h), url, token, Some(prefix))
        }
    };
    let api = Api::new(&api_url, &token)?;
    let target_desc = match &child {
        Some(h) => format!("spawned `hookline all` pid {}", h.pid),
        None => format!("running API {api_url}"),
    };

    // The sink, and the endpoints pointing at it.
    let secret = hookline_domain::signing::generate_secret();
    let verify_key = args
        .verify_signatures
        .then(|| hookline_domain::signing::decode_secret(&secret))
        .transpose()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let specs = plan.endpoints.iter().map(|e| EndpointSpec { group: e.group, behaviour: e.behaviour }).collect();
    let sink = Sink::start(SinkState::new(specs, plan.groups.len(), verify_key), args.sink_port).await?;
    eprintln!("loadtest: sink on {}; creating {} endpoint(s)", sink.addr, plan.endpoints.len());
    create_endpoints(&api, &plan, &args.tenant, sink.addr.port(), &secret, args.quiet).await?;
    if child.is_none() {
        // A separate router/dispatcher learns endpoints from the endpoints topic.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // Samplers.
    let mut watched = vec![Watched { name: "loadtest".into(), pid: std::process::id() }];
    match &child {
        Some(h) => watched.push(Watched { name: "hookline".into(), pid: h.pid }),
        None => watched
            .extend(pids_named("hookline").into_iter().map(|pid| Watched { name: format!("hookline#{pid}"), pid })),
    }
    watched.extend(watched_servers(args));
    let samplers = Sampler::start(watched);
    let lag = match &prefix {
        Some(p) => Some(LagSampler::start(
            &args.brokers,
            vec![
                (format!("{p}dispatcher"), format!("{p}deliveries")),
                (format!("{p}router"), format!("{p}triggers")),
                // The read side: how far the projector's CQL writes trail the log.
                (format!("{p}projector"), format!("{p}deliveries")),
                (format!("{p}projector"), format!("{p}events")),
            ],
        )?),
        None => None,
    };

    // Generate.
    let target = match args.path {
        TriggerPath::Kafka => {
            let Some(p) = &prefix else {
                bail!("--path kafka with --api needs --prefix (the running hookline's topic prefix)")
            };
            let mut kafka = kafka_options(&args.brokers)?;
            kafka.topic_prefix = p.clone();
            let producer = hookline_kafka::producer::EventProducer::new(&kafka, "hookline-loadtest")?;
            Target::Kafka { producer, topic: format!("{p}triggers"), codec: Arc::new(hookline_schemas::Codec::new()?) }
        }
        _ => Target::Http(Box::new(api.clone())),
    };
    let concurrency = args.concurrency.unwrap_or(match args.path {
        TriggerPath::HttpBatch => 4,
        TriggerPath::HttpSingle => 64,
        TriggerPath::Kafka => 8,
    });
    let gen_cfg = GenConfig {
        path: args.path,
        count,
        rate: args.rate,
        duration: gen_duration,
        batch: args.batch,
        concurrency,
        tenant: args.tenant.clone(),
        pad: "x".repeat(args.payload_bytes),
    };
    let generator = Arc::new(Generator::new(gen_cfg, plan.clone(), target));
    let stats = generator.stats.clone();
    let st = sink.state.clone();
    let bar = progress(
        args.quiet,
        plan.expected_total(count),
        "{elapsed_precise} [{bar:30}] {pos}/{len} delivered {per_sec} {msg}",
    );
    let loadavg_start = Host::loadavg();
    let started = Instant::now();
    if args.warmup > 0.0 {
        st.measure_from_us.store(now_us() + (args.warmup * 1e6) as i64, Ordering::Relaxed);
    }
    let task = tokio::spawn(generator.run());
    let mut timeline = vec![];
    let mut next_sample = Duration::from_secs(1);
    let mut gen_done: Option<Instant> = None;
    let mut died = None;
    let deadline = Duration::from_secs_f64(args.deadline);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let accepted = stats.accepted.load(Ordering::Relaxed);
        let received = st.received.load(Ordering::Relaxed);
        if started.elapsed() >= next_sample {
            let w = st.take_window();
            let ms = |q: f64| (!w.is_empty()).then(|| (w.value_at_quantile(q) as f64 / 100.0).round() / 10.0);
            timeline.push(TimelinePoint {
                t_s: next_sample.as_secs_f64(),
                accepted,
                delivered: received,
                p50_ms: ms(0.5),
                p99_ms: ms(0.99),
                max_ms: (!w.is_empty()).then(|| (w.max() as f64 / 100.0).round() / 10.0),
            });
            next_sample += Duration::from_secs(1);
        }
        bar.set_position(received);
        bar.set_message(format!("| triggers accepted {accepted}/{count}"));
        if gen_done.is_none() && task.is_finished() {
            gen_done = Some(Instant::now());
            bar.set_length(plan.expected_total(accepted));
        }
        if let Some(h) = child.as_mut()
            && let Some(why) = h.exited()
        {
            died = Some(why);
            break;
        }
        if let Some(done) = gen_done
            && (received >= plan.expected_total(accepted) || done.elapsed() >= deadline)
        {
            break;
        }
    }
    if died.is_none() {
        tokio::time::sleep(Duration::from_secs_f64(args.grace)).await;
    }
    bar.finish_and_clear();
    task.abort();
    let processes = samplers.finish();
    let lag = lag.map(LagSampler::finish).unwrap_or_default();
    let hookline_stop = child.as_mut().map(|h| h.stop(Duration::from_secs(30)));
    sink.stop();
    if let (Some(_), Some(p), false) = (&child, &prefix, args.keep) {
        match crate::hookline::clean_up(&args.brokers, p).await {
            Ok(what) => eprintln!("loadtest: removed {what} (--keep keeps them)"),
            Err(e) => eprintln!("loadtest: could not remove the run's topics and keyspace: {e:#}"),
        }
        set_pending_clean_up(None);
    }

    // Report.
    let accepted = stats.accepted.load(Ordering::Relaxed);
    let first_send = stats.first_send_us.load(Ordering::Relaxed);
    let secs = |a: i64, b: i64| if a > 0 && b > a { (b - a) as f64 / 1e6 } else { 0.0 };
    let trig_secs = secs(first_send, stats.last_ack_us.load(Ordering::Relaxed));
    let triggers = Triggers {
        attempted: stats.attempted.load(Ordering::Relaxed),
        accepted,
        rejected: stats.rejected.load(Ordering::Relaxed),
        errors: stats.errors.load(Ordering::Relaxed),
        shed: stats.shed.load(Ordering::Relaxed),
        seconds: trig_secs,
        per_s: per_s(accepted, trig_secs),
        outcomes: stats.statuses.lock().expect("status lock").clone(),
        first_error: stats.first_error.lock().expect("error lock").clone(),
    };
    let expected_by_group = plan.expected(accepted);
    let mut overall = new_histogram();
    let mut groups = vec![];
    for (i, g) in plan.groups.iter().enumerate() {
        let gs = &st.groups[i];
        let h = gs.latency_us.lock().expect("histogram lock").clone();
        let received = gs.received.load(Ordering::Relaxed);
        if g.expected {
            overall.add(&h).context("merging histograms")?;
        }
        groups.push(GroupReport {
            name: g.name.clone(),
            endpoints: plan.endpoints.iter().filter(|e| e.group == i).count(),
            counted: g.expected,
            expected: expected_by_group[i],
            received,
            lost: if g.expected { expected_by_group[i].saturating_sub(received) } else { 0 },
            duplicates: gs.duplicates.load(Ordering::Relaxed),
            latency_ms: Latency::from_us(&h),
        });
    }
    let expected = plan.expected_total(accepted);
    let received: u64 = groups.iter().filter(|g| g.counted).map(|g| g.received).sum();
    let lost: u64 = groups.iter().map(|g| g.lost).sum();
    let del_secs = secs(first_send, st.last_receipt_us.load(Ordering::Relaxed));
    let deliveries = Deliveries {
        expected,
        received,
        lost,
        duplicates: st.duplicates.load(Ordering::Relaxed),
        seconds: del_secs,
        per_s: per_s(received, del_secs),
        sink_requests: st.requests.load(Ordering::Relaxed),
        failed_by_design: st.failed_by_design.load(Ordering::Relaxed),
        hung: st.hung.load(Ordering::Relaxed),
        bad_signature: st.bad_signature.load(Ordering::Relaxed),
        bad_request: st.bad_request.load(Ordering::Relaxed),
    };
    let rate_limit = plan.endpoints.iter().find_map(|e| e.rate_limit).map(|(per_second, _)| {
        let stats = st.endpoint_stats();
        let limited: Vec<_> =
            plan.endpoints.iter().zip(&stats).filter(|(e, _)| e.rate_limit.is_some()).map(|(_, s)| *s).collect();
        let rates: Vec<f64> = limited
            .iter()
            .filter(|s| s.last_us > s.first_us)
            .map(|s| (s.received - 1) as f64 / ((s.last_us - s.first_us) as f64 / 1e6))
            .collect();
        RateLimitReport {
            meaningful: true,
            configured_per_s: per_second,
            max_observed_per_s: limited.iter().map(|s| s.max_per_sec).max().unwrap_or(0),
            mean_observed_per_s: if rates.is_empty() {
                0.0
            } else {
                (rates.iter().sum::<f64>() / rates.len() as f64 * 10.0).round() / 10.0
            },
        }
    });
    let mut problems = vec![];
    if let Some(why) = died {
        problems.push(format!("hookline exited during the run: {why}"));
    }
    if accepted == 0 {
        problems.push("no trigger was accepted".into());
    }
    if triggers.attempted > accepted {
        problems.push(format!("{} trigger(s) not accepted", triggers.attempted - accepted));
    }
    if triggers.shed > 0 {
        problems.push(format!("{} trigger(s) shed: the generator could not keep the rate", triggers.shed));
    }
    if lost > 0 {
        problems
            .push(format!("{lost} delivery(ies) lost (not received within {} s of the last trigger)", args.deadline));
    }
    if deliveries.bad_signature > 0 {
        problems.push(format!("{} delivery(ies) with a bad signature", deliveries.bad_signature));
    }
    Ok(Report {
        tool: format!("hookline-loadtest {}", env!("CARGO_PKG_VERSION")),
        scenario: format!("{} ({})", s.key, s.name),
        title: s.title.into(),
        note: s.note.map(Into::into),
        started_at_unix_s: first_send / 1_000_000,
        topic_prefix: prefix.clone().unwrap_or_else(|| "unknown".into()),
        target: target_desc,
        params: Params {
            path: args.path.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default(),
            count,
            rate: args.rate,
            duration_s: gen_duration.as_secs_f64(),
            deadline_s: args.deadline,
            batch: args.batch,
            concurrency,
            endpoints: plan.endpoints.len(),
            partitions: args.partitions,
            verify_signatures: args.verify_signatures,
            payload_pad_bytes: args.payload_bytes,
            warmup_s: args.warmup,
        },
        triggers,
        deliveries,
        latency_ms: Latency::from_us(&overall),
        groups,
        rate_limit,
        processes,
        lag,
        projector_lag: match &prefix {
            Some(p) => format!("the {p}projector lines above (deliveries and events topics)"),
            None => "n/a (no --prefix)".into(),
        },
        timeline,
        hookline_stop,
        host: Host {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            loadavg_start,
            loadavg_end: Host::loadavg(),
            broker_topics: footprint.map(|f| f.0),
            broker_partitions: footprint.map(|f| f.1),
        },
        verdict: Verdict { ok: problems.is_empty(), problems },
    })
}

/// Above this many partitions before a run, the tool warns: a fresh stack holds 2 and each
/// Hookline installation adds 121; a stack measured ~8x slower at the p99 held
/// ~1,190 (with the keyspaces of the same tests).
const LEFTOVER_PARTITIONS: usize = 500;

/// (topics, partitions) on the broker, or `None` when it does not answer within 10 s.
async fn broker_footprint(brokers: &str) -> Option<(usize, usize)> {
    let kafka = kafka_options(brokers).ok()?;
    tokio::task::spawn_blocking(move || hookline_kafka::admin::footprint(&kafka, Duration::from_secs(10)))
        .await
        .ok()?
        .ok()
}

/// The default Kafka client settings, pointed at `brokers`.
fn kafka_options(brokers: &str) -> anyhow::Result<hookline_config::KafkaOptions> {
    let mut kafka = hookline_config::Config::defaults()?.kafka;
    kafka.brokers = brokers.to_string();
    Ok(kafka)
}
