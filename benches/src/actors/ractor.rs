//! ractor 0.16 with its default (unbounded) mailboxes, on current-thread tokio runtimes.

use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;

use super::{
    bytes_per, current_thread_runtime, ns_per, on_pinned_thread, per_sec, spawn_pinned, Params,
    FANIN_BATCH,
};
use crate::alloc::live_bytes;

// ----------------------------------------------------------------------------- ping-pong

/// Actor B: answers every ping with a pong to A.
struct Ponger;

impl Actor for Ponger {
    type Msg = u64;
    type State = (ActorRef<PingerMsg>, u64);
    type Arguments = ActorRef<PingerMsg>;

    async fn pre_start(
        &self,
        _myself: ActorRef<u64>,
        a: ActorRef<PingerMsg>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok((a, 0))
    }

    async fn handle(
        &self,
        _myself: ActorRef<u64>,
        m: u64,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.1 = state.1.wrapping_add(m);
        state.0.send_message(PingerMsg::Pong(m))?;
        Ok(())
    }
}

/// Messages of actor A.
enum PingerMsg {
    /// Start: B's address, warm-up and timed round trips, where to report ns/round trip.
    Go {
        b: ActorRef<u64>,
        warmup: u64,
        iters: u64,
        done: oneshot::Sender<f64>,
    },
    /// B's answer.
    Pong(u64),
}

/// State of actor A.
#[derive(Default)]
struct PingerState {
    b: Option<ActorRef<u64>>,
    count: u64,
    warmup: u64,
    iters: u64,
    start: Option<Instant>,
    done: Option<oneshot::Sender<f64>>,
}

/// Actor A: drives the round trips and times them.
struct Pinger;

impl Actor for Pinger {
    type Msg = PingerMsg;
    type State = PingerState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<PingerMsg>,
        _: (),
    ) -> Result<PingerState, ActorProcessingErr> {
        Ok(PingerState::default())
    }

    async fn handle(
        &self,
        _myself: ActorRef<PingerMsg>,
        msg: PingerMsg,
        st: &mut PingerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PingerMsg::Go {
                b,
                warmup,
                iters,
                done,
            } => {
                st.warmup = warmup;
                st.iters = iters;
                st.done = Some(done);
                if warmup == 0 {
                    st.start = Some(Instant::now());
                }
                b.send_message(0)?;
                st.b = Some(b);
            }
            PingerMsg::Pong(m) => {
                st.count += 1;
                if st.count == st.warmup {
                    st.start = Some(Instant::now());
                }
                if st.count == st.warmup + st.iters {
                    let ns = ns_per(st.start.expect("started").elapsed(), st.iters);
                    if let Some(done) = st.done.take() {
                        let _ = done.send(ns);
                    }
                } else if let Some(b) = &st.b {
                    b.send_message(m.wrapping_add(1))?;
                }
            }
        }
        Ok(())
    }
}

/// Same-core ping-pong on one current-thread runtime pinned to core 0.
pub fn pingpong_same(p: &Params) -> Option<f64> {
    let (warmup, iters) = (p.warmup_iters, p.pingpong_iters);
    Some(on_pinned_thread(0, move || {
        current_thread_runtime().block_on(async move {
            let (a, ha) = Actor::spawn(None, Pinger, ()).await.expect("spawn A");
            let (b, hb) = Actor::spawn(None, Ponger, a.clone())
                .await
                .expect("spawn B");
            let (done, done_rx) = oneshot::channel();
            a.send_message(PingerMsg::Go {
                b: b.clone(),
                warmup,
                iters,
                done,
            })
            .map_err(|_| "send Go")
            .expect("A alive");
            let ns = done_rx.await.expect("result");
            a.stop(None);
            b.stop(None);
            let _ = ha.await;
            let _ = hb.await;
            ns
        })
    }))
}

/// Cross-core ping-pong: A in a runtime on core 0, B spawned in a runtime on core 1.
pub fn pingpong_cross(p: &Params) -> Option<f64> {
    let (warmup, iters) = (p.warmup_iters, p.cross_iters);
    let (a_tx, a_rx) = std::sync::mpsc::channel::<ActorRef<PingerMsg>>();
    let (b_tx, b_rx) = std::sync::mpsc::channel::<ActorRef<u64>>();
    let tb = spawn_pinned(1, "B", move || {
        current_thread_runtime().block_on(async move {
            let a = a_rx.recv().expect("A's ref");
            let (b, hb) = Actor::spawn(None, Ponger, a).await.expect("spawn B");
            b_tx.send(b).expect("send B's ref");
            let _ = hb.await;
        })
    });
    let ta = spawn_pinned(0, "A", move || {
        current_thread_runtime().block_on(async move {
            let (a, ha) = Actor::spawn(None, Pinger, ()).await.expect("spawn A");
            a_tx.send(a.clone()).expect("send A's ref");
            let b = b_rx.recv().expect("B's ref");
            let (done, done_rx) = oneshot::channel();
            a.send_message(PingerMsg::Go {
                b: b.clone(),
                warmup,
                iters,
                done,
            })
            .map_err(|_| "send Go")
            .expect("A alive");
            let ns = done_rx.await.expect("result");
            b.stop(None);
            a.stop(None);
            let _ = ha.await;
            ns
        })
    });
    let ns = ta.join().expect("A thread");
    tb.join().expect("B thread");
    Some(ns)
}

// ----------------------------------------------------------------------------- fan-in

/// The fan-in receiver: counts messages and reports at `total`.
struct Counter;

/// State of [`Counter`].
struct CounterState {
    count: u64,
    sum: u64,
    total: u64,
    done: Option<oneshot::Sender<u64>>,
}

impl Actor for Counter {
    type Msg = u64;
    type State = CounterState;
    type Arguments = (u64, oneshot::Sender<u64>);

    async fn pre_start(
        &self,
        _myself: ActorRef<u64>,
        (total, done): (u64, oneshot::Sender<u64>),
    ) -> Result<CounterState, ActorProcessingErr> {
        Ok(CounterState {
            count: 0,
            sum: 0,
            total,
            done: Some(done),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<u64>,
        m: u64,
        st: &mut CounterState,
    ) -> Result<(), ActorProcessingErr> {
        st.sum = st.sum.wrapping_add(m);
        st.count += 1;
        if st.count == st.total {
            if let Some(done) = st.done.take() {
                let _ = done.send(st.sum);
            }
        }
        Ok(())
    }
}

/// Fan-in: sender tasks `send_message` (unbounded) to one actor, yielding every batch.
pub fn fan_in(p: &Params) -> Option<f64> {
    let (senders, per) = (p.senders, p.fanin_per_sender);
    Some(on_pinned_thread(0, move || {
        current_thread_runtime().block_on(async move {
            let total = senders * per;
            let (done, done_rx) = oneshot::channel();
            let (r, hr) = Actor::spawn(None, Counter, (total, done))
                .await
                .expect("spawn receiver");
            let start = Instant::now();
            for _ in 0..senders {
                let r = r.clone();
                tokio::spawn(async move {
                    for i in 0..per {
                        r.send_message(i)
                            .map_err(|_| "send")
                            .expect("receiver alive");
                        if (i + 1) % FANIN_BATCH == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                });
            }
            std::hint::black_box(done_rx.await.expect("done"));
            let rate = per_sec(start.elapsed(), total);
            r.stop(None);
            let _ = hr.await;
            rate
        })
    }))
}

// ----------------------------------------------------------------------------- spawn / memory

/// An idle actor whose state is one `u64`.
struct Idle;

impl Actor for Idle {
    type Msg = u64;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<u64>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _myself: ActorRef<u64>,
        m: u64,
        st: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        *st = st.wrapping_add(m);
        Ok(())
    }
}

type IdleHandle = (ActorRef<u64>, tokio::task::JoinHandle<()>);

/// Spawns `k` idle actors; `Actor::spawn` returns once `pre_start` has run.
async fn spawn_idle(k: u64, handles: &mut Vec<IdleHandle>) {
    for _ in 0..k {
        handles.push(Actor::spawn(None, Idle, ()).await.expect("spawn idle"));
    }
}

/// Stops every actor and waits for them (untimed).
async fn stop_all(handles: Vec<IdleHandle>) {
    for (r, _) in &handles {
        r.stop(None);
    }
    for (_, h) in handles {
        let _ = h.await;
    }
}

/// Time per spawn (awaited, so started).
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
