//! A worker's inbound queue: the one cross-core handoff on the hot path.
//!
//! An intrusive multi-producer single-consumer queue (Dmitry Vyukov's design): a producer swaps
//! itself into `tail` and links its predecessor (one atomic swap and one store), the consumer
//! follows `next` pointers with plain loads and never performs a read-modify-write. Each node
//! carries its job inline behind a small header (one allocation per message, no second box for
//! the closure). We write it ourselves rather than use `crossbeam::SegQueue` (MPMC: two
//! read-modify-writes per operation on each side) because this queue sits on every cross-worker
//! message; it is model-checked with loom and exercised under miri.

use std::ptr;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

use crate::sync::AtomicPtr;
use crate::worker::WorkerLocal;

/// Runs (with `Some(worker)`) or just drops (with `None`) a node, freeing it either way.
type RunFn = unsafe fn(*mut Header, Option<&WorkerLocal>);

#[repr(C)]
struct Header {
    next: AtomicPtr<Header>,
    run: RunFn,
}

#[repr(C)]
struct Node<F> {
    // Must stay the first field: a `*mut Header` is cast back to `*mut Node<F>`.
    header: Header,
    job: F,
}

/// # Safety
/// `h` must come from `Box::into_raw(Box<Node<F>>)` in `Inbound::push::<F>`, be popped from the
/// queue (no other reference to it remains), and not be used afterwards.
unsafe fn run_node<F: FnOnce(&WorkerLocal)>(h: *mut Header, w: Option<&WorkerLocal>) {
    // SAFETY: per the contract, `h` is the header of a leaked `Box<Node<F>>` (repr(C), header
    // first), now exclusively ours.
    let node = unsafe { Box::from_raw(h.cast::<Node<F>>()) };
    if let Some(w) = w {
        (node.job)(w);
    }
}

unsafe fn run_stub(_h: *mut Header, _w: Option<&WorkerLocal>) {}

/// Outcome of one `pop`.
pub(crate) enum Pop {
    Empty,
    /// A producer is between its swap and its link: an item is coming within nanoseconds.
    Busy,
    Job(Job),
}

/// A popped job: run it on the worker, or drop it.
pub(crate) struct Job(*mut Header);

impl Job {
    pub(crate) fn run(self, w: &WorkerLocal) {
        let h = self.0;
        std::mem::forget(self);
        // SAFETY: `h` was popped (we own it exclusively) and is consumed exactly once here.
        unsafe { ((*h).run)(h, Some(w)) }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: as in `run`: an owned, popped node, freed exactly once.
        unsafe { ((*self.0).run)(self.0, None) }
    }
}

pub(crate) struct Inbound {
    /// Where producers append. Written by any thread.
    tail: AtomicPtr<Header>,
    /// The consumer's position. Only the consumer reads or writes it (relaxed atomics stand in
    /// for a plain cell so loom can model the whole structure).
    head: AtomicPtr<Header>,
    /// A permanent dummy node, re-inserted when the queue would otherwise run dry.
    stub: *mut Header,
}

// SAFETY: producers only touch `tail` and the `next` field of the node they swapped out, with
// atomics; `head`, `stub` and popping are reserved to the single consumer (the worker thread),
// which `pop`'s contract requires. Jobs are `Send`.
unsafe impl Send for Inbound {}
// SAFETY: see `Send`: shared access is limited to atomic operations on `tail` and `next`.
unsafe impl Sync for Inbound {}

impl Inbound {
    pub(crate) fn new() -> Self {
        let stub = Box::into_raw(Box::new(Header {
            next: AtomicPtr::new(ptr::null_mut()),
            run: run_stub,
        }));
        Inbound {
            tail: AtomicPtr::new(stub),
            head: AtomicPtr::new(stub),
            stub,
        }
    }

    /// Appends a job. Any thread.
    pub(crate) fn push<F: FnOnce(&WorkerLocal) + Send + 'static>(&self, job: F) {
        let node = Box::new(Node {
            header: Header {
                next: AtomicPtr::new(ptr::null_mut()),
                run: run_node::<F>,
            },
            job,
        });
        self.link(Box::into_raw(node).cast::<Header>());
    }

    fn link(&self, n: *mut Header) {
        let prev = self.tail.swap(n, AcqRel);
        // SAFETY: `prev` was the tail, so it is either the stub or a node not yet consumed: the
        // consumer never frees the node `tail` points to (it re-inserts the stub first), so it
        // is alive, and only the producer that swapped it out writes its `next`.
        unsafe { (*prev).next.store(n, Release) };
    }

    /// True when a job is queued or about to be (a producer mid-push). Consumer only.
    pub(crate) fn has_work(&self) -> bool {
        let head = self.head.load(Relaxed);
        if head != self.stub {
            return true;
        }
        // SAFETY: the stub lives as long as the queue.
        !unsafe { (*self.stub).next.load(Acquire) }.is_null()
    }

    /// Takes the oldest job.
    ///
    /// # Safety
    /// Single consumer: only one thread (the owning worker, or `drop`) may ever call `pop`.
    pub(crate) unsafe fn pop(&self) -> Pop {
        // Every dereference below is of `head`, a node reached from it, or the stub. Nodes
        // between `head` and `tail` stay alive until popped, only this single consumer pops
        // (the caller's contract), and the stub lives as long as the queue.
        let mut head = self.head.load(Relaxed);
        // SAFETY: `head` is alive (see above).
        let mut next = unsafe { (*head).next.load(Acquire) };
        if head == self.stub {
            if next.is_null() {
                return Pop::Empty;
            }
            self.head.store(next, Relaxed);
            head = next;
            // SAFETY: `next` was linked after `head` and is not yet popped.
            next = unsafe { (*next).next.load(Acquire) };
        }
        if !next.is_null() {
            self.head.store(next, Relaxed);
            return Pop::Job(Job(head));
        }
        if head != self.tail.load(Acquire) {
            return Pop::Busy;
        }
        // `head` is the last node: put the stub behind it so it can be handed out.
        // SAFETY: the stub is alive and not in the queue now (head is past it), so no producer
        // writes its `next`.
        unsafe { (*self.stub).next.store(ptr::null_mut(), Relaxed) };
        self.link(self.stub);
        // SAFETY: `head` is still unpopped and alive.
        next = unsafe { (*head).next.load(Acquire) };
        if !next.is_null() {
            self.head.store(next, Relaxed);
            return Pop::Job(Job(head));
        }
        Pop::Busy
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        // `&mut self`: no producer or consumer is left, so we are the single consumer.
        loop {
            // SAFETY: exclusive access (see above).
            match unsafe { self.pop() } {
                Pop::Job(j) => drop(j),
                Pop::Empty => break,
                // Impossible without concurrent producers; stop rather than spin.
                Pop::Busy => break,
            }
        }
        // SAFETY: the stub was created by `Box::into_raw` in `new` and is freed once, here.
        drop(unsafe { Box::from_raw(self.stub) });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    /// Drains by dropping jobs (no worker needed): each job's drop records its id.
    struct Probe(u32, Arc<std::sync::Mutex<Vec<u32>>>);

    impl Drop for Probe {
        fn drop(&mut self) {
            self.1.lock().unwrap().push(self.0);
        }
    }

    fn drain(q: &Inbound) -> usize {
        let mut n = 0;
        loop {
            // SAFETY: the test thread is the only consumer.
            match unsafe { q.pop() } {
                Pop::Job(j) => {
                    drop(j);
                    n += 1;
                }
                Pop::Busy => std::hint::spin_loop(),
                Pop::Empty => return n,
            }
        }
    }

    #[test]
    fn fifo_and_no_leak_single_thread() {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let q = Inbound::new();
        assert!(!q.has_work());
        for i in 0..5 {
            let p = Probe(i, log.clone());
            q.push(move |_w: &WorkerLocal| drop(p));
        }
        assert!(q.has_work());
        assert_eq!(drain(&q), 5);
        assert_eq!(*log.lock().unwrap(), vec![0, 1, 2, 3, 4]);
        assert!(!q.has_work());
        // Reuse after running dry, then drop with items inside: every job is freed.
        for i in 5..8 {
            let p = Probe(i, log.clone());
            q.push(move |_w: &WorkerLocal| drop(p));
        }
        drop(q);
        assert_eq!(log.lock().unwrap().len(), 8);
    }

    #[test]
    fn many_producers_nothing_lost_or_duplicated() {
        let q = Arc::new(Inbound::new());
        let dropped = Arc::new(AtomicUsize::new(0));
        let producers = 4;
        let per = if cfg!(miri) { 50 } else { 20_000 };
        let hs: Vec<_> = (0..producers)
            .map(|_| {
                let (q, d) = (q.clone(), dropped.clone());
                std::thread::spawn(move || {
                    for _ in 0..per {
                        struct Count(Arc<AtomicUsize>);
                        impl Drop for Count {
                            fn drop(&mut self) {
                                self.0.fetch_add(1, SeqCst);
                            }
                        }
                        let c = Count(d.clone());
                        q.push(move |_w: &WorkerLocal| drop(c));
                    }
                })
            })
            .collect();
        let mut popped = 0;
        while popped < producers * per {
            popped += drain(&q);
        }
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(popped, producers * per);
        assert_eq!(dropped.load(SeqCst), producers * per);
        assert_eq!(drain(&q), 0);
    }
}
