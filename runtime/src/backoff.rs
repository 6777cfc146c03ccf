//! Waits between attempts: one exponential, capped, jittered policy for the sink pipeline's
//! retries and resends and for MQTT reconnects.

use std::time::Duration;

/// How long to wait before attempt `n` after a failure: `base` doubled per attempt after the
/// first, at most `max`, then shortened by a random part of up to `jitter` of it, so that
/// instances failing together do not retry in lock-step.
///
/// The jitter only shortens a wait: `base` and `max` stay what the wait never exceeds.
/// [`Self::delay_at`] takes the random part as an argument, for tests that need an exact wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: f64,
}

impl Backoff {
    /// The share of a wait that jitter may take off, unless [`Self::with_jitter`] says otherwise.
    pub const DEFAULT_JITTER: f64 = 0.25;

    /// A policy whose first wait is `base`, doubling up to `max`.
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            jitter: Self::DEFAULT_JITTER,
        }
    }

    /// The same policy with another jitter share (clamped to `0..=1`; 0 makes it deterministic).
    #[must_use]
    pub fn with_jitter(self, jitter: f64) -> Self {
        Self {
            jitter: if jitter.is_nan() {
                0.0
            } else {
                jitter.clamp(0.0, 1.0)
            },
            ..self
        }
    }

    /// The longest wait before attempt `attempt` (1 for the first retry; 0 counts as 1):
    /// `base * 2^(attempt - 1)`, at most `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The shortest wait before attempt `attempt`: the ceiling less all the jitter.
    pub fn floor(&self, attempt: u32) -> Duration {
        self.delay_at(attempt, 1.0)
    }

    /// The wait before attempt `attempt`, with a fresh random jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_at(attempt, rand::random::<f64>())
    }

    /// The wait before attempt `attempt` when the random draw is `draw` (in `0..=1`; 0 waits the
    /// ceiling, 1 the floor).
    pub fn delay_at(&self, attempt: u32, draw: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        ceiling.mul_f64(1.0 - self.jitter * draw.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_the_base_up_to_the_cap() {
        let b = Backoff::new(100 * MS, 3000 * MS);
        let ceilings: Vec<_> = (0..8).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 100, 200, 400, 800, 1600, 3000, 3000]);
        assert_eq!(b.ceiling(u32::MAX), 3000 * MS);
        let huge = Backoff::new(Duration::from_secs(u64::MAX / 2), 30_000 * MS);
        assert_eq!(huge.ceiling(40), 30_000 * MS);
    }

    #[test]
    fn jitter_only_shortens_a_wait_by_its_share() {
        let b = Backoff::new(1000 * MS, 30_000 * MS);
        assert_eq!(b.delay_at(1, 0.0), 1000 * MS);
        assert_eq!(b.delay_at(1, 1.0), 750 * MS);
        assert_eq!(b.delay_at(2, 0.5), 1750 * MS);
        assert_eq!(b.floor(3), 3000 * MS);
        for _ in 0..1000 {
            let d = b.delay(3);
            assert!((b.floor(3)..=b.ceiling(3)).contains(&d), "{d:?}");
        }
    }

    #[test]
    fn no_jitter_is_exact() {
        let b = Backoff::new(10 * MS, 1000 * MS).with_jitter(0.0);
        assert!((0..20).all(|n| b.delay(n) == b.ceiling(n)));
        assert_eq!(b.with_jitter(f64::NAN).floor(2), 20 * MS);
        assert_eq!(b.with_jitter(7.0).floor(2), Duration::ZERO);
    }
}
