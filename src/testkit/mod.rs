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
//! I/O actors run on simulated hosts ([`SimRun::host`]): each host is a system of its own
//! whose actors reach a simulated network (`sinew_transports::SimNet`) through a reactor bound
//! to the host's address, so `serve`, `ClientConn` and `Pool` run unchanged. The run drives
//! every host, the network and the scenario's own system under one virtual clock, and
//! [`SimRun::net`] injects network faults (partitions, swizzle-clog, resets, lossy or slow
//! links) now or at virtual times; hosts crash and restart ([`SimHost::crash`],
//! [`SimHost::boot`], [`NetFault::CrashHost`], [`SimNetwork::random_crashes`]). See
//! docs/TESTING.md, `tests/sim_network.rs` and `tests/sim_host_restart.rs`.
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
#[cfg(feature = "io-actors")]
mod net;
mod plan;
mod rng;

use std::cell::RefCell;
use std::future::Future;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use sinew_actors::{DeterministicSystem, TraceEvent};

#[cfg(feature = "io-actors")]
pub use net::{NetFault, RandomCrashes, RandomFaults, SimHost, SimNetwork};
pub use plan::{FaultPlan, Target};
pub use rng::SimRng;
#[cfg(feature = "io-actors")]
pub use sinew_transports::LinkConfig;

/// The examples of docs/TESTING.md compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/TESTING.md")]
pub struct TestingGuideDoctests;

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

/// One run of a scenario: the system, the fault plan, seeded randomness, invariants, and
/// (once asked for) simulated hosts on a simulated network.
pub struct SimRun {
    system: DeterministicSystem,
    plan: Rc<RefCell<FaultPlan>>,
    rng: SimRng,
    invariants: Vec<(String, Invariant)>,
    horizon: Duration,
    #[cfg(feature = "io-actors")]
    buggify: bool,
    #[cfg(feature = "io-actors")]
    world: std::cell::OnceCell<Rc<net::World>>,
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
            #[cfg(feature = "io-actors")]
            buggify,
            #[cfg(feature = "io-actors")]
            world: std::cell::OnceCell::new(),
        }
    }

    /// The scenario's own simulated system (it has no network: put I/O actors on a
    /// [`SimRun::host`]).
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

    /// Drives the simulation until `fut` completes (virtual time jumps when nothing is
    /// runnable). With simulated hosts, fails when `fut` has not completed after the settle
    /// horizon ([`SimRun::settle_horizon`]) of virtual time: a segment sent into a lasting
    /// partition is retransmitted forever, so "nothing left to do" may never come.
    pub fn block_on<F: Future>(&self, fut: F) -> Result<F::Output, String> {
        #[cfg(feature = "io-actors")]
        if let Some(world) = self.world.get() {
            return world.block_on(&self.system, fut, self.horizon);
        }
        self.system.block_on(fut).map_err(|e| e.to_string())
    }

    /// Advances virtual time by `d`, running everything due (actors on every host, network
    /// events, scheduled faults) in time order.
    pub fn advance(&self, d: Duration) {
        #[cfg(feature = "io-actors")]
        if let Some(world) = self.world.get() {
            return world.advance(&self.system, d);
        }
        self.system.advance(d);
    }

    /// Runs everything runnable at the current virtual time, on every host, until nothing is.
    pub fn run_until_idle(&self) {
        #[cfg(feature = "io-actors")]
        if let Some(world) = self.world.get() {
            return world.run_until_idle(&self.system);
        }
        self.system.run_until_idle();
    }

    /// Jumps the clock forward by `d` at once, without running what falls due in between
    /// first (timers then fire late, all together): a clock-jump fault.
    pub fn jump_clock(&self, d: Duration) {
        #[cfg(feature = "io-actors")]
        if let Some(world) = self.world.get() {
            return world.jump(&self.system, d);
        }
        self.system.jump(d);
    }

    /// Runs until nothing is runnable and no timer is due within the horizon.
    fn settle(&self) {
        #[cfg(feature = "io-actors")]
        if let Some(world) = self.world.get() {
            return world.settle(&self.system, self.horizon);
        }
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

#[cfg(feature = "io-actors")]
impl SimRun {
    fn world(&self) -> &Rc<net::World> {
        self.world
            .get_or_init(|| net::World::new(self.system.seed(), self.buggify, self.system.now_ms()))
    }

    /// The simulated network every host of this run is on (created with the first call,
    /// seeded from the run's seed): faults now or at virtual times, link parameters.
    pub fn net(&self) -> SimNetwork {
        SimNetwork::new(self.world().clone())
    }

    /// The simulated host with address `ip`, created on first use: a system of its own whose
    /// actors (and their children) reach the network through a reactor bound to `ip`, so
    /// `serve`, `ClientConn` and `Pool` run on it unchanged. The run drives every host, the
    /// network and the scenario's own system together, under one virtual clock.
    pub fn host(&self, ip: impl Into<std::net::IpAddr>) -> SimHost {
        self.world().host(ip.into())
    }

    /// Runs `f` on a helper thread while this thread steps the simulated hosts (in a fixed
    /// order, virtual time standing still) until `f` returns; returns what `f` returned. For
    /// setup calls that wait for actors to answer, such as `sinew_io_actors::serve`
    /// ([`SimHost::serve`] wraps that one). The result stays deterministic as long as `f`
    /// submits one thing at a time and waits for its effect before the next.
    pub fn blocking<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.world().blocking(f)
    }
}

/// What one seed's run leaves for the determinism check.
struct Record {
    /// Actor turns: the scenario's system, then each host's.
    trace: Vec<TraceEvent>,
    /// The harness's interleaving of systems and network deliveries (empty without hosts).
    schedule: Vec<u64>,
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
            let first = self.run_once(seed, &scenario)?;
            if self.check {
                let again = self.run_once(seed, &scenario)?;
                let (trace, again_trace) = (&first.trace, &again.trace);
                if let Some(i) = trace
                    .iter()
                    .zip(again_trace.iter())
                    .position(|(a, b)| a != b)
                {
                    return Err(SimFailure {
                        seed,
                        message: format!(
                            "non-deterministic: traces diverge at event {i}: {:?} vs {:?}",
                            trace[i], again_trace[i]
                        ),
                    });
                }
                if trace.len() != again_trace.len() {
                    return Err(SimFailure {
                        seed,
                        message: format!(
                            "non-deterministic: {} vs {} events",
                            trace.len(),
                            again_trace.len()
                        ),
                    });
                }
                if first.schedule != again.schedule {
                    let i = first
                        .schedule
                        .iter()
                        .zip(again.schedule.iter())
                        .position(|(a, b)| a != b)
                        .unwrap_or(first.schedule.len().min(again.schedule.len()));
                    return Err(SimFailure {
                        seed,
                        message: format!(
                            "non-deterministic: the interleaving of hosts and network deliveries \
                             diverges at step {i} (of {} vs {})",
                            first.schedule.len(),
                            again.schedule.len()
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Runs one seed; returns its trace (the scenario's system's actor turns, then each
    /// simulated host's, in creation order).
    pub fn run_seed(
        &self,
        seed: u64,
        scenario: &impl Fn(&mut SimRun) -> Result<(), String>,
    ) -> Result<Vec<TraceEvent>, SimFailure> {
        self.run_once(seed, scenario).map(|r| r.trace)
    }

    fn run_once(
        &self,
        seed: u64,
        scenario: &impl Fn(&mut SimRun) -> Result<(), String>,
    ) -> Result<Record, SimFailure> {
        let fail = |message: String| SimFailure { seed, message };
        let mut run = SimRun::new(seed, self.buggify);
        let outcome = catch_unwind(AssertUnwindSafe(|| scenario(&mut run)));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(fail(e)),
            Err(p) => return Err(fail(format!("scenario panicked: {}", panic_text(&p)))),
        }
        run.harness_failures().map_err(fail)?;
        run.settle();
        run.harness_failures().map_err(fail)?;
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
        let (record, sections) = run.record();
        if let Ok(path) = std::env::var("SINEW_SIM_TRACE") {
            write_trace(&path, &self.name, seed, &record.trace, &sections);
        }
        Ok(record)
    }
}

impl SimRun {
    /// What failed outside the scenario's code (a simulated host's boot at a restart).
    fn harness_failures(&self) -> Result<(), String> {
        #[cfg(feature = "io-actors")]
        if let Some(world) = self.world.get() {
            let failures = world.take_failures();
            if !failures.is_empty() {
                return Err(failures.join("; "));
            }
        }
        Ok(())
    }

    /// The run's record, and the trace's sections (a label and an event count per system:
    /// the scenario's own, unlabelled, then each host's).
    fn record(&self) -> (Record, Vec<(String, usize)>) {
        let trace = self.system.trace();
        let sections = vec![(String::new(), trace.len())];
        #[cfg(feature = "io-actors")]
        if let Some(world) = self.world.get() {
            let (mut trace, mut sections) = (trace, sections);
            for (ip, t) in world.traces() {
                sections.push((ip.to_string(), t.len()));
                trace.extend(t);
            }
            let schedule = world.schedule();
            return (Record { trace, schedule }, sections);
        }
        let schedule = Vec::new();
        (Record { trace, schedule }, sections)
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

/// Writes a run's trace: one `virtual-ms actor` line per actor turn; a simulated host's turns
/// follow a `# host <ip>` line (`sections`: a label and an event count per system).
fn write_trace(
    path: &str,
    name: &str,
    seed: u64,
    trace: &[TraceEvent],
    sections: &[(String, usize)],
) {
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
            let mut events = trace.iter();
            for (label, n) in sections {
                if !label.is_empty() {
                    let _ = writeln!(f, "# host {label}");
                }
                for e in events.by_ref().take(*n) {
                    let _ = writeln!(f, "{} {}", e.at_ms, e.actor.as_u64());
                }
            }
        }
        Err(e) => tracing::warn!(%path, error = %e, "cannot write SINEW_SIM_TRACE"),
    }
}
