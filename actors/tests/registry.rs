//! Registry, groups and routers; placement; the worker-local executor; cross-worker wake-ups.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use sinew_actors::{
    Actor, Context, DeterministicSystem, Group, MailboxConfig, Placement, SpawnOptions, Strategy,
};

struct Tagged {
    tag: u32,
    out: mpsc::Sender<(u32, u64)>,
}

impl Actor for Tagged {
    type Msg = u64;
    fn handle(&mut self, m: u64, _ctx: &mut Context<Self>) {
        self.out.send((self.tag, m)).unwrap();
    }
}

#[test]
fn named_actors_register_lookup_and_leave_on_stop() {
    let sim = DeterministicSystem::new(1);
    let (tx, rx) = mpsc::channel();
    let a = sim
        .spawn_with(
            Tagged {
                tag: 1,
                out: tx.clone(),
            },
            SpawnOptions::default().name("db"),
        )
        .unwrap();
    let h = sim.handle();
    let found = h.lookup::<Tagged>("db").expect("registered");
    found.try_send(5).unwrap();
    sim.run_until_idle();
    assert_eq!(rx.try_recv(), Ok((1, 5)));
    // Same name again while alive: refused.
    let b = sim.spawn(Tagged { tag: 2, out: tx }).unwrap();
    assert!(h.register("db", &b).is_err());
    a.stop();
    sim.run_until_idle();
    assert!(h.lookup::<Tagged>("db").is_none());
    assert!(h.register("db", &b).is_ok());
    assert_eq!(h.lookup_ref("db").map(|r| r.id()), Some(b.id()));
}

#[test]
fn routers_round_robin_key_hash_broadcast() {
    let sim = DeterministicSystem::new(2);
    let (tx, rx) = mpsc::channel();
    let h = sim.handle();
    let members: Vec<_> = (0..3)
        .map(|tag| {
            sim.spawn(Tagged {
                tag,
                out: tx.clone(),
            })
            .unwrap()
        })
        .collect();
    for m in &members {
        h.join_group("workers", m.recipient());
    }
    let group: Group<u64> = h.group("workers");
    assert_eq!(group.len(), 3);

    let mut rr = group.clone().router(Strategy::RoundRobin);
    for i in 0..6 {
        rr.route(i).unwrap();
    }
    sim.run_until_idle();
    let mut per = [0; 3];
    for (tag, _) in rx.try_iter() {
        per[tag as usize] += 1;
    }
    assert_eq!(per, [2, 2, 2]);

    let mut kh = group.clone().router(Strategy::KeyHash);
    for _ in 0..5 {
        kh.route_key("user-17", 1).unwrap();
    }
    sim.run_until_idle();
    let tags: std::collections::HashSet<u32> = rx.try_iter().map(|(t, _)| t).collect();
    assert_eq!(tags.len(), 1, "one key, one member");

    let bc = group.router(Strategy::Broadcast);
    assert_eq!(bc.broadcast(9), 3);
    sim.run_until_idle();
    assert_eq!(rx.try_iter().count(), 3);

    // A stopped member leaves the group.
    members[0].stop();
    sim.run_until_idle();
    assert_eq!(h.group::<u64>("workers").len(), 2);
}

#[test]
fn round_robin_skips_full_members() {
    let sim = DeterministicSystem::new(3);
    let (tx, rx) = mpsc::channel();
    let small = SpawnOptions::default().mailbox(MailboxConfig::bounded(1));
    let a = sim
        .spawn_with(
            Tagged {
                tag: 0,
                out: tx.clone(),
            },
            small.clone(),
        )
        .unwrap();
    let b = sim.spawn_with(Tagged { tag: 1, out: tx }, small).unwrap();
    sim.run_until_idle();
    let mut r = Group::new(vec![a.recipient(), b.recipient()]).router(Strategy::RoundRobin);
    r.route(1).unwrap();
    r.route(2).unwrap();
    assert!(r.route(3).unwrap_err().is_transient(), "both full");
    sim.run_until_idle();
    assert_eq!(rx.try_iter().count(), 2);
}

struct WhereAmI(mpsc::Sender<usize>);

impl Actor for WhereAmI {
    type Msg = ();
    fn started(&mut self, ctx: &mut Context<Self>) {
        self.0.send(ctx.worker_index()).unwrap();
    }
    fn handle(&mut self, _: (), _ctx: &mut Context<Self>) {}
}

#[test]
fn placement_worker_roundrobin_and_key() {
    let sys = common::system(2);
    let (tx, rx) = mpsc::channel();
    for w in [1usize, 0, 1] {
        sys.spawn_with(WhereAmI(tx.clone()), SpawnOptions::on_worker(w))
            .unwrap();
        assert_eq!(common::recv(&rx), w);
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        sys.spawn_with(
            WhereAmI(tx.clone()),
            SpawnOptions::default().placement(Placement::RoundRobin),
        )
        .unwrap();
        seen.insert(common::recv(&rx));
    }
    assert_eq!(seen.len(), 2, "round-robin uses both workers");
    let mut key_worker = None;
    for _ in 0..3 {
        sys.spawn_with(
            WhereAmI(tx.clone()),
            SpawnOptions::default().placement(Placement::Key(77)),
        )
        .unwrap();
        let w = common::recv(&rx);
        assert_eq!(*key_worker.get_or_insert(w), w, "same key, same worker");
    }
    assert!(sys
        .spawn_with(WhereAmI(tx), SpawnOptions::on_worker(5))
        .is_err());
}

/// Spawns a child "where its parent is" by default.
struct Spawner(mpsc::Sender<usize>);

impl Actor for Spawner {
    type Msg = ();
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.spawn(WhereAmI(self.0.clone())).unwrap();
    }
    fn handle(&mut self, _: (), _ctx: &mut Context<Self>) {}
}

#[test]
fn children_default_to_the_parents_worker() {
    let sys = common::system(2);
    let (tx, rx) = mpsc::channel();
    sys.spawn_with(Spawner(tx), SpawnOptions::on_worker(1))
        .unwrap();
    assert_eq!(common::recv(&rx), 1);
}

/// Runs a future on its worker and gets the output as a message.
struct FutureUser(mpsc::Sender<u64>);

enum FMsg {
    Start,
    Done(u64),
}

impl Actor for FutureUser {
    type Msg = FMsg;
    fn handle(&mut self, m: FMsg, ctx: &mut Context<Self>) {
        match m {
            FMsg::Start => {
                // Not Send: an Rc lives across the await.
                let rc = std::rc::Rc::new(20u64);
                let (reply, fut) = sinew_actors::ReplyTo::<u64>::channel();
                ctx.send_after(Duration::from_millis(5), FMsg::Done(0));
                std::thread::spawn(move || {
                    reply.send(22);
                });
                ctx.spawn_future(
                    async move {
                        let v = fut.await.unwrap();
                        *rc + v
                    },
                    FMsg::Done,
                );
            }
            FMsg::Done(0) => {}
            FMsg::Done(v) => self.0.send(v).unwrap(),
        }
    }
}

#[test]
fn worker_local_future_output_arrives_as_a_message() {
    let sys = common::system(2);
    let (tx, rx) = mpsc::channel();
    let a = sys.spawn(FutureUser(tx)).unwrap();
    a.try_send(FMsg::Start).unwrap();
    assert_eq!(common::recv(&rx), 42);
}

struct Echo;

impl Actor for Echo {
    type Msg = (u64, sinew_actors::ReplyTo<u64>);
    fn handle(&mut self, (v, r): Self::Msg, _ctx: &mut Context<Self>) {
        r.send(v);
    }
}

#[test]
fn parked_workers_are_woken_by_cross_thread_sends() {
    // No spinning: every round trip has to wake a parked worker.
    let sys = common::builder(2).spin(Duration::ZERO).build().unwrap();
    let e = sys.spawn_with(Echo, SpawnOptions::on_worker(1)).unwrap();
    for i in 0..200 {
        std::thread::sleep(Duration::from_micros(200));
        assert_eq!(futures::executor::block_on(e.ask(|r| (i, r))), Ok(i));
    }
    let m = sys.metrics();
    assert!(m.workers[1].parks > 0, "worker 1 never parked: {m:?}");
}

struct Count;

impl Actor for Count {
    type Msg = u32;
    fn handle(&mut self, m: u32, ctx: &mut Context<Self>) {
        if m == 0 {
            // Report this actor's own counter through its exit reason.
            let handled = ctx.metrics().messages_handled;
            ctx.fail(format!("handled {handled}"));
        }
    }
}

#[test]
fn counters_track_messages_turns_and_timing() {
    let sys = common::builder(1).timing(true).build().unwrap();
    let a = sys.spawn(Count).unwrap();
    for i in (0..100).rev() {
        futures::executor::block_on(a.send(i)).unwrap();
    }
    while a.is_alive() {
        std::thread::yield_now();
    }
    // The zero is the 100th message; the count includes the one being handled.
    assert_eq!(
        a.exit_reason(),
        Some(sinew_actors::ExitReason::Failed("handled 100".into()))
    );
    let m = sys.metrics();
    assert_eq!(m.workers.len(), 1);
    assert!(m.workers[0].messages_handled >= 100, "{m:?}");
    assert!(m.workers[0].turns >= 1);
    assert!(m.workers[0].handler_ns > 0, "timing was enabled: {m:?}");
}

#[test]
fn a_failing_driver_factory_is_a_typed_build_error() {
    let err = common::builder(2)
        .try_driver(|i| {
            if i == 1 {
                Err("io_uring refused by the kernel".into())
            } else {
                Ok(Box::new(sinew_actors::ThreadParkDriver::new()))
            }
        })
        .build()
        .expect_err("worker 1 cannot start");
    match err {
        sinew_actors::SystemError::Driver { worker, error } => {
            assert_eq!(worker, 1);
            assert!(error.contains("io_uring refused"));
        }
        other => panic!("unexpected {other}"),
    }
}

/// Reads the per-worker resource its driver factory stored.
struct ReadsExtension(mpsc::Sender<Option<(usize, u32)>>);

struct WorkerResource {
    worker: usize,
    uses: std::cell::Cell<u32>,
}

impl Actor for ReadsExtension {
    type Msg = ();
    fn handle(&mut self, _: (), ctx: &mut Context<Self>) {
        let r = ctx.extension::<WorkerResource>().map(|r| {
            r.uses.set(r.uses.get() + 1);
            (r.worker, r.uses.get())
        });
        self.0.send(r).unwrap();
    }
}

#[test]
fn driver_factories_give_each_worker_its_own_resources() {
    let sys = common::builder(2)
        .driver(|i| {
            sinew_actors::set_worker_extension(std::rc::Rc::new(WorkerResource {
                worker: i,
                uses: std::cell::Cell::new(0),
            }));
            Box::new(sinew_actors::ThreadParkDriver::new())
        })
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    for w in [0usize, 1, 1] {
        let a = sys
            .spawn_with(ReadsExtension(tx.clone()), SpawnOptions::on_worker(w))
            .unwrap();
        a.try_send(()).unwrap();
        let (worker, _) = common::recv(&rx).expect("the worker's resource is there");
        assert_eq!(worker, w);
    }
    // Not on a worker: nothing.
    assert!(sinew_actors::worker_extension::<WorkerResource>().is_none());
}
