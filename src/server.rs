//! Wiring: builds the router from a configuration, binds the listeners, runs the sweeper,
//! and shuts down gracefully. `main` calls it; integration tests start it in-process on
//! ephemeral ports with a clock they control.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::limits::{AdmissionLimits, Connections, Crowded};
use crate::api::{self, AppState, Listener};
use crate::buyers::{BuyerClient, BuyerTrust};
use crate::checkpoints::{self, Checkpoint};
use crate::clock::Clock;
use crate::domain::changes::AdminChange;
use crate::domain::dedup::{DedupKeying, DedupSecret};
use crate::domain::geo::PostalTable;
use crate::domain::market::{ConfigChange, Market, MarketConfig, MarketError};
use crate::domain::money::Money;
use crate::domain::operator::Actor;
use crate::domain::retry::RetryPolicy;
use crate::engine::{AccountsSaid, Deployment, EngineError, OtherNodes, Router, Stores};
use crate::ledger::{self, LedgerService};
use crate::retention::Retention;
use crate::store;
use crate::store::journal::consumers::Consumers;
use crate::store::journal::{verify, InternalRecord, Journal, JournalOptions};
use crate::store::redis::{RedisConnection, RedisTarget};
use crate::store::redis_budget::RedisBudget;
use crate::store::redis_claims::RedisClaims;
use crate::store::redis_config::RedisConfig;
use crate::store::redis_dedup::{RedisDedup, SecretError};
use crate::store::redis_ledger::RedisLedger;
use crate::store::redis_pings::RedisPings;
use crate::store::redis_pull::RedisPull;
use crate::store::{dedup_secret, files};
use crate::store::{ChangeId, ConfigLog, EventLog};
use crate::telemetry;

/// The demo market the server runs when no `--config` is given.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

/// How often expired holds and pings are swept.
const SWEEP_HOLDS_EVERY: Duration = Duration::from_secs(1);
/// How often dedup keys and idempotency records (windows of hours and days) are swept.
const SWEEP_RECORDS_EVERY: Duration = Duration::from_secs(60);
/// A client gets this long to send its request headers (slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// In-flight requests get this long to finish on shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// The configuration file (`--config`, TOML): the market plus opening balances.
///
/// Rationale for the hand-written `Deserialize`: serde cannot combine `flatten` with
/// `deny_unknown_fields`, and a typo in a config file must be an error, so `topups` is taken
/// out first and the rest must be exactly a `MarketConfig`.
#[derive(Debug, Clone, Default)]
pub struct FileConfig {
    pub market: MarketConfig,
    pub topups: Vec<TopUpConfig>,
}

impl<'de> Deserialize<'de> for FileConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<FileConfig, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::deserialize(deserializer)?;
        let topups = match map.remove("topups") {
            Some(topups) => serde_json::from_value(topups).map_err(|e| D::Error::custom(format!("topups: {e}")))?,
            None => Vec::new(),
        };
        let market = serde_path_to_error::deserialize(serde_json::Value::Object(map))
            .map_err(|e| D::Error::custom(format!("{}: {}", e.path(), e.inner())))?;
        Ok(FileConfig { market, topups })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopUpConfig {
    pub buyer_id: String,
    pub amount: Money,
    pub reference: String,
}

impl FileConfig {
    /// Parses a config file; an error names the object (`campaigns[3]`, with its id), the
    /// field and the line.
    pub fn parse(text: &str) -> Result<FileConfig, ServerError> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            // A field's error carries its path (`verticals[0].tmax_ms: ...`); a syntax error
            // carries its own span.
            let located = message
                .split_once(": ")
                .filter(|(path, _)| path.contains('[') || path.contains('.'))
                .and_then(|(path, _)| locate(text, path));
            match (located, e.span()) {
                (Some(line), _) => ServerError::Config(format!("line {line}: {message}")),
                (None, Some(span)) => ServerError::Config(format!("line {}: {message}", line_of(text, span.start))),
                (None, None) => ServerError::Config(message),
            }
        })
    }

    /// The line that defines the object `kind` with this id (`id = "c1"`, or `name =` for
    /// verticals), for errors found once the whole market is built.
    pub fn line_of_object(text: &str, id: &str) -> Option<usize> {
        let quoted = format!("\"{id}\"");
        text.lines()
            .position(|line| {
                let line = line.trim();
                (line.starts_with("id") || line.starts_with("name"))
                    && line.split_once('=').is_some_and(|(_, value)| value.trim() == quoted)
            })
            .map(|n| n + 1)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of `path` (`campaigns[3].buyer_id`, `verticals[0]`) in a TOML text of arrays of
/// tables: the n-th `[[campaigns]]` header, then the field's line within it.
fn locate(text: &str, path: &str) -> Option<usize> {
    let (table, rest) = path.split_once('[')?;
    let (index, rest) = rest.split_once(']')?;
    let index: usize = index.parse().ok()?;
    let field = rest.strip_prefix('.').map(|f| f.split(['.', '[']).next().unwrap_or(f));
    let header = format!("[[{table}]]");
    let mut seen = 0;
    let mut inside = false;
    let mut header_line = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            if inside {
                break;
            }
            if line == header {
                seen += 1;
                if seen == index + 1 {
                    inside = true;
                    header_line = Some(n + 1);
                }
            }
            continue;
        }
        if let (true, Some(field)) = (inside, field) {
            if line.split_once('=').is_some_and(|(key, _)| key.trim() == field) {
                return Some(n + 1);
            }
        }
    }
    header_line
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

impl From<MarketError> for ServerError {
    fn from(error: MarketError) -> ServerError {
        match error {
            MarketError::Invalid { kind, id, errors } => {
                let details: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
                ServerError::Config(format!("invalid {kind} {id:?}: {}", details.join("; ")))
            }
            other => ServerError::Config(other.to_string()),
        }
    }
}

pub struct ServerOptions {
    /// Embedded storage: the journal lives in `<data_dir>/journal/`.
    pub data_dir: std::path::PathBuf,
    pub listen: SocketAddr,
    pub ops_listen: SocketAddr,
    /// The gRPC ledger stream.
    pub grpc_listen: SocketAddr,
    pub admin_token: String,
    pub config: FileConfig,
    pub clock: Arc<dyn Clock>,
    /// Backoff and budget of outbox deliveries (async leads, notifications).
    pub retry: RetryPolicy,
    /// Shared state on Redis for several nodes; `None` keeps everything embedded.
    pub redis: Option<RedisOptions>,
    /// How the embedded journal lays out its segments.
    pub journal: JournalOptions,
    /// At most one checkpoint per this long (after sealed segments).
    pub checkpoint_every: Duration,
    /// Journal segments older than this many days (and past every return window, read by
    /// every registered consumer) are removed; None keeps everything.
    pub retain_days: Option<u32>,
    /// Bounds on connections, requests in flight and body reads.
    pub limits: AdmissionLimits,
    /// The secret dedup keys are made under (`--dedup-secret`); None reads or makes
    /// `<data-dir>/dedup-secret`. Every node on one Redis needs the same one.
    pub dedup_secret: Option<DedupSecret>,
    /// The roots buyers' https certificates are checked against: the public ones, plus a
    /// private CA's (`--buyer-ca-file`, read by `main` before anything is written).
    pub buyer_trust: BuyerTrust,
}

/// `--redis URL` (one Redis, `redis://host:port/`, or a cluster's seed nodes,
/// `redis+cluster://host:port[,host:port...]`) and the key prefix that keeps deployments
/// sharing one Redis apart.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub url: String,
    pub prefix: String,
}

impl ServerOptions {
    /// Every listener on a free loopback port, default outbox retries: how tests (and
    /// tools embedding a router) start one in-process.
    pub fn ephemeral(
        data_dir: std::path::PathBuf,
        config: FileConfig,
        clock: Arc<dyn Clock>,
        admin_token: &str,
    ) -> Self {
        let loopback: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
        ServerOptions {
            data_dir,
            listen: loopback,
            ops_listen: loopback,
            grpc_listen: loopback,
            admin_token: admin_token.to_string(),
            config,
            clock,
            retry: RetryPolicy::default(),
            redis: None,
            journal: JournalOptions::default(),
            checkpoint_every: Duration::ZERO,
            retain_days: Some(crate::retention::DEFAULT_RETAIN_DAYS),
            limits: AdmissionLimits::default(),
            dedup_secret: None,
            buyer_trust: BuyerTrust::public(),
        }
    }
}

/// A started server: its bound addresses and a way to stop it.
pub struct RunningServer {
    pub public_addr: SocketAddr,
    pub ops_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub router: Arc<Router>,
    /// What the start replayed (embedded nodes).
    pub replay: Option<Replay>,
    state: Arc<AppState>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    last_checkpoint: Option<LastCheckpoint>,
}

/// What an embedded start loaded and replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    /// The last sequence the checkpoint covered (0 without one).
    pub checkpoint_sequence: u64,
    /// Journal records replayed after it.
    pub events: u64,
}

/// What a clean stop of an embedded node needs for its last checkpoint.
struct LastCheckpoint {
    journal: Arc<Journal>,
    postal: &'static PostalTable,
    clock: Arc<dyn Clock>,
}

pub async fn start(options: ServerOptions) -> Result<RunningServer, ServerError> {
    // One client for every call to buyers, whichever stores the node runs on.
    let buyers = Arc::new(BuyerClient::with_trust(&options.buyer_trust));
    // Listeners first: a start that cannot listen must not have written anything (the
    // opening top-ups, a journal) on its way to failing.
    let public = bind(options.listen).await?;
    let ops = bind(options.ops_listen).await?;
    let grpc = bind(options.grpc_listen).await?;
    let postal = PostalTable::bundled();
    crate::domain::phone::warm_up();
    let (router, journal) = match &options.redis {
        None => {
            let (router, journal, replay) = embedded_router(&options, postal, buyers).await?;
            (router, Some((journal, replay)))
        }
        Some(redis) => (shared_router(&options, redis, postal, buyers).await?, None),
    };
    let (journal, replay) = journal.unzip();
    let last_checkpoint = journal.as_ref().map(|journal| LastCheckpoint {
        journal: Arc::clone(journal),
        postal,
        clock: Arc::clone(&options.clock),
    });
    let retention = match &journal {
        Some(journal) => {
            let consumers = Consumers::open(journal.dir()).map_err(|e| ServerError::Storage(e.to_string()))?;
            let clock = Arc::clone(&options.clock);
            Some(Arc::new(Retention::new(Arc::clone(journal), Arc::new(consumers), clock, options.retain_days)))
        }
        None => None,
    };
    for topup in &options.config.topups {
        match router.accounts().top_up(&topup.buyer_id, topup.amount, &topup.reference, &Actor::ConfigFile).await {
            Ok(_) => {}
            Err(EngineError::Conflict { .. }) => {}
            Err(error) => return Err(ServerError::Config(format!("topup for {}: {error}", topup.buyer_id))),
        }
    }
    let state = Arc::new(
        AppState::new(Arc::clone(&router), options.admin_token, options.limits).with_retention(retention.clone()),
    );
    let _ = telemetry::prometheus();

    let public_addr = public.local_addr().map_err(|source| ServerError::Bind { addr: options.listen, source })?;
    let ops_addr = ops.local_addr().map_err(|source| ServerError::Bind { addr: options.ops_listen, source })?;
    let grpc_addr = grpc.local_addr().map_err(|source| ServerError::Bind { addr: options.grpc_listen, source })?;
    let (stop, stopped) = watch::channel(false);
    let log: Arc<dyn EventLog> = Arc::clone(router.journal()).event_log();
    // Installing the exporter describes every metric at zero: the journal's sequence,
    // set when it was opened, must be said again.
    metrics::gauge!(telemetry::LEDGER_SEQUENCE).set(log.last_sequence() as f64);
    let consumers = retention.as_ref().map(|r| Arc::clone(r.consumers()));
    let ledger = LedgerService::new(log, consumers, Arc::clone(&options.clock), stopped.clone());
    let grpc_stopped = stopped.clone();
    let mut tasks = vec![
        tokio::spawn(serve(public, Listener::Public, Arc::clone(&state), stopped.clone())),
        tokio::spawn(serve(ops, Listener::Ops, Arc::clone(&state), stopped.clone())),
        tokio::spawn(async move {
            if let Err(error) = ledger::serve(grpc, ledger, grpc_stopped).await {
                tracing::error!(%error, "the ledger stream stopped");
            }
        }),
        tokio::spawn(Arc::clone(router.deliveries()).run_outbox(options.retry, stopped.clone())),
        tokio::spawn(sweep(Arc::clone(&router), stopped.clone())),
    ];
    if options.redis.is_some() {
        // What a node does beside the others: one node applies its own admin changes as
        // it makes them and has no shared store to probe or follow.
        tasks.extend([
            tokio::spawn(Arc::clone(&router).watch_store(stopped.clone())),
            tokio::spawn(Arc::clone(router.accounts()).follow_config(stopped.clone())),
            tokio::spawn(Arc::clone(&router).follow_ledger(stopped.clone())),
            tokio::spawn(Arc::clone(&router).follow_internal(stopped.clone())),
        ]);
    }
    if let (Some(journal), Some(retention)) = (journal, retention) {
        let clock = Arc::clone(&options.clock);
        let every = options.checkpoint_every;
        tasks.push(checkpoints::spawn(journal, Arc::clone(&router), postal, clock, every, retention, stopped));
    }
    Ok(RunningServer { public_addr, ops_addr, grpc_addr, router, replay, state, stop, tasks, last_checkpoint })
}

/// One node: the journal is the ledger and the record of admin changes; balances, caps,
/// dedup keys and the rest are rebuilt from it into memory.
async fn embedded_router(
    options: &ServerOptions,
    postal: &'static PostalTable,
    buyers: Arc<BuyerClient>,
) -> Result<(Arc<Router>, Arc<Journal>, Replay), ServerError> {
    let storage = |error: &dyn std::fmt::Display| ServerError::Storage(error.to_string());
    files::create_dir_all(&options.data_dir).map_err(|e| storage(&e))?;
    files::tighten(&options.data_dir).map_err(|e| storage(&e))?;
    let started = std::time::Instant::now();
    let journal_dir = options.data_dir.join("journal");
    let checkpoint = match checkpoints::load(&journal_dir) {
        Ok(checkpoint) => checkpoint,
        Err(error) => {
            // The whole journal is still the truth: opening it without the checkpoint
            // checks that every segment is there, and refuses to start if not.
            tracing::error!(%error, "the checkpoint is damaged: replaying the whole journal instead");
            None
        }
    };
    let resume = checkpoint.as_ref().map(Checkpoint::resume);
    let (journal, recovery) = Journal::open_resuming(&journal_dir, options.journal, resume).map_err(|e| storage(&e))?;
    let mut changes: Vec<AdminChange> = checkpoint.as_ref().map(|c| c.config_changes.clone()).unwrap_or_default();
    changes.extend(recovery.config_changes.iter().cloned());
    let market =
        with_admin_changes(&options.config.market, &changes.iter().map(|c| &c.change).collect::<Vec<_>>(), postal)?;
    let journal = Arc::new(journal);
    let clock = Arc::clone(&options.clock);
    let had_sales = EventLog::last_sequence(journal.as_ref()) > 0;
    let keying = dedup_secret::load_or_create(&options.data_dir, options.dedup_secret.as_ref(), had_sales, clock.now())
        .map_err(|e| storage(&e))?;
    let stores = store::embedded_after(Arc::clone(&journal) as _, Arc::clone(&clock), &changes);
    drop(changes);
    let deployment = Deployment { buyers, dedup_keying: keying, other_nodes: None };
    let router = Arc::new(Router::new(market, postal, clock, stores, deployment));
    let (mut said, awaiting) = match checkpoint {
        Some(checkpoint) => router.import_state(checkpoint.state),
        None => (AccountsSaid::default(), Vec::new()),
    };
    let span = checkpoints::Span {
        after_sequence: resume.map_or(0, |r| r.last_sequence),
        through_sequence: None,
        from_segment: resume.map_or(0, |r| r.segment),
        to_segment: u64::MAX,
    };
    let mut tail_changes = Vec::new();
    let orphans = checkpoints::replay_span(&router, &journal, &span, &mut said, awaiting, &mut tail_changes)
        .await
        .map_err(|e| storage(&e))?;
    if !orphans.is_empty() {
        tracing::info!(records = orphans.len(), "records whose fact never reached the journal were dropped");
    }
    if let Some(resume) = resume {
        scrub_covered_segments(journal_dir.clone(), resume.segment);
    }
    // Replay held every sale of the tail; memory keeps those inside their return window.
    router.sweep_records();
    router.accounts().journal_account_changes(&said).await.map_err(|e| storage(&e))?;
    tracing::info!(
        checkpoint = resume.map_or(0, |r| r.last_sequence),
        replayed = recovery.events,
        last_sequence = recovery.last_sequence,
        segments = recovery.segments,
        ms = started.elapsed().as_millis() as u64,
        "journal replayed"
    );
    let replay = Replay { checkpoint_sequence: resume.map_or(0, |r| r.last_sequence), events: recovery.events };
    Ok((router, journal, replay))
}

/// Checks, in the background, the segments a start skipped because its checkpoint covers
/// them: damage there loses nothing acknowledged (the checkpoint holds it), but an operator
/// must hear of it, loudly, and replace the disk or restore a backup.
fn scrub_covered_segments(journal_dir: std::path::PathBuf, covered_before: u64) {
    // A thread of its own, not the runtime's blocking pool: reading gigabytes must not keep
    // a clean shutdown waiting (the runtime waits for its blocking tasks; an exiting process
    // does not wait for this thread).
    let scrub = move || match verify::verify(&journal_dir, 0, covered_before) {
        Ok(report) => {
            for finding in &report.damage {
                tracing::error!(damage = %finding, "journal damage in a segment the checkpoint covers: every acknowledged sale is still in the checkpoint; run `leadrouter journal verify` and restore a backup");
            }
        }
        Err(error) => tracing::error!(%error, "the segments the checkpoint covers could not be read"),
    };
    if let Err(error) = std::thread::Builder::new().name("journal-scrub".into()).spawn(scrub) {
        tracing::warn!(%error, "the covered segments are not checked in the background");
    }
}

/// Several nodes: balances, holds, caps, dedup keys, ping contexts, claims, admin changes
/// and the ledger live in Redis; the node keeps a mirror of the ledger stream.
async fn shared_router(
    options: &ServerOptions,
    redis: &RedisOptions,
    postal: &'static PostalTable,
    buyers: Arc<BuyerClient>,
) -> Result<Arc<Router>, ServerError> {
    let target =
        RedisTarget::parse(&redis.url).map_err(|problem| ServerError::Config(format!("--redis: {problem}")))?;
    let shown = target.redacted();
    let storage = |error: &dyn std::fmt::Display| ServerError::Storage(format!("redis {shown}: {error}"));
    let connection = RedisConnection::open(&redis.url).await.map_err(|e| storage(&e))?;
    let prefix = redis.prefix.as_str();
    let node = node_id(&options.data_dir).map_err(|e| ServerError::Storage(format!("node id: {e}")))?;
    let ledger = Arc::new(RedisLedger::on(&connection, prefix).await.map_err(|e| storage(&e))?.for_node(&node));
    let budget = Arc::new(RedisBudget::on(&connection, prefix, &node, Arc::clone(&options.clock)));
    let config = Arc::new(RedisConfig::on(&connection, prefix));
    let changes = config.after(ChangeId::default()).await.map_err(|e| storage(&e.0))?;
    let market = with_admin_changes(
        &options.config.market,
        &changes.iter().map(|(_, c)| &c.change).collect::<Vec<_>>(),
        postal,
    )?;
    let dedup = RedisDedup::on(&connection, prefix);
    // The data dir keeps this node's secret only once the other nodes agree with it: a node
    // refused for a wrong secret leaves nothing behind that would refuse the right one.
    let secret_error = |e: &dyn std::fmt::Display| ServerError::Storage(e.to_string());
    let stored = dedup_secret::read(&options.data_dir, options.dedup_secret.as_ref()).map_err(|e| secret_error(&e))?;
    let local = match (&stored, &options.dedup_secret) {
        (Some(stored), _) => stored.clone(),
        (None, Some(given)) => DedupKeying::new(given.clone()),
        (None, None) => DedupKeying::new(DedupSecret::from_bytes(rand::random())),
    };
    let had_history = EventLog::last_sequence(ledger.as_ref()) > 0;
    let keying = dedup.agree_on_secret(&local, had_history, options.clock.now()).await.map_err(|e| match e {
        SecretError::Unavailable(_) => storage(&e),
        _ => secret_error(&e),
    })?;
    if stored.is_none() {
        dedup_secret::write(&options.data_dir, &keying, options.clock.now()).map_err(|e| secret_error(&e))?;
    }
    let stores = Stores {
        budget,
        ledger: Arc::clone(&ledger) as _,
        pings: Arc::new(RedisPings::on(&connection, prefix)),
        dedup: Arc::new(dedup),
        claims: Arc::new(RedisClaims::on(&connection, prefix)),
        config,
        pull: Arc::new(RedisPull::on(&connection, prefix)),
    };
    let nodes = OtherNodes {
        internal: Arc::clone(&ledger) as _,
        node: node.clone(),
        config_applied: changes.last().map(|(id, _)| *id).unwrap_or_default(),
    };
    let clock = Arc::clone(&options.clock);
    let deployment = Deployment { buyers, dedup_keying: keying, other_nodes: Some(nodes) };
    let router = Arc::new(Router::new(market, postal, clock, stores, deployment));
    let history = ledger.read_after(0, usize::MAX).map_err(|e| storage(&e))?;
    router.mirror_history(&history);
    // This node's outbox, pull leads and pending returns as it left them; the pending
    // returns of the other nodes.
    let (internal_read, internal) = ledger.all_internal().await.map_err(|e| storage(&e))?;
    let (own, others): (Vec<_>, Vec<_>) = internal.into_iter().partition(|(writer, _)| *writer == node);
    let records: Vec<InternalRecord> = own.into_iter().map(|(_, record)| record).collect();
    let restored = records.len();
    router.restore(records);
    for (_, record) in &others {
        router.take_in(record);
    }
    router.internal_read_through(internal_read).await;
    let mut said = AccountsSaid::default();
    history.iter().for_each(|event| said.note(event));
    router.accounts().journal_account_changes(&said).await.map_err(|e| storage(&e))?;
    tracing::info!(node = %node, events = history.len(), records = restored, config_changes = changes.len(), redis = %shown, "shared state on Redis");
    Ok(router)
}

/// This node's name among the nodes on one Redis, kept in `<data-dir>/node-id` so a
/// restarted node finds its own outbox again.
fn node_id(data_dir: &std::path::Path) -> std::io::Result<String> {
    let path = data_dir.join("node-id");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if !existing.is_empty() {
            return Ok(existing.to_string());
        }
    }
    files::create_dir_all(data_dir)?;
    let node = crate::ids::new_id("node");
    files::write_atomic(&path, format!("{node}\n").as_bytes())?;
    Ok(node)
}

/// The config file's market with the operator's admin changes applied again, in
/// order. Changes are applied to the objects and the market is built once (a build per
/// change would make a start with a long admin history slow). A change the file no longer
/// allows (say, a campaign of a buyer since removed from the file) is skipped with a
/// warning rather than keeping the server from starting.
fn with_admin_changes(
    config: &MarketConfig,
    changes: &[&ConfigChange],
    postal: &PostalTable,
) -> Result<Market, ServerError> {
    let mut merged = config.clone();
    let structural = changes.iter().all(|change| merged.apply(change).is_ok());
    if structural {
        if let Ok(market) = Market::build(merged, postal) {
            if !changes.is_empty() {
                tracing::info!(applied = changes.len(), "admin changes from the journal applied over the config");
            }
            return Ok(market);
        }
    }
    // Some change no longer fits: find which, one build per change.
    let mut market = Market::build(config.clone(), postal)?;
    for (position, change) in changes.iter().enumerate().filter(|(_, change)| change.changes_market()) {
        match market.apply(change, postal) {
            Ok(next) => market = next,
            Err(error) => tracing::warn!(%error, position, "an admin change no longer applies; skipped"),
        }
    }
    Ok(market)
}

impl RunningServer {
    /// Resolves with the reason when the journal fails for good: the node can sell nothing
    /// more and must restart into recovery (see `store::journal`).
    pub async fn storage_failed(&self) -> String {
        let mut failures = self.router.journal().failures();
        let failure = match failures.wait_for(Option::is_some).await {
            Ok(failure) => failure.clone(),
            Err(_) => None,
        };
        match failure {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain timeout), and
    /// returns when every listener is closed.
    pub async fn shutdown(self) {
        self.state.begin_shutdown();
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some(last) = self.last_checkpoint {
            last.write(&self.router).await;
        }
        self.router.close_budget().await;
        self.router.journal().close().await;
    }
}

impl LastCheckpoint {
    /// Once nothing else writes: seals the segment being written and checkpoints through
    /// it, so the next start loads the checkpoint and replays nothing. A failure costs only
    /// a longer next start (the journal is the truth), so it is logged, not fatal.
    async fn write(self, router: &Router) {
        let started = std::time::Instant::now();
        let sealed = match self.journal.seal().await {
            Ok(sealed) => sealed,
            Err(error) => return tracing::warn!(%error, "the journal could not be sealed for a last checkpoint"),
        };
        match checkpoints::write_through(&self.journal, router, self.postal, &self.clock, sealed + 1).await {
            Ok(written) => tracing::info!(
                segment = sealed + 1,
                bytes = written.unwrap_or(0),
                ms = started.elapsed().as_millis() as u64,
                "last checkpoint before stopping"
            ),
            Err(error) => {
                tracing::warn!(%error, "no last checkpoint; the next start replays the journal after the previous one")
            }
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })
}

async fn serve(listener: TcpListener, which: Listener, state: Arc<AppState>, mut stopped: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    let connections = Connections::new(&state.limits);
    let mut builder = http1::Builder::new();
    // Buffers and header counts above the API's own limits (`api::admission`), so that
    // those refusals are ours, with a JSON body.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true)
        .max_buf_size(128 * 1024)
        .max_headers(4 * api::admission::HEADERS_MAX);
    let service = match which {
        Listener::Public => api::public_service(Arc::clone(&state)),
        Listener::Ops => api::ops_service(Arc::clone(&state)),
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let open = match connections.open(peer.ip()) {
                    Ok(open) => open,
                    Err(crowded) => {
                        refuse(&stream, which, crowded);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                // Handlers that need the client's address (the console's sign-in limit)
                // read it as axum's `ConnectInfo`.
                let service = tower::ServiceExt::map_request(service.clone(), move |mut request: hyper::Request<_>| {
                    request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                    request
                });
                let service = TowerToHyperService::new(service);
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                    drop(open);
                });
            }
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the drain timeout; closing them");
    }
}

/// Answers a connection past a bound with a 503 and closes it: one non-blocking write of a
/// fixed answer into the empty send buffer, so a flood of them costs no task and no wait.
fn refuse(stream: &tokio::net::TcpStream, which: Listener, crowded: Crowded) {
    const BODY: &str =
        r#"{"error":{"code":"overloaded","message":"too many open connections; retry shortly","details":[]}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(answer.as_bytes());
    metrics::counter!(telemetry::CONNECTIONS_REFUSED_TOTAL, "listener" => which.as_str(), "bound" => crowded.as_str())
        .increment(1);
}

async fn sweep(router: Arc<Router>, mut stopped: watch::Receiver<bool>) {
    let mut holds = tokio::time::interval(SWEEP_HOLDS_EVERY);
    holds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut records = tokio::time::interval(SWEEP_RECORDS_EVERY);
    records.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The dashboard's one sample a second, on a ticker of its own: a slow sweep of holds
    // (Redis) must not leave gaps in its charts.
    let mut samples = tokio::time::interval(std::time::Duration::from_secs(1));
    samples.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = samples.tick() => telemetry::activity::activity().sample(router.clock().now()),
            _ = holds.tick() => router.sweep_holds().await,
            _ = records.tick() => {
                let router = Arc::clone(&router);
                // A walk over every record: off the async workers.
                let _ = tokio::task::spawn_blocking(move || router.sweep_records()).await;
            }
            _ = stopped.changed() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_parses_and_a_typo_is_an_error() {
        let demo = FileConfig::parse(DEMO_CONFIG).unwrap();
        assert_eq!((demo.market.verticals.len(), demo.market.buyers.len(), demo.topups.len()), (4, 4, 2));
        let typo = FileConfig::parse("[[campaign]]\nid = \"c1\"\n").unwrap_err();
        assert!(typo.to_string().contains("campaign"), "{typo}");
        let bad_topup =
            FileConfig::parse("[[topups]]\nbuyer_id = \"b1\"\namount = 10.5\nreference = \"r\"\n").unwrap_err();
        assert!(bad_topup.to_string().contains("topups"), "{bad_topup}");
    }
}
