//! The park/wake handshake between a worker and the threads that hand it work.
//!
//! A worker about to park publishes `sleeping` and then re-checks its inbound queue; a sender
//! publishes its item and then checks `sleeping`. With a full fence on both sides at least one
//! of them sees the other, so either the worker finds the item or the sender unparks it: no lost
//! wake-up, and no wake-up at all while the worker is busy (the common case costs a fence and a
//! load). Model-checked with loom in `loom_tests.rs`.

use crate::sync::{fence, AtomicBool};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

pub(crate) struct Sleeper {
    sleeping: AtomicBool,
}

impl Sleeper {
    pub(crate) fn new() -> Self {
        Sleeper {
            sleeping: AtomicBool::new(false),
        }
    }

    /// Sender side, after publishing work: true when the worker must be unparked.
    ///
    /// The fence must stay a real one even on x86: the store the worker observes (the inbound
    /// queue's `next` link) is a plain store made after the locked swap, and x86 lets a later
    /// load pass an earlier store, so without `mfence` the `sleeping` load could be satisfied
    /// before the link is visible and a wake-up would be lost.
    #[inline]
    pub(crate) fn must_wake(&self) -> bool {
        fence(SeqCst);
        self.sleeping.load(Relaxed)
    }

    /// Worker side: announces the intent to park. The caller must re-check for work afterwards
    /// and call [`Sleeper::awake`] whether it parks or not.
    #[inline]
    pub(crate) fn prepare_park(&self) {
        self.sleeping.store(true, Relaxed);
        fence(SeqCst);
    }

    /// Worker side: no longer parked (or not parking after all).
    #[inline]
    pub(crate) fn awake(&self) {
        self.sleeping.store(false, Relaxed);
    }
}
