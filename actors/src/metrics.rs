//! Counters an observability layer can export.
//!
//! Worker counters are written only by their worker (a relaxed load and store, no atomic
//! read-modify-write on the hot path) and read from anywhere. Timing counters cost two clock reads
//! per actor turn and are off unless the system enables them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Default, Debug)]
pub(crate) struct WorkerStats {
    messages: AtomicU64,
    turns: AtomicU64,
    parks: AtomicU64,
    handler_ns: AtomicU64,
    schedule_delay_ns: AtomicU64,
}

#[inline]
fn add(c: &AtomicU64, n: u64) {
    // Single writer: a plain load and store is enough and avoids a locked instruction.
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl WorkerStats {
    #[inline]
    pub(crate) fn record_turn(&self, messages: u64) {
        add(&self.turns, 1);
        add(&self.messages, messages);
    }

    pub(crate) fn bump_parks(&self) {
        add(&self.parks, 1);
    }

    pub(crate) fn record_timing(&self, handler_ns: u64, delay_ns: u64) {
        add(&self.handler_ns, handler_ns);
        add(&self.schedule_delay_ns, delay_ns);
    }

    pub(crate) fn snapshot(&self, index: usize) -> WorkerMetrics {
        WorkerMetrics {
            worker: index,
            messages_handled: self.messages.load(Relaxed),
            turns: self.turns.load(Relaxed),
            parks: self.parks.load(Relaxed),
            handler_ns: self.handler_ns.load(Relaxed),
            schedule_delay_ns: self.schedule_delay_ns.load(Relaxed),
        }
    }
}

/// A snapshot of one worker's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerMetrics {
    /// Worker index.
    pub worker: usize,
    /// Messages handled by actors on this worker.
    pub messages_handled: u64,
    /// Actor turns run.
    pub turns: u64,
    /// Times the worker parked in its driver.
    pub parks: u64,
    /// Total time spent in handlers, when timing is enabled.
    pub handler_ns: u64,
    /// Total time actors waited between being scheduled and running (how long the oldest
    /// message sat in the mailbox), when timing is enabled.
    pub schedule_delay_ns: u64,
}

/// A snapshot of one actor's counters ([`crate::Context::metrics`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActorMetrics {
    /// Messages this actor handled, counting the one being handled.
    pub messages_handled: u64,
    /// Messages currently in its mailbox.
    pub mailbox_depth: usize,
    /// Messages dropped by an opt-in overflow policy.
    pub dropped: usize,
}

/// A snapshot of the whole system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SystemMetrics {
    /// Actors alive.
    pub live_actors: usize,
    /// Per-worker counters.
    pub workers: Vec<WorkerMetrics>,
}
