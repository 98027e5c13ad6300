//! Circuit breaker: closed, open, half-open, over a count or time sliding window, with
//! failure-rate and slow-call-rate thresholds, a minimum number of calls, jittered exponential
//! open durations, a consecutive-failures mode, and forced states.
//!
//! Sans-I/O: the caller passes `now` and reports outcomes; the breaker never reads a clock, so
//! it runs identically in virtual time. It lives in a pool supervisor; calls it refuses fail
//! fast with [`BreakerError::Open`], distinct from every other error.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::backoff::{Backoff, Jitter};

/// How outcomes are aggregated.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Window {
    /// The last `n` calls.
    Count(usize),
    /// Calls in the last `d` (kept in one-second buckets).
    Time(Duration),
}

/// When the breaker trips.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Trip {
    /// Failure rate and slow-call rate over the window (with a minimum number of calls).
    Rates,
    /// This many consecutive failures (a simple mode that needs no window).
    ConsecutiveFailures(u32),
}

/// Breaker settings.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// The sliding window.
    pub window: Window,
    /// Trip rule.
    pub trip: Trip,
    /// Failure rate (0..=1) at or above which the breaker opens.
    pub failure_rate: f64,
    /// Slow-call rate (0..=1) at or above which the breaker opens.
    pub slow_call_rate: f64,
    /// A call slower than this counts as slow.
    pub slow_call: Duration,
    /// No decision before this many calls in the window.
    pub minimum_calls: usize,
    /// Trial calls let through when half-open.
    pub half_open_calls: u32,
    /// How long the breaker stays open: grows with consecutive openings (jittered,
    /// exponential), resets when it closes again.
    pub open: Backoff,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: Window::Count(100),
            trip: Trip::Rates,
            failure_rate: 0.5,
            slow_call_rate: 1.0,
            slow_call: Duration::from_secs(60),
            minimum_calls: 10,
            half_open_calls: 3,
            open: Backoff {
                min: Duration::from_secs(5),
                max: Duration::from_secs(60),
                factor: 2.0,
                jitter: 0.1,
                reset_after: Duration::ZERO,
            },
        }
    }
}

/// The breaker's state.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; outcomes are recorded.
    Closed,
    /// Calls fail fast until `until`.
    Open {
        /// When it becomes half-open.
        until: Instant,
    },
    /// A few trial calls go through; their outcomes decide.
    HalfOpen,
    /// Forced open by an operator.
    ForcedOpen,
    /// Forced closed by an operator (outcomes ignored).
    ForcedClosed,
}

/// A state change, for events and metrics.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Before.
    pub from: BreakerState,
    /// After.
    pub to: BreakerState,
}

/// A call was not let through.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerError {
    /// The circuit is open (or the half-open trial slots are taken): fail fast.
    #[error("circuit open: call not permitted")]
    Open,
}

/// How a call ended, as the protocol's classifier sees it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Counted as success.
    Success,
    /// Counted as failure (connect errors, timeouts, HTTP 5xx by default).
    Failure,
    /// Not counted (e.g. a client error that says nothing about the backend's health).
    Ignored,
}

/// Proof that a call was let through; report its outcome with it.
#[derive(Debug)]
#[must_use = "report the outcome with CircuitBreaker::record"]
pub struct Permit {
    half_open: bool,
    started: Instant,
}

#[derive(Copy, Clone, Default)]
struct Bucket {
    calls: u32,
    failures: u32,
    slow: u32,
    second: u64,
}

/// A circuit breaker.
pub struct CircuitBreaker {
    cfg: BreakerConfig,
    state: BreakerState,
    origin: Instant,
    count_window: VecDeque<(bool, bool)>,
    time_window: Vec<Bucket>,
    consecutive_failures: u32,
    openings: u32,
    half_open_in_flight: u32,
    half_open_ok: u32,
    jitter: Jitter,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("state", &self.state)
            .finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker. `now` anchors the time window; `seed` the jitter.
    pub fn new(cfg: BreakerConfig, now: Instant, seed: u64) -> Self {
        let buckets = match cfg.window {
            Window::Time(d) => d.as_secs().max(1) as usize,
            Window::Count(_) => 0,
        };
        CircuitBreaker {
            cfg,
            state: BreakerState::Closed,
            origin: now,
            count_window: VecDeque::new(),
            time_window: vec![Bucket::default(); buckets],
            consecutive_failures: 0,
            openings: 0,
            half_open_in_flight: 0,
            half_open_ok: 0,
            jitter: Jitter::new(seed),
        }
    }

    /// The state at `now` (an open breaker whose time is up reports half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            BreakerState::Open { until } if now >= until => BreakerState::HalfOpen,
            s => s,
        }
    }

    /// Asks to make a call. Open: fails fast. Half-open: lets a few trial calls through.
    pub fn try_acquire(
        &mut self,
        now: Instant,
    ) -> Result<(Permit, Option<Transition>), BreakerError> {
        let mut transition = None;
        if let BreakerState::Open { until } = self.state {
            if now < until {
                return Err(BreakerError::Open);
            }
            transition = self.set(BreakerState::HalfOpen);
        }
        match self.state {
            BreakerState::ForcedOpen => Err(BreakerError::Open),
            BreakerState::HalfOpen => {
                if self.half_open_in_flight + self.half_open_ok >= self.cfg.half_open_calls {
                    return Err(BreakerError::Open);
                }
                self.half_open_in_flight += 1;
                Ok((
                    Permit {
                        half_open: true,
                        started: now,
                    },
                    transition,
                ))
            }
            _ => Ok((
                Permit {
                    half_open: false,
                    started: now,
                },
                transition,
            )),
        }
    }

    /// Reports how a permitted call ended. Returns the state change it caused, if any.
    pub fn record(&mut self, permit: Permit, outcome: Outcome, now: Instant) -> Option<Transition> {
        let slow = now.saturating_duration_since(permit.started) >= self.cfg.slow_call;
        let failed = match outcome {
            Outcome::Ignored => {
                if permit.half_open {
                    self.half_open_in_flight = self.half_open_in_flight.saturating_sub(1);
                }
                return None;
            }
            Outcome::Failure => true,
            Outcome::Success => false,
        };
        match self.state {
            BreakerState::ForcedOpen | BreakerState::ForcedClosed => None,
            BreakerState::HalfOpen if permit.half_open => {
                self.half_open_in_flight = self.half_open_in_flight.saturating_sub(1);
                if failed || slow {
                    self.trip(now)
                } else {
                    self.half_open_ok += 1;
                    if self.half_open_ok >= self.cfg.half_open_calls {
                        self.openings = 0;
                        self.reset_window();
                        self.set(BreakerState::Closed)
                    } else {
                        None
                    }
                }
            }
            BreakerState::Closed => {
                self.push(failed, slow, now);
                if self.should_trip(now) {
                    self.trip(now)
                } else {
                    None
                }
            }
            // Late results of calls made before the breaker opened do not count.
            _ => None,
        }
    }

    /// Forces the breaker open (every call fails fast) until `reset`.
    pub fn force_open(&mut self) -> Option<Transition> {
        self.set(BreakerState::ForcedOpen)
    }

    /// Forces the breaker closed (every call goes through, outcomes ignored) until `reset`.
    pub fn force_closed(&mut self) -> Option<Transition> {
        self.set(BreakerState::ForcedClosed)
    }

    /// Back to closed with an empty window.
    pub fn reset(&mut self) -> Option<Transition> {
        self.openings = 0;
        self.reset_window();
        self.set(BreakerState::Closed)
    }

    fn set(&mut self, to: BreakerState) -> Option<Transition> {
        let from = self.state;
        if from == to {
            return None;
        }
        self.state = to;
        if to == BreakerState::HalfOpen {
            self.half_open_in_flight = 0;
            self.half_open_ok = 0;
        }
        tracing::info!(?from, ?to, "circuit breaker");
        Some(Transition { from, to })
    }

    fn trip(&mut self, now: Instant) -> Option<Transition> {
        let d = self.cfg.open.delay(self.openings, self.jitter.next_f64());
        self.openings = self.openings.saturating_add(1);
        self.reset_window();
        self.set(BreakerState::Open { until: now + d })
    }

    fn reset_window(&mut self) {
        self.count_window.clear();
        for b in &mut self.time_window {
            *b = Bucket::default();
        }
        self.consecutive_failures = 0;
    }

    fn push(&mut self, failed: bool, slow: bool, now: Instant) {
        self.consecutive_failures = if failed {
            self.consecutive_failures + 1
        } else {
            0
        };
        match self.cfg.window {
            Window::Count(n) => {
                if self.count_window.len() >= n.max(1) {
                    self.count_window.pop_front();
                }
                self.count_window.push_back((failed, slow));
            }
            Window::Time(_) => {
                let second = now.saturating_duration_since(self.origin).as_secs();
                let len = self.time_window.len() as u64;
                let b = &mut self.time_window[(second % len) as usize];
                if b.second != second {
                    *b = Bucket {
                        second,
                        ..Bucket::default()
                    };
                }
                b.calls += 1;
                b.failures += u32::from(failed);
                b.slow += u32::from(slow);
            }
        }
    }

    fn totals(&self, now: Instant) -> (usize, usize, usize) {
        match self.cfg.window {
            Window::Count(_) => {
                let calls = self.count_window.len();
                let failures = self.count_window.iter().filter(|(f, _)| *f).count();
                let slow = self.count_window.iter().filter(|(_, s)| *s).count();
                (calls, failures, slow)
            }
            Window::Time(_) => {
                let second = now.saturating_duration_since(self.origin).as_secs();
                let len = self.time_window.len() as u64;
                self.time_window
                    .iter()
                    .filter(|b| b.calls > 0 && second.saturating_sub(b.second) < len)
                    .fold((0, 0, 0), |(c, f, s), b| {
                        (
                            c + b.calls as usize,
                            f + b.failures as usize,
                            s + b.slow as usize,
                        )
                    })
            }
        }
    }

    fn should_trip(&self, now: Instant) -> bool {
        match self.cfg.trip {
            Trip::ConsecutiveFailures(n) => self.consecutive_failures >= n.max(1),
            Trip::Rates => {
                let (calls, failures, slow) = self.totals(now);
                if calls < self.cfg.minimum_calls.max(1) {
                    return false;
                }
                let fr = failures as f64 / calls as f64;
                let sr = slow as f64 / calls as f64;
                fr >= self.cfg.failure_rate || sr >= self.cfg.slow_call_rate
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            window: Window::Count(10),
            minimum_calls: 4,
            failure_rate: 0.5,
            half_open_calls: 2,
            open: Backoff {
                min: Duration::from_secs(1),
                max: Duration::from_secs(8),
                factor: 2.0,
                jitter: 0.0,
                reset_after: Duration::ZERO,
            },
            ..BreakerConfig::default()
        }
    }

    fn call(
        b: &mut CircuitBreaker,
        outcome: Outcome,
        now: Instant,
    ) -> Result<Option<Transition>, BreakerError> {
        let (p, t1) = b.try_acquire(now)?;
        Ok(b.record(p, outcome, now).or(t1))
    }

    #[test]
    fn opens_on_failure_rate_fails_fast_then_half_opens_and_closes() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg(), t0, 1);
        // Below the minimum number of calls nothing trips.
        for _ in 0..3 {
            assert_eq!(call(&mut b, Outcome::Failure, t0), Ok(None));
        }
        let t = call(&mut b, Outcome::Failure, t0).unwrap().unwrap();
        assert!(matches!(t.to, BreakerState::Open { .. }));
        assert_eq!(b.try_acquire(t0).unwrap_err(), BreakerError::Open);
        // After the open duration: half-open, two trial calls, then closed.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.state(t1), BreakerState::HalfOpen);
        let (p1, tr) = b.try_acquire(t1).unwrap();
        assert_eq!(tr.unwrap().to, BreakerState::HalfOpen);
        let (p2, _) = b.try_acquire(t1).unwrap();
        assert_eq!(
            b.try_acquire(t1).unwrap_err(),
            BreakerError::Open,
            "only two trials"
        );
        assert_eq!(b.record(p1, Outcome::Success, t1), None);
        assert_eq!(
            b.record(p2, Outcome::Success, t1).unwrap().to,
            BreakerState::Closed
        );
    }

    #[test]
    fn failed_trial_reopens_for_longer() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(cfg(), t0, 1);
        for _ in 0..4 {
            let _ = call(&mut b, Outcome::Failure, t0);
        }
        let t1 = t0 + Duration::from_secs(1);
        let t = call(&mut b, Outcome::Failure, t1).unwrap().unwrap();
        // Second opening: 2 s (exponential).
        assert_eq!(
            t.to,
            BreakerState::Open {
                until: t1 + Duration::from_secs(2)
            }
        );
    }

    #[test]
    fn slow_calls_trip_and_ignored_outcomes_do_not_count() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.slow_call = Duration::from_millis(100);
        c.slow_call_rate = 0.5;
        let mut b = CircuitBreaker::new(c, t0, 1);
        for _ in 0..10 {
            let (p, _) = b.try_acquire(t0).unwrap();
            assert_eq!(b.record(p, Outcome::Ignored, t0), None);
        }
        for i in 0..4 {
            let (p, _) = b.try_acquire(t0).unwrap();
            let r = b.record(p, Outcome::Success, t0 + Duration::from_millis(200));
            assert_eq!(r.is_some(), i == 3);
        }
    }

    #[test]
    fn consecutive_failures_mode_and_forced_states() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.trip = Trip::ConsecutiveFailures(3);
        let mut b = CircuitBreaker::new(c, t0, 1);
        let _ = call(&mut b, Outcome::Failure, t0);
        let _ = call(&mut b, Outcome::Success, t0);
        let _ = call(&mut b, Outcome::Failure, t0);
        let _ = call(&mut b, Outcome::Failure, t0);
        assert!(call(&mut b, Outcome::Failure, t0).unwrap().is_some());
        b.force_closed();
        for _ in 0..20 {
            assert!(call(&mut b, Outcome::Failure, t0).is_ok());
        }
        b.force_open();
        assert_eq!(
            b.try_acquire(t0 + Duration::from_secs(3600)).unwrap_err(),
            BreakerError::Open
        );
        b.reset();
        assert_eq!(b.state(t0), BreakerState::Closed);
    }

    #[test]
    fn time_window_forgets_old_calls() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.window = Window::Time(Duration::from_secs(10));
        let mut b = CircuitBreaker::new(c, t0, 1);
        for _ in 0..3 {
            let _ = call(&mut b, Outcome::Failure, t0);
        }
        // Eleven seconds later those failures have left the window.
        let later = t0 + Duration::from_secs(11);
        for _ in 0..3 {
            assert_eq!(call(&mut b, Outcome::Success, later), Ok(None));
        }
        assert_eq!(
            call(&mut b, Outcome::Failure, later),
            Ok(None),
            "1 of 4 failed: 25%"
        );
    }
}
