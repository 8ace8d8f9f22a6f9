//! The per-buyer metrics (`leadrouter_buyer_requests_total`,
//! `leadrouter_buyer_request_duration_seconds`, `leadrouter_buyer_available_balance`),
//! through handles registered once per buyer and label set.
//!
//! Rationale: a `counter!` with an owned `buyer` label builds, hashes and looks up its key on
//! every call, about five allocations each; a ping fanned out to ten buyers made twenty such
//! calls and a hold one more (issue 17). A handle feeds the same recorder, so `/metrics` and
//! the dashboard (`activity::Tee`) see the same increments. Handles are kept only once our
//! recorder is installed: one taken from the no-op recorder before that would drop every
//! later increment.

use std::sync::OnceLock;
use std::time::Duration;

use dashmap::DashMap;
use metrics::{Counter, Gauge, Histogram};

use super::{BUYER_AVAILABLE_BALANCE, BUYER_REQUESTS_TOTAL, BUYER_REQUEST_DURATION_SECONDS};

/// One buyer's handles, found by a short scan: a buyer has at most two kinds and a handful
/// of outcomes.
#[derive(Default)]
struct Meters {
    requests: Vec<(&'static str, &'static str, Counter)>,
    durations: Vec<(&'static str, Histogram)>,
    available: Option<Gauge>,
}

static METERS: OnceLock<DashMap<Box<str>, Meters>> = OnceLock::new();

/// Counts one call to a buyer's endpoint of `kind` (`ping`, `post`) and its latency.
pub fn buyer_request(buyer_id: &str, kind: &'static str, outcome: &'static str, latency: Duration) {
    let (counter, histogram) = handles(
        buyer_id,
        |meters| {
            let counter = meters.requests.iter().find(|(k, o, _)| *k == kind && *o == outcome)?;
            let histogram = meters.durations.iter().find(|(k, _)| *k == kind)?;
            Some((counter.2.clone(), histogram.1.clone()))
        },
        |meters| {
            if !meters.requests.iter().any(|(k, o, _)| *k == kind && *o == outcome) {
                let counter = request_counter(buyer_id, kind, outcome);
                meters.requests.push((kind, outcome, counter));
            }
            if !meters.durations.iter().any(|(k, _)| *k == kind) {
                meters.durations.push((kind, duration_histogram(buyer_id, kind)));
            }
        },
        || (request_counter(buyer_id, kind, outcome), duration_histogram(buyer_id, kind)),
    );
    counter.increment(1);
    histogram.record(latency.as_secs_f64());
}

/// Sets a buyer's available balance gauge.
pub fn buyer_available(buyer_id: &str, available: f64) {
    let gauge = handles(
        buyer_id,
        |meters| meters.available.clone(),
        |meters| {
            if meters.available.is_none() {
                meters.available = Some(available_gauge(buyer_id));
            }
        },
        || available_gauge(buyer_id),
    );
    gauge.set(available);
}

/// Finds handles with `find`; when they are missing, `add` registers them under the
/// buyer's entry and `find` answers again. Before our recorder is installed, `register`
/// answers handles that are not kept.
fn handles<T>(
    buyer_id: &str,
    find: impl Fn(&Meters) -> Option<T>,
    add: impl FnOnce(&mut Meters),
    register: impl FnOnce() -> T,
) -> T {
    if super::HANDLE.get().is_none() {
        return register();
    }
    let meters = METERS.get_or_init(DashMap::new);
    if let Some(found) = meters.get(buyer_id).and_then(|entry| find(&entry)) {
        return found;
    }
    let mut entry = meters.entry(Box::from(buyer_id)).or_default();
    add(&mut entry);
    match find(&entry) {
        Some(found) => found,
        None => register(),
    }
}

fn request_counter(buyer_id: &str, kind: &'static str, outcome: &'static str) -> Counter {
    metrics::counter!(BUYER_REQUESTS_TOTAL, "buyer" => buyer_id.to_string(), "kind" => kind, "outcome" => outcome)
}

fn duration_histogram(buyer_id: &str, kind: &'static str) -> Histogram {
    metrics::histogram!(BUYER_REQUEST_DURATION_SECONDS, "buyer" => buyer_id.to_string(), "kind" => kind)
}

fn available_gauge(buyer_id: &str) -> Gauge {
    metrics::gauge!(BUYER_AVAILABLE_BALANCE, "buyer" => buyer_id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(page: &str, prefix: &str) -> Option<f64> {
        page.lines().find(|line| line.starts_with(prefix)).and_then(|line| line.rsplit(' ').next()?.parse().ok())
    }

    /// Kept handles count every call into the same series the macros would, label by label.
    #[test]
    fn kept_handles_count_into_the_same_series() {
        let handle = crate::telemetry::prometheus();
        for outcome in ["bid", "bid", "no_bid", "bid"] {
            buyer_request("meters-b1", "ping", outcome, Duration::from_millis(5));
        }
        buyer_request("meters-b1", "post", "accepted", Duration::from_millis(20));
        buyer_request("meters-b2", "ping", "bid", Duration::from_millis(5));
        buyer_available("meters-b1", 12.5);
        buyer_available("meters-b1", 7.25);
        let page = handle.render();
        let requests = |buyer: &str, kind: &str, outcome: &str| {
            let prefix = format!("{BUYER_REQUESTS_TOTAL}{{buyer=\"{buyer}\",kind=\"{kind}\",outcome=\"{outcome}\"}} ");
            series(&page, &prefix)
        };
        assert_eq!(requests("meters-b1", "ping", "bid"), Some(3.0), "{page}");
        assert_eq!(requests("meters-b1", "ping", "no_bid"), Some(1.0));
        assert_eq!(requests("meters-b1", "post", "accepted"), Some(1.0));
        assert_eq!(requests("meters-b2", "ping", "bid"), Some(1.0));
        let pings = format!("{BUYER_REQUEST_DURATION_SECONDS}_count{{buyer=\"meters-b1\",kind=\"ping\"}} ");
        assert_eq!(series(&page, &pings), Some(4.0), "{page}");
        let balance = format!("{BUYER_AVAILABLE_BALANCE}{{buyer=\"meters-b1\"}} ");
        assert_eq!(series(&page, &balance), Some(7.25), "{page}");
    }
}
