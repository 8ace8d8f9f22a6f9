//! `leadrouter`: the command line (DESIGN §12). Flags with environment fallbacks, logging,
//! the admin token, signals; everything else is `leadrouter::server`. `leadrouter operator`
//! (`operator_cli`) is a client of a running node's admin API.

mod operator_cli;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use leadrouter::api::limits::AdmissionLimits;
use leadrouter::buyers::BuyerTrust;
use leadrouter::clock::SystemClock;
use leadrouter::domain::dedup::DedupSecret;
use leadrouter::domain::retry::RetryPolicy;
use leadrouter::server::{self, FileConfig, RedisOptions, ServerOptions};
use leadrouter::store::journal::JournalOptions;
use rand::distributions::Alphanumeric;
use rand::Rng;

/// Real-time lead distribution server: validates leads, runs ping-post auctions, round
/// robin, ping trees and bidding, delivers to buyers and draws from prepaid balances.
#[derive(Debug, Parser)]
#[command(name = "leadrouter", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// TOML file with verticals, suppliers, buyers, campaigns and opening top-ups.
    /// Without it the market starts empty, to be built with the admin API (`leadrouter
    /// demo` serves the bundled demo market).
    #[arg(long, env = "LEADROUTER_CONFIG")]
    config: Option<PathBuf>,

    /// Public listener: supplier and buyer HTTP API.
    #[arg(long, env = "LEADROUTER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Ops listener: admin API, /metrics, /healthz, /readyz.
    #[arg(long, env = "LEADROUTER_OPS_LISTEN", default_value = "127.0.0.1:9090", global = true)]
    ops_listen: SocketAddr,

    /// gRPC listener for the ledger stream.
    #[arg(long, env = "LEADROUTER_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    grpc_listen: SocketAddr,

    /// Directory for embedded storage and the generated admin token.
    #[arg(long, env = "LEADROUTER_DATA_DIR", default_value = "./data", global = true)]
    data_dir: PathBuf,

    /// Bearer token for the admin API. When absent, one is generated into
    /// <data-dir>/admin-token (mode 0600) and reused on later starts (`leadrouter operator`
    /// reads it from there too).
    #[arg(long, env = "LEADROUTER_ADMIN_TOKEN", hide_env_values = true, global = true)]
    admin_token: Option<String>,

    /// The secret dedup keys are made under (64 hex digits, e.g. `openssl rand -hex 32`).
    /// When absent, one is generated into <data-dir>/dedup-secret (mode 0600) and kept.
    /// Every node on one Redis needs the same one; never change it on a store with sales.
    #[arg(long, env = "LEADROUTER_DEDUP_SECRET", hide_env_values = true, value_parser = parse_dedup_secret)]
    dedup_secret: Option<DedupSecret>,

    /// Redis to share state between several nodes: one Redis, redis://host:6379/, or
    /// a Redis Cluster by its seed nodes, redis+cluster://host:7000[,host:7001...] (one
    /// reachable seed is enough; the others are tried when it is down; a password goes
    /// before the first seed: redis+cluster://:password@host:7000,host:7001). Every node of
    /// a deployment names the same Redis and starts from the same --config.
    #[arg(long, env = "LEADROUTER_REDIS", hide_env_values = true)]
    redis: Option<String>,

    /// Prefix of every Redis key, so several deployments can share one Redis.
    #[arg(long, env = "LEADROUTER_REDIS_PREFIX", default_value = "lr:")]
    redis_prefix: String,

    /// Outbox (async leads, notifications): delay before the first retry, doubling after
    /// each failure, with jitter.
    #[arg(long, env = "LEADROUTER_OUTBOX_RETRY_BASE_MS", default_value_t = 2_000)]
    outbox_retry_base_ms: u64,

    /// Outbox: the longest delay between two attempts.
    #[arg(long, env = "LEADROUTER_OUTBOX_RETRY_MAX_MS", default_value_t = 900_000)]
    outbox_retry_max_ms: u64,

    /// Outbox: attempts in all before a delivery is dead-lettered for an operator.
    #[arg(long, env = "LEADROUTER_OUTBOX_ATTEMPTS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    outbox_attempts: u32,

    /// Embedded journal: a segment is sealed and the next begun once it reaches this many
    /// bytes (retention removes whole segments).
    #[arg(long, env = "LEADROUTER_JOURNAL_SEGMENT_BYTES", default_value_t = 64 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(4096..))]
    journal_segment_bytes: u64,

    /// Embedded journal: at most one checkpoint per this many milliseconds (each costs the
    /// size of the state; a restart replays what came after the last one).
    #[arg(long, env = "LEADROUTER_CHECKPOINT_EVERY_MS", default_value_t = 10_000)]
    checkpoint_every_ms: u64,

    /// Embedded journal: remove whole segments older than this many days that are past
    /// every return window, covered by a checkpoint and read by every registered ledger
    /// consumer (0 keeps everything).
    #[arg(long, env = "LEADROUTER_RETAIN_DAYS", default_value_t = leadrouter::retention::DEFAULT_RETAIN_DAYS)]
    retain_days: u32,

    /// Open connections per listener; past it a new connection is answered 503 and closed.
    #[arg(long, env = "LEADROUTER_MAX_CONNECTIONS", default_value_t = AdmissionLimits::default().connections_max as u32, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,

    /// Open connections from one client address per listener (behind a proxy every client
    /// shares the proxy's address: raise it there).
    #[arg(long, env = "LEADROUTER_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = AdmissionLimits::default().connections_per_address_max as u32, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_address: u32,

    /// Requests in flight for one supplier or buyer key (of 8,192 in all), so that one key
    /// holder cannot take every place; past it the answer is 503 `overloaded`.
    #[arg(long, env = "LEADROUTER_MAX_IN_FLIGHT_PER_KEY", default_value_t = AdmissionLimits::default().in_flight_per_key_max as u32, value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight_per_key: u32,

    /// Milliseconds a client has, from the start of its request, to send the whole body
    /// (bulk CSV bodies get at least 60 s); past it the answer is 408.
    #[arg(long, env = "LEADROUTER_BODY_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(100..))]
    body_timeout_ms: u64,

    /// PEM file of CA certificates that buyers' https certificates may chain to, besides the
    /// public roots built in (for buyers behind a private CA).
    #[arg(long, env = "LEADROUTER_BUYER_CA_FILE")]
    buyer_ca_file: Option<PathBuf>,

    /// Log format: one line per event, human-readable or JSON.
    #[arg(long, env = "LEADROUTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The exit code after a journal write failed (EX_IOERR of sysexits.h).
const EXIT_STORAGE_FAILED: i32 = 74;

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default without a subcommand). Without --config the market starts empty,
    /// to be built with the admin API; the demo runs only with no flags at all on a fresh
    /// data dir (or one the demo made).
    Serve,
    /// Serve the bundled demo market: public demo keys, opening top-ups. Never in production.
    Demo,
    /// Tools for the embedded journal under --data-dir.
    Journal {
        #[command(subcommand)]
        action: JournalAction,
    },
    /// Copies --data-dir (also while a node serves on it) into a new directory that
    /// `leadrouter --data-dir DIR` starts from.
    Backup {
        /// The copy: a new or empty directory.
        #[arg(long)]
        to: PathBuf,
    },
    /// Operator accounts (console sign-in) on a running node, through its admin API
    /// (--ops-url; the admin token from --admin-token or <data-dir>/admin-token). Exit codes:
    /// 64 no admin token or a bad URL, 65 a name or password refused (422 included), 67 no
    /// such operator, 69 node unreachable, 75 node unavailable (503), 77 admin token
    /// refused (401).
    Operator {
        #[command(subcommand)]
        action: OperatorAction,
        /// The node's ops listener, e.g. http://127.0.0.1:9090 (default: http:// and
        /// --ops-listen).
        #[arg(long, env = "LEADROUTER_OPS_URL", global = true)]
        ops_url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum OperatorAction {
    /// Adds an operator, or sets a new password for one. The password (at least 12
    /// characters) is read from the terminal without echo, or from the first line of
    /// standard input when that is not a terminal; it is hashed here (Argon2id) and only
    /// the hash is sent.
    Add {
        /// 1 to 64 of a-z, 0-9, '.', '_' and '-', beginning with a letter or a digit.
        name: String,
    },
    /// Removes an operator.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
enum JournalAction {
    /// Checks every segment's checksums and sequences, the sale indexes and the checkpoint;
    /// exits 1 naming any damage (the journal is only read, also while a node serves).
    Verify,
    /// Removes what retention allows now (--retain-days) and prints what it did and why the
    /// oldest remaining segment stays. A serving node compacts by itself after every
    /// checkpoint and hourly (or on `POST /admin/v1/journal/compact`); this refuses to run
    /// on a data dir a node is serving.
    Compact {
        /// Print what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Judge ages as of this time (RFC 3339) instead of now: what would go on that day.
        #[arg(long, value_parser = parse_time)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    },
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&chrono::Utc)).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The allocator: mimalloc, not the system's. Measured on direct posts sold by a sync
/// webhook, against glibc's malloc in the same run (BENCHMARKS.md, "Running for months").
#[cfg(not(feature = "count-allocs"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The same allocator, counting its allocations for `/metrics` (feature `count-allocs`,
/// for profiles only: see `telemetry::allocations`).
#[cfg(feature = "count-allocs")]
#[global_allocator]
static ALLOCATOR: leadrouter::telemetry::allocations::Counting<mimalloc::MiMalloc> =
    leadrouter::telemetry::allocations::Counting(mimalloc::MiMalloc);

fn main() {
    // Errors are printed as one chain of causes, never with a backtrace: an operator reads
    // "in market.toml: line 12: campaigns[3].buyer_id: ...", not a stack.
    if let Err(error) = try_main() {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn try_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match &cli.command {
        Some(Command::Journal { action: JournalAction::Verify }) => {
            return verify_journal(&cli.data_dir.join("journal"))
        }
        Some(Command::Journal { action: JournalAction::Compact { dry_run, as_of } }) => {
            return compact_journal(&cli.data_dir, retain(cli.retain_days), *dry_run, *as_of)
        }
        Some(Command::Backup { to }) => {
            let copied = leadrouter::store::backup::backup(&cli.data_dir, to)?;
            println!(
                "{}",
                serde_json::json!({"backup": to, "segments": copied.segments, "bytes": copied.bytes, "checkpoint": copied.checkpoint})
            );
            return Ok(());
        }
        Some(Command::Operator { action, ops_url }) => {
            let (add, name) = match action {
                OperatorAction::Add { name } => (true, name),
                OperatorAction::Remove { name } => (false, name),
            };
            let command = operator_cli::OperatorCommand {
                add,
                name,
                ops_url: ops_url.as_deref(),
                ops_listen: cli.ops_listen,
                admin_token: cli.admin_token.as_deref(),
                data_dir: &cli.data_dir,
            };
            std::process::exit(operator_cli::run(&command));
        }
        Some(Command::Serve | Command::Demo) | None => {}
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Checked before anything is written; the problem is named without the URL, which may
    // hold a password.
    if let Some(url) = &cli.redis {
        if let Err(problem) = leadrouter::store::redis::RedisTarget::parse(url) {
            bail!("--redis: {problem}");
        }
    }
    leadrouter::store::files::create_dir_all(&cli.data_dir)
        .with_context(|| format!("creating {}", cli.data_dir.display()))?;
    let asked_for_demo = matches!(cli.command, Some(Command::Demo));
    let mut config_file: Option<(PathBuf, String)> = None;
    let market = market_source(&cli.data_dir)?;
    let (config, demo) = match &cli.config {
        Some(path) if asked_for_demo => {
            bail!("`leadrouter demo` serves the bundled market; it takes no --config ({})", path.display())
        }
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let parsed = FileConfig::parse(&text).with_context(|| format!("in {}", path.display()))?;
            config_file = Some((path.clone(), text));
            (parsed, false)
        }
        None if asked_for_demo || (no_flags_at_all() && market.as_deref().is_none_or(|m| m == DEMO_MARKET)) => {
            (FileConfig::parse(server::DEMO_CONFIG).context("the bundled demo configuration")?, true)
        }
        None => {
            tracing::warn!(
                data_dir = %cli.data_dir.display(),
                "no --config: the market starts empty (plus what the admin API built on this data dir); \
                 `leadrouter demo` serves the demo market"
            );
            (FileConfig::default(), false)
        }
    };
    if demo && market.as_deref().is_some_and(|m| m != DEMO_MARKET) {
        bail!("{} holds another market: the demo runs on a data dir of its own", cli.data_dir.display());
    }
    // Read before the token is written, like the configuration: a failed start writes none.
    let buyer_trust = buyer_trust(cli.buyer_ca_file.as_deref())?;
    // Only once the configuration reads: a start that fails on it writes no token.
    let (admin_token, new_token) = match cli.admin_token.clone() {
        Some(token) if token.len() >= 16 => (token, false),
        Some(_) => bail!("--admin-token must be at least 16 characters"),
        None => admin_token_of(&cli.data_dir),
    };
    mark_market_source(&cli.data_dir, if demo { DEMO_MARKET } else { "operator" })?;
    let supplier_keys: Vec<(String, String)> =
        config.market.suppliers.iter().map(|s| (s.id.clone(), s.api_key.clone())).collect();
    let options = ServerOptions {
        data_dir: cli.data_dir.clone(),
        listen: cli.listen,
        ops_listen: cli.ops_listen,
        grpc_listen: cli.grpc_listen,
        admin_token: admin_token.clone(),
        config,
        clock: Arc::new(SystemClock),
        retry: RetryPolicy {
            base: Duration::from_millis(cli.outbox_retry_base_ms),
            cap: Duration::from_millis(cli.outbox_retry_max_ms),
            attempts_max: cli.outbox_attempts,
        },
        redis: cli.redis.map(|url| RedisOptions { url, prefix: cli.redis_prefix }),
        journal: JournalOptions { segment_bytes: cli.journal_segment_bytes },
        checkpoint_every: Duration::from_millis(cli.checkpoint_every_ms),
        retain_days: retain(cli.retain_days),
        limits: AdmissionLimits {
            connections_max: cli.max_connections as usize,
            connections_per_address_max: cli.max_connections_per_address as usize,
            in_flight_per_key_max: cli.max_in_flight_per_key as usize,
            body_timeout: Duration::from_millis(cli.body_timeout_ms),
        },
        dedup_secret: cli.dedup_secret,
        buyer_trust,
    };
    // Two nodes writing one journal would corrupt it; the kernel drops the lock with the
    // process, however it ends.
    let _lock = match &options.redis {
        None => Some(lock_data_dir(&cli.data_dir)?),
        Some(_) => None,
    };
    // The token is written before the node answers (a client that saw /readyz reads it),
    // and only once the listeners' addresses are known to be free: a start that fails on a
    // busy port leaves no token behind.
    for addr in [options.listen, options.ops_listen, options.grpc_listen] {
        drop(std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?);
    }
    if new_token {
        write_admin_token(&cli.data_dir, &admin_token)?;
    }
    let running = match server::start(options).await {
        Ok(running) => running,
        Err(server::ServerError::Config(message)) if config_file.is_some() => {
            // The market is checked whole once built: name the file and the object's line.
            let (path, text) = config_file.unwrap_or_default();
            let id = message.split('"').nth(1).unwrap_or_default();
            let line = FileConfig::line_of_object(&text, id).map(|n| format!("line {n}: ")).unwrap_or_default();
            bail!("in {}: {line}{message}", path.display())
        }
        Err(error) => return Err(error.into()),
    };
    tracing::info!(addr = %running.public_addr, "public API listening");
    tracing::info!(addr = %running.ops_addr, "ops API listening (admin, /metrics, /healthz, /readyz)");
    tracing::info!(addr = %running.grpc_addr, "ledger stream listening (gRPC, with health and reflection)");
    if demo {
        tracing::warn!(
            "DEMO MARKET: its public keys are accepted and its top-ups booked; for trying leadrouter only, \
             never for real leads (serve with --config FILE)"
        );
        for (id, key) in &supplier_keys {
            tracing::warn!(supplier = %id, api_key = %key, "demo market loaded; demo supplier key");
        }
    }
    let failure = tokio::select! {
        _ = shutdown_signal() => None,
        reason = running.storage_failed() => Some(reason),
    };
    tracing::info!("shutting down: no new requests, finishing in-flight ones");
    running.shutdown().await;
    if let Some(reason) = failure {
        // Exit non-zero so that a supervisor restarts the node into recovery, which reads
        // back exactly what reached the disk.
        tracing::error!(%reason, "stopped: the journal could not be written");
        std::process::exit(EXIT_STORAGE_FAILED);
    }
    tracing::info!("stopped");
    Ok(())
}

/// What `<data-dir>/market` says served this data dir before: the demo, or an operator's
/// market (None: a fresh data dir, or one from before the file was written).
const DEMO_MARKET: &str = "demo";

fn market_source(data_dir: &Path) -> anyhow::Result<Option<String>> {
    let fresh = !data_dir.join("journal").exists();
    match std::fs::read_to_string(data_dir.join("market")) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            // A data dir with a journal but no mark holds a market of unknown origin: never
            // the demo's to take over.
            Ok((!fresh).then(|| "unknown".to_string()))
        }
        Err(error) => Err(error).with_context(|| format!("reading {}", data_dir.join("market").display())),
    }
}

fn mark_market_source(data_dir: &Path, source: &str) -> anyhow::Result<()> {
    let path = data_dir.join("market");
    if std::fs::read_to_string(&path).is_ok_and(|text| text.trim() == source) {
        return Ok(());
    }
    leadrouter::store::files::write_atomic(&path, format!("{source}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// `leadrouter` with no argument: what the README's first command runs (DESIGN §12: "with
/// no flags ... the bundled demo configuration"), the one case where the demo starts without
/// being named. Environment settings (ports, a data dir) are not flags; a data dir holding
/// another market still never gets the demo.
fn no_flags_at_all() -> bool {
    std::env::args_os().len() == 1
}

/// The roots buyers' https certificates may chain to: the public ones, plus `--buyer-ca-file`.
/// A file that cannot be used stops the start: every call to the buyers behind that CA would
/// fail, one trace at a time.
fn buyer_trust(ca_file: Option<&Path>) -> anyhow::Result<BuyerTrust> {
    let Some(path) = ca_file else {
        return Ok(BuyerTrust::public());
    };
    let trust = BuyerTrust::with_ca_file(path).with_context(|| format!("--buyer-ca-file {}", path.display()))?;
    tracing::info!(path = %path.display(), certificates = trust.added(), "buyer CA file added to the roots");
    Ok(trust)
}

fn retain(days: u32) -> Option<u32> {
    (days > 0).then_some(days)
}

/// Holds `<data-dir>/lock` for as long as the process runs; fails when another node does.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join("lock");
    let file = leadrouter::store::files::options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!("another leadrouter is serving {} (it holds {})", data_dir.display(), path.display())
        }
        Err(std::fs::TryLockError::Error(error)) => Err(error).with_context(|| format!("locking {}", path.display())),
    }
}

/// `leadrouter journal compact`: retention now, on a data dir no node serves.
fn compact_journal(
    data_dir: &Path,
    retain_days: Option<u32>,
    dry_run: bool,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<()> {
    if !data_dir.join("journal").is_dir() {
        bail!("no journal at {}", data_dir.join("journal").display());
    }
    let _lock = lock_data_dir(data_dir).context(
        "a serving node compacts its journal by itself after every checkpoint and hourly; \
         to compact now, POST /admin/v1/journal/compact on its ops listener",
    )?;
    let now = as_of.unwrap_or_else(chrono::Utc::now);
    let report = leadrouter::retention::compact_offline(data_dir, now, retain_days, dry_run)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// `leadrouter journal verify`: prints what it checked and every finding; exit 1 on damage.
fn verify_journal(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!("no journal at {}", dir.display());
    }
    let report = leadrouter::store::journal::verify::verify(dir, 0, u64::MAX)
        .with_context(|| format!("reading {}", dir.display()))?;
    println!(
        "{}: {} segments, {} bytes, sequences {}..={} ({} events)",
        dir.display(),
        report.segments,
        report.bytes,
        report.first_sequence,
        report.last_sequence,
        report.events
    );
    if let Some(torn) = &report.torn_tail {
        println!("note: {torn} (an unacknowledged write cut short by a crash; the next start cuts it)");
    }
    for finding in &report.damage {
        println!("DAMAGE: {finding}");
    }
    if report.damage.is_empty() {
        println!("ok");
        Ok(())
    } else {
        println!("{} problem(s) found", report.damage.len());
        std::process::exit(1);
    }
}

/// Reads `<data-dir>/admin-token`, or makes a fresh random token; answers whether it is new
/// (`write_admin_token` writes it once the node has started: a failed start writes none).
fn parse_dedup_secret(text: &str) -> Result<DedupSecret, String> {
    DedupSecret::from_hex(text).ok_or_else(|| "64 hex digits (openssl rand -hex 32)".to_string())
}

fn admin_token_of(data_dir: &Path) -> (String, bool) {
    let path = data_dir.join("admin-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let token = existing.trim().to_string();
        if token.len() >= 16 {
            tracing::info!(path = %path.display(), "admin token read");
            return (token, false);
        }
    }
    (rand::thread_rng().sample_iter(&Alphanumeric).take(40).map(char::from).collect(), true)
}

/// Writes a generated admin token to `<data-dir>/admin-token`, mode 0600.
fn write_admin_token(data_dir: &Path, token: &str) -> anyhow::Result<()> {
    let path = data_dir.join("admin-token");
    leadrouter::store::files::write_atomic(&path, format!("{token}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "admin token generated");
    Ok(())
}

fn init_logging(format: LogFormat) {
    // redis-rs's cluster client warns on every failed connection attempt to a shard (dozens
    // a second while a cluster is away); the node's own warnings say it once.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,redis=error"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
