//! Admission control: a bound on requests in flight (503 beyond it) and a token bucket per
//! supplier with a configured rate (429 beyond it).

use std::time::Instant;

use dashmap::DashMap;

/// Requests decided at once before the server answers 503: far above what two cores can
/// usefully work on, low enough that memory stays bounded when buyers hang.
pub const IN_FLIGHT_MAX: usize = 8_192;
/// A bucket holds this many seconds of a supplier's rate, so short bursts pass.
const BURST_SECONDS: f64 = 2.0;

#[derive(Default)]
pub struct RateLimits {
    buckets: DashMap<String, Bucket>,
}

struct Bucket {
    tokens: f64,
    rate_per_s: f64,
    refilled_at: Instant,
}

impl RateLimits {
    /// Takes one token from the supplier's bucket; false when it is empty.
    pub fn allow(&self, supplier_id: &str, rate_per_s: u32, now: Instant) -> bool {
        let rate = f64::from(rate_per_s);
        let capacity = rate * BURST_SECONDS;
        let mut bucket = self.buckets.entry(supplier_id.to_string()).or_insert_with(|| Bucket {
            tokens: capacity,
            rate_per_s: rate,
            refilled_at: now,
        });
        if bucket.rate_per_s != rate {
            bucket.rate_per_s = rate;
            bucket.tokens = bucket.tokens.min(capacity);
        }
        let elapsed = now.saturating_duration_since(bucket.refilled_at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limits = RateLimits::default();
        let start = Instant::now();
        let allowed = (0..100).filter(|_| limits.allow("s1", 10, start)).count();
        assert_eq!(allowed, 20, "two seconds of burst");
        assert!(!limits.allow("s1", 10, start));
        assert!(limits.allow("s1", 10, start + Duration::from_millis(100)));
        assert!(limits.allow("s2", 10, start), "buckets are per supplier");
    }
}
