//! Operation deadlines for the epoll backend (io_uring links a timeout to the operation
//! instead): receive and connect timeouts, ordered by deadline, removed when the operation
//! finishes first, so the set stays as small as the number of timed operations in flight.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::completion::SocketId;

/// What a deadline belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TimerKind {
    /// The socket's active (first queued) receive.
    Recv,
    /// The socket's connect.
    Connect,
}

/// A timer's key: its deadline and a sequence number that makes it unique.
pub(super) type TimerKey = (Instant, u64);

/// Pending deadlines.
#[derive(Default)]
pub(super) struct Timers {
    map: BTreeMap<TimerKey, (SocketId, TimerKind)>,
    next: u64,
}

impl Timers {
    /// Adds a deadline `after` from now.
    pub(super) fn add(&mut self, after: Duration, socket: SocketId, kind: TimerKind) -> TimerKey {
        let now = Instant::now();
        let key = (now.checked_add(after).unwrap_or(now), self.next);
        self.next += 1;
        self.map.insert(key, (socket, kind));
        key
    }

    /// Whether no deadline is pending.
    pub(super) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Drops a deadline whose operation finished.
    pub(super) fn remove(&mut self, key: TimerKey) {
        self.map.remove(&key);
    }

    /// The first deadline that has passed at `now`, removed.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(TimerKey, SocketId, TimerKind)> {
        let entry = self.map.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        let key = *entry.key();
        let (socket, kind) = entry.remove();
        Some((key, socket, kind))
    }

    /// Time from `now` to the next deadline.
    pub(super) fn next_in(&self, now: Instant) -> Option<Duration> {
        self.map
            .first_key_value()
            .map(|(k, _)| k.0.saturating_duration_since(now))
    }
}
