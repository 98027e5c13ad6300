//! `send_now`: a message the worker's driver hands out (an I/O completion) is handled on the
//! spot by an idle actor, and waits its turn, in order, behind anything already queued.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::Thread;
use std::time::Duration;

use sinew_actors::{Actor, Context, Driver, ExitReason, Recipient, Unpark};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    /// Sent with `try_send` (queued).
    Queued(u32),
    /// Sent with `send_now`.
    Now(u32),
    /// Sent with `send_now`; the handler panics.
    Boom,
}

/// Counts what it handled and reports each message in the order it saw them.
struct Recorder {
    handled: Arc<AtomicUsize>,
    seen: mpsc::Sender<Msg>,
    stopped: mpsc::Sender<ExitReason>,
}

impl Actor for Recorder {
    type Msg = Msg;
    fn handle(&mut self, msg: Msg, _ctx: &mut Context<Self>) {
        if msg == Msg::Boom {
            panic!("boom");
        }
        self.handled.fetch_add(1, Ordering::SeqCst);
        let _ = self.seen.send(msg);
    }
    fn stopped(&mut self, reason: &ExitReason) {
        let _ = self.stopped.send(reason.clone());
    }
}

/// What the driver does on its next poll, and what it saw: for each `send_now`, how many
/// messages the actor had handled by the time the call returned, minus before.
#[derive(Default)]
struct Plan {
    to: Option<Recipient<Msg>>,
    /// Batches of (queued first?, message) pairs.
    pending: VecDeque<Vec<Msg>>,
}

struct FeedDriver {
    plan: Arc<Mutex<Plan>>,
    handled: Arc<AtomicUsize>,
    deltas: mpsc::Sender<(Msg, usize)>,
    unparker: Arc<ThreadUnpark>,
}

struct ThreadUnpark(Thread);

impl Unpark for ThreadUnpark {
    fn unpark(&self) {
        self.0.unpark();
    }
}

impl FeedDriver {
    fn feed(&mut self) -> bool {
        let (to, batch) = {
            let mut plan = self.plan.lock().expect("plan lock");
            match (plan.to.clone(), plan.pending.pop_front()) {
                (Some(to), Some(batch)) => (to, batch),
                _ => return false,
            }
        };
        for msg in batch {
            match msg {
                Msg::Queued(_) => {
                    to.try_send(msg).expect("queued send");
                }
                Msg::Now(_) | Msg::Boom => {
                    let before = self.handled.load(Ordering::SeqCst);
                    to.send_now(msg).expect("send_now to a live actor");
                    let after = self.handled.load(Ordering::SeqCst);
                    let _ = self.deltas.send((msg, after - before));
                }
            }
        }
        true
    }
}

impl Driver for FeedDriver {
    fn park(&mut self, timeout: Option<Duration>) {
        if self.feed() {
            return;
        }
        std::thread::park_timeout(timeout.unwrap_or(Duration::from_millis(5)));
        self.feed();
    }

    fn poll(&mut self) -> bool {
        self.feed()
    }

    fn unparker(&self) -> Arc<dyn Unpark> {
        self.unparker.clone()
    }
}

struct Rig {
    system: sinew_actors::System,
    plan: Arc<Mutex<Plan>>,
    seen: mpsc::Receiver<Msg>,
    deltas: mpsc::Receiver<(Msg, usize)>,
    stopped: mpsc::Receiver<ExitReason>,
}

fn rig() -> Rig {
    let plan = Arc::new(Mutex::new(Plan::default()));
    let handled = Arc::new(AtomicUsize::new(0));
    let (delta_tx, deltas) = mpsc::channel();
    let delta_tx = Mutex::new(delta_tx);
    let (p, h) = (plan.clone(), handled.clone());
    let system = common::builder(1)
        .driver(move |_| {
            Box::new(FeedDriver {
                plan: p.clone(),
                handled: h.clone(),
                deltas: delta_tx.lock().expect("lock").clone(),
                unparker: Arc::new(ThreadUnpark(std::thread::current())),
            })
        })
        .build()
        .expect("system");
    let (seen_tx, seen) = mpsc::channel();
    let (stop_tx, stopped) = mpsc::channel();
    let addr = system
        .spawn(Recorder {
            handled,
            seen: seen_tx,
            stopped: stop_tx,
        })
        .expect("spawn");
    // Let the actor take its first turn (started), so it is idle when the driver feeds it.
    addr.try_send(Msg::Queued(u32::MAX)).expect("warm-up");
    assert_eq!(common::recv(&seen), Msg::Queued(u32::MAX));
    plan.lock().expect("plan lock").to = Some(addr.recipient());
    Rig {
        system,
        plan,
        seen,
        deltas,
        stopped,
    }
}

impl Rig {
    fn feed(&self, batch: Vec<Msg>) {
        self.plan
            .lock()
            .expect("plan lock")
            .pending
            .push_back(batch);
    }
}

#[test]
fn a_message_from_the_driver_is_handled_on_the_spot_by_an_idle_actor() {
    let rig = rig();
    for i in 0..50 {
        rig.feed(vec![Msg::Now(i)]);
        // Handled before `send_now` returned: no mailbox, no later turn.
        assert_eq!(common::recv(&rig.deltas), (Msg::Now(i), 1));
        assert_eq!(common::recv(&rig.seen), Msg::Now(i));
    }
    rig.system.shutdown(Duration::from_secs(5));
}

#[test]
fn a_message_from_the_driver_waits_behind_queued_ones_in_order() {
    let rig = rig();
    for i in 0..50 {
        rig.feed(vec![Msg::Queued(i), Msg::Now(i), Msg::Now(i + 1000)]);
        // The actor had a message queued (and so a turn scheduled): nothing ran on the spot.
        assert_eq!(common::recv(&rig.deltas), (Msg::Now(i), 0));
        assert_eq!(common::recv(&rig.deltas), (Msg::Now(i + 1000), 0));
        assert_eq!(common::recv(&rig.seen), Msg::Queued(i));
        assert_eq!(common::recv(&rig.seen), Msg::Now(i));
        assert_eq!(common::recv(&rig.seen), Msg::Now(i + 1000));
    }
    rig.system.shutdown(Duration::from_secs(5));
}

#[test]
fn a_panic_in_a_turn_on_the_spot_stops_the_actor_like_any_other() {
    let rig = rig();
    rig.feed(vec![Msg::Now(1), Msg::Boom]);
    assert_eq!(common::recv(&rig.deltas), (Msg::Now(1), 1));
    assert_eq!(common::recv(&rig.deltas), (Msg::Boom, 0));
    match common::recv(&rig.stopped) {
        ExitReason::Panicked(why) => assert!(why.contains("boom"), "{why}"),
        other => panic!("stopped with {other:?}"),
    }
    // The driver's next `send_now` finds the actor gone and says so.
    let to = rig.plan.lock().expect("plan lock").to.clone();
    let to = to.expect("recipient");
    assert!(to.send_now(Msg::Now(2)).is_err());
    rig.system.shutdown(Duration::from_secs(5));
}

#[test]
fn send_now_off_the_driver_is_an_ordinary_reply() {
    let rig = rig();
    let to = rig.plan.lock().expect("plan lock").to.clone();
    let to = to.expect("recipient");
    // From a foreign thread: queued through the worker's inbound, in order.
    for i in 0..20 {
        to.send_now(Msg::Now(i)).expect("send_now");
    }
    for i in 0..20 {
        assert_eq!(common::recv(&rig.seen), Msg::Now(i));
    }
    rig.system.shutdown(Duration::from_secs(5));
}
