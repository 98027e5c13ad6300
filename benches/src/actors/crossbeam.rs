//! The floor: a raw crossbeam-channel pair between two pinned OS threads. Only the
//! cross-core ping-pong applies; `recv` spins briefly before parking, which is intended.

use std::time::Instant;

use crossbeam_channel::bounded;

use super::{ns_per, spawn_pinned, Params};

/// Not applicable (two OS threads cannot share one core meaningfully here).
pub fn pingpong_same(_p: &Params) -> Option<f64> {
    None
}

/// Cross-core ping-pong: thread A on core 0, thread B on core 1, one channel each way.
pub fn pingpong_cross(p: &Params) -> Option<f64> {
    let (warmup, iters) = (p.warmup_iters, p.cross_iters);
    let (to_b, b_rx) = bounded::<u64>(1);
    let (to_a, a_rx) = bounded::<u64>(1);
    let tb = spawn_pinned(1, "B", move || {
        let mut state: u64 = 0;
        while let Ok(m) = b_rx.recv() {
            state = state.wrapping_add(m);
            if to_a.send(m).is_err() {
                break;
            }
        }
        std::hint::black_box(state);
    });
    let ta = spawn_pinned(0, "A", move || {
        for i in 0..warmup {
            to_b.send(i).expect("B alive");
            a_rx.recv().expect("pong");
        }
        let start = Instant::now();
        for i in 0..iters {
            to_b.send(i).expect("B alive");
            a_rx.recv().expect("pong");
        }
        ns_per(start.elapsed(), iters)
    });
    let ns = ta.join().expect("A thread");
    tb.join().expect("B thread");
    Some(ns)
}

/// Not applicable.
pub fn fan_in(_p: &Params) -> Option<f64> {
    None
}

/// Not applicable.
pub fn spawn(_p: &Params) -> Option<f64> {
    None
}

/// Not applicable.
pub fn idle_memory(_p: &Params) -> Option<f64> {
    None
}
