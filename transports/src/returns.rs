//! How lent receive buffers come back to their pool: a flag per buffer, raised by whichever
//! thread drops the buffer's last `Bytes`, and collected by the pool on its own thread.
//!
//! A return is a release store of the buffer's flag and one atomic swap announcing it: one
//! locked instruction, where the mutex-guarded list this replaces cost two (a lock and an
//! unlock) and a second reference count (the list had its own).
//!
//! The pool collects only when a return was announced (`any`), and then looks only at the
//! buffers it has lent out, so collecting costs nothing while nothing comes back.

use crate::sync::{AtomicBool, AtomicU8, Ordering};

/// The return flags of one pool's buffers (see the module documentation).
pub(crate) struct Returns {
    /// Per buffer: 1 once its lent `Bytes` dropped and until the pool collects it.
    flags: Box<[AtomicU8]>,
    /// Raised after any flag: some buffer came back since the pool last collected.
    any: AtomicBool,
}

impl Returns {
    /// Flags for `count` buffers, none returned.
    pub(crate) fn new(count: usize) -> Returns {
        Returns {
            flags: (0..count).map(|_| AtomicU8::new(0)).collect(),
            any: AtomicBool::new(false),
        }
    }

    /// Gives buffer `bid` back. The caller has finished with the buffer's memory: the release
    /// store orders its reads before the pool's reuse (which follows an acquire load of the
    /// flag), as the mutex's unlock did.
    #[inline]
    pub(crate) fn give_back(&self, bid: u16) {
        if let Some(flag) = self.flags.get(usize::from(bid)) {
            flag.store(1, Ordering::Release);
        }
        // A swap, not a store: a read-modify-write continues the release sequence of every
        // return announced before it, so the pool's acquiring swap that reads this value
        // also sees their flags. With plain stores it would see only this one's, and a
        // return announced just before could be cleared unseen (loom found that).
        self.any.swap(true, Ordering::Release);
    }

    /// Takes every returned buffer among `lent` (the ids the pool has lent out) out of it and
    /// hands each to `out`, once.
    ///
    /// `any` is swapped, not just cleared: a return announced after the swap leaves it raised
    /// for the next collection, and one announced before is seen by this one (the swap
    /// acquires the announcements, and with them the flags stored before them).
    pub(crate) fn collect(&self, lent: &mut Vec<u16>, mut out: impl FnMut(u16)) {
        if !self.any.load(Ordering::Relaxed) || !self.any.swap(false, Ordering::Acquire) {
            return;
        }
        let mut i = 0;
        while let Some(&bid) = lent.get(i) {
            match self.flags.get(usize::from(bid)) {
                Some(flag) if flag.load(Ordering::Acquire) == 1 => {
                    // Cleared before the buffer can be lent again: the next holder's return
                    // happens after that lending, so after this store.
                    flag.store(0, Ordering::Relaxed);
                    lent.swap_remove(i);
                    out(bid);
                }
                _ => i += 1,
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn collects_what_came_back_once_and_keeps_the_rest_lent() {
        let r = Returns::new(4);
        let mut lent = vec![0, 1, 2, 3];
        let mut got = Vec::new();
        r.collect(&mut lent, |b| got.push(b));
        assert!(got.is_empty(), "nothing returned yet");
        r.give_back(2);
        r.give_back(0);
        r.collect(&mut lent, |b| got.push(b));
        got.sort_unstable();
        assert_eq!(got, vec![0, 2]);
        lent.sort_unstable();
        assert_eq!(lent, vec![1, 3]);
        got.clear();
        r.collect(&mut lent, |b| got.push(b));
        assert!(got.is_empty(), "collected once");
        // Lent again and returned again.
        lent.push(2);
        r.give_back(2);
        r.collect(&mut lent, |b| got.push(b));
        assert_eq!(got, vec![2]);
        // An id out of range is ignored, not a panic.
        r.give_back(9);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    /// Two threads each read their buffer and give it back while the pool collects; the pool
    /// then overwrites every buffer it collected. Loom checks that no overwrite races a read
    /// (the flags order them), and that after both returns one more collection finds the
    /// rest: every returned buffer is collected exactly once, the unreturned one stays lent.
    #[test]
    fn loom_returned_buffers_are_collected_once_after_their_reads() {
        loom::model(|| {
            let returns = Arc::new(Returns::new(3));
            let bufs: Arc<[UnsafeCell<u8>; 3]> =
                Arc::new([UnsafeCell::new(0), UnsafeCell::new(0), UnsafeCell::new(0)]);
            let readers: Vec<_> = [0u16, 1]
                .into_iter()
                .map(|bid| {
                    let (returns, bufs) = (returns.clone(), bufs.clone());
                    loom::thread::spawn(move || {
                        // SAFETY: a read of the lent buffer; loom reports any write that
                        // races it, which is what this model checks.
                        let seen = bufs[usize::from(bid)].with(|p| unsafe { *p });
                        returns.give_back(bid);
                        seen
                    })
                })
                .collect();
            let mut lent = vec![0u16, 1, 2];
            let mut got = Vec::new();
            let reuse = |bid: u16, got: &mut Vec<u16>| {
                // SAFETY: the pool's reuse of a collected buffer; loom reports a race with a
                // reader, which is what this model checks.
                bufs[usize::from(bid)].with_mut(|p| unsafe { *p = 7 });
                got.push(bid);
            };
            returns.collect(&mut lent, |b| reuse(b, &mut got));
            for r in readers {
                assert_eq!(r.join().unwrap(), 0, "a buffer was overwritten while lent");
            }
            returns.collect(&mut lent, |b| reuse(b, &mut got));
            got.sort_unstable();
            assert_eq!(got, vec![0, 1]);
            assert_eq!(lent, vec![2]);
        });
    }
}
