//! Mailbox admission: the bounded counter, overflow policies, and waiting for room.
//!
//! The queue itself is owned by the actor's home worker and needs no synchronisation (see
//! `cell.rs`); what senders on any thread share is this admission state. One atomic add per send
//! claims a place; the home worker releases places in batches after each turn. Senders that find
//! the mailbox full can park a waker or a callback here and are woken when room appears: that is
//! how async `send` waits, and how I/O actors learn when to resume reading a socket.

use std::task::Waker;

#[cfg(loom)]
use crate::sync::fence;
use crate::sync::{lock, AtomicBool, AtomicUsize, Mutex};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

/// What happens when a message arrives at a full mailbox.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// `try_send` fails with `Full`, async `send` waits for room (the default).
    #[default]
    Backpressure,
    /// The new message is discarded and counted; the sender is not told. Opt-in, for lossy feeds.
    DropNewest,
    /// The oldest queued message is discarded to make room. Opt-in, for "latest value wins" feeds.
    DropOldest,
}

/// Per-actor mailbox settings.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MailboxConfig {
    /// Maximum queued messages (at least 1).
    pub capacity: usize,
    /// Behaviour at capacity.
    pub overflow: Overflow,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            capacity: 1024,
            overflow: Overflow::Backpressure,
        }
    }
}

impl MailboxConfig {
    /// A mailbox of `capacity` with back-pressure.
    pub fn bounded(capacity: usize) -> Self {
        MailboxConfig {
            capacity: capacity.max(1),
            overflow: Overflow::Backpressure,
        }
    }
}

/// A SeqCst fence in the loom build only. In production the SeqCst accesses around it already
/// give the Dekker guarantee (and a fence would cost an `mfence` per actor turn on x86); loom
/// cannot model SeqCst accesses, so the model checks the equivalent fenced protocol.
#[inline(always)]
fn sc_fence() {
    #[cfg(loom)]
    fence(SeqCst);
}

/// Something waiting for room in a full mailbox.
pub(crate) enum Waiter {
    Task(Waker),
    Callback(Box<dyn FnOnce() + Send>),
}

impl Waiter {
    fn fire(self) {
        match self {
            Waiter::Task(w) => w.wake(),
            Waiter::Callback(f) => f(),
        }
    }
}

/// Outcome of claiming a place.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// A place is claimed; the message must be enqueued.
    Ok,
    /// At capacity under back-pressure.
    Full,
    /// At capacity under `DropNewest`: discard the message.
    Discard,
    /// The mailbox no longer accepts messages.
    Closed,
}

// repr(C): the fields every send touches come first (see `ActorCell`'s layout).
#[repr(C)]
pub(crate) struct Admission {
    len: AtomicUsize,
    capacity: usize,
    closed: AtomicBool,
    waiting: AtomicBool,
    overflow: Overflow,
    dropped: AtomicUsize,
    waiters: Mutex<Vec<Waiter>>,
}

impl Admission {
    pub(crate) fn new(cfg: MailboxConfig) -> Self {
        Admission {
            len: AtomicUsize::new(0),
            capacity: cfg.capacity.max(1),
            overflow: cfg.overflow,
            closed: AtomicBool::new(false),
            waiting: AtomicBool::new(false),
            waiters: Mutex::new(Vec::new()),
            dropped: AtomicUsize::new(0),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn overflow(&self) -> Overflow {
        self.overflow
    }

    /// Messages claimed and not yet handled (may briefly exceed capacity by racing senders that
    /// then back off, and under `DropOldest` until the home worker trims).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Relaxed)
    }

    pub(crate) fn dropped(&self) -> usize {
        self.dropped.load(Relaxed)
    }

    pub(crate) fn count_dropped(&self) {
        self.dropped.fetch_add(1, Relaxed);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }

    /// Claims a place for one message.
    pub(crate) fn try_admit(&self) -> Admit {
        if self.closed.load(Acquire) {
            return Admit::Closed;
        }
        if self.overflow == Overflow::DropOldest {
            // Always accepted; the home worker trims the oldest to stay within capacity.
            self.len.fetch_add(1, SeqCst);
            return Admit::Ok;
        }
        let prev = self.len.fetch_add(1, SeqCst);
        if prev < self.capacity {
            return Admit::Ok;
        }
        // Undo the optimistic claim. No wake-up is owed: the count returns to a value that was
        // already observed as full, and the consumer wakes waiters as it drains.
        self.len.fetch_sub(1, SeqCst);
        match self.overflow {
            Overflow::DropNewest => {
                self.count_dropped();
                Admit::Discard
            }
            _ => Admit::Full,
        }
    }

    /// Claims a place ignoring capacity: replies and system-generated messages must never be
    /// lost to back-pressure (their number is bounded by the requests the actor made).
    pub(crate) fn admit_forced(&self) -> bool {
        if self.closed.load(Acquire) {
            return false;
        }
        self.len.fetch_add(1, SeqCst);
        true
    }

    /// Returns `n` places after the home worker dequeued (or discarded) `n` messages.
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.len.fetch_sub(n, SeqCst);
        // Dekker pairing with `park` + `has_room`: we publish the decrement and then look for
        // waiters; a waiter publishes itself and then re-checks the count. All four accesses
        // are SeqCst, so they fall in one total order and at least one side sees the other: a
        // parked sender is never left behind. (loom models SeqCst accesses as acquire/release
        // only, so its build adds the equivalent fences; see `sc_fence`.)
        sc_fence();
        if self.waiting.load(SeqCst) {
            self.wake_all();
        }
    }

    /// Registers a waiter for room. The caller must re-check admission afterwards (a release may
    /// have run between its failed attempt and this registration).
    pub(crate) fn park(&self, w: Waiter) {
        let mut ws = lock(&self.waiters);
        ws.push(w);
        self.waiting.store(true, SeqCst);
    }

    /// True when a message would be admitted now (used after `park` to avoid a lost wake-up).
    pub(crate) fn has_room(&self) -> bool {
        sc_fence();
        self.is_closed() || self.len.load(SeqCst) < self.capacity
    }

    pub(crate) fn wake_all(&self) {
        let ws = {
            let mut ws = lock(&self.waiters);
            self.waiting.store(false, SeqCst);
            std::mem::take(&mut *ws)
        };
        for w in ws {
            w.fire();
        }
    }

    /// Stops admitting; waiting senders are woken and will see `Closed`.
    pub(crate) fn close(&self) {
        self.closed.store(true, Release);
        self.wake_all();
    }

    #[cfg(all(test, not(loom)))]
    pub(crate) fn waiters_len(&self) -> usize {
        lock(&self.waiters).len()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize as StdUsize;
    use std::sync::Arc;

    #[test]
    fn bounded_admission_fails_at_capacity_and_recovers() {
        let a = Admission::new(MailboxConfig::bounded(2));
        assert_eq!(a.try_admit(), Admit::Ok);
        assert_eq!(a.try_admit(), Admit::Ok);
        assert_eq!(a.try_admit(), Admit::Full);
        assert_eq!(a.len(), 2);
        a.release(1);
        assert_eq!(a.try_admit(), Admit::Ok);
    }

    #[test]
    fn drop_newest_discards_and_counts() {
        let a = Admission::new(MailboxConfig {
            capacity: 1,
            overflow: Overflow::DropNewest,
        });
        assert_eq!(a.try_admit(), Admit::Ok);
        assert_eq!(a.try_admit(), Admit::Discard);
        assert_eq!(a.dropped(), 1);
    }

    #[test]
    fn callback_waiter_fires_on_release_and_close() {
        let a = Admission::new(MailboxConfig::bounded(1));
        assert_eq!(a.try_admit(), Admit::Ok);
        let fired = Arc::new(StdUsize::new(0));
        let f = fired.clone();
        a.park(Waiter::Callback(Box::new(move || {
            f.fetch_add(1, SeqCst);
        })));
        assert!(!a.has_room());
        a.release(1);
        assert_eq!(fired.load(SeqCst), 1);
        assert_eq!(a.waiters_len(), 0);
        let f = fired.clone();
        a.park(Waiter::Callback(Box::new(move || {
            f.fetch_add(1, SeqCst);
        })));
        a.close();
        assert_eq!(fired.load(SeqCst), 2);
        assert_eq!(a.try_admit(), Admit::Closed);
    }
}

#[cfg(all(test, not(loom)))]
mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Admit,
        Forced,
        Release(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Admit),
            1 => Just(Op::Forced),
            3 => (1usize..4).prop_map(Op::Release),
        ]
    }

    proptest! {
        /// Single-threaded model: the counter always equals the messages held, back-pressure
        /// admits exactly up to capacity, and forced admissions (replies) are never refused.
        #[test]
        fn admission_matches_a_model(cap in 1usize..8, ops in proptest::collection::vec(op(), 1..200)) {
            let a = Admission::new(MailboxConfig::bounded(cap));
            let mut held = 0usize;
            for op in ops {
                match op {
                    Op::Admit => match a.try_admit() {
                        Admit::Ok => {
                            prop_assert!(held < cap);
                            held += 1;
                        }
                        Admit::Full => prop_assert!(held >= cap),
                        other => prop_assert!(false, "unexpected {:?}", other),
                    },
                    Op::Forced => {
                        prop_assert!(a.admit_forced());
                        held += 1;
                    }
                    Op::Release(n) => {
                        let n = n.min(held);
                        a.release(n);
                        held -= n;
                    }
                }
                prop_assert_eq!(a.len(), held);
                prop_assert_eq!(a.has_room(), held < cap);
            }
            a.close();
            prop_assert_eq!(a.try_admit(), Admit::Closed);
            prop_assert!(!a.admit_forced());
        }
    }
}
