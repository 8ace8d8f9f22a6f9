//! What the operator's dashboard shows (DESIGN §15): this node's pings, bids, leads, sales,
//! buyer requests and their latency and errors, as running totals and as one sample a
//! second for the last minutes.
//!
//! Rationale: the totals are counted by the same increments as the Prometheus metrics of
//! §10. `Tee` sits between the `metrics` macros and the exporter and adds the increments
//! of the metrics the dashboard shows to atomics, so the dashboard can never disagree with
//! `/metrics` and no call site counts twice. Revenue is the exact decimal sum of
//! `telemetry::record_revenue`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use parking_lot::Mutex;
use rust_decimal::Decimal;

use super::{BUYER_REQUESTS_TOTAL, BUYER_REQUEST_DURATION_SECONDS, LEADS_TOTAL, PINGS_TOTAL, SALES_TOTAL};
use crate::domain::money::Currency;

/// How many one-second samples are kept: the last 15 minutes.
pub const SAMPLES_KEPT: usize = 900;

/// Running totals since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub pings: u64,
    pub bids: u64,
    pub leads: u64,
    pub leads_sold: u64,
    /// Sales settled (a lead sold to two buyers is two).
    pub sales: u64,
    pub buyer_requests: u64,
    /// Buyer requests that ended in `error` or `timeout`.
    pub buyer_errors: u64,
    /// Their summed latency, for a mean over any span.
    pub buyer_latency_micros: u64,
    pub buyer_latency_count: u64,
}

impl Totals {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Totals) -> Totals {
        Totals {
            pings: self.pings.saturating_sub(earlier.pings),
            bids: self.bids.saturating_sub(earlier.bids),
            leads: self.leads.saturating_sub(earlier.leads),
            leads_sold: self.leads_sold.saturating_sub(earlier.leads_sold),
            sales: self.sales.saturating_sub(earlier.sales),
            buyer_requests: self.buyer_requests.saturating_sub(earlier.buyer_requests),
            buyer_errors: self.buyer_errors.saturating_sub(earlier.buyer_errors),
            buyer_latency_micros: self.buyer_latency_micros.saturating_sub(earlier.buyer_latency_micros),
            buyer_latency_count: self.buyer_latency_count.saturating_sub(earlier.buyer_latency_count),
        }
    }

    /// Leads sold of leads decided, in percent (none decided: none).
    pub fn fill_rate_percent(&self) -> Option<u64> {
        (self.leads > 0).then(|| self.leads_sold * 100 / self.leads)
    }

    /// The mean buyer latency in milliseconds (no request: none).
    pub fn mean_buyer_latency_ms(&self) -> Option<u64> {
        (self.buyer_latency_count > 0).then(|| self.buyer_latency_micros / self.buyer_latency_count / 1_000)
    }
}

/// One second of the dashboard's charts: the totals at `at`, and revenue by currency.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub totals: Totals,
    pub revenue: BTreeMap<Currency, Decimal>,
}

#[derive(Default)]
struct Counters {
    pings: AtomicU64,
    bids: AtomicU64,
    leads: AtomicU64,
    leads_sold: AtomicU64,
    sales: AtomicU64,
    buyer_requests: AtomicU64,
    buyer_errors: AtomicU64,
    buyer_latency_micros: AtomicU64,
    buyer_latency_count: AtomicU64,
}

/// The process's activity: totals and the samples of the last minutes.
#[derive(Default)]
pub struct Activity {
    counters: Counters,
    samples: Mutex<VecDeque<Sample>>,
}

static ACTIVITY: OnceLock<Activity> = OnceLock::new();

/// The process's activity (one per process, as the metrics are).
pub fn activity() -> &'static Activity {
    ACTIVITY.get_or_init(Activity::default)
}

impl Activity {
    pub fn totals(&self) -> Totals {
        let c = &self.counters;
        Totals {
            pings: c.pings.load(Ordering::Relaxed),
            bids: c.bids.load(Ordering::Relaxed),
            leads: c.leads.load(Ordering::Relaxed),
            leads_sold: c.leads_sold.load(Ordering::Relaxed),
            sales: c.sales.load(Ordering::Relaxed),
            buyer_requests: c.buyer_requests.load(Ordering::Relaxed),
            buyer_errors: c.buyer_errors.load(Ordering::Relaxed),
            buyer_latency_micros: c.buyer_latency_micros.load(Ordering::Relaxed),
            buyer_latency_count: c.buyer_latency_count.load(Ordering::Relaxed),
        }
    }

    /// Takes this second's sample (the server does, once a second, on its clock). Several
    /// servers in one process (tests) share it: a second already sampled is not again.
    pub fn sample(&self, at: DateTime<Utc>) {
        let sample = Sample { at, totals: self.totals(), revenue: super::revenue() };
        let mut samples = self.samples.lock();
        if samples.back().is_some_and(|last| (at - last.at).num_milliseconds().abs() < 500) {
            return;
        }
        if samples.len() == SAMPLES_KEPT {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// The samples taken at or after `since`, oldest first.
    pub fn samples_since(&self, since: DateTime<Utc>) -> Vec<Sample> {
        self.samples.lock().iter().filter(|sample| sample.at >= since).cloned().collect()
    }

    /// The counter of `key`'s increments that the dashboard shows, if it shows them.
    fn counter_of(&self, key: &Key) -> Option<&AtomicU64> {
        let label = |name: &str| key.labels().find(|label| label.key() == name).map(|label| label.value().to_string());
        let c = &self.counters;
        match key.name() {
            PINGS_TOTAL => match label("outcome").as_deref() {
                Some("bid") => Some(&c.bids),
                _ => None,
            },
            LEADS_TOTAL => match label("outcome").as_deref() {
                Some("sold") => Some(&c.leads_sold),
                _ => None,
            },
            BUYER_REQUESTS_TOTAL => match label("outcome").as_deref() {
                Some("error" | "timeout") => Some(&c.buyer_errors),
                _ => None,
            },
            _ => None,
        }
    }

    /// The counter every increment of `key` also adds to (totals over all labels).
    fn total_of(&self, key: &Key) -> Option<&AtomicU64> {
        let c = &self.counters;
        match key.name() {
            PINGS_TOTAL => Some(&c.pings),
            LEADS_TOTAL => Some(&c.leads),
            SALES_TOTAL => Some(&c.sales),
            BUYER_REQUESTS_TOTAL => Some(&c.buyer_requests),
            _ => None,
        }
    }
}

/// The recorder the process installs: the exporter's, with the dashboard's counts beside.
pub struct Tee<R> {
    pub inner: R,
}

struct CountingCounter {
    inner: Counter,
    total: Option<&'static AtomicU64>,
    labelled: Option<&'static AtomicU64>,
}

impl CounterFn for CountingCounter {
    fn increment(&self, value: u64) {
        self.inner.increment(value);
        for counter in [self.total, self.labelled].into_iter().flatten() {
            counter.fetch_add(value, Ordering::Relaxed);
        }
    }

    fn absolute(&self, value: u64) {
        self.inner.absolute(value);
    }
}

struct TimedHistogram {
    inner: Histogram,
}

impl HistogramFn for TimedHistogram {
    fn record(&self, seconds: f64) {
        self.inner.record(seconds);
        let counters = &activity().counters;
        // Latency is not money: a float to whole microseconds is exact enough to chart.
        counters.buyer_latency_micros.fetch_add((seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
        counters.buyer_latency_count.fetch_add(1, Ordering::Relaxed);
    }
}

impl<R: Recorder> Recorder for Tee<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        let inner = self.inner.register_counter(key, metadata);
        let activity = activity();
        let (total, labelled) = (activity.total_of(key), activity.counter_of(key));
        if total.is_none() && labelled.is_none() {
            return inner;
        }
        Counter::from_arc(Arc::new(CountingCounter { inner, total, labelled }))
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.inner.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        let inner = self.inner.register_histogram(key, metadata);
        if key.name() != BUYER_REQUEST_DURATION_SECONDS {
            return inner;
        }
        Histogram::from_arc(Arc::new(TimedHistogram { inner }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_dashboard_counts_what_the_metrics_count() {
        let recorder = Tee { inner: metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder() };
        let handle = recorder.inner.handle();
        let before = activity().totals();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!(PINGS_TOTAL, "vertical" => "solar", "outcome" => "bid").increment(3);
            metrics::counter!(PINGS_TOTAL, "vertical" => "solar", "outcome" => "no_bid").increment(1);
            metrics::counter!(LEADS_TOTAL, "vertical" => "solar", "outcome" => "sold").increment(2);
            metrics::counter!(LEADS_TOTAL, "vertical" => "solar", "outcome" => "rejected").increment(2);
            metrics::counter!(SALES_TOTAL, "vertical" => "solar").increment(2);
            metrics::counter!(BUYER_REQUESTS_TOTAL, "buyer" => "b1", "kind" => "post", "outcome" => "timeout")
                .increment(1);
            metrics::histogram!(BUYER_REQUEST_DURATION_SECONDS, "buyer" => "b1", "kind" => "post").record(0.25);
        });
        let seen = activity().totals().since(&before);
        // Other tests of this process may count too: at least ours are there.
        assert!(seen.pings >= 4 && seen.bids >= 3, "{seen:?}");
        assert!(seen.leads >= 4 && seen.leads_sold >= 2 && seen.sales >= 2, "{seen:?}");
        assert!(seen.buyer_requests >= 1 && seen.buyer_errors >= 1, "{seen:?}");
        assert!(seen.buyer_latency_count >= 1 && seen.buyer_latency_micros >= 250_000, "{seen:?}");
        let page = handle.render();
        assert!(page.contains("outcome=\"bid\"} 3"), "the exporter still counts: {page}");
    }

    #[test]
    fn samples_keep_the_last_fifteen_minutes_and_rates_come_from_their_differences() {
        let activity = Activity::default();
        let start = Utc.with_ymd_and_hms(2026, 12, 4, 10, 0, 0).unwrap();
        for second in 0..(SAMPLES_KEPT as i64 + 60) {
            activity.counters.leads.fetch_add(2, Ordering::Relaxed);
            activity.counters.leads_sold.fetch_add(1, Ordering::Relaxed);
            activity.sample(start + chrono::Duration::seconds(second));
        }
        let all = activity.samples_since(start);
        assert_eq!(all.len(), SAMPLES_KEPT);
        assert_eq!(all[0].at, start + chrono::Duration::seconds(60));
        let last_minute = activity.samples_since(start + chrono::Duration::seconds(SAMPLES_KEPT as i64));
        let span = last_minute[last_minute.len() - 1].totals.since(&last_minute[0].totals);
        assert_eq!((span.leads, span.leads_sold), (118, 59));
        assert_eq!(span.fill_rate_percent(), Some(50));
        assert_eq!(Totals::default().fill_rate_percent(), None);
    }
}
