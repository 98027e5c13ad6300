//! The `Actor` trait, actor identity and the reasons an actor stops.

use std::fmt;
use std::sync::Arc;

use crate::context::Context;

/// A unit of state and behaviour with one typed mailbox.
///
/// Handlers are synchronous and run on the actor's home worker, one message at a time; long work
/// belongs in a future spawned with [`Context::spawn_future`], whose output comes back as a
/// message. A panic in any hook stops only this actor, with [`ExitReason::Panicked`].
pub trait Actor: Send + Sized + 'static {
    /// The one message type this actor's mailbox carries.
    type Msg: Send + 'static;

    /// Handles one message.
    fn handle(&mut self, msg: Self::Msg, ctx: &mut Context<Self>);

    /// Runs once on the home worker before the first message.
    fn started(&mut self, _ctx: &mut Context<Self>) {}

    /// Runs after a run of messages (up to the worker's batch size) was handled, before the
    /// actor yields its worker: the place to act once on what the whole run produced. An I/O
    /// actor that got sixteen answers in one turn writes them with one send here instead of
    /// sixteen.
    fn handled_batch(&mut self, _ctx: &mut Context<Self>) {}

    /// Runs when the actor has been asked to stop, before its children are stopped. Messages
    /// keep arriving until the children are gone.
    fn stopping(&mut self, _ctx: &mut Context<Self>) {}

    /// Runs last, after the children have stopped and the mailbox is closed.
    fn stopped(&mut self, _reason: &ExitReason) {}

    /// A child, a watched actor, or (when trapping exits) a linked actor terminated. Runs on the
    /// priority path: it is delivered even when the mailbox is full, and for children also while
    /// this actor is stopping.
    fn terminated(&mut self, _event: Terminated, _ctx: &mut Context<Self>) {}

    /// When true, the runtime does not stop this actor's children when it is asked to stop; the
    /// actor stops them itself (a supervisor stops them one by one, right to left, each with its
    /// own timeout, starting in its `stopping` hook), and its own stop completes once the last
    /// child has terminated. A kill still kills every child at once.
    fn stops_own_children(&self) -> bool {
        false
    }
}

/// Identity of an actor, unique within its system (numbered in spawn order, so a
/// deterministic run numbers its actors identically every time).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorId(pub(crate) u64);

impl ActorId {
    /// The raw number, stable for the actor's life (useful as a tracing field).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why an actor stopped. Typed so supervisors can decide without parsing strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// It stopped itself or was asked to stop ([`Context::stop`], [`crate::Addr::stop`]).
    Normal,
    /// The system, or its parent, shut it down.
    Shutdown,
    /// Killed without draining ([`crate::Addr::kill`] or a shutdown that ran out of time).
    Killed,
    /// A hook or handler panicked; the payload is the panic message when it was a string.
    Panicked(Arc<str>),
    /// It stopped with an application-defined failure ([`Context::fail`]).
    Failed(Arc<str>),
    /// A supervisor gave up: its children failed more often than its restart intensity allows,
    /// so it stopped them and escalates to its own parent.
    RestartIntensity,
    /// A linked actor exited abnormally and this actor does not trap exits.
    Linked(ActorId),
}

impl ExitReason {
    /// `Normal` and `Shutdown` are clean exits; everything else is abnormal (a transient child is
    /// restarted only after an abnormal exit).
    pub fn is_normal(&self) -> bool {
        matches!(self, ExitReason::Normal | ExitReason::Shutdown)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("normal"),
            ExitReason::Shutdown => f.write_str("shutdown"),
            ExitReason::Killed => f.write_str("killed"),
            ExitReason::Panicked(m) => write!(f, "panicked: {m}"),
            ExitReason::Failed(m) => write!(f, "failed: {m}"),
            ExitReason::RestartIntensity => f.write_str("restart intensity exceeded"),
            ExitReason::Linked(id) => write!(f, "linked actor {id} exited"),
        }
    }
}

/// Notification that a child or a watched actor terminated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminated {
    /// The actor that terminated.
    pub id: ActorId,
    /// Why it terminated.
    pub reason: ExitReason,
    /// True when it was this actor's child (as opposed to an actor it watched).
    pub child: bool,
    /// True when it arrived through a link this actor traps exits for.
    pub linked: bool,
}
