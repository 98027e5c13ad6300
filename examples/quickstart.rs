//! Quickstart: a small supervised actor application, entirely in-process, on embedded defaults.
//!
//! - `Store` is the root actor: it owns one `Shard` child per worker (a key-value partition) and
//!   routes each request to the shard owning its key. When a shard crashes it is told on the
//!   priority path (`terminated`) and starts a fresh one in the same place: the address clients
//!   use (the store's) stays valid across restarts.
//! - `Client` keeps a window of requests in flight, each with a deadline carried by its
//!   `ReplyTo`, records latencies, and now and then sends a poisoned request that panics a shard.
//!   The requests that were inside the crashed shard fail fast with `ReplyError::Dropped`; none
//!   hangs.
//!
//! Run: `cargo run --release --example quickstart [-- REQUESTS]`

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sinew::prelude::*;

/// One key-value partition.
struct Shard {
    data: HashMap<u64, u64>,
}

enum ShardMsg {
    Put(u64, u64, ReplyTo<Option<u64>>),
    Get(u64, ReplyTo<Option<u64>>),
    /// A request the shard cannot handle: it panics, as a buggy handler would.
    Poison(ReplyTo<Option<u64>>),
}

impl Actor for Shard {
    type Msg = ShardMsg;

    fn handle(&mut self, msg: ShardMsg, _ctx: &mut Context<Self>) {
        match msg {
            ShardMsg::Put(k, v, reply) => {
                reply.send(self.data.insert(k, v));
            }
            ShardMsg::Get(k, reply) => {
                reply.send(self.data.get(&k).copied());
            }
            ShardMsg::Poison(_reply) => panic!("poisoned request"),
        }
    }
}

/// Requests as clients send them to the store.
enum Request {
    Put(u64, u64),
    Get(u64),
    Poison(u64),
}

enum StoreMsg {
    Call(Request, ReplyTo<Option<u64>>),
    Stats(ReplyTo<usize>),
}

/// The root: owns the shards and restarts any that crash.
struct Store {
    shards: Vec<Addr<Shard>>,
    restarts: usize,
}

impl Store {
    fn spawn_shard(ctx: &mut Context<Self>, worker: usize) -> Addr<Shard> {
        let opts = SpawnOptions::default().placement(Placement::Worker(worker));
        ctx.spawn_with(
            Shard {
                data: HashMap::new(),
            },
            opts,
        )
        .expect("system is running")
    }
}

impl Actor for Store {
    type Msg = StoreMsg;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let workers = ctx.system().workers();
        self.shards = (0..workers.max(2))
            .map(|i| Self::spawn_shard(ctx, i % workers))
            .collect();
        tracing::info!(shards = self.shards.len(), "store started");
    }

    fn handle(&mut self, msg: StoreMsg, _ctx: &mut Context<Self>) {
        match msg {
            StoreMsg::Call(req, reply) => {
                let key = match &req {
                    Request::Put(k, _) | Request::Get(k) | Request::Poison(k) => *k,
                };
                let shard = &self.shards[(key % self.shards.len() as u64) as usize];
                let msg = match req {
                    Request::Put(k, v) => ShardMsg::Put(k, v, reply),
                    Request::Get(k) => ShardMsg::Get(k, reply),
                    Request::Poison(_) => ShardMsg::Poison(reply),
                };
                // A full shard answers the request at once (the ReplyTo drops with an error)
                // rather than letting the queue grow without bound.
                if let Err(e) = shard.try_send(msg) {
                    tracing::debug!(error = %e, "shard busy; request rejected");
                }
            }
            StoreMsg::Stats(reply) => {
                reply.send(self.restarts);
            }
        }
    }

    fn terminated(&mut self, ev: Terminated, ctx: &mut Context<Self>) {
        if let Some(i) = self.shards.iter().position(|s| s.id() == ev.id) {
            let worker = i % ctx.system().workers();
            tracing::warn!(shard = i, reason = %ev.reason, "shard crashed; restarting");
            self.shards[i] = Self::spawn_shard(ctx, worker);
            self.restarts += 1;
        }
    }
}

/// Drives load: a window of requests in flight, each with a deadline.
struct Client {
    store: Addr<Store>,
    total: u64,
    sent: u64,
    done: u64,
    window: u64,
    latencies_ns: Vec<u64>,
    failed_fast: u64,
    timed_out: u64,
    start: Instant,
    report: Option<ReplyTo<Report>>,
}

enum ClientMsg {
    Start(ReplyTo<Report>),
    Answer(Instant, Result<Option<u64>, ReplyError>),
}

/// What the client saw.
struct Report {
    requests: u64,
    elapsed: Duration,
    latencies_ns: Vec<u64>,
    failed_fast: u64,
    timed_out: u64,
}

impl Client {
    fn send_one(&mut self, ctx: &mut Context<Self>) {
        let n = self.sent;
        self.sent += 1;
        let key = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 10_000;
        let req = if n % 20_000 == 19_999 {
            Request::Poison(key)
        } else if n % 4 == 0 {
            Request::Put(key, n)
        } else {
            Request::Get(key)
        };
        let at = Instant::now();
        let reply = ctx.reply_to_within(Duration::from_secs(2), move |r| ClientMsg::Answer(at, r));
        if let Err(e) = self.store.try_send(StoreMsg::Call(req, reply)) {
            // The store is full: the request (and its ReplyTo) is handed back and dropped,
            // which answers it with an error right away.
            drop(e.into_inner());
        }
    }
}

impl Actor for Client {
    type Msg = ClientMsg;

    fn handle(&mut self, msg: ClientMsg, ctx: &mut Context<Self>) {
        match msg {
            ClientMsg::Start(report) => {
                self.report = Some(report);
                self.start = Instant::now();
                while self.sent < self.total.min(self.window) {
                    self.send_one(ctx);
                }
            }
            ClientMsg::Answer(at, result) => {
                self.done += 1;
                match result {
                    Ok(_) => self.latencies_ns.push(at.elapsed().as_nanos() as u64),
                    Err(ReplyError::Timeout) => self.timed_out += 1,
                    Err(_) => self.failed_fast += 1,
                }
                if self.sent < self.total {
                    self.send_one(ctx);
                } else if self.done == self.total {
                    if let Some(r) = self.report.take() {
                        r.send(Report {
                            requests: self.total,
                            elapsed: self.start.elapsed(),
                            latencies_ns: std::mem::take(&mut self.latencies_ns),
                            failed_fast: self.failed_fast,
                            timed_out: self.timed_out,
                        });
                    }
                }
            }
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Duration::from_nanos(sorted[i])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "quickstart=info,sinew_actors=warn".into()),
        )
        .with_target(false)
        .init();
    // The crashes below are injected on purpose, and the runtime already reports each one
    // through tracing (with the panic message); keep the default hook's backtraces out of the
    // demo's output.
    std::panic::set_hook(Box::new(|info| tracing::debug!(%info, "panic")));
    let total: u64 = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 200_000,
    };

    let system = System::builder().build()?;
    let store = system.spawn(Store {
        shards: Vec::new(),
        restarts: 0,
    })?;
    let client = system.spawn(Client {
        store: store.clone(),
        total,
        sent: 0,
        done: 0,
        window: 256,
        latencies_ns: Vec::with_capacity(total as usize),
        failed_fast: 0,
        timed_out: 0,
        start: Instant::now(),
        report: None,
    })?;

    let mut report = futures::executor::block_on(client.ask(ClientMsg::Start))?;
    let restarts = futures::executor::block_on(store.ask(StoreMsg::Stats))?;
    report.latencies_ns.sort_unstable();
    let l = &report.latencies_ns;
    let secs = report.elapsed.as_secs_f64();
    tracing::info!(
        workers = system.workers(),
        requests = report.requests,
        "requests/s" = format!("{:.0}", report.requests as f64 / secs),
        p50 = ?percentile(l, 0.50),
        p99 = ?percentile(l, 0.99),
        p999 = ?percentile(l, 0.999),
        failed_fast = report.failed_fast,
        timed_out = report.timed_out,
        shard_restarts = restarts,
        "done"
    );
    println!(
        "{} requests in {:.3} s: {:.0} req/s; latency p50 {:?} p99 {:?} p99.9 {:?}; \
         {} failed fast after shard crashes, {} timed out, {} shard restarts",
        report.requests,
        secs,
        report.requests as f64 / secs,
        percentile(l, 0.50),
        percentile(l, 0.99),
        percentile(l, 0.999),
        report.failed_fast,
        report.timed_out,
        restarts
    );

    let shutdown = system.shutdown(Duration::from_secs(5));
    if !shutdown.clean {
        return Err(format!("shutdown was not clean: {shutdown:?}").into());
    }
    if report.timed_out > 0 {
        return Err("requests timed out: a reply was lost".into());
    }
    Ok(())
}
