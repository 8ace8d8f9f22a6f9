//! Open-loop arrival times: request `i` is due at `i / rate` seconds after the start,
//! in integer nanoseconds, whatever happened to the requests before it.
//!
//! Rationale: a load generator that waits for answers before sending more (closed loop)
//! sends less exactly when the server is slow, and so never measures the slow moments
//! ("coordinated omission"). Here arrivals keep their schedule, and each latency is
//! counted from the arrival's scheduled time, as wrk2 does.

use std::time::Duration;

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Nanoseconds from the start at which arrival `index` is due.
pub fn offset_ns(index: u64, rate_per_s: u64) -> u64 {
    debug_assert!(rate_per_s > 0);
    let ns = u128::from(index) * NANOS_PER_SECOND / u128::from(rate_per_s.max(1));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

pub fn offset(index: u64, rate_per_s: u64) -> Duration {
    Duration::from_nanos(offset_ns(index, rate_per_s))
}

/// How many arrivals are due strictly before `window` has passed.
pub fn arrivals_within(window: Duration, rate_per_s: u64) -> u64 {
    // The smallest i with i * 1e9 / rate >= window_ns is ceil(window_ns * rate / 1e9).
    let product = window.as_nanos() * u128::from(rate_per_s);
    let count = product.div_ceil(NANOS_PER_SECOND);
    u64::try_from(count).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_exact_for_round_rates() {
        assert_eq!(offset_ns(0, 1_000), 0);
        assert_eq!(offset_ns(1, 1_000), 1_000_000);
        assert_eq!(offset_ns(1_500, 1_000), 1_500_000_000);
        assert_eq!(offset(20, 10), Duration::from_secs(2));
    }

    #[test]
    fn offsets_round_down_and_never_drift() {
        assert_eq!(offset_ns(1, 3), 333_333_333);
        assert_eq!(offset_ns(2, 3), 666_666_666);
        assert_eq!(offset_ns(3, 3), 1_000_000_000, "no accumulated rounding error");
        assert_eq!(offset_ns(3_000_000, 3), 1_000_000_000_000_000);
        let mut previous = 0;
        for i in 0..10_000 {
            let t = offset_ns(i, 7_777);
            assert!(t >= previous);
            previous = t;
        }
    }

    #[test]
    fn the_window_holds_rate_times_duration_arrivals() {
        assert_eq!(arrivals_within(Duration::from_secs(1), 3), 3);
        assert_eq!(arrivals_within(Duration::from_secs(20), 1_000), 20_000);
        assert_eq!(arrivals_within(Duration::from_millis(1_001), 1_000), 1_001);
        assert_eq!(arrivals_within(Duration::from_nanos(1_000_000_001), 3), 4, "the arrival at 1 s is inside");
        assert_eq!(arrivals_within(Duration::ZERO, 1_000), 0);
        for (window, rate) in [(Duration::from_millis(2_500), 7), (Duration::from_secs(3), 333)] {
            let n = arrivals_within(window, rate);
            assert!(offset(n - 1, rate) < window && offset(n, rate) >= window);
        }
    }
}
