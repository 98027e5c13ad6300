//! The simulation's only source of randomness: a seeded SplitMix64.

use sinew_actors::SplitMix64;

/// The project's seeded generator with the draws the network model needs; the same seed gives
/// the same sequence everywhere.
pub(crate) struct Rng(SplitMix64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// True with probability `p` (clamped to 0..=1). Draws nothing when `p <= 0`, so a clean
    /// link does not disturb the sequence other links see.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        self.0.next_f64() < p
    }

    /// Uniform in `0..=max`.
    pub(crate) fn upto(&mut self, max: u64) -> u64 {
        if max == 0 {
            0
        } else {
            self.next_u64() % (max + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut c = Rng::new(8);
        assert_ne!(Rng::new(7).next_u64(), c.next_u64());
        assert!(!c.chance(0.0));
        assert!(c.chance(1.0));
        assert!(c.upto(10) <= 10);
    }
}
