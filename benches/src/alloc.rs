//! A counting global allocator: wraps mimalloc and keeps the number of live bytes.
//!
//! mimalloc rather than the system allocator because every server this binary runs (Sinew and
//! its peers alike) allocates on its request path, and glibc malloc costs ~180 instructions a
//! call there: the same fast allocator for all keeps the comparison about the frameworks.
//!
//! Used by the `idle-actor-memory` case: `(live_after - live_before) / K`. Relaxed
//! atomics are enough because measurements read the counter from one thread after the
//! work they measure has completed (and children run one measurement per process).
//!
//! Counting is OFF unless [`enable_counting`] was called: an atomic read-modify-write
//! on every allocation costs frameworks that allocate per message tens of ns per round
//! trip, so the driver turns counting on only in the child process that measures memory
//! (first thing in that process). While off, the allocator costs one relaxed load.
//! Frees of blocks allocated before counting began make the counter wrap; differences
//! taken with [`bytes_between`] stay correct as long as such frees do not happen inside
//! the measured window.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mimalloc::MiMalloc as Inner;

/// The counting allocator type; installed as `#[global_allocator]` in `main.rs`.
#[derive(Debug)]
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns live-byte counting on for the rest of the process.
pub fn enable_counting() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether counting is on (see [`enable_counting`]).
pub fn counting_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Bytes allocated through the global allocator (since counting began) and not yet
/// freed, as a wrapping counter: compare two readings with [`bytes_between`].
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Signed growth of live bytes from reading `before` to reading `after`.
pub fn bytes_between(before: usize, after: usize) -> isize {
    after.wrapping_sub(before) as isize
}

#[inline]
fn add(n: usize) {
    if ENABLED.load(Ordering::Relaxed) {
        LIVE.fetch_add(n, Ordering::Relaxed);
    }
}

#[inline]
fn sub(n: usize) {
    if ENABLED.load(Ordering::Relaxed) {
        LIVE.fetch_sub(n, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to mimalloc with the caller's arguments unchanged, so
// mimalloc's guarantees carry over; the counter is bookkeeping only.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout (non-zero size per GlobalAlloc's contract).
        let p = unsafe { Inner.alloc(layout) };
        if !p.is_null() {
            add(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { Inner.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` was allocated by this allocator (hence by
        // mimalloc) with `layout`.
        unsafe { Inner.dealloc(ptr, layout) };
        sub(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract, which we forward unchanged.
        let p = unsafe { Inner.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                add(new_size - layout.size());
            } else {
                sub(layout.size() - new_size);
            }
        }
        p
    }
}
