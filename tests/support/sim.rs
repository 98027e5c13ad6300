//! Helpers for simulation tests over the simulated network: an HTTP/1.1 backend and protocol
//! settings that replay, a pool configuration with a quick breaker, and a load generator that
//! counts the answers every call gets.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use sinew::io_actors::{IncomingFor, PoolConfig, ServerConfig};
use sinew::prelude::*;
use sinew::protocols::http1::{Body, Http1, Method, Request, Response};
use sinew::supervision::resilience::breaker::{BreakerConfig, Trip, Window};
use sinew::supervision::Backoff;
use sinew::testkit::{LinkConfig, SimHost, SimRun};

/// Host addresses used by the simulation tests.
pub const A: [u8; 4] = [10, 0, 0, 1];
/// The second host.
pub const B: [u8; 4] = [10, 0, 0, 2];
/// The third host.
pub const C: [u8; 4] = [10, 0, 0, 3];

/// `a` as an address.
pub fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

/// The backend application: answers every request with 200 "ok".
pub struct Hello;

impl Actor for Hello {
    type Msg = IncomingFor<Http1>;
    fn handle(&mut self, inc: IncomingFor<Http1>, _ctx: &mut Context<Self>) {
        inc.reply
            .send(Response::new(200).with_body(Body::Full(Bytes::from_static(b"ok"))));
    }
}

/// HTTP/1.1 for simulation: no `Date` header (the wall clock would make responses differ
/// between runs); no server header-read or client idle deadline, so idle pooled connections
/// are not closed under the calls of a "healthy" phase; a client response timeout, so a call
/// stuck on a dead connection fails.
pub fn http1() -> Http1 {
    let mut p = Http1::default();
    p.server.send_date = false;
    p.server.timeouts.header_read = None;
    p.client.timeouts.idle = None;
    p.client.timeouts.response = Some(Duration::from_secs(2));
    p
}

/// `GET /` with a Host header.
pub fn get() -> Request {
    Request::new(Method::Get, "/").header("host", "backend")
}

/// Serves [`Hello`] over HTTP/1.1 on port 80 of `host`; returns the address.
pub fn serve_hello(host: &SimHost) -> Result<SocketAddr, String> {
    let app = host.spawn(Hello).map_err(|e| e.to_string())?;
    host.serve(http1(), 80, app.recipient(), ServerConfig::default())
        .map_err(|e| e.to_string())
}

/// A small pool whose breaker opens after a few failures and tries again after 500 ms, with
/// timeouts above two retransmissions (a lossy but connected network stays "healthy").
pub fn pool_config() -> PoolConfig {
    PoolConfig {
        min_size: 1,
        max_size: 3,
        max_in_flight: 4,
        max_waiters: 64,
        checkout_timeout: Duration::from_secs(1),
        call_timeout: Duration::from_secs(1),
        connect_timeout: Some(Duration::from_secs(1)),
        reconnect: Backoff {
            jitter: 0.0,
            ..Backoff::exponential(Duration::from_millis(20), Duration::from_millis(200))
        },
        breaker: BreakerConfig {
            window: Window::Count(10),
            trip: Trip::Rates,
            minimum_calls: 4,
            failure_rate: 0.5,
            half_open_calls: 1,
            open: Backoff {
                min: Duration::from_millis(500),
                max: Duration::from_millis(500),
                factor: 1.0,
                jitter: 0.0,
                reset_after: Duration::ZERO,
            },
            ..BreakerConfig::default()
        },
        ..PoolConfig::default()
    }
}

/// A link with seeded latency, jitter and (sometimes) loss.
pub fn random_link(run: &mut SimRun) -> LinkConfig {
    LinkConfig {
        latency: Duration::from_micros(100 + run.rng().below(2_000)),
        jitter: Duration::from_micros(run.rng().below(1_000)),
        loss: if run.rng().chance(0.5) { 0.02 } else { 0.0 },
        ..LinkConfig::default()
    }
}

/// Sends call `id` with the reply address it is given.
pub type Issue<T> = Box<dyn FnMut(u32, ReplyTo<T>) + Send>;

/// Names an answer for the report ("ok", an error kind...): the id lets it check that the
/// answer is the one this call asked for. A name starting with "wrong" fails the run.
pub type Classify<T> = Box<dyn Fn(u32, &T) -> String + Send>;

/// Issues a call every `every`, `total` times, and counts the answers each call gets: every
/// one must get exactly one.
pub struct Load<T: Send + 'static> {
    issue: Issue<T>,
    classify: Classify<T>,
    every: Duration,
    total: u32,
    sent: u32,
    answers: BTreeMap<u32, u32>,
    outcomes: BTreeMap<String, u32>,
}

/// Messages of a [`Load`].
pub enum LoadMsg<T> {
    /// Time for the next call.
    Tick,
    /// Call `id`'s answer.
    Answer(u32, Result<T, ReplyError>),
    /// Asks for the counts so far.
    Report(ReplyTo<LoadReport>),
}

/// What a [`Load`] saw.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Calls issued.
    pub sent: u32,
    /// Calls answered at least once.
    pub answered: u32,
    /// Calls answered more than once.
    pub duplicates: u32,
    /// Answers by kind.
    pub outcomes: BTreeMap<String, u32>,
}

impl LoadReport {
    /// Answers of kind `k`.
    pub fn count(&self, k: &str) -> u32 {
        self.outcomes.get(k).copied().unwrap_or(0)
    }

    /// Checks that all `total` calls were answered exactly once, by their callee (not by a
    /// dropped reply address), with no answer meant for another call.
    pub fn check(&self, who: &str, total: u32) -> Result<(), String> {
        if self.sent != total || self.answered != total || self.duplicates != 0 {
            return Err(format!(
                "{who}: {self:?} (expected {total} calls, each answered once)"
            ));
        }
        let bad = |k: &String| k.starts_with("no answer") || k.starts_with("wrong");
        if let Some((k, _)) = self.outcomes.iter().find(|(k, _)| bad(k)) {
            return Err(format!("{who}: {k}: {self:?}"));
        }
        Ok(())
    }
}

impl<T: Send + 'static> Load<T> {
    /// A generator of `total` calls, one every `every`.
    pub fn new(issue: Issue<T>, classify: Classify<T>, every: Duration, total: u32) -> Self {
        Load {
            issue,
            classify,
            every,
            total,
            sent: 0,
            answers: BTreeMap::new(),
            outcomes: BTreeMap::new(),
        }
    }
}

impl<T: Send + 'static> Actor for Load<T> {
    type Msg = LoadMsg<T>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.send_after(self.every, LoadMsg::Tick);
    }

    fn handle(&mut self, msg: LoadMsg<T>, ctx: &mut Context<Self>) {
        match msg {
            LoadMsg::Tick => {
                let id = self.sent;
                self.sent += 1;
                let reply = ctx.reply_to(move |r| LoadMsg::Answer(id, r));
                (self.issue)(id, reply);
                if self.sent < self.total {
                    ctx.send_after(self.every, LoadMsg::Tick);
                }
            }
            LoadMsg::Answer(id, result) => {
                *self.answers.entry(id).or_insert(0) += 1;
                let kind = match result {
                    Ok(v) => (self.classify)(id, &v),
                    Err(e) => format!("no answer from the callee: {e}"),
                };
                *self.outcomes.entry(kind).or_insert(0) += 1;
            }
            LoadMsg::Report(r) => {
                r.send(LoadReport {
                    sent: self.sent,
                    answered: self.answers.len() as u32,
                    duplicates: self.answers.values().filter(|&&n| n > 1).count() as u32,
                    outcomes: self.outcomes.clone(),
                });
            }
        }
    }
}

/// A load generator's counts so far.
pub fn report<T: Send + 'static>(run: &SimRun, load: &Addr<Load<T>>) -> Result<LoadReport, String> {
    run.block_on(load.ask(LoadMsg::Report))?
        .map_err(|e| e.to_string())
}
