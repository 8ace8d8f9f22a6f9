//! The worker's metrics (prefix `leadrouter_billing_`) and the Prometheus recorder.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const LEDGER_APPLIED_SEQUENCE: &str = "leadrouter_billing_ledger_applied_sequence";
pub const LEDGER_LAG: &str = "leadrouter_billing_ledger_lag";
pub const DOCUMENTS_ISSUED_TOTAL: &str = "leadrouter_billing_documents_issued_total";
pub const LEDGER_ERRORS_TOTAL: &str = "leadrouter_billing_ledger_errors_total";

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
            describe();
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
pub fn ledger_applied(applied: u64) {
    APPLIED.fetch_max(applied, Ordering::Relaxed);
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

/// Counts a failed ledger session: `unreachable`, `malformed` or `store`.
pub fn ledger_error(kind: &'static str) {
    metrics::counter!(LEDGER_ERRORS_TOTAL, "kind" => kind).increment(1);
}

/// Counts the documents a run issued, by kind (the number's prefix).
pub fn documents_issued(numbers: &[String]) {
    for number in numbers {
        let kind = match number.split('-').next() {
            Some("INV") => "invoice",
            Some("ST") => "statement",
            Some("CN") => "credit_note",
            _ => "supplier_settlement",
        };
        metrics::counter!(DOCUMENTS_ISSUED_TOTAL, "kind" => kind).increment(1);
    }
}

fn describe() {
    metrics::describe_gauge!(LEDGER_APPLIED_SEQUENCE, "The last ledger sequence applied to the billing database.");
    metrics::describe_gauge!(LEDGER_LAG, "Router sequence seen on the stream minus the sequence applied.");
    metrics::describe_counter!(DOCUMENTS_ISSUED_TOTAL, "Documents issued by billing runs, by kind.");
    metrics::describe_counter!(
        LEDGER_ERRORS_TOTAL,
        "Ledger sessions that failed, by kind: unreachable (retried), malformed or store (consumption stalls until fixed)."
    );
    metrics::describe_gauge!(
        crate::notify::NOTIFICATIONS_PENDING,
        "Notifications waiting to be emailed (only while an SMTP server is configured)."
    );
    metrics::describe_counter!(crate::notify::NOTIFICATIONS_SENT_TOTAL, "Email attempts of notifications, by outcome.");
}

/// The `/metrics` page.
pub fn render() -> String {
    prometheus().render()
}
