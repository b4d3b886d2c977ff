//! Wiring: builds each role from the config and runs the chosen ones under one shutdown token.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hookline_config::{Config, LogOptions, TelemetryOptions};
use hookline_domain::sealing::MasterKeys;
use hookline_kafka::catalog::Catalog;
use hookline_schemas::Codec;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::shutdown;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Api,
    Router,
    Dispatcher,
    Scheduler,
    Projector,
}

impl Role {
    pub const ALL: &'static [Role] = &[Role::Api, Role::Router, Role::Dispatcher, Role::Scheduler, Role::Projector];
}

/// Installs logging (text or JSON lines on stderr) and, when `telemetry.otlp_endpoint` is set,
/// OpenTelemetry export of the spans over OTLP/HTTP. Returns the tracer provider to shut down
/// (flush) at exit. Call before the async runtime exists (the exporter has its own thread).
pub fn init_logging(log: &LogOptions, telemetry: &TelemetryOptions) -> anyhow::Result<Option<SdkTracerProvider>> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        EnvFilter::try_new(&log.level).with_context(|| format!("invalid value {:?} for key `log.level`", log.level))?;
    // Colour only on a terminal: a file, a pipe or journald gets plain text.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = if log.format == "json" { fmt.json().boxed() } else { fmt.boxed() };
    let (otel, provider) = if telemetry.otlp_endpoint.is_empty() {
        (None, None)
    } else {
        use opentelemetry::trace::TracerProvider;
        use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(&telemetry.otlp_endpoint)
            .with_timeout(Duration::from_secs(5))
            .with_headers(Default::default())
            .build()
            .with_context(|| {
                format!("invalid value {:?} for key `telemetry.otlp_endpoint`", telemetry.otlp_endpoint)
            })?;
        let resource = opentelemetry_sdk::Resource::builder().with_service_name(telemetry.service_name.clone()).build();
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
        let tracer = provider.tracer("hookline");
        (Some(tracing_opentelemetry::layer().with_tracer(tracer)), Some(provider))
    };
    // The per-attempt spans are for a trace collector or a debug log; they cost CPU otherwise.
    let finer_than_info = filter.max_level_hint().is_some_and(|l| l >= tracing::level_filters::LevelFilter::DEBUG);
    hookline_dispatcher::trace_attempt_steps(otel.is_some() || finer_than_info);
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
    Ok(provider)
}

/// Runs `roles` until a signal, or until one of them fails (then the others are stopped).
pub async fn run_roles(config: Arc<Config>, roles: &[Role]) -> anyhow::Result<()> {
    let token = shutdown::on_signals();
    run_roles_until(config, roles, token).await
}

/// Runs `roles` until `token` is cancelled (tests inject their own token).
pub async fn run_roles_until(config: Arc<Config>, roles: &[Role], token: CancellationToken) -> anyhow::Result<()> {
    let codec = Arc::new(Codec::new().context("loading the Avro schemas")?);
    let catalog = Catalog::new();
    let mut set: JoinSet<anyhow::Result<()>> = JoinSet::new();
    if !config.telemetry.metrics_listen.is_empty() {
        let addr: std::net::SocketAddr =
            config.telemetry.metrics_listen.parse().context("invalid value for key `telemetry.metrics_listen`")?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics listener {addr}"))?;
        tracing::info!(%addr, "metrics listening");
        let token = token.clone();
        set.spawn(async move {
            let app = axum::Router::new()
                .route(
                    "/metrics",
                    axum::routing::get(|| async {
                        (
                            [(axum::http::header::CONTENT_TYPE, hookline_telemetry::CONTENT_TYPE)],
                            hookline_telemetry::render(),
                        )
                    }),
                )
                .route("/healthz", axum::routing::get(|| async { "ok" }));
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await
                .context("metrics listener")
        });
    }
    if roles.iter().any(|r| matches!(r, Role::Api | Role::Router | Role::Dispatcher)) {
        let (catalog, config, codec, token) = (catalog.clone(), config.clone(), codec.clone(), token.clone());
        set.spawn(async move { catalog.follow(&config.kafka, codec, token).await.context("endpoint catalog") });
    }
    for &role in roles {
        let (config, token, codec, catalog) = (config.clone(), token.clone(), codec.clone(), catalog.clone());
        let keys_config = config.secrets.master_keys.clone();
        let master_keys = move || -> anyhow::Result<Arc<MasterKeys>> {
            MasterKeys::parse(&keys_config)
                .map(Arc::new)
                .map_err(|e| anyhow::anyhow!("invalid value for key `secrets.master_keys`: {e}"))
        };
        set.spawn(async move {
            let r = match role {
                Role::Api => {
                    let kafka = config.kafka.clone();
                    let loaded = catalog.clone();
                    let readiness = hookline_api::Readiness::default()
                        .with("kafka", move || {
                            let kafka = kafka.clone();
                            async move {
                                tokio::task::spawn_blocking(move || {
                                    hookline_kafka::admin::ping(&kafka, Duration::from_secs(2))
                                })
                                .await
                                .map_err(|e| e.to_string())?
                                .map(|_| ())
                                .map_err(|e| e.to_string())
                            }
                        })
                        .with("endpoint_catalog", move || {
                            let ok = loaded.is_loaded();
                            async move { if ok { Ok(()) } else { Err("still loading the endpoints topic".into()) } }
                        });
                    let store = hookline_projector::Store::connect(&config.cql).await.context("connecting to CQL")?;
                    let suffix = hookline_projector::schema::active_suffix(&store)
                        .await
                        .context("reading the active table set (run `hookline schema migrate` first)")?;
                    let probe_store = store.clone();
                    let readiness = readiness.with("cql", move || {
                        let s = probe_store.clone();
                        async move { s.release_version().await.map(|_| ()).map_err(|e| e.to_string()) }
                    });
                    let readers = hookline_api::ReaderHandle::new(hookline_projector::query::Reader { store, suffix });
                    let follower = readers.clone();
                    let t = token.clone();
                    tokio::spawn(async move { follower.follow_active_set(Duration::from_secs(1), t).await });
                    match hookline_api::AppState::new(
                        config.clone(),
                        catalog,
                        codec,
                        readiness,
                        readers,
                        master_keys()?,
                    ) {
                        Ok(state) => hookline_api::run(state, token).await.map_err(anyhow::Error::from),
                        Err(e) => Err(e.into()),
                    }
                }
                Role::Router => hookline_router::run(config, catalog, codec, token).await.map_err(anyhow::Error::from),
                Role::Dispatcher => hookline_dispatcher::run(config, catalog, codec, master_keys()?, token)
                    .await
                    .map_err(anyhow::Error::from),
                Role::Scheduler => hookline_scheduler::run(config, codec, token).await.map_err(anyhow::Error::from),
                Role::Projector => {
                    hookline_projector::role::run(config, codec, token).await.map_err(anyhow::Error::from)
                }
            };
            r.with_context(|| format!("role {role:?}"))
        });
    }
    let mut first_error = None;
    while let Some(joined) = set.join_next().await {
        let outcome = joined.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = outcome {
            tracing::error!(error = format!("{e:#}"), "role failed; stopping the others");
            token.cancel();
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

pub async fn create_topics(config: &Config) -> anyhow::Result<()> {
    let specs = hookline_kafka::admin::topic_specs(&config.kafka, &config.scheduler);
    let outcomes = hookline_kafka::admin::create_topics(&config.kafka, &specs).await?;
    for o in outcomes {
        match o {
            hookline_kafka::admin::TopicOutcome::Created(t) => println!("created {t}"),
            hookline_kafka::admin::TopicOutcome::Existed(t) => println!("exists  {t}"),
        }
    }
    Ok(())
}

pub async fn rebuild(config: Arc<Config>) -> anyhow::Result<()> {
    let codec = Arc::new(Codec::new().context("loading the Avro schemas")?);
    let token = shutdown::on_signals();
    let suffix = hookline_projector::role::rebuild(config, codec, token).await?;
    println!("rebuilt the read models into table set `{suffix}` and switched to it");
    Ok(())
}

pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = hookline_projector::Store::connect(&config.cql).await?;
    let n = hookline_projector::schema::migrate(&store, config.cql.replication_factor, config.projector.retention_days)
        .await?;
    println!("keyspace {} migrated ({n} statements, all idempotent)", config.cql.keyspace);
    Ok(())
}
