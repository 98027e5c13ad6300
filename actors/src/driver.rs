//! The driver a worker parks in.
//!
//! The actor core knows nothing about sockets: a worker with nothing to run asks its driver to
//! wait for "something" (I/O completions, a timer deadline, or a wake from another thread) and
//! the driver returns when it happened. The default driver parks the thread; the transports crate
//! plugs io_uring and epoll in here, processing completions inside [`Driver::park`] and
//! [`Driver::poll`], so completion handling runs on the worker with no queue hop.

use std::sync::Arc;
use std::thread::Thread;
use std::time::Duration;

/// Wakes a parked driver from any thread. Must be cheap and idempotent; a wake that arrives
/// before the park makes the next park return at once (no lost wake-ups).
pub trait Unpark: Send + Sync + 'static {
    /// Makes the driver's current or next `park` return.
    fn unpark(&self);
}

/// What a worker waits in. One per worker, owned by the worker thread.
pub trait Driver: 'static {
    /// Blocks until woken through the [`Unpark`] handle, until `timeout` elapses, or until the
    /// driver has work of its own (completions) it processed. `None` waits indefinitely.
    fn park(&mut self, timeout: Option<Duration>);

    /// Processes whatever is ready without blocking; called once per worker loop turn.
    fn poll(&mut self) -> bool {
        false
    }

    /// A handle that wakes this driver from other threads.
    fn unparker(&self) -> Arc<dyn Unpark>;
}

/// Why a driver could not be built (an io_uring the kernel refused, no descriptors left...).
pub type DriverError = Box<dyn std::error::Error + Send + Sync>;

/// Builds a driver for worker `index`. Called on the worker thread itself, so thread-bound
/// resources (an io_uring with SINGLE_ISSUER) are created where they are used. A failure makes
/// `SystemBuilder::build` return `SystemError::Driver`.
pub type DriverFactory = Arc<dyn Fn(usize) -> Result<Box<dyn Driver>, DriverError> + Send + Sync>;

/// The default driver: `std::thread::park_timeout` and `Thread::unpark`.
pub struct ThreadParkDriver {
    unparker: Arc<ThreadUnpark>,
}

struct ThreadUnpark(Thread);

impl Unpark for ThreadUnpark {
    fn unpark(&self) {
        self.0.unpark();
    }
}

impl ThreadParkDriver {
    /// A driver for the calling thread.
    pub fn new() -> Self {
        ThreadParkDriver {
            unparker: Arc::new(ThreadUnpark(std::thread::current())),
        }
    }
}

impl Default for ThreadParkDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl Driver for ThreadParkDriver {
    fn park(&mut self, timeout: Option<Duration>) {
        match timeout {
            Some(t) => std::thread::park_timeout(t),
            None => std::thread::park(),
        }
    }

    fn unparker(&self) -> Arc<dyn Unpark> {
        self.unparker.clone()
    }
}

/// A driver that never blocks: deterministic mode steps the system itself.
pub(crate) struct NoopUnpark;

impl Unpark for NoopUnpark {
    fn unpark(&self) {}
}
