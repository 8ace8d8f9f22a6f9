//! `loadtest`: load generator and test servers for leadrouter, for this machine only.
//!
//! - `mock-buyer`: a buyer endpoint (pings bid, posts accept) with configurable latency.
//! - `echo`: bare hyper answering every POST, the "HTTP alone" baseline.
//! - `run`: closed- or open-loop load against leadrouter (or the echo server), with HDR
//!   latency quantiles, status and outcome counts, JSON and an SVG plot. `--mix fanout`
//!   pings every `--target` (mock buyers) at once per arrival and times the slowest: the
//!   fan-out floor under leadrouter's pings.
//! - `pull`: pull buyers fetching their leads until SIGTERM/SIGINT, then one JSON line of
//!   totals.
//! - `dashboards`: operators with the console's dashboard open (signed in, the live part
//!   fetched every 2 s), or one operator fetching its pages back to back; HDR latency of
//!   the whole page and of the live part.
//!
//! Hard bounds: targets and listeners are loopback only, a run lasts at most
//! `DURATION_MAX` plus a bounded drain, and every queue (workers, connections, outstanding
//! open-loop arrivals) has a ceiling named below.

mod cents;
mod client;
mod console;
mod echo;
mod mock_buyer;
mod plot;
mod pull;
mod record;
mod report;
mod rng;
mod run;
mod schedule;
mod serve;
mod target;
mod timer;
mod workload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::run::{Endpoint, Load, Plan};
use crate::workload::{LeadShape, Mix};

/// The longest measured window: the tool loads this machine, it must not occupy it.
const DURATION_MAX: Duration = Duration::from_secs(600);
/// Warmup beyond a minute is a second run, not a warmup.
const WARMUP_MAX: Duration = Duration::from_secs(60);
/// Closed-loop workers (each one connection): far above what two cores keep busy, far
/// below the 20k file descriptors a process gets here.
const CONCURRENCY_MAX: usize = 4_096;
/// Open-loop connections, same reasoning.
const CONNECTIONS_MAX: usize = 4_096;
/// Open-loop default connections: enough for any latency at the rates this machine serves.
const CONNECTIONS_DEFAULT: usize = 256;
/// Targets one run spreads its load over (`--target` repeated): the nodes of a cluster.
const TARGETS_MAX: usize = 16;
/// Open-loop arrivals in flight (or waiting for a connection) before new ones are dropped:
/// memory stays bounded when the target stalls.
const OUTSTANDING_DEFAULT: usize = 10_000;
const OUTSTANDING_MAX: usize = 100_000;
/// The highest arrival rate: well past what one machine's loopback serves.
const RATE_MAX: u64 = 1_000_000;
/// A mock buyer slower than this would time out on every plan (`tmax_ms` ≤ 10 s).
const BUYER_LATENCY_MS_MAX: u64 = 60_000;
/// Pull buyers in one `pull` (one task and connection each).
const PULL_BUYERS_MAX: usize = 1_000;
/// A pull buyer that waits longer than this between fetches is not keeping up.
const PULL_INTERVAL_MS_MAX: u64 = 60_000;

#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about = "Load generator and mock buyers for leadrouter (this machine only)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Runtime worker threads (default: the number of cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Answer leadrouter's buyer pings (`POST /ping`) and posts (`POST /post`).
    MockBuyer(MockBuyerArgs),
    /// Answer every POST with `{"status":"ok"}`: the HTTP-only baseline.
    Echo(EchoArgs),
    /// Send load to leadrouter (or the echo server) and report latency and throughput.
    Run(RunArgs),
    /// Play pull buyers fetching their leads (`GET /v1/buyer/leads`) until SIGTERM or
    /// SIGINT, then print `{"buyers","fetched","pages","errors"}` as one JSON line.
    Pull(PullArgs),
    /// Open the console's dashboard as operators do: sign in with the admin token, load
    /// `/console`, fetch `/console/live/dashboard` every `--every-ms`; report the HDR
    /// latency of both (`--sequential N`: one operator, each page N times back to back).
    Dashboards(DashboardsArgs),
}

#[derive(Debug, Args)]
struct MockBuyerArgs {
    #[arg(long)]
    listen: SocketAddr,
    /// Delay before every answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Extra delay drawn uniformly in 0..=jitter.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    #[arg(long, default_value = "20.00")]
    bid_min: String,
    #[arg(long, default_value = "60.00")]
    bid_max: String,
    /// Share of pings and posts answered 500.
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// Share of the remaining posts answered `{"accepted":false}`.
    #[arg(long, default_value_t = 0.0)]
    reject_rate: f64,
    /// Seed of the random source (bids, failures, jitter).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Accepted posts name a buyer reference: `{"accepted":true,"id":"mb-<n>"}`.
    #[arg(long)]
    reference: bool,
}

#[derive(Debug, Args)]
struct EchoArgs {
    #[arg(long)]
    listen: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// N workers, each sends when its previous request was answered.
    Closed,
    /// A fixed arrival rate; latency counted from each arrival's scheduled time.
    Open,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Base URL; loopback only. Repeat it to spread the load over several targets (the
    /// nodes of a cluster): round-robin per arrival, a ping and its post on one target.
    /// With `--mix fanout` every arrival goes to all of them (the buyers of a fan-out).
    #[arg(long, default_value = "http://127.0.0.1:8080", action = clap::ArgAction::Append)]
    target: Vec<String>,
    /// Supplier API key (sent as `Authorization: Bearer`). Not needed for the echo server.
    #[arg(long, env = "LOADTEST_KEY", hide_env_values = true)]
    key: Option<String>,
    #[arg(long, value_enum, default_value = "direct")]
    mix: Mix,
    #[arg(long, default_value = "solar")]
    vertical: String,
    /// A postal code, or several separated by commas (`80331,80333`): the arrivals take
    /// them in turn.
    #[arg(long, default_value = "80331")]
    zip: String,
    #[arg(long, default_value = "DE")]
    country: String,
    #[arg(long, value_enum, default_value = "closed")]
    mode: Mode,
    /// Closed loop: number of workers (one connection each, per target).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Open loop: arrivals per second.
    #[arg(long)]
    rate: Option<u64>,
    /// Open loop: connections shared by the arrivals (per target).
    #[arg(long, default_value_t = CONNECTIONS_DEFAULT)]
    connections: usize,
    /// Open loop: arrivals in flight before new ones are dropped (and counted).
    #[arg(long, default_value_t = OUTSTANDING_DEFAULT)]
    max_outstanding: usize,
    /// Measured window (`20s`, `500ms`, `2m`), at most 600 s.
    #[arg(long, default_value = "20s")]
    duration: String,
    /// Load sent before the window and not recorded.
    #[arg(long, default_value = "0s")]
    warmup: String,
    /// Stop after this many measured arrivals.
    #[arg(long)]
    max_requests: Option<u64>,
    /// First lead number (emails `lt{n}@example.com`): change it to rerun against a
    /// server that still remembers the previous run's leads.
    #[arg(long, default_value_t = 0)]
    first_id: u64,
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct PullArgs {
    /// Base URL of the router's public listener; loopback only.
    #[arg(long)]
    target: String,
    /// A buyer's API key (sent as `Authorization: Bearer`); repeat it, one buyer per key.
    #[arg(long, required = true, action = clap::ArgAction::Append)]
    key: Vec<String>,
    /// After an empty page (or an error) a buyer sleeps this long before asking again.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
    /// Leads asked for per page (1..=1000).
    #[arg(long, default_value_t = pull::LIMIT_MAX)]
    limit: usize,
}

#[derive(Debug, Args)]
struct DashboardsArgs {
    /// Base URL of the router's ops listener (where `/console` is); loopback only.
    #[arg(long)]
    target: String,
    /// The router's admin token, to sign in to the console with.
    #[arg(long, env = "LOADTEST_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// Dashboards open at once (one sign-in, session and connection each).
    #[arg(long, default_value_t = 10)]
    dashboards: usize,
    /// How often each dashboard fetches its live part (the page's script: every 2 s).
    #[arg(long, default_value_t = 2_000)]
    every_ms: u64,
    /// How long the dashboards stay open (`17s`, `2m`), at most 600 s; SIGTERM or SIGINT
    /// ends them sooner (the report is printed either way).
    #[arg(long, default_value = "20s")]
    duration: String,
    /// Instead: one operator fetches `/console` N times back to back, then the live part N
    /// times (the page time with nothing else asked of it).
    #[arg(long, conflicts_with_all = ["dashboards", "every_ms", "duration"])]
    sequential: Option<u64>,
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run_cli(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the context chain on one line, without a backtrace.
            eprintln!("loadtest: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_cli(cli: Cli) -> anyhow::Result<()> {
    let threads = cli.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    if threads == 0 || threads > 64 {
        bail!("--threads must be between 1 and 64");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::MockBuyer(args) => mock_buyer(args).await,
            Command::Echo(args) => {
                check_listen(args.listen)?;
                echo::run(args.listen).await
            }
            Command::Run(args) => run_load(args, threads).await,
            Command::Pull(args) => pull_leads(args).await,
            Command::Dashboards(args) => open_dashboards(args).await,
        }
    })
}

fn check_listen(listen: SocketAddr) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() {
        bail!("--listen {listen} is not loopback: the test servers only serve this machine");
    }
    Ok(())
}

async fn mock_buyer(args: MockBuyerArgs) -> anyhow::Result<()> {
    check_listen(args.listen)?;
    if args.latency_ms > BUYER_LATENCY_MS_MAX || args.jitter_ms > BUYER_LATENCY_MS_MAX {
        bail!("--latency-ms and --jitter-ms must be at most {BUYER_LATENCY_MS_MAX}");
    }
    let behaviour = mock_buyer::Behaviour {
        latency_ms: args.latency_ms,
        jitter_ms: args.jitter_ms,
        bids: cents::BidRange::parse(&args.bid_min, &args.bid_max)?,
        failure_ppm: rng::probability_ppm("--failure-rate", args.failure_rate)?,
        reject_ppm: rng::probability_ppm("--reject-rate", args.reject_rate)?,
        reference: args.reference,
    };
    mock_buyer::run(args.listen, behaviour, args.seed).await
}

fn plan_load(args: &RunArgs) -> anyhow::Result<Load> {
    // Every target gets its own connections: the bounds hold for all of them together.
    let targets = args.target.len().max(1);
    match (args.mode, args.rate) {
        (Mode::Closed, Some(_)) => bail!("--rate is for --mode open; closed loop takes --concurrency"),
        (Mode::Closed, None) => {
            if args.concurrency == 0 || args.concurrency * targets > CONCURRENCY_MAX {
                bail!("--concurrency times the number of targets must be between 1 and {CONCURRENCY_MAX}");
            }
            Ok(Load::Closed { concurrency: args.concurrency })
        }
        (Mode::Open, None) => bail!("--mode open needs --rate (arrivals per second)"),
        (Mode::Open, Some(rate_per_s)) => {
            if rate_per_s == 0 || rate_per_s > RATE_MAX {
                bail!("--rate must be between 1 and {RATE_MAX}");
            }
            if args.connections == 0 || args.connections * targets > CONNECTIONS_MAX {
                bail!("--connections times the number of targets must be between 1 and {CONNECTIONS_MAX}");
            }
            if args.max_outstanding == 0 || args.max_outstanding > OUTSTANDING_MAX {
                bail!("--max-outstanding must be between 1 and {OUTSTANDING_MAX}");
            }
            Ok(Load::Open { rate_per_s, connections: args.connections, outstanding_max: args.max_outstanding })
        }
    }
}

async fn run_load(args: RunArgs, threads: usize) -> anyhow::Result<()> {
    if args.target.is_empty() || args.target.len() > TARGETS_MAX {
        bail!("--target: between 1 and {TARGETS_MAX} targets");
    }
    let mut endpoints = Vec::with_capacity(args.target.len());
    for text in &args.target {
        let target = Arc::new(target::resolve(text).await?);
        let headers = Arc::new(client::Headers::new(&target, args.key.as_deref())?);
        client::probe(&target).await?;
        endpoints.push(Endpoint { target, headers });
    }
    let duration = target::parse_duration(&args.duration).context("--duration")?;
    let warmup = target::parse_duration(&args.warmup).context("--warmup")?;
    if duration.is_zero() || duration > DURATION_MAX {
        bail!("--duration must be above 0 and at most {} s", DURATION_MAX.as_secs());
    }
    if warmup > WARMUP_MAX {
        bail!("--warmup must be at most {} s", WARMUP_MAX.as_secs());
    }
    if args.max_requests == Some(0) {
        bail!("--max-requests must be at least 1");
    }
    let load = plan_load(&args)?;
    let shape = LeadShape::new(&args.vertical, &args.zip, &args.country)?;
    let targets = run::display(&endpoints);
    let plan = Plan {
        endpoints,
        mix: args.mix,
        shape,
        load,
        warmup,
        duration,
        max_requests: args.max_requests,
        first_id: args.first_id,
        threads,
    };
    eprintln!("loadtest: {targets} {} for {:?} after {:?} warmup", args.mix.as_str(), duration, warmup);
    let summary = tokio::time::timeout(run::longest(warmup, duration), run::run(plan))
        .await
        .context("the run overran its own bound")??;
    print!("{}", summary.table());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let title = format!("{targets} {} latency per second", args.mix.as_str());
        std::fs::write(path, plot::svg(&title, &summary.timeline))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn plan_pull(args: &PullArgs, target: Arc<target::Target>) -> anyhow::Result<pull::Plan> {
    if args.key.is_empty() || args.key.len() > PULL_BUYERS_MAX {
        bail!("--key: between 1 and {PULL_BUYERS_MAX} buyers");
    }
    let mut keys = args.key.clone();
    keys.sort();
    keys.dedup();
    if keys.len() != args.key.len() {
        bail!("--key: every buyer needs its own key (two buyers on one key would race over its cursor)");
    }
    if args.interval_ms > PULL_INTERVAL_MS_MAX {
        bail!("--interval-ms must be at most {PULL_INTERVAL_MS_MAX}");
    }
    if args.limit == 0 || args.limit > pull::LIMIT_MAX {
        bail!("--limit must be between 1 and {}", pull::LIMIT_MAX);
    }
    Ok(pull::Plan {
        target,
        keys: args.key.clone(),
        interval: Duration::from_millis(args.interval_ms),
        limit: args.limit,
    })
}

async fn pull_leads(args: PullArgs) -> anyhow::Result<()> {
    // Listening for the signals first: one that comes during the start must still end the
    // run with its totals, not kill the process.
    let stop = pull::stop_signal()?;
    let target = Arc::new(target::resolve(&args.target).await?);
    let plan = plan_pull(&args, Arc::clone(&target))?;
    client::probe(&target).await?;
    eprintln!(
        "loadtest: {} pull buyers on {} every {} ms, pages of {}",
        plan.keys.len(),
        target.display,
        args.interval_ms,
        plan.limit
    );
    let totals = pull::run(plan, stop).await?;
    println!("{}", serde_json::to_string(&totals)?);
    Ok(())
}

fn plan_dashboards(args: &DashboardsArgs) -> anyhow::Result<console::Mode> {
    if let Some(count) = args.sequential {
        if count == 0 || count > console::SEQUENTIAL_MAX {
            bail!("--sequential must be between 1 and {}", console::SEQUENTIAL_MAX);
        }
        return Ok(console::Mode::Sequential { count });
    }
    if args.dashboards == 0 || args.dashboards > console::DASHBOARDS_MAX {
        bail!("--dashboards must be between 1 and {}", console::DASHBOARDS_MAX);
    }
    if !(console::EVERY_MS_MIN..=console::EVERY_MS_MAX).contains(&args.every_ms) {
        bail!("--every-ms must be between {} and {}", console::EVERY_MS_MIN, console::EVERY_MS_MAX);
    }
    let duration = target::parse_duration(&args.duration).context("--duration")?;
    if duration.is_zero() || duration > DURATION_MAX {
        bail!("--duration must be above 0 and at most {} s", DURATION_MAX.as_secs());
    }
    Ok(console::Mode::Dashboards { count: args.dashboards, every: Duration::from_millis(args.every_ms), duration })
}

async fn open_dashboards(args: DashboardsArgs) -> anyhow::Result<()> {
    let stop = pull::stop_signal()?;
    let mode = plan_dashboards(&args)?;
    let target = Arc::new(target::resolve(&args.target).await?);
    client::probe(&target).await?;
    let plan = console::Plan { target, admin_token: args.admin_token.clone(), mode };
    // Past the window, the fetches in flight end within the request timeout (a sign-in
    // takes two); a sequence must end within the longest window.
    let (bound, what) = match mode {
        console::Mode::Dashboards { count, every, duration } => (
            duration + client::REQUEST_TIMEOUT * 3,
            format!("{count} dashboards, the live part every {} ms, for {duration:?}", every.as_millis()),
        ),
        console::Mode::Sequential { count } => (DURATION_MAX, format!("each page {count} times back to back")),
    };
    eprintln!("loadtest: console on {}: {what}", plan.target.display);
    let report =
        tokio::time::timeout(bound, console::run(plan, stop)).await.context("the run overran its own bound")??;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    if report.errors() > 0 {
        bail!("{} console errors (failed sign-ins, answers that were not the page)", report.errors());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(argv: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(["loadtest", "run"].iter().chain(argv)).expect("parses");
        match cli.command {
            Command::Run(args) => args,
            other => panic!("not a run: {other:?}"),
        }
    }

    fn pull_args(argv: &[&str]) -> anyhow::Result<PullArgs> {
        let cli = Cli::try_parse_from(["loadtest", "pull"].iter().chain(argv))?;
        match cli.command {
            Command::Pull(args) => Ok(args),
            other => panic!("not a pull: {other:?}"),
        }
    }

    #[test]
    fn pull_takes_one_buyer_per_key_within_bounds() {
        let target = Arc::new(target::Target {
            addr: "127.0.0.1:1".parse().expect("address"),
            authority: "127.0.0.1:1".into(),
            display: "http://127.0.0.1:1".into(),
        });
        let plan = |argv: &[&str]| plan_pull(&pull_args(argv)?, Arc::clone(&target));
        let base = ["--target", "http://127.0.0.1:1"];
        let with = |rest: &[&'static str]| [&base[..], rest].concat();
        let two = plan(&with(&["--key", "k1", "--key", "k2"])).expect("two buyers");
        assert_eq!(two.keys, ["k1", "k2"]);
        assert_eq!((two.interval, two.limit), (Duration::from_millis(200), 1_000));
        assert!(pull_args(&base).is_err(), "a key is required");
        assert!(plan(&with(&["--key", "k1", "--key", "k1"])).is_err(), "one key, two buyers");
        assert!(plan(&with(&["--key", "k", "--limit", "0"])).is_err());
        assert!(plan(&with(&["--key", "k", "--limit", "1001"])).is_err());
        assert!(plan(&with(&["--key", "k", "--limit", "1", "--interval-ms", "0"])).is_ok());
        assert!(plan(&with(&["--key", "k", "--interval-ms", "60001"])).is_err());
    }

    fn dashboards(argv: &[&str]) -> anyhow::Result<console::Mode> {
        let base = ["loadtest", "dashboards", "--target", "http://127.0.0.1:1", "--admin-token", "t"];
        let cli = Cli::try_parse_from(base.iter().chain(argv))?;
        match cli.command {
            Command::Dashboards(args) => plan_dashboards(&args),
            other => panic!("not dashboards: {other:?}"),
        }
    }

    #[test]
    fn dashboards_poll_every_two_seconds_within_bounds_or_run_in_sequence() {
        let ten =
            console::Mode::Dashboards { count: 10, every: Duration::from_secs(2), duration: Duration::from_secs(20) };
        assert_eq!(dashboards(&[]).ok(), Some(ten));
        assert_eq!(dashboards(&["--sequential", "200"]).ok(), Some(console::Mode::Sequential { count: 200 }));
        assert!(dashboards(&["--sequential", "200", "--dashboards", "3"]).is_err(), "one mode or the other");
        assert!(dashboards(&["--sequential", "0"]).is_err());
        assert!(dashboards(&["--dashboards", "0"]).is_err());
        assert!(dashboards(&["--dashboards", "101"]).is_err());
        assert!(dashboards(&["--every-ms", "99"]).is_err());
        assert!(dashboards(&["--duration", "601s"]).is_err());
        assert!(dashboards(&["--duration", "0s"]).is_err());
    }

    #[test]
    fn target_defaults_to_one_and_repeats() {
        assert_eq!(run_args(&[]).target, ["http://127.0.0.1:8080"]);
        let args = run_args(&["--target", "http://127.0.0.1:1", "--target", "http://127.0.0.1:2"]);
        assert_eq!(args.target, ["http://127.0.0.1:1", "http://127.0.0.1:2"]);
    }

    #[test]
    fn connection_bounds_count_every_target() {
        let two = |rest: &[&'static str]| {
            let mut argv = vec!["--target", "http://127.0.0.1:1", "--target", "http://127.0.0.1:2"];
            argv.extend(rest);
            plan_load(&run_args(&argv))
        };
        assert!(two(&["--concurrency", "2048"]).is_ok());
        assert!(two(&["--concurrency", "2049"]).is_err(), "2 x 2049 connections is above the bound");
        assert!(two(&["--mode", "open", "--rate", "100", "--connections", "2048"]).is_ok());
        assert!(two(&["--mode", "open", "--rate", "100", "--connections", "2049"]).is_err());
    }
}
