//! The actor cell: what an `Addr` points at, and the turn-by-turn life of an actor.
//!
//! `ActorCell` is shared by every address of an actor. Its queue and signal list live in an
//! `UnsafeCell` that only the actor's home worker touches: senders on that worker push directly,
//! senders elsewhere hand the message to the home worker's inbound queue. Capacity is enforced
//! by the cell's `Admission` counter, which is the only state senders on other threads touch.
//!
//! `ActorSlot` is owned by the home worker and holds the actor value and its `Context`. A turn
//! handles system signals first (stop, child terminated, watch), then up to `batch` messages.

use std::any::Any;
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::actor::{Actor, ActorId, ExitReason, Terminated};
use crate::context::{Context, Lifecycle};
use crate::error::SendError;
use crate::mailbox::{Admission, Admit, MailboxConfig, Overflow};
use crate::sync::AtomicBool;
use crate::worker::{current_worker, RunResult, Runnable, WorkerLocal, WorkerShared, SLICE_CHECK};

/// How a stop proceeds once the children are gone.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum StopMode {
    /// Close the mailbox to new messages, handle what is queued, then stop (system shutdown).
    Drain,
    /// Stop now; queued messages are dropped (their reply addresses answer with an error).
    Immediate,
}

/// Messages of the priority channel: never subject to mailbox capacity.
pub(crate) enum Signal {
    Stop(ExitReason, StopMode),
    ChildTerminated(ActorId, ExitReason),
    WatchedTerminated(ActorId, ExitReason),
    Watch(crate::addr::ActorRef),
    Unwatch(ActorId),
    Link(crate::addr::ActorRef),
    LinkExit(ActorId, ExitReason),
}

/// The type-erased face of a cell, for signals and supervision.
pub(crate) trait AnyCell: Send + Sync + 'static {
    fn id(&self) -> ActorId;
    fn home(&self) -> &Arc<WorkerShared>;
    fn push_signal_local(&self, w: &WorkerLocal, sig: Signal);
    fn is_alive(&self) -> bool;
    fn exit_reason(&self) -> Option<ExitReason>;
    fn mailbox_len(&self) -> usize;
    fn mark_named(&self);
}

/// Sends a signal to any actor from any thread.
pub(crate) fn send_signal(target: &Arc<dyn AnyCell>, sig: Signal) {
    let t = target.clone();
    target.home().run_on(move |w| t.push_signal_local(w, sig));
}

const NO_SLOT: u32 = u32::MAX;

pub(crate) struct Local<M> {
    queue: VecDeque<M>,
    /// Boxed on first use: most actors never receive a signal before they stop, and an inline
    /// `VecDeque` would cost every actor 32 bytes instead of 8.
    #[allow(clippy::box_collection)]
    signals: Option<Box<VecDeque<Signal>>>,
    /// On the run queue (or running). Starts true: insertion schedules the first turn.
    scheduled: bool,
    dead: bool,
    slot: u32,
    /// When timing is on: nanoseconds on the worker's clock when the actor was scheduled.
    scheduled_at: u64,
}

impl<M> Local<M> {
    fn push_signal(&mut self, s: Signal) {
        self.signals
            .get_or_insert_with(Default::default)
            .push_back(s);
    }

    fn pop_signal(&mut self) -> Option<Signal> {
        self.signals.as_mut().and_then(|q| q.pop_front())
    }

    fn has_signals(&self) -> bool {
        self.signals.as_ref().is_some_and(|q| !q.is_empty())
    }

    fn take_signals(&mut self) -> VecDeque<Signal> {
        self.signals.take().map(|b| *b).unwrap_or_default()
    }
}

// Layout: what senders on other workers touch (the admission counter and flags, the home
// worker) comes first, on the same cache line as the Arc's reference count, which a remote
// send also touches; the home worker's private state comes last, on other lines. The 64-byte
// alignment keeps that split stable across allocations.
#[repr(C)]
pub(crate) struct ActorCell<A: Actor> {
    pub(crate) mb: Admission,
    pub(crate) home: Arc<WorkerShared>,
    pub(crate) id: ActorId,
    pub(crate) named: AtomicBool,
    exit: OnceLock<ExitReason>,
    local: UnsafeCell<Local<A::Msg>>,
}

// SAFETY: every field but `local` is Sync on its own. `local` is only accessed through
// `with_local`, which requires the home worker's `WorkerLocal` (a thread-owned value) and asserts
// that it is the home worker; so `local` is only ever touched from one thread.
unsafe impl<A: Actor> Sync for ActorCell<A> {}

impl<A: Actor> ActorCell<A> {
    pub(crate) fn new(id: ActorId, home: Arc<WorkerShared>, cfg: MailboxConfig) -> Self {
        ActorCell {
            id,
            home,
            mb: Admission::new(cfg),
            named: AtomicBool::new(false),
            exit: OnceLock::new(),
            local: UnsafeCell::new(Local {
                queue: VecDeque::new(),
                signals: None,
                scheduled: true,
                dead: false,
                slot: NO_SLOT,
                scheduled_at: 0,
            }),
        }
    }

    /// Runs `f` with the home-worker-only state. `f` must not call user code or re-enter.
    #[inline]
    pub(crate) fn with_local<R>(
        &self,
        w: &WorkerLocal,
        f: impl FnOnce(&mut Local<A::Msg>) -> R,
    ) -> R {
        debug_assert_eq!(
            w.shared.uid, self.home.uid,
            "actor state touched off its home worker"
        );
        // SAFETY: `w` is the home worker of this cell, so we are on its thread (a `WorkerLocal`
        // never leaves its thread). By construction every caller runs on the home worker:
        // senders call `push_local` only with the worker `home_worker` found (this cell's) and
        // otherwise send a closure through the home worker's inbound queue, which only the home
        // worker drains; signals go through `run_on(home)`; turns run from the home worker's
        // slab. `f` is internal code that neither calls user code nor re-enters `with_local`,
        // so this is the only live reference to `local`.
        f(unsafe { &mut *self.local.get() })
    }

    /// The worker running this thread, if it is this cell's home.
    #[inline]
    pub(crate) fn home_worker(&self) -> Option<&WorkerLocal> {
        let p = current_worker();
        // SAFETY: `current_worker` returns null or the `WorkerLocal` entered on this thread,
        // alive until its guard drops (which happens on this thread, never while a caller
        // holds the reference: it is used within the send that asked for it).
        unsafe { p.as_ref() }.filter(|w| w.shared.uid == self.home.uid)
    }

    /// Claims a place and enqueues (what `try_send` does). A sender on the home worker claims
    /// its place without an atomic read-modify-write (see `Admission`).
    #[inline]
    pub(crate) fn try_send(self: &Arc<Self>, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
        self.try_send_mapped(msg, |m| m)
    }

    /// [`ActorCell::try_send`] for a message that `map` turns into the actor's own, after the
    /// place is claimed: a refused message comes back as it was sent.
    #[inline]
    pub(crate) fn try_send_mapped<M>(
        self: &Arc<Self>,
        msg: M,
        map: impl FnOnce(M) -> A::Msg,
    ) -> Result<(), SendError<M>> {
        let w = self.home_worker();
        match self.mb.try_admit(w.is_some()) {
            Admit::Ok => {
                self.deliver_admitted(w, map(msg));
                Ok(())
            }
            Admit::Full => Err(SendError::Full(msg)),
            Admit::Closed => Err(SendError::Closed(msg)),
            Admit::Discard => Ok(()),
        }
    }

    /// Sends the messages at the front of `msgs`, in order, while there is room; the ones
    /// sent leave `msgs`, the rest stay (in order) and the error says why the first of them
    /// was refused. On the home worker, with room for all of them, the run costs one
    /// admission and one scheduling instead of one of each per message; from another thread
    /// each message claims its place as a single send does and the admitted run crosses in
    /// one inbound job; anything else takes them one at a time, exactly as
    /// [`ActorCell::try_send_mapped`]. `map` turns each into the actor's message once
    /// admitted, as there.
    pub(crate) fn try_send_many_mapped<M>(
        self: &Arc<Self>,
        msgs: &mut VecDeque<M>,
        map: impl Fn(M) -> A::Msg,
    ) -> Result<(), SendError<()>> {
        // A run of one is a single send: no run to admit or to move as one.
        if msgs.len() <= 1 {
            return self.try_send_each(msgs, map);
        }
        match self.home_worker() {
            Some(w) if self.admit_home_run(w, msgs.len()) => {
                let n = msgs.len();
                self.push_back_many(w, n, msgs.drain(..).map(map));
                Ok(())
            }
            _ => self.try_send_many_slow(msgs, map),
        }
    }

    /// [`ActorCell::try_send_many_mapped`] for the actor's own messages: an admitted run
    /// moves into the queue in one block.
    pub(crate) fn try_send_many(
        self: &Arc<Self>,
        msgs: &mut VecDeque<A::Msg>,
    ) -> Result<(), SendError<()>> {
        if msgs.len() <= 1 {
            return self.try_send_each(msgs, |m| m);
        }
        match self.home_worker() {
            Some(w) if self.admit_home_run(w, msgs.len()) => {
                self.append(w, msgs);
                Ok(())
            }
            _ => self.try_send_many_slow(msgs, |m| m),
        }
    }

    /// Claims `n` places for a run sent on the home worker `w` in one go; false (nothing
    /// claimed) when the run must go one message at a time (a fault plan decides per message,
    /// or there is not room for all).
    #[inline]
    fn admit_home_run(&self, w: &WorkerLocal, n: usize) -> bool {
        !w.has_faults() && self.mb.try_admit_home_many(n)
    }

    /// The run's other ways: from another thread, or one message at a time.
    fn try_send_many_slow<M>(
        self: &Arc<Self>,
        msgs: &mut VecDeque<M>,
        map: impl Fn(M) -> A::Msg,
    ) -> Result<(), SendError<()>> {
        if self.home_worker().is_none() && self.mb.overflow() == Overflow::Backpressure {
            return self.try_send_many_remote(msgs, map);
        }
        self.try_send_each(msgs, map)
    }

    /// Sends from the front of `msgs` one message at a time, as [`ActorCell::try_send_mapped`].
    #[inline]
    fn try_send_each<M>(
        self: &Arc<Self>,
        msgs: &mut VecDeque<M>,
        map: impl Fn(M) -> A::Msg,
    ) -> Result<(), SendError<()>> {
        while let Some(msg) = msgs.pop_front() {
            match self.try_send_mapped(msg, &map) {
                Ok(()) => {}
                Err(SendError::Full(msg)) => {
                    msgs.push_front(msg);
                    return Err(SendError::Full(()));
                }
                Err(SendError::Closed(msg)) => {
                    msgs.push_front(msg);
                    return Err(SendError::Closed(()));
                }
            }
        }
        Ok(())
    }

    /// [`ActorCell::try_send_many_mapped`] from another thread.
    fn try_send_many_remote<M>(
        self: &Arc<Self>,
        msgs: &mut VecDeque<M>,
        map: impl Fn(M) -> A::Msg,
    ) -> Result<(), SendError<()>> {
        let mut admitted = 0;
        let mut refused = Ok(());
        while admitted < msgs.len() {
            match self.mb.try_admit(false) {
                // A backpressure mailbox never discards.
                Admit::Ok | Admit::Discard => admitted += 1,
                Admit::Full => {
                    refused = Err(SendError::Full(()));
                    break;
                }
                Admit::Closed => {
                    refused = Err(SendError::Closed(()));
                    break;
                }
            }
        }
        if admitted > 0 {
            let run: Vec<A::Msg> = msgs.drain(..admitted).map(map).collect();
            let cell = self.clone();
            // Enqueued one by one on the home worker, as that many single sends would be.
            self.home.push(move |w: &WorkerLocal| {
                for msg in run {
                    cell.push_local(w, msg);
                }
            });
        }
        refused
    }

    /// Enqueues an admitted message: directly on the home worker `w` (the caller's
    /// [`ActorCell::home_worker`]), else through its inbound.
    ///
    /// The message is moved as few times as possible (request messages are a few hundred
    /// bytes, and every move is a memcpy on the per-request path): the worker check captures
    /// nothing, and only the cross-worker branch wraps the message in a closure.
    #[inline]
    fn deliver_admitted(self: &Arc<Self>, w: Option<&WorkerLocal>, msg: A::Msg) {
        match w {
            Some(w) => self.push_local(w, msg),
            None => self.deliver_remote(msg),
        }
    }

    /// Delivers a message that answers the actor's own request (capacity ignored, as a reply)
    /// and, when the actor is idle on this worker and the worker is in its driver between
    /// turns, handles it on the spot: one turn for this message, with no mailbox, no admission
    /// count and no run-queue hop. Otherwise it is queued like any reply. Err when the actor
    /// has stopped.
    #[inline]
    pub(crate) fn deliver_now(self: &Arc<Self>, msg: A::Msg) -> Result<(), A::Msg> {
        if let Some(w) = self.home_worker() {
            if w.inline_ok() && !w.has_faults() {
                // Not scheduled means idle: nothing queued, no signal pending, not running.
                let key = self.with_local(w, |l| {
                    if l.scheduled || l.dead {
                        None
                    } else {
                        l.scheduled = true;
                        Some(l.slot)
                    }
                });
                if let Some(key) = key {
                    self.run_now(w, key, msg);
                    return Ok(());
                }
            }
        }
        self.try_deliver_forced(msg)
    }

    /// The on-the-spot turn of `deliver_now` (the caller marked the actor scheduled).
    fn run_now(self: &Arc<Self>, w: &WorkerLocal, key: u32, msg: A::Msg) {
        let Some(mut slot) = w.take_slot(key) else {
            // Unreachable while "not scheduled" means "at home and idle"; if that ever breaks,
            // the message still arrives, through the queue.
            return self.queue_scheduled(w, msg);
        };
        let Some(actor) = slot.as_any().downcast_mut::<ActorSlot<A>>() else {
            w.end_turn(key, slot, RunResult::Idle);
            return self.queue_scheduled(w, msg);
        };
        w.set_inline_ok(false);
        let result = actor.run_with(w, msg);
        w.set_inline_ok(true);
        w.end_turn(key, slot, result);
    }

    /// Undoes `deliver_now`'s claim of the turn and delivers as any reply.
    #[cold]
    fn queue_scheduled(self: &Arc<Self>, w: &WorkerLocal, msg: A::Msg) {
        self.with_local(w, |l| l.scheduled = false);
        self.deliver_forced(msg);
    }

    #[inline(never)]
    fn deliver_remote(self: &Arc<Self>, msg: A::Msg) {
        let cell = self.clone();
        self.home
            .push(move |w: &WorkerLocal| cell.push_local(w, msg));
    }

    /// Admission ignoring capacity (replies, timers); drops the message if the actor stopped.
    #[inline]
    pub(crate) fn deliver_forced(self: &Arc<Self>, msg: A::Msg) {
        let _ = self.try_deliver_forced(msg);
    }

    /// Admission ignoring capacity; hands the message back if the actor stopped.
    #[inline]
    pub(crate) fn try_deliver_forced(self: &Arc<Self>, msg: A::Msg) -> Result<(), A::Msg> {
        self.try_deliver_forced_mapped(msg, |m| m)
    }

    /// [`ActorCell::try_deliver_forced`] for a message that `map` turns into the actor's own,
    /// once admitted.
    #[inline]
    pub(crate) fn try_deliver_forced_mapped<M>(
        self: &Arc<Self>,
        msg: M,
        map: impl FnOnce(M) -> A::Msg,
    ) -> Result<(), M> {
        let w = self.home_worker();
        if !self.mb.admit_forced(w.is_some()) {
            return Err(msg);
        }
        self.deliver_admitted(w, map(msg));
        Ok(())
    }

    #[inline]
    fn push_local(self: &Arc<Self>, w: &WorkerLocal, msg: A::Msg) {
        if w.has_faults() {
            self.push_with_faults(w, msg);
        } else {
            self.enqueue(w, msg);
        }
    }

    /// Deterministic mode with a fault plan: ask the hook what this delivery becomes.
    #[cold]
    fn push_with_faults(self: &Arc<Self>, w: &WorkerLocal, msg: A::Msg) {
        use crate::fault::Delivery;
        match w.fault_decision(self.id) {
            Delivery::Deliver => self.enqueue(w, msg),
            Delivery::Drop => {
                self.mb.release(1);
                drop(msg);
            }
            Delivery::Delay(d) => {
                let cell = self.clone();
                let mut msg = Some(msg);
                let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
                w.arm_timer(
                    d,
                    Box::new(move |w: &WorkerLocal| {
                        if let Some(m) = msg.take() {
                            cell.enqueue(w, m);
                        }
                        crate::timer::TimerNext::Done
                    }),
                    flag,
                );
            }
            Delivery::Duplicate => {
                let copy = w
                    .fault_clone(self.id, &msg as &dyn std::any::Any)
                    .and_then(|b| b.downcast::<A::Msg>().ok());
                self.enqueue(w, msg);
                if let Some(copy) = copy {
                    if self.mb.admit_forced(true) {
                        self.enqueue(w, *copy);
                    }
                }
            }
            Delivery::Crash => {
                self.mb.release(1);
                drop(msg);
                self.push_signal_local(
                    w,
                    Signal::Stop(
                        ExitReason::Panicked(Arc::from("injected fault")),
                        StopMode::Immediate,
                    ),
                );
            }
        }
    }

    #[inline]
    fn enqueue(&self, w: &WorkerLocal, msg: A::Msg) {
        // Two short borrows instead of one closure that owns the message: the common case
        // then writes the message into the queue once, and the rare ones (a dead actor, a
        // full drop-oldest mailbox) take a cold path that drops messages after the borrow
        // (dropping may answer a ReplyTo, which may enqueue here again).
        let (dead, full) = self.with_local(w, |l| {
            (
                l.dead,
                self.mb.overflow() == Overflow::DropOldest && l.queue.len() >= self.mb.capacity(),
            )
        });
        if dead || full {
            return self.enqueue_cold(w, msg, dead);
        }
        self.push_back(w, msg);
    }

    /// Appends to the queue and schedules the actor if it was idle.
    #[inline]
    fn push_back(&self, w: &WorkerLocal, msg: A::Msg) {
        debug_assert_eq!(
            w.shared.uid, self.home.uid,
            "actor state touched off its home worker"
        );
        // SAFETY: as in `with_local`: `w` is this cell's home worker, so we are on its thread;
        // the push calls no user code and does not re-enter, so this is the only live
        // reference to `local` while it lasts.
        unsafe { (*self.local.get()).queue.push_back(msg) };
        self.schedule_if_idle(w);
    }

    /// Enqueues an admitted run of `n` messages, scheduling once (a run for an actor that
    /// has stopped gives its places back and is dropped, as its messages would be one by one).
    fn push_back_many(&self, w: &WorkerLocal, n: usize, msgs: impl Iterator<Item = A::Msg>) {
        if self.with_local(w, |l| l.dead) {
            self.mb.release(n);
            msgs.for_each(drop);
            return;
        }
        let local = self.local.get();
        // The iterator may run a mapping given by the sender (user code): no reference to
        // `local` is held while it runs, only during each push.
        for msg in msgs {
            // SAFETY: as in `push_back`: `w` is this cell's home worker, so we are on its
            // thread; the push calls no user code and does not re-enter, so this is the only
            // live reference to `local` while it lasts.
            unsafe { (*local).queue.push_back(msg) };
        }
        self.schedule_if_idle(w);
    }

    /// [`ActorCell::push_back_many`] for the actor's own messages: one move of the block.
    fn append(&self, w: &WorkerLocal, msgs: &mut VecDeque<A::Msg>) {
        if self.with_local(w, |l| l.dead) {
            self.mb.release(msgs.len());
            // Dropped after the borrow: dropping may answer a ReplyTo that enqueues here.
            drop(std::mem::take(msgs));
            return;
        }
        // SAFETY: as in `push_back`: on the home worker's thread, and moving messages from
        // one queue to another calls no user code, so this is the only live reference.
        unsafe { (*self.local.get()).queue.append(msgs) };
        self.schedule_if_idle(w);
    }

    /// Puts the actor on its worker's run queue unless it is there already.
    #[inline]
    fn schedule_if_idle(&self, w: &WorkerLocal) {
        let timing = w.system.timing;
        debug_assert_eq!(
            w.shared.uid, self.home.uid,
            "actor state touched off its home worker"
        );
        // SAFETY: as in `push_back`: on the home worker's thread; reading and setting the
        // scheduling flag calls nothing, so this is the only live reference to `local`.
        let schedule = unsafe {
            let l = &mut *self.local.get();
            if l.scheduled {
                None
            } else {
                l.scheduled = true;
                if timing {
                    l.scheduled_at = w.mono_ns();
                }
                Some(l.slot)
            }
        };
        if let Some(key) = schedule {
            w.schedule(key);
        }
    }

    #[cold]
    #[inline(never)]
    fn enqueue_cold(&self, w: &WorkerLocal, msg: A::Msg, dead: bool) {
        if dead {
            self.mb.release(1);
            drop(msg);
            return;
        }
        let evicted = self.with_local(w, |l| l.queue.pop_front());
        if evicted.is_some() {
            self.mb.count_dropped();
            self.mb.release(1);
        }
        // Dropped here, after the borrow: dropping may answer a ReplyTo, which may enqueue.
        drop(evicted);
        self.push_back(w, msg);
    }

    pub(crate) fn set_slot(&self, w: &WorkerLocal, key: u32) {
        self.with_local(w, |l| l.slot = key);
    }

    pub(crate) fn exit_reason(&self) -> Option<ExitReason> {
        self.exit.get().cloned()
    }
}

impl<A: Actor> AnyCell for ActorCell<A> {
    fn id(&self) -> ActorId {
        self.id
    }

    fn home(&self) -> &Arc<WorkerShared> {
        &self.home
    }

    fn push_signal_local(&self, w: &WorkerLocal, sig: Signal) {
        let (rejected, schedule) = self.with_local(w, |l| {
            if l.dead {
                return (Some(sig), None);
            }
            l.push_signal(sig);
            if l.scheduled {
                (None, None)
            } else {
                l.scheduled = true;
                (None, Some(l.slot))
            }
        });
        if let Some(key) = schedule {
            w.schedule(key);
        }
        match rejected {
            Some(Signal::Watch(watcher)) => {
                // Watching an actor that is already gone answers at once, like an OTP monitor.
                let reason = self.exit_reason().unwrap_or(ExitReason::Normal);
                send_signal(&watcher.0, Signal::WatchedTerminated(self.id, reason));
            }
            Some(Signal::Link(peer)) => {
                // Linking to a dead actor delivers its exit at once, like OTP's noproc.
                let reason = self.exit_reason().unwrap_or(ExitReason::Normal);
                send_signal(&peer.0, Signal::LinkExit(self.id, reason));
            }
            _ => {}
        }
    }

    fn is_alive(&self) -> bool {
        self.exit.get().is_none()
    }

    fn exit_reason(&self) -> Option<ExitReason> {
        self.exit.get().cloned()
    }

    fn mailbox_len(&self) -> usize {
        self.mb.len()
    }

    fn mark_named(&self) {
        self.named.store(true, Ordering::Release);
    }
}

/// The worker-owned half of an actor: its value and context.
pub(crate) struct ActorSlot<A: Actor> {
    pub(crate) actor: A,
    pub(crate) ctx: Context<A>,
    /// This actor's messages per turn, where it overrides the worker's (`SpawnOptions::batch`).
    pub(crate) batch: Option<usize>,
}

fn panic_message(p: &Box<dyn Any + Send>) -> Arc<str> {
    if let Some(s) = p.downcast_ref::<&str>() {
        Arc::from(*s)
    } else if let Some(s) = p.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("non-string panic payload")
    }
}

/// When timing is on, the turn's start on the wall clock and the worker's clock.
#[inline]
fn turn_start(w: &WorkerLocal) -> Option<(Instant, u64)> {
    w.system.timing.then(|| (Instant::now(), w.mono_ns()))
}

impl<A: Actor> ActorSlot<A> {
    fn on_panic(&mut self, w: &WorkerLocal, p: Box<dyn Any + Send>) {
        let msg = panic_message(&p);
        tracing::error!(actor = %self.ctx.cell.id, panic = %msg, "actor panicked");
        let reason = ExitReason::Panicked(msg);
        match &mut self.ctx.state {
            Lifecycle::Stopping { reason: r, mode } => {
                *r = reason;
                *mode = StopMode::Immediate;
                if self.ctx.live_children == 0 {
                    self.after_children(w);
                }
            }
            Lifecycle::Draining { reason: r } => {
                *r = reason;
                self.finish_stop(w);
            }
            Lifecycle::Dead => {}
            _ => self.begin_stop(w, reason, StopMode::Immediate),
        }
    }

    fn begin_stop(&mut self, w: &WorkerLocal, reason: ExitReason, mode: StopMode) {
        // The actor's own pending decision (`ctx.stop_with`, `ctx.fail`) wins over a stop that
        // arrives from outside in the same turn; only a kill overrides it.
        let (reason, mode) = match self.ctx.stop_request.take() {
            Some(req) if reason != ExitReason::Killed => *req,
            _ => (reason, mode),
        };
        let killed = reason == ExitReason::Killed;
        match &mut self.ctx.state {
            Lifecycle::Created | Lifecycle::Running => {}
            Lifecycle::Stopping { reason: r, mode: m } if killed => {
                // A kill overtakes a graceful stop in progress.
                *r = ExitReason::Killed;
                *m = StopMode::Immediate;
                for c in self.ctx.children_slice() {
                    send_signal(&c.0, Signal::Stop(ExitReason::Killed, StopMode::Immediate));
                }
                if self.ctx.live_children == 0 {
                    self.after_children(w);
                }
                return;
            }
            Lifecycle::Draining { reason: r } if killed => {
                *r = ExitReason::Killed;
                self.finish_stop(w);
                return;
            }
            _ => return,
        }
        tracing::debug!(actor = %self.ctx.cell.id, %reason, "actor stopping");
        self.ctx.state = Lifecycle::Stopping {
            reason: reason.clone(),
            mode,
        };
        if !killed {
            let r = catch_unwind(AssertUnwindSafe(|| self.actor.stopping(&mut self.ctx)));
            if let Err(p) = r {
                tracing::error!(actor = %self.ctx.cell.id, panic = %panic_message(&p), "stopping hook panicked");
            }
        }
        let child_reason = if killed {
            ExitReason::Killed
        } else {
            ExitReason::Shutdown
        };
        if killed || !self.actor.stops_own_children() {
            for c in self.ctx.children_slice() {
                send_signal(&c.0, Signal::Stop(child_reason.clone(), mode));
            }
        }
        if self.ctx.live_children == 0 {
            self.after_children(w);
        }
    }

    fn after_children(&mut self, w: &WorkerLocal) {
        let Lifecycle::Stopping { reason, mode } = &self.ctx.state else {
            return;
        };
        match mode {
            StopMode::Drain => {
                let reason = reason.clone();
                self.ctx.cell.mb.close();
                self.ctx.state = Lifecycle::Draining { reason };
                let empty = self.ctx.cell.with_local(w, |l| l.queue.is_empty());
                if empty {
                    self.finish_stop(w);
                }
            }
            StopMode::Immediate => self.finish_stop(w),
        }
    }

    fn finish_stop(&mut self, w: &WorkerLocal) {
        let reason = match std::mem::replace(&mut self.ctx.state, Lifecycle::Dead) {
            Lifecycle::Stopping { reason, .. } | Lifecycle::Draining { reason } => reason,
            Lifecycle::Dead => return,
            Lifecycle::Created | Lifecycle::Running => ExitReason::Killed,
        };
        let cell = self.ctx.cell.clone();
        cell.mb.close();
        if std::mem::take(&mut self.ctx.awaiting_io) {
            w.count_awaiting_io(false);
        }
        let (queue, signals) = cell.with_local(w, |l| {
            l.dead = true;
            (std::mem::take(&mut l.queue), l.take_signals())
        });
        cell.mb.release(queue.len());
        let _ = cell.exit.set(reason.clone());
        let extras = self.ctx.extras.take();
        let mut watchers = Vec::new();
        let mut links = Vec::new();
        if let Some(mut x) = extras {
            links = std::mem::take(&mut x.links);
            for (k, g) in x.tasks.drain(..) {
                w.cancel_task(k, g);
            }
            for (k, g) in x.timers.drain(..) {
                w.cancel_timer(k, g);
            }
            watchers = std::mem::take(&mut x.watchers);
        }
        let r = catch_unwind(AssertUnwindSafe(|| self.actor.stopped(&reason)));
        if let Err(p) = r {
            tracing::error!(actor = %cell.id, panic = %panic_message(&p), "stopped hook panicked");
        }
        // Queued requests are answered with errors as their reply addresses drop.
        drop(queue);
        for s in signals {
            match s {
                Signal::Watch(watcher) => watchers.push(watcher),
                Signal::Link(peer) => links.push(peer),
                _ => {}
            }
        }
        for peer in links {
            send_signal(&peer.0, Signal::LinkExit(cell.id, reason.clone()));
        }
        for watcher in watchers {
            send_signal(
                &watcher.0,
                Signal::WatchedTerminated(cell.id, reason.clone()),
            );
        }
        match self.ctx.parent.take() {
            Some(p) => send_signal(&p.0, Signal::ChildTerminated(cell.id, reason.clone())),
            None => w.system.root_terminated(cell.id),
        }
        if cell.named.load(Ordering::Acquire) {
            w.system.registry.remove_actor(cell.id);
        }
        tracing::debug!(actor = %cell.id, %reason, "actor stopped");
        w.system.actor_stopped();
    }

    /// Runs the `terminated` hook while the actor can still act on it (running or stopping).
    fn notify_terminated(&mut self, w: &WorkerLocal, ev: Terminated) {
        if !matches!(
            self.ctx.state,
            Lifecycle::Running | Lifecycle::Stopping { .. }
        ) {
            return;
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            self.actor.terminated(ev, &mut self.ctx)
        }));
        if let Err(p) = r {
            self.on_panic(w, p);
        }
    }

    fn on_signal(&mut self, w: &WorkerLocal, sig: Signal) {
        match sig {
            Signal::Stop(reason, mode) => self.begin_stop(w, reason, mode),
            Signal::ChildTerminated(id, reason) => {
                self.ctx.child_terminated();
                self.notify_terminated(
                    w,
                    Terminated {
                        id,
                        reason,
                        child: true,
                        linked: false,
                    },
                );
                if matches!(self.ctx.state, Lifecycle::Stopping { .. })
                    && self.ctx.live_children == 0
                {
                    self.after_children(w);
                }
            }
            Signal::Link(peer) => self.ctx.extras_mut().links.push(peer),
            Signal::LinkExit(id, reason) => {
                let was_linked = self.ctx.extras.as_mut().is_some_and(|x| {
                    let before = x.links.len();
                    x.links.retain(|l| l.0.id() != id);
                    x.links.len() != before
                });
                if !was_linked {
                    return;
                }
                if self.ctx.trap_exits {
                    self.notify_terminated(
                        w,
                        Terminated {
                            id,
                            reason,
                            child: false,
                            linked: true,
                        },
                    );
                } else if !reason.is_normal() {
                    self.begin_stop(w, ExitReason::Linked(id), StopMode::Immediate);
                }
            }
            Signal::WatchedTerminated(id, reason) => {
                self.notify_terminated(
                    w,
                    Terminated {
                        id,
                        reason,
                        child: false,
                        linked: false,
                    },
                );
            }
            Signal::Watch(watcher) => self.ctx.extras_mut().watchers.push(watcher),
            Signal::Unwatch(id) => {
                if let Some(x) = self.ctx.extras.as_mut() {
                    x.watchers.retain(|x| x.0.id() != id);
                }
            }
        }
    }

    /// A turn for one message handed over directly by `ActorCell::deliver_now`: the actor was
    /// idle (running, nothing queued, no signal pending), so this is the turn `run` would
    /// have taken for a queue holding just `msg`.
    fn run_with(&mut self, w: &WorkerLocal, msg: A::Msg) -> RunResult {
        let t0 = turn_start(w);
        if !self.ctx.state.handles_messages() {
            // Not reachable for an idle actor (created actors are scheduled, dead ones are
            // never idle); dropped as a stopped actor's message would be.
            drop(msg);
            return self.end_turn(w, 0, t0);
        }
        let r = catch_unwind(AssertUnwindSafe(|| {
            self.ctx.handled += 1;
            self.actor.handle(msg, &mut self.ctx);
            if self.ctx.stop_request.is_none() {
                self.actor.handled_batch(&mut self.ctx);
            }
        }));
        if let Err(p) = r {
            self.on_panic(w, p);
        }
        self.end_turn(w, 1, t0)
    }

    /// What every turn does after its messages: counts, pending stops, timing, and whether
    /// the actor needs another turn.
    #[inline]
    fn end_turn(&mut self, w: &WorkerLocal, n: usize, t0: Option<(Instant, u64)>) -> RunResult {
        w.note_turn(n);
        if let Some(req) = self.ctx.stop_request.take() {
            let (reason, mode) = *req;
            self.begin_stop(w, reason, mode);
        }
        if matches!(self.ctx.state, Lifecycle::Draining { .. })
            && self.ctx.cell.with_local(w, |l| l.queue.is_empty())
        {
            self.finish_stop(w);
        }
        if let Some((t0, t0_ns)) = t0 {
            let at = self
                .ctx
                .cell
                .with_local(w, |l| std::mem::take(&mut l.scheduled_at));
            let delay_ns = if at == 0 { 0 } else { t0_ns.saturating_sub(at) };
            w.shared
                .stats
                .record_timing(t0.elapsed().as_nanos() as u64, delay_ns);
        }
        if self.is_dead() {
            return RunResult::Dead;
        }
        self.ctx.cell.with_local(w, |l| {
            if l.queue.is_empty() && !l.has_signals() {
                l.scheduled = false;
                RunResult::Idle
            } else {
                RunResult::Again
            }
        })
    }

    fn is_dead(&self) -> bool {
        matches!(self.ctx.state, Lifecycle::Dead)
    }
}

impl<A: Actor> Runnable for ActorSlot<A> {
    fn run(&mut self, w: &WorkerLocal) -> RunResult {
        let t0 = turn_start(w);
        if matches!(self.ctx.state, Lifecycle::Created) {
            self.ctx.state = Lifecycle::Running;
            let _span = tracing::trace_span!("actor", id = %self.ctx.cell.id).entered();
            tracing::trace!("actor started");
            let r = catch_unwind(AssertUnwindSafe(|| self.actor.started(&mut self.ctx)));
            if let Err(p) = r {
                self.on_panic(w, p);
            }
        }
        loop {
            if self.is_dead() {
                return RunResult::Dead;
            }
            let sig = self.ctx.cell.with_local(w, |l| l.pop_signal());
            match sig {
                Some(s) => self.on_signal(w, s),
                None => break,
            }
        }
        let mut n: usize = 0;
        if self.ctx.state.handles_messages() {
            let budget = self.batch.unwrap_or(w.batch);
            let r = catch_unwind(AssertUnwindSafe(|| {
                while n < budget {
                    let Some(m) = self.ctx.cell.with_local(w, |l| l.queue.pop_front()) else {
                        break;
                    };
                    n += 1;
                    self.ctx.handled += 1;
                    self.actor.handle(m, &mut self.ctx);
                    if self.ctx.stop_request.is_some() {
                        break;
                    }
                    if n % SLICE_CHECK == 0 && w.slice_spent() {
                        break;
                    }
                }
                if n > 0 && self.ctx.stop_request.is_none() {
                    self.actor.handled_batch(&mut self.ctx);
                }
            }));
            self.ctx.cell.mb.release(n);
            if let Err(p) = r {
                self.on_panic(w, p);
            }
        }
        self.end_turn(w, n, t0)
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }

    fn id(&self) -> ActorId {
        self.ctx.cell.id
    }

    fn kill_now(&mut self, w: &WorkerLocal) {
        if self.is_dead() {
            return;
        }
        self.ctx.state = Lifecycle::Stopping {
            reason: ExitReason::Killed,
            mode: StopMode::Immediate,
        };
        // Children on this and other workers are killed by their own workers.
        if let Some(x) = self.ctx.extras.as_mut() {
            x.children.clear();
        }
        self.ctx.live_children = 0;
        self.finish_stop(w);
    }
}

#[cfg(test)]
mod footprint {
    /// Guards the per-actor footprint (the "bytes per idle actor" figure): an idle actor is one
    /// `Arc<ActorCell>` plus one boxed `ActorSlot`; rarely used state lives behind boxes that
    /// are allocated on first use.
    #[test]
    fn idle_actor_structures_stay_small() {
        struct Idle(#[allow(dead_code)] u64);
        impl crate::Actor for Idle {
            type Msg = ();
            fn handle(&mut self, _: (), _: &mut crate::Context<Self>) {}
        }
        let cell = std::mem::size_of::<super::ActorCell<Idle>>();
        let slot = std::mem::size_of::<super::ActorSlot<Idle>>();
        assert!(cell <= 256, "ActorCell grew to {cell} bytes");
        assert!(slot <= 112, "ActorSlot grew to {slot} bytes");
    }
}
