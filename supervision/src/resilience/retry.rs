//! Retries: bounded attempts with jittered backoff, idempotency-aware, never past the caller's
//! deadline, and capped by a retry budget (Finagle and Envoy style: retries may add at most a
//! percentage of the request load, plus a small floor per second), so a failing backend is not
//! hammered by retry storms.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::backoff::{Backoff, Jitter};

/// Whether a request may be sent twice.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Safe to retry (GET, PUT, DELETE; reads).
    Idempotent,
    /// Never retried unless marked safe.
    NonIdempotent,
}

/// Why a retry was refused.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRetry {
    /// Attempts exhausted.
    #[error("retry attempts exhausted")]
    Exhausted,
    /// The request is not idempotent.
    #[error("request is not idempotent")]
    NotIdempotent,
    /// The next attempt would start after the caller's deadline.
    #[error("retry would pass the deadline")]
    Deadline,
    /// The retry budget is spent.
    #[error("retry budget exhausted")]
    Budget,
}

/// A retry budget: retries may add at most `ratio` of the requests seen in the last `window`,
/// plus `min_per_sec` retries per second regardless.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    ratio: f64,
    min_per_sec: f64,
    window: Duration,
    requests: VecDeque<Instant>,
    retries: VecDeque<Instant>,
}

impl RetryBudget {
    /// A budget of `ratio` (e.g. 0.2 = retries add at most 20%) with a floor per second.
    pub fn new(ratio: f64, min_per_sec: u32, window: Duration) -> Self {
        RetryBudget {
            ratio: ratio.max(0.0),
            min_per_sec: f64::from(min_per_sec),
            window: window.max(Duration::from_secs(1)),
            requests: VecDeque::new(),
            retries: VecDeque::new(),
        }
    }

    fn trim(&mut self, now: Instant) {
        for q in [&mut self.requests, &mut self.retries] {
            while q
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
            {
                q.pop_front();
            }
        }
    }

    /// Records a first attempt (deposits into the budget).
    pub fn on_request(&mut self, now: Instant) {
        self.trim(now);
        self.requests.push_back(now);
    }

    /// Withdraws one retry if the budget allows it.
    pub fn try_withdraw(&mut self, now: Instant) -> bool {
        self.trim(now);
        let allowed =
            self.requests.len() as f64 * self.ratio + self.min_per_sec * self.window.as_secs_f64();
        if (self.retries.len() as f64) < allowed.floor() {
            self.retries.push_back(now);
            true
        } else {
            false
        }
    }
}

/// The retry policy for one destination.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts including the first.
    pub max_attempts: u32,
    /// Delay before each retry.
    pub backoff: Backoff,
    jitter: Jitter,
}

impl RetryPolicy {
    /// At most `max_attempts` attempts with `backoff` between them.
    pub fn new(max_attempts: u32, backoff: Backoff, seed: u64) -> Self {
        RetryPolicy {
            max_attempts,
            backoff,
            jitter: Jitter::new(seed),
        }
    }

    /// Decides whether attempt number `attempt` (1 = the first retry) may happen, and after how
    /// long. `safe` marks a non-idempotent request as retryable anyway.
    pub fn next(
        &mut self,
        attempt: u32,
        idempotency: Idempotency,
        safe: bool,
        deadline: Option<Instant>,
        budget: &mut RetryBudget,
        now: Instant,
    ) -> Result<Duration, NoRetry> {
        if attempt >= self.max_attempts {
            return Err(NoRetry::Exhausted);
        }
        if idempotency == Idempotency::NonIdempotent && !safe {
            return Err(NoRetry::NotIdempotent);
        }
        let delay = self
            .backoff
            .delay(attempt.saturating_sub(1), self.jitter.next_f64());
        if deadline.is_some_and(|d| now + delay >= d) {
            return Err(NoRetry::Deadline);
        }
        if !budget.try_withdraw(now) {
            return Err(NoRetry::Budget);
        }
        Ok(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_caps_extra_load_at_the_ratio() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(0.2, 0, Duration::from_secs(10));
        let mut p = RetryPolicy::new(5, Backoff::none(), 1);
        let mut retries = 0;
        // A backend failing every call: 1,000 requests, each wanting to retry.
        for i in 0..1000u64 {
            let now = t0 + Duration::from_millis(i);
            b.on_request(now);
            if p.next(1, Idempotency::Idempotent, false, None, &mut b, now)
                .is_ok()
            {
                retries += 1;
            }
        }
        assert!(retries <= 200, "{retries} retries for 1000 requests");
        assert!(retries >= 190, "the budget is used, not wasted: {retries}");
    }

    #[test]
    fn floor_allows_retries_at_low_traffic() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(0.1, 1, Duration::from_secs(10));
        b.on_request(t0);
        assert!(
            b.try_withdraw(t0),
            "the per-second floor covers low traffic"
        );
    }

    #[test]
    fn never_non_idempotent_never_past_deadline_bounded_attempts() {
        let t0 = Instant::now();
        let mut b = RetryBudget::new(1.0, 100, Duration::from_secs(10));
        let mut p = RetryPolicy::new(
            3,
            Backoff {
                jitter: 0.0,
                ..Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1))
            },
            1,
        );
        assert_eq!(
            p.next(1, Idempotency::NonIdempotent, false, None, &mut b, t0),
            Err(NoRetry::NotIdempotent)
        );
        assert!(
            p.next(1, Idempotency::NonIdempotent, true, None, &mut b, t0)
                .is_ok(),
            "marked safe"
        );
        assert_eq!(
            p.next(
                1,
                Idempotency::Idempotent,
                false,
                Some(t0 + Duration::from_millis(50)),
                &mut b,
                t0
            ),
            Err(NoRetry::Deadline)
        );
        assert_eq!(
            p.next(2, Idempotency::Idempotent, false, None, &mut b, t0),
            Ok(Duration::from_millis(200))
        );
        assert_eq!(
            p.next(3, Idempotency::Idempotent, false, None, &mut b, t0),
            Err(NoRetry::Exhausted)
        );
    }
}
