//! `Context<A>`: what a handler can do besides changing its own state.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::actor::{Actor, ActorId, ExitReason};
use crate::addr::{ActorRef, Addr};
use crate::cell::{send_signal, ActorCell, Signal, StopMode};
use crate::error::{ReplyError, SpawnError};
use crate::metrics::ActorMetrics;
use crate::reply::ReplyTo;
use crate::system::{spawn_actor, SpawnOptions, SystemHandle};
use crate::timer::{TimerHandle, TimerNext};
use crate::worker::{with_current, WorkerLocal};

/// Where an actor is in its life.
pub(crate) enum Lifecycle {
    Created,
    Running,
    /// Asked to stop; waiting for children, still handling messages.
    Stopping {
        reason: ExitReason,
        mode: StopMode,
    },
    /// Children gone, mailbox closed, handling what is queued.
    Draining {
        reason: ExitReason,
    },
    Dead,
}

impl Lifecycle {
    pub(crate) fn handles_messages(&self) -> bool {
        matches!(
            self,
            Lifecycle::Running | Lifecycle::Stopping { .. } | Lifecycle::Draining { .. }
        )
    }
}

/// The handler's view of its actor and the system: its own address, children, timers, watches,
/// reply addresses and futures.
pub struct Context<A: Actor> {
    pub(crate) cell: Arc<ActorCell<A>>,
    pub(crate) state: Lifecycle,
    pub(crate) parent: Option<ActorRef>,
    /// State most actors never use, allocated on first use so an idle actor stays small.
    pub(crate) extras: Option<Box<Extras>>,
    pub(crate) live_children: u32,
    pub(crate) stop_request: Option<Box<(ExitReason, StopMode)>>,
    pub(crate) handled: u64,
    pub(crate) trap_exits: bool,
    /// Counted in the worker's `awaiting_io` (see `set_awaiting_io`).
    pub(crate) awaiting_io: bool,
}

/// The rarely used part of a context.
#[derive(Default)]
pub(crate) struct Extras {
    /// Children, compacted lazily: entries of stopped children linger until the list is
    /// twice the live count, so a child's exit costs O(1) even with 100,000 siblings.
    pub(crate) children: Vec<ActorRef>,
    pub(crate) watchers: Vec<ActorRef>,
    pub(crate) tasks: Vec<(u32, u32)>,
    pub(crate) timers: Vec<(u32, u32)>,
    pub(crate) links: Vec<ActorRef>,
}

fn local<R>(f: impl FnOnce(&WorkerLocal) -> R) -> R {
    with_current(|w| f(w.expect("Context used outside its actor's worker")))
}

impl<A: Actor> Context<A> {
    pub(crate) fn new(cell: Arc<ActorCell<A>>, parent: Option<ActorRef>) -> Self {
        Context {
            cell,
            state: Lifecycle::Created,
            parent,
            extras: None,
            live_children: 0,
            stop_request: None,
            handled: 0,
            trap_exits: false,
            awaiting_io: false,
        }
    }

    /// This actor's address.
    pub fn addr(&self) -> Addr<A> {
        Addr {
            cell: self.cell.clone(),
        }
    }

    /// This actor's identity.
    pub fn id(&self) -> ActorId {
        self.cell.id
    }

    /// A type-erased handle to this actor.
    pub fn actor_ref(&self) -> ActorRef {
        ActorRef(self.cell.clone())
    }

    /// The index of the worker this actor runs on.
    pub fn worker_index(&self) -> usize {
        self.cell.home.index
    }

    /// The system this actor belongs to.
    pub fn system(&self) -> SystemHandle {
        local(|w| SystemHandle {
            shared: w.system.clone(),
        })
    }

    /// Tells the worker whether this actor waits on a peer's answer over I/O (a client
    /// connection with calls in flight). While any actor on the worker does, its idle spin
    /// runs whatever the adaptive spin has learned (`SystemBuilder::adaptive_spin`): a round
    /// trip's answer is then caught without the wake-up of a parked core, which a latency-bound
    /// caller pays on every call. Cheap to call on every turn; cleared when the actor stops.
    #[inline]
    pub fn set_awaiting_io(&mut self, awaiting: bool) {
        if self.awaiting_io != awaiting {
            self.awaiting_io = awaiting;
            local(|w| w.count_awaiting_io(awaiting));
        }
    }

    /// The current time: the real clock, or the virtual clock in deterministic mode.
    pub fn now(&self) -> Instant {
        local(|w| w.clock.now())
    }

    /// The parent, if this actor was spawned as a child.
    pub fn parent(&self) -> Option<&ActorRef> {
        self.parent.as_ref()
    }

    pub(crate) fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Default::default)
    }

    /// Children as recorded (may include ones that stopped but were not yet reported).
    pub(crate) fn children_slice(&self) -> &[ActorRef] {
        self.extras.as_ref().map_or(&[], |x| &x.children)
    }

    /// Live children.
    pub fn children(&self) -> impl Iterator<Item = &ActorRef> + '_ {
        self.children_slice().iter().filter(|c| c.is_alive())
    }

    /// Number of children not yet reported terminated.
    pub fn child_count(&self) -> usize {
        self.live_children as usize
    }

    pub(crate) fn child_terminated(&mut self) {
        self.live_children = self.live_children.saturating_sub(1);
        let live = self.live_children as usize;
        if let Some(x) = self.extras.as_mut() {
            if x.children.len() > 8 && x.children.len() > 2 * live {
                x.children.retain(|c| c.is_alive());
            }
        }
    }

    /// Spawns a child on this actor's worker. Children stop before their parent.
    pub fn spawn<B: Actor>(&mut self, actor: B) -> Result<Addr<B>, SpawnError> {
        self.spawn_with(actor, SpawnOptions::default())
    }

    /// Spawns a child with explicit placement, mailbox and name.
    pub fn spawn_with<B: Actor>(
        &mut self,
        actor: B,
        opts: SpawnOptions,
    ) -> Result<Addr<B>, SpawnError> {
        let me = self.actor_ref();
        let addr = local(|w| spawn_actor(&w.system, actor, opts, Some(me)))?;
        self.extras_mut().children.push(addr.actor_ref());
        self.live_children += 1;
        Ok(addr)
    }

    /// Stops this actor after the current message: children stop first, queued messages are
    /// dropped (their reply addresses answer with an error), watchers are told `Normal`.
    pub fn stop(&mut self) {
        self.stop_request
            .get_or_insert_with(|| Box::new((ExitReason::Normal, StopMode::Immediate)));
    }

    /// Stops this actor after the current message with a given reason.
    pub fn stop_with(&mut self, reason: ExitReason) {
        self.stop_request = Some(Box::new((reason, StopMode::Immediate)));
    }

    /// Stops this actor with an application failure (an abnormal exit supervisors restart).
    pub fn fail(&mut self, why: impl Into<Arc<str>>) {
        self.stop_request = Some(Box::new((
            ExitReason::Failed(why.into()),
            StopMode::Immediate,
        )));
    }

    /// Sends `msg` to this actor after `delay`. The timer is cancelled if the actor stops.
    pub fn send_after(&mut self, delay: Duration, msg: A::Msg) -> TimerHandle {
        let cell = self.cell.clone();
        let mut msg = Some(msg);
        self.arm(delay, move |_| {
            if let Some(m) = msg.take() {
                cell.deliver_forced(m);
            }
            TimerNext::Done
        })
    }

    /// Sends `make()` to this actor every `period` until cancelled or the actor stops.
    pub fn send_interval(
        &mut self,
        period: Duration,
        mut make: impl FnMut() -> A::Msg + Send + 'static,
    ) -> TimerHandle {
        let cell = self.cell.clone();
        self.arm(period, move |_| {
            if cell.mb.is_closed() {
                return TimerNext::Done;
            }
            cell.deliver_forced(make());
            TimerNext::Again(period)
        })
    }

    fn arm(
        &mut self,
        after: Duration,
        f: impl FnMut(&WorkerLocal) -> TimerNext + Send + 'static,
    ) -> TimerHandle {
        let flag = Arc::new(AtomicBool::new(false));
        let timers = &mut self.extras.get_or_insert_with(Default::default).timers;
        let h = local(|w| {
            // Forget timers that already fired so the list stays as small as the live set.
            if timers.len() >= 32 && timers.len().is_power_of_two() {
                timers.retain(|(k, g)| w.timer_is_pending(*k, *g));
            }
            w.arm_timer(after, Box::new(f), flag)
        });
        timers.push((h.key, h.gen));
        h
    }

    /// Watches another actor: when it terminates, [`Actor::terminated`] runs here with its
    /// reason (at once if it is already gone).
    pub fn watch(&mut self, target: &ActorRef) {
        send_signal(&target.0, Signal::Watch(self.actor_ref()));
    }

    /// Links this actor and `target` both ways, as in Erlang: when either exits abnormally, the
    /// other stops with [`ExitReason::Linked`], unless it traps exits (then the exit arrives in
    /// [`Actor::terminated`] with `linked: true`). Normal exits do not propagate. Linking to an
    /// actor that is already gone delivers its exit at once.
    pub fn link(&mut self, target: &ActorRef) {
        self.extras_mut().links.push(target.clone());
        send_signal(&target.0, Signal::Link(self.actor_ref()));
    }

    /// Whether exits of linked actors arrive as [`Actor::terminated`] events instead of
    /// stopping this actor.
    pub fn trap_exits(&mut self, on: bool) {
        self.trap_exits = on;
    }

    /// Stops watching `target`.
    pub fn unwatch(&mut self, target: &ActorRef) {
        send_signal(&target.0, Signal::Unwatch(self.cell.id));
    }

    /// A reply address whose answer arrives in this actor's mailbox as `map(result)`.
    /// Replies bypass mailbox capacity: they answer requests this actor chose to make.
    pub fn reply_to<T: Send + 'static>(
        &self,
        map: impl FnOnce(Result<T, ReplyError>) -> A::Msg + Send + 'static,
    ) -> ReplyTo<T> {
        let cell = self.cell.clone();
        ReplyTo::from_fn(move |r| cell.deliver_forced(map(r)))
    }

    /// A reusable source of reply addresses into this actor's mailbox: `map(tag, answer)`
    /// builds the message, the answer boxed (it is boxed where it is sent, so a large answer
    /// is copied once on its way). Where [`Context::reply_to`] boxes a closure per address, a
    /// channel is made once and each address costs a reference count: the shape for actors
    /// that create one per request (connections).
    pub fn reply_channel<T: Send + 'static, F>(&self, map: F) -> crate::reply::ReplyChannel<T>
    where
        F: Fn(u64, Box<Result<T, ReplyError>>) -> A::Msg + Send + Sync + 'static,
    {
        self.make_reply_channel(map, None::<()>)
    }

    /// Like [`Context::reply_channel`], with `extension` attached for whoever holds one of
    /// its addresses ([`ReplyTo::channel_extension`]).
    pub fn reply_channel_with<T: Send + 'static, F, E>(
        &self,
        map: F,
        extension: E,
    ) -> crate::reply::ReplyChannel<T>
    where
        F: Fn(u64, Box<Result<T, ReplyError>>) -> A::Msg + Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        self.make_reply_channel(map, Some(extension))
    }

    /// A reusable source of reply addresses whose answers collect on a board
    /// ([`crate::ReplyBoard`]) instead of arriving as a message each: the first answer after
    /// the board was last taken sends this actor `wake()`, on which it takes every answer
    /// posted since ([`crate::ReplyBoard::take`]). For actors with many requests in flight
    /// (a connection's pipelined requests): no allocation and no mailbox pass per answer.
    /// The wake is built while the board is locked: it must not own one of the board's own
    /// reply addresses (dropping it, if this actor has stopped, would answer into the board).
    pub fn reply_board<T: Send + 'static>(
        &self,
        wake: impl Fn() -> A::Msg + Send + Sync + 'static,
    ) -> crate::ReplyBoard<T> {
        self.make_reply_board(wake, None)
    }

    /// Like [`Context::reply_board`], with `extension` attached for whoever holds one of its
    /// addresses ([`ReplyTo::channel_extension`]).
    pub fn reply_board_with<T: Send + 'static, E: Send + Sync + 'static>(
        &self,
        wake: impl Fn() -> A::Msg + Send + Sync + 'static,
        extension: E,
    ) -> crate::ReplyBoard<T> {
        self.make_reply_board(wake, Some(Box::new(extension)))
    }

    fn make_reply_board<T: Send + 'static>(
        &self,
        wake: impl Fn() -> A::Msg + Send + Sync + 'static,
        extension: Option<Box<dyn std::any::Any + Send + Sync>>,
    ) -> crate::ReplyBoard<T> {
        let cell = self.cell.clone();
        crate::ReplyBoard::new(Box::new(move || cell.deliver_forced(wake())), extension)
    }

    fn make_reply_channel<T: Send + 'static, F, E>(
        &self,
        map: F,
        extension: Option<E>,
    ) -> crate::reply::ReplyChannel<T>
    where
        F: Fn(u64, Box<Result<T, ReplyError>>) -> A::Msg + Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        // `map` is a type parameter, not a function pointer, so it inlines into `deliver` and
        // the message is built where it is queued (one answer per request crosses here).
        struct CellSink<A: Actor, F, E> {
            cell: Arc<ActorCell<A>>,
            map: F,
            extension: Option<E>,
        }
        impl<A: Actor, T: Send + 'static, F, E> crate::reply::TaggedSink<T> for CellSink<A, F, E>
        where
            F: Fn(u64, Box<Result<T, ReplyError>>) -> A::Msg + Send + Sync + 'static,
            E: Send + Sync + 'static,
        {
            #[inline]
            fn deliver(&self, tag: u64, value: Box<Result<T, ReplyError>>) {
                self.cell.deliver_forced((self.map)(tag, value));
            }

            fn extension(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
                self.extension
                    .as_ref()
                    .map(|e| e as &(dyn std::any::Any + Send + Sync))
            }
        }
        crate::reply::ReplyChannel::new(Arc::new(CellSink {
            cell: self.cell.clone(),
            map,
            extension,
        }))
    }

    /// Like [`Context::reply_to`], with a deadline: if no answer came within `timeout`,
    /// `map(Err(ReplyError::Timeout))` arrives instead, and a late answer is discarded.
    pub fn reply_to_within<T: Send + 'static>(
        &mut self,
        timeout: Duration,
        map: impl FnOnce(Result<T, ReplyError>) -> A::Msg + Send + 'static,
    ) -> ReplyTo<T> {
        let flag = Arc::new(AtomicBool::new(false));
        let map = Arc::new(std::sync::Mutex::new(Some(map)));
        let (cell1, map1) = (self.cell.clone(), map.clone());
        let deliver = Box::new(move |r: Result<T, ReplyError>| {
            let f = map1.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(f) = f {
                cell1.deliver_forced(f(r));
            }
        });
        let (cell2, flag2) = (self.cell.clone(), flag.clone());
        let deadline = self.now() + timeout;
        self.arm(timeout, move |_| {
            if !flag2.swap(true, std::sync::atomic::Ordering::AcqRel) {
                let f = map.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(f) = f {
                    cell2.deliver_forced(f(Err(ReplyError::Timeout)));
                }
            }
            TimerNext::Done
        });
        ReplyTo::guarded(deliver, flag, deadline)
    }

    /// Runs a future on this actor's worker (it need not be `Send`) and delivers
    /// `map(output)` to this actor when it completes. Dropped if the actor stops first.
    pub fn spawn_future<F>(&mut self, fut: F, map: impl FnOnce(F::Output) -> A::Msg + 'static)
    where
        F: Future + 'static,
    {
        let cell = self.cell.clone();
        let task = Box::pin(async move {
            let out = fut.await;
            cell.deliver_forced(map(out));
        });
        let tasks = &mut self.extras.get_or_insert_with(Default::default).tasks;
        let id = local(|w| {
            if tasks.len() >= 32 && tasks.len().is_power_of_two() {
                tasks.retain(|(k, g)| w.task_is_live(*k, *g));
            }
            w.spawn_task(task)
        });
        tasks.push(id);
    }

    /// A per-worker resource of type `T` stored by this worker's driver factory (for example the
    /// I/O reactor an I/O actor submits operations to); see [`crate::set_worker_extension`].
    pub fn extension<T: 'static>(&self) -> Option<std::rc::Rc<T>> {
        crate::extension::worker_extension::<T>()
    }

    /// This actor's counters.
    pub fn metrics(&self) -> ActorMetrics {
        ActorMetrics {
            messages_handled: self.handled,
            mailbox_depth: self.cell.mb.len(),
            dropped: self.cell.mb.dropped(),
        }
    }
}
