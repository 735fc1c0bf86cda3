//! Retry backoff: exponential, capped, with deterministic jitter.

use crate::model::{Backoff, TaskKey};
use std::time::Duration;

impl Backoff {
    /// The delay after the `attempt`-th failed start of `key` (attempt ≥ 1).
    ///
    /// `initial × 2^(attempt−1)` capped at `max`; with jitter, a point in `[delay/2, delay]`
    /// chosen by a hash of the key and attempt, so that every backend (and every test) computes
    /// the same instant while retries of many tasks still spread out.
    pub fn delay(&self, key: &TaskKey, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(40);
        let full = self
            .initial_ms
            .saturating_mul(1u64 << exponent)
            .min(self.max_ms.max(self.initial_ms));
        if !self.jitter || full < 2 {
            return Duration::from_millis(full);
        }
        let half = full / 2;
        Duration::from_millis(half + spread(key, attempt) % (full - half + 1))
    }
}

/// FNV-1a over the key and attempt: stable across runs, platforms and Rust versions.
fn spread(key: &TaskKey, attempt: u32) -> u64 {
    let bytes = key
        .job
        .as_str()
        .bytes()
        .chain([0])
        .chain(key.id.as_str().bytes())
        .chain(attempt.to_le_bytes());
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_jitters_within_half() {
        let key = TaskKey::parse("j", "t").unwrap();
        let exact = Backoff {
            initial_ms: 1000,
            max_ms: 5000,
            jitter: false,
        };
        let ms: Vec<u128> = (1..=5).map(|a| exact.delay(&key, a).as_millis()).collect();
        assert_eq!(ms, [1000, 2000, 4000, 5000, 5000]);
        let jittered = Backoff {
            jitter: true,
            ..exact
        };
        for a in 1..=5 {
            let d = jittered.delay(&key, a);
            assert!(d <= exact.delay(&key, a) && d >= exact.delay(&key, a) / 2);
            assert_eq!(d, jittered.delay(&key, a), "deterministic");
        }
        assert_eq!(Backoff::NONE.delay(&key, 3), Duration::ZERO);
    }
}
