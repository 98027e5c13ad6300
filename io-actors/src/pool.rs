//! A connection pool for one destination, as a supervisor of client connection actors.
//!
//! Calls go to the least-loaded ready connection (pipelined protocols multiplex many callers
//! over few connections); the pool opens connections up to `max_size`, keeps `min_size` open,
//! reconnects with backoff after failures, and queues calls (bounded, with a deadline) while
//! none can take them. A circuit breaker decides whether calls go out at all: while it is open
//! they fail at once with [`PoolError::CircuitOpen`], distinct from every other error.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sinew_actors::{Actor, ActorId, Addr, Context, ReplyError, ReplyTo, Terminated};
use sinew_protocols::protocol::Protocol;
use sinew_supervision::resilience::breaker::{
    BreakerConfig, BreakerError, BreakerState, CircuitBreaker, Outcome, Permit,
};
use sinew_supervision::resilience::retry::{Idempotency, RetryBudget, RetryPolicy};
use sinew_supervision::Backoff;

use crate::client::{CallResult, ClientConn, ClientError, ClientMsg, PooledProtocol};

/// Pool settings.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Connections kept open even when idle.
    pub min_size: usize,
    /// Connections at most.
    pub max_size: usize,
    /// Calls in flight per connection at most (pipelining depth).
    pub max_in_flight: usize,
    /// Calls waiting for a connection at most; beyond, calls fail with `Saturated`.
    pub max_waiters: usize,
    /// How long a call may wait for a connection.
    pub checkout_timeout: Duration,
    /// Deadline of one call once sent.
    pub call_timeout: Duration,
    /// Delay between reconnect attempts after failures.
    pub reconnect: Backoff,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            min_size: 1,
            max_size: 4,
            max_in_flight: 16,
            max_waiters: 1024,
            checkout_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            reconnect: Backoff::exponential(Duration::from_millis(50), Duration::from_secs(5)),
            breaker: BreakerConfig::default(),
        }
    }
}

/// Why a pooled call failed.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PoolError {
    /// The circuit is open: the call was not attempted (fail fast).
    #[error("circuit open: destination considered down")]
    CircuitOpen,
    /// Every connection is busy and the waiting queue is full.
    #[error("pool saturated")]
    Saturated,
    /// No connection became available within the checkout timeout, or the call's deadline
    /// passed.
    #[error("timed out")]
    Timeout,
    /// The call was attempted and failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The pool stopped.
    #[error("pool stopped")]
    Stopped,
}

impl PoolError {
    /// True when retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, PoolError::Stopped)
            && !matches!(self, PoolError::Client(e) if !e.is_transient())
    }
}

/// Decides whether a response counts as a failure for the breaker.
type Classifier<P> = Box<dyn Fn(&<P as Protocol>::Response) -> bool + Send>;

/// Makes the copy of a request that a retry would send, or `None` when it must not be retried
/// (not idempotent and not marked safe).
type Retryable<P> =
    Box<dyn Fn(&<P as Protocol>::Request) -> Option<<P as Protocol>::Request> + Send>;

/// What travels with a call through the pool: where the answer goes, and what a retry needs.
pub struct CallCtx<P: PooledProtocol> {
    reply: ReplyTo<PoolResult<P>>,
    retry: Option<(P::Request, u32, Instant)>,
}

/// A pooled call's answer.
pub type PoolResult<P> = Result<<P as Protocol>::Response, PoolError>;

/// Counters of a pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolMetrics {
    /// Connections (connecting or ready).
    pub size: usize,
    /// Ready connections with nothing in flight.
    pub idle: usize,
    /// Calls waiting for a connection.
    pub waiters: usize,
    /// Calls refused because the circuit was open.
    pub rejected_open: u64,
    /// The breaker's state name.
    pub breaker: &'static str,
}

/// Messages of a pool.
pub enum PoolMsg<P: PooledProtocol> {
    /// Makes a call.
    Call(P::Request, ReplyTo<PoolResult<P>>),
    /// Reports the pool's counters.
    Metrics(ReplyTo<PoolMetrics>),
    /// A retry's backoff elapsed.
    Retry(P::Request, Box<CallCtx<P>>),
    /// A call forwarded to connection `conn` finished.
    Done(
        ActorId,
        Box<Permit>,
        Result<CallResult<P>, ReplyError>,
        Box<CallCtx<P>>,
    ),
    /// Time to look at waiters and the connection count again.
    Tick,
}

struct Conn<P: PooledProtocol> {
    addr: Addr<ClientConn<P>>,
    in_flight: usize,
}

/// The pool actor. Protocols whose codecs are `Clone`-free are built from `make_protocol`.
pub struct Pool<P: PooledProtocol> {
    dest: SocketAddr,
    make_protocol: Box<dyn Fn() -> P + Send>,
    cfg: PoolConfig,
    conns: Vec<Conn<P>>,
    waiters: VecDeque<(Instant, P::Request, Box<CallCtx<P>>)>,
    breaker: Option<CircuitBreaker>,
    failures_in_a_row: u32,
    reconnect_at: Option<Instant>,
    rejected_open: u64,
    tick_armed: bool,
    /// Responses that count as failures for the breaker (they still reach the caller).
    failure: Option<Classifier<P>>,
    retry: Option<(RetryPolicy, Retryable<P>)>,
    budget: RetryBudget,
}

impl<P: PooledProtocol> Pool<P> {
    /// Retries failed calls: a call that failed with a transient error (or a response classified
    /// as a failure) is sent again after the policy's backoff, never past its deadline
    /// (`call_timeout` from the first attempt), and only if `retryable` makes a copy (return
    /// `None` for requests that are not idempotent) and the budget allows: retries add at most
    /// the budget's share of recent requests, so a failing backend is not hammered.
    pub fn retries(
        mut self,
        policy: RetryPolicy,
        budget: RetryBudget,
        retryable: impl Fn(&P::Request) -> Option<P::Request> + Send + 'static,
    ) -> Self {
        self.retry = Some((policy, Box::new(retryable)));
        self.budget = budget;
        self
    }

    /// Counts responses for which `is_failure` is true as failures for the circuit breaker
    /// (the caller still gets the response): HTTP 5xx, a RESP error reply...
    pub fn classify(mut self, is_failure: impl Fn(&P::Response) -> bool + Send + 'static) -> Self {
        self.failure = Some(Box::new(is_failure));
        self
    }

    /// A pool of connections to `dest`, each speaking a protocol made by `make_protocol`.
    pub fn new(
        dest: SocketAddr,
        make_protocol: impl Fn() -> P + Send + 'static,
        cfg: PoolConfig,
    ) -> Self {
        Pool {
            dest,
            make_protocol: Box::new(make_protocol),
            cfg,
            conns: Vec::new(),
            waiters: VecDeque::new(),
            breaker: None,
            failures_in_a_row: 0,
            reconnect_at: None,
            rejected_open: 0,
            tick_armed: false,
            failure: None,
            retry: None,
            budget: RetryBudget::new(0.0, 0, Duration::from_secs(10)),
        }
    }

    fn breaker(&mut self, now: Instant) -> &mut CircuitBreaker {
        let cfg = self.cfg.breaker;
        self.breaker
            .get_or_insert_with(|| CircuitBreaker::new(cfg, now, 0x9001))
    }

    fn open_connection(&mut self, ctx: &mut Context<Self>) {
        let now = ctx.now();
        if self.reconnect_at.is_some_and(|t| now < t) {
            self.arm_tick(ctx, self.reconnect_at.map(|t| t - now));
            return;
        }
        match ctx.spawn(ClientConn::new((self.make_protocol)(), self.dest)) {
            Ok(addr) => self.conns.push(Conn { addr, in_flight: 0 }),
            Err(e) => tracing::warn!(error = %e, "pool: cannot open a connection"),
        }
    }

    /// The least-loaded connection that can take another call.
    fn pick(&self) -> Option<usize> {
        self.conns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.in_flight < self.cfg.max_in_flight)
            .min_by_key(|(_, c)| c.in_flight)
            .map(|(i, _)| i)
    }

    /// A new call: deposit into the retry budget and keep a copy for retries.
    fn first_attempt(
        &mut self,
        req: P::Request,
        reply: ReplyTo<PoolResult<P>>,
        ctx: &mut Context<Self>,
    ) {
        let now = ctx.now();
        self.budget.on_request(now);
        let retry = self
            .retry
            .as_ref()
            .and_then(|(_, copy)| copy(&req))
            .map(|c| (c, 0u32, now + self.cfg.call_timeout));
        self.dispatch(req, Box::new(CallCtx { reply, retry }), ctx);
    }

    fn dispatch(&mut self, req: P::Request, call: Box<CallCtx<P>>, ctx: &mut Context<Self>) {
        let now = ctx.now();
        let permit = match self.breaker(now).try_acquire(now) {
            Ok((p, _)) => p,
            Err(BreakerError::Open) => {
                self.rejected_open += 1;
                call.reply.send(Err(PoolError::CircuitOpen));
                return;
            }
        };
        if self.pick().is_none() && self.conns.len() < self.cfg.max_size {
            self.open_connection(ctx);
        }
        let Some(i) = self.pick() else {
            // Give the permit back unused: queueing says nothing about the destination.
            self.breaker(now).record(permit, Outcome::Ignored, now);
            if self.waiters.len() >= self.cfg.max_waiters {
                call.reply.send(Err(PoolError::Saturated));
            } else {
                self.waiters
                    .push_back((now + self.cfg.checkout_timeout, req, call));
                self.arm_tick(ctx, Some(self.cfg.checkout_timeout));
            }
            return;
        };
        let conn = &mut self.conns[i];
        conn.in_flight += 1;
        let id = conn.addr.id();
        let permit = Box::new(permit);
        let mut back = Some(call);
        let done = ctx.reply_to_within(self.cfg.call_timeout, move |r| {
            let call = back.take().expect("reply delivered once");
            PoolMsg::Done(id, permit, r, call)
        });
        if let Err(e) = conn.addr.try_send(ClientMsg::Call(req, done)) {
            // The connection refused (stopping or full): its ReplyTo answers with an error,
            // which arrives as Done and is counted there.
            drop(e.into_inner());
        }
    }

    fn drain_waiters(&mut self, ctx: &mut Context<Self>) {
        let now = ctx.now();
        while let Some((deadline, _, _)) = self.waiters.front() {
            if *deadline <= now {
                if let Some((_, _, call)) = self.waiters.pop_front() {
                    call.reply.send(Err(PoolError::Timeout));
                }
                continue;
            }
            if self.pick().is_none() {
                break;
            }
            if let Some((_, req, call)) = self.waiters.pop_front() {
                self.dispatch(req, call, ctx);
            }
        }
    }

    fn keep_min_size(&mut self, ctx: &mut Context<Self>) {
        let wanted = self
            .cfg
            .min_size
            .max(usize::from(!self.waiters.is_empty()))
            .min(self.cfg.max_size);
        while self.conns.len() < wanted {
            let before = self.conns.len();
            self.open_connection(ctx);
            if self.conns.len() == before {
                break;
            }
        }
    }

    fn arm_tick(&mut self, ctx: &mut Context<Self>, after: Option<Duration>) {
        if self.tick_armed {
            return;
        }
        if let Some(d) = after {
            self.tick_armed = true;
            ctx.send_after(d.max(Duration::from_millis(1)), PoolMsg::Tick);
        }
    }
}

impl<P: PooledProtocol> Actor for Pool<P> {
    type Msg = PoolMsg<P>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.keep_min_size(ctx);
    }

    fn handle(&mut self, msg: PoolMsg<P>, ctx: &mut Context<Self>) {
        match msg {
            PoolMsg::Call(req, reply) => self.first_attempt(req, reply, ctx),
            PoolMsg::Retry(req, call) => self.dispatch(req, call, ctx),
            PoolMsg::Metrics(reply) => {
                let now = ctx.now();
                let breaker = match self.breaker(now).state(now) {
                    BreakerState::Closed => "closed",
                    BreakerState::Open { .. } => "open",
                    BreakerState::HalfOpen => "half-open",
                    BreakerState::ForcedOpen => "forced-open",
                    BreakerState::ForcedClosed => "forced-closed",
                };
                reply.send(PoolMetrics {
                    size: self.conns.len(),
                    idle: self.conns.iter().filter(|c| c.in_flight == 0).count(),
                    waiters: self.waiters.len(),
                    rejected_open: self.rejected_open,
                    breaker,
                });
            }
            PoolMsg::Done(conn, permit, result, mut call) => {
                if let Some(c) = self.conns.iter_mut().find(|c| c.addr.id() == conn) {
                    c.in_flight = c.in_flight.saturating_sub(1);
                }
                let now = ctx.now();
                let (outcome, answer) = match result {
                    Ok(Ok(resp)) => {
                        let failed = self.failure.as_ref().is_some_and(|f| f(&resp));
                        (
                            if failed {
                                Outcome::Failure
                            } else {
                                Outcome::Success
                            },
                            Ok(resp),
                        )
                    }
                    Ok(Err(e)) => (Outcome::Failure, Err(PoolError::Client(e))),
                    Err(ReplyError::Timeout) => (Outcome::Failure, Err(PoolError::Timeout)),
                    Err(_) => (
                        Outcome::Failure,
                        Err(PoolError::Client(ClientError::Connection(
                            "connection lost".into(),
                        ))),
                    ),
                };
                if outcome == Outcome::Success {
                    self.failures_in_a_row = 0;
                }
                if let Some(t) = self.breaker(now).record(*permit, outcome, now) {
                    tracing::info!(from = ?t.from, to = ?t.to, dest = %self.dest, "pool circuit breaker");
                }
                let transient = answer.as_ref().err().is_none_or(PoolError::is_transient);
                if outcome == Outcome::Failure && transient {
                    if let (Some((copy, attempt, deadline)), Some((policy, again))) =
                        (call.retry.take(), self.retry.as_mut())
                    {
                        let next = policy.next(
                            attempt + 1,
                            Idempotency::Idempotent,
                            true,
                            Some(deadline),
                            &mut self.budget,
                            now,
                        );
                        if let Ok(delay) = next {
                            let spare = again(&copy);
                            call.retry = spare.map(|c| (c, attempt + 1, deadline));
                            if delay.is_zero() {
                                self.dispatch(copy, call, ctx);
                            } else {
                                ctx.send_after(delay, PoolMsg::Retry(copy, call));
                            }
                            self.drain_waiters(ctx);
                            return;
                        }
                    }
                }
                call.reply.send(answer);
                self.drain_waiters(ctx);
            }
            PoolMsg::Tick => {
                self.tick_armed = false;
                self.keep_min_size(ctx);
                self.drain_waiters(ctx);
                if !self.waiters.is_empty() {
                    self.arm_tick(ctx, Some(Duration::from_millis(10)));
                }
            }
        }
    }

    fn terminated(&mut self, ev: Terminated, ctx: &mut Context<Self>) {
        if !ev.child {
            return;
        }
        let before = self.conns.len();
        self.conns.retain(|c| c.addr.id() != ev.id);
        if self.conns.len() == before {
            return;
        }
        // A lost connection: reconnect with backoff (the pool's reconnect policy).
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        let delay = self
            .cfg
            .reconnect
            .delay(self.failures_in_a_row.saturating_sub(1), 0.5);
        let now = ctx.now();
        self.reconnect_at = Some(now + delay);
        self.arm_tick(ctx, Some(delay));
    }

    fn stopping(&mut self, _ctx: &mut Context<Self>) {
        for (_, _, call) in self.waiters.drain(..) {
            call.reply.send(Err(PoolError::Stopped));
        }
    }
}
