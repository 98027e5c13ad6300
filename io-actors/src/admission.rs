//! Server-side admission, shared by every connection of one `serve` call: token buckets per
//! client IP (answered with the protocol's rate-limited response, HTTP 429) and a cap on the
//! requests in flight across the server (answered with its "unavailable" response, HTTP 503:
//! load shedding before the application drowns).

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sinew_supervision::resilience::ratelimit::RateLimiter;

/// Per-client-IP rate limit.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second per client IP.
    pub per_second: f64,
    /// Requests a client may make at once after being idle.
    pub burst: u32,
    /// Client IPs tracked at most (idle ones are forgotten first), bounding memory under a
    /// flood of addresses.
    pub max_clients: usize,
}

/// Buckets are split by IP hash so connections on different workers rarely share a lock.
const SHARDS: usize = 16;

/// What admission decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go ahead (counted in flight until [`Gate::done`]).
    Admit,
    /// The client is over its rate; it may retry after this long.
    Limited(Duration),
    /// The server is at its in-flight cap.
    Shed,
}

/// The admission state of one server.
#[derive(Debug)]
pub(crate) struct Gate {
    limiters: Option<Vec<Mutex<RateLimiter<IpAddr>>>>,
    in_flight: AtomicUsize,
    max_in_flight: Option<usize>,
}

impl Gate {
    /// A gate for these limits, or `None` when neither is set (nothing to check per request).
    pub(crate) fn new(rate: Option<RateLimit>, max_in_flight: Option<usize>) -> Option<Gate> {
        if rate.is_none() && max_in_flight.is_none() {
            return None;
        }
        let limiters = rate.map(|r| {
            let per_shard = r.max_clients.div_ceil(SHARDS).max(1);
            (0..SHARDS)
                .map(|_| Mutex::new(RateLimiter::new(r.per_second, r.burst, per_shard)))
                .collect()
        });
        Some(Gate {
            limiters,
            in_flight: AtomicUsize::new(0),
            max_in_flight,
        })
    }

    /// Decides for one request from `peer` (requests without a known peer are only counted).
    pub(crate) fn admit(&self, peer: Option<IpAddr>, now: Instant) -> Verdict {
        if let (Some(limiters), Some(ip)) = (&self.limiters, peer) {
            let shard = match ip {
                IpAddr::V4(v4) => u32::from(v4) as usize,
                IpAddr::V6(v6) => u128::from(v6) as usize,
            } % SHARDS;
            let checked = limiters[shard]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .check(&ip, now);
            if let Err(limited) = checked {
                return Verdict::Limited(limited.retry_after);
            }
        }
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if self.max_in_flight.is_some_and(|max| before >= max) {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Verdict::Shed;
        }
        Verdict::Admit
    }

    /// `n` admitted requests were answered (or their connection ended).
    pub(crate) fn done(&self, n: usize) {
        if n > 0 {
            self.in_flight.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Requests admitted and not yet answered.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_is_per_ip_and_refills() {
        let rate = RateLimit {
            per_second: 10.0,
            burst: 2,
            max_clients: 100,
        };
        let gate = Gate::new(Some(rate), None).expect("gate");
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t = Instant::now();
        assert_eq!(gate.admit(Some(a), t), Verdict::Admit);
        assert_eq!(gate.admit(Some(a), t), Verdict::Admit);
        assert!(matches!(gate.admit(Some(a), t), Verdict::Limited(_)));
        assert_eq!(
            gate.admit(Some(b), t),
            Verdict::Admit,
            "another client is unaffected"
        );
        let later = t + Duration::from_millis(150);
        assert_eq!(gate.admit(Some(a), later), Verdict::Admit, "refilled");
    }

    #[test]
    fn in_flight_cap_sheds_and_recovers() {
        let gate = Gate::new(None, Some(2)).expect("gate");
        let t = Instant::now();
        assert_eq!(gate.admit(None, t), Verdict::Admit);
        assert_eq!(gate.admit(None, t), Verdict::Admit);
        assert_eq!(gate.admit(None, t), Verdict::Shed);
        assert_eq!(gate.in_flight(), 2, "a shed request is not counted");
        gate.done(1);
        assert_eq!(gate.admit(None, t), Verdict::Admit);
    }

    #[test]
    fn no_limits_no_gate() {
        assert!(Gate::new(None, None).is_none());
    }
}
