//! Circuit breaker per buyer endpoint.
//!
//! Owns the decision "may a call to this endpoint go out now?". A buyer that times out or
//! errors again and again costs every auction it is in a full `tmax_ms` wait and a
//! connection; after `failures_to_open` consecutive failures we stop calling it for
//! `open_for`, then let exactly one probe through (half-open): its success closes the
//! breaker, its failure opens it again.
//!
//! Shaped as a pure state machine: time comes in as an argument (`Instant`), so every
//! transition is tested with fake instants, without sleeping. The caller decides what a
//! failure is (timeouts and errors; a no-bid is a success).
//!
//! Rationale for the map: a `DashMap` shards its locks, so concurrent auctions calling
//! different buyers do not contend on one lock. Only endpoints that are currently failing
//! (or open) have an entry: a success on a closed breaker removes it, which keeps the map
//! as small as the set of misbehaving endpoints.
//!
//! Known simplification: reports carry no ticket, so while half-open a late failure of a
//! call started before the breaker opened re-opens it like a failed probe would. That errs
//! on the side of calling a flaky endpoint less; the signatures stay as simple as `bool`.

use std::time::{Duration, Instant};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

/// Consecutive failures that open a breaker: enough that one unlucky timeout does not cut a
/// buyer off, few enough that a dead endpoint stops costing auctions within seconds.
pub const FAILURES_TO_OPEN: u32 = 5;

/// How long an open breaker refuses calls before one probe is let through: long enough for
/// a restarting buyer endpoint to come back, short enough that a recovered buyer loses
/// little traffic.
pub const OPEN_FOR: Duration = Duration::from_secs(30);

/// How long a half-open breaker waits for its probe to report before letting another probe
/// through. Far longer than any ping or post deadline, so only a probe whose caller was
/// cancelled (and so never reported) ever hits it; without it such a breaker would stay
/// half-open and refuse the endpoint forever.
pub const PROBE_LEASE: Duration = Duration::from_secs(30);

/// Endpoints tracked at most. Buyers come from configuration, so real traffic stays far
/// below; the bound keeps memory finite if endpoints were ever generated. Beyond it a new
/// failing endpoint is not tracked (it behaves as closed) and a warning is logged.
pub const ENDPOINTS_MAX: usize = 100_000;

/// The longest duration accepted in a `BreakerConfig`: keeps `Instant + duration` far from
/// overflow and catches a misconfiguration (seconds taken for milliseconds, say).
const CONFIG_DURATION_MAX: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failures_to_open: u32,
    pub open_for: Duration,
    pub probe_lease: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failures_to_open: FAILURES_TO_OPEN, open_for: OPEN_FOR, probe_lease: PROBE_LEASE }
    }
}

/// What traces and metrics show about one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Closed but with recent consecutive failures (a clean closed endpoint has no slot).
    Failing {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out since `probe_started`; everyone else waits for its report.
    HalfOpen {
        probe_started: Instant,
    },
}

#[derive(Debug)]
pub struct Breakers {
    config: BreakerConfig,
    slots: DashMap<String, Slot>,
}

impl Default for Breakers {
    fn default() -> Self {
        Breakers::new(BreakerConfig::default())
    }
}

impl Breakers {
    pub fn new(config: BreakerConfig) -> Breakers {
        assert!(config.failures_to_open >= 1, "failures_to_open must be at least 1");
        assert!(config.open_for <= CONFIG_DURATION_MAX, "open_for too long");
        assert!(config.probe_lease <= CONFIG_DURATION_MAX, "probe_lease too long");
        Breakers { config, slots: DashMap::new() }
    }

    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    /// Whether a call to `endpoint` may go out now (closed, or half-open and this is the
    /// probe). A caller that got `true` must report with `record_success`/`record_failure`.
    pub fn allow(&self, endpoint: &str, now: Instant) -> bool {
        let Some(mut slot) = self.slots.get_mut(endpoint) else {
            return true;
        };
        match *slot {
            Slot::Failing { .. } => true,
            Slot::Open { until } if now < until => false,
            Slot::HalfOpen { probe_started }
                if now.saturating_duration_since(probe_started) < self.config.probe_lease =>
            {
                false
            }
            // The open period is over, or the last probe never reported: this caller probes.
            Slot::Open { .. } | Slot::HalfOpen { .. } => {
                *slot = Slot::HalfOpen { probe_started: now };
                true
            }
        }
    }

    pub fn record_success(&self, endpoint: &str) {
        // A success that started before the breaker opened says nothing about now, so an
        // open slot stays; any other slot goes (closed and clean).
        self.slots.remove_if(endpoint, |_, slot| !matches!(slot, Slot::Open { .. }));
    }

    pub fn record_failure(&self, endpoint: &str, now: Instant) {
        // Common case first, without allocating the key.
        if let Some(mut slot) = self.slots.get_mut(endpoint) {
            *slot = self.after_failure(Some(*slot), now);
            return;
        }
        // `len` locks every shard: call it before holding any entry.
        if self.slots.len() >= ENDPOINTS_MAX {
            tracing::warn!(endpoint, "circuit breaker table full; endpoint not tracked");
            return;
        }
        // A concurrent first failure may have inserted meanwhile: count on top of it.
        match self.slots.entry(endpoint.to_string()) {
            Entry::Occupied(mut occupied) => {
                let next = self.after_failure(Some(*occupied.get()), now);
                occupied.insert(next);
            }
            Entry::Vacant(vacant) => {
                vacant.insert(self.after_failure(None, now));
            }
        }
    }

    fn after_failure(&self, slot: Option<Slot>, now: Instant) -> Slot {
        let open = Slot::Open { until: now + self.config.open_for };
        match slot.unwrap_or(Slot::Failing { failures: 0 }) {
            Slot::Failing { failures } => {
                let failures = failures.saturating_add(1);
                if failures >= self.config.failures_to_open {
                    open
                } else {
                    Slot::Failing { failures }
                }
            }
            Slot::HalfOpen { .. } => open,
            // Already open: a late failure must not extend the open period.
            already_open @ Slot::Open { .. } => already_open,
        }
    }

    /// The state as of the last call to `allow` or `record_*` (an open breaker whose period
    /// has run out shows `Open` until the next `allow` turns it half-open).
    pub fn state(&self, endpoint: &str) -> BreakerState {
        match self.slots.get(endpoint).map(|slot| *slot) {
            None | Some(Slot::Failing { .. }) => BreakerState::Closed,
            Some(Slot::Open { .. }) => BreakerState::Open,
            Some(Slot::HalfOpen { .. }) => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: &str = "http://buyer.example/ping";

    fn fail_times(breakers: &Breakers, n: u32, now: Instant) {
        for _ in 0..n {
            assert!(breakers.allow(EP, now));
            breakers.record_failure(EP, now);
        }
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let t0 = Instant::now();
        let b = Breakers::default();
        fail_times(&b, FAILURES_TO_OPEN - 1, t0);
        assert_eq!(b.state(EP), BreakerState::Closed);
        b.record_success(EP); // a no-bid, say: resets the count
        fail_times(&b, FAILURES_TO_OPEN - 1, t0);
        assert!(b.allow(EP, t0));
        b.record_failure(EP, t0);
        assert_eq!(b.state(EP), BreakerState::Open);
        assert!(!b.allow(EP, t0));
        assert!(!b.allow(EP, t0 + OPEN_FOR - Duration::from_millis(1)));
    }

    #[test]
    fn half_open_lets_exactly_one_probe_then_closes_on_success() {
        let t0 = Instant::now();
        let b = Breakers::default();
        fail_times(&b, FAILURES_TO_OPEN, t0);
        let later = t0 + OPEN_FOR;
        assert!(b.allow(EP, later), "the probe");
        assert_eq!(b.state(EP), BreakerState::HalfOpen);
        assert!(!b.allow(EP, later));
        assert!(!b.allow(EP, later + Duration::from_secs(1)));
        b.record_success(EP);
        assert_eq!(b.state(EP), BreakerState::Closed);
        assert!(b.allow(EP, later));
        assert!(b.allow(EP, later));
    }

    #[test]
    fn failed_probe_reopens_for_another_period() {
        let t0 = Instant::now();
        let b = Breakers::default();
        fail_times(&b, FAILURES_TO_OPEN, t0);
        let probe_at = t0 + OPEN_FOR + Duration::from_secs(5);
        assert!(b.allow(EP, probe_at));
        b.record_failure(EP, probe_at);
        assert_eq!(b.state(EP), BreakerState::Open);
        assert!(!b.allow(EP, probe_at + OPEN_FOR - Duration::from_millis(1)));
        assert!(b.allow(EP, probe_at + OPEN_FOR));
    }

    #[test]
    fn probe_that_never_reports_is_replaced_after_the_lease() {
        let t0 = Instant::now();
        let b = Breakers::default();
        fail_times(&b, FAILURES_TO_OPEN, t0);
        let probe_at = t0 + OPEN_FOR;
        assert!(b.allow(EP, probe_at));
        assert!(!b.allow(EP, probe_at + PROBE_LEASE - Duration::from_millis(1)));
        assert!(b.allow(EP, probe_at + PROBE_LEASE));
        assert!(!b.allow(EP, probe_at + PROBE_LEASE));
    }

    #[test]
    fn late_results_while_open_change_nothing() {
        let t0 = Instant::now();
        let b = Breakers::default();
        fail_times(&b, FAILURES_TO_OPEN, t0);
        b.record_success(EP);
        assert_eq!(b.state(EP), BreakerState::Open);
        b.record_failure(EP, t0 + Duration::from_secs(20));
        assert!(b.allow(EP, t0 + OPEN_FOR), "open period not extended");
    }

    #[test]
    fn endpoints_are_independent_and_config_is_honoured() {
        let t0 = Instant::now();
        let b = Breakers::new(BreakerConfig {
            failures_to_open: 2,
            open_for: Duration::from_secs(1),
            probe_lease: Duration::from_secs(1),
        });
        b.record_failure("a", t0);
        b.record_failure("a", t0);
        assert_eq!(b.state("a"), BreakerState::Open);
        assert_eq!(b.state("b"), BreakerState::Closed);
        assert!(b.allow("b", t0));
        assert!(b.allow("a", t0 + Duration::from_secs(1)));
    }

    #[test]
    fn a_single_failure_opens_when_so_configured() {
        let t0 = Instant::now();
        let b = Breakers::new(BreakerConfig { failures_to_open: 1, ..BreakerConfig::default() });
        b.record_failure(EP, t0);
        assert!(!b.allow(EP, t0));
    }

    #[test]
    fn clean_endpoints_leave_no_entry() {
        let t0 = Instant::now();
        let b = Breakers::default();
        b.record_success(EP);
        b.record_failure(EP, t0);
        b.record_success(EP);
        assert!(b.slots.is_empty());
    }
}
