//! Strategies, restart types, intensity and escalation, backoff in virtual time, stable
//! addresses, shutdown order, configuration, and leak-freedom under a crash storm.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sinew_actors::{Actor, Context, DeterministicSystem, ExitReason, ReplyError, ReplyTo};
use sinew_supervision::{
    Backoff, ChildSpec, DownPolicy, Restart, Shutdown, StableSendError, StartError, Strategy,
    SupervisionEvent, Supervisor, SupervisorBuilder, SupervisorConfig, SupervisorMsg,
};

type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn take(l: &Log) -> Vec<String> {
    std::mem::take(&mut *l.lock().unwrap())
}

/// Logs `start NAME` / `stop NAME`, crashes on `Crash`, exits normally on `Quit`, and keeps
/// `Hold` requests unanswered in its state (so they are dropped, and fail, if it crashes).
struct Worker {
    name: &'static str,
    log: Log,
    held: Vec<ReplyTo<u32>>,
}

enum Cmd {
    Crash,
    Quit,
    Echo(u32, ReplyTo<u32>),
    Hold(ReplyTo<u32>),
}

impl Actor for Worker {
    type Msg = Cmd;
    fn started(&mut self, _ctx: &mut Context<Self>) {
        self.log
            .lock()
            .unwrap()
            .push(format!("start {}", self.name));
    }
    fn handle(&mut self, msg: Cmd, ctx: &mut Context<Self>) {
        match msg {
            Cmd::Crash => panic!("injected crash in {}", self.name),
            Cmd::Quit => ctx.stop(),
            Cmd::Echo(v, r) => {
                r.send(v);
            }
            Cmd::Hold(r) => {
                self.held.push(r);
                self.log.lock().unwrap().push(format!("held {}", self.name));
            }
        }
    }
    fn stopped(&mut self, _reason: &ExitReason) {
        self.log.lock().unwrap().push(format!("stop {}", self.name));
    }
}

fn worker(name: &'static str, l: &Log) -> (ChildSpec, sinew_supervision::StableAddr<Worker>) {
    let l = l.clone();
    ChildSpec::with_addr(
        name,
        move || Worker {
            name,
            log: l.clone(),
            held: Vec::new(),
        },
        DownPolicy::FailFast,
    )
}

fn tree(
    strategy: Strategy,
    l: &Log,
) -> (
    SupervisorBuilder,
    Vec<sinew_supervision::StableAddr<Worker>>,
) {
    let mut b = SupervisorBuilder::new("sup")
        .strategy(strategy)
        .intensity(10, Duration::from_secs(1));
    let mut addrs = Vec::new();
    for name in ["a", "b", "c"] {
        let (spec, addr) = worker(name, l);
        b = b.child(spec);
        addrs.push(addr);
    }
    (b, addrs)
}

/// Records the supervisor's ChildStarted / ChildExited events as "start X" / "exit X".
fn starts(b: SupervisorBuilder) -> (SupervisorBuilder, Log) {
    let l = log();
    let l2 = l.clone();
    let b = b.observe(move |e: &SupervisionEvent| match e {
        SupervisionEvent::ChildStarted { child, .. } => {
            l2.lock().unwrap().push(format!("start {child}"))
        }
        SupervisionEvent::ChildExited { child, .. } => {
            l2.lock().unwrap().push(format!("exit {child}"))
        }
        _ => {}
    });
    (b, l)
}

#[test]
fn one_for_one_restarts_only_the_failed_child() {
    let sim = DeterministicSystem::new(1);
    let l = log();
    let (b, w) = tree(Strategy::OneForOne, &l);
    let (b, order) = starts(b);
    sim.spawn(b.build()).unwrap();
    sim.run_until_idle();
    assert_eq!(
        take(&order),
        ["start a", "start b", "start c"],
        "started left to right"
    );
    take(&l);
    let (a0, c0) = (w[0].current().unwrap().id(), w[2].current().unwrap().id());
    w[1].try_send(Cmd::Crash).unwrap();
    sim.run_until_idle();
    assert_eq!(take(&l), ["stop b", "start b"]);
    assert_eq!(w[0].current().unwrap().id(), a0);
    assert_eq!(w[2].current().unwrap().id(), c0);
}

#[test]
fn one_for_all_stops_right_to_left_then_starts_left_to_right() {
    let sim = DeterministicSystem::new(2);
    let l = log();
    let (b, w) = tree(Strategy::OneForAll, &l);
    let (b, order) = starts(b);
    sim.spawn(b.build()).unwrap();
    sim.run_until_idle();
    take(&l);
    take(&order);
    w[0].try_send(Cmd::Crash).unwrap();
    sim.run_until_idle();
    // Each sibling's stop completes before the next one is asked to stop.
    assert_eq!(take(&l)[..3], ["stop a", "stop c", "stop b"]);
    assert_eq!(
        take(&order),
        ["exit a", "exit c", "exit b", "start a", "start b", "start c"]
    );
}

#[test]
fn rest_for_one_restarts_the_failed_child_and_those_after_it() {
    let sim = DeterministicSystem::new(3);
    let l = log();
    let (b, w) = tree(Strategy::RestForOne, &l);
    let (b, order) = starts(b);
    sim.spawn(b.build()).unwrap();
    sim.run_until_idle();
    take(&l);
    take(&order);
    let a0 = w[0].current().unwrap().id();
    w[1].try_send(Cmd::Crash).unwrap();
    sim.run_until_idle();
    assert_eq!(take(&order), ["exit b", "exit c", "start b", "start c"]);
    assert_eq!(
        w[0].current().unwrap().id(),
        a0,
        "a was started before b: untouched"
    );
}

#[test]
fn restart_types_permanent_transient_temporary() {
    let sim = DeterministicSystem::new(4);
    let l = log();
    let (p, pw) = worker("p", &l);
    let (t, tw) = worker("t", &l);
    let (x, xw) = worker("x", &l);
    let b = SupervisorBuilder::new("sup")
        .intensity(10, Duration::from_secs(1))
        .child(p)
        .child(t.restart(Restart::Transient))
        .child(x.restart(Restart::Temporary));
    let sup = sim.spawn(b.build()).unwrap();
    sim.run_until_idle();
    take(&l);
    // Normal exits: permanent restarts, transient and temporary do not.
    for w in [&pw, &tw, &xw] {
        w.try_send(Cmd::Quit).unwrap();
    }
    sim.run_until_idle();
    let mut got = take(&l);
    assert_eq!(
        got.pop().as_deref(),
        Some("start p"),
        "only the permanent child restarts"
    );
    got.sort();
    assert_eq!(got, ["stop p", "stop t", "stop x"]);
    assert!(matches!(
        tw.try_send(Cmd::Quit),
        Err(StableSendError::Gone(_))
    ));
    assert!(matches!(
        xw.try_send(Cmd::Quit),
        Err(StableSendError::Gone(_))
    ));
    // The temporary child's spec is forgotten; the transient one's stays.
    let kids = sim
        .block_on(sup.ask(SupervisorMsg::Children))
        .unwrap()
        .unwrap();
    let ids: Vec<_> = kids.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["p", "t"]);
}

#[test]
fn transient_child_restarts_after_a_crash() {
    let sim = DeterministicSystem::new(5);
    let l = log();
    let (t, tw) = worker("t", &l);
    sim.spawn(
        SupervisorBuilder::new("s")
            .child(t.restart(Restart::Transient))
            .build(),
    )
    .unwrap();
    sim.run_until_idle();
    take(&l);
    tw.try_send(Cmd::Crash).unwrap();
    sim.run_until_idle();
    assert_eq!(take(&l), ["stop t", "start t"]);
}

#[test]
fn dynamic_children_simple_one_for_one() {
    let sim = DeterministicSystem::new(6);
    let l = log();
    let sup = sim
        .spawn(
            SupervisorBuilder::new("conns")
                .strategy(Strategy::SimpleOneForOne)
                .intensity(100, Duration::from_secs(1))
                .build(),
        )
        .unwrap();
    let sup = sinew_supervision::SupervisorRef::new(sup);
    let mut addrs = Vec::new();
    for name in ["c1", "c2", "c3"] {
        let (spec, a) = worker(name, &l);
        sim.block_on(sup.start_child(spec)).unwrap().unwrap();
        addrs.push(a);
    }
    let (tmp, tmp_addr) = worker("tmp", &l);
    sim.block_on(sup.start_child(tmp.restart(Restart::Temporary)))
        .unwrap()
        .unwrap();
    sim.run_until_idle();
    take(&l);
    let c3 = addrs[2].current().unwrap().id();
    addrs[0].try_send(Cmd::Crash).unwrap();
    tmp_addr.try_send(Cmd::Crash).unwrap();
    sim.run_until_idle();
    let events = take(&l);
    assert!(events.contains(&"start c1".to_string()));
    assert!(
        !events.contains(&"start tmp".to_string()),
        "temporary: not restarted"
    );
    assert_eq!(addrs[2].current().unwrap().id(), c3, "siblings untouched");
    assert!(sim.block_on(sup.terminate_child("c2")).unwrap().unwrap());
    sim.run_until_idle();
    let kids = sim.block_on(sup.children()).unwrap().unwrap();
    let ids: Vec<_> = kids.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c1", "c3"]);
}

#[test]
fn start_failures_are_handled_like_crashes() {
    let sim = DeterministicSystem::new(7);
    let attempts = Arc::new(Mutex::new(0u32));
    let a = attempts.clone();
    let l = log();
    let l2 = l.clone();
    let flaky = ChildSpec::try_new("flaky", move || {
        let mut n = a.lock().unwrap();
        *n += 1;
        if *n < 3 {
            Err(StartError::failed("resource not ready"))
        } else {
            Ok(Worker {
                name: "flaky",
                log: l2.clone(),
                held: Vec::new(),
            })
        }
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    sim.spawn(
        SupervisorBuilder::new("s")
            .intensity(5, Duration::from_secs(10))
            .backoff(Backoff {
                jitter: 0.0,
                ..Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1))
            })
            .observe(move |e: &SupervisionEvent| ev.lock().unwrap().push(e.clone()))
            .child(flaky)
            .build(),
    )
    .unwrap();
    sim.advance(Duration::from_secs(1));
    assert_eq!(*attempts.lock().unwrap(), 3);
    assert_eq!(take(&l), ["start flaky"]);
    let failed = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, SupervisionEvent::StartFailed { .. }))
        .count();
    assert_eq!(failed, 2);
}

#[test]
fn backoff_delays_in_virtual_time_and_reset_after_stable_period() {
    let sim = DeterministicSystem::new(8);
    let l = log();
    let (spec, w) = worker("w", &l);
    let starts: Arc<Mutex<Vec<u64>>> = Default::default();
    let s2 = starts.clone();
    let t0 = sim.now();
    let backoff = Backoff {
        min: Duration::from_millis(100),
        max: Duration::from_millis(1000),
        factor: 2.0,
        jitter: 0.0,
        reset_after: Duration::from_secs(10),
    };
    sim.spawn(
        SupervisorBuilder::new("s")
            .intensity(100, Duration::from_secs(1))
            .backoff(backoff)
            .observe(move |e: &SupervisionEvent| {
                if let SupervisionEvent::ChildRestarting { delay, .. } = e {
                    s2.lock().unwrap().push(delay.as_millis() as u64);
                }
            })
            .child(spec)
            .build(),
    )
    .unwrap();
    sim.run_until_idle();
    let mut restarted_at = Vec::new();
    for _ in 0..5 {
        w.try_send(Cmd::Crash).unwrap();
        sim.run_until_idle();
        let crashed = sim.now_ms();
        // Down until the backoff elapses: fail fast meanwhile.
        assert!(matches!(
            w.try_send(Cmd::Quit),
            Err(StableSendError::Down(_))
        ));
        while w.current().is_none() {
            sim.advance(Duration::from_millis(1));
        }
        restarted_at.push(sim.now_ms() - crashed);
    }
    assert_eq!(restarted_at, [100, 200, 400, 800, 1000]);
    assert_eq!(*starts.lock().unwrap(), [100, 200, 400, 800, 1000]);
    // A stable period resets the sequence.
    sim.advance(Duration::from_secs(11));
    w.try_send(Cmd::Crash).unwrap();
    sim.run_until_idle();
    let crashed = sim.now_ms();
    while w.current().is_none() {
        sim.advance(Duration::from_millis(1));
    }
    assert_eq!(sim.now_ms() - crashed, 100);
    let _ = t0;
}

#[test]
fn stable_address_holds_messages_while_down_and_delivers_in_order() {
    let sim = DeterministicSystem::new(9);
    let l = log();
    let l2 = l.clone();
    let (spec, w) = ChildSpec::with_addr(
        "w",
        move || Worker {
            name: "w",
            log: l2.clone(),
            held: Vec::new(),
        },
        DownPolicy::Hold(8),
    );
    sim.spawn(
        SupervisorBuilder::new("s")
            .backoff(Backoff {
                jitter: 0.0,
                ..Backoff::exponential(Duration::from_millis(50), Duration::from_secs(1))
            })
            .child(spec)
            .build(),
    )
    .unwrap();
    sim.run_until_idle();
    let first = w.current().unwrap().id();
    w.try_send(Cmd::Crash).unwrap();
    sim.run_until_idle();
    assert!(w.current().is_none());
    // Held while down, answered by the next incarnation, in order.
    let replies: Vec<_> = (0..3).map(|i| w.ask(move |r| Cmd::Echo(i, r))).collect();
    let got: Vec<_> = replies
        .into_iter()
        .map(|f| sim.block_on(f).unwrap())
        .collect();
    assert_eq!(got, [Ok(0), Ok(1), Ok(2)]);
    assert_ne!(w.current().unwrap().id(), first);
}

#[test]
fn pending_asks_to_a_crashed_child_fail_fast() {
    let sys = sinew_actors::System::builder().workers(2).build().unwrap();
    let l = log();
    let (spec, w) = worker("w", &l);
    SupervisorBuilder::new("s")
        .child(spec)
        .spawn_root(&sys)
        .unwrap();
    while w.current().is_none() {
        std::thread::yield_now();
    }
    let current = w.current().unwrap();
    let pending = std::thread::spawn(move || futures::executor::block_on(current.ask(Cmd::Hold)));
    // The request is held in the child's state before it crashes.
    while !l.lock().unwrap().iter().any(|e| e == "held w") {
        std::thread::yield_now();
    }
    w.try_send(Cmd::Crash).unwrap();
    assert_eq!(pending.join().unwrap(), Err(ReplyError::Dropped));
    sys.shutdown(Duration::from_secs(5));
}

/// A level of the escalation test: a supervisor of one child (a worker or another level).
fn level(name: &str, child: ChildSpec) -> SupervisorBuilder {
    SupervisorBuilder::new(name)
        .intensity(1, Duration::from_secs(10))
        .child(child)
}

#[test]
fn intensity_exceeded_escalates_through_three_levels_to_the_root() {
    let sim = DeterministicSystem::new(10);
    let l = log();
    let (spec, w) = worker("leaf", &l);
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let mid = level("mid", spec);
    let upper = level("upper", ChildSpec::supervisor("mid", mid));
    let root = level("root", ChildSpec::supervisor("upper", upper))
        .observe(move |e: &SupervisionEvent| ev.lock().unwrap().push(e.clone()));
    let root_addr = sim.spawn(root.build_root()).unwrap();
    sim.run_until_idle();
    // Keep crashing the leaf: each level gives up in turn and its parent restarts it, until
    // the root's own intensity is exceeded.
    let mut crashes = 0;
    while root_addr.is_alive() && crashes < 50 {
        if w.try_send(Cmd::Crash).is_ok() {
            crashes += 1;
        }
        sim.run_until_idle();
    }
    assert!(
        !root_addr.is_alive(),
        "root gave up after {crashes} crashes"
    );
    assert_eq!(root_addr.exit_reason(), Some(ExitReason::RestartIntensity));
    assert_eq!(
        sim.handle().exit_reason(),
        Some(ExitReason::RestartIntensity),
        "system stopped with a clear reason"
    );
    let evs = events.lock().unwrap();
    assert!(evs
        .iter()
        .any(|e| matches!(e, SupervisionEvent::IntensityExceeded { .. })));
    assert!(evs
        .iter()
        .any(|e| matches!(e, SupervisionEvent::Escalated { name, .. } if name == "root")));
    // Three levels of supervisors above the leaf: the root saw its child supervisor exit with
    // RestartIntensity at least once before giving up.
    assert!(evs.iter().any(|e| matches!(
        e,
        SupervisionEvent::ChildExited {
            reason: ExitReason::RestartIntensity,
            ..
        }
    )));
    drop(evs);
    sim.run_until_idle();
    assert_eq!(sim.live_actors(), 0, "everything stopped");
}

/// Ignores graceful shutdown: it takes over stopping its own child and never does, so its
/// stop never completes until it is killed.
struct Stubborn(Log);

struct Idle;

impl Actor for Idle {
    type Msg = ();
    fn handle(&mut self, _: (), _ctx: &mut Context<Self>) {}
}

impl Actor for Stubborn {
    type Msg = ();
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.spawn(Idle).unwrap();
    }
    fn handle(&mut self, _: (), _ctx: &mut Context<Self>) {}
    fn stops_own_children(&self) -> bool {
        true
    }
    fn stopped(&mut self, reason: &ExitReason) {
        self.0
            .lock()
            .unwrap()
            .push(format!("stop stubborn {reason}"));
    }
}

#[test]
fn shutdown_is_right_to_left_and_kills_after_the_timeout() {
    let sim = DeterministicSystem::new(11);
    let l = log();
    let (a, _) = worker("a", &l);
    let (b, _) = worker("b", &l);
    let l2 = l.clone();
    let stubborn = ChildSpec::new("stubborn", move || Stubborn(l2.clone()))
        .shutdown(Shutdown::Graceful(Duration::from_millis(500)));
    let sup = sim
        .spawn(
            SupervisorBuilder::new("s")
                .child(a)
                .child(stubborn)
                .child(b)
                .build(),
        )
        .unwrap();
    sim.run_until_idle();
    take(&l);
    sup.actor_ref().shutdown();
    sim.advance(Duration::from_secs(2));
    assert_eq!(take(&l), ["stop b", "stop stubborn killed", "stop a"]);
    assert!(!sup.is_alive());
}

#[test]
fn policies_from_toml_configuration() {
    let cfg = SupervisorConfig::from_toml(
        r#"
        strategy = "one_for_all"
        intensity = { max_restarts = 2, within = 1000 }
        backoff = { min = 10, max = 100, factor = 2.0, jitter = 0.0, reset_after = 5000 }

        [children.b]
        restart = "temporary"

        [supervisors.inner]
        strategy = "rest_for_one"
        "#,
    )
    .unwrap();
    assert_eq!(cfg.strategy, Some(Strategy::OneForAll));
    assert_eq!(cfg.intensity.unwrap().max_restarts, 2);
    assert_eq!(cfg.children["b"].restart, Some(Restart::Temporary));
    assert!(SupervisorConfig::from_toml("strategy = \"sideways\"").is_err());

    let sim = DeterministicSystem::new(12);
    let l = log();
    let (a, aw) = worker("a", &l);
    let (b, bw) = worker("b", &l);
    let sup = sim
        .spawn(
            SupervisorBuilder::new("s")
                .child(a)
                .child(b)
                .config(&cfg)
                .build(),
        )
        .unwrap();
    sim.run_until_idle();
    take(&l);
    // b is temporary by configuration: it is not restarted.
    bw.try_send(Cmd::Quit).unwrap();
    sim.run_until_idle();
    assert_eq!(take(&l), ["stop b"]);
    // one_for_all from configuration, with a 10 ms backoff.
    aw.try_send(Cmd::Crash).unwrap();
    sim.advance(Duration::from_millis(100));
    assert_eq!(take(&l), ["stop a", "start a"]);
    assert!(sup.is_alive());
}

#[test]
fn crash_storm_leaves_no_leaked_actor_timer_or_task() {
    let sim = DeterministicSystem::new(13);
    let l = log();
    let baseline_actors = sim.live_actors();
    let mut b = SupervisorBuilder::new("storm")
        .intensity(10_000, Duration::from_secs(1))
        .backoff(Backoff::exponential(
            Duration::from_millis(1),
            Duration::from_millis(20),
        ));
    let mut addrs = Vec::new();
    for i in 0..50 {
        let name: &'static str = Box::leak(format!("w{i}").into_boxed_str());
        let (spec, a) = worker(name, &l);
        b = b.child(spec);
        addrs.push(a);
    }
    let sup = sim.spawn(b.build()).unwrap();
    sim.run_until_idle();
    let running = sim.live_actors();
    assert_eq!(running, baseline_actors + 51);
    for round in 0..20 {
        for (i, a) in addrs.iter().enumerate() {
            if (i + round) % 3 != 0 {
                let _ = a.try_send(Cmd::Crash);
            }
        }
        sim.advance(Duration::from_millis(5));
    }
    sim.advance(Duration::from_secs(1));
    assert_eq!(
        sim.live_actors(),
        running,
        "every child is back, none leaked"
    );
    assert_eq!(
        sim.active_timers(),
        0,
        "no backoff or shutdown timer left armed"
    );
    assert_eq!(sim.live_tasks(), 0);
    sup.actor_ref().shutdown();
    sim.run_until_idle();
    assert_eq!(sim.live_actors(), baseline_actors);
    assert_eq!(sim.active_timers(), 0);
}

#[test]
fn supervisor_message_types_are_usable_directly() {
    // The supervisor is an ordinary actor: its address accepts SupervisorMsg.
    let sim = DeterministicSystem::new(14);
    let sup: sinew_actors::Addr<Supervisor> =
        sim.spawn(SupervisorBuilder::new("s").build()).unwrap();
    let kids = sim
        .block_on(sup.ask(SupervisorMsg::Children))
        .unwrap()
        .unwrap();
    assert!(kids.is_empty());
}
