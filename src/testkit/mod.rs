//! # sinew::testkit: deterministic simulation and fault injection
//!
//! A [`Simulation`] runs a scenario (your actors, on a `DeterministicSystem`: one thread,
//! virtual time, a seeded scheduler) once per seed, with a [`FaultPlan`] of injected failures
//! and invariants checked at the end. A failing seed is reported as `SINEW_SEED=<n>`; setting
//! that variable replays exactly that run.
//!
//! | variable | effect |
//! |---|---|
//! | `SINEW_SEED=<n>` | run only seed `n` (replay a failure) |
//! | `SINEW_SEEDS=<count>` | run this many seeds (default: what the test asks for) |
//! | `SINEW_SIM_TRACE=<file>` | write the event trace (virtual ms, actor) of each run |
//!
//! Built in: the no-hang invariant (every `ReplyTo` created during the run was answered once
//! the system is quiescent), a check mode that runs every seed twice and fails on the first
//! divergence of the traces, and `buggify` fault points (`sinew_actors::buggify`).
//!
//! ```
//! use std::time::Duration;
//! use sinew::prelude::*;
//! use sinew::testkit::{Simulation, Target};
//!
//! struct Echo;
//! impl Actor for Echo {
//!     type Msg = (u32, ReplyTo<u32>);
//!     fn handle(&mut self, (v, r): Self::Msg, _ctx: &mut Context<Self>) {
//!         r.send(v);
//!     }
//! }
//!
//! Simulation::new("echo under message loss").seeds(20).run(|run| {
//!     let echo = run.system().spawn(Echo).map_err(|e| e.to_string())?;
//!     run.faults().drop_messages(Target::Actor(echo.id()), 0.3);
//!     for i in 0..10 {
//!         // A lost request is answered with an error (its ReplyTo was dropped), never a hang.
//!         match run.block_on(echo.ask_within(Duration::from_secs(1), |r| (i, r)))? {
//!             Ok(v) => assert_eq!(v, i),
//!             Err(e) => assert_eq!(e, ReplyError::Dropped),
//!         }
//!     }
//!     Ok(())
//! });
//! ```

#[cfg(feature = "io-actors")]
pub mod chaos;
mod plan;
mod rng;

use std::cell::RefCell;
use std::future::Future;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use sinew_actors::{DeterministicSystem, TraceEvent};

pub use plan::{FaultPlan, Target};
pub use rng::SimRng;

/// Why a simulation run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFailure {
    /// The seed that fails; replay with `SINEW_SEED=<seed>`.
    pub seed: u64,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (replay with SINEW_SEED={})", self.message, self.seed)
    }
}

impl std::error::Error for SimFailure {}

/// A user invariant, checked at the end of every run.
type Invariant = Box<dyn Fn(&DeterministicSystem) -> Result<(), String>>;

/// One run of a scenario: the system, the fault plan, seeded randomness, invariants.
pub struct SimRun {
    system: DeterministicSystem,
    plan: Rc<RefCell<FaultPlan>>,
    rng: SimRng,
    invariants: Vec<(String, Invariant)>,
    horizon: Duration,
}

impl SimRun {
    fn new(seed: u64, buggify: bool) -> Self {
        let system = DeterministicSystem::new(seed);
        let plan = Rc::new(RefCell::new(FaultPlan::new(seed)));
        system.set_fault_hook(Some(Box::new(plan::SharedPlan(plan.clone()))));
        system.set_buggify(buggify);
        SimRun {
            system,
            plan,
            rng: SimRng::new(seed),
            invariants: Vec::new(),
            horizon: Duration::from_secs(600),
        }
    }

    /// The simulated system.
    pub fn system(&self) -> &DeterministicSystem {
        &self.system
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.system.seed()
    }

    /// Seeded randomness for the scenario itself (independent of the scheduler's).
    pub fn rng(&mut self) -> &mut SimRng {
        &mut self.rng
    }

    /// The message fault plan (consulted on every delivery).
    pub fn faults(&self) -> std::cell::RefMut<'_, FaultPlan> {
        self.plan.borrow_mut()
    }

    /// Adds an invariant checked once the run is quiescent.
    pub fn invariant(
        &mut self,
        name: impl Into<String>,
        check: impl Fn(&DeterministicSystem) -> Result<(), String> + 'static,
    ) {
        self.invariants.push((name.into(), Box::new(check)));
    }

    /// How far virtual time may advance while settling at the end of a run (default 600 s).
    pub fn settle_horizon(&mut self, d: Duration) {
        self.horizon = d;
    }

    /// Drives the system until `fut` completes (virtual time jumps when nothing is runnable).
    pub fn block_on<F: Future>(&self, fut: F) -> Result<F::Output, String> {
        self.system.block_on(fut).map_err(|e| e.to_string())
    }

    /// Advances virtual time by `d`, running everything due.
    pub fn advance(&self, d: Duration) {
        self.system.advance(d);
    }

    /// Jumps the clock forward by `d` at once, without running what falls due in between
    /// first (timers then fire late, all together): a clock-jump fault.
    pub fn jump_clock(&self, d: Duration) {
        self.system.jump(d);
    }

    /// Runs until nothing is runnable and no timer is due within the horizon.
    fn settle(&self) {
        let start = self.system.now_ms();
        let horizon = self.horizon.as_millis() as u64;
        loop {
            self.system.run_until_idle();
            match self.system.next_timer_ms() {
                Some(t) if t.saturating_sub(start) <= horizon => self.system.advance(
                    Duration::from_millis(t.saturating_sub(self.system.now_ms())),
                ),
                _ => break,
            }
        }
    }
}

/// Runs a scenario over many seeds (see the module docs).
#[derive(Debug, Clone)]
pub struct Simulation {
    name: String,
    seeds: u64,
    first_seed: u64,
    check: bool,
    buggify: bool,
    no_hang: bool,
}

impl Simulation {
    /// A simulation named for its failure messages; 100 seeds by default.
    pub fn new(name: impl Into<String>) -> Self {
        Simulation {
            name: name.into(),
            seeds: 100,
            first_seed: 0,
            check: false,
            buggify: false,
            no_hang: true,
        }
    }

    /// Number of seeds when `SINEW_SEEDS` is not set.
    pub fn seeds(mut self, n: u64) -> Self {
        self.seeds = n;
        self
    }

    /// The first seed (seeds are `first..first + count`).
    pub fn first_seed(mut self, s: u64) -> Self {
        self.first_seed = s;
        self
    }

    /// Runs every seed twice and fails on the first divergence of the event traces.
    pub fn check_determinism(mut self, on: bool) -> Self {
        self.check = on;
        self
    }

    /// Enables `buggify` fault points.
    pub fn buggify(mut self, on: bool) -> Self {
        self.buggify = on;
        self
    }

    /// Turns off the no-hang invariant (for scenarios that hold requests by design).
    pub fn allow_unanswered_replies(mut self) -> Self {
        self.no_hang = false;
        self
    }

    /// The seeds this simulation will run, honouring `SINEW_SEED` and `SINEW_SEEDS`.
    pub fn seed_list(&self) -> Vec<u64> {
        if let Some(seed) = env_u64("SINEW_SEED") {
            return vec![seed];
        }
        let n = env_u64("SINEW_SEEDS").unwrap_or(self.seeds);
        (self.first_seed..self.first_seed + n).collect()
    }

    /// Runs every seed; panics on the first failure with the seed to replay.
    pub fn run(&self, scenario: impl Fn(&mut SimRun) -> Result<(), String>) {
        if let Err(f) = self.try_run(scenario) {
            panic!(
                "simulation '{}' failed: {}\n\n    SINEW_SEED={}\n",
                self.name, f.message, f.seed
            );
        }
    }

    /// Runs every seed; returns the first failure.
    pub fn try_run(
        &self,
        scenario: impl Fn(&mut SimRun) -> Result<(), String>,
    ) -> Result<(), SimFailure> {
        for seed in self.seed_list() {
            let trace = self.run_seed(seed, &scenario)?;
            if self.check {
                let again = self.run_seed(seed, &scenario)?;
                if let Some(i) = trace.iter().zip(again.iter()).position(|(a, b)| a != b) {
                    return Err(SimFailure {
                        seed,
                        message: format!(
                            "non-deterministic: traces diverge at event {i}: {:?} vs {:?}",
                            trace[i], again[i]
                        ),
                    });
                }
                if trace.len() != again.len() {
                    return Err(SimFailure {
                        seed,
                        message: format!(
                            "non-deterministic: {} vs {} events",
                            trace.len(),
                            again.len()
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Runs one seed; returns its trace.
    pub fn run_seed(
        &self,
        seed: u64,
        scenario: &impl Fn(&mut SimRun) -> Result<(), String>,
    ) -> Result<Vec<TraceEvent>, SimFailure> {
        let fail = |message: String| SimFailure { seed, message };
        let mut run = SimRun::new(seed, self.buggify);
        let outcome = catch_unwind(AssertUnwindSafe(|| scenario(&mut run)));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(fail(e)),
            Err(p) => return Err(fail(format!("scenario panicked: {}", panic_text(&p)))),
        }
        run.settle();
        if self.no_hang {
            let open = run.system.outstanding_replies();
            if open != 0 {
                return Err(fail(format!(
                    "no-hang invariant: {open} reply address(es) never answered once the system was quiescent"
                )));
            }
        }
        for (name, check) in &run.invariants {
            check(&run.system).map_err(|e| fail(format!("invariant '{name}' violated: {e}")))?;
        }
        let trace = run.system.trace();
        if let Ok(path) = std::env::var("SINEW_SIM_TRACE") {
            write_trace(&path, &self.name, seed, &trace);
        }
        Ok(trace)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}

fn write_trace(path: &str, name: &str, seed: u64, trace: &[TraceEvent]) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    match file {
        Ok(mut f) => {
            let _ = writeln!(
                f,
                "# simulation {name:?} seed {seed}: {} events",
                trace.len()
            );
            for e in trace {
                let _ = writeln!(f, "{} {}", e.at_ms, e.actor.as_u64());
            }
        }
        Err(e) => tracing::warn!(%path, error = %e, "cannot write SINEW_SIM_TRACE"),
    }
}
