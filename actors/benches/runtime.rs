//! Criterion micro-benchmarks of the runtime's hot paths. The side-by-side comparison with
//! other frameworks is `sinew-bench actors`; these track Sinew against itself over time.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sinew_actors::{
    Actor, Addr, Context, DeterministicSystem, MailboxConfig, SpawnOptions, System,
};

struct Sink(u64);

impl Actor for Sink {
    type Msg = u64;
    fn handle(&mut self, m: u64, _ctx: &mut Context<Self>) {
        self.0 = self.0.wrapping_add(m);
    }
}

/// Local send + handle: 1,000 messages enqueued on the actor's own worker, then handled.
fn local_send_and_handle(c: &mut Criterion) {
    let sim = DeterministicSystem::with_batch(1, 64);
    let opts = SpawnOptions::default().mailbox(MailboxConfig::bounded(2048));
    let sink = sim.spawn_with(Sink(0), opts).expect("spawn");
    sim.run_until_idle();
    let mut g = c.benchmark_group("mailbox");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("local_send_1000_then_handle", |b| {
        b.iter(|| {
            sim.enter(|| {
                for i in 0..1000 {
                    let _ = sink.try_send(i);
                }
            });
            sim.run_until_idle();
        })
    });
    g.finish();
}

struct Echo;

impl Actor for Echo {
    type Msg = (u64, sinew_actors::ReplyTo<u64>);
    fn handle(&mut self, (v, r): Self::Msg, _ctx: &mut Context<Self>) {
        r.send(v);
    }
}

/// A blocking `ask` from a foreign thread to an actor on a worker: the path of code outside
/// actors (main, tests, async tasks).
fn ask_round_trip(c: &mut Criterion) {
    let sys = System::builder().workers(1).build().expect("system");
    let echo: Addr<Echo> = sys.spawn(Echo).expect("spawn");
    c.bench_function("ask_round_trip_from_foreign_thread", |b| {
        b.iter(|| futures::executor::block_on(echo.ask(|r| (7, r))).expect("answer"))
    });
    sys.shutdown(Duration::from_secs(1));
}

struct Idle;

impl Actor for Idle {
    type Msg = ();
    fn handle(&mut self, _: (), _ctx: &mut Context<Self>) {}
}

/// Spawn and start 1,000 actors in deterministic mode.
fn spawn_1000(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("spawn_and_start_1000", |b| {
        b.iter_batched(
            || DeterministicSystem::new(1),
            |sim| {
                for _ in 0..1000 {
                    let _ = sim.spawn(Idle);
                }
                sim.run_until_idle();
                sim
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, local_send_and_handle, ask_round_trip, spawn_1000);
criterion_main!(benches);
