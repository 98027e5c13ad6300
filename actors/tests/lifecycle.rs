//! Lifecycle: panic isolation, watches, children-first shutdown, draining, kill.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sinew_actors::{Actor, ActorRef, Context, ExitReason, SpawnOptions, Terminated};

type Log = Arc<Mutex<Vec<String>>>;

/// A node of a tree: spawns `depth` levels of `fanout` children and logs when it stops.
struct Node {
    name: String,
    depth: u32,
    fanout: u32,
    log: Log,
}

impl Actor for Node {
    type Msg = ();
    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.depth > 0 {
            for i in 0..self.fanout {
                let child = Node {
                    name: format!("{}.{i}", self.name),
                    depth: self.depth - 1,
                    fanout: self.fanout,
                    log: self.log.clone(),
                };
                // Spread children over workers to exercise cross-worker signals.
                ctx.spawn_with(
                    child,
                    SpawnOptions::default().placement(sinew_actors::Placement::RoundRobin),
                )
                .unwrap();
            }
        }
    }
    fn handle(&mut self, _: (), _ctx: &mut Context<Self>) {}
    fn stopped(&mut self, reason: &ExitReason) {
        self.log
            .lock()
            .unwrap()
            .push(format!("{} {reason}", self.name));
    }
}

#[test]
fn shutdown_stops_children_before_parents() {
    let sys = common::system(2);
    let log: Log = Default::default();
    sys.spawn(Node {
        name: "root".into(),
        depth: 3,
        fanout: 3,
        log: log.clone(),
    })
    .unwrap();
    // 1 + 3 + 9 + 27 actors.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sys.live_actors() < 40 {
        assert!(std::time::Instant::now() < deadline, "tree did not start");
        std::thread::yield_now();
    }
    let report = sys.shutdown(Duration::from_secs(5));
    assert!(report.clean, "{report:?}");
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 40);
    let pos = |n: &str| {
        log.iter()
            .position(|l| l.starts_with(&format!("{n} ")))
            .unwrap()
    };
    for entry in log.iter() {
        let name = entry.split(' ').next().unwrap();
        if let Some((parent, _)) = name.rsplit_once('.') {
            assert!(
                pos(name) < pos(parent),
                "{name} stopped after its parent {parent}: {log:?}"
            );
        }
        assert!(entry.ends_with("shutdown"), "{entry}");
    }
}

/// Panics on demand; reports its exit to a watcher.
struct Fragile;

impl Actor for Fragile {
    type Msg = bool;
    fn handle(&mut self, explode: bool, _ctx: &mut Context<Self>) {
        assert!(!explode, "boom");
    }
}

struct Watcher {
    target: ActorRef,
    out: mpsc::Sender<Terminated>,
}

impl Actor for Watcher {
    type Msg = ();
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.watch(&self.target);
    }
    fn handle(&mut self, _: (), _ctx: &mut Context<Self>) {}
    fn terminated(&mut self, ev: Terminated, _ctx: &mut Context<Self>) {
        self.out.send(ev).unwrap();
    }
}

#[test]
fn panic_stops_only_that_actor_and_watchers_are_told() {
    let sys = common::system(2);
    let (tx, rx) = mpsc::channel();
    let victim = sys.spawn(Fragile).unwrap();
    let bystander = sys.spawn(Fragile).unwrap();
    sys.spawn(Watcher {
        target: victim.actor_ref(),
        out: tx,
    })
    .unwrap();
    // Let the watch register before the crash (a late watch is answered at once anyway).
    victim.try_send(false).unwrap();
    victim.try_send(true).unwrap();
    let ev = common::recv(&rx);
    assert_eq!(ev.id, victim.id());
    assert!(!ev.child);
    assert!(
        matches!(&ev.reason, ExitReason::Panicked(m) if m.contains("boom")),
        "{:?}",
        ev.reason
    );
    assert!(!victim.is_alive());
    assert!(bystander.is_alive());
    assert!(bystander.try_send(false).is_ok());
    // The system lives on and still shuts down cleanly.
    assert!(sys.shutdown(Duration::from_secs(5)).clean);
}

#[test]
fn watching_a_dead_actor_answers_at_once() {
    let sys = common::system(1);
    let (tx, rx) = mpsc::channel();
    let victim = sys.spawn(Fragile).unwrap();
    victim.kill();
    while victim.is_alive() {
        std::thread::yield_now();
    }
    sys.spawn(Watcher {
        target: victim.actor_ref(),
        out: tx,
    })
    .unwrap();
    let ev = common::recv(&rx);
    assert_eq!(ev.reason, ExitReason::Killed);
}

/// Parent that records its children's exits.
struct Parent {
    out: mpsc::Sender<Terminated>,
}

impl Actor for Parent {
    type Msg = bool;
    fn started(&mut self, ctx: &mut Context<Self>) {
        let child = ctx.spawn(Fragile).unwrap();
        child.try_send(true).unwrap();
    }
    fn handle(&mut self, _: bool, _ctx: &mut Context<Self>) {}
    fn terminated(&mut self, ev: Terminated, ctx: &mut Context<Self>) {
        assert_eq!(ctx.child_count(), 0);
        assert_eq!(ctx.children().count(), 0);
        self.out.send(ev).unwrap();
    }
}

#[test]
fn parent_learns_of_child_crash_on_priority_path() {
    let sys = common::system(1);
    let (tx, rx) = mpsc::channel();
    sys.spawn(Parent { out: tx }).unwrap();
    let ev = common::recv(&rx);
    assert!(ev.child);
    assert!(matches!(ev.reason, ExitReason::Panicked(_)));
}

/// Counts messages; slow enough that a backlog forms.
struct Slow {
    handled: Arc<Mutex<u32>>,
}

impl Actor for Slow {
    type Msg = u32;
    fn handle(&mut self, _: u32, _ctx: &mut Context<Self>) {
        *self.handled.lock().unwrap() += 1;
    }
}

#[test]
fn graceful_shutdown_drains_queued_messages() {
    let sys = common::system(1);
    let handled = Arc::new(Mutex::new(0));
    let a = sys
        .spawn_with(
            Slow {
                handled: handled.clone(),
            },
            SpawnOptions::default().mailbox(sinew_actors::MailboxConfig::bounded(10_000)),
        )
        .unwrap();
    for i in 0..5_000 {
        a.try_send(i).unwrap();
    }
    assert!(sys.shutdown(Duration::from_secs(5)).clean);
    assert_eq!(*handled.lock().unwrap(), 5_000);
    assert_eq!(a.exit_reason(), Some(ExitReason::Shutdown));
    assert!(a.try_send(1).is_err(), "a stopped mailbox refuses messages");
}

/// Has a long backlog of slow messages, so draining outlasts a short shutdown timeout.
struct Busy;

impl Actor for Busy {
    type Msg = ();
    fn started(&mut self, ctx: &mut Context<Self>) {
        for _ in 0..1_000 {
            ctx.addr().try_send(()).unwrap();
        }
    }
    fn handle(&mut self, _: (), _ctx: &mut Context<Self>) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn shutdown_is_bounded_by_its_timeout() {
    let sys = common::system(1);
    sys.spawn(Busy).unwrap();
    let report = sys.shutdown(Duration::from_millis(100));
    assert!(!report.clean);
    assert_eq!(report.killed, 1);
    // Past the deadline the worker finishes the turn in progress (it ends on its time slice,
    // after a few dozen of these 1 ms messages) and kills the rest; it does not drain the
    // whole backlog.
    assert!(report.elapsed < Duration::from_millis(900), "{report:?}");
}

#[test]
fn spawning_after_shutdown_began_is_refused() {
    let sys = common::system(1);
    let h = sys.handle();
    sys.shutdown(Duration::from_secs(1));
    assert_eq!(
        h.spawn(Fragile).unwrap_err(),
        sinew_actors::SpawnError::ShuttingDown
    );
}

/// Links itself to `peer` on start; optionally traps exits and reports them.
struct Linker {
    peer: ActorRef,
    trap: bool,
    out: mpsc::Sender<Terminated>,
}

impl Actor for Linker {
    type Msg = ();
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.trap_exits(self.trap);
        ctx.link(&self.peer);
    }
    fn handle(&mut self, _: (), _ctx: &mut Context<Self>) {}
    fn terminated(&mut self, ev: Terminated, _ctx: &mut Context<Self>) {
        self.out.send(ev).unwrap();
    }
}

#[test]
fn links_propagate_abnormal_exits_both_ways_unless_trapped() {
    let sim = sinew_actors::DeterministicSystem::new(9);
    let (tx, rx) = mpsc::channel();
    // Abnormal exit of the peer stops a non-trapping linker with a typed reason.
    let peer = sim.spawn(Fragile).unwrap();
    let linker = sim
        .spawn(Linker {
            peer: peer.actor_ref(),
            trap: false,
            out: tx.clone(),
        })
        .unwrap();
    sim.run_until_idle();
    peer.try_send(true).unwrap();
    sim.run_until_idle();
    assert_eq!(linker.exit_reason(), Some(ExitReason::Linked(peer.id())));

    // The other direction: the linker crashes, the peer goes down with it.
    let peer2 = sim.spawn(Fragile).unwrap();
    let linker2 = sim
        .spawn(Linker {
            peer: peer2.actor_ref(),
            trap: false,
            out: tx.clone(),
        })
        .unwrap();
    sim.run_until_idle();
    linker2.kill();
    sim.run_until_idle();
    assert_eq!(peer2.exit_reason(), Some(ExitReason::Linked(linker2.id())));

    // A normal exit does not propagate.
    let peer3 = sim.spawn(Fragile).unwrap();
    let linker3 = sim
        .spawn(Linker {
            peer: peer3.actor_ref(),
            trap: false,
            out: tx.clone(),
        })
        .unwrap();
    sim.run_until_idle();
    peer3.stop();
    sim.run_until_idle();
    assert!(linker3.is_alive());

    // Trapping turns the exit into an event.
    let peer4 = sim.spawn(Fragile).unwrap();
    let linker4 = sim
        .spawn(Linker {
            peer: peer4.actor_ref(),
            trap: true,
            out: tx,
        })
        .unwrap();
    sim.run_until_idle();
    peer4.try_send(true).unwrap();
    sim.run_until_idle();
    assert!(linker4.is_alive());
    let ev = rx.try_iter().last().expect("trapped exit delivered");
    assert!(ev.linked && !ev.child);
    assert_eq!(ev.id, peer4.id());
    assert!(matches!(ev.reason, ExitReason::Panicked(_)));
}
