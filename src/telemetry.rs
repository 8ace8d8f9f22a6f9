//! Metric names (DESIGN §10) and the Prometheus recorder.
//!
//! Every name the product exports is a constant here, so the contract is in one place.
//! Labels are bounded: vertical, model, buyer id, outcome and reason codes, currency,
//! route templates; never lead, ping or campaign ids, never lead data.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use parking_lot::Mutex;
use rust_decimal::Decimal;

use crate::domain::money::{Currency, Money};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub mod activity;
#[cfg(feature = "count-allocs")]
pub mod allocations;
mod kept;
pub mod meters;

pub const PINGS_TOTAL: &str = "leadrouter_pings_total";
pub const POSTS_TOTAL: &str = "leadrouter_posts_total";
pub const LEADS_TOTAL: &str = "leadrouter_leads_total";
pub const SALES_TOTAL: &str = "leadrouter_sales_total";
pub const REVENUE_TOTAL: &str = "leadrouter_revenue_total";
pub const BUYER_REQUESTS_TOTAL: &str = "leadrouter_buyer_requests_total";
pub const FILTERED_TOTAL: &str = "leadrouter_filtered_total";
pub const RETURNS_TOTAL: &str = "leadrouter_returns_total";
pub const DELIVERIES_TOTAL: &str = "leadrouter_deliveries_total";
pub const DECISION_DURATION_SECONDS: &str = "leadrouter_decision_duration_seconds";
pub const BUYER_REQUEST_DURATION_SECONDS: &str = "leadrouter_buyer_request_duration_seconds";
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "leadrouter_http_request_duration_seconds";
pub const BUYER_AVAILABLE_BALANCE: &str = "leadrouter_buyer_available_balance";
pub const LEDGER_SEQUENCE: &str = "leadrouter_ledger_sequence";
pub const LEDGER_SUBSCRIBERS: &str = "leadrouter_ledger_subscribers";
pub const OUTBOX_PENDING: &str = "leadrouter_outbox_pending";
pub const CAMPAIGNS_ACTIVE: &str = "leadrouter_campaigns_active";
pub const CONNECTIONS_REFUSED_TOTAL: &str = "leadrouter_connections_refused_total";

/// Buckets in seconds: decisions live between ~50 µs (fixed price) and tmax (≤ 10 s).
const LATENCY_BUCKETS: &[f64] =
    &[0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often histogram samples are folded into their buckets. A recorder built without
/// `install` keeps every sample until someone runs its upkeep (or scrapes `/metrics`), so a
/// node nobody scrapes grew by ~40 bytes a sale: +300 MB over 9 million sales.
const METRICS_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The name of the thread that runs the recorder's upkeep.
pub const METRICS_UPKEEP_THREAD: &str = "metrics-upkeep";

/// Revenue per currency, summed exactly. Rationale: `metrics` counters are integers, and a
/// float sum would drift; we keep the decimal sum ourselves and render it next to the
/// exporter's output.
static REVENUE: OnceLock<Mutex<BTreeMap<Currency, Decimal>>> = OnceLock::new();

pub fn record_revenue(currency: Currency, amount: Money) {
    let mut revenue = REVENUE.get_or_init(Default::default).lock();
    *revenue.entry(currency).or_default() += amount.amount();
}

/// Revenue so far, by currency (exact).
pub fn revenue() -> BTreeMap<Currency, Decimal> {
    REVENUE.get().map(|revenue| revenue.lock().clone()).unwrap_or_default()
}

/// The whole `/metrics` page: the exporter's metrics plus the exact revenue counter.
pub fn render() -> String {
    let mut page = prometheus().render();
    page.push_str("# HELP leadrouter_revenue_total Sale prices settled, by currency.\n");
    page.push_str("# TYPE leadrouter_revenue_total counter\n");
    if let Some(revenue) = REVENUE.get() {
        for (currency, total) in revenue.lock().iter() {
            page.push_str(&format!("{REVENUE_TOTAL}{{currency=\"{currency}\"}} {total}\n"));
        }
    }
    #[cfg(feature = "count-allocs")]
    {
        let name = allocations::ALLOCATIONS_TOTAL;
        page.push_str(&format!("# TYPE {name} counter\n{name} {}\n", allocations::allocations()));
    }
    page
}

/// Installs the process-wide recorder once and returns its handle (several in-process
/// servers in one test binary share it).
pub fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), LATENCY_BUCKETS)
                .map(PrometheusBuilder::build_recorder);
            match recorder {
                Ok(recorder) => {
                    let handle = recorder.handle();
                    // Another recorder may already be global (an embedding program's); then
                    // our handle renders only what we describe, which is still valid output.
                    // The dashboard counts beside the exporter (`activity`).
                    let _ = metrics::set_global_recorder(activity::Tee { inner: recorder });
                    describe();
                    spawn_upkeep(handle.clone());
                    handle
                }
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Runs the recorder's upkeep for the life of the process, on a thread of its own so that
/// it needs no runtime and outlives any one server started in-process.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new().name(METRICS_UPKEEP_THREAD.to_string()).spawn(move || loop {
        std::thread::sleep(METRICS_UPKEEP_EVERY);
        handle.run_upkeep();
    });
    if let Err(error) = spawned {
        tracing::error!(%error, "metrics upkeep not started: histogram samples are kept until a scrape");
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(PINGS_TOTAL, "Pings answered, by vertical and outcome (bid, no_bid, invalid).");
    describe_counter!(POSTS_TOTAL, "Posts answered, by vertical and outcome (sold, rejected, invalid).");
    describe_counter!(LEADS_TOTAL, "Whole leads decided (direct posts, bulk rows and posts after a ping), by vertical and outcome (sold, rejected, invalid).");
    describe_counter!(SALES_TOTAL, "Settled sales, by vertical.");
    describe_counter!(BUYER_REQUESTS_TOTAL, "Calls to buyer endpoints by buyer, kind (ping|post) and outcome.");
    describe_counter!(FILTERED_TOTAL, "Campaigns filtered out of a decision, by reason code.");
    describe_counter!(RETURNS_TOTAL, "Returns by status.");
    describe_counter!(DELIVERIES_TOTAL, "Lead deliveries by mode and outcome.");
    describe_counter!(
        CONNECTIONS_REFUSED_TOTAL,
        "Connections closed at once with a 503, by listener and the bound they met (listener, address)."
    );
    describe_histogram!(
        DECISION_DURATION_SECONDS,
        Unit::Seconds,
        "Time to decide a ping or lead, by vertical and model."
    );
    describe_histogram!(BUYER_REQUEST_DURATION_SECONDS, Unit::Seconds, "Buyer endpoint latency by buyer and kind.");
    describe_histogram!(HTTP_REQUEST_DURATION_SECONDS, Unit::Seconds, "HTTP request latency by route and status.");
    describe_gauge!(BUYER_AVAILABLE_BALANCE, "Balance minus holds (plus credit limit for invoice buyers), by buyer.");
    describe_gauge!(LEDGER_SEQUENCE, "Sequence of the last ledger event.");
    describe_gauge!(LEDGER_SUBSCRIBERS, "Connected ledger stream subscribers.");
    describe_gauge!(OUTBOX_PENDING, "Deliveries and notifications waiting in the outbox.");
    describe_gauge!(CAMPAIGNS_ACTIVE, "Active campaigns in the current configuration.");
    // Gauges that have no value until their feature runs still appear, so dashboards and
    // `promtool` see the full contract from the first scrape.
    metrics::gauge!(LEDGER_SEQUENCE).set(0.0);
    metrics::gauge!(LEDGER_SUBSCRIBERS).set(0.0);
    metrics::gauge!(OUTBOX_PENDING).set(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the upkeep, a node that is never scraped keeps every histogram sample.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_recorder_runs_its_upkeep_on_a_thread_of_its_own() {
        let handle = prometheus();
        let thread_names = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .expect("the process's threads")
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_string())
                .collect()
        };
        // Listed again for a while: other tests' threads come and go while the list is read.
        let started = std::time::Instant::now();
        let mut names = thread_names();
        while !names.iter().any(|name| name == METRICS_UPKEEP_THREAD) && started.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            names = thread_names();
        }
        assert!(names.iter().any(|name| name == METRICS_UPKEEP_THREAD), "threads: {names:?}");

        // Upkeep folds samples into buckets and loses none.
        for _ in 0..1_000 {
            metrics::histogram!(DECISION_DURATION_SECONDS, "vertical" => "upkeep-test").record(0.002);
        }
        handle.run_upkeep();
        let page = handle.render();
        let count = page
            .lines()
            .find(|line| {
                line.starts_with(DECISION_DURATION_SECONDS) && line.contains("upkeep-test") && line.contains("_count")
            })
            .and_then(|line| line.rsplit(' ').next()?.parse::<u64>().ok());
        assert_eq!(count, Some(1_000), "{page}");
    }
}
