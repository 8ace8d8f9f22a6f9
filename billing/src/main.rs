//! `leadrouter-billing`: the billing worker (DESIGN §13, §13.1).
//!
//! `serve` (the default) follows the ledger and serves the API; `run --as-of DATE` and
//! `reconcile` catch up with the ledger when it is reachable, do their work on the same
//! database, print JSON and exit (`reconcile` exits 1 on any discrepancy).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::NaiveDate;
use clap::{Parser, Subcommand};
use leadrouter_billing::api::{self, AppState};
use leadrouter_billing::domain::dunning::DunningPolicy;
use leadrouter_billing::engine::{reconcile, run};
use leadrouter_billing::notify::{self, Backoff};
use leadrouter_billing::store::Db;
use leadrouter_billing::{consume, telemetry};
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(name = "leadrouter-billing", version, about = "Billing worker for leadrouter")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The worker's SQLite database.
    #[arg(long, global = true, env = "LEADROUTER_BILLING_DB", default_value = "./data/billing.db")]
    db: PathBuf,
    /// The router's gRPC ledger stream.
    #[arg(long, global = true, env = "LEADROUTER_BILLING_LEDGER", default_value = "http://127.0.0.1:50051")]
    ledger: String,

    /// The name this worker registers under with the router, so that the router's
    /// retention never removes events it has not applied (empty: do not register).
    #[arg(long, global = true, env = "LEADROUTER_BILLING_CONSUMER", default_value = "billing")]
    consumer: String,
    /// Where the API listens.
    #[arg(long, global = true, env = "LEADROUTER_BILLING_LISTEN", default_value = "127.0.0.1:9191")]
    listen: SocketAddr,
    /// Bearer token of the API; when absent it is read from (or generated into)
    /// `admin-token` beside the database, mode 0600, like the router's.
    #[arg(long, global = true, env = "LEADROUTER_BILLING_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Send notifications by email through this server (`smtp://[user:pass@]host:port`).
    #[arg(long, global = true, env = "LEADROUTER_BILLING_SMTP", hide_env_values = true)]
    smtp: Option<String>,
    /// The sender address of notification emails.
    #[arg(long, global = true, env = "LEADROUTER_BILLING_SMTP_FROM", default_value = "billing@localhost")]
    smtp_from: String,
    /// First retry delay of a failed email; it doubles per attempt.
    #[arg(long, global = true, env = "LEADROUTER_BILLING_SMTP_RETRY_BASE_MS", default_value_t = 5_000)]
    smtp_retry_base_ms: u64,
    /// Longest delay between two attempts of one email.
    #[arg(long, global = true, env = "LEADROUTER_BILLING_SMTP_RETRY_MAX_MS", default_value_t = 900_000)]
    smtp_retry_max_ms: u64,
    /// Dunning tier 1 (reminder): days after the due date.
    #[arg(long, global = true, env = "LEADROUTER_BILLING_REMINDER_AFTER_DAYS", default_value_t = 1)]
    reminder_after_days: u32,
    /// Dunning tier 2 (formal notice): days after the due date.
    #[arg(long, global = true, env = "LEADROUTER_BILLING_NOTICE_AFTER_DAYS", default_value_t = 14)]
    notice_after_days: u32,
    /// The run's date (`run` only): documents of periods that ended before it are issued.
    #[arg(long, global = true, env = "LEADROUTER_BILLING_AS_OF")]
    as_of: Option<NaiveDate>,
    /// Log format (to stderr; `run` and `reconcile` print their JSON on stdout): one line
    /// per event, human-readable or JSON.
    #[arg(long, global = true, env = "LEADROUTER_BILLING_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug, Clone)]
enum Command {
    /// Follow the ledger and serve the API (the default).
    Serve,
    /// Issue every document due on `--as-of`, evaluate dunning, print the run as JSON.
    Run,
    /// Catch up with the ledger to its end, then prove the documents against it; exit 1 on
    /// any discrepancy, 2 when the ledger could not be read (nothing was proven).
    Reconcile {
        /// Prove what the database holds without reading the ledger first.
        #[arg(long)]
        offline: bool,
    },
    /// Copy the database to a new file with SQLite's online backup (also while a worker
    /// serves on it); prints the copy's applied ledger sequence.
    Backup {
        /// The copy to write; must not exist.
        #[arg(long)]
        to: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let code = runtime.block_on(async move {
        match cli.command.clone().unwrap_or(Command::Serve) {
            Command::Serve => serve(cli).await.map(|()| 0),
            Command::Run => run_once(cli).await.map(|()| 0),
            Command::Reconcile { offline } => reconcile_once(cli, offline).await,
            Command::Backup { to } => {
                let applied = leadrouter_billing::store::backup(&cli.db, &to)
                    .with_context(|| format!("backing up {} to {}", cli.db.display(), to.display()))?;
                println!("{}", serde_json::json!({"backup": to, "applied_sequence": applied}));
                Ok(0)
            }
        }
    })?;
    std::process::exit(code);
}

fn policy(cli: &Cli) -> anyhow::Result<DunningPolicy> {
    if cli.notice_after_days < cli.reminder_after_days {
        bail!("--notice-after-days must not be before --reminder-after-days");
    }
    Ok(DunningPolicy { reminder_after_days: cli.reminder_after_days, notice_after_days: cli.notice_after_days })
}

fn open(cli: &Cli) -> anyhow::Result<Db> {
    if let Some(dir) = cli.db.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Db::open(&cli.db).with_context(|| format!("opening {}", cli.db.display()))
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let policy = policy(&cli)?;
    let db = open(&cli)?;
    let token = match &cli.admin_token {
        Some(token) if token.len() >= 16 => token.clone(),
        Some(_) => bail!("--admin-token must be at least 16 characters"),
        None => admin_token_file(cli.db.parent().unwrap_or(Path::new(".")))?,
    };
    telemetry::prometheus();
    telemetry::ledger_start(db.applied()?);
    let (stop, stopped) = watch::channel(false);

    let listener =
        tokio::net::TcpListener::bind(cli.listen).await.with_context(|| format!("binding {}", cli.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "billing API listening");
    let state = Arc::new(AppState { db: db.clone(), token, policy });
    let server = tokio::spawn(api::serve(listener, state, stopped.clone()));
    tracing::info!(ledger = %cli.ledger, "following the ledger");
    let follower = tokio::spawn(consume::follow(db.clone(), source(&cli), stopped.clone()));
    let sender = match &cli.smtp {
        Some(url) => {
            let smtp = notify::parse_smtp_url(url, &cli.smtp_from)?;
            let backoff = Backoff {
                base: Duration::from_millis(cli.smtp_retry_base_ms.max(1)),
                cap: Duration::from_millis(cli.smtp_retry_max_ms.max(cli.smtp_retry_base_ms).max(1)),
            };
            tracing::info!("sending notifications by email");
            Some(tokio::spawn(notify::run_sender(db.clone(), smtp, backoff, stopped.clone())))
        }
        None => None,
    };

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    let _ = server.await;
    let _ = follower.await;
    if let Some(sender) = sender {
        let _ = sender.await;
    }
    Ok(())
}

fn source(cli: &Cli) -> consume::Source {
    let consumer = (!cli.consumer.is_empty()).then(|| cli.consumer.clone());
    consume::Source { url: cli.ledger.clone(), consumer }
}

async fn catch_up(cli: &Cli, db: &Db) {
    match consume::catch_up(db, &source(cli), Duration::from_millis(500)).await {
        Ok(applied) => tracing::info!(applied, "caught up with the ledger"),
        Err(error) => tracing::warn!(%error, "working on what the database holds: the ledger is not reachable"),
    }
}

async fn run_once(cli: Cli) -> anyhow::Result<()> {
    let policy = policy(&cli)?;
    let Some(as_of) = cli.as_of else { bail!("run needs --as-of YYYY-MM-DD") };
    if !(1970..=9999).contains(&chrono::Datelike::year(&as_of)) {
        bail!("--as-of {as_of} is outside the years 1970 to 9999");
    }
    if let Err(message) = run::check_as_of(as_of, chrono::Utc::now()) {
        bail!("--as-of {message}");
    }
    let db = open(&cli)?;
    catch_up(&cli, &db).await;
    let outcome = db.blocking(move |connection| run::run(connection, as_of, policy, chrono::Utc::now())).await?;
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}

/// The exit code of a reconciliation that could not read the ledger.
const EXIT_LEDGER_UNREAD: i32 = 2;

async fn reconcile_once(cli: Cli, offline: bool) -> anyhow::Result<i32> {
    let db = open(&cli)?;
    if !offline {
        // A proof against a ledger read only in part proves nothing: say so, and fail.
        if let Err(error) = consume::catch_up(&db, &source(&cli), Duration::from_millis(500)).await {
            let reason = format!("could not read the ledger at {} to its end: {error}", cli.ledger);
            println!("{}", serde_json::json!({"ok": false, "error": reason}));
            return Ok(EXIT_LEDGER_UNREAD);
        }
    }
    let reconciliation = db.blocking(|connection| reconcile::reconcile(connection)).await?;
    println!("{}", serde_json::to_string(&reconciliation)?);
    Ok(if reconciliation.ok { 0 } else { 1 })
}

/// Reads `admin-token` beside the database, or creates it with a fresh random token, mode
/// 0600. The router writes the same file into its data dir, so a shared dir shares one token.
fn admin_token_file(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("admin-token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_string();
        if token.len() >= 16 {
            return Ok(token);
        }
    }
    let token: String = {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        (0..32).map(|_| format!("{:x}", rng.gen_range(0..16u8))).collect()
    };
    write_private(&path, &token).with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated an admin token");
    Ok(token)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
