//! The `signalbox` binary: `serve` and the operator commands. Thin by design: it parses flags,
//! reads configuration, opens the store and hands over to the library crates.

mod admin;
mod config;
mod console_load;
mod custody_cmd;
mod feedback_cmd;
mod feedback_import;
mod feedback_load;
mod flags_cmd;
mod forecast_cmd;
mod forecast_serve;
mod freshness;
mod jobs_cmd;
mod jobs_worker;
mod llm_load;
mod loadtest_cmd;
mod ratelimit_load;
mod report_cmd;
mod sentiment_cmd;
mod serve;
mod weber_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use config::{FileConfig, LogFormat};

#[derive(Parser, Debug)]
#[command(
    name = "signalbox",
    version,
    about = "Self-hosted, multi-tenant signal platform",
    long_about = "Self-hosted, multi-tenant signal platform.\n\n\
        Settings come from, lowest precedence first: built-in defaults, the TOML file given with \
        --config, environment variables, then flags. Each flag names its variable below."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes, so `tenants` and `keys` reach the same store as `serve`.
#[derive(clap::Args, Debug)]
struct GlobalArgs {
    /// TOML configuration file.
    #[arg(long, global = true, env = "SIGNALBOX_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for the embedded database and other local state [default: ./data].
    #[arg(long, global = true, env = "SIGNALBOX_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// `postgres://…` to keep state in PostgreSQL instead of the embedded SQLite file in the
    /// data directory (`sqlite://PATH` is accepted too).
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    database_url: Option<String>,
    /// PostgreSQL schema for signalbox's tables (created if missing) [default: the server's search_path].
    #[arg(
        long,
        global = true,
        env = "SIGNALBOX_DATABASE_SCHEMA",
        value_name = "NAME"
    )]
    database_schema: Option<String>,
    /// Log line format, on stderr [default: human].
    #[arg(long, global = true, env = "SIGNALBOX_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP server.
    Serve(Box<serve::ServeArgs>),
    /// Create and list tenants (operator commands; safe while the server runs).
    #[command(subcommand)]
    Tenants(admin::TenantsCommand),
    /// Create, list and revoke API keys (operator commands; safe while the server runs).
    #[command(subcommand)]
    Keys(admin::KeysCommand),
    /// Load-test an HTTP endpoint on this machine and report throughput and latency.
    Loadtest(loadtest_cmd::LoadtestArgs),
    /// Score text lines from stdin with VADER; one JSON object per line on stdout, in order.
    Sentiment,
    /// Weber sensitivity profiles from review files.
    #[command(subcommand)]
    Weber(weber_cmd::WeberCommand),
    /// Import, export and list a tenant's feature flags per environment (GitOps; safe while the
    /// server runs).
    #[command(subcommand)]
    Flags(flags_cmd::FlagsCommand),
    /// Analog-ensemble weather forecasts: build a model from station data, run it, verify it.
    #[command(subcommand)]
    Forecast(forecast_cmd::ForecastCommand),
    /// Background jobs: run workers, measure throughput.
    #[command(subcommand)]
    Jobs(jobs_cmd::JobsCommand),
    /// The feedback engine: redact personal data in text lines.
    #[command(subcommand)]
    Feedback(feedback_cmd::FeedbackCommand),
    /// The tamper-evident audit log: verify it offline, export checkpoints, prove records.
    #[command(subcommand)]
    Audit(custody_cmd::AuditCommand),
    /// Master keys for encryption at rest: generate a keyring, rewrap data keys after rotation.
    #[command(subcommand)]
    Keyring(custody_cmd::KeyringCommand),
}

/// Settings shared by every command, resolved from flags, environment and file.
pub(crate) struct Common {
    pub file: FileConfig,
    pub data_dir: PathBuf,
    pub store: store::StoreOptions,
    pub log_format: LogFormat,
}

impl Common {
    pub(crate) fn resolve(global: GlobalArgs) -> anyhow::Result<Common> {
        let file = FileConfig::load(global.config.as_deref())?;
        let data_dir = global
            .data_dir
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./data"));
        let mut store = match global.database_url.or_else(|| file.database_url.clone()) {
            Some(url) => {
                store::Backend::from_url(&url).map_err(|e| anyhow::anyhow!("database_url: {e}"))?;
                store::StoreOptions::from_url(url)
            }
            None => store::StoreOptions::sqlite_in(&data_dir),
        };
        store.schema = global
            .database_schema
            .or_else(|| file.database_schema.clone());
        let log_format = global
            .log_format
            .or(file.log_format)
            .unwrap_or(LogFormat::Human);
        Ok(Common {
            file,
            data_dir,
            store,
            log_format,
        })
    }

    pub(crate) async fn open_store(&self) -> anyhow::Result<store::Store> {
        store::Store::connect(&self.store)
            .await
            .map_err(|e| anyhow::anyhow!("database: {e}"))
    }
}

/// Logs go to stderr so that commands can print JSON on stdout. The filter comes from
/// `SIGNALBOX_LOG` (or `RUST_LOG`), e.g. `SIGNALBOX_LOG=debug` for one line per request.
fn init_logging(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("SIGNALBOX_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    match cli.command {
        Command::Loadtest(args) => {
            let data_dir = global.data_dir.unwrap_or_else(|| PathBuf::from("./data"));
            loadtest_cmd::run(args, &data_dir).await
        }
        Command::Sentiment => sentiment_cmd::run(),
        Command::Feedback(cmd) => match cmd {
            // CPU-bound on stdin and stdout; needs neither the store nor the runtime.
            feedback_cmd::FeedbackCommand::Redact(args) => {
                tokio::task::block_in_place(|| feedback_cmd::redact_lines(args))
            }
            feedback_cmd::FeedbackCommand::Keys(cmd) => {
                let common = Common::resolve(global)?;
                init_logging(common.log_format, "warn");
                feedback_cmd::keys(common, cmd).await
            }
            feedback_cmd::FeedbackCommand::Report(cmd) => report_cmd::run(global, cmd).await,
            feedback_cmd::FeedbackCommand::Import(args) => {
                let common = Common::resolve(global)?;
                init_logging(common.log_format, "warn");
                feedback_import::import(common, *args).await
            }
            feedback_cmd::FeedbackCommand::Reconcile(args) => {
                let common = Common::resolve(global)?;
                init_logging(common.log_format, "warn");
                feedback_import::reconcile(common, *args).await
            }
        },
        // CPU-bound and file-bound; the runtime is not needed.
        Command::Forecast(cmd) => tokio::task::block_in_place(|| forecast_cmd::run(cmd)),
        Command::Weber(cmd) => {
            let common = Common::resolve(global)?;
            // CPU-bound work on its own threads; the runtime is only used to reach the store.
            tokio::task::block_in_place(|| weber_cmd::run(&common, cmd))
        }
        Command::Serve(args) => {
            let common = Common::resolve(global)?;
            init_logging(common.log_format, "info");
            serve::run(common, *args).await
        }
        Command::Tenants(cmd) => {
            let common = Common::resolve(global)?;
            init_logging(common.log_format, "warn");
            admin::tenants(common, cmd).await
        }
        Command::Keys(cmd) => {
            let common = Common::resolve(global)?;
            init_logging(common.log_format, "warn");
            admin::keys(common, cmd).await
        }
        Command::Flags(cmd) => {
            let common = Common::resolve(global)?;
            init_logging(common.log_format, "warn");
            flags_cmd::run(common, cmd).await
        }
        Command::Jobs(cmd) => {
            let common = Common::resolve(global)?;
            // A worker process logs like a server; the other commands print JSON.
            let level = match cmd {
                jobs_cmd::JobsCommand::Work(_) => "info",
                _ => "warn",
            };
            init_logging(common.log_format, level);
            jobs_cmd::run(common, cmd).await
        }
        Command::Audit(cmd) => {
            let common = Common::resolve(global)?;
            init_logging(common.log_format, "warn");
            custody_cmd::audit(common, cmd).await
        }
        Command::Keyring(cmd) => {
            let common = Common::resolve(global)?;
            init_logging(common.log_format, "warn");
            custody_cmd::keyring_command(common, cmd).await
        }
    }
}
