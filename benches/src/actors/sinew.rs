//! Sinew's side of the `actors` suite, with the same conventions as the peer modules.
//!
//! Workers are pinned by the system itself (`pin_to`): worker 0 on core 0 and, for the
//! cross-core case, worker 1 on core 1. Timing is taken inside the actors, so system start
//! and stop are not measured. Defaults are Sinew's defaults (batch 64, 50 us spin, bounded
//! mailboxes of 1024) except where a case says otherwise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sinew_actors::{Actor, Addr, Context, MailboxConfig, SpawnOptions, System};

use super::{bytes_per, core, ns_per, per_sec, Params, FANIN_BATCH};
use crate::alloc::live_bytes;

fn system(workers: usize) -> System {
    let cores: Vec<usize> = (0..workers).map(|i| core(i).map_or(i, |c| c.id)).collect();
    System::builder()
        .workers(workers)
        .pin_to(cores)
        .build()
        .expect("sinew system")
}

// ---- ping-pong ------------------------------------------------------------------------

enum PingMsg {
    Go {
        b: Addr<Ponger>,
        warmup: u64,
        iters: u64,
        done: mpsc::Sender<f64>,
    },
    Pong(u64),
}

struct Pinger {
    b: Option<Addr<Ponger>>,
    left: u64,
    warmup: u64,
    iters: u64,
    start: Option<Instant>,
    done: Option<mpsc::Sender<f64>>,
}

impl Actor for Pinger {
    type Msg = PingMsg;
    fn handle(&mut self, msg: PingMsg, ctx: &mut Context<Self>) {
        match msg {
            PingMsg::Go {
                b,
                warmup,
                iters,
                done,
            } => {
                let _ = b.try_send(PongMsg::Link(ctx.addr()));
                let _ = b.try_send(PongMsg::Ping(0));
                self.b = Some(b);
                self.left = warmup + iters;
                self.warmup = warmup;
                self.iters = iters;
                self.done = Some(done);
            }
            PingMsg::Pong(v) => {
                self.left -= 1;
                if self.left == self.iters {
                    self.start = Some(Instant::now());
                }
                if self.left == 0 {
                    let ns = ns_per(
                        self.start.map_or(Duration::ZERO, |s| s.elapsed()),
                        self.iters,
                    );
                    if let Some(d) = self.done.take() {
                        let _ = d.send(ns);
                    }
                    return;
                }
                if let Some(b) = &self.b {
                    let _ = b.try_send(PongMsg::Ping(v + 1));
                }
            }
        }
    }
}

enum PongMsg {
    Link(Addr<Pinger>),
    Ping(u64),
}

struct Ponger {
    a: Option<Addr<Pinger>>,
    state: u64,
}

impl Actor for Ponger {
    type Msg = PongMsg;
    fn handle(&mut self, msg: PongMsg, _ctx: &mut Context<Self>) {
        match msg {
            PongMsg::Link(a) => self.a = Some(a),
            PongMsg::Ping(v) => {
                self.state = self.state.wrapping_add(v);
                if let Some(a) = &self.a {
                    let _ = a.try_send(PingMsg::Pong(v));
                }
            }
        }
    }
}

fn pingpong(workers: usize, b_worker: usize, warmup: u64, iters: u64) -> f64 {
    let sys = system(workers);
    let a = sys
        .spawn_with(
            Pinger {
                b: None,
                left: 0,
                warmup: 0,
                iters: 0,
                start: None,
                done: None,
            },
            SpawnOptions::on_worker(0),
        )
        .expect("spawn A");
    let b = sys
        .spawn_with(
            Ponger { a: None, state: 0 },
            SpawnOptions::on_worker(b_worker),
        )
        .expect("spawn B");
    let (tx, rx) = mpsc::channel();
    let _ = a.try_send(PingMsg::Go {
        b,
        warmup,
        iters,
        done: tx,
    });
    let ns = rx.recv().expect("ping-pong result");
    sys.shutdown(Duration::from_secs(5));
    ns
}

/// Same-core ping-pong, ns per round trip: both actors on one worker pinned to core 0.
pub fn pingpong_same(p: &Params) -> Option<f64> {
    Some(pingpong(1, 0, p.warmup_iters, p.pingpong_iters))
}

/// Cross-core ping-pong, ns per round trip: A on worker 0 (core 0), B on worker 1 (core 1).
pub fn pingpong_cross(p: &Params) -> Option<f64> {
    Some(pingpong(2, 1, p.warmup_iters, p.cross_iters))
}

// ---- fan-in ---------------------------------------------------------------------------

struct Counter {
    count: u64,
    sum: u64,
    total: u64,
    start: Instant,
    done: Option<mpsc::Sender<f64>>,
}

impl Actor for Counter {
    type Msg = u64;
    fn handle(&mut self, v: u64, _ctx: &mut Context<Self>) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(v);
        if self.count == self.total {
            std::hint::black_box(self.sum);
            if let Some(d) = self.done.take() {
                let _ = d.send(per_sec(self.start.elapsed(), self.total));
            }
        }
    }
}

/// Sends `per` messages in batches of `FANIN_BATCH`, yielding to the scheduler between batches
/// by messaging itself; when the receiver is full it resumes on the room notification.
struct Sender {
    to: Addr<Counter>,
    next: u64,
    per: u64,
}

impl Actor for Sender {
    type Msg = ();
    fn handle(&mut self, _: (), ctx: &mut Context<Self>) {
        let end = (self.next + FANIN_BATCH).min(self.per);
        while self.next < end {
            match self.to.try_send(self.next) {
                Ok(()) => self.next += 1,
                Err(_) => {
                    let me = ctx.addr();
                    self.to.notify_when_room(move || {
                        let _ = me.try_send(());
                    });
                    return;
                }
            }
        }
        if self.next < self.per {
            let _ = ctx.addr().try_send(());
        }
    }
}

/// Fan-in, messages per second: `senders` actors and one receiver on one worker (core 0).
pub fn fan_in(p: &Params) -> Option<f64> {
    let sys = system(1);
    let (tx, rx) = mpsc::channel();
    let total = p.senders * p.fanin_per_sender;
    let counter = sys
        .spawn_with(
            Counter {
                count: 0,
                sum: 0,
                total,
                start: Instant::now(),
                done: Some(tx),
            },
            SpawnOptions::on_worker(0).mailbox(MailboxConfig::bounded(4096)),
        )
        .expect("spawn receiver");
    let senders: Vec<_> = (0..p.senders)
        .map(|_| {
            sys.spawn_with(
                Sender {
                    to: counter.clone(),
                    next: 0,
                    per: p.fanin_per_sender,
                },
                SpawnOptions::on_worker(0),
            )
            .expect("spawn sender")
        })
        .collect();
    // The receiver's clock starts at spawn; senders start as soon as they are kicked.
    for s in &senders {
        let _ = s.try_send(());
    }
    let rate = rx.recv().expect("fan-in result");
    sys.shutdown(Duration::from_secs(5));
    Some(rate)
}

// ---- spawn and idle memory ------------------------------------------------------------

static STARTED: AtomicU64 = AtomicU64::new(0);

struct Idle {
    _v: u64,
}

impl Actor for Idle {
    type Msg = ();
    fn started(&mut self, _ctx: &mut Context<Self>) {
        STARTED.fetch_add(1, Ordering::Relaxed);
    }
    fn handle(&mut self, _: (), _ctx: &mut Context<Self>) {}
}

enum SpawnerMsg {
    Go(u64, mpsc::Sender<(f64, f64)>),
    Check,
}

/// Spawns `k` idle children on its own worker, then waits (by messaging itself, so the
/// children get to run) until every child's `started` hook ran.
struct Spawner {
    k: u64,
    handles: Vec<Addr<Idle>>,
    start: Option<Instant>,
    before: usize,
    done: Option<mpsc::Sender<(f64, f64)>>,
}

impl Actor for Spawner {
    type Msg = SpawnerMsg;
    fn handle(&mut self, msg: SpawnerMsg, ctx: &mut Context<Self>) {
        match msg {
            SpawnerMsg::Go(k, done) => {
                self.k = k;
                self.done = Some(done);
                self.handles.reserve(k as usize);
                STARTED.store(0, Ordering::Relaxed);
                self.before = live_bytes();
                self.start = Some(Instant::now());
                for _ in 0..k {
                    self.handles
                        .push(ctx.spawn(Idle { _v: 0 }).expect("spawn idle"));
                }
                let _ = ctx.addr().try_send(SpawnerMsg::Check);
            }
            SpawnerMsg::Check => {
                if STARTED.load(Ordering::Relaxed) < self.k {
                    let _ = ctx.addr().try_send(SpawnerMsg::Check);
                    return;
                }
                let ns = ns_per(self.start.map_or(Duration::ZERO, |s| s.elapsed()), self.k);
                let bytes = bytes_per(self.before, live_bytes(), self.k);
                if let Some(d) = self.done.take() {
                    let _ = d.send((ns, bytes));
                }
            }
        }
    }
}

fn spawn_run(k: u64) -> (f64, f64) {
    let sys = system(1);
    let s = sys
        .spawn_with(
            Spawner {
                k: 0,
                handles: Vec::new(),
                start: None,
                before: 0,
                done: None,
            },
            SpawnOptions::on_worker(0),
        )
        .expect("spawn spawner");
    let (tx, rx) = mpsc::channel();
    let _ = s.try_send(SpawnerMsg::Go(k, tx));
    let r = rx.recv().expect("spawn result");
    sys.shutdown(Duration::from_secs(30));
    r
}

/// Spawn, ns per spawned and started idle actor (children of one spawner on core 0).
pub fn spawn(p: &Params) -> Option<f64> {
    Some(spawn_run(p.spawn_count).0)
}

/// Idle actor memory, live bytes per actor once every actor has started.
pub fn idle_memory(p: &Params) -> Option<f64> {
    Some(spawn_run(p.idle_count).1)
}
