//! Simulated hosts on a simulated network: I/O actors (servers, client connections, pools)
//! under the deterministic harness, with network faults driven from the scenario.
//!
//! # Design
//!
//! Each simulated host is its own single-threaded [`DeterministicSystem`] with its own
//! [`WorkerIo`]: a reactor on one shared [`SimNet`], bound to the host's IP. Actors belong to
//! the host they were spawned on, and so do their children (a listener's connection actors, a
//! pool's client connections), because children live on their parent's worker. Whenever the
//! harness runs one of a host's actors, or hands it completions, it first installs that host's
//! `WorkerIo` as the thread's worker extension: `ctx.extension::<WorkerIo>()` (what `serve`,
//! `ClientConn` and `Pool` use) then reaches the host's own reactor, so a connection's source
//! address, its partitions and its resets are the host's.
//!
//! All systems and the network run on the calling thread under one virtual clock. One harness
//! step hands every host the completions its reactor has ready, then runs one step of one
//! system chosen by a seeded generator (the scenario's own system, [`SimRun::system`], is one
//! of them). When nothing is runnable, time jumps to the earliest of: an actor timer (any
//! system), a network event (a segment arriving, a retransmission, a connect timeout) and a
//! scheduled fault. The network keeps nanoseconds; actor clocks see the millisecond it falls
//! in. Same seed, same schedule, same segments, same faults.
//!
//! [`SimRun::system`]: super::SimRun::system

use std::cell::{Cell, OnceCell, RefCell, RefMut};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::rc::{Rc, Weak};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use sinew_actors::{
    remove_worker_extension, set_worker_extension, Actor, Addr, DeterministicSystem, SpawnError,
    SystemHandle, TraceEvent,
};
use sinew_io_actors::{serve, Routes, ServeError, ServedProtocol, ServerConfig, WorkerIo};
use sinew_transports::{LinkConfig, SimNet};

use super::plan::{FaultPlan, SharedPlan};
use super::rng::SimRng;

/// Nanoseconds in a millisecond (actor clocks tick in milliseconds).
const MS: u64 = 1_000_000;

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A network fault, applied at once ([`SimNetwork::apply`]) or at a virtual time
/// ([`SimNetwork::at`], [`SimNetwork::after`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum NetFault {
    /// Blocks traffic both ways between two hosts. Segments sent into the partition are
    /// retransmitted (every `NetConfig::rto`) until it heals; connects time out.
    Partition(IpAddr, IpAddr),
    /// Lets traffic flow both ways between two hosts again.
    Heal(IpAddr, IpAddr),
    /// Blocks one direction only (a clogged link).
    Clog {
        /// Sending host.
        from: IpAddr,
        /// Receiving host.
        to: IpAddr,
    },
    /// Unblocks one direction.
    Unclog {
        /// Sending host.
        from: IpAddr,
        /// Receiving host.
        to: IpAddr,
    },
    /// Removes every partition and clog.
    HealAll,
    /// Resets every connection between two hosts: both ends fail at once with
    /// `ConnectionReset`.
    Reset(IpAddr, IpAddr),
    /// Resets every connection of one host (a rebooted peer, a flapping NIC).
    ResetHost(IpAddr),
    /// Sets one direction's link: latency, jitter, loss, duplication, reordering, bandwidth,
    /// slow reader.
    Link {
        /// Sending host.
        from: IpAddr,
        /// Receiving host.
        to: IpAddr,
        /// The new behaviour of that direction.
        link: LinkConfig,
    },
    /// Returns one direction to the default link.
    ClearLink {
        /// Sending host.
        from: IpAddr,
        /// Receiving host.
        to: IpAddr,
    },
    /// Sets the link every direction without a link of its own uses.
    DefaultLink(LinkConfig),
    /// Crashes a host ([`SimHost::crash`]): its actors die at once, its connections are reset
    /// (peers see `ConnectionReset`), its listeners vanish (connects are refused).
    CrashHost(IpAddr),
    /// Restarts a crashed host ([`SimHost::restart`]): a fresh system on the same address
    /// whose boot closure ([`SimHost::boot`]) runs again.
    RestartHost(IpAddr),
}

/// What [`SimNetwork::random_faults`] may inject, and how often.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomFaults {
    /// Mean virtual time between two faults (each gap is uniform in `[0, 2 * mean_gap]`).
    pub mean_gap: Duration,
    /// How long a partition, clog or degraded link lasts at most (uniform in `[1 ms, max]`).
    pub max_hold: Duration,
    /// Relative weight of two-way partitions.
    pub partitions: u32,
    /// Relative weight of one-way clogs.
    pub clogs: u32,
    /// Relative weight of connection resets between two hosts.
    pub resets: u32,
    /// Relative weight of degraded links (the `degraded` link for a while).
    pub slow_links: u32,
    /// The link a degraded direction gets.
    pub degraded: LinkConfig,
}

impl Default for RandomFaults {
    fn default() -> Self {
        RandomFaults {
            mean_gap: Duration::from_millis(200),
            max_hold: Duration::from_millis(500),
            partitions: 1,
            clogs: 1,
            resets: 1,
            slow_links: 1,
            degraded: LinkConfig {
                latency: Duration::from_millis(20),
                jitter: Duration::from_millis(20),
                loss: 0.2,
                reorder: 0.2,
                ..LinkConfig::default()
            },
        }
    }
}

/// What [`SimNetwork::random_crashes`] injects: hosts crashing and coming back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomCrashes {
    /// Mean virtual time a host stays up between two crashes (each gap is uniform in
    /// `[0, 2 * mean_up]`).
    pub mean_up: Duration,
    /// How long a crashed host stays down at least.
    pub min_down: Duration,
    /// How long a crashed host stays down at most (uniform in `[min_down, max_down]`).
    pub max_down: Duration,
}

impl Default for RandomCrashes {
    fn default() -> Self {
        RandomCrashes {
            mean_up: Duration::from_secs(2),
            min_down: Duration::from_millis(100),
            max_down: Duration::from_secs(2),
        }
    }
}

/// What runs when a host boots: at [`SimHost::boot`], and again at every restart.
type Boot = Rc<dyn Fn(&SimHost) -> Result<(), String>>;

/// One simulated host: a deterministic system whose actors reach the simulated network through
/// a reactor bound to the host's IP. A cheap handle; clones share the host.
///
/// A host can crash and restart ([`SimHost::crash`], [`SimHost::restart`],
/// [`NetFault::CrashHost`], [`SimNetwork::random_crashes`]): each life of the host (an
/// incarnation) is a fresh system and a fresh reactor on the same address, and what
/// [`SimHost::boot`] set up runs again at every restart. Nothing survives a crash but what
/// the scenario keeps outside the host (a "disk" it hands to the boot closure).
#[derive(Clone)]
pub struct SimHost {
    inner: Rc<HostInner>,
}

struct HostInner {
    ip: IpAddr,
    /// 1-based: 0 is the scenario's own system in the harness's schedule.
    index: usize,
    seed: u64,
    buggify: bool,
    /// The current incarnation (replaced at each crash).
    life: RefCell<Rc<Life>>,
    /// False between a crash and the restart.
    up: Cell<bool>,
    /// Incarnations so far, the first included.
    lives: Cell<u32>,
    /// The actor turns of the incarnations that crashed, in order.
    past_traces: RefCell<Vec<TraceEvent>>,
    boot: RefCell<Option<Boot>>,
    /// Shared by every incarnation (ids are those of the current one's actors).
    plan: OnceCell<Rc<RefCell<FaultPlan>>>,
    world: Weak<World>,
}

/// One incarnation of a host: what a crash throws away.
struct Life {
    // Dropped first: killing the actors releases their handles on the reactor below.
    system: DeterministicSystem,
    io: Rc<WorkerIo>,
}

impl HostInner {
    fn life(&self) -> Rc<Life> {
        self.life.borrow().clone()
    }

    /// Incarnation number `life` (1-based), its clock at `now_ns`.
    fn new_life(&self, net: &SimNet, now_ns: u64, life: u32) -> Life {
        let lives = u64::from(life - 1);
        let system =
            DeterministicSystem::new(self.seed ^ lives.wrapping_mul(0xD1B5_4A32_D192_ED03));
        system.set_buggify(self.buggify);
        if let Some(plan) = self.plan.get() {
            system.set_fault_hook(Some(Box::new(SharedPlan(plan.clone()))));
        }
        let now_ms = now_ns / MS;
        if now_ms > 0 {
            system.jump(Duration::from_millis(now_ms));
        }
        let io = Rc::new(WorkerIo::detached(net.reactor(self.ip)));
        Life { system, io }
    }
}

impl std::fmt::Debug for SimHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHost")
            .field("ip", &self.inner.ip)
            .field("up", &self.inner.up.get())
            .field("lives", &self.inner.lives.get())
            .field("live_actors", &self.inner.life().system.live_actors())
            .finish()
    }
}

impl SimHost {
    /// The host's address.
    pub fn ip(&self) -> IpAddr {
        self.inner.ip
    }

    /// The socket address `ip:port` on this host.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.inner.ip, port)
    }

    /// The system of the host's current incarnation (for lookups, metrics, its trace). Drive
    /// it through the run ([`SimRun::block_on`](super::SimRun::block_on),
    /// [`SimRun::advance`](super::SimRun::advance),
    /// [`SimRun::run_until_idle`](super::SimRun::run_until_idle)), not on its own: only the run
    /// moves the network and the other hosts along. Release the guard before the run goes on:
    /// a crash replaces the system.
    pub fn system(&self) -> std::cell::Ref<'_, DeterministicSystem> {
        std::cell::Ref::map(self.inner.life.borrow(), |l| &l.system)
    }

    /// A handle to the system of the host's current incarnation, for APIs that take one
    /// (`serve`, `PoolGroup`...).
    pub fn handle(&self) -> SystemHandle {
        self.inner.life().system.handle()
    }

    /// Spawns a top-level actor on this host. It, and every child it spawns, uses this host's
    /// reactor. Fails with `ShuttingDown` while the host is down.
    pub fn spawn<A: Actor>(&self, actor: A) -> Result<Addr<A>, SpawnError> {
        if !self.is_up() {
            return Err(SpawnError::ShuttingDown);
        }
        self.inner.life().system.spawn(actor)
    }

    /// Runs `f` as if on this host's worker: sends from inside are local, and
    /// `worker_extension::<WorkerIo>()` is this host's (to use its reactor directly).
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        let life = self.inner.life();
        set_worker_extension(life.io.clone());
        life.system.enter(f)
    }

    /// The host's I/O: its reactor on the simulated network and its completion routes (the
    /// current incarnation's).
    pub fn io(&self) -> Rc<WorkerIo> {
        self.inner.life().io.clone()
    }

    /// Message faults for this host's actors (actor ids are per host, so each host has its own
    /// plan; [`SimRun::faults`](super::SimRun::faults) covers the scenario's own system).
    /// Completions are messages too: a plan that drops or delays messages to an I/O actor
    /// drops or delays its completions, which a real kernel never does; aim rules at
    /// application actors and use network faults for I/O. The plan survives restarts, but
    /// actor ids start again in each incarnation.
    pub fn faults(&self) -> RefMut<'_, FaultPlan> {
        let inner = &self.inner;
        inner
            .plan
            .get_or_init(|| {
                let plan = Rc::new(RefCell::new(FaultPlan::new(inner.seed)));
                inner
                    .life()
                    .system
                    .set_fault_hook(Some(Box::new(SharedPlan(plan.clone()))));
                plan
            })
            .borrow_mut()
    }

    /// Sets what runs when this host boots, and boots it now: `setup` spawns the host's
    /// actors and servers (`serve`, [`SimHost::serve`]) and runs again, on a fresh system,
    /// every time the host restarts after a crash. State the host should keep across crashes
    /// lives outside it (an `Rc<RefCell<..>>` the closure captures: the host's "disk"). A
    /// failing setup at a restart fails the run.
    pub fn boot(
        &self,
        setup: impl Fn(&SimHost) -> Result<(), String> + 'static,
    ) -> Result<(), String> {
        let setup: Boot = Rc::new(setup);
        *self.inner.boot.borrow_mut() = Some(setup.clone());
        setup(self)
    }

    /// True unless the host crashed and has not restarted yet.
    pub fn is_up(&self) -> bool {
        self.inner.up.get()
    }

    /// The host's incarnations so far (1 before its first crash, 2 after its first restart...).
    pub fn lives(&self) -> u32 {
        self.inner.lives.get()
    }

    /// Crashes the host now: every actor on it is killed at once (no `stopping` hooks: their
    /// pending reply addresses drop, answering their callers with an error), every
    /// connection with an end on it is reset (its peers see `ConnectionReset` at once) and
    /// its listeners vanish (connects are refused) until [`SimHost::restart`]. No-op if the
    /// host is down. Schedule it with [`NetFault::CrashHost`].
    pub fn crash(&self) {
        if let Some(world) = self.inner.world.upgrade() {
            world.apply(&NetFault::CrashHost(self.inner.ip));
        }
    }

    /// Restarts a crashed host now: a fresh system and reactor on the same address, then the
    /// boot closure ([`SimHost::boot`]) again. No-op if the host is up. Schedule it with
    /// [`NetFault::RestartHost`].
    pub fn restart(&self) {
        if let Some(world) = self.inner.world.upgrade() {
            world.apply(&NetFault::RestartHost(self.inner.ip));
        }
    }

    /// Serves `protocol` on `port` of this host with `sinew_io_actors::serve` (one listener,
    /// on the host's worker); requests go to `handler`. Returns the bound address.
    ///
    /// `serve` waits for its listener to start, so it runs on a helper thread while the
    /// harness steps the hosts (see [`SimRun::blocking`](super::SimRun::blocking)); virtual
    /// time does not move meanwhile.
    pub fn serve<P: ServedProtocol>(
        &self,
        protocol: P,
        port: u16,
        handler: impl Into<Routes<P>> + Send,
        config: ServerConfig,
    ) -> Result<SocketAddr, ServeError> {
        if !self.is_up() {
            return Err(ServeError::Listen(format!(
                "host {} is down",
                self.inner.ip
            )));
        }
        let handle = self.handle();
        let addr = self.addr(port);
        let start = move || serve(&handle, protocol, addr, 0..1, handler, config);
        match self.inner.world.upgrade() {
            Some(world) => world.blocking(start),
            None => Err(ServeError::Listen("the simulation has ended".into())),
        }
    }
}

/// A fault scheduled at a virtual time.
type ScheduleKey = (u64, u64);

/// The network side of a run: the simulated network, the hosts, scheduled faults, and the
/// harness's own seeded choices. Shared by [`SimNetwork`] and [`SimHost`] handles.
pub(crate) struct World {
    seed: u64,
    buggify: bool,
    net: SimNet,
    hosts: RefCell<Vec<SimHost>>,
    scheduled: RefCell<BTreeMap<ScheduleKey, NetFault>>,
    next_seq: Cell<u64>,
    /// Which system runs next (never drawn from the scenario's or the schedulers' streams).
    chooser: RefCell<SimRng>,
    /// Where random faults fall.
    fault_rng: RefCell<SimRng>,
    /// The harness clock in nanoseconds (the network's; actor clocks are its milliseconds).
    now: Cell<u64>,
    /// For the determinism check: the system that ran at each step (0: the scenario's, `k`:
    /// host `k`), and every batch of completions handed out (`u64::MAX - k`, then the count).
    schedule: RefCell<Vec<u64>>,
    faults_applied: Cell<u64>,
    /// What went wrong outside the scenario's own code (a host's boot closure at a restart):
    /// the run fails with these.
    failures: RefCell<Vec<String>>,
}

impl Drop for World {
    fn drop(&mut self) {
        // The thread's extension may still point at a host's I/O: release it with the run.
        remove_worker_extension::<WorkerIo>();
    }
}

impl World {
    pub(crate) fn new(seed: u64, buggify: bool, now_ms: u64) -> Rc<World> {
        Rc::new(World {
            seed,
            buggify,
            net: SimNet::new(seed ^ 0x0E75_1A7E_0E75_1A7E),
            hosts: RefCell::new(Vec::new()),
            scheduled: RefCell::new(BTreeMap::new()),
            next_seq: Cell::new(0),
            chooser: RefCell::new(SimRng::new(seed ^ 0xC0DE_5C4E_D01E_0001)),
            fault_rng: RefCell::new(SimRng::new(seed ^ 0x0BAD_114C_0BAD_114C)),
            now: Cell::new(now_ms.saturating_mul(MS)),
            schedule: RefCell::new(Vec::new()),
            faults_applied: Cell::new(0),
            failures: RefCell::new(Vec::new()),
        })
    }

    pub(crate) fn host(self: &Rc<Self>, ip: IpAddr) -> SimHost {
        if let Some(h) = self.hosts.borrow().iter().find(|h| h.inner.ip == ip) {
            return h.clone();
        }
        let index = self.hosts.borrow().len() + 1;
        let seed = self.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let inner = Rc::new(HostInner {
            ip,
            index,
            seed,
            buggify: self.buggify,
            life: RefCell::new(Rc::new(Life {
                system: DeterministicSystem::new(seed),
                io: Rc::new(WorkerIo::detached(self.net.reactor(ip))),
            })),
            up: Cell::new(true),
            lives: Cell::new(1),
            past_traces: RefCell::new(Vec::new()),
            boot: RefCell::new(None),
            plan: OnceCell::new(),
            world: Rc::downgrade(self),
        });
        {
            let life = inner.life();
            life.system.set_buggify(self.buggify);
            let now_ms = self.now.get() / MS;
            if now_ms > 0 {
                life.system.jump(Duration::from_millis(now_ms));
            }
        }
        let host = SimHost { inner };
        self.hosts.borrow_mut().push(host.clone());
        host
    }

    pub(crate) fn hosts(&self) -> Vec<SimHost> {
        self.hosts.borrow().clone()
    }

    fn host_at(&self, i: usize) -> Option<SimHost> {
        self.hosts.borrow().get(i).cloned()
    }

    fn host_count(&self) -> usize {
        self.hosts.borrow().len()
    }

    // ----- the clock ---------------------------------------------------------------------

    /// The harness clock: the latest of the network's and every system's.
    fn now_ns(&self, main: &DeterministicSystem) -> u64 {
        let mut t = self.now.get().max(ns(self.net.now()));
        t = t.max(main.now_ms().saturating_mul(MS));
        for h in self.hosts.borrow().iter() {
            t = t.max(h.inner.life().system.now_ms().saturating_mul(MS));
        }
        t
    }

    /// The earliest moment something is due: an actor timer, a network event, a fault.
    fn next_wake(&self, main: &DeterministicSystem) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut consider = |t: u64| next = Some(next.map_or(t, |n: u64| n.min(t)));
        if let Some(ms) = main.next_timer_ms() {
            consider(ms.saturating_mul(MS));
        }
        for h in self.hosts.borrow().iter() {
            if let Some(ms) = h.inner.life().system.next_timer_ms() {
                consider(ms.saturating_mul(MS));
            }
        }
        if let Some(t) = self.net.next_event_time() {
            consider(ns(t));
        }
        if let Some(&(t, _)) = self.scheduled.borrow().keys().next() {
            consider(t);
        }
        next
    }

    /// Moves the clock to `t` (never back) without running actors: faults scheduled until
    /// then are applied in order, network events until then processed (their completions wait
    /// in the reactors), every actor clock set to `t`'s millisecond.
    fn goto(&self, main: &DeterministicSystem, t: u64) {
        let t = t.max(self.now_ns(main));
        loop {
            let due = {
                let mut s = self.scheduled.borrow_mut();
                match s.keys().next() {
                    Some(&key) if key.0 <= t => s.remove(&key).map(|f| (key.0, f)),
                    _ => None,
                }
            };
            let Some((at, fault)) = due else { break };
            // Every clock reads the fault's time first: a restarted host boots at it, and what
            // its boot runs (other hosts answering `serve`) happens then too.
            self.set_clocks(main, at);
            self.apply(&fault);
        }
        self.set_clocks(main, t);
    }

    /// Moves the network to `t` and every actor clock to `t`'s millisecond (never back).
    fn set_clocks(&self, main: &DeterministicSystem, t: u64) {
        let t = t.max(self.now.get());
        self.net.advance_to(Duration::from_nanos(t));
        self.now.set(t);
        let ms = t / MS;
        let sync = |s: &DeterministicSystem| {
            let now = s.now_ms();
            if ms > now {
                s.jump(Duration::from_millis(ms - now));
            }
        };
        sync(main);
        for h in self.hosts.borrow().iter() {
            sync(&h.inner.life().system);
        }
    }

    // ----- stepping ----------------------------------------------------------------------

    /// Hands every host the completions its reactor has ready. True if there were any.
    fn deliver(&self) -> bool {
        let mut any = false;
        for i in 0..self.host_count() {
            let Some(h) = self.host_at(i) else { break };
            let life = h.inner.life();
            match life.system.enter(|| life.io.dispatch_ready()) {
                Ok(0) => {}
                Ok(n) => {
                    any = true;
                    let mut s = self.schedule.borrow_mut();
                    s.push(u64::MAX - h.inner.index as u64);
                    s.push(n as u64);
                }
                Err(e) => {
                    tracing::error!(host = %h.inner.ip, error = %e, "simulated reactor poll failed")
                }
            }
        }
        any
    }

    /// One step of system `i` (0: the scenario's own; `k`: host `k`), with its I/O installed.
    fn step_system(&self, i: usize, main: &DeterministicSystem) -> bool {
        if i == 0 {
            remove_worker_extension::<WorkerIo>();
            return main.step();
        }
        self.step_host(i - 1)
    }

    /// One step of the `i`-th host (0-based), with its I/O installed.
    fn step_host(&self, i: usize) -> bool {
        let Some(h) = self.host_at(i) else {
            return false;
        };
        let life = h.inner.life();
        set_worker_extension(life.io.clone());
        life.system.step()
    }

    /// Hands out completions, then runs one step of a system picked by the seeded chooser
    /// among those with something to do. True if anything happened.
    pub(crate) fn step(&self, main: &DeterministicSystem) -> bool {
        let delivered = self.deliver();
        let n = 1 + self.host_count();
        let first = self.chooser.borrow_mut().below(n as u64) as usize;
        for k in 0..n {
            let i = (first + k) % n;
            if self.step_system(i, main) {
                self.schedule.borrow_mut().push(i as u64);
                return true;
            }
        }
        delivered
    }

    /// Steps until nothing is runnable at the current virtual time.
    pub(crate) fn run_until_idle(&self, main: &DeterministicSystem) {
        self.goto(main, 0);
        while self.step(main) {}
    }

    /// Advances virtual time by `d`, running everything due on the way, in time order.
    pub(crate) fn advance(&self, main: &DeterministicSystem, d: Duration) {
        self.run_until_idle(main);
        let target = self.now_ns(main).saturating_add(ns(d));
        loop {
            match self.next_wake(main) {
                Some(t) if t <= target => self.goto(main, t),
                _ => break,
            }
            while self.step(main) {}
        }
        self.goto(main, target);
        while self.step(main) {}
    }

    /// Jumps the clock by `d` without running anything first (a clock-jump fault): timers
    /// and network events due in between are handled late, together.
    pub(crate) fn jump(&self, main: &DeterministicSystem, d: Duration) {
        let t = self.now_ns(main).saturating_add(ns(d));
        self.goto(main, t);
    }

    /// Runs until `fut` completes; fails when it cannot (nothing runnable, nothing scheduled)
    /// or has not after `horizon` of virtual time.
    pub(crate) fn block_on<F: Future>(
        &self,
        main: &DeterministicSystem,
        fut: F,
        horizon: Duration,
    ) -> Result<F::Output, String> {
        self.goto(main, 0);
        let start = self.now_ns(main);
        let limit = start.saturating_add(ns(horizon));
        let mut fut = pin!(fut);
        let mut cx = TaskContext::from_waker(Waker::noop());
        let mut poll = |fut: std::pin::Pin<&mut F>| {
            remove_worker_extension::<WorkerIo>();
            main.enter(|| fut.poll(&mut cx))
        };
        loop {
            if let Poll::Ready(v) = poll(fut.as_mut()) {
                return Ok(v);
            }
            if self.step(main) {
                continue;
            }
            match self.next_wake(main) {
                Some(t) if t <= limit => self.goto(main, t),
                Some(_) => {
                    return Err(format!(
                        "block_on: the future did not complete within {horizon:?} of virtual time"
                    ))
                }
                None => {
                    if let Poll::Ready(v) = poll(fut.as_mut()) {
                        return Ok(v);
                    }
                    return Err(
                        "deadlock: the future cannot complete (no runnable actor, no pending timer, \
                         no network event)"
                            .into(),
                    );
                }
            }
        }
    }

    /// Runs until quiescent: nothing runnable and nothing due within `horizon`.
    pub(crate) fn settle(&self, main: &DeterministicSystem, horizon: Duration) {
        self.run_until_idle(main);
        let limit = self.now_ns(main).saturating_add(ns(horizon));
        while let Some(t) = self.next_wake(main).filter(|&t| t <= limit) {
            self.goto(main, t);
            while self.step(main) {}
        }
    }

    /// Runs `f` on a helper thread while this thread steps the hosts and the network (in a
    /// fixed order, without moving time) until `f` returns.
    pub(crate) fn blocking<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        // The hosts run to idle first, and everything `f` causes runs to completion before
        // `f` is looked at again: the order of events never depends on the helper's timing.
        let settle_hosts = || loop {
            let mut any = self.deliver();
            for i in 0..self.host_count() {
                while self.step_host(i) {
                    any = true;
                }
            }
            if !any {
                break;
            }
        };
        settle_hosts();
        std::thread::scope(|s| {
            let helper = s.spawn(f);
            loop {
                settle_hosts();
                if helper.is_finished() {
                    break;
                }
                std::thread::yield_now();
            }
            match helper.join() {
                Ok(r) => r,
                Err(p) => std::panic::resume_unwind(p),
            }
        })
    }

    /// The traces of the hosts, in creation order, each with its IP.
    pub(crate) fn traces(&self) -> Vec<(IpAddr, Vec<TraceEvent>)> {
        self.hosts
            .borrow()
            .iter()
            .map(|h| {
                let mut trace = h.inner.past_traces.borrow().clone();
                trace.extend(h.inner.life().system.trace());
                (h.inner.ip, trace)
            })
            .collect()
    }

    /// Failures recorded outside the scenario's code (boot closures at restarts), taken.
    pub(crate) fn take_failures(&self) -> Vec<String> {
        std::mem::take(&mut *self.failures.borrow_mut())
    }

    /// The harness's own record (for the determinism check).
    pub(crate) fn schedule(&self) -> Vec<u64> {
        self.schedule.borrow().clone()
    }

    // ----- faults ------------------------------------------------------------------------

    fn apply(&self, fault: &NetFault) {
        tracing::debug!(?fault, at = ?self.net.now(), "network fault");
        self.faults_applied.set(self.faults_applied.get() + 1);
        let net = &self.net;
        match *fault {
            NetFault::Partition(a, b) => net.partition(a, b),
            NetFault::Heal(a, b) => net.heal(a, b),
            NetFault::Clog { from, to } => net.partition_one_way(from, to),
            NetFault::Unclog { from, to } => net.heal_one_way(from, to),
            NetFault::HealAll => net.heal_all(),
            NetFault::Reset(a, b) => {
                net.reset_between(a, b);
            }
            NetFault::ResetHost(h) => {
                net.reset_connections(h);
            }
            NetFault::Link { from, to, link } => net.set_link(from, to, link),
            NetFault::ClearLink { from, to } => net.clear_link(from, to),
            NetFault::DefaultLink(link) => net.set_default_link(link),
            NetFault::CrashHost(ip) => self.crash(ip),
            NetFault::RestartHost(ip) => self.restart(ip),
        }
    }

    fn find_host(&self, ip: IpAddr) -> Option<SimHost> {
        self.hosts
            .borrow()
            .iter()
            .find(|h| h.inner.ip == ip)
            .cloned()
    }

    /// Kills every actor of `ip`'s current incarnation, resets its connections and drops its
    /// reactor (its listeners with it); a fresh, empty incarnation waits for the restart.
    fn crash(&self, ip: IpAddr) {
        let Some(h) = self.find_host(ip) else {
            tracing::warn!(%ip, "crash of an unknown host ignored");
            return;
        };
        let inner = &h.inner;
        if !inner.up.replace(false) {
            return;
        }
        // Peers learn at once, as when a process dies and its kernel answers for it.
        self.net.reset_connections(ip);
        // The thread may still hold this host's I/O as its worker extension.
        remove_worker_extension::<WorkerIo>();
        // The incarnation that waits for the restart: empty, with a reactor that listens on
        // nothing, so connects to the host are refused meanwhile.
        let fresh = inner.new_life(&self.net, self.now.get(), inner.lives.get() + 1);
        let old = inner.life.replace(Rc::new(fresh));
        inner.past_traces.borrow_mut().extend(old.system.trace());
        match Rc::try_unwrap(old) {
            Ok(Life { system, io }) => {
                drop(system);
                if Rc::strong_count(&io) > 1 {
                    self.failures.borrow_mut().push(format!(
                        "host {ip} crashed but something outside it still holds its I/O: \
                         its sockets stay open"
                    ));
                }
            }
            Err(_) => self.failures.borrow_mut().push(format!(
                "host {ip} crashed while its system was in use (a `SimHost::system()` guard \
                 held across the run?)"
            )),
        }
        tracing::debug!(%ip, at = ?self.net.now(), "host crashed");
    }

    /// Brings a crashed host back: its waiting incarnation goes up and the boot closure runs.
    fn restart(&self, ip: IpAddr) {
        let Some(h) = self.find_host(ip) else {
            tracing::warn!(%ip, "restart of an unknown host ignored");
            return;
        };
        let inner = &h.inner;
        if inner.up.replace(true) {
            return;
        }
        inner.lives.set(inner.lives.get() + 1);
        tracing::debug!(%ip, at = ?self.net.now(), lives = inner.lives.get(), "host restarted");
        let boot = inner.boot.borrow().clone();
        if let Some(boot) = boot {
            if let Err(e) = boot(&h) {
                self.failures
                    .borrow_mut()
                    .push(format!("host {ip}: boot after restart failed: {e}"));
            }
        }
    }

    fn schedule_at(&self, at: u64, fault: NetFault) {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        self.scheduled.borrow_mut().insert((at, seq), fault);
    }
}

/// The simulated network of a run: faults now or at virtual times, links, and the
/// [`SimNet`] underneath. A cheap handle ([`SimRun::net`](super::SimRun::net)); clones share
/// the network.
///
/// Faults name hosts by IP. Times given to [`SimNetwork::at`] count from the start of the run.
#[derive(Clone)]
pub struct SimNetwork {
    world: Rc<World>,
}

impl std::fmt::Debug for SimNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNetwork")
            .field("net", &self.world.net)
            .field("hosts", &self.world.host_count())
            .field("scheduled", &self.world.scheduled.borrow().len())
            .finish()
    }
}

impl SimNetwork {
    pub(crate) fn new(world: Rc<World>) -> Self {
        SimNetwork { world }
    }

    /// The simulated network itself: link and network parameters, and everything not
    /// wrapped here. Drive time through the run, never with its `advance_to`/`step`.
    pub fn sim(&self) -> &SimNet {
        &self.world.net
    }

    /// Virtual time since the run started, as the harness sees it.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.world.now.get())
    }

    /// The hosts created so far, in creation order.
    pub fn hosts(&self) -> Vec<SimHost> {
        self.world.hosts()
    }

    /// Applies `fault` now.
    pub fn apply(&self, fault: NetFault) {
        self.world.apply(&fault);
    }

    /// Applies `fault` at virtual time `at` since the start of the run (at once, at the next
    /// step, if that time has passed).
    pub fn at(&self, at: Duration, fault: NetFault) {
        self.world.schedule_at(ns(at), fault);
    }

    /// Applies `fault` `delay` from now.
    pub fn after(&self, delay: Duration, fault: NetFault) {
        let at = self.world.now.get().saturating_add(ns(delay));
        self.world.schedule_at(at, fault);
    }

    /// Faults scheduled and not applied yet.
    pub fn pending_faults(&self) -> usize {
        self.world.scheduled.borrow().len()
    }

    /// Faults applied so far (scheduled or not).
    pub fn faults_applied(&self) -> u64 {
        self.world.faults_applied.get()
    }

    /// Blocks traffic both ways between `a` and `b`.
    pub fn partition(&self, a: IpAddr, b: IpAddr) {
        self.apply(NetFault::Partition(a, b));
    }

    /// Lets traffic flow both ways between `a` and `b` again.
    pub fn heal(&self, a: IpAddr, b: IpAddr) {
        self.apply(NetFault::Heal(a, b));
    }

    /// Blocks traffic from `from` to `to` only.
    pub fn clog(&self, from: IpAddr, to: IpAddr) {
        self.apply(NetFault::Clog { from, to });
    }

    /// Unblocks traffic from `from` to `to`.
    pub fn unclog(&self, from: IpAddr, to: IpAddr) {
        self.apply(NetFault::Unclog { from, to });
    }

    /// Removes every partition and clog.
    pub fn heal_all(&self) {
        self.apply(NetFault::HealAll);
    }

    /// Resets every connection between `a` and `b`; returns how many sockets were reset.
    pub fn reset_connections(&self, a: IpAddr, b: IpAddr) -> usize {
        self.world
            .faults_applied
            .set(self.world.faults_applied.get() + 1);
        self.world.net.reset_between(a, b)
    }

    /// Resets every connection of `host`; returns how many sockets were reset.
    pub fn reset_host(&self, host: IpAddr) -> usize {
        self.world
            .faults_applied
            .set(self.world.faults_applied.get() + 1);
        self.world.net.reset_connections(host)
    }

    /// Sets the link from `from` to `to` (latency, jitter, loss, duplication, reordering,
    /// bandwidth, slow reader).
    pub fn set_link(&self, from: IpAddr, to: IpAddr, link: LinkConfig) {
        self.apply(NetFault::Link { from, to, link });
    }

    /// Sets the link both ways between `a` and `b`.
    pub fn set_link_both(&self, a: IpAddr, b: IpAddr, link: LinkConfig) {
        self.set_link(a, b, link);
        self.set_link(b, a, link);
    }

    /// Sets the link of every direction that has none of its own.
    pub fn set_default_link(&self, link: LinkConfig) {
        self.apply(NetFault::DefaultLink(link));
    }

    /// Crashes `host` now (see [`SimHost::crash`]).
    pub fn crash_host(&self, host: IpAddr) {
        self.apply(NetFault::CrashHost(host));
    }

    /// Restarts `host` now (see [`SimHost::restart`]).
    pub fn restart_host(&self, host: IpAddr) {
        self.apply(NetFault::RestartHost(host));
    }

    /// Schedules seeded crashes of `hosts` from now for `duration`: each host, on its own,
    /// stays up for a random while (`kinds.mean_up` on average), crashes, stays down between
    /// `kinds.min_down` and `kinds.max_down`, restarts, and so on. Every host that crashed is
    /// restarted by the end. Returns the number of crashes scheduled.
    pub fn random_crashes(
        &self,
        hosts: &[IpAddr],
        duration: Duration,
        kinds: RandomCrashes,
    ) -> usize {
        let start = self.world.now.get();
        let end = start.saturating_add(ns(duration));
        let mut rng = self.world.fault_rng.borrow_mut();
        let (min_down, max_down) = (ns(kinds.min_down), ns(kinds.max_down.max(kinds.min_down)));
        let mut crashes = 0;
        for &host in hosts {
            let mut at = start;
            loop {
                at = at.saturating_add(rng.below(2 * ns(kinds.mean_up) + 1));
                if at >= end {
                    break;
                }
                let back = at
                    .saturating_add(min_down + rng.below(max_down - min_down + 1))
                    .min(end);
                self.world.schedule_at(at, NetFault::CrashHost(host));
                self.world.schedule_at(back, NetFault::RestartHost(host));
                crashes += 1;
                at = back;
            }
        }
        crashes
    }

    /// FoundationDB's swizzle-clog, seeded: takes the directed links among `hosts` in a random
    /// order, clogs a random non-empty subset of them one by one, then unclogs them one by one
    /// in another random order. Consecutive steps are `step` apart on average (each gap is
    /// uniform in `[step / 2, 3 * step / 2]`); the first clog falls one gap from now. Returns
    /// the virtual time (since the start of the run) of the last unclog.
    pub fn swizzle_clog(&self, hosts: &[IpAddr], step: Duration) -> Duration {
        let mut links: Vec<(IpAddr, IpAddr)> = Vec::new();
        for &a in hosts {
            for &b in hosts {
                if a != b && !links.contains(&(a, b)) {
                    links.push((a, b));
                }
            }
        }
        let mut at = self.world.now.get();
        if links.is_empty() {
            return Duration::from_nanos(at);
        }
        let mut rng = self.world.fault_rng.borrow_mut();
        shuffle(&mut links, &mut rng);
        let k = 1 + rng.below(links.len() as u64) as usize;
        links.truncate(k);
        let step = ns(step).max(2);
        let gap = |rng: &mut SimRng| step / 2 + rng.below(step + 1);
        for &(from, to) in &links {
            at = at.saturating_add(gap(&mut rng));
            self.world.schedule_at(at, NetFault::Clog { from, to });
        }
        shuffle(&mut links, &mut rng);
        for &(from, to) in &links {
            at = at.saturating_add(gap(&mut rng));
            self.world.schedule_at(at, NetFault::Unclog { from, to });
        }
        Duration::from_nanos(at)
    }

    /// Schedules seeded random faults among `hosts` (pairs picked at random) from now for
    /// `duration`: partitions and clogs that heal after a while, connection resets, links
    /// degraded for a while, by `kinds`' weights. Everything is healed and every link of the
    /// pairs restored to the default by the end. Returns the number of faults scheduled.
    pub fn random_faults(
        &self,
        hosts: &[IpAddr],
        duration: Duration,
        kinds: RandomFaults,
    ) -> usize {
        if hosts.len() < 2 {
            return 0;
        }
        let start = self.world.now.get();
        let end = start.saturating_add(ns(duration));
        let mut rng = self.world.fault_rng.borrow_mut();
        let weights = [
            kinds.partitions,
            kinds.clogs,
            kinds.resets,
            kinds.slow_links,
        ];
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut scheduled = 0;
        let mut at = start;
        let mut touched: Vec<(IpAddr, IpAddr)> = Vec::new();
        loop {
            at = at.saturating_add(rng.below(2 * ns(kinds.mean_gap) + 1));
            if at >= end || total == 0 {
                break;
            }
            let a = hosts[rng.below(hosts.len() as u64) as usize];
            let mut b = hosts[rng.below(hosts.len() as u64 - 1) as usize];
            if b == a {
                b = hosts[hosts.len() - 1];
            }
            let until = at
                .saturating_add(MS + rng.below(ns(kinds.max_hold)))
                .min(end);
            let mut pick = rng.below(total);
            let kind = weights
                .iter()
                .position(|&w| {
                    let hit = pick < u64::from(w);
                    pick = pick.saturating_sub(u64::from(w));
                    hit
                })
                .unwrap_or(0);
            let (begin, finish) = match kind {
                0 => (NetFault::Partition(a, b), Some(NetFault::Heal(a, b))),
                1 => (
                    NetFault::Clog { from: a, to: b },
                    Some(NetFault::Unclog { from: a, to: b }),
                ),
                2 => (NetFault::Reset(a, b), None),
                _ => {
                    touched.push((a, b));
                    (
                        NetFault::Link {
                            from: a,
                            to: b,
                            link: kinds.degraded,
                        },
                        Some(NetFault::ClearLink { from: a, to: b }),
                    )
                }
            };
            self.world.schedule_at(at, begin);
            scheduled += 1;
            if let Some(f) = finish {
                self.world.schedule_at(until, f);
            }
        }
        self.world.schedule_at(end, NetFault::HealAll);
        for (from, to) in touched {
            self.world
                .schedule_at(end, NetFault::ClearLink { from, to });
        }
        scheduled
    }
}

/// Fisher-Yates with the run's generator.
fn shuffle<T>(v: &mut [T], rng: &mut SimRng) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}
