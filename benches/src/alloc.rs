//! A counting global allocator: wraps mimalloc and keeps the number of live bytes.
//!
//! mimalloc rather than the system allocator because every server this binary runs (Sinew and
//! its peers alike) allocates on its request path, and glibc malloc costs ~180 instructions a
//! call there: the same fast allocator for all keeps the comparison about the frameworks.
//!
//! Allocations aligned to a pointer's size or less (nearly all of them) go
//! to `mi_malloc` / `mi_realloc` directly. The `mimalloc` crate's allocator sends every call
//! through `mi_malloc_aligned`, about 20 instructions more per allocation on the request paths
//! (callgrind, HTTP server: 2,159 -> 2,127 instructions per pipelined request). Every server
//! in this binary gets the same allocator.
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

/// mimalloc aligns every block to at least a pointer's size, whatever its size (16 only for
/// some sizes: a 1-byte block is 8-aligned, as the test below found).
const NATURAL_ALIGN: usize = std::mem::align_of::<usize>();

// SAFETY: every method forwards to mimalloc with the caller's arguments unchanged, or, for
// layouts aligned to `NATURAL_ALIGN` or less, to the unaligned entry points, whose blocks
// mimalloc aligns to `NATURAL_ALIGN` anyway; every block is freed with `mi_free` (which is
// what the crate's `dealloc` calls too), so mimalloc's guarantees carry over; the counter is
// bookkeeping only.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = if layout.align() <= NATURAL_ALIGN {
            // SAFETY: a plain C allocation of a non-zero size (GlobalAlloc's contract); the
            // block is aligned to `NATURAL_ALIGN`, which covers `layout.align()`.
            unsafe { libmimalloc_sys::mi_malloc(layout.size()) }.cast::<u8>()
        } else {
            // SAFETY: forwarded with the caller's layout (non-zero size per GlobalAlloc's
            // contract).
            unsafe { Inner.alloc(layout) }
        };
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
        let p = if layout.align() <= NATURAL_ALIGN {
            // SAFETY: `ptr` is a live mimalloc block (the caller's contract: it came from this
            // allocator); the new block keeps `NATURAL_ALIGN`, which covers `layout.align()`.
            unsafe { libmimalloc_sys::mi_realloc(ptr.cast(), new_size) }.cast::<u8>()
        } else {
            // SAFETY: the caller upholds `realloc`'s contract, which we forward unchanged.
            unsafe { Inner.realloc(ptr, layout, new_size) }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A block of `layout` filled with a known pattern.
    ///
    /// # Safety
    /// `layout` has a non-zero size; the caller frees the block.
    unsafe fn filled(a: &CountingAlloc, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract.
        let p = unsafe { a.alloc(layout) };
        assert!(!p.is_null());
        assert_eq!(p as usize % layout.align(), 0, "{layout:?}");
        for i in 0..layout.size() {
            // SAFETY: within the block just allocated.
            unsafe { *p.add(i) = (i % 251) as u8 };
        }
        p
    }

    /// Blocks from both paths (natural and over-aligned) are aligned as asked, keep their
    /// bytes through growing and shrinking reallocations, and free without complaint.
    #[test]
    fn blocks_are_aligned_and_keep_their_bytes_through_realloc() {
        let a = CountingAlloc;
        for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1usize, 7, 16, 100, 4096, 100_000] {
                let layout = Layout::from_size_align(size, align).expect("valid layout");
                for new_size in [size * 3, size / 2 + 1] {
                    // SAFETY: non-zero sizes; each block is freed once, with its layout.
                    unsafe {
                        let p = filled(&a, layout);
                        let q = a.realloc(p, layout, new_size);
                        assert!(!q.is_null());
                        assert_eq!(q as usize % align, 0, "{layout:?} -> {new_size}");
                        for i in 0..size.min(new_size) {
                            assert_eq!(*q.add(i), (i % 251) as u8, "{layout:?} -> {new_size}");
                        }
                        let moved = Layout::from_size_align(new_size, align).expect("valid");
                        a.dealloc(q, moved);
                    }
                }
            }
        }
    }
}
