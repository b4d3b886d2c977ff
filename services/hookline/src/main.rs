//! `hookline`: one binary, every role, and the admin commands.

mod roles;
mod shutdown;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use hookline_config::Config;

#[derive(Parser)]
#[command(name = "hookline", version, about = "Webhook delivery, event-sourced on Kafka")]
struct Cli {
    /// TOML config file layered over the defaults (HOOKLINE_* variables override both).
    #[arg(long, short, global = true, env = "HOOKLINE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Api,
    /// Fan triggers out to subscribed endpoints.
    Router,
    /// Deliver webhooks.
    Dispatcher,
    /// Re-dispatch due retries.
    Scheduler,
    /// Project the topics into the CQL read models (`projector rebuild` replays them into a
    /// fresh table set and switches to it).
    Projector {
        #[command(subcommand)]
        action: Option<ProjectorAction>,
    },
    /// Every role in one process.
    All,
    /// Kafka topics.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// The CQL keyspace and tables.
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
    /// Configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Master keys that encrypt endpoint secrets at rest.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
}

#[derive(Subcommand)]
enum SecretsAction {
    /// Print a new master key entry `id:base64` for `secrets.master_keys` (prepend it to rotate).
    NewMasterKey {
        /// Key id (letters, digits, `-`, `_`).
        #[arg(long, default_value = "k1")]
        id: String,
    },
}

#[derive(Subcommand)]
enum ProjectorAction {
    /// Replay every topic from the beginning into a fresh table set, switch readers to it when
    /// caught up, then drop the old set.
    Rebuild,
}

#[derive(Subcommand)]
enum TopicsAction {
    /// Create every topic that is missing (idempotent).
    Create,
}

#[derive(Subcommand)]
enum SchemaAction {
    /// Create the keyspace and tables that are missing (idempotent).
    Migrate,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Load, validate and print the effective configuration.
    Check,
}

/// jemalloc: with glibc's per-thread arenas, fan-out to many endpoints (thousands of concurrent
/// requests) fragmented the heap and the RSS kept growing through a run (745 MB in scenario b,
/// 536 MB with jemalloc; `MALLOC_ARENA_MAX=2` gave 361 MB but is an environment setting).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("hookline: {e}");
            return ExitCode::from(2);
        }
    };
    let tracer_provider = match roles::init_logging(&config.log, &config.telemetry) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("hookline: {e:#}");
            return ExitCode::from(2);
        }
    };
    // Roles that seal or open endpoint secrets refuse to start without a valid master key.
    let needs_keys = matches!(cli.command, Command::Api | Command::Dispatcher | Command::All);
    if needs_keys && let Err(e) = hookline_domain::sealing::MasterKeys::parse(&config.secrets.master_keys) {
        eprintln!(
            "hookline: configuration: invalid value for key `secrets.master_keys` (HOOKLINE_SECRETS__MASTER_KEYS): {e}; \
             `hookline secrets new-master-key` prints a new one"
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hookline: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Api => roles::run_roles(config, &[roles::Role::Api]).await,
            Command::Router => roles::run_roles(config, &[roles::Role::Router]).await,
            Command::Dispatcher => roles::run_roles(config, &[roles::Role::Dispatcher]).await,
            Command::Scheduler => roles::run_roles(config, &[roles::Role::Scheduler]).await,
            Command::Projector { action: None } => roles::run_roles(config, &[roles::Role::Projector]).await,
            Command::Projector { action: Some(ProjectorAction::Rebuild) } => roles::rebuild(config).await,
            Command::All => roles::run_roles(config, roles::Role::ALL).await,
            Command::Topics { action: TopicsAction::Create } => roles::create_topics(&config).await,
            Command::Schema { action: SchemaAction::Migrate } => roles::migrate(&config).await,
            Command::Secrets { action: SecretsAction::NewMasterKey { id } } => {
                match hookline_domain::sealing::MasterKeys::generate_entry(&id) {
                    Ok(entry) => {
                        println!("{}", entry.as_str());
                        Ok(())
                    }
                    Err(e) => Err(anyhow::anyhow!("{e}")),
                }
            }
            Command::Config { action: ConfigAction::Check } => {
                println!("{}", toml_pretty(&config));
                Ok(())
            }
        }
    });
    drop(runtime);
    // Export the last spans.
    if let Some(p) = tracer_provider
        && let Err(e) = p.shutdown()
    {
        eprintln!("hookline: flushing trace spans: {e}");
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exiting");
            eprintln!("hookline: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn toml_pretty(config: &Config) -> String {
    // serde's output of the validated struct; every key is shown, secret values redacted.
    let mut shown = config.clone();
    if !shown.secrets.master_keys.is_empty() {
        shown.secrets.master_keys = "<redacted>".into();
    }
    match toml::to_string_pretty(&shown) {
        Ok(s) => s,
        Err(e) => format!("# cannot render config: {e}"),
    }
}
