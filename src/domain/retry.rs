//! When to try an outbox delivery again (DESIGN §5): exponential backoff with jitter, and
//! a retry budget after which the delivery is dead-lettered for an operator.
//!
//! Jitter is passed in (a number in [0, 1)), so the rule is pure and the engine decides
//! where randomness comes from.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// The delay after the first failure (before jitter).
    pub base: Duration,
    /// No delay grows past this.
    pub cap: Duration,
    /// Attempts in all, the first included; the delivery is dead-lettered after the last.
    pub attempts_max: u32,
}

impl Default for RetryPolicy {
    /// 2 s doubling to 15 min, 16 attempts: about 2.4 hours of retries, long enough to ride
    /// out a buyer's deploy or a short outage, short enough that a lead is still fresh when
    /// an operator looks at the dead letter.
    fn default() -> RetryPolicy {
        RetryPolicy { base: Duration::from_secs(2), cap: Duration::from_secs(15 * 60), attempts_max: 16 }
    }
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryIn(Duration),
    DeadLetter,
}

impl RetryPolicy {
    /// After `attempts` failed attempts (1 after the first): retry after
    /// `min(cap, base * 2^(attempts-1))`, of which the upper half is jittered ("equal
    /// jitter"), so retries of many deliveries that failed together spread out instead of
    /// arriving at a recovering buyer at once, while no retry comes sooner than half the
    /// backoff.
    pub fn after_failure(&self, attempts: u32, jitter: f64) -> AfterFailure {
        if attempts >= self.attempts_max {
            return AfterFailure::DeadLetter;
        }
        let doublings = attempts.saturating_sub(1).min(32);
        let backoff = self.base.saturating_mul(1u32 << doublings.min(31)).min(self.cap);
        let half = backoff / 2;
        let jitter = if jitter.is_finite() { jitter.clamp(0.0, 1.0) } else { 0.0 };
        AfterFailure::RetryIn(half + half.mul_f64(jitter))
    }

    /// The longest a delivery can take from its first attempt to its dead letter (without
    /// the attempts themselves): what an operator can promise a buyer.
    pub fn budget(&self) -> Duration {
        (1..self.attempts_max)
            .map(|attempts| match self.after_failure(attempts, 1.0) {
                AfterFailure::RetryIn(delay) => delay,
                AfterFailure::DeadLetter => Duration::ZERO,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn delays_double_up_to_the_cap_then_dead_letter() {
        let policy = RetryPolicy::default();
        let upper: Vec<u64> = (1..8)
            .map(|n| match policy.after_failure(n, 1.0) {
                AfterFailure::RetryIn(d) => d.as_secs(),
                AfterFailure::DeadLetter => 0,
            })
            .collect();
        assert_eq!(upper, [2, 4, 8, 16, 32, 64, 128]);
        assert_eq!(policy.after_failure(12, 1.0), AfterFailure::RetryIn(Duration::from_secs(900)));
        assert_eq!(policy.after_failure(16, 0.5), AfterFailure::DeadLetter);
        assert_eq!(policy.budget().as_secs(), 2 + 4 + 8 + 16 + 32 + 64 + 128 + 256 + 512 + 900 * 6);
    }

    #[test]
    fn garbage_jitter_is_no_jitter() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.after_failure(1, f64::NAN), AfterFailure::RetryIn(Duration::from_secs(1)));
        assert_eq!(policy.after_failure(1, 7.0), AfterFailure::RetryIn(Duration::from_secs(2)));
    }

    proptest! {
        /// Every delay lies in [backoff/2, backoff], backoffs never shrink from one attempt
        /// to the next, and the budget is always reached.
        #[test]
        fn delays_are_bounded_and_monotone(base_ms in 1u64..10_000, cap_s in 1u64..100_000,
                                           attempts_max in 1u32..40, jitter in 0.0f64..1.0) {
            let policy = RetryPolicy {
                base: Duration::from_millis(base_ms),
                cap: Duration::from_secs(cap_s),
                attempts_max,
            };
            let mut previous_upper = Duration::ZERO;
            for attempts in 1..=attempts_max + 2 {
                match (policy.after_failure(attempts, jitter), policy.after_failure(attempts, 1.0)) {
                    (AfterFailure::RetryIn(delay), AfterFailure::RetryIn(upper)) => {
                        prop_assert!(attempts < attempts_max);
                        prop_assert!(delay <= upper && delay >= upper / 2);
                        prop_assert!(upper <= policy.cap.max(policy.base));
                        prop_assert!(upper >= previous_upper);
                        previous_upper = upper;
                    }
                    (AfterFailure::DeadLetter, AfterFailure::DeadLetter) => prop_assert!(attempts >= attempts_max),
                    mixed => prop_assert!(false, "jitter changed the verdict: {:?}", mixed),
                }
            }
        }
    }
}
