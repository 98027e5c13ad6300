//! The `System`: worker threads, spawning and placement, and graceful shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::actor::{Actor, ActorId, ExitReason};
use crate::addr::{ActorRef, Addr, Recipient};
use crate::cell::{send_signal, ActorCell, ActorSlot, Signal, StopMode};
use crate::context::Context;
use crate::driver::{Driver, DriverFactory, ThreadParkDriver};
use crate::error::{RegistryError, SpawnError, SystemError};
use crate::group::Group;
use crate::mailbox::MailboxConfig;
use crate::metrics::SystemMetrics;
use crate::registry::Registry;
use crate::worker::{with_current, Clock, WorkerLocal, WorkerShared};

/// Which worker a new actor lives on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// A given worker, by index.
    Worker(usize),
    /// The spawning actor's worker (round-robin when spawned from outside the system).
    Local,
    /// The next worker in turn.
    RoundRobin,
    /// A worker chosen by hashing a key, so the same key always lands on the same worker.
    Key(u64),
}

/// Options for one spawn.
#[derive(Clone, Debug, Default)]
pub struct SpawnOptions {
    /// Placement; default: the parent's worker, or round-robin from outside.
    pub placement: Option<Placement>,
    /// Mailbox; default: the system's.
    pub mailbox: Option<MailboxConfig>,
    /// A name to register the actor under (unregistered when it stops).
    pub name: Option<String>,
    /// Messages this actor may handle per turn; default: the system's
    /// ([`SystemBuilder::batch`]).
    pub batch: Option<usize>,
}

impl SpawnOptions {
    /// Options placing the actor on worker `index`.
    pub fn on_worker(index: usize) -> Self {
        SpawnOptions {
            placement: Some(Placement::Worker(index)),
            ..Default::default()
        }
    }

    /// Sets the placement.
    pub fn placement(mut self, p: Placement) -> Self {
        self.placement = Some(p);
        self
    }

    /// Sets the mailbox.
    pub fn mailbox(mut self, m: MailboxConfig) -> Self {
        self.mailbox = Some(m);
        self
    }

    /// Sets how many messages this actor may handle per turn (0 counts as 1), overriding the
    /// system's [`SystemBuilder::batch`]. A server's busy actor (a shard every connection
    /// sends to) wants turns long enough to answer everything queued at their start: a turn
    /// that ends in the middle of a connection's burst of pipelined requests makes that
    /// connection send its answers in two pieces. The time slice still ends a long turn.
    pub fn batch(mut self, k: usize) -> Self {
        self.batch = Some(k);
        self
    }

    /// Sets the registered name.
    pub fn name(mut self, n: impl Into<String>) -> Self {
        self.name = Some(n.into());
        self
    }
}

pub(crate) struct SystemShared {
    pub(crate) workers: Vec<Arc<WorkerShared>>,
    rr: AtomicUsize,
    next_id: AtomicU64,
    accepting: AtomicBool,
    live: AtomicUsize,
    idle_lock: Mutex<()>,
    idle: Condvar,
    roots: Mutex<HashMap<ActorId, ActorRef>>,
    exit: Mutex<Option<ExitReason>>,
    pub(crate) registry: Registry,
    pub(crate) default_mailbox: MailboxConfig,
    pub(crate) timing: bool,
}

impl SystemShared {
    pub(crate) fn new(
        workers: Vec<Arc<WorkerShared>>,
        mailbox: MailboxConfig,
        timing: bool,
    ) -> Arc<Self> {
        Arc::new(SystemShared {
            workers,
            rr: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            accepting: AtomicBool::new(true),
            live: AtomicUsize::new(0),
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
            roots: Mutex::new(HashMap::new()),
            exit: Mutex::new(None),
            registry: Registry::default(),
            default_mailbox: mailbox,
            timing,
        })
    }

    fn pick_worker(&self, p: Placement) -> Result<Arc<WorkerShared>, SpawnError> {
        let n = self.workers.len();
        let i = match p {
            Placement::Worker(i) if i < n => i,
            Placement::Worker(i) => return Err(SpawnError::NoSuchWorker(i, n)),
            Placement::Local => {
                let here = with_current(|w| {
                    w.and_then(|w| self.workers.iter().position(|x| x.uid == w.shared.uid))
                });
                match here {
                    Some(i) => i,
                    None => self.rr.fetch_add(1, Ordering::Relaxed) % n,
                }
            }
            Placement::RoundRobin => self.rr.fetch_add(1, Ordering::Relaxed) % n,
            Placement::Key(k) => {
                // Fibonacci hashing spreads sequential keys evenly.
                (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % n
            }
        };
        Ok(self.workers[i].clone())
    }

    pub(crate) fn root_terminated(&self, id: ActorId) {
        self.roots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    pub(crate) fn actor_stopped(&self) {
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = self.idle_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.idle.notify_all();
        }
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Waits until no actor is alive or the deadline passes; true when none is alive.
    fn wait_idle(&self, deadline: Option<Instant>) -> bool {
        let mut g = self.idle_lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.live() == 0 {
                return true;
            }
            match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    g = self
                        .idle
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => g = self.idle.wait(g).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    pub(crate) fn begin_shutdown(&self) {
        self.accepting.store(false, Ordering::Release);
        let roots: Vec<ActorRef> = self
            .roots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for r in roots {
            send_signal(&r.0, Signal::Stop(ExitReason::Shutdown, StopMode::Drain));
        }
    }
}

/// Spawns `actor`; `parent` links it as a child.
pub(crate) fn spawn_actor<A: Actor>(
    system: &Arc<SystemShared>,
    actor: A,
    opts: SpawnOptions,
    parent: Option<ActorRef>,
) -> Result<Addr<A>, SpawnError> {
    if !system.accepting.load(Ordering::Acquire) {
        return Err(SpawnError::ShuttingDown);
    }
    let placement = opts.placement.unwrap_or(Placement::Local);
    let worker = system.pick_worker(placement)?;
    let id = ActorId(system.next_id.fetch_add(1, Ordering::Relaxed));
    let cell = Arc::new(ActorCell::<A>::new(
        id,
        worker,
        opts.mailbox.unwrap_or(system.default_mailbox),
    ));
    let addr = Addr { cell: cell.clone() };
    if let Some(name) = opts.name {
        // Registered before the first message can be sent, so lookups never miss it.
        if let Err(e) = system.registry.register(&name, &addr) {
            tracing::warn!(actor = %id, error = %e, "spawn: name not registered");
        }
    }
    system.live.fetch_add(1, Ordering::AcqRel);
    if parent.is_none() {
        system
            .roots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, addr.actor_ref());
    }
    tracing::trace!(actor = %id, worker = cell.home.index, "actor spawned");
    let slot = Box::new(ActorSlot {
        actor,
        ctx: Context::new(cell.clone(), parent),
        batch: opts.batch.map(|k| k.max(1)),
    });
    let home = cell.home.clone();
    home.run_on(move |w: &WorkerLocal| {
        let key = w.insert_slot(slot);
        cell.set_slot(w, key);
        w.schedule(key);
    });
    Ok(addr)
}

/// A cheap, cloneable handle to a running system: spawn, look up, inspect.
#[derive(Clone)]
pub struct SystemHandle {
    pub(crate) shared: Arc<SystemShared>,
}

impl std::fmt::Debug for SystemHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemHandle")
            .field("workers", &self.shared.workers.len())
            .finish()
    }
}

impl SystemHandle {
    /// Spawns a top-level actor (placement: round-robin).
    pub fn spawn<A: Actor>(&self, actor: A) -> Result<Addr<A>, SpawnError> {
        self.spawn_with(actor, SpawnOptions::default())
    }

    /// Spawns a top-level actor with options.
    pub fn spawn_with<A: Actor>(
        &self,
        actor: A,
        opts: SpawnOptions,
    ) -> Result<Addr<A>, SpawnError> {
        spawn_actor(&self.shared, actor, opts, None)
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }

    /// The mailbox of actors spawned without one ([`SystemBuilder::mailbox`]): what a
    /// sender can expect of an actor it did not configure, and what a component spawning
    /// actors for the user (a pool, an I/O group) starts from.
    pub fn default_mailbox(&self) -> MailboxConfig {
        self.shared.default_mailbox
    }

    /// Actors alive.
    pub fn live_actors(&self) -> usize {
        self.shared.live()
    }

    /// Registers `addr` under `name`. Fails if a live actor holds the name.
    pub fn register<A: Actor>(&self, name: &str, addr: &Addr<A>) -> Result<(), RegistryError> {
        self.shared.registry.register(name, addr)
    }

    /// Removes a name.
    pub fn unregister(&self, name: &str) {
        self.shared.registry.unregister(name)
    }

    /// The live actor registered under `name`, if it is an `A`.
    pub fn lookup<A: Actor>(&self, name: &str) -> Option<Addr<A>> {
        self.shared.registry.lookup(name)
    }

    /// The live actor registered under `name`, untyped.
    pub fn lookup_ref(&self, name: &str) -> Option<ActorRef> {
        self.shared.registry.lookup_ref(name)
    }

    /// Adds a member to the named group (members leave when they stop).
    pub fn join_group<M: Send + 'static>(&self, group: &str, member: Recipient<M>) {
        self.shared.registry.join_group(group, member)
    }

    /// Removes a member from the named group.
    pub fn leave_group(&self, group: &str, id: ActorId) {
        self.shared.registry.leave_group(group, id)
    }

    /// The live members of a named group that accept `M`.
    pub fn group<M: Send + 'static>(&self, group: &str) -> Group<M> {
        self.shared.registry.group(group)
    }

    /// Stops the system with a reason: refuses new actors and shuts the top-level actors down
    /// gracefully (children first). The first reason given is kept; [`System::join`] returns it.
    /// A root supervisor that gives up calls this, so the process can exit with a clear cause.
    pub fn shutdown_with(&self, reason: ExitReason) {
        {
            let mut exit = self.shared.exit.lock().unwrap_or_else(|e| e.into_inner());
            if exit.is_none() {
                tracing::warn!(%reason, "system shutting down");
                *exit = Some(reason);
            }
        }
        self.shared.begin_shutdown();
    }

    /// The reason given to [`SystemHandle::shutdown_with`], if any.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.shared
            .exit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counters for every worker.
    pub fn metrics(&self) -> SystemMetrics {
        SystemMetrics {
            live_actors: self.shared.live(),
            workers: self
                .shared
                .workers
                .iter()
                .map(|w| w.stats.snapshot(w.index))
                .collect(),
        }
    }
}

/// How long an idle worker spins before parking unless configured
/// ([`SystemBuilder::spin`], [`SPIN_ENV`]); whether it spins at all in a given idle period is
/// learned ([`SystemBuilder::adaptive_spin`]).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// The environment variable that sets the idle spin, in microseconds (`0` parks at once),
/// for systems whose builder does not set it: a deployment's latency-for-CPU choice.
pub const SPIN_ENV: &str = "SINEW_SPIN_US";

/// The spin [`SPIN_ENV`] asks for, if set.
fn spin_from_env() -> Result<Option<Duration>, SystemError> {
    parse_spin(std::env::var(SPIN_ENV).ok().as_deref())
}

/// The environment variable that sets the batch ([`SystemBuilder::batch`]) for systems whose
/// builder does not set it: a deployment's latency-for-throughput choice.
pub const BATCH_ENV: &str = "SINEW_BATCH";

/// The batch [`BATCH_ENV`] asks for, if set: a whole number of at least 1, or an error.
fn parse_batch(value: Option<&str>) -> Result<Option<usize>, SystemError> {
    value
        .map(|v| match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(SystemError::Config(
                "SINEW_BATCH must be a whole number of messages, at least 1",
            )),
        })
        .transpose()
}

/// A value that is not a whole number of microseconds is a configuration error, not silently
/// the default.
fn parse_spin(value: Option<&str>) -> Result<Option<Duration>, SystemError> {
    value
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map(Duration::from_micros)
                .map_err(|_| {
                    SystemError::Config("SINEW_SPIN_US must be a whole number of microseconds")
                })
        })
        .transpose()
}

/// Messages an actor handles per turn unless [`SystemBuilder::batch`], [`BATCH_ENV`] or
/// [`SpawnOptions::batch`] say otherwise. The worker also looks at its driver after at most
/// twice this many messages in a run of turns.
///
/// Larger is not simply better. At 512, a RESP shard answered every queued burst in one turn
/// and polled epoll ten times less often (1.2x faster pipelined), but the RESP client, whose
/// connection writes what its callers queued at the end of each turn, halved its throughput
/// at 256 callers: fewer, larger writes left the server idle while the client gathered the
/// next one. So the default stays small, and a busy server actor asks for long turns
/// ([`SpawnOptions::batch`]).
pub const DEFAULT_BATCH: usize = 64;

/// Builds a [`System`].
pub struct SystemBuilder {
    workers: usize,
    pin: Option<Vec<usize>>,
    /// Set by [`SystemBuilder::batch`]; else [`BATCH_ENV`], else [`DEFAULT_BATCH`].
    batch: Option<usize>,
    /// Set by [`SystemBuilder::spin`]; else [`SPIN_ENV`], else [`DEFAULT_SPIN`].
    spin: Option<Duration>,
    /// [`SystemBuilder::adaptive_spin`].
    adaptive_spin: bool,
    mailbox: MailboxConfig,
    driver: Option<DriverFactory>,
    timing: bool,
    name: String,
}

impl Default for SystemBuilder {
    fn default() -> Self {
        SystemBuilder {
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            pin: None,
            batch: None,
            spin: None,
            adaptive_spin: true,
            mailbox: MailboxConfig::default(),
            driver: None,
            timing: false,
            name: "sinew".into(),
        }
    }
}

impl SystemBuilder {
    /// Number of worker threads (default: available parallelism).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Pins worker `i` to core `i % cores`.
    pub fn pin_workers(mut self, on: bool) -> Self {
        self.pin = if on {
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            Some((0..self.workers).map(|i| i % cores).collect())
        } else {
            None
        };
        self
    }

    /// Pins worker `i` to `cores[i]` (must list one core per worker).
    pub fn pin_to(mut self, cores: Vec<usize>) -> Self {
        self.pin = Some(cores);
        self
    }

    /// Messages an actor may handle per turn before others run (fairness; default
    /// [`DEFAULT_BATCH`], or [`BATCH_ENV`] where set). The worker also looks at its driver,
    /// timers and other threads' work after at most twice this many messages in a run of
    /// turns, so it bounds how long I/O waits too.
    pub fn batch(mut self, k: usize) -> Self {
        self.batch = Some(k);
        self
    }

    /// How long an idle worker spins before parking (zero parks at once). Without this call
    /// the environment variable [`SPIN_ENV`] (microseconds) decides, else [`DEFAULT_SPIN`].
    ///
    /// Spinning trades CPU for latency: a message from another worker, or a completion,
    /// that arrives while the worker spins costs no wake-up (waking a parked core costs
    /// microseconds, tens on a virtual machine), but every spin that ends in a park is CPU
    /// spent on nothing. Servers judged per CPU-second, or sharing their cores, want less.
    pub fn spin(mut self, d: Duration) -> Self {
        self.spin = Some(d);
        self
    }

    /// Whether the spin adapts (the default): a worker spins while messages from other
    /// threads keep ending its idle periods, and stops spinning (one probe every sixteen idle
    /// periods) while only its driver's I/O or nothing does, since a socket wakes a parked
    /// driver anyway. `false` spins in every idle period, for the lowest latency of I/O at
    /// the cost of that CPU.
    pub fn adaptive_spin(mut self, adaptive: bool) -> Self {
        self.adaptive_spin = adaptive;
        self
    }

    /// The default mailbox of actors spawned without one.
    pub fn mailbox(mut self, m: MailboxConfig) -> Self {
        self.mailbox = m;
        self
    }

    /// The driver each worker parks in (default: thread park). Called on the worker thread.
    pub fn driver(self, f: impl Fn(usize) -> Box<dyn Driver> + Send + Sync + 'static) -> Self {
        self.try_driver(move |i| Ok(f(i)))
    }

    /// Like [`SystemBuilder::driver`] for factories that can fail: `build` then returns
    /// `SystemError::Driver` naming the worker, and stops the workers already started.
    pub fn try_driver(
        mut self,
        f: impl Fn(usize) -> Result<Box<dyn Driver>, crate::driver::DriverError> + Send + Sync + 'static,
    ) -> Self {
        self.driver = Some(Arc::new(f));
        self
    }

    /// Records handler time and scheduling delay (two clock reads per turn).
    pub fn timing(mut self, on: bool) -> Self {
        self.timing = on;
        self
    }

    /// Thread name prefix.
    pub fn name(mut self, n: impl Into<String>) -> Self {
        self.name = n.into();
        self
    }

    /// Starts the workers.
    pub fn build(self) -> Result<System, SystemError> {
        if self.workers == 0 {
            return Err(SystemError::Config("workers must be at least 1"));
        }
        let batch = match self.batch {
            Some(0) => return Err(SystemError::Config("batch must be at least 1")),
            Some(k) => k,
            None => parse_batch(std::env::var(BATCH_ENV).ok().as_deref())?.unwrap_or(DEFAULT_BATCH),
        };
        if self.mailbox.capacity == 0 {
            return Err(SystemError::Config("mailbox capacity must be at least 1"));
        }
        let spin = match self.spin {
            Some(d) => d,
            None => spin_from_env()?.unwrap_or(DEFAULT_SPIN),
        };
        let core_ids = core_affinity::get_core_ids().unwrap_or_default();
        if let Some(pin) = &self.pin {
            if pin.len() < self.workers {
                return Err(SystemError::Config("pin_to must list one core per worker"));
            }
            for (worker, core) in pin.iter().enumerate().take(self.workers) {
                if !core_ids.iter().any(|c| c.id == *core) {
                    return Err(SystemError::NoSuchCore {
                        worker,
                        core: *core,
                    });
                }
            }
        }
        let workers: Vec<_> = (0..self.workers).map(WorkerShared::new).collect();
        let shared = SystemShared::new(workers.clone(), self.mailbox, self.timing);
        let origin = Instant::now();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), (usize, String)>>();
        let mut threads = Vec::new();
        for (i, ws) in workers.iter().enumerate() {
            let ws = ws.clone();
            let sys = shared.clone();
            let factory = self.driver.clone();
            let core = self.pin.as_ref().map(|p| p[i]);
            let adaptive = self.adaptive_spin;
            let ready = ready_tx.clone();
            let t = std::thread::Builder::new()
                .name(format!("{}-w{i}", self.name))
                .spawn(move || {
                    if let Some(core) = core {
                        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                            tracing::warn!(worker = i, core, "could not pin worker");
                        }
                    }
                    let made: Result<Box<dyn Driver>, _> = match factory {
                        Some(f) => f(i),
                        None => Ok(Box::new(ThreadParkDriver::new())),
                    };
                    let mut driver = match made {
                        Ok(d) => d,
                        Err(e) => {
                            let _ = ready.send(Err((i, e.to_string())));
                            return;
                        }
                    };
                    ws.set_unparker(driver.unparker());
                    let local = WorkerLocal::new(ws, sys, Clock::Real { origin }, batch, None);
                    let _ = ready.send(Ok(()));
                    local.run_loop(&mut *driver, spin, adaptive);
                })?;
            threads.push(t);
        }
        drop(ready_tx);
        let mut failure = None;
        for _ in 0..threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err((worker, error))) => failure = failure.or(Some((worker, error))),
                // A worker that died before reporting shows up as a closed channel.
                Err(_) => break,
            }
        }
        if let Some((worker, error)) = failure {
            for w in &workers {
                w.terminate();
            }
            for t in threads {
                let _ = t.join();
            }
            return Err(SystemError::Driver { worker, error });
        }
        tracing::debug!(workers = self.workers, "system started");
        Ok(System {
            handle: SystemHandle { shared },
            threads,
        })
    }
}

/// What a shutdown did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every actor stopped within the timeout.
    pub clean: bool,
    /// Actors still alive at the deadline and killed.
    pub killed: usize,
    /// Time the shutdown took.
    pub elapsed: Duration,
}

/// A running actor system: worker threads and everything on them.
pub struct System {
    handle: SystemHandle,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("System")
            .field("workers", &self.threads.len())
            .finish()
    }
}

impl std::ops::Deref for System {
    type Target = SystemHandle;

    fn deref(&self) -> &SystemHandle {
        &self.handle
    }
}

impl System {
    /// A builder with defaults.
    pub fn builder() -> SystemBuilder {
        SystemBuilder::default()
    }

    /// A cloneable handle.
    pub fn handle(&self) -> SystemHandle {
        self.handle.clone()
    }

    /// Graceful shutdown: refuse new actors, stop top-level actors (each stops its children
    /// first, then handles what is queued), and wait up to `timeout`; whatever is still alive
    /// then is killed. Joins the worker threads.
    pub fn shutdown(mut self, timeout: Duration) -> ShutdownReport {
        self.shutdown_inner(timeout)
    }

    /// Waits until every actor has stopped (on its own, or after
    /// [`SystemHandle::shutdown_with`]), then stops the workers. Returns the reason given to
    /// `shutdown_with`, if any.
    pub fn join(mut self) -> Option<ExitReason> {
        self.handle.shared.wait_idle(None);
        self.shutdown_inner(Duration::ZERO);
        self.handle.exit_reason()
    }

    /// Waits up to `timeout` for every actor to stop on its own; true when they did.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.handle.shared.wait_idle(Some(Instant::now() + timeout))
    }

    fn shutdown_inner(&mut self, timeout: Duration) -> ShutdownReport {
        let start = Instant::now();
        let shared = &self.handle.shared;
        shared.begin_shutdown();
        let clean = shared.wait_idle(Some(start + timeout));
        let killed = shared.live();
        if !clean {
            tracing::warn!(
                remaining = killed,
                "shutdown timed out; killing remaining actors"
            );
        }
        for w in &shared.workers {
            w.terminate();
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("worker thread panicked");
            }
        }
        tracing::debug!(clean, killed, "system stopped");
        ShutdownReport {
            clean,
            killed,
            elapsed: start.elapsed(),
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown_inner(Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_from_the_environment_is_microseconds_or_an_error() {
        assert_eq!(parse_spin(None).ok(), Some(None));
        assert_eq!(parse_spin(Some("0")).ok(), Some(Some(Duration::ZERO)));
        assert_eq!(
            parse_spin(Some(" 200 ")).ok(),
            Some(Some(Duration::from_micros(200)))
        );
        for bad in ["", "-1", "50us", "1.5"] {
            assert!(
                matches!(parse_spin(Some(bad)), Err(SystemError::Config(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn the_default_mailbox_is_readable_from_a_handle() {
        let sys = System::builder().workers(1).build().unwrap();
        assert_eq!(sys.handle().default_mailbox(), MailboxConfig::default());
        sys.shutdown(Duration::from_secs(5));
        let sys = System::builder()
            .workers(1)
            .mailbox(MailboxConfig::bounded(7))
            .build()
            .unwrap();
        assert_eq!(sys.handle().default_mailbox().capacity, 7);
        sys.shutdown(Duration::from_secs(5));
    }

    #[test]
    fn batch_from_the_environment_is_a_positive_count_or_an_error() {
        assert_eq!(parse_batch(None).ok(), Some(None));
        assert_eq!(parse_batch(Some(" 64 ")).ok(), Some(Some(64)));
        for bad in ["", "0", "-1", "64k", "1.5"] {
            assert!(
                matches!(parse_batch(Some(bad)), Err(SystemError::Config(_))),
                "{bad:?} accepted"
            );
        }
    }
}
