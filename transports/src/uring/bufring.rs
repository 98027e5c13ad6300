//! A provided buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19+): the kernel picks a
//! buffer from it for each multishot receive completion.
//!
//! The ring is an array of `io_uring_buf` entries shared with the kernel. We append entries
//! at our tail and publish the tail with a release store into the first entry's `resv`
//! field; the kernel consumes from its own head and reports each buffer's id in the
//! completion (`IORING_CQE_F_BUFFER`). The ring has as many entries as the pool has buffers,
//! so appending never overwrites an entry the kernel has not consumed.

use std::alloc::{self, Layout};
use std::ptr::{addr_of_mut, NonNull};
use std::sync::atomic::{AtomicU16, Ordering};

use super::ring::Ring;

/// `struct io_uring_buf` from the kernel's uapi (16 bytes; the first entry's `resv` is the
/// ring's tail).
#[repr(C)]
struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// A registered provided buffer ring.
pub(super) struct BufRing {
    base: NonNull<RawBuf>,
    layout: Layout,
    mask: u16,
    /// Our tail: entries up to here are written; published by [`BufRing::publish`].
    tail: u16,
    /// The tail the kernel last saw.
    published: u16,
    bgid: u16,
    registered: bool,
}

impl BufRing {
    /// Allocates and registers a ring of `entries` (a power of two, at most 32768) as buffer
    /// group `bgid`.
    pub(super) fn new(ring: &Ring, entries: u16, bgid: u16) -> std::io::Result<BufRing> {
        if !entries.is_power_of_two() || entries > 1 << 15 {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        }
        let size = usize::from(entries) * std::mem::size_of::<RawBuf>();
        let layout = Layout::from_size_align(size, 4096)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: `layout` has a non-zero size (at least one 16-byte entry).
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let base = NonNull::new(ptr.cast::<RawBuf>())
            .ok_or(std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
        let mut this = BufRing {
            base,
            layout,
            mask: entries - 1,
            tail: 0,
            published: 0,
            bgid,
            registered: false,
        };
        // SAFETY: `base` is a page-aligned, zeroed allocation of `entries` entries that lives
        // until `Drop`, and `Drop` only frees it after unregistering (the reactor unregisters
        // before dropping, or leaks the ring if the kernel may still use it).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                base.as_ptr() as u64,
                entries,
                bgid,
                0,
            )?;
        }
        this.registered = true;
        Ok(this)
    }

    /// The buffer group id to put in receives.
    pub(super) fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Appends a buffer; the kernel sees it after [`BufRing::publish`].
    pub(super) fn push(&mut self, addr: *mut u8, len: usize, bid: u16) {
        let index = usize::from(self.tail & self.mask);
        let entry = self.base.as_ptr().wrapping_add(index);
        // SAFETY: `index` is below the entry count, so `entry` points into the allocation.
        // The entry is not published (it is at or past the published tail) and not one the
        // kernel has yet to consume (there are never more buffers than entries), so only we
        // access it. Fields are written one by one through raw pointers, never touching
        // `resv`, which in entry 0 is the tail the kernel reads concurrently.
        unsafe {
            addr_of_mut!((*entry).addr).write(addr as u64);
            addr_of_mut!((*entry).len).write(u32::try_from(len).unwrap_or(u32::MAX));
            addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every pushed buffer visible to the kernel.
    pub(super) fn publish(&mut self) {
        if self.published == self.tail {
            return;
        }
        // SAFETY: entry 0's `resv` field is a naturally aligned u16 inside the live
        // allocation, and it is only ever accessed atomically (by us here, by the kernel with
        // an acquire load), as the ring's ABI requires.
        let tail = unsafe { AtomicU16::from_ptr(addr_of_mut!((*self.base.as_ptr()).resv)) };
        // Release: the entries written before are visible to the kernel's acquire load.
        tail.store(self.tail, Ordering::Release);
        self.published = self.tail;
    }

    /// Unregisters the ring; afterwards the kernel no longer reads it.
    pub(super) fn unregister(&mut self, ring: &Ring) -> std::io::Result<()> {
        if self.registered {
            ring.submitter().unregister_buf_ring(self.bgid)?;
            self.registered = false;
        }
        Ok(())
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout. The reactor drops the ring only after
        // unregistering it or closing the io_uring instance with no request in flight (and
        // leaks it otherwise), so the kernel no longer selects buffers from it.
        unsafe { alloc::dealloc(self.base.as_ptr().cast(), self.layout) }
    }
}
