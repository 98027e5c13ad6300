//! How lent receive buffers come back to their pool: a flag per buffer, raised by whichever
//! thread drops the buffer's last `Bytes`, and collected by the pool on its own thread.
//!
//! A return is one release store: on x86 a plain `mov`, no locked instruction. The
//! mutex-guarded list this replaces cost a lock and an unlock per return; each locked
//! instruction waits for every store before it to drain, and a connection drops a received
//! chunk right after copying it into its read buffer, so a return stalled on that copy
//! (`perf`: ~1% of an HTTP server's time unpipelined). An announcing flag beside the per-buffer
//! ones (swapped, so a locked instruction) stalled the same way.
//!
//! So the pool looks at the flags of the buffers it has lent out, a bounded number per call
//! ([`SCAN`]), resuming where it stopped: a server holds few lent buffers at a time (each
//! chunk is copied out and dropped at once), so a call usually looks at one or two flags.

use crate::sync::{AtomicU8, Ordering};

/// Flags looked at per collection, at most: a receiver that holds thousands of lent buffers
/// costs each collection this many loads, and its returns are found within a few calls.
pub(crate) const SCAN: usize = 64;

/// The return flags of one pool's buffers (see the module documentation).
pub(crate) struct Returns {
    /// Per buffer: 1 once its lent `Bytes` dropped and until the pool collects it.
    flags: Box<[AtomicU8]>,
}

impl Returns {
    /// Flags for `count` buffers, none returned.
    pub(crate) fn new(count: usize) -> Returns {
        Returns {
            flags: (0..count).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    /// Gives buffer `bid` back. The caller has finished with the buffer's memory: the release
    /// store orders its reads before the pool's reuse, which follows an acquire load of the
    /// flag (as the mutex's unlock and lock did).
    #[inline]
    pub(crate) fn give_back(&self, bid: u16) {
        if let Some(flag) = self.flags.get(usize::from(bid)) {
            flag.store(1, Ordering::Release);
        }
    }

    /// Looks at up to `limit` of the flags of `lent` (the ids the pool has lent out), from
    /// `*cursor` on and wrapping, and takes each returned one out of `lent` and hands it to
    /// `out`, once. `*cursor` is left where the next call resumes.
    pub(crate) fn collect(
        &self,
        lent: &mut Vec<u16>,
        cursor: &mut usize,
        limit: usize,
        mut out: impl FnMut(u16),
    ) {
        let mut i = *cursor;
        for _ in 0..limit.min(lent.len()) {
            if i >= lent.len() {
                i = 0;
            }
            let Some(&bid) = lent.get(i) else { break };
            match self.flags.get(usize::from(bid)) {
                Some(flag) if flag.load(Ordering::Acquire) == 1 => {
                    // Cleared before the buffer can be lent again: the next holder's return
                    // happens after that lending, so after this store.
                    flag.store(0, Ordering::Relaxed);
                    // The last id moves into `i`: looked at next.
                    lent.swap_remove(i);
                    out(bid);
                }
                _ => i += 1,
            }
        }
        *cursor = i;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn collects_what_came_back_once_and_keeps_the_rest_lent() {
        let r = Returns::new(4);
        let (mut lent, mut at) = (vec![0, 1, 2, 3], 0);
        let mut got = Vec::new();
        r.collect(&mut lent, &mut at, SCAN, |b| got.push(b));
        assert!(got.is_empty(), "nothing returned yet");
        r.give_back(2);
        r.give_back(0);
        r.collect(&mut lent, &mut at, SCAN, |b| got.push(b));
        got.sort_unstable();
        assert_eq!(got, vec![0, 2]);
        lent.sort_unstable();
        assert_eq!(lent, vec![1, 3]);
        got.clear();
        r.collect(&mut lent, &mut at, SCAN, |b| got.push(b));
        assert!(got.is_empty(), "collected once");
        // Lent again and returned again.
        lent.push(2);
        r.give_back(2);
        r.collect(&mut lent, &mut at, SCAN, |b| got.push(b));
        assert_eq!(got, vec![2]);
        // An id out of range is ignored, not a panic.
        r.give_back(9);
    }

    /// Many lent buffers: each call looks at a bounded number of flags, resuming where the
    /// last stopped, so every return is found within a few calls and none twice.
    #[test]
    fn a_bounded_scan_finds_every_return_within_a_few_calls() {
        let r = Returns::new(300);
        let mut lent: Vec<u16> = (0..300).collect();
        let mut at = 0;
        for bid in (0..300).filter(|b| b % 3 != 1) {
            r.give_back(bid);
        }
        let mut got = Vec::new();
        let mut calls = 0;
        while got.len() < 200 {
            calls += 1;
            assert!(calls <= 300 / SCAN + 2, "returns not found in time");
            let before = got.len();
            r.collect(&mut lent, &mut at, SCAN, |b| got.push(b));
            assert!(got.len() - before <= SCAN, "looked past the bound");
        }
        got.sort_unstable();
        let want: Vec<u16> = (0..300).filter(|b| b % 3 != 1).collect();
        assert_eq!(got, want);
        assert_eq!(lent.len(), 100);
        assert!(
            lent.iter().all(|b| b % 3 == 1),
            "only unreturned buffers stay lent"
        );
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
            let (mut lent, mut at) = (vec![0u16, 1, 2], 0);
            let mut got = Vec::new();
            let reuse = |bid: u16, got: &mut Vec<u16>| {
                // SAFETY: the pool's reuse of a collected buffer; loom reports a race with a
                // reader, which is what this model checks.
                bufs[usize::from(bid)].with_mut(|p| unsafe { *p = 7 });
                got.push(bid);
            };
            returns.collect(&mut lent, &mut at, SCAN, |b| reuse(b, &mut got));
            for r in readers {
                assert_eq!(r.join().unwrap(), 0, "a buffer was overwritten while lent");
            }
            returns.collect(&mut lent, &mut at, SCAN, |b| reuse(b, &mut got));
            got.sort_unstable();
            assert_eq!(got, vec![0, 1]);
            assert_eq!(lent, vec![2]);
        });
    }
}
