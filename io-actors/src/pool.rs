//! A connection pool for one destination, as a supervisor of client connection actors.
//!
//! Calls go to an idle connection when there is one (the most recently released with
//! [`PoolOrder::Lifo`], the least recently released with [`PoolOrder::Fifo`]), else to the
//! least-loaded connection that can take another (pipelined protocols multiplex many callers
//! over few connections); the pool opens connections up to `max_size`, keeps `min_size` open,
//! reconnects with backoff after failures, and queues calls (bounded, with a deadline) while
//! none can take them. A circuit breaker decides whether calls go out at all: while it is open
//! they fail at once with [`PoolError::CircuitOpen`], distinct from every other error.
//!
//! Connections are also retired on purpose: when older than `max_lifetime`, when idle for
//! `idle_timeout` (never below `min_size`), or when a background health check (the protocol's
//! [`health_check_request`], or [`Pool::health_request`]) fails. A retired connection takes
//! no new calls and is stopped once its calls in flight are answered, so no call fails because
//! of a retirement. While fewer than `min_size` connections take calls, one retired by age is
//! replaced at once, one that failed its health check after the reconnect backoff.
//! All of this runs on the actor clock (`Context::now`, timers), so it behaves the same under
//! the deterministic system.
//!
//! Calls may be hedged ([`PoolConfig::hedge`]): a call that [`Pool::retries`]' `retryable`
//! may repeat and that has no answer after the hedge delay is sent again on another
//! connection; the first answer goes to the caller and the later one is dropped. Hedges are
//! paid from the retry budget, never outlive the call's deadline, and never touch requests
//! that are not idempotent.
//!
//! Fault point (simulation with buggify on): a passing health check is taken as failed
//! ([`BUGGIFY_HEALTH_CHECK_FAILS`]); the client connections have their own (see
//! the `client` module).
//!
//! [`health_check_request`]: sinew_protocols::protocol::ClientProtocol::health_check_request

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sinew_actors::{Actor, ActorId, Addr, Context, ReplyError, ReplyTo, Terminated, TimerHandle};
use sinew_protocols::protocol::Protocol;
use sinew_supervision::resilience::breaker::{
    BreakerConfig, BreakerError, BreakerState, CircuitBreaker, Outcome, Permit,
};
use sinew_supervision::resilience::retry::{Idempotency, RetryBudget, RetryPolicy};
use sinew_supervision::Backoff;

use crate::client::{CallResult, ClientConn, ClientError, ClientMsg, PooledProtocol};

/// Probability that a health check that passed is taken as failed (fault point, simulation
/// only: `sinew_actors::buggify`), as when a probe meets a destination's bad moment: the
/// connection is retired and replaced after the reconnect backoff, and no call may fail
/// because of it.
pub(crate) const BUGGIFY_HEALTH_CHECK_FAILS: f64 = 0.05;

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
    /// Which idle connection takes the next call. Among busy connections the least-loaded one
    /// always does.
    pub order: PoolOrder,
    /// How long connection setup may take; `None` leaves the protocol's request-read timeout
    /// (`Protocol::timeouts().request_read`) in charge.
    pub connect_timeout: Option<Duration>,
    /// Connections older than this are retired: they take no new calls, stop once their calls
    /// in flight are answered, and are replaced while fewer than `min_size` remain. `None`:
    /// connections live until they fail.
    pub max_lifetime: Option<Duration>,
    /// Connections with nothing in flight for this long are closed, oldest first, as long as
    /// `min_size` remain. `None`: idle connections stay open.
    pub idle_timeout: Option<Duration>,
    /// How often idle connections are probed with the protocol's health-check request (a
    /// connection that carried calls within the interval is not probed; one probe at a time
    /// per connection). A probe that errs, gets no answer within `call_timeout`, or whose
    /// response the pool's classifier ([`Pool::classify`]) marks as a failure retires the
    /// connection, which is replaced with the reconnect backoff. Probes do not count toward the
    /// circuit breaker. `None` (or a protocol without a health-check request): no probes.
    pub health_check_interval: Option<Duration>,
    /// Hedging: calls that may be repeated and are still unanswered after a delay are sent
    /// again on another connection, the first answer wins. Takes effect with
    /// [`Pool::retries`], whose `retryable` decides which requests may be repeated and whose
    /// budget pays for each hedge. `None`: no hedging.
    pub hedge: Option<HedgePolicy>,
}

/// When to hedge a call (see [`PoolConfig::hedge`]).
///
/// A hedge goes to a connection other than those already carrying the call (opening one if
/// the pool may), needs a circuit-breaker permit and a withdrawal from the retry budget, and
/// its answer deadline is the call's own (`call_timeout` from the first attempt). Without a
/// connection to take it, the pool tries again one `delay` later; once the budget or the
/// breaker refuses, that call is not hedged any more. Hedges do not count toward the retry
/// policy's attempts. The answer that loses the race still releases its connection and
/// counts for the breaker (it says how the destination is doing), but reaches no one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HedgePolicy {
    /// How long an attempt may go unanswered before the next copy is sent (typically the
    /// destination's p95 or p99 latency).
    pub delay: Duration,
    /// Copies sent at most per call, besides its first attempt and its retries.
    pub max_extra: u32,
}

/// How the pool chooses among idle connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PoolOrder {
    /// The most recently released idle connection: a hot set carries the traffic and the rest
    /// idle out (with `idle_timeout`). The default.
    #[default]
    Lifo,
    /// The least recently released idle connection: traffic spreads over every connection.
    Fifo,
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
            order: PoolOrder::Lifo,
            connect_timeout: None,
            max_lifetime: None,
            idle_timeout: None,
            health_check_interval: None,
            hedge: None,
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
    to: CallTo<P>,
}

/// Where an attempt's answer goes.
enum CallTo<P: PooledProtocol> {
    /// Straight to the caller; with the copy a retry would send, the retries so far and the
    /// call's deadline.
    Caller(ReplyTo<PoolResult<P>>, Option<(P::Request, u32, Instant)>),
    /// To the hedged call `id` in the pool's flights; `true` for a hedge (not the first
    /// attempt nor a retry).
    Flight(u64, bool),
}

/// A call that may be hedged, while it is unanswered: its reply address waits here and each
/// of its attempts (first, hedges, retries) points at it.
struct Flight<P: PooledProtocol> {
    reply: ReplyTo<PoolResult<P>>,
    /// The request as `retryable` copied it: every further attempt sends a copy of this.
    template: P::Request,
    /// Retries so far.
    retries: u32,
    deadline: Instant,
    /// The connections carrying an attempt now, one entry per attempt.
    on: Vec<ActorId>,
    /// Hedges sent.
    hedges: u32,
    /// The armed hedge timer, and the number that tells it from stale ones.
    timer: Option<TimerHandle>,
    timer_gen: u64,
}

/// A pooled call's answer.
pub type PoolResult<P> = Result<<P as Protocol>::Response, PoolError>;

/// Counters of a pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolMetrics {
    /// Calls received (each counted once, however many attempts it took).
    pub calls: u64,
    /// Connections (connecting, ready or retiring): the sockets the pool holds.
    pub size: usize,
    /// Attempts sent to connections and not answered yet (hedges and late answers included).
    pub in_flight: usize,
    /// Connections that take calls and have nothing in flight.
    pub idle: usize,
    /// Retired connections still answering their calls in flight (counted in `size`).
    pub retiring: usize,
    /// Calls waiting for a connection.
    pub waiters: usize,
    /// Calls refused because the circuit was open.
    pub rejected_open: u64,
    /// The breaker's state name.
    pub breaker: &'static str,
    /// Calls that waited for a connection until one could take them.
    pub waited: u64,
    /// Their total time waiting.
    pub wait_total: Duration,
    /// The longest of their waits.
    pub wait_max: Duration,
    /// Calls that waited for a connection and gave up after `checkout_timeout`.
    pub checkout_timeouts: u64,
    /// Calls whose callers stopped waiting (their deadline passed or they went away) before
    /// a connection was free: dropped from the queue, never sent.
    pub checkouts_cancelled: u64,
    /// Connections retired because they reached `max_lifetime`.
    pub retired_lifetime: u64,
    /// Connections closed because they were idle for `idle_timeout`.
    pub retired_idle: u64,
    /// Connections retired because a health check failed.
    pub retired_health: u64,
    /// Health checks answered (passed or failed).
    pub health_checks: u64,
    /// Hedges sent (extra copies of calls, see [`PoolConfig::hedge`]).
    pub hedges: u64,
    /// Calls whose answer came from a hedge.
    pub hedge_wins: u64,
    /// Hedges not sent because the retry budget was spent.
    pub hedges_over_budget: u64,
}

impl PoolMetrics {
    /// The mean wait of calls that waited for a connection (zero when none did).
    pub fn wait_mean(&self) -> Duration {
        match u32::try_from(self.waited) {
            Ok(0) => Duration::ZERO,
            Ok(n) => self.wait_total / n,
            Err(_) => Duration::from_secs_f64(self.wait_total.as_secs_f64() / self.waited as f64),
        }
    }

    /// Adds up several pools' counters (a [`crate::PoolGroup`]'s): sizes, counts and wait
    /// totals summed, `wait_max` the largest, `breaker` the state every pool shares, or
    /// `"mixed"`.
    pub fn sum(each: &[PoolMetrics]) -> PoolMetrics {
        let mut t = PoolMetrics::default();
        for m in each {
            t.calls += m.calls;
            t.size += m.size;
            t.in_flight += m.in_flight;
            t.idle += m.idle;
            t.retiring += m.retiring;
            t.waiters += m.waiters;
            t.rejected_open += m.rejected_open;
            t.waited += m.waited;
            t.wait_total += m.wait_total;
            t.wait_max = t.wait_max.max(m.wait_max);
            t.checkout_timeouts += m.checkout_timeouts;
            t.checkouts_cancelled += m.checkouts_cancelled;
            t.retired_lifetime += m.retired_lifetime;
            t.retired_idle += m.retired_idle;
            t.retired_health += m.retired_health;
            t.health_checks += m.health_checks;
            t.hedges += m.hedges;
            t.hedge_wins += m.hedge_wins;
            t.hedges_over_budget += m.hedges_over_budget;
        }
        t.breaker = match each.split_first() {
            None => "closed",
            Some((first, rest)) if rest.iter().all(|m| m.breaker == first.breaker) => first.breaker,
            Some(_) => "mixed",
        };
        t
    }
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
    /// A health check sent on connection `conn` was answered.
    Health(ActorId, Result<CallResult<P>, ReplyError>),
    /// Time to retire old and idle connections and probe idle ones (the number tells stale
    /// timers from the armed one).
    Maintain(u64),
    /// Time to hedge call `id` if it is still unanswered (the second number tells stale
    /// timers from the armed one).
    Hedge(u64, u64),
}

/// Why a connection was retired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retire {
    Lifetime,
    Idle,
    Health,
}

struct Conn<P: PooledProtocol> {
    addr: Addr<ClientConn<P>>,
    /// Calls sent and not answered yet (health checks not included).
    in_flight: usize,
    opened: Instant,
    /// When `in_flight` last fell to zero (or the connection opened).
    last_used: Instant,
    /// Release order: the pool's counter when `in_flight` last fell to zero (0: never used).
    released: u64,
    /// A health check is in flight.
    checking: bool,
    last_checked: Option<Instant>,
    retiring: Option<Retire>,
    /// The pool asked it to stop.
    stop_sent: bool,
}

impl<P: PooledProtocol> Conn<P> {
    fn load(&self) -> usize {
        self.in_flight + usize::from(self.checking)
    }

    fn is_idle(&self) -> bool {
        self.retiring.is_none() && self.load() == 0
    }
}

/// A call waiting for a connection.
struct Waiter<P: PooledProtocol> {
    since: Instant,
    deadline: Instant,
    req: P::Request,
    call: Box<CallCtx<P>>,
}

/// Counters kept beside the connections.
#[derive(Default)]
struct Counters {
    calls: u64,
    rejected_open: u64,
    waited: u64,
    wait_total: Duration,
    wait_max: Duration,
    checkout_timeouts: u64,
    checkouts_cancelled: u64,
    retired_lifetime: u64,
    retired_idle: u64,
    retired_health: u64,
    health_checks: u64,
    hedges: u64,
    hedge_wins: u64,
    hedges_over_budget: u64,
}

/// Makes a health-check request.
type HealthRequest<P> = Box<dyn Fn() -> Option<<P as Protocol>::Request> + Send>;

/// The pool actor. Protocols whose codecs are `Clone`-free are built from `make_protocol`.
pub struct Pool<P: PooledProtocol> {
    dest: SocketAddr,
    make_protocol: Box<dyn Fn() -> P + Send>,
    cfg: PoolConfig,
    conns: Vec<Conn<P>>,
    waiters: VecDeque<Waiter<P>>,
    breaker: Option<CircuitBreaker>,
    failures_in_a_row: u32,
    reconnect_at: Option<Instant>,
    counters: Counters,
    tick_armed: bool,
    /// Counts releases (connections falling idle), for FIFO/LIFO.
    releases: u64,
    /// The armed maintenance timer: when it fires, and its handle.
    maint: Option<(Instant, TimerHandle)>,
    maint_gen: u64,
    /// Health-check requests: set by `health_request`, else the protocol's hook.
    health: Option<HealthRequest<P>>,
    /// Responses that count as failures for the breaker (they still reach the caller).
    failure: Option<Classifier<P>>,
    retry: Option<(RetryPolicy, Retryable<P>)>,
    budget: RetryBudget,
    /// Calls that may be hedged, by id, while unanswered.
    flights: HashMap<u64, Flight<P>>,
    next_flight: u64,
}

impl<P: PooledProtocol> Pool<P> {
    /// Retries failed calls: a call that failed with a transient error (or a response classified
    /// as a failure) is sent again after the policy's backoff, never past its deadline
    /// (`call_timeout` from the first attempt), and only if `retryable` makes a copy (return
    /// `None` for requests that are not idempotent) and the budget allows: retries add at most
    /// the budget's share of recent requests, so a failing backend is not hammered. With
    /// [`PoolConfig::hedge`], `retryable` also decides which calls may be hedged, and hedges
    /// are paid from the same budget.
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
    /// (the caller still gets the response): HTTP 5xx, a RESP error reply... Health checks
    /// whose response it marks as a failure retire their connection.
    pub fn classify(mut self, is_failure: impl Fn(&P::Response) -> bool + Send + 'static) -> Self {
        self.failure = Some(Box::new(is_failure));
        self
    }

    /// Probes idle connections (see [`PoolConfig::health_check_interval`]) with `request()`
    /// instead of the protocol's [`health_check_request`]: for instance an HTTP/1.1 `GET` of
    /// the backend's own health path with the `Host` header HTTP/1.1 servers require (the
    /// `Http1` hook sends `GET /health` without one, which most servers answer with 400 and a
    /// close).
    ///
    /// [`health_check_request`]: sinew_protocols::protocol::ClientProtocol::health_check_request
    pub fn health_request(mut self, request: impl Fn() -> P::Request + Send + 'static) -> Self {
        self.health = Some(Box::new(move || Some(request())));
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
            counters: Counters::default(),
            tick_armed: false,
            releases: 0,
            maint: None,
            maint_gen: 0,
            health: None,
            failure: None,
            retry: None,
            budget: RetryBudget::new(0.0, 0, Duration::from_secs(10)),
            flights: HashMap::new(),
            next_flight: 0,
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
        let mut conn = ClientConn::new((self.make_protocol)(), self.dest);
        if let Some(limit) = self.cfg.connect_timeout {
            conn = conn.with_connect_timeout(Some(limit));
        }
        match ctx.spawn(conn) {
            Ok(addr) => {
                self.conns.push(Conn {
                    addr,
                    in_flight: 0,
                    opened: now,
                    last_used: now,
                    released: 0,
                    checking: false,
                    last_checked: None,
                    retiring: None,
                    stop_sent: false,
                });
                self.schedule_maintenance(ctx);
            }
            Err(e) => tracing::warn!(error = %e, "pool: cannot open a connection"),
        }
    }

    /// Connections that take calls (not retiring).
    fn active(&self) -> usize {
        self.conns.iter().filter(|c| c.retiring.is_none()).count()
    }

    /// The connection the next call goes to: an idle one by the pool's order (ties go to the
    /// older connection), else the least-loaded one that can take another call.
    fn pick(&self) -> Option<usize> {
        self.pick_excluding(&[])
    }

    /// Like [`Pool::pick`], among connections not in `exclude` (a hedge goes elsewhere than
    /// the attempts it backs up).
    fn pick_excluding(&self, exclude: &[ActorId]) -> Option<usize> {
        let mut idle: Option<(usize, u64)> = None;
        let mut busy: Option<(usize, usize)> = None;
        for (i, c) in self.conns.iter().enumerate() {
            if c.retiring.is_some() || c.load() >= self.cfg.max_in_flight {
                continue;
            }
            if !exclude.is_empty() && exclude.contains(&c.addr.id()) {
                continue;
            }
            if c.is_idle() {
                let better = match (idle, self.cfg.order) {
                    (None, _) => true,
                    (Some((_, r)), PoolOrder::Lifo) => c.released > r,
                    (Some((_, r)), PoolOrder::Fifo) => c.released < r,
                };
                if better {
                    idle = Some((i, c.released));
                }
            } else if busy.is_none_or(|(_, load)| c.load() < load) {
                busy = Some((i, c.load()));
            }
        }
        idle.map(|(i, _)| i).or(busy.map(|(i, _)| i))
    }

    /// A new call: deposit into the retry budget and keep a copy for retries (and hedges).
    fn first_attempt(
        &mut self,
        req: P::Request,
        reply: ReplyTo<PoolResult<P>>,
        ctx: &mut Context<Self>,
    ) {
        let now = ctx.now();
        self.counters.calls += 1;
        self.budget.on_request(now);
        let copy = self.retry.as_ref().and_then(|(_, copy)| copy(&req));
        let deadline = now + self.cfg.call_timeout;
        let to = match (copy, self.cfg.hedge) {
            (Some(template), Some(h)) if h.max_extra > 0 => {
                self.next_flight += 1;
                let id = self.next_flight;
                self.flights.insert(
                    id,
                    Flight {
                        reply,
                        template,
                        retries: 0,
                        deadline,
                        on: Vec::with_capacity(2),
                        hedges: 0,
                        timer: None,
                        timer_gen: 0,
                    },
                );
                CallTo::Flight(id, false)
            }
            (copy, _) => CallTo::Caller(reply, copy.map(|c| (c, 0u32, deadline))),
        };
        self.dispatch(req, Box::new(CallCtx { to }), ctx);
    }

    /// Answers a call that got no attempt out (circuit open, saturated, checkout timeout, pool
    /// stopping), or whose attempts are over.
    fn answer(&mut self, to: CallTo<P>, result: PoolResult<P>) {
        match to {
            CallTo::Caller(reply, _) => {
                reply.send(result);
            }
            CallTo::Flight(id, _) => {
                if let Some(f) = self.flights.remove(&id) {
                    if let Some(t) = f.timer {
                        t.cancel();
                    }
                    f.reply.send(result);
                }
            }
        }
    }

    /// The retry policy's verdict on retry number `attempt`: its delay, or `None` when no
    /// retry may happen (no policy, attempts exhausted, past the deadline, budget spent).
    fn retry_delay(&mut self, attempt: u32, deadline: Instant, now: Instant) -> Option<Duration> {
        let (policy, _) = self.retry.as_mut()?;
        policy
            .next(
                attempt,
                Idempotency::Idempotent,
                true,
                Some(deadline),
                &mut self.budget,
                now,
            )
            .ok()
    }

    /// Sends `req` on connection `i`; its answer comes back as `Done` within `timeout`.
    /// Returns the connection's id.
    fn send_on(
        &mut self,
        i: usize,
        req: P::Request,
        permit: Permit,
        call: Box<CallCtx<P>>,
        timeout: Duration,
        ctx: &mut Context<Self>,
    ) -> ActorId {
        let conn = &mut self.conns[i];
        conn.in_flight += 1;
        let id = conn.addr.id();
        let permit = Box::new(permit);
        let mut back = Some(call);
        let done = ctx.reply_to_within(timeout, move |r| {
            let call = back.take().expect("reply delivered once");
            PoolMsg::Done(id, permit, r, call)
        });
        if let Err(e) = conn.addr.try_send(ClientMsg::Call(req, done)) {
            // The connection refused (stopping or full): its ReplyTo answers with an error,
            // which arrives as Done and is counted there.
            drop(e.into_inner());
        }
        id
    }

    /// Arms (or re-arms) the hedge timer of call `id`.
    fn arm_hedge(&mut self, id: u64, delay: Duration, ctx: &mut Context<Self>) {
        let Some(f) = self.flights.get_mut(&id) else {
            return;
        };
        if let Some(t) = f.timer.take() {
            t.cancel();
        }
        f.timer_gen += 1;
        f.timer = Some(ctx.send_after(delay, PoolMsg::Hedge(id, f.timer_gen)));
    }

    /// The hedge timer of call `id` fired: if it is still unanswered, send a copy on another
    /// connection (budget, breaker and deadline permitting) and arm the next hedge.
    fn hedge(&mut self, id: u64, generation: u64, ctx: &mut Context<Self>) {
        let Some(policy) = self.cfg.hedge else {
            return;
        };
        let now = ctx.now();
        let Some(f) = self.flights.get_mut(&id) else {
            return;
        };
        if f.timer_gen != generation {
            return;
        }
        f.timer = None;
        // Nothing in flight means a retry is waiting for its backoff: it re-arms the timer.
        if f.on.is_empty() || f.hedges >= policy.max_extra || now >= f.deadline {
            return;
        }
        let (exclude, deadline) = (f.on.clone(), f.deadline);
        let mut target = self.pick_excluding(&exclude);
        let may_open =
            self.conns.len() < self.cfg.max_size && self.reconnect_at.is_none_or(|t| now >= t);
        if target.is_none() && !may_open {
            // Every other connection is busy: look again one delay later.
            self.arm_hedge(id, policy.delay, ctx);
            return;
        }
        let Ok((permit, _)) = self.breaker(now).try_acquire(now) else {
            return;
        };
        if !self.budget.try_withdraw(now) {
            self.breaker(now).record(permit, Outcome::Ignored, now);
            self.counters.hedges_over_budget += 1;
            tracing::debug!(dest = %self.dest, "pool: hedge refused by the retry budget");
            return;
        }
        if target.is_none() {
            self.open_connection(ctx);
            target = self.pick_excluding(&exclude);
        }
        let copy = match (self.flights.get(&id), self.retry.as_ref()) {
            (Some(f), Some((_, again))) => again(&f.template),
            _ => None,
        };
        let (Some(i), Some(req)) = (target, copy) else {
            self.breaker(now).record(permit, Outcome::Ignored, now);
            return;
        };
        let timeout = deadline
            .saturating_duration_since(now)
            .min(self.cfg.call_timeout);
        let call = Box::new(CallCtx {
            to: CallTo::Flight(id, true),
        });
        let conn = self.send_on(i, req, permit, call, timeout, ctx);
        self.counters.hedges += 1;
        let Some(f) = self.flights.get_mut(&id) else {
            return;
        };
        f.on.push(conn);
        f.hedges += 1;
        if f.hedges < policy.max_extra {
            self.arm_hedge(id, policy.delay, ctx);
        }
    }

    /// An attempt of hedged call `id` was answered on connection `conn`: the first answer
    /// goes to the caller, a failure waits for the call's other attempts (or is retried when
    /// none is left), and answers arriving after the call was answered are dropped.
    fn flight_done(
        &mut self,
        id: u64,
        hedge: bool,
        conn: ActorId,
        retry_it: bool,
        answer: PoolResult<P>,
        ctx: &mut Context<Self>,
    ) {
        let now = ctx.now();
        let Some(f) = self.flights.get_mut(&id) else {
            // The call was answered already: this is the later answer, dropped.
            return;
        };
        if let Some(k) = f.on.iter().position(|c| *c == conn) {
            f.on.swap_remove(k);
        }
        if retry_it {
            if !f.on.is_empty() {
                // Another attempt is still out and may succeed.
                return;
            }
            let (attempt, deadline) = (f.retries + 1, f.deadline);
            if let Some(delay) = self.retry_delay(attempt, deadline, now) {
                let copy = match (self.flights.get_mut(&id), self.retry.as_ref()) {
                    (Some(f), Some((_, again))) => {
                        f.retries = attempt;
                        if let Some(t) = f.timer.take() {
                            t.cancel();
                        }
                        again(&f.template)
                    }
                    _ => None,
                };
                if let Some(copy) = copy {
                    let call = Box::new(CallCtx {
                        to: CallTo::Flight(id, false),
                    });
                    if delay.is_zero() {
                        self.dispatch(copy, call, ctx);
                    } else {
                        ctx.send_after(delay, PoolMsg::Retry(copy, call));
                    }
                    return;
                }
            }
        }
        if hedge {
            self.counters.hedge_wins += 1;
        }
        self.answer(CallTo::Flight(id, hedge), answer);
    }

    fn dispatch(&mut self, req: P::Request, call: Box<CallCtx<P>>, ctx: &mut Context<Self>) {
        let now = ctx.now();
        let permit = match self.breaker(now).try_acquire(now) {
            Ok((p, _)) => p,
            Err(BreakerError::Open) => {
                self.counters.rejected_open += 1;
                self.answer(call.to, Err(PoolError::CircuitOpen));
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
                self.answer(call.to, Err(PoolError::Saturated));
            } else {
                self.waiters.push_back(Waiter {
                    since: now,
                    deadline: now + self.cfg.checkout_timeout,
                    req,
                    call,
                });
                self.arm_tick(ctx, Some(self.cfg.checkout_timeout));
            }
            return;
        };
        let flight = match call.to {
            CallTo::Flight(id, _) => Some(id),
            CallTo::Caller(..) => None,
        };
        let conn = self.send_on(i, req, permit, call, self.cfg.call_timeout, ctx);
        if let Some(id) = flight {
            // A hedged call's first attempt or retry: hedge it if it goes unanswered.
            let Some(f) = self.flights.get_mut(&id) else {
                return;
            };
            f.on.push(conn);
            let more = self.cfg.hedge.filter(|h| f.hedges < h.max_extra);
            if let Some(h) = more {
                self.arm_hedge(id, h.delay, ctx);
            }
        }
    }

    fn drain_waiters(&mut self, ctx: &mut Context<Self>) {
        let now = ctx.now();
        while let Some(w) = self.waiters.front() {
            // A caller that stopped waiting gets nothing sent on its behalf: no connection
            // capacity goes to an answer nobody will read.
            if matches!(&w.call.to, CallTo::Caller(reply, _) if !reply.is_open()) {
                self.waiters.pop_front();
                self.counters.checkouts_cancelled += 1;
                continue;
            }
            if w.deadline <= now {
                if let Some(w) = self.waiters.pop_front() {
                    self.counters.checkout_timeouts += 1;
                    self.answer(w.call.to, Err(PoolError::Timeout));
                }
                continue;
            }
            if self.pick().is_none() {
                break;
            }
            if let Some(w) = self.waiters.pop_front() {
                let waited = now.saturating_duration_since(w.since);
                let c = &mut self.counters;
                c.waited += 1;
                c.wait_total += waited;
                c.wait_max = c.wait_max.max(waited);
                self.dispatch(w.req, w.call, ctx);
            }
        }
    }

    fn keep_min_size(&mut self, ctx: &mut Context<Self>) {
        let wanted = self
            .cfg
            .min_size
            .max(usize::from(!self.waiters.is_empty()))
            .min(self.cfg.max_size);
        // Retiring connections still hold sockets: they count toward `max_size`, not toward
        // the connections wanted.
        while self.active() < wanted && self.conns.len() < self.cfg.max_size {
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

    /// A call or health check on connection `i` was answered: stop the connection if it is
    /// retiring and now has nothing in flight.
    fn stop_if_drained(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.retiring.is_some() && c.load() == 0 && !c.stop_sent {
            c.stop_sent = true;
            c.addr.stop();
        }
    }

    /// Retires connection `i`: no new calls; stopped once its calls in flight are answered.
    fn retire(&mut self, i: usize, why: Retire, ctx: &mut Context<Self>) {
        if self.conns[i].retiring.is_some() {
            return;
        }
        self.conns[i].retiring = Some(why);
        match why {
            Retire::Lifetime => self.counters.retired_lifetime += 1,
            Retire::Idle => self.counters.retired_idle += 1,
            Retire::Health => {
                self.counters.retired_health += 1;
                // A sick destination: its replacement waits for the reconnect backoff.
                self.note_failure(ctx);
            }
        }
        tracing::debug!(dest = %self.dest, reason = ?why, "pool: connection retired");
        self.stop_if_drained(i);
    }

    /// A connection failed: the next one opens after the reconnect backoff.
    fn note_failure(&mut self, ctx: &mut Context<Self>) {
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        let delay = self
            .cfg
            .reconnect
            .delay(self.failures_in_a_row.saturating_sub(1), 0.5);
        self.reconnect_at = Some(ctx.now() + delay);
        self.arm_tick(ctx, Some(delay));
    }

    /// Whether any timed maintenance is configured.
    fn maintains(&self) -> bool {
        self.cfg.max_lifetime.is_some()
            || self.cfg.idle_timeout.is_some()
            || self.cfg.health_check_interval.is_some()
    }

    /// The health-check request, if the pool probes connections. A protocol without one
    /// turns probing off.
    fn health_check_request(&mut self) -> Option<P::Request> {
        self.cfg.health_check_interval?;
        if self.health.is_none() {
            let protocol = (self.make_protocol)();
            self.health = Some(Box::new(move || protocol.health_check_request()));
        }
        let req = self.health.as_ref().and_then(|make| make());
        if req.is_none() {
            tracing::warn!(dest = %self.dest, "pool: no health-check request; probes are off");
            self.cfg.health_check_interval = None;
        }
        req
    }

    /// Arms the maintenance timer for the earliest moment something is due: a connection's
    /// end of life, the end of an idle connection's idle time (while more than `min_size`
    /// remain), an idle connection's next health check.
    fn schedule_maintenance(&mut self, ctx: &mut Context<Self>) {
        if !self.maintains() {
            return;
        }
        let cfg = &self.cfg;
        let may_idle_out = self.active() > cfg.min_size;
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for c in self.conns.iter().filter(|c| c.retiring.is_none()) {
            if let Some(life) = cfg.max_lifetime {
                consider(c.opened + life);
            }
            if c.load() > 0 {
                continue;
            }
            if let (Some(idle), true) = (cfg.idle_timeout, may_idle_out) {
                consider(c.last_used + idle);
            }
            if let Some(every) = cfg.health_check_interval {
                consider(c.last_checked.map_or(c.last_used, |t| t.max(c.last_used)) + every);
            }
        }
        let Some(at) = next else {
            return;
        };
        if self.maint.as_ref().is_some_and(|(t, _)| *t <= at) {
            return;
        }
        if let Some((_, old)) = self.maint.take() {
            old.cancel();
        }
        self.maint_gen += 1;
        let after = at
            .saturating_duration_since(ctx.now())
            .max(Duration::from_millis(1));
        let timer = ctx.send_after(after, PoolMsg::Maintain(self.maint_gen));
        self.maint = Some((at, timer));
    }

    /// Retires connections past their lifetime and idle ones past their idle time, opens
    /// replacements, probes idle connections that are due, and arms the next pass.
    fn maintain(&mut self, ctx: &mut Context<Self>) {
        let now = ctx.now();
        if let Some(life) = self.cfg.max_lifetime {
            for i in 0..self.conns.len() {
                if self.conns[i].retiring.is_none() && now >= self.conns[i].opened + life {
                    self.retire(i, Retire::Lifetime, ctx);
                }
            }
        }
        if let Some(idle) = self.cfg.idle_timeout {
            let mut expired: Vec<usize> = (0..self.conns.len())
                .filter(|&i| {
                    let c = &self.conns[i];
                    c.is_idle() && now >= c.last_used + idle
                })
                .collect();
            expired.sort_by_key(|&i| self.conns[i].last_used);
            let mut active = self.active();
            for i in expired {
                if active <= self.cfg.min_size {
                    break;
                }
                self.retire(i, Retire::Idle, ctx);
                active -= 1;
            }
        }
        self.keep_min_size(ctx);
        if let Some(every) = self.cfg.health_check_interval {
            let timeout = self.cfg.call_timeout;
            for i in 0..self.conns.len() {
                let c = &self.conns[i];
                let since = c.last_checked.map_or(c.last_used, |t| t.max(c.last_used));
                if !c.is_idle() || now < since + every {
                    continue;
                }
                let Some(req) = self.health_check_request() else {
                    break;
                };
                let c = &mut self.conns[i];
                c.checking = true;
                c.last_checked = Some(now);
                let id = c.addr.id();
                let reply = ctx.reply_to_within(timeout, move |r| PoolMsg::Health(id, r));
                if let Err(e) = c.addr.try_send(ClientMsg::Call(req, reply)) {
                    // Refused: the reply address answers with an error, a failed check.
                    drop(e.into_inner());
                }
            }
        }
        self.drain_waiters(ctx);
        self.schedule_maintenance(ctx);
    }

    fn metrics(&mut self, now: Instant) -> PoolMetrics {
        let breaker = match self.breaker(now).state(now) {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen => "half-open",
            BreakerState::ForcedOpen => "forced-open",
            BreakerState::ForcedClosed => "forced-closed",
        };
        let c = &self.counters;
        PoolMetrics {
            calls: c.calls,
            size: self.conns.len(),
            in_flight: self.conns.iter().map(|c| c.in_flight).sum(),
            idle: self.conns.iter().filter(|c| c.is_idle()).count(),
            retiring: self.conns.iter().filter(|c| c.retiring.is_some()).count(),
            waiters: self.waiters.len(),
            rejected_open: c.rejected_open,
            breaker,
            waited: c.waited,
            wait_total: c.wait_total,
            wait_max: c.wait_max,
            checkout_timeouts: c.checkout_timeouts,
            checkouts_cancelled: c.checkouts_cancelled,
            retired_lifetime: c.retired_lifetime,
            retired_idle: c.retired_idle,
            retired_health: c.retired_health,
            health_checks: c.health_checks,
            hedges: c.hedges,
            hedge_wins: c.hedge_wins,
            hedges_over_budget: c.hedges_over_budget,
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
                reply.send(self.metrics(ctx.now()));
            }
            PoolMsg::Done(conn, permit, result, call) => {
                let now = ctx.now();
                if let Some(i) = self.conns.iter().position(|c| c.addr.id() == conn) {
                    let c = &mut self.conns[i];
                    c.in_flight = c.in_flight.saturating_sub(1);
                    if c.in_flight == 0 {
                        self.releases += 1;
                        c.released = self.releases;
                        c.last_used = now;
                        self.stop_if_drained(i);
                        self.schedule_maintenance(ctx);
                    }
                }
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
                let retry_it = outcome == Outcome::Failure && transient;
                let (reply, retry) = match call.to {
                    CallTo::Caller(reply, retry) => (reply, retry),
                    CallTo::Flight(id, hedge) => {
                        self.flight_done(id, hedge, conn, retry_it, answer, ctx);
                        self.drain_waiters(ctx);
                        return;
                    }
                };
                if retry_it {
                    if let Some((copy, attempt, deadline)) = retry {
                        if let Some(delay) = self.retry_delay(attempt + 1, deadline, now) {
                            let spare = self.retry.as_ref().and_then(|(_, again)| again(&copy));
                            let call = Box::new(CallCtx {
                                to: CallTo::Caller(
                                    reply,
                                    spare.map(|c| (c, attempt + 1, deadline)),
                                ),
                            });
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
                reply.send(answer);
                self.drain_waiters(ctx);
            }
            PoolMsg::Hedge(id, generation) => self.hedge(id, generation, ctx),
            PoolMsg::Health(conn, result) => {
                self.counters.health_checks += 1;
                let Some(i) = self.conns.iter().position(|c| c.addr.id() == conn) else {
                    return;
                };
                self.conns[i].checking = false;
                // Probes are not calls: their outcomes stay out of the circuit breaker (an
                // idle pool's probes would otherwise open or close the circuit for callers
                // that never called), but a failed probe retires its connection.
                let healthy = match &result {
                    Ok(Ok(resp)) => !self.failure.as_ref().is_some_and(|f| f(resp)),
                    Ok(Err(_)) | Err(_) => false,
                } && !sinew_actors::buggify(BUGGIFY_HEALTH_CHECK_FAILS);
                if healthy {
                    self.failures_in_a_row = 0;
                } else {
                    tracing::info!(dest = %self.dest, result = ?result.as_ref().err(), "pool: health check failed");
                    self.retire(i, Retire::Health, ctx);
                }
                // Retired meanwhile (by age) or just now: stop it if nothing else is in flight.
                self.stop_if_drained(i);
                self.drain_waiters(ctx);
                self.schedule_maintenance(ctx);
            }
            PoolMsg::Maintain(generation) => {
                if generation == self.maint_gen {
                    self.maint = None;
                    self.maintain(ctx);
                }
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
        let Some(i) = self.conns.iter().position(|c| c.addr.id() == ev.id) else {
            return;
        };
        let gone = self.conns.remove(i);
        if gone.retiring.is_none() {
            // A lost connection: reconnect with backoff (the pool's reconnect policy).
            self.note_failure(ctx);
            return;
        }
        // A retired connection finished its calls: replace it (a failed health check already
        // set the backoff), and let waiters use the room it leaves.
        self.keep_min_size(ctx);
        self.drain_waiters(ctx);
        self.schedule_maintenance(ctx);
    }

    fn stopping(&mut self, _ctx: &mut Context<Self>) {
        let waiters: Vec<Waiter<P>> = self.waiters.drain(..).collect();
        for w in waiters {
            self.answer(w.call.to, Err(PoolError::Stopped));
        }
        for (_, f) in self.flights.drain() {
            f.reply.send(Err(PoolError::Stopped));
        }
    }
}
