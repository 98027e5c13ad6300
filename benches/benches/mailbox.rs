//! Criterion baseline: a message through a crossbeam channel on one thread (send then
//! recv), the cost floor any mailbox is compared against.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn crossbeam_send_recv(c: &mut Criterion) {
    let (tx, rx) = crossbeam_channel::unbounded::<u64>();
    c.bench_function("crossbeam unbounded send+recv (one thread)", |b| {
        let mut i = 0u64;
        b.iter(|| {
            tx.send(black_box(i)).expect("send");
            i = i.wrapping_add(1);
            black_box(rx.recv().expect("recv"))
        })
    });
    let (tx, rx) = crossbeam_channel::bounded::<u64>(64);
    c.bench_function("crossbeam bounded(64) send+recv (one thread)", |b| {
        let mut i = 0u64;
        b.iter(|| {
            tx.send(black_box(i)).expect("send");
            i = i.wrapping_add(1);
            black_box(rx.recv().expect("recv"))
        })
    });
}

criterion_group!(benches, crossbeam_send_recv);
criterion_main!(benches);
