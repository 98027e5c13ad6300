//! sinew::testkit: Sinew's own guarantees under simulated faults (100 seeds each), the seeded
//! bug demonstration, the no-hang invariant, and the determinism check.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sinew::prelude::*;
use sinew::supervision::{Backoff, ChildSpec, DownPolicy, SupervisorBuilder};
use sinew::testkit::{Simulation, Target};

// ---- a server that answers, a client that asks with deadlines ---------------------------

struct Server;

impl Actor for Server {
    type Msg = (u64, ReplyTo<u64>);
    fn handle(&mut self, (v, r): Self::Msg, _ctx: &mut Context<Self>) {
        r.send(v * 2);
    }
}

#[test]
fn no_request_hangs_under_loss_delay_and_crashes() {
    Simulation::new("no hung request").seeds(100).run(|run| {
        let (spec, server) = ChildSpec::with_addr("server", || Server, DownPolicy::FailFast);
        run.system()
            .spawn(
                SupervisorBuilder::new("sup")
                    .intensity(1000, Duration::from_secs(1))
                    .backoff(Backoff::exponential(
                        Duration::from_millis(5),
                        Duration::from_millis(50),
                    ))
                    .child(spec)
                    .build(),
            )
            .map_err(|e| e.to_string())?;
        run.system().run_until_idle();
        let id = server.current().ok_or("server not started")?.id();
        let crash_at = 1 + run.rng().below(20);
        run.faults()
            .drop_messages(Target::Any, 0.1)
            .delay_messages(Target::Any, 0.2, Duration::from_millis(30))
            .crash_on_message(id, crash_at);
        let (mut ok, mut failed) = (0, 0);
        for i in 0..40u64 {
            let current = match server.current() {
                Some(a) => a,
                None => {
                    run.advance(Duration::from_millis(10));
                    continue;
                }
            };
            match run.block_on(current.ask_within(Duration::from_millis(200), |r| (i, r)))? {
                Ok(v) => {
                    if v != i * 2 {
                        return Err(format!("wrong answer {v} for {i}"));
                    }
                    ok += 1;
                }
                Err(_) => {
                    // Back off before retrying, as a client would: the supervisor needs a
                    // turn (and the backoff its time) to restart the server.
                    failed += 1;
                    run.advance(Duration::from_millis(10));
                }
            }
        }
        if ok == 0 {
            return Err(format!("no request succeeded ({failed} failed)"));
        }
        Ok(())
    });
}

// ---- supervision under crash storms ------------------------------------------------------

struct Worker(u64);

impl Actor for Worker {
    type Msg = u64;
    fn handle(&mut self, m: u64, _ctx: &mut Context<Self>) {
        self.0 = self.0.wrapping_add(m);
    }
}

#[test]
fn supervision_recovers_from_crash_storms() {
    Simulation::new("crash storm")
        .seeds(100)
        .check_determinism(true)
        .run(|run| {
            let mut b = SupervisorBuilder::new("storm")
                .intensity(10_000, Duration::from_secs(1))
                .backoff(Backoff::exponential(
                    Duration::from_millis(1),
                    Duration::from_millis(40),
                ));
            let mut addrs = Vec::new();
            for i in 0..10 {
                let (spec, a) =
                    ChildSpec::with_addr(format!("w{i}"), || Worker(0), DownPolicy::Hold(32));
                b = b.child(spec);
                addrs.push(a);
            }
            run.system()
                .spawn(b.seed(run.seed()).build())
                .map_err(|e| e.to_string())?;
            run.system().run_until_idle();
            let baseline = run.system().live_actors();
            // Every worker crashes on one of its first messages, at a seed-chosen point.
            for a in &addrs {
                let id = a.current().ok_or("worker not started")?.id();
                let nth = 1 + run.rng().below(5);
                run.faults().crash_on_message(id, nth);
            }
            for round in 0..20u64 {
                for a in &addrs {
                    let _ = a.try_send(round);
                }
                let step = 1 + run.rng().below(10);
                run.advance(Duration::from_millis(step));
            }
            run.advance(Duration::from_secs(1));
            let live = run.system().live_actors();
            if live != baseline {
                return Err(format!(
                    "{live} actors alive after the storm, expected {baseline}"
                ));
            }
            if addrs.iter().any(|a| a.current().is_none()) {
                return Err("a worker was not restarted".into());
            }
            if run.system().active_timers() != 0 {
                return Err(format!(
                    "{} timers left armed",
                    run.system().active_timers()
                ));
            }
            Ok(())
        });
}

// ---- duplicate and delay faults reach the actor --------------------------------------------

struct Count(Arc<Mutex<Vec<u32>>>);

impl Actor for Count {
    type Msg = u32;
    fn handle(&mut self, m: u32, _ctx: &mut Context<Self>) {
        self.0.lock().unwrap().push(m);
    }
}

#[test]
fn duplicates_and_delays_are_injected_and_replay_by_seed() {
    let outcome = |seed: u64| {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        Simulation::new("dup")
            .first_seed(seed)
            .seeds(1)
            .run(move |run| {
                let c = run
                    .system()
                    .spawn(Count(s.clone()))
                    .map_err(|e| e.to_string())?;
                run.faults().duplicate_messages(&c, 0.3).delay_messages(
                    Target::Actor(c.id()),
                    0.3,
                    Duration::from_millis(20),
                );
                run.system().enter(|| {
                    for i in 0..50 {
                        c.try_send(i).map_err(|e| e.to_string())?;
                    }
                    Ok::<_, String>(())
                })?;
                run.advance(Duration::from_millis(100));
                Ok(())
            });
        let v = seen.lock().unwrap().clone();
        v
    };
    let a = outcome(42);
    assert!(a.len() > 50, "duplicates delivered: {}", a.len());
    assert!(
        a.windows(2).any(|w| w[0] > w[1]),
        "delays reordered messages"
    );
    let mut distinct = a.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct, (0..50).collect::<Vec<_>>(), "nothing lost");
    assert_eq!(outcome(42), a, "the same seed replays the same faults");
}

// ---- the no-hang invariant and the determinism check catch real mistakes -----------------

/// Holds every request forever: a hang.
struct BlackHole(Vec<ReplyTo<u64>>);

impl Actor for BlackHole {
    type Msg = (u64, ReplyTo<u64>);
    fn handle(&mut self, (_, r): Self::Msg, _ctx: &mut Context<Self>) {
        self.0.push(r);
    }
}

#[test]
fn the_no_hang_invariant_catches_a_request_never_answered() {
    let result = Simulation::new("black hole").seeds(3).try_run(|run| {
        let bh = run
            .system()
            .spawn(BlackHole(Vec::new()))
            .map_err(|e| e.to_string())?;
        run.system().enter(|| {
            let reply = ReplyTo::from_fn(|_r: Result<u64, ReplyError>| {});
            bh.try_send((1, reply)).map_err(|e| e.to_string())
        })?;
        Ok(())
    });
    let failure = result.expect_err("an unanswered request must fail the run");
    assert!(failure.message.contains("no-hang"), "{failure}");
    assert!(failure.to_string().contains("SINEW_SEED=0"), "{failure}");
}

static RUNS: AtomicU64 = AtomicU64::new(0);

#[test]
fn the_determinism_check_catches_hidden_state() {
    let result = Simulation::new("leaky")
        .seeds(1)
        .check_determinism(true)
        .try_run(|run| {
            // State outside the simulation (a global counter) changes the schedule between runs.
            let extra = RUNS.fetch_add(1, Ordering::SeqCst) as usize;
            for _ in 0..(1 + extra) {
                run.system().spawn(Worker(0)).map_err(|e| e.to_string())?;
            }
            run.system().run_until_idle();
            Ok(())
        });
    let failure = result.expect_err("different traces for the same seed must be reported");
    assert!(failure.message.contains("non-deterministic"), "{failure}");
}

// ---- a seeded bug: found by the harness, replayed by its seed -----------------------------

/// A bank account.
struct Account(i64);

enum AccountMsg {
    Withdraw(i64, ReplyTo<bool>),
    Deposit(i64),
    Balance(ReplyTo<i64>),
}

impl Actor for Account {
    type Msg = AccountMsg;
    fn handle(&mut self, msg: AccountMsg, _ctx: &mut Context<Self>) {
        match msg {
            AccountMsg::Withdraw(n, r) => {
                let ok = self.0 >= n;
                if ok {
                    self.0 -= n;
                }
                r.send(ok);
            }
            AccountMsg::Deposit(n) => self.0 += n,
            AccountMsg::Balance(r) => {
                r.send(self.0);
            }
        }
    }
}

/// Transfers money in two steps (withdraw, then deposit): the planted bug. Between the two
/// steps the money is in neither account, and an audit that lands there sees it missing.
struct Bank {
    from: Addr<Account>,
    to: Addr<Account>,
}

enum BankMsg {
    Transfer(i64),
    Withdrawn(i64, Result<bool, ReplyError>),
}

impl Actor for Bank {
    type Msg = BankMsg;
    fn handle(&mut self, msg: BankMsg, ctx: &mut Context<Self>) {
        match msg {
            BankMsg::Transfer(n) => {
                let reply = ctx.reply_to(move |r| BankMsg::Withdrawn(n, r));
                let _ = self.from.try_send(AccountMsg::Withdraw(n, reply));
            }
            BankMsg::Withdrawn(n, Ok(true)) => {
                let _ = self.to.try_send(AccountMsg::Deposit(n));
            }
            BankMsg::Withdrawn(..) => {}
        }
    }
}

fn bank_scenario(run: &mut sinew::testkit::SimRun) -> Result<(), String> {
    let sys = run.system();
    let a = sys.spawn(Account(100)).map_err(|e| e.to_string())?;
    let b = sys.spawn(Account(100)).map_err(|e| e.to_string())?;
    let bank = sys
        .spawn(Bank {
            from: a.clone(),
            to: b.clone(),
        })
        .map_err(|e| e.to_string())?;
    sys.enter(|| {
        for _ in 0..3 {
            let _ = bank.try_send(BankMsg::Transfer(10));
        }
    });
    // The auditor asks both balances at a seed-chosen point while transfers are in flight.
    let before_audit = run.rng().below(8);
    for _ in 0..before_audit {
        run.system().step();
    }
    let total = run.block_on(async {
        (
            a.ask(AccountMsg::Balance).await,
            b.ask(AccountMsg::Balance).await,
        )
    })?;
    match total {
        (Ok(x), Ok(y)) if x + y == 200 => Ok(()),
        (Ok(x), Ok(y)) => Err(format!(
            "audit saw {} instead of 200: money in flight",
            x + y
        )),
        other => Err(format!("audit failed: {other:?}")),
    }
}

#[test]
fn the_harness_finds_a_planted_ordering_bug_and_its_seed_replays_it() {
    let sim = Simulation::new("bank audit").seeds(100);
    let failure = sim
        .try_run(bank_scenario)
        .expect_err("100 seeds must expose the race");
    assert!(failure.message.contains("money in flight"), "{failure}");
    // The printed seed replays the same failure, every time.
    let replay = Simulation::new("bank audit")
        .first_seed(failure.seed)
        .seeds(1);
    for _ in 0..3 {
        let again = replay
            .try_run(bank_scenario)
            .expect_err("the seed replays the bug");
        assert_eq!(again, failure);
    }
    // And some seeds pass: the bug is an interleaving, not a certainty.
    let passing = (0..100).any(|s| {
        Simulation::new("bank audit")
            .first_seed(s)
            .seeds(1)
            .try_run(bank_scenario)
            .is_ok()
    });
    assert!(passing);
}

// ---- environment: SINEW_SEED replays one seed, SINEW_SIM_TRACE writes the trace ----------

/// Runs only as a child of `env_variables_select_seeds_and_write_traces` (environment
/// variables are process-wide, so the parent sets them on a child process).
#[test]
fn env_child() {
    if std::env::var("SINEW_ENV_CHILD").is_err() {
        return;
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    Simulation::new("env").seeds(50).run(move |run| {
        s.lock().unwrap().push(run.seed());
        let w = run.system().spawn(Worker(0)).map_err(|e| e.to_string())?;
        let _ = w.try_send(1);
        run.system().run_until_idle();
        Ok(())
    });
    let seeds = seen.lock().unwrap().clone();
    println!("SEEDS {seeds:?}");
}

#[test]
fn env_variables_select_seeds_and_write_traces() {
    let trace = std::env::temp_dir().join(format!("sinew-trace-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&trace);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "env_child", "--nocapture", "--test-threads=1"])
        .env("SINEW_ENV_CHILD", "1")
        .env("SINEW_SEED", "7")
        .env("SINEW_SIM_TRACE", &trace)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("SEEDS [7]"),
        "SINEW_SEED runs just that seed: {stdout}"
    );
    let text = std::fs::read_to_string(&trace).expect("trace written");
    assert!(text.starts_with("# simulation \"env\" seed 7"), "{text}");
    assert!(text.lines().count() > 1, "events recorded: {text}");
    let _ = std::fs::remove_file(&trace);

    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "env_child", "--nocapture", "--test-threads=1"])
        .env("SINEW_ENV_CHILD", "1")
        .env("SINEW_SEEDS", "3")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("SEEDS [0, 1, 2]"),
        "SINEW_SEEDS sets the count: {stdout}"
    );
}
