//! Reference: plain tokio tasks and unbounded `tokio::sync::mpsc` channels, on
//! current-thread runtimes. An "actor" is a task owning a receiver and a `u64` state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::{
    bytes_per, current_thread_runtime, ns_per, on_pinned_thread, per_sec, spawn_pinned, Params,
    FANIN_BATCH,
};
use crate::alloc::live_bytes;

/// Actor B of ping-pong: echoes every message back to A.
async fn echo(mut rx: mpsc::UnboundedReceiver<u64>, to_a: mpsc::UnboundedSender<u64>) {
    let mut state: u64 = 0;
    while let Some(m) = rx.recv().await {
        state = state.wrapping_add(m);
        if to_a.send(m).is_err() {
            break;
        }
    }
    std::hint::black_box(state);
}

/// Actor A of ping-pong: `warmup` untimed then `iters` timed round trips.
async fn pinger(
    to_b: mpsc::UnboundedSender<u64>,
    mut rx: mpsc::UnboundedReceiver<u64>,
    warmup: u64,
    iters: u64,
) -> f64 {
    for i in 0..warmup {
        to_b.send(i).expect("B alive");
        rx.recv().await.expect("pong");
    }
    let start = Instant::now();
    for i in 0..iters {
        to_b.send(i).expect("B alive");
        rx.recv().await.expect("pong");
    }
    ns_per(start.elapsed(), iters)
}

/// Same-core ping-pong: both tasks on one current-thread runtime pinned to core 0.
pub fn pingpong_same(p: &Params) -> Option<f64> {
    let (warmup, iters) = (p.warmup_iters, p.pingpong_iters);
    Some(on_pinned_thread(0, move || {
        current_thread_runtime().block_on(async move {
            let (to_b, b_rx) = mpsc::unbounded_channel();
            let (to_a, a_rx) = mpsc::unbounded_channel();
            let b = tokio::spawn(echo(b_rx, to_a));
            let ns = tokio::spawn(pinger(to_b, a_rx, warmup, iters))
                .await
                .expect("A");
            b.await.expect("B");
            ns
        })
    }))
}

/// Cross-core ping-pong: A's runtime on core 0, B's runtime on core 1.
pub fn pingpong_cross(p: &Params) -> Option<f64> {
    let (warmup, iters) = (p.warmup_iters, p.cross_iters);
    let (to_b, b_rx) = mpsc::unbounded_channel();
    let (to_a, a_rx) = mpsc::unbounded_channel();
    let tb = spawn_pinned(1, "B", move || {
        current_thread_runtime().block_on(async move {
            tokio::spawn(echo(b_rx, to_a)).await.expect("B");
        })
    });
    let ta = spawn_pinned(0, "A", move || {
        current_thread_runtime().block_on(async move {
            tokio::spawn(pinger(to_b, a_rx, warmup, iters))
                .await
                .expect("A")
        })
    });
    let ns = ta.join().expect("A thread");
    tb.join().expect("B thread");
    Some(ns)
}

/// Fan-in: `senders` tasks push to one receiver task on one pinned thread. The channel
/// is unbounded, so senders yield every [`FANIN_BATCH`] messages.
pub fn fan_in(p: &Params) -> Option<f64> {
    let (senders, per) = (p.senders, p.fanin_per_sender);
    Some(on_pinned_thread(0, move || {
        current_thread_runtime().block_on(async move {
            let total = senders * per;
            let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
            let (done_tx, done_rx) = oneshot::channel::<u64>();
            tokio::spawn(async move {
                let (mut count, mut state) = (0u64, 0u64);
                while let Some(m) = rx.recv().await {
                    state = state.wrapping_add(m);
                    count += 1;
                    if count == total {
                        let _ = done_tx.send(state);
                        break;
                    }
                }
            });
            let start = Instant::now();
            for _ in 0..senders {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..per {
                        tx.send(i).expect("receiver alive");
                        if (i + 1) % FANIN_BATCH == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                });
            }
            drop(tx);
            std::hint::black_box(done_rx.await.expect("done"));
            per_sec(start.elapsed(), total)
        })
    }))
}

/// Counts idle actors whose task has started.
static STARTED: AtomicU64 = AtomicU64::new(0);

/// An idle actor: waits for messages, folding them into a `u64`.
async fn idle(mut rx: mpsc::UnboundedReceiver<u64>) {
    STARTED.fetch_add(1, Ordering::Relaxed);
    let mut state: u64 = 0;
    while let Some(m) = rx.recv().await {
        state = state.wrapping_add(m);
    }
    std::hint::black_box(state);
}

/// Spawns `k` idle actors and waits until all have started; returns the handles.
async fn spawn_idle(k: u64, handles: &mut Vec<mpsc::UnboundedSender<u64>>) {
    STARTED.store(0, Ordering::Relaxed);
    for _ in 0..k {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(idle(rx));
        handles.push(tx);
    }
    while STARTED.load(Ordering::Relaxed) < k {
        tokio::task::yield_now().await;
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
            drop(handles);
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
            drop(handles);
            bytes_per(before, after, k)
        })
    }))
}
