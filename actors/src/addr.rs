//! Addresses: `Addr<A>` (typed by actor), `Recipient<M>` (typed by message only) and
//! `ActorRef` (untyped, for supervision and watching).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use crate::actor::{Actor, ActorId, ExitReason};
use crate::cell::{send_signal, ActorCell, AnyCell, Signal, StopMode};
use crate::error::{ReplyError, SendError};
use crate::mailbox::{Admission, Waiter};
use crate::reply::{ReplyFuture, ReplyTo};
use crate::timer::Sleep;

/// The address of an actor of type `A`: cheap to clone, usable from any thread.
pub struct Addr<A: Actor> {
    pub(crate) cell: Arc<ActorCell<A>>,
}

impl<A: Actor> Clone for Addr<A> {
    fn clone(&self) -> Self {
        Addr {
            cell: self.cell.clone(),
        }
    }
}

impl<A: Actor> fmt::Debug for Addr<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Addr({})", self.cell.id)
    }
}

impl<A: Actor> PartialEq for Addr<A> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.cell, &other.cell)
    }
}

impl<A: Actor> Eq for Addr<A> {}

/// What a send target must offer: admission and delivery after admission.
pub(crate) trait Target<M>: Send + Sync {
    fn admission(&self) -> &Admission;
    /// Claims a place and enqueues (see `ActorCell::try_send`).
    fn try_send(&self, msg: M) -> Result<(), SendError<M>>;
    /// Sends from the front of `msgs` while there is room (see `ActorCell::try_send_many`).
    fn try_send_many(&self, msgs: &mut VecDeque<M>) -> Result<(), SendError<()>>;
    /// Enqueues ignoring capacity (a reply); Err when the actor stopped.
    fn send_forced(&self, msg: M) -> Result<(), M>;
    /// A reply handled on the spot when possible (see `ActorCell::deliver_now`); Err when
    /// the actor stopped.
    fn deliver_now(&self, msg: M) -> Result<(), M>;
}

/// A send target that also knows the actor behind it (what a `Recipient` holds).
pub(crate) trait RecipientTarget<M>: Target<M> {
    fn any(&self) -> Arc<dyn AnyCell>;
}

impl<A: Actor> Target<A::Msg> for Addr<A> {
    #[inline]
    fn admission(&self) -> &Admission {
        &self.cell.mb
    }

    #[inline]
    fn try_send(&self, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
        self.cell.try_send(msg)
    }
    fn try_send_many(&self, msgs: &mut VecDeque<A::Msg>) -> Result<(), SendError<()>> {
        self.cell.try_send_many(msgs)
    }

    #[inline]
    fn send_forced(&self, msg: A::Msg) -> Result<(), A::Msg> {
        self.cell.try_deliver_forced(msg)
    }

    #[inline]
    fn deliver_now(&self, msg: A::Msg) -> Result<(), A::Msg> {
        self.cell.deliver_now(msg)
    }
}

struct Mapped<A: Actor, F> {
    cell: Arc<ActorCell<A>>,
    map: F,
}

impl<A: Actor, M, F: Fn(M) -> A::Msg + Send + Sync> Target<M> for Mapped<A, F> {
    fn admission(&self) -> &Admission {
        &self.cell.mb
    }

    fn try_send(&self, msg: M) -> Result<(), SendError<M>> {
        self.cell.try_send_mapped(msg, &self.map)
    }
    fn try_send_many(&self, msgs: &mut VecDeque<M>) -> Result<(), SendError<()>> {
        self.cell.try_send_many_mapped(msgs, &self.map)
    }

    fn send_forced(&self, msg: M) -> Result<(), M> {
        self.cell.try_deliver_forced_mapped(msg, &self.map)
    }

    fn deliver_now(&self, msg: M) -> Result<(), M> {
        if self.cell.mb.is_closed() {
            return Err(msg);
        }
        // Stopped since the check (from another thread): the mapped message is dropped, as a
        // stopped actor's mail is.
        let _ = self.cell.deliver_now((self.map)(msg));
        Ok(())
    }
}

impl<A: Actor, M, F: Fn(M) -> A::Msg + Send + Sync> RecipientTarget<M> for Mapped<A, F> {
    fn any(&self) -> Arc<dyn AnyCell> {
        self.cell.clone()
    }
}

struct Direct<A: Actor>(Arc<ActorCell<A>>);

impl<A: Actor> Target<A::Msg> for Direct<A> {
    fn admission(&self) -> &Admission {
        &self.0.mb
    }

    fn try_send(&self, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
        self.0.try_send(msg)
    }

    fn try_send_many(&self, msgs: &mut VecDeque<A::Msg>) -> Result<(), SendError<()>> {
        self.0.try_send_many(msgs)
    }

    fn send_forced(&self, msg: A::Msg) -> Result<(), A::Msg> {
        self.0.try_deliver_forced(msg)
    }

    fn deliver_now(&self, msg: A::Msg) -> Result<(), A::Msg> {
        self.0.deliver_now(msg)
    }
}

impl<A: Actor> RecipientTarget<A::Msg> for Direct<A> {
    fn any(&self) -> Arc<dyn AnyCell> {
        self.0.clone()
    }
}

fn notify_when_room_on(adm: &Admission, f: Box<dyn FnOnce() + Send>) {
    adm.park(Waiter::Callback(f));
    if adm.has_room() {
        adm.wake_all();
    }
}

/// Future of an async `send`: resolves once the message is enqueued (waiting for room under
/// back-pressure) or the actor has stopped.
#[must_use = "futures do nothing unless awaited"]
pub struct SendFuture<'a, M> {
    target: &'a (dyn Target<M> + 'a),
    msg: Option<M>,
}

// The message is moved out of the Option, never pinned in place.
impl<M> Unpin for SendFuture<'_, M> {}

impl<M> Future for SendFuture<'_, M> {
    type Output = Result<(), SendError<M>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        loop {
            let Some(msg) = self.msg.take() else {
                return Poll::Ready(Ok(()));
            };
            match self.target.try_send(msg) {
                Ok(()) => return Poll::Ready(Ok(())),
                Err(SendError::Full(m)) => {
                    self.msg = Some(m);
                    let adm = self.target.admission();
                    adm.park(Waiter::Task(cx.waker().clone()));
                    if !adm.has_room() {
                        return Poll::Pending;
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<A: Actor> Addr<A> {
    /// The actor's identity.
    pub fn id(&self) -> ActorId {
        self.cell.id
    }

    /// Enqueues without waiting: `Full` hands the message back under back-pressure, `Closed`
    /// when the actor stopped.
    #[inline]
    pub fn try_send(&self, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
        self.cell.try_send(msg)
    }

    /// Enqueues, waiting for room while the mailbox is full.
    pub fn send(&self, msg: A::Msg) -> SendFuture<'_, A::Msg> {
        SendFuture {
            target: self,
            msg: Some(msg),
        }
    }

    /// Sends a request built around a fresh reply address and waits for the answer.
    pub async fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(ReplyTo<T>) -> A::Msg,
    ) -> Result<T, ReplyError> {
        let (reply, fut) = ReplyTo::channel();
        match self.send(make(reply)).await {
            Ok(()) => fut.await,
            Err(_) => Err(ReplyError::Stopped),
        }
    }

    /// Like [`Addr::ask`] with a deadline that travels with the request: the responder can see
    /// it on the `ReplyTo`, and the caller gets [`ReplyError::Timeout`] when it passes. The
    /// deadline runs on the target's worker clock (virtual in deterministic mode).
    pub fn ask_within<T: Send + 'static>(
        &self,
        timeout: Duration,
        make: impl FnOnce(ReplyTo<T>) -> A::Msg,
    ) -> ReplyFuture<T> {
        let (mut reply, fut) = ReplyTo::channel();
        reply.set_deadline(std::time::Instant::now() + timeout);
        match self.try_send(make(reply)) {
            Ok(()) => fut.with_timeout(Sleep::on(&self.cell.home, timeout)),
            Err(SendError::Full(_)) => ReplyFuture::failed(ReplyError::MailboxFull),
            Err(SendError::Closed(_)) => ReplyFuture::failed(ReplyError::Stopped),
        }
    }

    /// Asks the actor to stop after its current message (children first); queued messages are
    /// dropped and their reply addresses answer with an error.
    pub fn stop(&self) {
        send_signal(
            &self.any(),
            Signal::Stop(ExitReason::Normal, StopMode::Immediate),
        );
    }

    /// Stops the actor at once, without its `stopping` hook; children are killed too.
    pub fn kill(&self) {
        send_signal(
            &self.any(),
            Signal::Stop(ExitReason::Killed, StopMode::Immediate),
        );
    }

    /// False once the actor has stopped.
    pub fn is_alive(&self) -> bool {
        AnyCell::is_alive(&*self.cell)
    }

    /// The exit reason, once stopped.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.cell.exit_reason()
    }

    /// Messages enqueued and not yet handled.
    pub fn mailbox_len(&self) -> usize {
        self.cell.mb.len()
    }

    /// The mailbox capacity.
    pub fn capacity(&self) -> usize {
        self.cell.mb.capacity()
    }

    /// Enqueues a reply to a request the target itself made (an I/O completion, an answer it
    /// asked for), ignoring capacity: the target bounds how many it has outstanding, and losing
    /// a reply would lose the buffer or the answer it carries. Fails only when the actor
    /// stopped. Not for ordinary requests: those must respect back-pressure.
    pub fn send_reply(&self, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
        self.cell.try_deliver_forced(msg).map_err(SendError::Closed)
    }

    /// Like [`Addr::send_reply`], and when called from the worker's driver (an I/O
    /// completion being handed out) to an idle actor on that worker, the message is handled
    /// on the spot: one turn for it, with no mailbox, no admission count and no run-queue
    /// hop. Anywhere else, or when the actor has work queued, it is queued like any reply, so
    /// the actor still sees its messages in order.
    pub fn send_now(&self, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
        self.cell.deliver_now(msg).map_err(SendError::Closed)
    }

    /// Calls `f` once when the mailbox has room (at once if it has room now) or the actor
    /// stopped. I/O actors use this to resume reading a paused connection.
    pub fn notify_when_room(&self, f: impl FnOnce() + Send + 'static) {
        notify_when_room_on(&self.cell.mb, Box::new(f));
    }

    /// A type-erased address for this actor's message type.
    pub fn recipient(&self) -> Recipient<A::Msg> {
        Recipient {
            inner: Arc::new(Direct(self.cell.clone())),
        }
    }

    /// A type-erased address accepting `M`, converted into this actor's message by `map`.
    pub fn recipient_map<M: 'static>(
        &self,
        map: impl Fn(M) -> A::Msg + Send + Sync + 'static,
    ) -> Recipient<M> {
        Recipient {
            inner: Arc::new(Mapped {
                cell: self.cell.clone(),
                map,
            }),
        }
    }

    /// An untyped handle (stop, kill, watch, liveness).
    pub fn actor_ref(&self) -> ActorRef {
        ActorRef(self.cell.clone())
    }

    fn any(&self) -> Arc<dyn AnyCell> {
        self.cell.clone()
    }
}

/// An address typed by message only: any actor that accepts `M` (directly or through a
/// conversion) can stand behind it. Routers and groups hold these.
pub struct Recipient<M> {
    inner: Arc<dyn RecipientTarget<M>>,
}

impl<M> Clone for Recipient<M> {
    fn clone(&self) -> Self {
        Recipient {
            inner: self.inner.clone(),
        }
    }
}

impl<M> fmt::Debug for Recipient<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({})", self.inner.any().id())
    }
}

impl<M: Send + 'static> Recipient<M> {
    /// Enqueues without waiting (see [`Addr::try_send`]).
    pub fn try_send(&self, msg: M) -> Result<(), SendError<M>> {
        self.inner.try_send(msg)
    }

    /// Enqueues the messages at the front of `msgs`, in order and without waiting, while
    /// there is room. Sent ones leave `msgs`; the rest stay, in order, and the error says why
    /// the first of them was refused ([`SendError::Full`] or [`SendError::Closed`]). A run
    /// sent from the actor's own worker with room for all of it is admitted and scheduled
    /// once, not once per message: the shape for a connection handing on a burst of
    /// pipelined requests. `msgs` keeps its allocation.
    pub fn try_send_many(&self, msgs: &mut VecDeque<M>) -> Result<(), SendError<()>> {
        self.inner.try_send_many(msgs)
    }

    /// Enqueues, waiting for room while the mailbox is full.
    pub fn send(&self, msg: M) -> SendFuture<'_, M> {
        SendFuture {
            target: &*self.inner as &dyn Target<M>,
            msg: Some(msg),
        }
    }

    /// Sends a request and waits for the answer (see [`Addr::ask`]).
    pub async fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(ReplyTo<T>) -> M,
    ) -> Result<T, ReplyError> {
        let (reply, fut) = ReplyTo::channel();
        match self.send(make(reply)).await {
            Ok(()) => fut.await,
            Err(_) => Err(ReplyError::Stopped),
        }
    }

    /// Enqueues a reply to a request the target made, ignoring capacity (see
    /// [`Addr::send_reply`]).
    pub fn send_reply(&self, msg: M) -> Result<(), SendError<M>> {
        self.inner.send_forced(msg).map_err(SendError::Closed)
    }

    /// A reply handled on the spot when the worker's driver hands it to an idle actor (see
    /// [`Addr::send_now`]); otherwise queued like [`Recipient::send_reply`].
    pub fn send_now(&self, msg: M) -> Result<(), SendError<M>> {
        self.inner.deliver_now(msg).map_err(SendError::Closed)
    }

    /// Calls `f` once when the mailbox has room or the actor stopped.
    pub fn notify_when_room(&self, f: impl FnOnce() + Send + 'static) {
        notify_when_room_on(self.inner.admission(), Box::new(f));
    }

    /// The identity of the actor behind it.
    pub fn id(&self) -> ActorId {
        self.inner.any().id()
    }

    /// False once the actor has stopped.
    pub fn is_alive(&self) -> bool {
        !self.inner.admission().is_closed()
    }

    /// An untyped handle to the actor behind it.
    pub fn actor_ref(&self) -> ActorRef {
        ActorRef(self.inner.any())
    }
}

/// An untyped handle to an actor: identity, liveness, stop and kill, and watching.
#[derive(Clone)]
pub struct ActorRef(pub(crate) Arc<dyn AnyCell>);

impl fmt::Debug for ActorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorRef({})", self.0.id())
    }
}

impl PartialEq for ActorRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.id() == other.0.id()
    }
}

impl Eq for ActorRef {}

impl ActorRef {
    /// The actor's identity.
    pub fn id(&self) -> ActorId {
        self.0.id()
    }

    /// False once the actor has stopped.
    pub fn is_alive(&self) -> bool {
        self.0.is_alive()
    }

    /// The exit reason, once stopped.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        self.0.exit_reason()
    }

    /// Messages waiting in its mailbox.
    pub fn mailbox_len(&self) -> usize {
        self.0.mailbox_len()
    }

    /// Asks it to stop (see [`Addr::stop`]).
    pub fn stop(&self) {
        send_signal(
            &self.0,
            Signal::Stop(ExitReason::Normal, StopMode::Immediate),
        );
    }

    /// Asks it to shut down gracefully: children first, then what is queued is handled.
    pub fn shutdown(&self) {
        send_signal(&self.0, Signal::Stop(ExitReason::Shutdown, StopMode::Drain));
    }

    /// Stops it with `reason`, as if it had stopped itself (Erlang's `exit(Pid, Reason)`);
    /// used by supervisors and fault injection.
    pub fn exit(&self, reason: ExitReason) {
        send_signal(&self.0, Signal::Stop(reason, StopMode::Immediate));
    }

    /// Kills it (see [`Addr::kill`]).
    pub fn kill(&self) {
        send_signal(
            &self.0,
            Signal::Stop(ExitReason::Killed, StopMode::Immediate),
        );
    }
}
