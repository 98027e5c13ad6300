//! `ReplyBoard<T>`: where the answers to many requests of one actor collect, without a message
//! (or an allocation) for each.
//!
//! An actor with many requests in flight (a connection with sixteen pipelined requests) gets
//! each answer as a message of its own through a [`crate::ReplyChannel`]: the answer boxed,
//! queued, taken from the queue and matched, one by one. A board is the batched form: an answer
//! is appended to one shared list under a lock, and only the first answer after the owner last
//! looked sends the owner a message, its wake. The owner then takes every answer posted so far
//! in one swap and handles them in the order they were posted.
//!
//! Ordering: every answer is followed, in the owner's mailbox, by a wake that takes it. Either
//! its own poster sent that wake, or an earlier poster did (under the board's lock, so it is
//! already queued) and the owner has not taken the board since, so that wake is handled after
//! the answer was posted. A message the same
//! responder sends to the owner after answering is therefore handled after the answer, as it
//! would be through the mailbox. An answer may be taken earlier than the mailbox would have
//! delivered it, ahead of messages its responder sent before it: owners that need answers and
//! other messages from one responder kept strictly in order (a subscription's pushes) use a
//! [`crate::ReplyChannel`] instead.

use std::any::Any;
use std::fmt;

use crate::error::ReplyError;
use crate::reply::{ReplyTo, Sink};
use crate::sync::{lock, Mutex};
use std::sync::Arc;

/// An answer as the owner takes it: the request's tag and the answer or the error that
/// replaced it ([`ReplyError::Dropped`] for an address dropped unanswered).
pub type Posted<T> = (u64, Result<T, ReplyError>);

/// A source of reply addresses whose answers collect on one board shared with the owning
/// actor; see the module documentation. Made with
/// [`Context::reply_board`](crate::Context::reply_board).
pub struct ReplyBoard<T: Send + 'static> {
    shared: Arc<Shared<T>>,
}

pub(crate) struct Shared<T> {
    state: Mutex<State<T>>,
    /// Sends the owner its wake message.
    wake: Box<dyn Fn() + Send + Sync>,
    extension: Option<Box<dyn Any + Send + Sync>>,
}

struct State<T> {
    posted: Vec<Posted<T>>,
    /// A wake has been sent since the owner last took the board.
    woken: bool,
}

impl<T> Shared<T> {
    /// Appends an answer; wakes the owner if no wake is pending. The wake is sent before the
    /// lock is released: a responder that finds a wake pending and then messages the owner
    /// must find that wake already in the owner's mailbox, ahead of its message (loom model
    /// `reply_board_wake_never_strands_an_answer`). Sending it takes no lock of the board's,
    /// so this cannot deadlock. Always inlined into [`ReplyTo::send`], itself inlined where
    /// the answer is built, so the answer is written once, into the board: a call would copy
    /// it into an argument first.
    #[inline(always)]
    pub(crate) fn post(&self, tag: u64, answer: Result<T, ReplyError>) {
        let mut state = lock(&self.state);
        let posted = &mut state.posted;
        if posted.len() == posted.capacity() {
            grow(posted);
        }
        // `Vec::push` builds the element on the stack before it knows it will not
        // reallocate, then copies it over: a second copy of the answer. With room made
        // first, the answer is written straight into its place.
        let len = posted.len();
        // Always a place: `grow` made one or there was one (a failed allocation aborts).
        if let Some(place) = posted.spare_capacity_mut().first_mut() {
            place.write((tag, answer));
            // SAFETY: the element at `len` (the first spare place) was initialised just
            // above, and `len + 1 <= capacity` since that place exists.
            unsafe { posted.set_len(len + 1) };
        }
        if !std::mem::replace(&mut state.woken, true) {
            self.wake();
        }
    }

    #[cold]
    #[inline(never)]
    fn wake(&self) {
        (self.wake)();
    }

    pub(crate) fn extension(&self) -> Option<&(dyn Any + Send + Sync)> {
        self.extension.as_deref()
    }
}

/// Room for more answers, out of the answer's way.
#[cold]
#[inline(never)]
fn grow<T>(posted: &mut Vec<Posted<T>>) {
    posted.reserve(posted.capacity().max(4));
}

impl<T: Send + 'static> ReplyBoard<T> {
    pub(crate) fn new(
        wake: Box<dyn Fn() + Send + Sync>,
        extension: Option<Box<dyn Any + Send + Sync>>,
    ) -> Self {
        ReplyBoard {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    posted: Vec::new(),
                    woken: false,
                }),
                wake,
                extension,
            }),
        }
    }

    /// A reply address for the request tagged `tag`. Costs a reference count, no allocation.
    pub fn reply_to(&self, tag: u64) -> ReplyTo<T> {
        ReplyTo::from_sink(Sink::Board(self.shared.clone(), tag))
    }

    /// Moves every answer posted so far into `into`, in the order they were posted, and
    /// re-arms the wake: the next answer posted after this sends a new one. `into` should be
    /// empty; the board keeps `into`'s old allocation for the answers to come, so an owner
    /// that passes the same vector each time allocates nothing once both have grown.
    pub fn take(&self, into: &mut Vec<Posted<T>>) {
        let mut state = lock(&self.shared.state);
        debug_assert!(into.is_empty(), "answers taken earlier were not handled");
        std::mem::swap(&mut state.posted, into);
        state.woken = false;
    }
}

impl<T: Send + 'static> Clone for ReplyBoard<T> {
    fn clone(&self) -> Self {
        ReplyBoard {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Send + 'static> fmt::Debug for ReplyBoard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyBoard").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn board() -> (ReplyBoard<u32>, Arc<AtomicUsize>) {
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = wakes.clone();
        let wake = Box::new(move || {
            w.fetch_add(1, Ordering::Relaxed);
        });
        (ReplyBoard::new(wake, None), wakes)
    }

    #[test]
    fn one_wake_per_batch_and_answers_in_posting_order() {
        let (board, wakes) = board();
        let (a, b, c) = (board.reply_to(1), board.reply_to(2), board.reply_to(3));
        assert!(c.send(30));
        assert!(a.send(10));
        assert_eq!(wakes.load(Ordering::Relaxed), 1);
        let mut got = Vec::new();
        board.take(&mut got);
        assert_eq!(got, vec![(3, Ok(30)), (1, Ok(10))]);
        got.clear();
        // Taken: the next answer wakes again.
        drop(b);
        assert_eq!(wakes.load(Ordering::Relaxed), 2);
        board.take(&mut got);
        assert_eq!(got, vec![(2, Err(ReplyError::Dropped))]);
    }

    /// Answers written in place survive the board growing under them (miri checks the
    /// in-place write in CI), and an owner's vector passed back keeps serving.
    #[test]
    fn answers_survive_growth_and_reused_vectors() {
        let (board, wakes) = board();
        let mut got = Vec::new();
        for round in 0..3u32 {
            let addrs: Vec<_> = (0..10u64).map(|t| board.reply_to(t)).collect();
            for (t, a) in addrs.into_iter().enumerate() {
                assert!(a.send(round * 100 + t as u32));
            }
            board.take(&mut got);
            let want: Vec<_> = (0..10u64)
                .map(|t| (t, Ok(round * 100 + t as u32)))
                .collect();
            assert_eq!(got, want);
            got.clear();
        }
        assert_eq!(wakes.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn an_address_carries_its_tag_and_the_extension() {
        let board = ReplyBoard::<u8>::new(Box::new(|| {}), Some(Box::new("side")));
        let r = board.reply_to(7);
        assert_eq!(r.channel_tag(), Some(7));
        assert_eq!(r.channel_extension::<&str>(), Some(&"side"));
        assert!(r.channel_extension::<u32>().is_none());
        assert!(r.is_open());
        assert!(r.fail(ReplyError::Timeout));
        let mut got = Vec::new();
        board.take(&mut got);
        assert_eq!(got, vec![(7, Err(ReplyError::Timeout))]);
    }
}
