//! Load balancing across endpoints: power-of-two-choices over least-loaded or peak-EWMA latency,
//! with outlier ejection (consecutive errors; at most a percentage of endpoints ejected).

use std::time::{Duration, Instant};

use crate::backoff::Jitter;

/// How two random candidates are compared.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Load {
    /// Fewer requests in flight wins.
    LeastLoaded,
    /// Lower peak-EWMA latency (times in-flight + 1) wins (Finagle's and linkerd's choice).
    PeakEwma {
        /// How fast old latency observations fade.
        decay: Duration,
    },
}

/// Outlier ejection settings.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Ejection {
    /// Eject after this many consecutive errors.
    pub consecutive_errors: u32,
    /// Base ejection time, multiplied by the number of times the endpoint was ejected.
    pub base: Duration,
    /// At most this percentage of endpoints ejected at once.
    pub max_percent: u32,
}

impl Default for Ejection {
    fn default() -> Self {
        Ejection {
            consecutive_errors: 5,
            base: Duration::from_secs(30),
            max_percent: 50,
        }
    }
}

#[derive(Debug, Clone)]
struct Endpoint {
    in_flight: u32,
    ewma_ns: f64,
    stamp: Instant,
    errors: u32,
    ejected_until: Option<Instant>,
    times_ejected: u32,
}

/// A balancer over `n` endpoints, identified by index.
#[derive(Debug, Clone)]
pub struct Balancer {
    load: Load,
    ejection: Ejection,
    endpoints: Vec<Endpoint>,
    rng: Jitter,
}

impl Balancer {
    /// `n` endpoints.
    pub fn new(n: usize, load: Load, ejection: Ejection, now: Instant, seed: u64) -> Self {
        let e = Endpoint {
            in_flight: 0,
            ewma_ns: 0.0,
            stamp: now,
            errors: 0,
            ejected_until: None,
            times_ejected: 0,
        };
        Balancer {
            load,
            ejection,
            endpoints: vec![e; n],
            rng: Jitter::new(seed),
        }
    }

    fn available(&self, i: usize, now: Instant) -> bool {
        self.endpoints[i].ejected_until.is_none_or(|t| now >= t)
    }

    fn cost(&self, i: usize, now: Instant) -> f64 {
        let e = &self.endpoints[i];
        match self.load {
            Load::LeastLoaded => f64::from(e.in_flight),
            Load::PeakEwma { decay } => {
                let age = now.saturating_duration_since(e.stamp).as_secs_f64();
                let w = (-age / decay.as_secs_f64().max(1e-9)).exp();
                (e.ewma_ns * w) * (f64::from(e.in_flight) + 1.0)
            }
        }
    }

    /// Picks an endpoint: two random available candidates, the cheaper wins. `None` when every
    /// endpoint is ejected.
    pub fn pick(&mut self, now: Instant) -> Option<usize> {
        let avail: Vec<usize> = (0..self.endpoints.len())
            .filter(|i| self.available(*i, now))
            .collect();
        let chosen = match avail.len() {
            0 => return None,
            1 => avail[0],
            n => {
                let a = avail[(self.rng.next_f64() * n as f64) as usize % n];
                let mut b = avail[(self.rng.next_f64() * n as f64) as usize % n];
                if a == b {
                    b = avail[(avail.iter().position(|x| *x == a).unwrap_or(0) + 1) % n];
                }
                if self.cost(b, now) < self.cost(a, now) {
                    b
                } else {
                    a
                }
            }
        };
        self.endpoints[chosen].in_flight += 1;
        Some(chosen)
    }

    /// Reports a finished call on endpoint `i`.
    pub fn done(&mut self, i: usize, latency: Duration, ok: bool, now: Instant) {
        let ej = self.ejection;
        let ejected_now = self
            .endpoints
            .iter()
            .filter(|e| e.ejected_until.is_some_and(|t| now < t))
            .count();
        let max_ejected = self.endpoints.len() * ej.max_percent as usize / 100;
        let Some(e) = self.endpoints.get_mut(i) else {
            return;
        };
        e.in_flight = e.in_flight.saturating_sub(1);
        let rtt = latency.as_nanos() as f64;
        if let Load::PeakEwma { decay } = self.load {
            // Peak: jump up to a slower observation at once, decay towards faster ones.
            let age = now.saturating_duration_since(e.stamp).as_secs_f64();
            let w = (-age / decay.as_secs_f64().max(1e-9)).exp();
            e.ewma_ns = if rtt > e.ewma_ns {
                rtt
            } else {
                e.ewma_ns * w + rtt * (1.0 - w)
            };
            e.stamp = now;
        }
        if ok {
            e.errors = 0;
            return;
        }
        e.errors += 1;
        if e.errors >= ej.consecutive_errors && ejected_now < max_ejected {
            e.times_ejected += 1;
            e.ejected_until = Some(now + ej.base * e.times_ejected);
            e.errors = 0;
            tracing::warn!(endpoint = i, until = ?e.ejected_until, "outlier ejected");
        }
    }

    /// Endpoints currently ejected.
    pub fn ejected(&self, now: Instant) -> usize {
        (0..self.endpoints.len())
            .filter(|i| !self.available(*i, now))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_loaded_spreads_and_avoids_busy_endpoints() {
        let t0 = Instant::now();
        let mut b = Balancer::new(4, Load::LeastLoaded, Ejection::default(), t0, 7);
        let mut counts = [0u32; 4];
        for _ in 0..400 {
            let i = b.pick(t0).unwrap();
            counts[i] += 1;
        }
        // With nobody finishing, p2c keeps in-flight counts level: a spread of a few, where
        // uniform random choice would spread by about sqrt(100) = 10.
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 5, "{counts:?}");
    }

    #[test]
    fn peak_ewma_prefers_the_fast_endpoint() {
        let t0 = Instant::now();
        let mut b = Balancer::new(
            2,
            Load::PeakEwma {
                decay: Duration::from_secs(10),
            },
            Ejection::default(),
            t0,
            3,
        );
        let mut fast = 0;
        for k in 0..200u32 {
            let now = t0 + Duration::from_millis(u64::from(k));
            let i = b.pick(now).unwrap();
            let lat = if i == 0 {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(50)
            };
            b.done(i, lat, true, now);
            fast += u32::from(i == 0);
        }
        assert!(fast > 150, "fast endpoint chosen {fast}/200");
    }

    #[test]
    fn outliers_are_ejected_within_the_cap_and_return() {
        let t0 = Instant::now();
        let ej = Ejection {
            consecutive_errors: 3,
            base: Duration::from_secs(10),
            max_percent: 50,
        };
        let mut b = Balancer::new(4, Load::LeastLoaded, ej, t0, 1);
        for i in 0..4 {
            for _ in 0..3 {
                b.endpoints[i].in_flight += 1;
                b.done(i, Duration::from_millis(1), false, t0);
            }
        }
        assert_eq!(b.ejected(t0), 2, "at most 50% ejected");
        assert_eq!(
            b.ejected(t0 + Duration::from_secs(11)),
            0,
            "ejection expires"
        );
    }
}
