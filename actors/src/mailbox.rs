//! Mailbox admission: the bounded counter, overflow policies, and waiting for room.
//!
//! The queue itself is owned by the actor's home worker and needs no synchronisation (see
//! `cell.rs`); what senders on any thread share is this admission state. A sender on another
//! thread claims a place with one atomic add; a sender on the home worker (an I/O actor handing
//! requests to an application actor beside it, an answer coming back) claims one with a plain
//! load and store of a counter only the home worker writes, so the per-message path between
//! actors of one worker has no locked instruction. The home worker releases places in batches
//! after each turn. Senders that find the mailbox full can park a waker or a callback here and
//! are woken when room appears: that is how async `send` waits, and how I/O actors learn when
//! to resume reading a socket.

use std::task::Waker;

use crate::sync::{fence, lock, AtomicBool, AtomicUsize, Mutex};
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
    /// Places claimed by senders on other threads (atomic read-modify-write).
    len: AtomicUsize,
    /// Places claimed by senders on the home worker. Only the home worker writes it, with a
    /// plain load and store (no locked instruction: those drain the store buffer, and a
    /// request's message has just been written); other threads read it to include those
    /// places in their capacity check. Releases take from it first: only the sum of the two
    /// counters means anything.
    home: AtomicUsize,
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
            home: AtomicUsize::new(0),
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
        self.len.load(Relaxed) + self.home.load(Relaxed)
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

    /// Claims a place for one message. `on_home`: the caller runs on the actor's home worker
    /// (its thread is the only writer of the home counter), so the common case needs no
    /// atomic read-modify-write.
    #[inline]
    pub(crate) fn try_admit(&self, on_home: bool) -> Admit {
        if self.closed.load(Acquire) {
            return Admit::Closed;
        }
        if on_home && self.overflow == Overflow::Backpressure && self.claim_home(1) {
            return Admit::Ok;
        }
        // Full, or as good as (or not on the home worker): the shared counter decides,
        // exactly as for any sender.
        self.try_admit_shared()
    }

    /// Claims `n` places at once for a sender on the actor's home worker, with the home
    /// counter alone (no atomic read-modify-write); false, claiming nothing, when that cannot
    /// be done (closed, not a backpressure mailbox, or not room for all `n`). The caller then
    /// claims one place at a time with [`Admission::try_admit`], as for any send.
    #[inline]
    pub(crate) fn try_admit_home_many(&self, n: usize) -> bool {
        !self.closed.load(Acquire) && self.overflow == Overflow::Backpressure && self.claim_home(n)
    }

    /// The home worker's claim of `n` places, if all fit: only that worker writes the home
    /// counter, so a plain load and store suffice (senders on other threads read it).
    #[inline(always)]
    fn claim_home(&self, n: usize) -> bool {
        let home = self.home.load(Relaxed);
        if home + self.len.load(Relaxed) + n <= self.capacity {
            self.home.store(home + n, Relaxed);
            return true;
        }
        false
    }

    fn try_admit_shared(&self) -> Admit {
        if self.overflow == Overflow::DropOldest {
            // Always accepted; the home worker trims the oldest to stay within capacity.
            self.len.fetch_add(1, SeqCst);
            return Admit::Ok;
        }
        let prev = self.len.fetch_add(1, SeqCst) + self.home.load(Relaxed);
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
    /// `on_home` as for [`Admission::try_admit`].
    #[inline]
    pub(crate) fn admit_forced(&self, on_home: bool) -> bool {
        if self.closed.load(Acquire) {
            return false;
        }
        if on_home {
            self.home.store(self.home.load(Relaxed) + 1, Relaxed);
        } else {
            self.len.fetch_add(1, SeqCst);
        }
        true
    }

    /// Returns `n` places after the home worker dequeued (or discarded) `n` messages. Called
    /// on the home worker only.
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        // The home counter first (plain accesses); the shared one for the rest.
        let home = self.home.load(Relaxed);
        let from_home = n.min(home);
        if from_home > 0 {
            self.home.store(home - from_home, Relaxed);
        }
        if n > from_home {
            self.len.fetch_sub(n - from_home, SeqCst);
        }
        // Dekker pairing with `park` + `has_room`: we publish the decrement and then look for
        // waiters; a waiter publishes itself and then re-checks the count. A full fence on each
        // side between its store and its load puts them in one total order, so at least one
        // side sees the other: a parked sender is never left behind. (The home counter's store
        // is a plain one, so the fence is needed even where the shared counter's SeqCst
        // read-modify-write would do; it costs one per turn, not one per message.)
        fence(SeqCst);
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
        fence(SeqCst);
        self.is_closed() || self.len.load(SeqCst) + self.home.load(SeqCst) < self.capacity
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

    /// Parks a callback that counts its firings in `fired`.
    fn park_counting(a: &Admission, fired: &Arc<StdUsize>) {
        let f = fired.clone();
        a.park(Waiter::Callback(Box::new(move || {
            f.fetch_add(1, SeqCst);
        })));
    }

    #[test]
    fn bounded_admission_fails_at_capacity_and_recovers() {
        let a = Admission::new(MailboxConfig::bounded(2));
        assert_eq!(a.try_admit(false), Admit::Ok);
        assert_eq!(a.try_admit(false), Admit::Ok);
        assert_eq!(a.try_admit(false), Admit::Full);
        assert_eq!(a.len(), 2);
        a.release(1);
        assert_eq!(a.try_admit(false), Admit::Ok);
    }

    /// Places claimed on the home worker count toward capacity for every sender, and a release
    /// of home places alone wakes a sender parked on a full mailbox.
    #[test]
    fn home_and_shared_places_share_one_capacity() {
        let a = Admission::new(MailboxConfig::bounded(3));
        assert_eq!(a.try_admit(true), Admit::Ok);
        assert_eq!(a.try_admit(false), Admit::Ok);
        assert!(a.admit_forced(true));
        assert_eq!(a.len(), 3);
        assert_eq!(
            a.try_admit(false),
            Admit::Full,
            "another thread sees the home places"
        );
        assert_eq!(
            a.try_admit(true),
            Admit::Full,
            "the home worker sees the shared ones"
        );
        let fired = Arc::new(StdUsize::new(0));
        park_counting(&a, &fired);
        assert!(!a.has_room());
        // Two home places come back (releases take from the home counter first).
        a.release(2);
        assert_eq!(fired.load(SeqCst), 1);
        assert_eq!(a.len(), 1);
        assert_eq!(a.try_admit(false), Admit::Ok);
        assert_eq!(a.try_admit(true), Admit::Ok);
        assert_eq!(a.try_admit(true), Admit::Full);
        a.release(3);
        assert_eq!(a.len(), 0);
    }

    #[test]
    fn drop_newest_discards_and_counts() {
        let a = Admission::new(MailboxConfig {
            capacity: 1,
            overflow: Overflow::DropNewest,
        });
        assert_eq!(a.try_admit(false), Admit::Ok);
        assert_eq!(a.try_admit(false), Admit::Discard);
        assert_eq!(a.dropped(), 1);
    }

    #[test]
    fn callback_waiter_fires_on_release_and_close() {
        let a = Admission::new(MailboxConfig::bounded(1));
        assert_eq!(a.try_admit(false), Admit::Ok);
        let fired = Arc::new(StdUsize::new(0));
        park_counting(&a, &fired);
        assert!(!a.has_room());
        a.release(1);
        assert_eq!(fired.load(SeqCst), 1);
        assert_eq!(a.waiters_len(), 0);
        park_counting(&a, &fired);
        a.close();
        assert_eq!(fired.load(SeqCst), 2);
        assert_eq!(a.try_admit(false), Admit::Closed);
    }
}

#[cfg(all(test, not(loom)))]
mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// A sender on the home worker (`true`) or on another thread.
        Admit(bool),
        Forced(bool),
        Release(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<bool>().prop_map(Op::Admit),
            1 => any::<bool>().prop_map(Op::Forced),
            3 => (1usize..4).prop_map(Op::Release),
        ]
    }

    proptest! {
        /// Single-threaded model: the counters always sum to the messages held, whichever mix
        /// of home and other senders claimed them; back-pressure admits exactly up to
        /// capacity, and forced admissions (replies) are never refused.
        #[test]
        fn admission_matches_a_model(cap in 1usize..8, ops in proptest::collection::vec(op(), 1..200)) {
            let a = Admission::new(MailboxConfig::bounded(cap));
            let mut held = 0usize;
            for op in ops {
                match op {
                    Op::Admit(home) => match a.try_admit(home) {
                        Admit::Ok => {
                            prop_assert!(held < cap);
                            held += 1;
                        }
                        Admit::Full => prop_assert!(held >= cap),
                        other => prop_assert!(false, "unexpected {:?}", other),
                    },
                    Op::Forced(home) => {
                        prop_assert!(a.admit_forced(home));
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
            prop_assert_eq!(a.try_admit(false), Admit::Closed);
            prop_assert!(!a.admit_forced(false));
            prop_assert!(!a.admit_forced(true));
        }
    }
}
