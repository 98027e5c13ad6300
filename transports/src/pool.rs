//! Pooled fixed-size receive buffers, lent out as `bytes::Bytes` and returned when dropped.
//!
//! One page-aligned, zero-initialised allocation is cut into `count` slots of `size` bytes.
//! A slot is in exactly one state: free (the pool holds it), held (one [`Held`] handle, owned
//! by the backend code working on it), in the kernel (on io_uring's provided buffer ring), or
//! lent (a `Bytes` handed to the user refers to it). Lending wraps the slot in a `Bytes` whose
//! owner raises the slot's return flag when the last clone drops, from whichever thread that
//! happens on ([`crate::returns`]); the reactor collects returned slots on its own thread
//! ([`BufPool::reclaim`]) and re-provides them. The memory and the flags are reference
//! counted together (one count per lent `Bytes`), so a `Bytes` may outlive the reactor.

use std::alloc::{self, Layout};
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::returns::{Returns, SCAN};

/// Slot states.
const FREE: u8 = 0;
const HELD: u8 = 1;
const KERNEL: u8 = 2;
const LENT: u8 = 3;

/// The pool's memory: `count * size` bytes, zeroed at allocation, so every byte of it is
/// always initialised (the kernel and reads only ever overwrite it).
struct Region {
    ptr: NonNull<u8>,
    layout: Layout,
    size: usize,
}

// SAFETY: `Region` is a plain heap allocation with no thread affinity. Concurrent access is
// to disjoint slots only: a lent slot is only read (through `Lent`), and the pool writes (or
// lets the kernel write) a slot only while it is not lent; see the state machine above.
unsafe impl Send for Region {}
// SAFETY: as above: shared references only ever read slots nobody writes.
unsafe impl Sync for Region {}

impl Region {
    fn new(count: usize, size: usize) -> Result<Region> {
        let total = count
            .checked_mul(size)
            .filter(|&t| t > 0)
            .ok_or(Error::InvalidArgument("receive pool size"))?;
        let layout = Layout::from_size_align(total, 4096)
            .map_err(|_| Error::InvalidArgument("receive pool size"))?;
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or(Error::Io(std::io::Error::from(
            std::io::ErrorKind::OutOfMemory,
        )))?;
        Ok(Region { ptr, layout, size })
    }

    /// The first byte of slot `bid` (in bounds: callers pass ids below the slot count).
    fn slot_ptr(&self, bid: u16) -> *mut u8 {
        self.ptr.as_ptr().wrapping_add(usize::from(bid) * self.size)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `Region::new` with this very layout; the last reference is
        // gone, so no `Bytes`, no pool and (see the io_uring backend's drop) no kernel
        // request refers to it any more.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// What the pool shares with the `Bytes` it lends: the memory and the return flags, behind
/// one reference count (a lend and a return each cost one atomic update of it).
struct Shared {
    region: Region,
    returns: Returns,
}

/// The owner behind a lent `Bytes`: slot `bid`'s first `len` bytes.
struct Lent {
    shared: Arc<Shared>,
    bid: u16,
    len: usize,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the slot lies inside the region (its id is below the slot count and `len`
        // is at most the slot size, checked by `BufPool::lend`); the region is initialised
        // (zeroed at allocation) and alive (we hold an `Arc`); and nobody writes the slot
        // while it is lent: the pool only writes or provides slots that are free or held,
        // and this slot leaves the lent state only after this owner drops.
        unsafe { std::slice::from_raw_parts(self.shared.region.slot_ptr(self.bid), self.len) }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        // The last use of the slot's memory through this owner: it is read no more.
        self.shared.returns.give_back(self.bid);
    }
}

/// A slot the holder may read into or hand on: exactly one exists per held slot.
#[derive(Debug)]
pub(crate) struct Held {
    bid: u16,
}

/// A pool of fixed-size receive buffers (see the module docs).
pub(crate) struct BufPool {
    shared: Arc<Shared>,
    state: Vec<u8>,
    free: Vec<u16>,
    /// The ids of the lent slots, the only ones a return can concern.
    lent: Vec<u16>,
    /// Where the next look at `lent`'s return flags resumes.
    cursor: usize,
}

impl BufPool {
    /// A pool of `count` (at most 65536) buffers of `size` bytes, all free.
    pub(crate) fn new(count: usize, size: usize) -> Result<BufPool> {
        if count == 0 || count > 1 << 16 {
            return Err(Error::InvalidArgument("receive pool buffer count"));
        }
        let region = Region::new(count, size)?;
        // Hand out low ids first.
        let free = (0..count)
            .rev()
            .filter_map(|i| u16::try_from(i).ok())
            .collect();
        Ok(BufPool {
            shared: Arc::new(Shared {
                region,
                returns: Returns::new(count),
            }),
            state: vec![FREE; count],
            free,
            lent: Vec::new(),
            cursor: 0,
        })
    }

    /// Bytes per buffer.
    pub(crate) fn buf_size(&self) -> usize {
        self.shared.region.size
    }

    /// Buffers in the pool.
    pub(crate) fn count(&self) -> usize {
        self.state.len()
    }

    /// Buffers lent out and not returned (or returned but not yet reclaimed).
    pub(crate) fn lent(&self) -> usize {
        self.lent.len()
    }

    fn set(&mut self, bid: u16, from: u8, to: u8) -> bool {
        match self.state.get_mut(usize::from(bid)) {
            Some(s) if *s == from => {
                *s = to;
                true
            }
            _ => false,
        }
    }

    /// Takes a free buffer, collecting returned ones first if none is free.
    pub(crate) fn take(&mut self) -> Option<Held> {
        if self.free.is_empty() {
            // Every lent buffer looked at: none is free.
            self.collect_into_free(usize::MAX);
        }
        let bid = self.free.pop()?;
        self.set(bid, FREE, HELD);
        Some(Held { bid })
    }

    /// Gives an unused buffer back.
    pub(crate) fn put(&mut self, held: Held) {
        if self.set(held.bid, HELD, FREE) {
            self.free.push(held.bid);
        }
    }

    /// The buffer to read into: the whole slot. Only initialised bytes may be stored (a
    /// read does), so the region stays initialised.
    pub(crate) fn read_buf(&mut self, held: &Held) -> &mut [MaybeUninit<u8>] {
        let size = self.shared.region.size;
        // SAFETY: the slot is inside the region. It is held, and `held` is its only handle,
        // borrowed here for the slice's lifetime through `&mut self`: no `Bytes` refers to
        // it (not lent), the kernel does not have it (not provided), and no other slice of it
        // exists. Slots are disjoint, so other slots' readers are unaffected.
        unsafe {
            std::slice::from_raw_parts_mut(self.shared.region.slot_ptr(held.bid).cast(), size)
        }
    }

    /// [`BufPool::read_buf`] as initialised bytes, for code that fills buffers itself.
    pub(crate) fn buf_mut(&mut self, held: &Held) -> &mut [u8] {
        let size = self.shared.region.size;
        // SAFETY: as in `read_buf`; the region is initialised (zeroed at allocation, and only
        // initialised bytes are ever stored).
        unsafe { std::slice::from_raw_parts_mut(self.shared.region.slot_ptr(held.bid), size) }
    }

    /// The first `len` bytes of a held buffer (clamped to the buffer size).
    pub(crate) fn filled(&self, held: &Held, len: usize) -> &[u8] {
        let len = len.min(self.shared.region.size);
        // SAFETY: as in `buf_mut`, the slot is held through `held` (borrowed here), in bounds
        // and initialised; nothing writes it while this shared slice lives.
        unsafe { std::slice::from_raw_parts(self.shared.region.slot_ptr(held.bid), len) }
    }

    /// Lends the first `len` bytes of a held buffer (clamped to the buffer size) as `Bytes`;
    /// the buffer comes back when the last clone of it drops.
    pub(crate) fn lend(&mut self, held: Held, len: usize) -> Bytes {
        let len = len.min(self.shared.region.size);
        if self.set(held.bid, HELD, LENT) {
            self.lent.push(held.bid);
        }
        Bytes::from_owner(Lent {
            shared: self.shared.clone(),
            bid: held.bid,
            len,
        })
    }

    /// Copies the first `len` bytes of a held buffer into a new `Bytes` (the buffer stays
    /// held).
    pub(crate) fn copy(&self, held: &Held, len: usize) -> Bytes {
        Bytes::copy_from_slice(self.filled(held, len))
    }

    /// The whole region: its first byte and length.
    pub(crate) fn region(&self) -> (*const u8, usize) {
        (
            self.shared.region.ptr.as_ptr(),
            self.shared.region.layout.size(),
        )
    }

    /// Hands a held buffer to the kernel: its address, length and id.
    pub(crate) fn provide(&mut self, held: Held) -> (*mut u8, usize, u16) {
        self.set(held.bid, HELD, KERNEL);
        (
            self.shared.region.slot_ptr(held.bid),
            self.shared.region.size,
            held.bid,
        )
    }

    /// Takes back a buffer the kernel handed over (a completion's buffer id); `None` if the
    /// id is not one the kernel has.
    pub(crate) fn kernel_returned(&mut self, bid: u16) -> Option<Held> {
        self.set(bid, KERNEL, HELD).then_some(Held { bid })
    }

    /// Collects buffers whose `Bytes` were dropped, as held buffers: those among the next
    /// [`SCAN`] lent ones (all of them, for a pool with no more lent).
    pub(crate) fn reclaim(&mut self, out: &mut Vec<Held>) {
        self.collect(out, SCAN);
    }

    fn collect(&mut self, out: &mut Vec<Held>, limit: usize) {
        if self.lent.is_empty() {
            return;
        }
        let state = &mut self.state;
        let lent = &mut self.lent;
        self.shared
            .returns
            .collect(lent, &mut self.cursor, limit, |bid| {
                if let Some(s) = state.get_mut(usize::from(bid)) {
                    if *s == LENT {
                        *s = HELD;
                        out.push(Held { bid });
                    }
                }
            });
    }

    /// Collects returned buffers straight into the free list: those among the next [`SCAN`]
    /// lent ones, as [`BufPool::reclaim`].
    pub(crate) fn reclaim_into_free(&mut self) {
        self.collect_into_free(SCAN);
    }

    fn collect_into_free(&mut self, limit: usize) {
        if self.lent.is_empty() {
            return;
        }
        let mut held = Vec::new();
        self.collect(&mut held, limit);
        for h in held {
            self.put(h);
        }
    }

    /// Whether every buffer is free or held (none lent, none in the kernel) after collecting
    /// returns; for tests.
    #[cfg(test)]
    fn all_home(&mut self) -> bool {
        self.reclaim_into_free();
        self.state.iter().all(|&s| s == FREE || s == HELD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lend_and_return_across_threads() -> Result<()> {
        let mut pool = BufPool::new(4, 64)?;
        let mut lent = Vec::new();
        for i in 0..4u8 {
            let held = pool.take().ok_or(Error::InvalidArgument("empty"))?;
            pool.buf_mut(&held)[..3].copy_from_slice(&[i, i + 1, i + 2]);
            lent.push(pool.lend(held, 3));
        }
        assert!(pool.take().is_none(), "every buffer is lent");
        assert_eq!(pool.lent(), 4);
        assert_eq!(&lent[2][..], &[2, 3, 4]);
        // A slice keeps the buffer lent; dropping every clone returns it, from any thread.
        let part = lent[1].slice(1..);
        let moved: Vec<Bytes> = std::mem::take(&mut lent);
        std::thread::spawn(move || drop(moved))
            .join()
            .map_err(|_| Error::InvalidArgument("thread"))?;
        let again = pool.take().ok_or(Error::InvalidArgument("empty"))?;
        assert_eq!(pool.lent(), 1, "the sliced buffer is still out");
        assert_eq!(&part[..], &[2, 3]);
        pool.put(again);
        drop(part);
        assert!(pool.all_home());
        assert_eq!(pool.lent(), 0);
        Ok(())
    }

    #[test]
    fn bytes_outlive_the_pool() -> Result<()> {
        let mut pool = BufPool::new(1, 16)?;
        let held = pool.take().ok_or(Error::InvalidArgument("empty"))?;
        pool.buf_mut(&held)[..5].copy_from_slice(b"hello");
        let b = pool.lend(held, 5);
        drop(pool);
        assert_eq!(&b[..], b"hello");
        Ok(())
    }

    #[test]
    fn kernel_round_trip_and_copies() -> Result<()> {
        let mut pool = BufPool::new(2, 8)?;
        let held = pool.take().ok_or(Error::InvalidArgument("empty"))?;
        let (_, len, bid) = pool.provide(held);
        assert_eq!(len, 8);
        assert!(pool.kernel_returned(bid ^ 1).is_none(), "not in the kernel");
        let back = pool
            .kernel_returned(bid)
            .ok_or(Error::InvalidArgument("kernel"))?;
        assert!(pool.kernel_returned(bid).is_none(), "taken back once");
        pool.buf_mut(&back)[..2].copy_from_slice(b"ok");
        let c = pool.copy(&back, 100);
        assert_eq!(c.len(), 8, "clamped to the buffer size");
        assert_eq!(&c[..2], b"ok");
        pool.put(back);
        assert!(pool.all_home());
        Ok(())
    }
}
