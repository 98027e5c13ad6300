//! kameo 0.22 with its default mailbox (bounded, capacity 64: senders await `tell`), on
//! current-thread tokio runtimes.

use std::time::Instant;

use kameo::actor::{ActorRef, Spawn};
use kameo::message::{Context, Message};
use kameo::Actor;
use tokio::sync::oneshot;

use super::{
    bytes_per, current_thread_runtime, ns_per, on_pinned_thread, per_sec, spawn_pinned, Params,
};
use crate::alloc::live_bytes;

// ----------------------------------------------------------------------------- ping-pong

/// Actor B: answers every ping with a pong to A.
#[derive(Actor)]
struct Ponger {
    a: ActorRef<Pinger>,
    state: u64,
}

/// B's message.
struct Ping(u64);

impl Message<Ping> for Ponger {
    type Reply = ();

    async fn handle(&mut self, Ping(m): Ping, _ctx: &mut Context<Self, ()>) {
        self.state = self.state.wrapping_add(m);
        self.a.tell(Pong(m)).await.expect("A alive");
    }
}

/// A's reply message.
struct Pong(u64);

/// Start message for A.
struct Go {
    b: ActorRef<Ponger>,
    warmup: u64,
    iters: u64,
    done: oneshot::Sender<f64>,
}

/// Actor A: drives the round trips and times them.
#[derive(Actor, Default)]
struct Pinger {
    b: Option<ActorRef<Ponger>>,
    count: u64,
    warmup: u64,
    iters: u64,
    start: Option<Instant>,
    done: Option<oneshot::Sender<f64>>,
}

impl Message<Go> for Pinger {
    type Reply = ();

    async fn handle(&mut self, go: Go, _ctx: &mut Context<Self, ()>) {
        self.warmup = go.warmup;
        self.iters = go.iters;
        self.done = Some(go.done);
        if go.warmup == 0 {
            self.start = Some(Instant::now());
        }
        go.b.tell(Ping(0)).await.expect("B alive");
        self.b = Some(go.b);
    }
}

impl Message<Pong> for Pinger {
    type Reply = ();

    async fn handle(&mut self, Pong(m): Pong, _ctx: &mut Context<Self, ()>) {
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
            b.tell(Ping(m.wrapping_add(1))).await.expect("B alive");
        }
    }
}

/// Runs the timed exchange once A and B exist; returns ns per round trip.
async fn drive(a: &ActorRef<Pinger>, b: ActorRef<Ponger>, warmup: u64, iters: u64) -> f64 {
    let (done, done_rx) = oneshot::channel();
    a.tell(Go {
        b,
        warmup,
        iters,
        done,
    })
    .await
    .map_err(|_| "send Go")
    .expect("A alive");
    done_rx.await.expect("result")
}

/// Same-core ping-pong on one current-thread runtime pinned to core 0.
pub fn pingpong_same(p: &Params) -> Option<f64> {
    let (warmup, iters) = (p.warmup_iters, p.pingpong_iters);
    Some(on_pinned_thread(0, move || {
        current_thread_runtime().block_on(async move {
            let a = Pinger::spawn(Pinger::default());
            let b = Ponger::spawn(Ponger {
                a: a.clone(),
                state: 0,
            });
            a.wait_for_startup().await;
            b.wait_for_startup().await;
            let ns = drive(&a, b.clone(), warmup, iters).await;
            a.kill();
            b.kill();
            a.wait_for_shutdown().await;
            b.wait_for_shutdown().await;
            ns
        })
    }))
}

/// Cross-core ping-pong: A in a runtime on core 0, B spawned in a runtime on core 1.
pub fn pingpong_cross(p: &Params) -> Option<f64> {
    let (warmup, iters) = (p.warmup_iters, p.cross_iters);
    let (a_tx, a_rx) = std::sync::mpsc::channel::<ActorRef<Pinger>>();
    let (b_tx, b_rx) = std::sync::mpsc::channel::<ActorRef<Ponger>>();
    let tb = spawn_pinned(1, "B", move || {
        current_thread_runtime().block_on(async move {
            let a = a_rx.recv().expect("A's ref");
            let b = Ponger::spawn(Ponger { a, state: 0 });
            b.wait_for_startup().await;
            b_tx.send(b.clone()).expect("send B's ref");
            b.wait_for_shutdown().await;
        })
    });
    let ta = spawn_pinned(0, "A", move || {
        current_thread_runtime().block_on(async move {
            let a = Pinger::spawn(Pinger::default());
            a.wait_for_startup().await;
            a_tx.send(a.clone()).expect("send A's ref");
            let b = b_rx.recv().expect("B's ref");
            let ns = drive(&a, b.clone(), warmup, iters).await;
            b.kill();
            a.kill();
            a.wait_for_shutdown().await;
            ns
        })
    });
    let ns = ta.join().expect("A thread");
    tb.join().expect("B thread");
    Some(ns)
}

// ----------------------------------------------------------------------------- fan-in

/// The fan-in receiver: counts messages and reports at `total`.
#[derive(Actor)]
struct Counter {
    count: u64,
    sum: u64,
    total: u64,
    done: Option<oneshot::Sender<u64>>,
}

/// A fan-in message.
struct Add(u64);

impl Message<Add> for Counter {
    type Reply = ();

    async fn handle(&mut self, Add(m): Add, _ctx: &mut Context<Self, ()>) {
        self.sum = self.sum.wrapping_add(m);
        self.count += 1;
        if self.count == self.total {
            if let Some(done) = self.done.take() {
                let _ = done.send(self.sum);
            }
        }
    }
}

/// Fan-in: sender tasks await `tell` into the receiver's default bounded mailbox.
pub fn fan_in(p: &Params) -> Option<f64> {
    let (senders, per) = (p.senders, p.fanin_per_sender);
    Some(on_pinned_thread(0, move || {
        current_thread_runtime().block_on(async move {
            let total = senders * per;
            let (done, done_rx) = oneshot::channel();
            let r = Counter::spawn(Counter {
                count: 0,
                sum: 0,
                total,
                done: Some(done),
            });
            r.wait_for_startup().await;
            let start = Instant::now();
            for _ in 0..senders {
                let r = r.clone();
                tokio::spawn(async move {
                    for i in 0..per {
                        r.tell(Add(i))
                            .await
                            .map_err(|_| "send")
                            .expect("receiver alive");
                    }
                });
            }
            std::hint::black_box(done_rx.await.expect("done"));
            let rate = per_sec(start.elapsed(), total);
            r.kill();
            r.wait_for_shutdown().await;
            rate
        })
    }))
}

// ----------------------------------------------------------------------------- spawn / memory

/// An idle actor holding one `u64`.
#[derive(Actor)]
struct Idle {
    v: u64,
}

impl Message<u64> for Idle {
    type Reply = ();

    async fn handle(&mut self, m: u64, _ctx: &mut Context<Self, ()>) {
        self.v = self.v.wrapping_add(m);
    }
}

/// Spawns `k` idle actors and waits until every one has started.
async fn spawn_idle(k: u64, handles: &mut Vec<ActorRef<Idle>>) {
    for _ in 0..k {
        handles.push(Idle::spawn(Idle { v: 0 }));
    }
    for r in handles.iter() {
        r.wait_for_startup().await;
    }
}

/// Kills every actor and waits for them (untimed).
async fn stop_all(handles: Vec<ActorRef<Idle>>) {
    for r in &handles {
        r.kill();
    }
    for r in &handles {
        r.wait_for_shutdown().await;
    }
}

/// Time per spawn (spawned and started).
pub fn spawn(p: &Params) -> Option<f64> {
    let k = p.spawn_count;
    Some(on_pinned_thread(0, move || {
        current_thread_runtime().block_on(async move {
            let mut handles = Vec::with_capacity(k as usize);
            let start = Instant::now();
            spawn_idle(k, &mut handles).await;
            let ns = ns_per(start.elapsed(), k);
            stop_all(handles).await;
            ns
        })
    }))
}

/// Live bytes per idle actor.
pub fn idle_memory(p: &Params) -> Option<f64> {
    let k = p.idle_count;
    Some(on_pinned_thread(0, move || {
        current_thread_runtime().block_on(async move {
            let mut handles = Vec::with_capacity(k as usize);
            let before = live_bytes();
            spawn_idle(k, &mut handles).await;
            let after = live_bytes();
            stop_all(handles).await;
            bytes_per(before, after, k)
        })
    }))
}
