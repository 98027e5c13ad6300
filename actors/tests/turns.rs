//! Turns: how long one busy actor holds its worker before the others on it run. A turn ends
//! after `batch` messages, or, for slow messages, once it has run past its time slice.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use sinew_actors::{Actor, Addr, Context, SpawnOptions, DEFAULT_BATCH};

/// Counts its messages; each takes `cost` of busy CPU.
struct Busy {
    handled: Arc<AtomicUsize>,
    cost: Duration,
}

impl Actor for Busy {
    type Msg = ();
    fn handle(&mut self, _: (), _ctx: &mut Context<Self>) {
        let t = Instant::now();
        while t.elapsed() < self.cost {
            std::hint::spin_loop();
        }
        self.handled.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reports how many messages `Busy` had handled when this one ran.
struct Probe {
    handled: Arc<AtomicUsize>,
    seen: mpsc::Sender<usize>,
}

impl Actor for Probe {
    type Msg = ();
    fn handle(&mut self, _: (), _ctx: &mut Context<Self>) {
        let _ = self.seen.send(self.handled.load(Ordering::Relaxed));
    }
}

/// On its worker, queues `n` messages for the busy actor and then one for the probe, so both
/// wait in the run queue in that order.
struct Kick {
    busy: Addr<Busy>,
    probe: Addr<Probe>,
    n: usize,
}

impl Actor for Kick {
    type Msg = ();
    fn handle(&mut self, _: (), _ctx: &mut Context<Self>) {
        for _ in 0..self.n {
            self.busy.try_send(()).expect("room for the backlog");
        }
        self.probe.try_send(()).expect("room for the probe");
    }
}

/// How many of `n` messages costing `cost` each the busy actor (spawned with `opts`) had
/// handled when an actor queued behind it got its turn (one worker, so they share it).
fn handled_before_the_next_actor_ran(n: usize, cost: Duration, opts: SpawnOptions) -> usize {
    let sys = common::system(1);
    let handled = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let busy = sys
        .spawn_with(
            Busy {
                handled: handled.clone(),
                cost,
            },
            opts,
        )
        .unwrap();
    let probe = sys
        .spawn(Probe {
            handled: handled.clone(),
            seen: tx,
        })
        .unwrap();
    let kick = sys.spawn(Kick { busy, probe, n }).unwrap();
    kick.try_send(()).unwrap();
    let seen = common::recv(&rx);
    sys.shutdown(Duration::from_secs(5));
    seen
}

#[test]
fn a_turn_of_cheap_messages_ends_at_the_batch() {
    let n = DEFAULT_BATCH + DEFAULT_BATCH / 2;
    let seen = handled_before_the_next_actor_ran(n, Duration::ZERO, SpawnOptions::default());
    assert!(seen >= 1, "the busy actor ran first");
    assert!(
        seen <= DEFAULT_BATCH,
        "one turn handled {seen} messages, more than the batch of {DEFAULT_BATCH}"
    );
}

#[test]
fn an_actor_may_ask_for_its_own_batch() {
    let opts = SpawnOptions::default().batch(8);
    let seen = handled_before_the_next_actor_ran(100, Duration::ZERO, opts);
    assert!((1..=8).contains(&seen), "one turn handled {seen} messages");

    // Longer turns than the system's. (Cheap messages take far less than the time slice, so
    // the turn normally takes the whole backlog; only a preemption of the test's worker for
    // over a millisecond could end it sooner, so that is not what is asserted.)
    let n = DEFAULT_BATCH * 3;
    let opts = SpawnOptions::default().batch(n);
    let seen = handled_before_the_next_actor_ran(n, Duration::ZERO, opts);
    assert!(
        seen > DEFAULT_BATCH,
        "the turn ended at the system's batch ({seen} messages)"
    );
}

#[test]
fn a_turn_of_slow_messages_ends_on_its_time_slice() {
    // 200 messages of 0.5 ms: the whole backlog fits in the actor's batch, but not in one 1 ms slice
    // (the clock is read every 16 messages, so the turn here ends after 32 of them).
    let n = 200;
    let opts = SpawnOptions::default().batch(n);
    let seen = handled_before_the_next_actor_ran(n, Duration::from_micros(500), opts);
    assert!(seen >= 16, "the busy actor ran first ({seen})");
    assert!(
        seen < n,
        "the next actor waited for the whole backlog of {n} slow messages"
    );
}
