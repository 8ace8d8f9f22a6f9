//! The worker's metrics (prefix `leadrouter_billing_`) and the Prometheus recorder.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const LEDGER_APPLIED_SEQUENCE: &str = "leadrouter_billing_ledger_applied_sequence";
pub const LEDGER_LAG: &str = "leadrouter_billing_ledger_lag";
pub const DOCUMENTS_ISSUED_TOTAL: &str = "leadrouter_billing_documents_issued_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static SEEN: AtomicU64 = AtomicU64::new(0);
static APPLIED: AtomicU64 = AtomicU64::new(0);

/// Installs the process-wide recorder once (tests may start several workers in-process).
pub fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed already (the router in the same test
            // process); then this one only renders what it is given.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The highest router sequence the stream has shown.
pub fn ledger_seen(sequence: u64) {
    SEEN.fetch_max(sequence, Ordering::Relaxed);
    publish();
}

/// The applied cursor after a batch.
pub fn ledger_applied(applied: u64, seen: u64) {
    APPLIED.fetch_max(applied, Ordering::Relaxed);
    SEEN.fetch_max(seen, Ordering::Relaxed);
    publish();
}

fn publish() {
    let (seen, applied) = (SEEN.load(Ordering::Relaxed), APPLIED.load(Ordering::Relaxed));
    metrics::gauge!(LEDGER_APPLIED_SEQUENCE).set(applied as f64);
    metrics::gauge!(LEDGER_LAG).set(seen.saturating_sub(applied) as f64);
}

/// The cursor read from the database at start.
pub fn ledger_start(applied: u64) {
    APPLIED.fetch_max(applied, Ordering::Relaxed);
    SEEN.fetch_max(applied, Ordering::Relaxed);
    publish();
}

pub fn documents_issued(kind: &'static str, count: u64) {
    metrics::counter!(DOCUMENTS_ISSUED_TOTAL, "kind" => kind).increment(count);
}

/// The `/metrics` page.
pub fn render() -> String {
    prometheus().render()
}
