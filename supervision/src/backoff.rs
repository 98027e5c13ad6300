//! Backoff between restarts: exponential with jitter, bounded by a minimum and a maximum, and
//! reset once a child has run for a stable period.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Restart delay policy.
#[derive(Copy, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backoff {
    /// Delay before the first restart (zero restarts at once).
    #[serde(with = "crate::config::millis")]
    pub min: Duration,
    /// Upper bound of the delay.
    #[serde(with = "crate::config::millis")]
    pub max: Duration,
    /// Growth per consecutive restart.
    pub factor: f64,
    /// Fraction of the delay randomised away (0.0 = none, 0.2 = up to 20% shorter).
    pub jitter: f64,
    /// A child that ran this long counts as stable: its next failure starts from `min` again.
    #[serde(with = "crate::config::millis")]
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::ZERO,
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.0,
            reset_after: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// No delay: restart at once (OTP's behaviour).
    pub fn none() -> Self {
        Backoff::default()
    }

    /// Exponential backoff from `min` to `max`, doubling, with 10% jitter.
    pub fn exponential(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            factor: 2.0,
            jitter: 0.1,
            ..Backoff::default()
        }
    }

    /// The delay before restart number `attempt` (0 = first consecutive failure); `random` is
    /// a uniform value in [0, 1) from the supervisor's seeded generator.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        if self.min.is_zero() {
            return Duration::ZERO;
        }
        let grown = self.min.as_secs_f64() * self.factor.max(1.0).powi(attempt.min(64) as i32);
        let capped = grown
            .min(self.max.as_secs_f64())
            .max(self.min.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
        Duration::from_secs_f64(capped * (1.0 - jitter))
    }
}

/// Seeded randomness for jitter: the project's one generator, so restart timing replays
/// exactly in deterministic mode.
pub(crate) type Jitter = sinew_actors::SplitMix64;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exponential_growth_capped() {
        let b = Backoff {
            jitter: 0.0,
            ..Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1))
        };
        let ms: Vec<u128> = (0..6).map(|a| b.delay(a, 0.5).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(Backoff::none().delay(3, 0.5), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn delay_stays_within_bounds(min in 1u64..1000, extra in 0u64..10_000, attempt in 0u32..100,
                                     jitter in 0.0f64..1.0, r in 0.0f64..1.0) {
            let b = Backoff { min: Duration::from_millis(min), max: Duration::from_millis(min + extra),
                              factor: 2.0, jitter, reset_after: Duration::from_secs(1) };
            let d = b.delay(attempt, r);
            prop_assert!(d <= b.max);
            prop_assert!(d.as_secs_f64() >= b.min.as_secs_f64() * (1.0 - jitter) - 1e-9);
        }
    }

    #[test]
    fn jitter_is_deterministic_per_seed() {
        let a: Vec<f64> = {
            let mut j = Jitter::new(7);
            (0..5).map(|_| j.next_f64()).collect()
        };
        let b: Vec<f64> = {
            let mut j = Jitter::new(7);
            (0..5).map(|_| j.next_f64()).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().all(|x| (0.0..1.0).contains(x)));
    }
}
