//! A counter-based random source (SplitMix64) shared by every connection without a lock.
//!
//! Rationale: the mock buyer draws a few numbers per request on many connections at once;
//! SplitMix64 is a pure function of a counter, so one `AtomicU64` is the whole state, a
//! seed reproduces a run's sequence (in arrival order), and no `rand` dependency is needed.
//! It is not cryptographic, and nothing here needs it to be.

use std::sync::atomic::{AtomicU64, Ordering};

/// The SplitMix64 increment (2^64 / golden ratio): consecutive counters map to
/// well-spread states.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// Parts per million: probabilities are drawn as integers so no float touches the draw.
pub const PPM: u32 = 1_000_000;

/// SplitMix64's output function: a bijective mix of one 64-bit state.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Debug)]
pub struct Rng {
    seed: u64,
    counter: AtomicU64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { seed, counter: AtomicU64::new(0) }
    }

    pub fn next_u64(&self) -> u64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        mix(self.seed.wrapping_add(n.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
    }

    /// Uniform in `[low, high]` (inclusive). The modulo bias is below span / 2^64, far
    /// under anything a load test can observe.
    pub fn in_range(&self, low: u64, high: u64) -> u64 {
        debug_assert!(low <= high);
        let span = high - low;
        if span == u64::MAX {
            return self.next_u64();
        }
        low + self.next_u64() % (span + 1)
    }

    /// True with probability `ppm / 1_000_000`.
    pub fn chance_ppm(&self, ppm: u32) -> bool {
        ppm > 0 && (self.next_u64() % u64::from(PPM)) < u64::from(ppm)
    }
}

/// A probability in `[0, 1]` as parts per million (rounded), or an error naming the flag.
pub fn probability_ppm(flag: &str, p: f64) -> anyhow::Result<u32> {
    if !(0.0..=1.0).contains(&p) {
        anyhow::bail!("{flag} must be between 0.0 and 1.0, got {p}");
    }
    // In range by the check above, so the cast cannot truncate.
    Ok((p * f64::from(PPM)).round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let a = Rng::new(7);
        let b = Rng::new(7);
        let c = Rng::new(8);
        let seq_a: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let seq_b: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        let seq_c: Vec<u64> = (0..5).map(|_| c.next_u64()).collect();
        assert_eq!(seq_a, seq_b);
        assert_ne!(seq_a, seq_c);
    }

    #[test]
    fn in_range_stays_inclusive_and_reaches_both_ends() {
        let rng = Rng::new(1);
        let draws: Vec<u64> = (0..1_000).map(|_| rng.in_range(5, 8)).collect();
        assert!(draws.iter().all(|d| (5..=8).contains(d)));
        for v in 5..=8 {
            assert!(draws.contains(&v), "{v} never drawn");
        }
        assert_eq!(rng.in_range(3, 3), 3);
    }

    #[test]
    fn chance_extremes_are_exact() {
        let rng = Rng::new(2);
        assert!((0..1_000).all(|_| !rng.chance_ppm(0)));
        assert!((0..1_000).all(|_| rng.chance_ppm(PPM)));
        let hits = (0..100_000).filter(|_| rng.chance_ppm(PPM / 10)).count();
        assert!((9_000..11_000).contains(&hits), "10% of 100k draws, got {hits}");
    }

    #[test]
    fn probabilities_convert_to_ppm() {
        assert_eq!(probability_ppm("--x", 0.0).ok(), Some(0));
        assert_eq!(probability_ppm("--x", 0.25).ok(), Some(250_000));
        assert_eq!(probability_ppm("--x", 1.0).ok(), Some(PPM));
        assert!(probability_ppm("--x", 1.5).is_err());
        assert!(probability_ppm("--x", -0.1).is_err());
        assert!(probability_ppm("--x", f64::NAN).is_err());
    }
}
