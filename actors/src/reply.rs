//! `ReplyTo<T>`: a one-shot, typed reply address.
//!
//! A reply address is how a request's correlation becomes an actor address: whoever holds it can
//! answer exactly once, and the answer lands as a typed message in the requester's own mailbox
//! (or completes a future, for code outside actors). Dropping it unanswered delivers
//! [`ReplyError::Dropped`], so a request never hangs because its holder stopped or panicked.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use futures_channel::oneshot;

use crate::error::ReplyError;
use crate::timer::Sleep;

type Deliver<T> = Box<dyn FnOnce(Result<T, ReplyError>) + Send>;

/// Where tagged reply addresses deliver: shared by every address of one [`ReplyChannel`].
pub(crate) trait TaggedSink<T>: Send + Sync {
    /// The answer arrives boxed: it is boxed once where it is made ([`ReplyTo::send`]) and
    /// then moves as a pointer through this dynamic call into the requester's message.
    fn deliver(&self, tag: u64, value: Box<Result<T, ReplyError>>);

    /// What the channel's owner attached for holders of its addresses
    /// ([`crate::Context::reply_channel_with`]).
    fn extension(&self) -> Option<&(dyn std::any::Any + Send + Sync)>;
}

pub(crate) enum Sink<T> {
    Future(oneshot::Sender<Result<T, ReplyError>>),
    /// A shared sink plus the tag naming this request: no allocation per address.
    Tagged(Arc<dyn TaggedSink<T>>, u64),
    /// A board shared with the requester plus the tag naming this request: the answer is
    /// appended where the requester takes it, no allocation, no message of its own.
    Board(Arc<crate::reply_board::Shared<T>>, u64),
    /// Maps the reply into the requester's message type and enqueues it. The optional flag is
    /// shared with a deadline timer: whichever of reply and timer flips it first delivers.
    Actor(Deliver<T>, Option<Arc<AtomicBool>>),
}

/// A one-shot reply address for a value of type `T`.
///
/// Answer with [`ReplyTo::send`]. A `ReplyTo` may carry a deadline: responders can check
/// [`ReplyTo::is_expired`] to skip work nobody waits for any more, and the requester receives
/// [`ReplyError::Timeout`] when the deadline passes first.
#[must_use = "dropping a ReplyTo answers it with ReplyError::Dropped"]
pub struct ReplyTo<T: Send + 'static> {
    sink: Option<Sink<T>>,
    deadline: Option<Instant>,
    /// Counted by the deterministic system's no-hang invariant.
    tracked: bool,
}

/// Per-thread count of reply addresses created while a deterministic system is active on the
/// thread and not answered yet. Real systems never enable it.
pub(crate) mod tracking {
    use std::cell::Cell;

    thread_local! {
        static ACTIVE: Cell<bool> = const { Cell::new(false) };
        static OUTSTANDING: Cell<i64> = const { Cell::new(0) };
    }

    pub(crate) fn start() {
        ACTIVE.with(|a| a.set(true));
        OUTSTANDING.with(|o| o.set(0));
    }

    pub(crate) fn stop() {
        ACTIVE.with(|a| a.set(false));
    }

    pub(crate) fn created() -> bool {
        let on = ACTIVE.with(|a| a.get());
        if on {
            OUTSTANDING.with(|o| o.set(o.get() + 1));
        }
        on
    }

    pub(crate) fn answered() {
        OUTSTANDING.with(|o| o.set(o.get() - 1));
    }

    pub(crate) fn outstanding() -> i64 {
        OUTSTANDING.with(|o| o.get())
    }
}

impl<T: Send + 'static> fmt::Debug for ReplyTo<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyTo")
            .field("answered", &self.sink.is_none())
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl<T: Send + 'static> ReplyTo<T> {
    /// A reply address completing a future; returns the address and the future.
    pub fn channel() -> (ReplyTo<T>, ReplyFuture<T>) {
        let (tx, rx) = oneshot::channel();
        (
            ReplyTo::from_sink(Sink::Future(tx)),
            ReplyFuture { rx, sleep: None },
        )
    }

    /// A reply address that calls `deliver` exactly once, with the reply or the error.
    /// Actor contexts build on this ([`crate::Context::reply_to`]).
    pub fn from_fn(deliver: impl FnOnce(Result<T, ReplyError>) + Send + 'static) -> Self {
        ReplyTo::from_sink(Sink::Actor(Box::new(deliver), None))
    }

    /// An address delivering to `sink`, counted by the deterministic system's no-hang check.
    pub(crate) fn from_sink(sink: Sink<T>) -> Self {
        ReplyTo {
            sink: Some(sink),
            deadline: None,
            tracked: tracking::created(),
        }
    }

    pub(crate) fn guarded(deliver: Deliver<T>, flag: Arc<AtomicBool>, deadline: Instant) -> Self {
        ReplyTo {
            sink: Some(Sink::Actor(deliver, Some(flag))),
            deadline: Some(deadline),
            tracked: tracking::created(),
        }
    }

    pub(crate) fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }

    /// The deadline the requester attached, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// True once the deadline has passed (by the real clock).
    pub fn is_expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Answers the request. Returns false when nobody can receive it any more (the requester
    /// stopped, or its deadline already fired).
    #[inline]
    pub fn send(mut self, value: T) -> bool {
        self.untrack();
        match self.sink.take() {
            // Boxed here, inlined where the answer is built: one copy of it, however large,
            // instead of one per call it would otherwise pass through by value.
            Some(Sink::Tagged(to, tag)) => {
                to.deliver(tag, Box::new(Ok(value)));
                true
            }
            Some(Sink::Board(board, tag)) => {
                board.post(tag, Ok(value));
                true
            }
            Some(sink) => complete(sink, Ok(value)),
            None => false,
        }
    }

    /// Answers the request with an error instead of a value.
    pub fn fail(mut self, err: ReplyError) -> bool {
        self.untrack();
        match self.sink.take() {
            Some(sink) => complete(sink, Err(err)),
            None => false,
        }
    }

    fn untrack(&mut self) {
        if std::mem::take(&mut self.tracked) {
            tracking::answered();
        }
    }

    /// For an address of a [`ReplyChannel`] or a [`crate::ReplyBoard`]: its tag, the
    /// requester's name for the request.
    pub fn channel_tag(&self) -> Option<u64> {
        match &self.sink {
            Some(Sink::Tagged(_, tag)) | Some(Sink::Board(_, tag)) => Some(*tag),
            _ => None,
        }
    }

    /// For an address of a [`ReplyChannel`] made with
    /// [`Context::reply_channel_with`](crate::Context::reply_channel_with) (or of a board made
    /// with [`Context::reply_board_with`](crate::Context::reply_board_with)): the value its
    /// owner attached, if it is an `E`. It lets the requester offer more than the one answer (a
    /// connection's address for the parts of a streamed response) without making it for every
    /// request: only holders that ask pay for it.
    pub fn channel_extension<E: std::any::Any>(&self) -> Option<&E> {
        match &self.sink {
            Some(Sink::Tagged(sink, _)) => sink.extension()?.downcast_ref::<E>(),
            Some(Sink::Board(board, _)) => board.extension()?.downcast_ref::<E>(),
            _ => None,
        }
    }

    /// True while the requester can still receive an answer.
    pub fn is_open(&self) -> bool {
        match &self.sink {
            Some(Sink::Future(tx)) => !tx.is_canceled(),
            Some(Sink::Actor(_, Some(flag))) => !flag.load(Ordering::Acquire),
            Some(Sink::Actor(_, None)) | Some(Sink::Tagged(..)) | Some(Sink::Board(..)) => true,
            None => false,
        }
    }
}

fn complete<T>(sink: Sink<T>, value: Result<T, ReplyError>) -> bool {
    match sink {
        Sink::Future(tx) => tx.send(value).is_ok(),
        Sink::Tagged(to, tag) => {
            to.deliver(tag, Box::new(value));
            true
        }
        Sink::Board(board, tag) => {
            board.post(tag, value);
            true
        }
        Sink::Actor(deliver, None) => {
            deliver(value);
            true
        }
        Sink::Actor(deliver, Some(flag)) => {
            if flag.swap(true, Ordering::AcqRel) {
                return false;
            }
            deliver(value);
            true
        }
    }
}

impl<T: Send + 'static> Drop for ReplyTo<T> {
    fn drop(&mut self) {
        self.untrack();
        if let Some(sink) = self.sink.take() {
            complete(sink, Err(ReplyError::Dropped));
        }
    }
}

/// A source of reply addresses that all answer into one actor's mailbox, each carrying a tag
/// (a request id) that the actor's mapping turns into a message. Unlike
/// [`crate::Context::reply_to`] it allocates nothing per address: one shared sink, made once
/// with [`crate::Context::reply_channel`], which I/O actors use for every request they read.
pub struct ReplyChannel<T: Send + 'static> {
    sink: Arc<dyn TaggedSink<T>>,
}

impl<T: Send + 'static> Clone for ReplyChannel<T> {
    fn clone(&self) -> Self {
        ReplyChannel {
            sink: self.sink.clone(),
        }
    }
}

impl<T: Send + 'static> fmt::Debug for ReplyChannel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyChannel").finish_non_exhaustive()
    }
}

impl<T: Send + 'static> ReplyChannel<T> {
    pub(crate) fn new(sink: Arc<dyn TaggedSink<T>>) -> Self {
        ReplyChannel { sink }
    }

    /// A reply address for the request tagged `tag`.
    pub fn reply_to(&self, tag: u64) -> ReplyTo<T> {
        ReplyTo::from_sink(Sink::Tagged(self.sink.clone(), tag))
    }
}

/// The future side of [`ReplyTo::channel`] and of `Addr::ask`.
#[must_use = "futures do nothing unless awaited"]
pub struct ReplyFuture<T> {
    rx: oneshot::Receiver<Result<T, ReplyError>>,
    sleep: Option<Sleep>,
}

impl<T> ReplyFuture<T> {
    pub(crate) fn with_timeout(mut self, sleep: Sleep) -> Self {
        self.sleep = Some(sleep);
        self
    }

    /// A future that is already failed (the request could not be sent).
    pub(crate) fn failed(err: ReplyError) -> Self {
        let (tx, rx) = oneshot::channel();
        // The receiver is alive, so this cannot fail.
        let _ = tx.send(Err(err));
        ReplyFuture { rx, sleep: None }
    }
}

impl<T> Future for ReplyFuture<T> {
    type Output = Result<T, ReplyError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(v)) => return Poll::Ready(v),
            Poll::Ready(Err(oneshot::Canceled)) => return Poll::Ready(Err(ReplyError::Dropped)),
            Poll::Pending => {}
        }
        if let Some(sleep) = self.sleep.as_mut() {
            if Pin::new(sleep).poll(cx).is_ready() {
                return Poll::Ready(Err(ReplyError::Timeout));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn dropped_reply_delivers_error() {
        let (tx, rx) = ReplyTo::<u32>::channel();
        drop(tx);
        assert_eq!(futures::executor::block_on(rx), Err(ReplyError::Dropped));
    }

    #[test]
    fn reply_is_delivered_once() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let r = ReplyTo::from_fn(move |v: Result<u8, ReplyError>| g.lock().unwrap().push(v));
        assert!(r.send(7));
        assert_eq!(*got.lock().unwrap(), vec![Ok(7)]);
    }

    #[test]
    fn guarded_reply_loses_to_an_earlier_timeout() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let flag = Arc::new(AtomicBool::new(false));
        let r = ReplyTo::guarded(
            Box::new(move |v: Result<u8, ReplyError>| g.lock().unwrap().push(v)),
            flag.clone(),
            Instant::now(),
        );
        assert!(r.is_expired());
        // The timer won the race.
        flag.store(true, Ordering::Release);
        assert!(!r.is_open());
        assert!(!r.send(1));
        assert!(got.lock().unwrap().is_empty());
    }
}
