//! The actor core's `Driver` over a [`Reactor`]: a worker parks in io_uring or epoll, and
//! completions are handled on the worker with no queue hop.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use sinew_actors::{Driver, Unpark};

use crate::completion::Completion;
use crate::reactor::Reactor;

/// Handles one completion; gets the reactor so it can submit follow-up operations at once.
///
/// The reactor is not borrowed while handlers run (borrow it for each submission): a handler
/// may run an actor's turn on the spot, and that actor submits through the same reactor.
pub type CompletionHandler = Box<dyn FnMut(&RefCell<Reactor>, Completion)>;

/// A [`Driver`] that parks a worker in its [`Reactor`] and feeds completions to a handler.
///
/// Built on the worker thread by the system's driver factory. Code on the same worker reaches
/// the reactor through [`IoDriver::reactor`] (outside the handler: the handler already gets
/// `&mut Reactor`).
pub struct IoDriver {
    reactor: Rc<RefCell<Reactor>>,
    handler: CompletionHandler,
    unparker: Arc<dyn Unpark>,
    scratch: Vec<Completion>,
}

impl IoDriver {
    /// A driver over `reactor` that passes every completion to `handler`.
    pub fn new(
        reactor: Reactor,
        handler: impl FnMut(&RefCell<Reactor>, Completion) + 'static,
    ) -> Self {
        let unparker = reactor.unparker();
        IoDriver {
            reactor: Rc::new(RefCell::new(reactor)),
            handler: Box::new(handler),
            unparker,
            scratch: Vec::with_capacity(256),
        }
    }

    /// The shared reactor, for code running on this worker between driver turns.
    pub fn reactor(&self) -> Rc<RefCell<Reactor>> {
        self.reactor.clone()
    }

    /// Polls once and dispatches; true if any completion was handled.
    fn turn(&mut self, timeout: Option<Duration>) -> bool {
        let mut ready = std::mem::take(&mut self.scratch);
        // Re-entered from inside a handler (the reactor is borrowed): nothing to do here.
        if let Ok(mut reactor) = self.reactor.try_borrow_mut() {
            if let Err(e) = reactor.poll(&mut ready, timeout) {
                tracing::error!(error = %e, backend = %reactor.backend(), "reactor poll failed");
            }
        }
        // Released before the handlers run: each may run an actor's turn, which submits.
        let handled = !ready.is_empty();
        for completion in ready.drain(..) {
            (self.handler)(&self.reactor, completion);
        }
        self.scratch = ready;
        handled
    }
}

impl Driver for IoDriver {
    fn park(&mut self, timeout: Option<Duration>) {
        self.turn(timeout);
    }

    fn poll(&mut self) -> bool {
        self.turn(Some(Duration::ZERO))
    }

    fn unparker(&self) -> Arc<dyn Unpark> {
        self.unparker.clone()
    }
}

impl std::fmt::Debug for IoDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoDriver")
            .field("reactor", &self.reactor)
            .finish_non_exhaustive()
    }
}
