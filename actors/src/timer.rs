//! A per-worker hierarchical timer wheel, timer handles, and a `Sleep` future.
//!
//! Six levels of 64 slots at a 1 ms tick cover any practical delay; insert and cancel are O(1)
//! amortised, and advancing skips empty stretches through per-level occupancy bitmaps, so a
//! worker that slept for an hour (or a virtual clock that jumped) does not walk every tick.
//! Timer callbacks run on the owning worker, outside any borrow of the wheel, so they may arm or
//! cancel timers themselves.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use crate::worker::{WorkerLocal, WorkerShared};

const LEVELS: usize = 6;
const SLOTS: usize = 64;
const SLOT_BITS: u32 = 6;
/// Largest delay the wheel represents; longer delays are clamped (about 2,000 years).
const MAX_TICKS: u64 = (1u64 << (SLOT_BITS as u64 * LEVELS as u64)) - 1;

/// What a timer callback asks for after running.
pub(crate) enum TimerNext {
    Done,
    Again(Duration),
}

pub(crate) type TimerFn = Box<dyn FnMut(&WorkerLocal) -> TimerNext + Send>;

enum State {
    Vacant { next_free: u32 },
    Pending { level: u8, slot: u8 },
    Firing,
}

struct Entry {
    when: u64,
    gen: u32,
    state: State,
    action: Option<TimerFn>,
    cancel: Option<Arc<AtomicBool>>,
}

const NIL: u32 = u32::MAX;

/// The wheel. Ticks are milliseconds since the worker's clock origin.
pub(crate) struct TimerWheel {
    now: u64,
    slots: Vec<Vec<u32>>,
    occupied: [u64; LEVELS],
    entries: Vec<Entry>,
    free_head: u32,
    ready: Vec<u32>,
    active: usize,
}

impl TimerWheel {
    pub(crate) fn new() -> Self {
        TimerWheel {
            now: 0,
            slots: (0..LEVELS * SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; LEVELS],
            entries: Vec::new(),
            free_head: NIL,
            ready: Vec::new(),
            active: 0,
        }
    }

    /// Nothing armed and nothing due.
    pub(crate) fn is_empty(&self) -> bool {
        self.active == 0
    }

    /// Timers armed and not yet fired or cancelled.
    pub(crate) fn active(&self) -> usize {
        self.active
    }

    #[cfg(test)]
    pub(crate) fn now(&self) -> u64 {
        self.now
    }

    /// Arms a timer at tick `when`; returns its key and generation.
    pub(crate) fn insert(
        &mut self,
        when: u64,
        action: TimerFn,
        cancel: Option<Arc<AtomicBool>>,
    ) -> (u32, u32) {
        let key = if self.free_head != NIL {
            let key = self.free_head;
            let e = &mut self.entries[key as usize];
            if let State::Vacant { next_free } = e.state {
                self.free_head = next_free;
            }
            e.gen = e.gen.wrapping_add(1);
            e.action = Some(action);
            e.cancel = cancel;
            key
        } else {
            self.entries.push(Entry {
                when: 0,
                gen: 0,
                state: State::Firing,
                action: Some(action),
                cancel,
            });
            (self.entries.len() - 1) as u32
        };
        self.active += 1;
        self.place(key, when);
        (key, self.entries[key as usize].gen)
    }

    fn place(&mut self, key: u32, when: u64) {
        let when = when.min(self.now.saturating_add(MAX_TICKS));
        let e = &mut self.entries[key as usize];
        e.when = when;
        if when <= self.now {
            e.state = State::Firing;
            self.ready.push(key);
            return;
        }
        let masked = (self.now ^ when) | (SLOTS as u64 - 1);
        let level = ((63 - masked.leading_zeros()) / SLOT_BITS) as usize;
        let slot = ((when >> (SLOT_BITS as usize * level)) & (SLOTS as u64 - 1)) as usize;
        e.state = State::Pending {
            level: level as u8,
            slot: slot as u8,
        };
        self.slots[level * SLOTS + slot].push(key);
        self.occupied[level] |= 1 << slot;
    }

    /// Cancels a pending timer. Returns false when it already fired or was cancelled.
    pub(crate) fn cancel(&mut self, key: u32, gen: u32) -> bool {
        let Some(e) = self.entries.get_mut(key as usize) else {
            return false;
        };
        if e.gen != gen {
            return false;
        }
        match e.state {
            State::Pending { level, slot } => {
                let idx = level as usize * SLOTS + slot as usize;
                let list = &mut self.slots[idx];
                if let Some(pos) = list.iter().position(|k| *k == key) {
                    list.swap_remove(pos);
                }
                if list.is_empty() {
                    self.occupied[level as usize] &= !(1 << slot);
                }
                self.free(key);
                true
            }
            State::Firing => {
                // Fired (or due) but its callback has not finished: drop the callback so an
                // interval does not re-arm; `finish` frees the entry.
                let was = e.action.take().is_some();
                if let Some(pos) = self.ready.iter().position(|k| *k == key) {
                    self.ready.swap_remove(pos);
                    self.free(key);
                }
                was
            }
            State::Vacant { .. } => false,
        }
    }

    fn free(&mut self, key: u32) {
        let e = &mut self.entries[key as usize];
        e.action = None;
        e.cancel = None;
        e.state = State::Vacant {
            next_free: self.free_head,
        };
        self.free_head = key;
        self.active -= 1;
    }

    /// The earliest tick at which something may be due (a cascade point or an expiry).
    pub(crate) fn next_tick(&self) -> Option<u64> {
        if !self.ready.is_empty() {
            return Some(self.now);
        }
        let mut best: Option<u64> = None;
        for level in 0..LEVELS {
            if let Some(t) = self.next_in_level(level) {
                best = Some(best.map_or(t, |b| b.min(t)));
            }
        }
        best
    }

    fn next_in_level(&self, level: usize) -> Option<u64> {
        let occ = self.occupied[level];
        if occ == 0 {
            return None;
        }
        let shift = SLOT_BITS as usize * level;
        let cur = ((self.now >> shift) & (SLOTS as u64 - 1)) as u32;
        let ahead = occ & (!0u64 << cur);
        let slot = if ahead != 0 {
            ahead.trailing_zeros()
        } else {
            occ.trailing_zeros()
        } as u64;
        let window = 1u64 << (shift + SLOT_BITS as usize);
        let base = self.now & !(window - 1);
        let mut start = base + (slot << shift);
        if ahead == 0 {
            // Only possible after the clock jumped past a whole window: the entries are due.
            start = start.max(self.now);
        }
        Some(start.max(self.now))
    }

    /// Advances to tick `to` and collects the keys now due, in deadline order.
    pub(crate) fn advance(&mut self, to: u64, due: &mut Vec<u32>) {
        loop {
            let next = match self.next_tick() {
                Some(t) if t <= to => t,
                _ => break,
            };
            self.now = self.now.max(next);
            for level in 0..LEVELS {
                let shift = SLOT_BITS as usize * level;
                let slot = ((self.now >> shift) & (SLOTS as u64 - 1)) as usize;
                if self.occupied[level] & (1 << slot) == 0 {
                    continue;
                }
                let slot_start = (self.now >> shift) << shift;
                if slot_start > self.now {
                    continue;
                }
                self.occupied[level] &= !(1 << slot);
                let keys = std::mem::take(&mut self.slots[level * SLOTS + slot]);
                for key in keys {
                    let when = self.entries[key as usize].when;
                    self.place(key, when);
                }
            }
            if !self.ready.is_empty() {
                let entries = &self.entries;
                self.ready.sort_by_key(|k| (entries[*k as usize].when, *k));
                due.append(&mut self.ready);
            }
        }
        self.now = self.now.max(to);
    }

    /// Takes the callback of a due timer (None when it was cancelled meanwhile).
    pub(crate) fn take_action(&mut self, key: u32) -> Option<TimerFn> {
        let e = self.entries.get_mut(key as usize)?;
        if !matches!(e.state, State::Firing) {
            return None;
        }
        if e.cancel.as_ref().is_some_and(|c| c.load(Ordering::Acquire)) {
            e.action = None;
        }
        e.action.take()
    }

    /// Finishes a fired timer: re-arms an interval or frees the entry.
    pub(crate) fn finish(&mut self, key: u32, action: Option<TimerFn>, next: TimerNext) {
        let Some(e) = self.entries.get(key as usize) else {
            return;
        };
        if !matches!(e.state, State::Firing) {
            return;
        }
        let cancelled = e.cancel.as_ref().is_some_and(|c| c.load(Ordering::Acquire));
        match (action, next) {
            (Some(action), TimerNext::Again(period)) if !cancelled => {
                let ticks = duration_ticks(period).max(1);
                self.entries[key as usize].action = Some(action);
                let when = self.now + ticks;
                self.place(key, when);
            }
            _ => self.free(key),
        }
    }

    /// Key and generation are still the same timer (used by handles).
    pub(crate) fn gen_of(&self, key: u32) -> Option<u32> {
        self.entries.get(key as usize).and_then(|e| match e.state {
            State::Vacant { .. } => None,
            _ => Some(e.gen),
        })
    }
}

/// Rounds a duration up to whole ticks so a timer never fires early.
pub(crate) fn duration_ticks(d: Duration) -> u64 {
    let ms = d.as_millis();
    let whole = if Duration::from_millis(ms as u64) < d {
        ms + 1
    } else {
        ms
    };
    whole.min(MAX_TICKS as u128) as u64
}

/// A handle to an armed timer; cancel it from any thread. Dropping the handle does not cancel.
#[derive(Clone, Debug)]
pub struct TimerHandle {
    pub(crate) worker: Arc<WorkerShared>,
    pub(crate) key: u32,
    pub(crate) gen: u32,
    pub(crate) flag: Arc<AtomicBool>,
}

impl TimerHandle {
    /// Cancels the timer: it will not fire again (an interval stops). Idempotent.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
        let (key, gen) = (self.key, self.gen);
        // Remove it from the wheel promptly so a long timer does not linger.
        self.worker.run_on(move |w| w.cancel_timer(key, gen));
    }

    /// True once `cancel` was called.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

struct SleepState {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// A future that completes when a worker's timer fires (used for ask deadlines outside actors).
pub(crate) struct Sleep {
    state: Arc<SleepState>,
    handle: Option<TimerHandle>,
}

impl Sleep {
    /// Arms a sleep on `worker`'s wheel (its clock: real or virtual).
    pub(crate) fn on(worker: &Arc<WorkerShared>, after: Duration) -> Sleep {
        let state = Arc::new(SleepState {
            fired: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        let s = state.clone();
        let handle = worker.arm_timer(
            after,
            Box::new(move |_w: &WorkerLocal| {
                s.fired.store(true, Ordering::Release);
                let w = s.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(w) = w {
                    w.wake();
                }
                TimerNext::Done
            }),
        );
        Sleep {
            state,
            handle: Some(handle),
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.state.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        *self.state.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        if self.state.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            if !self.state.fired.load(Ordering::Acquire) {
                h.cancel();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn noop() -> TimerFn {
        Box::new(|_| TimerNext::Done)
    }

    fn drain(w: &mut TimerWheel, to: u64) -> Vec<(u32, u64)> {
        let mut due = Vec::new();
        w.advance(to, &mut due);
        let out = due.iter().map(|k| (*k, w.now())).collect();
        for k in due {
            let a = w.take_action(k);
            w.finish(k, a, TimerNext::Done);
        }
        out
    }

    #[test]
    fn fires_at_deadline_not_before() {
        let mut w = TimerWheel::new();
        let (k, _) = w.insert(100, noop(), None);
        assert!(drain(&mut w, 99).is_empty());
        assert_eq!(drain(&mut w, 100), vec![(k, 100)]);
        assert_eq!(w.active(), 0);
    }

    #[test]
    fn a_stale_wheel_still_fires_on_time() {
        // The worker skips advancing an empty wheel, so its `now` can lag the clock.
        for lag in [0u64, 1, 63, 64, 65, 4095, 4096, 4097, 262_143, 262_145] {
            for phase in 0..70u64 {
                let mut w = TimerWheel::new();
                let now = lag + phase;
                let when = now + 3;
                let (k, _) = w.insert(when, noop(), None);
                assert!(
                    drain(&mut w, when - 1).is_empty(),
                    "lag {lag} phase {phase}"
                );
                assert_eq!(
                    drain(&mut w, when),
                    vec![(k, when)],
                    "lag {lag} phase {phase}"
                );
            }
        }
    }

    #[test]
    fn cancel_removes_and_frees() {
        let mut w = TimerWheel::new();
        let (k, g) = w.insert(5000, noop(), None);
        assert_eq!(w.active(), 1);
        assert!(w.cancel(k, g));
        assert!(!w.cancel(k, g));
        assert_eq!(w.active(), 0);
        assert!(drain(&mut w, 10_000).is_empty());
    }

    #[test]
    fn large_jump_fires_everything_due() {
        let mut w = TimerWheel::new();
        for t in [1u64, 70, 5_000, 300_000, 20_000_000] {
            w.insert(t, noop(), None);
        }
        assert_eq!(drain(&mut w, 30_000_000).len(), 5);
    }

    proptest! {
        #[test]
        fn never_early_never_lost(deadlines in proptest::collection::vec(0u64..200_000, 1..60),
                                  steps in proptest::collection::vec(1u64..50_000, 1..40)) {
            let mut w = TimerWheel::new();
            let mut want = std::collections::HashMap::new();
            for d in &deadlines {
                let (k, _) = w.insert(*d, noop(), None);
                want.insert(k, *d);
            }
            let mut t = 0;
            let mut seen = 0;
            for s in steps.iter().chain(std::iter::once(&300_000)) {
                t += s;
                let mut due = Vec::new();
                w.advance(t, &mut due);
                let mut last = 0;
                for k in due {
                    let d = want[&k];
                    prop_assert!(d <= t, "fired early: deadline {} at {}", d, t);
                    prop_assert!(d >= last, "out of order");
                    last = d;
                    seen += 1;
                    let a = w.take_action(k);
                    w.finish(k, a, TimerNext::Done);
                }
            }
            prop_assert_eq!(seen, deadlines.len());
            prop_assert_eq!(w.active(), 0);
        }
    }
}
