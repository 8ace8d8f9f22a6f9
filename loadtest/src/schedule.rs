//! Open-loop arrival times: request `i` is due at `i / rate` seconds after the start,
//! in integer nanoseconds, whatever happened to the requests before it.
//!
//! Rationale: a load generator that waits for answers before sending more (closed loop)
//! sends less exactly when the server is slow, and so never measures the slow moments
//! ("coordinated omission"). Here arrivals keep their schedule, and each latency is
//! counted from the arrival's scheduled time, as wrk2 does.
//!
//! `pace` hands the arrivals over at those times from a thread of its own, with the OS's
//! high-resolution sleep: a tokio timer would round each one up to its 1 ms tick and send
//! it up to ~2 ms late (that lag is inside the latencies, since they count from the
//! schedule, so it would be measured as the server's).

use std::time::{Duration, Instant};

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

/// Calls `arrive(scheduled)` for arrivals `0..count` on the calling thread, each at its
/// scheduled time `start + offset(i)` or as soon after as the OS wakes the thread, never
/// before. An arrival whose time has already passed (the thread was not running) is handed
/// over at once, so a stall is caught up and the schedule never drifts. Stops early when
/// `arrive` returns false. Blocks: run it on a thread of its own.
pub fn pace(start: Instant, rate_per_s: u64, count: u64, mut arrive: impl FnMut(Instant) -> bool) {
    for index in 0..count {
        let scheduled = start + offset(index, rate_per_s);
        loop {
            let now = Instant::now();
            if now >= scheduled {
                break;
            }
            std::thread::sleep(scheduled - now);
        }
        if !arrive(scheduled) {
            break;
        }
    }
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

    #[test]
    fn pace_hands_arrivals_over_on_time_never_early() {
        // 200 arrivals at 2000/s: 100 ms.
        let start = Instant::now() + Duration::from_millis(5);
        let mut lags = Vec::new();
        let mut scheduled_times = Vec::new();
        pace(start, 2_000, 200, |scheduled| {
            let now = Instant::now();
            assert!(now >= scheduled, "arrival handed over {:?} early", scheduled - now);
            lags.push(now - scheduled);
            scheduled_times.push(scheduled);
            true
        });
        assert_eq!(lags.len(), 200);
        let expected: Vec<Instant> = (0..200).map(|i| start + offset(i, 2_000)).collect();
        assert_eq!(scheduled_times, expected, "every arrival, in order, at its scheduled time");
        lags.sort();
        // A tokio timer gives ~0.5-1.5 ms here; the OS sleep, tens of µs. The bound only
        // catches gross lateness, so a busy machine does not fail it.
        let median = lags[lags.len() / 2];
        assert!(median < Duration::from_micros(3_000), "median send lag {median:?}");
    }

    #[test]
    fn pace_catches_up_at_once_and_stops_when_told() {
        // Everything is already due: no sleeping, all handed over in order.
        let start = Instant::now() - Duration::from_secs(1);
        let began = Instant::now();
        let mut seen = 0;
        pace(start, 1_000, 500, |_| {
            seen += 1;
            true
        });
        assert_eq!(seen, 500);
        assert!(began.elapsed() < Duration::from_millis(500), "no sleep for past arrivals");

        let mut seen = 0;
        pace(Instant::now(), 1_000_000, 1_000, |_| {
            seen += 1;
            seen < 10
        });
        assert_eq!(seen, 10, "stopped at the first false");
    }
}
