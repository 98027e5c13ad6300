//! actix 0.13: one `System` (and, cross core, one extra `Arbiter`) per measurement, on
//! threads pinned with core_affinity. Messages go with `do_send`, actix's fire-and-forget.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{bytes_per, ns_per, on_pinned_thread, per_sec, pin_current, Params, FANIN_BATCH};
use crate::alloc::live_bytes;

// ----------------------------------------------------------------------------- ping-pong

/// Actor B: answers every ping with a pong to A.
struct Ponger {
    a: Addr<Pinger>,
    state: u64,
}

impl Actor for Ponger {
    type Context = Context<Self>;
}

/// B's message.
#[derive(Message)]
#[rtype(result = "()")]
struct Ping(u64);

impl Handler<Ping> for Ponger {
    type Result = ();

    fn handle(&mut self, Ping(m): Ping, _ctx: &mut Context<Self>) {
        self.state = self.state.wrapping_add(m);
        self.a.do_send(Pong(m));
    }
}

/// A's reply message.
#[derive(Message)]
#[rtype(result = "()")]
struct Pong(u64);

/// Start message for A.
#[derive(Message)]
#[rtype(result = "()")]
struct Go {
    b: Addr<Ponger>,
    warmup: u64,
    iters: u64,
    done: oneshot::Sender<f64>,
}

/// Actor A: drives the round trips and times them.
#[derive(Default)]
struct Pinger {
    b: Option<Addr<Ponger>>,
    count: u64,
    warmup: u64,
    iters: u64,
    start: Option<Instant>,
    done: Option<oneshot::Sender<f64>>,
}

impl Actor for Pinger {
    type Context = Context<Self>;
}

impl Handler<Go> for Pinger {
    type Result = ();

    fn handle(&mut self, go: Go, _ctx: &mut Context<Self>) {
        self.warmup = go.warmup;
        self.iters = go.iters;
        self.done = Some(go.done);
        if go.warmup == 0 {
            self.start = Some(Instant::now());
        }
        go.b.do_send(Ping(0));
        self.b = Some(go.b);
    }
}

impl Handler<Pong> for Pinger {
    type Result = ();

    fn handle(&mut self, Pong(m): Pong, _ctx: &mut Context<Self>) {
        self.count += 1;
        if self.count == self.warmup {
            self.start = Some(Instant::now());
        }
        if self.count == self.warmup + self.iters {
            let ns = ns_per(self.start.expect("started").elapsed(), self.iters);
            if let Some(done) = self.done.take() {
                let _ = done.send(ns);
            }
        } else if let Some(b) = &self.b {
            b.do_send(Ping(m.wrapping_add(1)));
        }
    }
}

/// Same-core ping-pong: one `System` on a thread pinned to core 0.
pub fn pingpong_same(p: &Params) -> Option<f64> {
    let (warmup, iters) = (p.warmup_iters, p.pingpong_iters);
    Some(on_pinned_thread(0, move || {
        let sys = System::new();
        let ns = sys.block_on(async move {
            let a = Pinger::default().start();
            let b = Ponger {
                a: a.clone(),
                state: 0,
            }
            .start();
            let (done, done_rx) = oneshot::channel();
            a.do_send(Go {
                b,
                warmup,
                iters,
                done,
            });
            done_rx.await.expect("result")
        });
        System::current().stop();
        ns
    }))
}

/// Cross-core ping-pong: A in the `System` arbiter on core 0, B in a second `Arbiter`
/// whose thread pins itself to core 1.
pub fn pingpong_cross(p: &Params) -> Option<f64> {
    let (warmup, iters) = (p.warmup_iters, p.cross_iters);
    Some(on_pinned_thread(0, move || {
        let sys = System::new();
        let arbiter = Arbiter::new();
        let (pinned_tx, pinned_rx) = std::sync::mpsc::channel();
        arbiter.spawn_fn(move || {
            pin_current(1);
            let _ = pinned_tx.send(());
        });
        pinned_rx.recv().expect("arbiter pinned");
        let handle = arbiter.handle();
        let ns = sys.block_on(async move {
            let a = Pinger::default().start();
            let a2 = a.clone();
            let b = Ponger::start_in_arbiter(&handle, move |_| Ponger { a: a2, state: 0 });
            let (done, done_rx) = oneshot::channel();
            a.do_send(Go {
                b,
                warmup,
                iters,
                done,
            });
            done_rx.await.expect("result")
        });
        arbiter.stop();
        let _ = arbiter.join();
        System::current().stop();
        ns
    }))
}

// ----------------------------------------------------------------------------- fan-in

/// The fan-in receiver: counts messages and reports at `total`.
struct Counter {
    count: u64,
    sum: u64,
    total: u64,
    done: Option<oneshot::Sender<u64>>,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

/// A fan-in message.
#[derive(Message)]
#[rtype(result = "()")]
struct Add(u64);

impl Handler<Add> for Counter {
    type Result = ();

    fn handle(&mut self, Add(m): Add, _ctx: &mut Context<Self>) {
        self.sum = self.sum.wrapping_add(m);
        self.count += 1;
        if self.count == self.total {
            if let Some(done) = self.done.take() {
                let _ = done.send(self.sum);
            }
        }
    }
}

/// Fan-in: sender tasks `do_send` (which ignores mailbox capacity) to one actor,
/// yielding every batch, all in one `System` on core 0.
pub fn fan_in(p: &Params) -> Option<f64> {
    let (senders, per) = (p.senders, p.fanin_per_sender);
    Some(on_pinned_thread(0, move || {
        let sys = System::new();
        let rate = sys.block_on(async move {
            let total = senders * per;
            let (done, done_rx) = oneshot::channel();
            let r = Counter {
                count: 0,
                sum: 0,
                total,
                done: Some(done),
            }
            .start();
            let start = Instant::now();
            for _ in 0..senders {
                let r = r.clone();
                actix::spawn(async move {
                    for i in 0..per {
                        r.do_send(Add(i));
                        if (i + 1) % FANIN_BATCH == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                });
            }
            std::hint::black_box(done_rx.await.expect("done"));
            per_sec(start.elapsed(), total)
        });
        System::current().stop();
        rate
    }))
}

// ----------------------------------------------------------------------------- spawn / memory

/// Counts idle actors whose `started` hook has run.
static STARTED: AtomicU64 = AtomicU64::new(0);

/// An idle actor holding one `u64`.
struct Idle {
    v: u64,
}

impl Actor for Idle {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        STARTED.fetch_add(1, Ordering::Relaxed);
    }
}

impl Handler<Add> for Idle {
    type Result = ();

    fn handle(&mut self, Add(m): Add, _ctx: &mut Context<Self>) {
        self.v = self.v.wrapping_add(m);
    }
}

/// Starts `k` idle actors and yields until every `started` hook has run.
async fn spawn_idle(k: u64, handles: &mut Vec<Addr<Idle>>) {
    STARTED.store(0, Ordering::Relaxed);
    for _ in 0..k {
        handles.push(Idle { v: 0 }.start());
    }
    while STARTED.load(Ordering::Relaxed) < k {
        tokio::task::yield_now().await;
    }
}

/// Time per spawn (started).
pub fn spawn(p: &Params) -> Option<f64> {
    let k = p.spawn_count;
    Some(on_pinned_thread(0, move || {
        let sys = System::new();
        let ns = sys.block_on(async move {
            let mut handles = Vec::with_capacity(k as usize);
            let start = Instant::now();
            spawn_idle(k, &mut handles).await;
            let ns = ns_per(start.elapsed(), k);
            drop(handles);
            ns
        });
        System::current().stop();
        ns
    }))
}

/// Live bytes per idle actor.
pub fn idle_memory(p: &Params) -> Option<f64> {
    let k = p.idle_count;
    Some(on_pinned_thread(0, move || {
        let sys = System::new();
        let bytes = sys.block_on(async move {
            let mut handles = Vec::with_capacity(k as usize);
            let before = live_bytes();
            spawn_idle(k, &mut handles).await;
            let after = live_bytes();
            drop(handles);
            bytes_per(before, after, k)
        });
        System::current().stop();
        bytes
    }))
}
