//! Deterministic mode: a whole system on the calling thread, stepped explicitly, with a virtual
//! clock and a seeded choice among ready actors. The same seed gives the same schedule.
//!
//! The fault-injection harness (`sinew::testkit`) builds on this; the API stays small: spawn,
//! step, run until idle, advance virtual time, block on a future, read the trace.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use crate::actor::Actor;
use crate::addr::Addr;
use crate::error::SpawnError;
use crate::mailbox::MailboxConfig;
use crate::system::{spawn_actor, SpawnOptions, SystemHandle, SystemShared};
use crate::worker::{enter, Clock, TraceEvent, WorkerLocal, WorkerShared};

thread_local! {
    /// Deterministic systems alive on this thread (they share its reply tracking).
    static LIVE_SYSTEMS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The future passed to [`DeterministicSystem::block_on`] could not finish: nothing was runnable
/// and no timer was armed.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("deadlock: the future cannot complete (no runnable actor, no pending timer)")]
pub struct Deadlock;

/// A single-threaded, seeded, virtual-time actor system.
pub struct DeterministicSystem {
    local: WorkerLocal,
    handle: SystemHandle,
    seed: u64,
}

impl std::fmt::Debug for DeterministicSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeterministicSystem")
            .field("seed", &self.seed)
            .finish()
    }
}

impl DeterministicSystem {
    /// A system whose schedule is determined by `seed`. Actors handle one message per turn so
    /// interleavings are as fine-grained as possible.
    pub fn new(seed: u64) -> Self {
        Self::with_batch(seed, 1)
    }

    /// Like [`DeterministicSystem::new`] with `batch` messages per actor turn.
    pub fn with_batch(seed: u64, batch: usize) -> Self {
        let ws = WorkerShared::new(0);
        ws.set_unparker(Arc::new(crate::driver::NoopUnpark));
        let shared = SystemShared::new(vec![ws.clone()], MailboxConfig::default(), false);
        let clock = Clock::Virtual {
            origin: Instant::now(),
            now_ms: std::cell::Cell::new(0),
        };
        let local = WorkerLocal::new(ws, shared.clone(), clock, batch, Some(seed));
        // Several systems may live on one thread (a simulation's hosts): the first starts the
        // thread's reply tracking, later ones join it without resetting its count.
        if LIVE_SYSTEMS.with(|n| n.replace(n.get() + 1)) == 0 {
            crate::reply::tracking::start();
        }
        DeterministicSystem {
            local,
            handle: SystemHandle { shared },
            seed,
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A handle for spawning and lookups (sends from outside `step` are queued and handled in
    /// order at the next step).
    pub fn handle(&self) -> SystemHandle {
        self.handle.clone()
    }

    /// Spawns a top-level actor.
    pub fn spawn<A: Actor>(&self, actor: A) -> Result<Addr<A>, SpawnError> {
        self.spawn_with(actor, SpawnOptions::default())
    }

    /// Spawns a top-level actor with options (placement is ignored: there is one worker).
    pub fn spawn_with<A: Actor>(
        &self,
        actor: A,
        mut opts: SpawnOptions,
    ) -> Result<Addr<A>, SpawnError> {
        opts.placement = None;
        let _g = enter(&self.local);
        spawn_actor(&self.handle.shared, actor, opts, None)
    }

    /// Runs `f` as if on the worker: sends from inside are local and ordered.
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        let _g = enter(&self.local);
        f()
    }

    /// One step: queued inbound work, due timers, ready futures, then one turn of one ready
    /// actor chosen by the seeded generator. Returns whether anything ran.
    pub fn step(&self) -> bool {
        self.local.step()
    }

    /// Steps until nothing is runnable at the current virtual time. Returns the steps taken.
    pub fn run_until_idle(&self) -> usize {
        let mut n = 0;
        while self.local.has_ready_work() || self.due_now() {
            self.step();
            n += 1;
        }
        n
    }

    fn due_now(&self) -> bool {
        self.local
            .next_timer_tick()
            .is_some_and(|t| t <= self.now_ms())
    }

    /// Virtual milliseconds since the system was created.
    pub fn now_ms(&self) -> u64 {
        self.local.clock.tick()
    }

    /// The virtual clock as an `Instant`.
    pub fn now(&self) -> Instant {
        self.local.clock.now()
    }

    /// Advances virtual time by `d`, firing timers in deadline order and running the system
    /// to idle at each timer's instant.
    pub fn advance(&self, d: Duration) {
        let target = self.now_ms() + crate::timer::duration_ticks(d);
        loop {
            self.run_until_idle();
            match self.local.next_timer_tick() {
                Some(t) if t <= target => self.local.set_virtual_ms(t.max(self.now_ms())),
                _ => break,
            }
            // Fire what is due at this instant.
            self.step();
        }
        self.local.set_virtual_ms(target);
        self.run_until_idle();
    }

    /// Jumps the virtual clock forward by `d` without running anything first: timers that fall
    /// due in between fire late, together, at the next step (a clock-jump fault).
    pub fn jump(&self, d: Duration) {
        self.local
            .set_virtual_ms(self.now_ms() + crate::timer::duration_ticks(d));
    }

    /// The virtual millisecond of the earliest armed timer, if any.
    pub fn next_timer_ms(&self) -> Option<u64> {
        self.local.next_timer_tick()
    }

    /// Drives the system until `fut` completes, jumping virtual time to the next timer whenever
    /// nothing is runnable. Fails with [`Deadlock`] when it can never complete.
    pub fn block_on<F: Future>(&self, fut: F) -> Result<F::Output, Deadlock> {
        let mut fut = pin!(fut);
        let mut cx = TaskContext::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = self.enter(|| fut.as_mut().poll(&mut cx)) {
                return Ok(v);
            }
            if self.step() {
                continue;
            }
            match self.local.next_timer_tick() {
                Some(t) => self.local.set_virtual_ms(t.max(self.now_ms())),
                None => {
                    // One last poll: the last step may have completed it.
                    if let Poll::Ready(v) = self.enter(|| fut.as_mut().poll(&mut cx)) {
                        return Ok(v);
                    }
                    return Err(Deadlock);
                }
            }
        }
    }

    /// Installs a fault hook consulted on every delivery (see [`crate::FaultHook`]); `None`
    /// removes it.
    pub fn set_fault_hook(&self, hook: Option<Box<dyn crate::fault::FaultHook>>) {
        self.local.set_fault_hook(hook);
    }

    /// Enables [`crate::buggify`] fault points in this simulation.
    pub fn set_buggify(&self, on: bool) {
        self.local.set_buggify(on);
    }

    /// Reply addresses created on this thread since the system was created and not answered
    /// yet (the no-hang invariant: zero once the system is idle with no request outstanding).
    /// Deterministic systems that live on one thread at the same time (a simulation's hosts)
    /// share this count: it starts with the first of them.
    pub fn outstanding_replies(&self) -> i64 {
        crate::reply::tracking::outstanding()
    }

    /// Every actor turn so far: (virtual ms, actor). Equal seeds give equal traces.
    pub fn trace(&self) -> Vec<TraceEvent> {
        self.local.trace()
    }

    /// Actors alive.
    pub fn live_actors(&self) -> usize {
        self.local.live_actors()
    }

    /// Timers armed and pending.
    pub fn active_timers(&self) -> usize {
        self.local.active_timers()
    }

    /// Futures spawned with `Context::spawn_future` and not finished.
    pub fn live_tasks(&self) -> usize {
        self.local.live_tasks()
    }

    /// Stops every top-level actor gracefully (children first) and runs until idle.
    pub fn shutdown(&self) {
        self.handle.shared.begin_shutdown();
        self.run_until_idle();
    }
}

impl Drop for DeterministicSystem {
    fn drop(&mut self) {
        {
            let _g = enter(&self.local);
            self.local.kill_all();
        }
        // The last system on this thread stops the tracking.
        if LIVE_SYSTEMS.with(|n| {
            n.set(n.get().saturating_sub(1));
            n.get()
        }) == 0
        {
            crate::reply::tracking::stop();
        }
    }
}

#[cfg(test)]
mod awaiting_io {
    use super::*;
    use crate::Context;

    /// Says it awaits answers while it holds a count of calls in flight, then stops on 0.
    struct Caller;

    impl Actor for Caller {
        type Msg = u32;
        fn handle(&mut self, in_flight: u32, ctx: &mut Context<Self>) {
            ctx.set_awaiting_io(in_flight > 0);
            if in_flight == u32::MAX {
                ctx.stop();
            }
        }
    }

    #[test]
    fn the_worker_counts_actors_awaiting_io_until_they_stop() {
        let sys = DeterministicSystem::new(7);
        let a = sys.spawn(Caller).expect("spawn");
        let b = sys.spawn(Caller).expect("spawn");
        let count = |sys: &DeterministicSystem| sys.local.awaiting_io_count();
        sys.run_until_idle();
        assert_eq!(count(&sys), 0);
        a.try_send(3).expect("send");
        b.try_send(1).expect("send");
        sys.run_until_idle();
        assert_eq!(count(&sys), 2);
        // Saying it again does not count twice.
        a.try_send(2).expect("send");
        sys.run_until_idle();
        assert_eq!(count(&sys), 2);
        b.try_send(0).expect("send");
        sys.run_until_idle();
        assert_eq!(count(&sys), 1);
        // Stopping while awaiting releases the count.
        a.try_send(u32::MAX).expect("send");
        sys.run_until_idle();
        assert!(!a.is_alive());
        assert_eq!(count(&sys), 0);
    }
}
