//! Workers: the threads actors run on.
//!
//! A worker has two halves. `WorkerShared` is what other threads see: an inbound queue (the one
//! cross-core handoff on the hot path) and a flag telling whether the worker is parked, so a
//! sender wakes it only when it must. `WorkerLocal` belongs to the worker thread: the run queue of
//! actors with work, the actors' slots, the timer wheel and the local executor; none of it is
//! shared, so none of it is synchronised.
//!
//! An idle worker spins for a bounded, configurable time before it parks in its driver: waking a
//! halted vCPU costs tens of microseconds here, far more than a short spin. It spins only while
//! spinning pays (see `spin.rs`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::actor::ActorId;
use crate::driver::{Driver, Unpark};
use crate::inbound::{Inbound, Pop};
use crate::metrics::WorkerStats;
use crate::park::Sleeper;
use crate::rng::SplitMix64;
use crate::spin::SpinGate;
use crate::system::SystemShared;
use crate::timer::{duration_ticks, TimerFn, TimerHandle, TimerNext, TimerWheel};

static NEXT_WORKER_UID: AtomicU64 = AtomicU64::new(1);

/// The part of a worker other threads may touch.
pub(crate) struct WorkerShared {
    pub(crate) uid: u64,
    pub(crate) index: usize,
    inbound: Inbound,
    sleeper: Sleeper,
    unparker: OnceLock<Arc<dyn Unpark>>,
    pub(crate) stats: WorkerStats,
}

impl std::fmt::Debug for WorkerShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("index", &self.index)
            .finish()
    }
}

impl WorkerShared {
    pub(crate) fn new(index: usize) -> Arc<Self> {
        Arc::new(WorkerShared {
            uid: NEXT_WORKER_UID.fetch_add(1, Ordering::Relaxed),
            index,
            inbound: Inbound::new(),
            sleeper: Sleeper::new(),
            unparker: OnceLock::new(),
            stats: WorkerStats::default(),
        })
    }

    pub(crate) fn set_unparker(&self, u: Arc<dyn Unpark>) {
        let _ = self.unparker.set(u);
    }

    /// Hands a job to this worker and wakes it if it is parked.
    pub(crate) fn push(&self, job: impl FnOnce(&WorkerLocal) + Send + 'static) {
        self.inbound.push(job);
        if self.sleeper.must_wake() {
            if let Some(u) = self.unparker.get() {
                u.unpark();
            }
        }
    }

    /// Runs `f` on this worker: at once when called on it, else through the inbound queue.
    pub(crate) fn run_on(self: &Arc<Self>, f: impl FnOnce(&WorkerLocal) + Send + 'static) {
        let mut f = Some(f);
        with_current(|w| {
            if let Some(w) = w {
                if w.shared.uid == self.uid {
                    if let Some(f) = f.take() {
                        f(w);
                    }
                }
            }
        });
        if let Some(f) = f {
            self.push(f);
        }
    }

    /// Arms a timer on this worker's wheel from any thread.
    pub(crate) fn arm_timer(self: &Arc<Self>, after: Duration, action: TimerFn) -> TimerHandle {
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut action = Some(action);
        let mut handle = None;
        with_current(|w| {
            if let Some(w) = w {
                if w.shared.uid == self.uid {
                    if let Some(a) = action.take() {
                        handle = Some(w.arm_timer(after, a, flag.clone()));
                    }
                }
            }
        });
        if let Some(h) = handle {
            return h;
        }
        if let Some(a) = action {
            let f = flag.clone();
            self.push(move |w: &WorkerLocal| {
                w.arm_timer(after, a, f);
            });
        }
        TimerHandle {
            worker: self.clone(),
            key: u32::MAX,
            gen: 0,
            flag,
        }
    }

    /// Work is queued for this worker. Only the worker's own thread may ask (it reads the
    /// consumer side of the queue).
    pub(crate) fn has_inbound(&self) -> bool {
        self.inbound.has_work()
    }

    /// Tells the worker to leave its loop after what is queued before.
    pub(crate) fn terminate(&self) {
        self.push(|w: &WorkerLocal| w.terminate.set(true));
    }
}

thread_local! {
    static CURRENT: Cell<*const WorkerLocal> = const { Cell::new(std::ptr::null()) };
}

/// The worker running on this thread, or null. Dereference it only within the current call
/// on this thread: it stays valid until the `enter` guard that set it drops.
#[inline]
pub(crate) fn current_worker() -> *const WorkerLocal {
    CURRENT.with(|c| c.get())
}

/// Calls `f` with the worker running on this thread, if any.
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&WorkerLocal>) -> R) -> R {
    let p = current_worker();
    if p.is_null() {
        f(None)
    } else {
        // SAFETY: CURRENT is only non-null between `enter` and the drop of its guard, during
        // which the `WorkerLocal` it points to is borrowed by the guard's creator and alive; the
        // pointer never leaves this thread.
        f(Some(unsafe { &*p }))
    }
}

/// Marks `w` as the worker of this thread until the guard drops.
pub(crate) struct EnterGuard {
    prev: *const WorkerLocal,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.prev));
    }
}

pub(crate) fn enter(w: &WorkerLocal) -> EnterGuard {
    let prev = CURRENT.with(|c| c.replace(w as *const WorkerLocal));
    EnterGuard { prev }
}

/// Result of one actor turn.
pub(crate) enum RunResult {
    /// Nothing left to do; the actor is no longer scheduled.
    Idle,
    /// More work: put it back on the run queue.
    Again,
    /// It stopped; free its slot.
    Dead,
}

/// An actor slot as the worker sees it.
pub(crate) trait Runnable {
    fn run(&mut self, w: &WorkerLocal) -> RunResult;
    /// The slot as `Any`, so a cell can reach its own `ActorSlot<A>` to hand it a message
    /// directly (see `ActorCell::deliver_now`).
    fn as_any(&mut self) -> &mut dyn std::any::Any;
    fn id(&self) -> ActorId;
    /// Stops at once without waiting for children (shutdown past its deadline).
    fn kill_now(&mut self, w: &WorkerLocal);
}

/// The worker's clock: real, or virtual in deterministic mode.
pub(crate) enum Clock {
    Real { origin: Instant },
    Virtual { origin: Instant, now_ms: Cell<u64> },
}

impl Clock {
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::Real { .. } => Instant::now(),
            Clock::Virtual { origin, now_ms } => *origin + Duration::from_millis(now_ms.get()),
        }
    }

    /// Nanoseconds since the origin (for timing counters).
    pub(crate) fn mono_ns(&self) -> u64 {
        match self {
            Clock::Real { origin } => origin.elapsed().as_nanos() as u64,
            Clock::Virtual { now_ms, .. } => now_ms.get() * 1_000_000,
        }
    }

    /// The first tick at or after `now + after`: a timer armed for it never fires early,
    /// however far into the current tick `now` is (rounding `now` down instead would fire up
    /// to a tick early).
    pub(crate) fn deadline_tick(&self, after: Duration) -> u64 {
        match self {
            Clock::Real { origin } => {
                let now = origin.elapsed();
                let at = now.saturating_add(after);
                let ceil = at.as_millis() as u64 + u64::from(at.subsec_nanos() % 1_000_000 != 0);
                // The wheel's reach bounds the delay, never the absolute time (uncapped,
                // `ceil` is never above this bound).
                ceil.min(now.as_millis() as u64 + duration_ticks(after) + 1)
            }
            Clock::Virtual { now_ms, .. } => now_ms.get() + duration_ticks(after),
        }
    }

    /// Whole ticks elapsed since the origin (rounded down).
    pub(crate) fn tick(&self) -> u64 {
        match self {
            Clock::Real { origin } => origin.elapsed().as_millis() as u64,
            Clock::Virtual { now_ms, .. } => now_ms.get(),
        }
    }
}

struct Task {
    gen: u32,
    fut: Option<Pin<Box<dyn Future<Output = ()>>>>,
    waker: Option<Waker>,
}

struct TaskWaker {
    worker: Arc<WorkerShared>,
    key: u32,
    gen: u32,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let (key, gen) = (self.key, self.gen);
        let local = with_current(|w| match w {
            Some(w) if w.shared.uid == self.worker.uid => {
                w.ready_tasks.borrow_mut().push_back((key, gen));
                true
            }
            _ => false,
        });
        if !local {
            self.worker
                .push(move |w: &WorkerLocal| w.ready_tasks.borrow_mut().push_back((key, gen)));
        }
    }
}

/// One event of a deterministic run: which actor ran, at which virtual millisecond.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceEvent {
    /// Virtual time in milliseconds.
    pub at_ms: u64,
    /// The actor that took a turn.
    pub actor: ActorId,
}

/// A turn asks whether its time slice is spent after every this many messages.
pub(crate) const SLICE_CHECK: usize = 16;

/// How long a run of turns may keep the worker before it looks at its I/O, timers and
/// other threads' work again, and a turn ends early: `batch` bounds runs of cheap messages,
/// this bounds runs of slow ones (without it, a turn of `batch` 1 ms messages held the worker,
/// and a shutdown deadline, for `batch` milliseconds).
pub(crate) const TURN_SLICE_NS: u64 = 1_000_000;

/// The thread-owned half of a worker.
pub(crate) struct WorkerLocal {
    pub(crate) shared: Arc<WorkerShared>,
    pub(crate) system: Arc<SystemShared>,
    runq: RefCell<VecDeque<u32>>,
    slots: RefCell<Vec<Option<Box<dyn Runnable>>>>,
    free_slots: RefCell<Vec<u32>>,
    live: Cell<usize>,
    timers: RefCell<TimerWheel>,
    due: RefCell<Vec<u32>>,
    tasks: RefCell<Vec<Task>>,
    free_tasks: RefCell<Vec<u32>>,
    ready_tasks: RefCell<VecDeque<(u32, u32)>>,
    pub(crate) clock: Clock,
    pub(crate) batch: usize,
    chooser: Option<Cell<SplitMix64>>,
    trace: RefCell<Vec<TraceEvent>>,
    terminate: Cell<bool>,
    turn_messages: Cell<usize>,
    faults: RefCell<Option<Box<dyn crate::fault::FaultHook>>>,
    has_faults: Cell<bool>,
    buggify_on: Cell<bool>,
    /// True only while the worker's loop is in its driver (polling or parked) and no turn
    /// runs: then a completion's target may take its turn on the spot (`deliver_now`).
    inline_ok: Cell<bool>,
    /// Actors on this worker waiting on a peer's answer over I/O (`Context::set_awaiting_io`):
    /// while there are any, the idle spin runs.
    awaiting_io: Cell<usize>,
    /// The worker's clock at the first time-slice check of the current run of turns.
    slice_from: Cell<Option<u64>>,
    /// The current run of turns has used up its time slice.
    slice_over: Cell<bool>,
}

impl WorkerLocal {
    pub(crate) fn new(
        shared: Arc<WorkerShared>,
        system: Arc<SystemShared>,
        clock: Clock,
        batch: usize,
        seed: Option<u64>,
    ) -> Self {
        WorkerLocal {
            shared,
            system,
            runq: RefCell::new(VecDeque::new()),
            slots: RefCell::new(Vec::new()),
            free_slots: RefCell::new(Vec::new()),
            live: Cell::new(0),
            timers: RefCell::new(TimerWheel::new()),
            due: RefCell::new(Vec::new()),
            tasks: RefCell::new(Vec::new()),
            free_tasks: RefCell::new(Vec::new()),
            ready_tasks: RefCell::new(VecDeque::new()),
            clock,
            batch: batch.max(1),
            chooser: seed.map(|s| Cell::new(SplitMix64::new(s))),
            trace: RefCell::new(Vec::new()),
            terminate: Cell::new(false),
            turn_messages: Cell::new(0),
            faults: RefCell::new(None),
            has_faults: Cell::new(false),
            buggify_on: Cell::new(false),
            inline_ok: Cell::new(false),
            awaiting_io: Cell::new(0),
            slice_from: Cell::new(None),
            slice_over: Cell::new(false),
        }
    }

    // ---- actors -------------------------------------------------------------------------

    /// Stores an actor slot and returns its key.
    pub(crate) fn insert_slot(&self, slot: Box<dyn Runnable>) -> u32 {
        self.live.set(self.live.get() + 1);
        let mut slots = self.slots.borrow_mut();
        if let Some(k) = self.free_slots.borrow_mut().pop() {
            slots[k as usize] = Some(slot);
            k
        } else {
            slots.push(Some(slot));
            (slots.len() - 1) as u32
        }
    }

    /// Puts an actor with work on the run queue (the caller tracks "already scheduled").
    #[inline]
    pub(crate) fn schedule(&self, key: u32) {
        self.runq.borrow_mut().push_back(key);
    }

    /// Actors alive on this worker.
    pub(crate) fn live_actors(&self) -> usize {
        self.live.get()
    }

    /// Runs one turn of the actor in slot `key`; returns the messages it handled.
    fn run_turn(&self, key: u32) -> usize {
        let Some(mut slot) = self.take_slot(key) else {
            return 0;
        };
        if self.chooser.is_some() {
            self.trace.borrow_mut().push(TraceEvent {
                at_ms: self.clock.tick(),
                actor: slot.id(),
            });
        }
        self.turn_messages.set(0);
        let result = slot.run(self);
        self.end_turn(key, slot, result);
        self.turn_messages.get()
    }

    /// Takes the actor in slot `key` out for a turn (None: it is running, or gone).
    #[inline]
    pub(crate) fn take_slot(&self, key: u32) -> Option<Box<dyn Runnable>> {
        self.slots
            .borrow_mut()
            .get_mut(key as usize)
            .and_then(Option::take)
    }

    /// Puts an actor back after a turn, as the turn's result says.
    #[inline]
    pub(crate) fn end_turn(&self, key: u32, slot: Box<dyn Runnable>, result: RunResult) {
        match result {
            RunResult::Idle => self.slots.borrow_mut()[key as usize] = Some(slot),
            RunResult::Again => {
                self.slots.borrow_mut()[key as usize] = Some(slot);
                self.runq.borrow_mut().push_back(key);
            }
            RunResult::Dead => {
                self.free_slots.borrow_mut().push(key);
                self.live.set(self.live.get() - 1);
                // Dropping the actor runs user code; no borrow is held here.
                drop(slot);
            }
        }
    }

    /// Whether a delivery may run its target's turn on the spot: only from the driver, between
    /// turns, outside deterministic mode (whose order comes from the seeded chooser alone).
    #[inline]
    pub(crate) fn inline_ok(&self) -> bool {
        self.inline_ok.get()
    }

    /// One more (or one fewer) actor waiting on a peer's answer over I/O.
    #[inline]
    pub(crate) fn count_awaiting_io(&self, awaiting: bool) {
        let n = self.awaiting_io.get();
        self.awaiting_io
            .set(if awaiting { n + 1 } else { n.saturating_sub(1) });
    }

    /// Actors on this worker awaiting a peer's answer over I/O.
    #[cfg(test)]
    pub(crate) fn awaiting_io_count(&self) -> usize {
        self.awaiting_io.get()
    }

    /// Marks a turn run on the spot: no other runs inside it.
    #[inline]
    pub(crate) fn set_inline_ok(&self, ok: bool) {
        self.inline_ok.set(ok);
    }

    /// Called by an actor turn with the number of messages it handled.
    #[inline]
    pub(crate) fn note_turn(&self, messages: usize) {
        self.turn_messages.set(messages);
        self.shared.stats.record_turn(messages as u64);
    }

    /// Runs actor turns, including actors scheduled meanwhile, until the run queue is empty or
    /// a budget of turns or messages is spent; then the loop looks at inbound work, timers and
    /// futures again, so a busy actor cannot hold off signals and wake-ups from other threads.
    /// Returns whether any ran.
    fn run_ready(&self) -> bool {
        const MAX_TURNS: usize = 128;
        let max_messages = 2 * self.batch;
        let (mut turns, mut messages) = (0, 0);
        self.start_slice();
        while turns < MAX_TURNS && messages < max_messages && !self.slice_over.get() {
            let key = self.runq.borrow_mut().pop_front();
            match key {
                Some(k) => messages += self.run_turn(k),
                None => break,
            }
            turns += 1;
        }
        turns > 0
    }

    /// Starts a run of turns: a fresh time slice.
    fn start_slice(&self) {
        self.slice_from.set(None);
        self.slice_over.set(false);
    }

    /// Whether the current run of turns has used up its time slice ([`TURN_SLICE_NS`]),
    /// measured from the first call in that run; a turn calls this every [`SLICE_CHECK`]
    /// messages, so turns of cheap messages never read the clock. Once spent, the turn ends
    /// and so does the run: the worker looks at its I/O, timers and other threads' work.
    #[inline(never)]
    pub(crate) fn slice_spent(&self) -> bool {
        let now = self.mono_ns();
        match self.slice_from.get() {
            None => {
                self.slice_from.set(Some(now));
                false
            }
            Some(t) if now.saturating_sub(t) >= TURN_SLICE_NS => {
                self.slice_over.set(true);
                true
            }
            Some(_) => false,
        }
    }

    /// Deterministic mode: one turn of one actor picked by the seeded chooser.
    fn run_one_chosen(&self) -> bool {
        let key = {
            let mut q = self.runq.borrow_mut();
            if q.is_empty() {
                return false;
            }
            let i = self.pick(q.len());
            q.swap_remove_back(i)
        };
        if let Some(k) = key {
            // Here one turn is the whole run, so each gets a fresh slice.
            self.start_slice();
            self.run_turn(k);
        }
        true
    }

    /// Deterministic mode: installs (or removes) the fault hook.
    pub(crate) fn set_fault_hook(&self, hook: Option<Box<dyn crate::fault::FaultHook>>) {
        self.has_faults.set(hook.is_some());
        *self.faults.borrow_mut() = hook;
    }

    pub(crate) fn set_buggify(&self, on: bool) {
        self.buggify_on.set(on);
    }

    #[inline]
    pub(crate) fn has_faults(&self) -> bool {
        self.has_faults.get()
    }

    pub(crate) fn fault_decision(&self, to: ActorId) -> crate::fault::Delivery {
        let now = self.clock.tick();
        match self.faults.borrow_mut().as_mut() {
            Some(h) => h.on_deliver(to, now),
            None => crate::fault::Delivery::Deliver,
        }
    }

    pub(crate) fn fault_clone(
        &self,
        to: ActorId,
        msg: &dyn std::any::Any,
    ) -> Option<Box<dyn std::any::Any>> {
        self.faults
            .borrow()
            .as_ref()
            .and_then(|h| h.clone_message(to, msg))
    }

    /// Seeded coin for `buggify`: only in deterministic mode with buggify enabled.
    pub(crate) fn buggify(&self, p: f64) -> bool {
        if !self.buggify_on.get() || self.chooser.is_none() {
            return false;
        }
        let draw = self.pick(1 << 24) as f64 / (1u64 << 24) as f64;
        draw < p
    }

    fn pick(&self, n: usize) -> usize {
        match &self.chooser {
            Some(state) => {
                let mut rng = state.get();
                let r = rng.next_u64();
                state.set(rng);
                (r % n as u64) as usize
            }
            None => 0,
        }
    }

    /// Stops every actor on this worker at once (shutdown past its deadline).
    pub(crate) fn kill_all(&self) {
        let n = self.slots.borrow().len();
        for k in 0..n {
            let taken = self.slots.borrow_mut()[k].take();
            if let Some(mut slot) = taken {
                slot.kill_now(self);
                self.free_slots.borrow_mut().push(k as u32);
                self.live.set(self.live.get() - 1);
                drop(slot);
            }
        }
        self.runq.borrow_mut().clear();
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        drop(tasks);
    }

    // ---- inbound ------------------------------------------------------------------------

    fn drain_inbound(&self) -> bool {
        let mut any = false;
        // Bounded so a flood from other threads cannot starve local work.
        let mut busy_spins = 0;
        let mut n = 0;
        while n < 4096 {
            // SAFETY: a worker's inbound queue is consumed only by the thread that owns its
            // `WorkerLocal` (one per `WorkerShared`), which is the thread running this.
            match unsafe { self.shared.inbound.pop() } {
                Pop::Job(job) => {
                    job.run(self);
                    any = true;
                    n += 1;
                }
                Pop::Busy if busy_spins < 64 => {
                    busy_spins += 1;
                    std::hint::spin_loop();
                }
                // A producer is mid-push: come back on the next loop turn.
                Pop::Busy => return true,
                Pop::Empty => break,
            }
        }
        any
    }

    // ---- timers -------------------------------------------------------------------------

    pub(crate) fn arm_timer(
        &self,
        after: Duration,
        action: TimerFn,
        flag: Arc<std::sync::atomic::AtomicBool>,
    ) -> TimerHandle {
        let when = self.clock.deadline_tick(after);
        let (key, gen) = self
            .timers
            .borrow_mut()
            .insert(when, action, Some(flag.clone()));
        TimerHandle {
            worker: self.shared.clone(),
            key,
            gen,
            flag,
        }
    }

    pub(crate) fn cancel_timer(&self, key: u32, gen: u32) {
        if key != u32::MAX {
            self.timers.borrow_mut().cancel(key, gen);
        }
    }

    pub(crate) fn timer_is_pending(&self, key: u32, gen: u32) -> bool {
        self.timers.borrow().gen_of(key) == Some(gen)
    }

    /// Timers armed on this worker and not yet fired or cancelled.
    pub(crate) fn active_timers(&self) -> usize {
        self.timers.borrow().active()
    }

    fn fire_timers(&self) -> bool {
        // No clock read while nothing is armed: the common case on a busy worker.
        if self.timers.borrow().is_empty() {
            return false;
        }
        self.fire_timers_until(self.clock.tick())
    }

    fn fire_timers_until(&self, tick: u64) -> bool {
        let mut due = std::mem::take(&mut *self.due.borrow_mut());
        self.timers.borrow_mut().advance(tick, &mut due);
        let any = !due.is_empty();
        for key in due.drain(..) {
            let action = self.timers.borrow_mut().take_action(key);
            match action {
                Some(mut a) => {
                    let next = a(self);
                    self.timers.borrow_mut().finish(key, Some(a), next);
                }
                None => self.timers.borrow_mut().finish(key, None, TimerNext::Done),
            }
        }
        *self.due.borrow_mut() = due;
        any
    }

    fn next_timer_in(&self) -> Option<Duration> {
        let next = self.timers.borrow().next_tick()?;
        let now = self.clock.tick();
        Some(Duration::from_millis(next.saturating_sub(now)))
    }

    pub(crate) fn mono_ns(&self) -> u64 {
        self.clock.mono_ns()
    }

    pub(crate) fn next_timer_tick(&self) -> Option<u64> {
        self.timers.borrow().next_tick()
    }

    // ---- executor -----------------------------------------------------------------------

    /// Spawns a future on this worker; returns its key and generation for cancellation.
    pub(crate) fn spawn_task(&self, fut: Pin<Box<dyn Future<Output = ()>>>) -> (u32, u32) {
        let mut tasks = self.tasks.borrow_mut();
        let key = match self.free_tasks.borrow_mut().pop() {
            Some(k) => k,
            None => {
                tasks.push(Task {
                    gen: 0,
                    fut: None,
                    waker: None,
                });
                (tasks.len() - 1) as u32
            }
        };
        let t = &mut tasks[key as usize];
        t.gen = t.gen.wrapping_add(1);
        t.fut = Some(fut);
        let waker = Waker::from(Arc::new(TaskWaker {
            worker: self.shared.clone(),
            key,
            gen: t.gen,
        }));
        t.waker = Some(waker);
        let gen = t.gen;
        drop(tasks);
        self.ready_tasks.borrow_mut().push_back((key, gen));
        (key, gen)
    }

    /// Drops a task's future (it will not be polled again).
    pub(crate) fn cancel_task(&self, key: u32, gen: u32) {
        let fut = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get_mut(key as usize) {
                Some(t) if t.gen == gen && t.fut.is_some() => {
                    t.waker = None;
                    t.fut.take()
                }
                _ => None,
            }
        };
        if fut.is_some() {
            self.free_tasks.borrow_mut().push(key);
        }
        drop(fut);
    }

    pub(crate) fn task_is_live(&self, key: u32, gen: u32) -> bool {
        self.tasks
            .borrow()
            .get(key as usize)
            .is_some_and(|t| t.gen == gen && t.waker.is_some())
    }

    /// Tasks spawned on this worker and not finished or cancelled.
    pub(crate) fn live_tasks(&self) -> usize {
        self.tasks
            .borrow()
            .iter()
            .filter(|t| t.fut.is_some())
            .count()
    }

    fn poll_tasks(&self) -> bool {
        if self.ready_tasks.borrow().is_empty() {
            return false;
        }
        let ready = std::mem::take(&mut *self.ready_tasks.borrow_mut());
        let any = !ready.is_empty();
        for (key, gen) in ready {
            let taken = {
                let mut tasks = self.tasks.borrow_mut();
                match tasks.get_mut(key as usize) {
                    Some(t) if t.gen == gen => t.fut.take().zip(t.waker.clone()),
                    _ => None,
                }
            };
            let Some((mut fut, waker)) = taken else {
                continue;
            };
            let mut cx = TaskContext::from_waker(&waker);
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(()) => {
                    let mut tasks = self.tasks.borrow_mut();
                    tasks[key as usize].waker = None;
                    self.free_tasks.borrow_mut().push(key);
                }
                Poll::Pending => {
                    let mut tasks = self.tasks.borrow_mut();
                    let t = &mut tasks[key as usize];
                    if t.gen == gen && t.waker.is_some() {
                        t.fut = Some(fut);
                    } else {
                        // Cancelled while being polled.
                        drop(tasks);
                        drop(fut);
                    }
                }
            }
        }
        any
    }

    // ---- loops --------------------------------------------------------------------------

    /// One pass over everything ready. Returns whether anything happened.
    fn turn(&self) -> bool {
        let mut busy = self.drain_inbound();
        busy |= self.fire_timers();
        busy |= self.poll_tasks();
        busy |= self.run_ready();
        busy
    }

    /// The worker thread's loop; returns when told to terminate.
    pub(crate) fn run_loop(&self, driver: &mut dyn Driver, spin: Duration, adaptive: bool) {
        let _g = enter(self);
        let gate = SpinGate::new(adaptive);
        loop {
            let mut busy = self.turn();
            busy |= self.drive(|| driver.poll());
            if self.terminate.get() {
                break;
            }
            if busy {
                continue;
            }
            if !spin.is_zero()
                && gate.should_spin(self.awaiting_io.get() > 0)
                && self.spin_for_work(spin, driver, &gate)
            {
                continue;
            }
            self.shared.sleeper.prepare_park();
            if self.shared.has_inbound() || !self.ready_tasks.borrow().is_empty() {
                self.shared.sleeper.awake();
                continue;
            }
            let timeout = self.next_timer_in();
            self.shared.stats.bump_parks();
            self.drive(|| driver.park(timeout));
            self.shared.sleeper.awake();
            if self.shared.has_inbound() {
                // A spin would have caught this without a wake-up.
                gate.inbound();
            }
        }
        self.kill_all();
    }

    /// Runs `f` (a driver call) with on-the-spot turns allowed: completions the driver hands
    /// out go straight to their idle actors (the connection actor of an I/O worker handles its
    /// completion in the same pass, with no mailbox or run-queue hop).
    #[inline]
    fn drive<R>(&self, f: impl FnOnce() -> R) -> R {
        self.inline_ok.set(self.chooser.is_none());
        let r = f();
        self.inline_ok.set(false);
        r
    }

    /// Spins for up to `budget` waiting for inbound work (polling the driver as it goes), and
    /// tells `gate` what ended it. True when work arrived.
    fn spin_for_work(&self, budget: Duration, driver: &mut dyn Driver, gate: &SpinGate) -> bool {
        let start = Instant::now();
        let mut i: u32 = 0;
        loop {
            if self.shared.has_inbound() {
                gate.inbound();
                return true;
            }
            std::hint::spin_loop();
            i = i.wrapping_add(1);
            if i % 128 == 0 {
                if self.drive(|| driver.poll()) {
                    gate.no_inbound();
                    return true;
                }
                if start.elapsed() >= budget {
                    gate.no_inbound();
                    return false;
                }
            }
        }
    }

    /// Deterministic mode: runs one step (inbound, due timers, tasks, then one chosen actor).
    /// Returns whether anything happened.
    pub(crate) fn step(&self) -> bool {
        let _g = enter(self);
        let mut busy = self.drain_inbound();
        busy |= self.fire_timers();
        busy |= self.poll_tasks();
        busy |= self.run_one_chosen();
        busy
    }

    /// Deterministic mode: moves the virtual clock to `ms` (never backwards).
    pub(crate) fn set_virtual_ms(&self, ms: u64) {
        if let Clock::Virtual { now_ms, .. } = &self.clock {
            if ms > now_ms.get() {
                now_ms.set(ms);
            }
        }
    }

    pub(crate) fn trace(&self) -> Vec<TraceEvent> {
        self.trace.borrow().clone()
    }

    pub(crate) fn has_ready_work(&self) -> bool {
        !self.runq.borrow().is_empty()
            || !self.ready_tasks.borrow().is_empty()
            || self.shared.has_inbound()
    }
}
