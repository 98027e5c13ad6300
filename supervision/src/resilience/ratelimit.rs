//! Admission: token-bucket rate limits per key (e.g. per client IP on a server), with a bounded
//! number of tracked keys, and a concurrency limit. Sans-I/O: the caller passes `now`.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A request over the limit; retry after this long (for `Retry-After` / 429).
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
#[error("rate limited; retry after {retry_after:?}")]
pub struct Limited {
    /// When a token will be available.
    pub retry_after: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key: `rate` tokens per second, up to `burst`.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: f64,
    burst: f64,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `rate` per second, `burst` at most, tracking at most `max_keys` keys (full buckets are
    /// forgotten first when the table is full, so memory stays bounded under a key flood).
    pub fn new(rate: f64, burst: u32, max_keys: usize) -> Self {
        RateLimiter {
            rate: rate.max(0.0),
            burst: f64::from(burst.max(1)),
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `key`.
    pub fn check(&mut self, key: &K, now: Instant) -> Result<(), Limited> {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            self.evict(now);
            if self.buckets.len() >= self.max_keys {
                // Every tracked key is active: refuse unknown keys rather than grow.
                return Err(Limited {
                    retry_after: Duration::from_secs_f64(1.0 / self.rate.max(1e-9)),
                });
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = if rate > 0.0 {
                (1.0 - b.tokens) / rate
            } else {
                f64::MAX / 2.0
            };
            Err(Limited {
                retry_after: Duration::from_secs_f64(wait.min(86_400.0)),
            })
        }
    }

    fn evict(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
        });
    }

    /// Keys tracked.
    pub fn keys(&self) -> usize {
        self.buckets.len()
    }
}

/// A concurrency limit: at most `max` calls in flight.
#[derive(Debug, Clone, Copy)]
pub struct ConcurrencyLimit {
    max: usize,
    in_flight: usize,
}

impl ConcurrencyLimit {
    /// At most `max` in flight.
    pub fn new(max: usize) -> Self {
        ConcurrencyLimit { max, in_flight: 0 }
    }

    /// Takes a slot; false when all are taken (shed with 503).
    pub fn try_acquire(&mut self) -> bool {
        if self.in_flight < self.max {
            self.in_flight += 1;
            true
        } else {
            false
        }
    }

    /// Returns a slot.
    pub fn release(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_rate_and_burst_per_key() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10.0, 5, 100);
        for _ in 0..5 {
            assert!(rl.check(&"a", t0).is_ok());
        }
        let e = rl.check(&"a", t0).unwrap_err();
        assert!(e.retry_after <= Duration::from_millis(100));
        assert!(rl.check(&"b", t0).is_ok(), "keys are independent");
        assert!(
            rl.check(&"a", t0 + Duration::from_millis(100)).is_ok(),
            "one token per 100 ms"
        );
    }

    #[test]
    fn key_table_stays_bounded_under_a_flood() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(1.0, 1, 64);
        for i in 0..10_000u32 {
            let _ = rl.check(&i, t0);
        }
        assert!(rl.keys() <= 64);
    }

    #[test]
    fn concurrency_limit_sheds_beyond_max() {
        let mut c = ConcurrencyLimit::new(2);
        assert!(c.try_acquire() && c.try_acquire());
        assert!(!c.try_acquire());
        c.release();
        assert!(c.try_acquire());
    }
}
