//! Stable addresses: a handle to a supervised child that keeps working across restarts.
//!
//! The handle caches the current incarnation's `Addr` and a generation number; a send checks the
//! generation with one relaxed load (no lock, no read-modify-write) and goes straight to the
//! mailbox. Only when the child was restarted, or is down, does it take the slow path through
//! the shared state, where messages are held in a bounded buffer or refused, by policy.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sinew_actors::{Actor, Addr, ReplyError, ReplyTo, SendError};

/// What happens to messages for a child that is down (between a crash and its restart).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DownPolicy {
    /// Refuse them at once with [`StableSendError::Down`].
    FailFast,
    /// Hold up to this many, in order, and deliver them to the next incarnation (at most its
    /// mailbox capacity is delivered; the rest are dropped, answering their reply addresses
    /// with an error). Beyond the bound, sends fail with [`StableSendError::Full`].
    Hold(usize),
}

/// Why a message to a stable address was not accepted.
#[derive(thiserror::Error)]
pub enum StableSendError<M> {
    /// The child is down and the policy is fail-fast (transient: it may come back).
    #[error("child is down")]
    Down(M),
    /// The mailbox, or the hold buffer while the child is down, is full (transient).
    #[error("child mailbox or hold buffer full")]
    Full(M),
    /// The child will not run again: its supervisor stopped or it is not restarted (fatal).
    #[error("child is gone for good")]
    Gone(M),
}

impl<M> StableSendError<M> {
    /// The message that was not accepted.
    pub fn into_inner(self) -> M {
        match self {
            StableSendError::Down(m) | StableSendError::Full(m) | StableSendError::Gone(m) => m,
        }
    }

    /// True when retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, StableSendError::Gone(_))
    }
}

impl<M> std::fmt::Debug for StableSendError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            StableSendError::Down(_) => "Down(..)",
            StableSendError::Full(_) => "Full(..)",
            StableSendError::Gone(_) => "Gone(..)",
        };
        f.write_str(s)
    }
}

struct State<A: Actor> {
    current: Option<Addr<A>>,
    held: VecDeque<A::Msg>,
    retired: bool,
}

pub(crate) struct StableShared<A: Actor> {
    gen: AtomicU64,
    policy: DownPolicy,
    state: Mutex<State<A>>,
}

impl<A: Actor> StableShared<A> {
    pub(crate) fn new(policy: DownPolicy) -> Arc<Self> {
        Arc::new(StableShared {
            gen: AtomicU64::new(0),
            policy,
            state: Mutex::new(State {
                current: None,
                held: VecDeque::new(),
                retired: false,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<A>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new incarnation runs: route to it and hand it what was held, in order.
    pub(crate) fn attach(&self, addr: Addr<A>) {
        let mut st = self.lock();
        // Under the lock, so no sender can slip a message in ahead of the held ones.
        while let Some(m) = st.held.pop_front() {
            if let Err(e) = addr.try_send(m) {
                tracing::warn!(error = %e, "stable address: held message dropped on restart");
            }
        }
        st.current = Some(addr);
        st.retired = false;
        self.gen.fetch_add(1, Ordering::Release);
    }

    /// The incarnation is gone; a restart may follow.
    pub(crate) fn detach(&self) {
        let mut st = self.lock();
        st.current = None;
        self.gen.fetch_add(1, Ordering::Release);
    }

    /// No restart will follow: refuse everything from now on, and fail what was held.
    pub(crate) fn retire(&self) {
        let held = {
            let mut st = self.lock();
            st.current = None;
            st.retired = true;
            self.gen.fetch_add(1, Ordering::Release);
            std::mem::take(&mut st.held)
        };
        drop(held);
    }
}

/// A handle to a supervised child that survives its restarts. Clone it per holder (the cache
/// that makes sends lock-free is per handle, so the handle is `Send` but not `Sync`).
pub struct StableAddr<A: Actor> {
    shared: Arc<StableShared<A>>,
    cache: RefCell<Option<(u64, Addr<A>)>>,
}

impl<A: Actor> Clone for StableAddr<A> {
    fn clone(&self) -> Self {
        StableAddr {
            shared: self.shared.clone(),
            cache: RefCell::new(self.cache.borrow().clone()),
        }
    }
}

impl<A: Actor> std::fmt::Debug for StableAddr<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StableAddr")
            .field("current", &self.current())
            .finish()
    }
}

impl<A: Actor> StableAddr<A> {
    pub(crate) fn new(shared: Arc<StableShared<A>>) -> Self {
        StableAddr {
            shared,
            cache: RefCell::new(None),
        }
    }

    /// The current incarnation, if the child is up.
    pub fn current(&self) -> Option<Addr<A>> {
        self.shared.lock().current.clone()
    }

    /// Sends to whichever incarnation is current; holds or refuses while the child is down.
    pub fn try_send(&self, msg: A::Msg) -> Result<(), StableSendError<A::Msg>> {
        let gen = self.shared.gen.load(Ordering::Acquire);
        let cached = match &*self.cache.borrow() {
            Some((g, addr)) if *g == gen => Some(addr.clone()),
            _ => None,
        };
        let msg = match cached {
            Some(addr) => match addr.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(SendError::Full(m)) => return Err(StableSendError::Full(m)),
                // The incarnation just died; the supervisor has not caught up yet.
                Err(SendError::Closed(m)) => m,
            },
            None => msg,
        };
        self.send_slow(msg)
    }

    fn send_slow(&self, msg: A::Msg) -> Result<(), StableSendError<A::Msg>> {
        let mut st = self.shared.lock();
        let gen = self.shared.gen.load(Ordering::Acquire);
        if let Some(addr) = st.current.clone() {
            *self.cache.borrow_mut() = Some((gen, addr.clone()));
            return match addr.try_send(msg) {
                Ok(()) => Ok(()),
                Err(SendError::Full(m)) => Err(StableSendError::Full(m)),
                Err(SendError::Closed(m)) => self.hold(&mut st, m),
            };
        }
        self.hold(&mut st, msg)
    }

    fn hold(&self, st: &mut State<A>, msg: A::Msg) -> Result<(), StableSendError<A::Msg>> {
        if st.retired {
            return Err(StableSendError::Gone(msg));
        }
        match self.shared.policy {
            DownPolicy::FailFast => Err(StableSendError::Down(msg)),
            DownPolicy::Hold(max) if st.held.len() < max => {
                st.held.push_back(msg);
                Ok(())
            }
            DownPolicy::Hold(_) => Err(StableSendError::Full(msg)),
        }
    }

    /// Sends a request and waits for the answer; a request held while the child is down is
    /// answered by the next incarnation.
    pub async fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(ReplyTo<T>) -> A::Msg,
    ) -> Result<T, ReplyError> {
        let (reply, fut) = ReplyTo::channel();
        match self.try_send(make(reply)) {
            Ok(()) => fut.await,
            Err(StableSendError::Gone(_)) => Err(ReplyError::Stopped),
            Err(_) => Err(ReplyError::MailboxFull),
        }
    }
}
