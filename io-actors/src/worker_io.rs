//! A worker's I/O: its reactor and the table that routes completions to the actors that
//! submitted the operations.
//!
//! The driver factory [`io_driver`] builds the reactor on the worker thread, wraps it in an
//! `IoDriver` whose completion handler looks the token up and hands the completion to the
//! owning actor on the same worker with `send_now`: an idle actor handles it on the spot, in
//! a turn of its own, with no mailbox or run-queue hop (one behind other messages gets it in
//! order after them). It stores the [`WorkerIo`] as a worker extension so actors on that
//! worker can submit operations.

use std::cell::{RefCell, RefMut};
use std::rc::Rc;

use sinew_actors::{Driver, DriverError, Recipient};
use sinew_transports::{Backend, Completion, IoDriver, Reactor, Token};

/// The I/O half of a worker, reached from actors with `ctx.extension::<WorkerIo>()`.
pub struct WorkerIo {
    reactor: Rc<RefCell<Reactor>>,
    routes: Rc<Routes>,
}

impl std::fmt::Debug for WorkerIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerIo")
            .field("routes", &self.routes.len())
            .finish()
    }
}

impl WorkerIo {
    /// The worker's reactor, to submit operations. Borrow it briefly: never across a send to
    /// another actor's handler (actor turns and completion handling never overlap, so a short
    /// borrow inside a handler always succeeds).
    pub fn reactor(&self) -> RefMut<'_, Reactor> {
        self.reactor.borrow_mut()
    }

    /// Routes completions of operations submitted with the returned token to `to`.
    pub fn register(&self, to: Recipient<Completion>) -> Token {
        self.routes.insert(to)
    }

    /// Stops routing `token` (completions that still arrive for it are dropped, freeing their
    /// buffers).
    pub fn unregister(&self, token: Token) {
        self.routes.remove(token);
    }

    /// Routes registered on this worker.
    pub fn routes(&self) -> usize {
        self.routes.len()
    }

    /// A worker's I/O over `reactor` that no worker parks in: the caller polls it with
    /// [`WorkerIo::dispatch_ready`] and installs it (`sinew_actors::set_worker_extension`)
    /// while the actors that use it run. A simulation harness builds one per simulated host
    /// over [`SimNet::reactor`](sinew_transports::SimNet::reactor).
    pub fn detached(reactor: Reactor) -> WorkerIo {
        WorkerIo {
            reactor: Rc::new(RefCell::new(reactor)),
            routes: Rc::new(Routes::default()),
        }
    }

    /// Polls the reactor without waiting and routes every completion to the actor that
    /// registered its token, as a worker's driver does (call it on the worker those actors
    /// live on, so the deliveries are local). Returns how many completions were routed or
    /// dropped.
    pub fn dispatch_ready(&self) -> sinew_transports::Result<usize> {
        let mut ready = Vec::new();
        // Release the reactor before delivering: nothing may find it borrowed.
        self.reactor
            .borrow_mut()
            .poll(&mut ready, Some(std::time::Duration::ZERO))?;
        let n = ready.len();
        for c in ready {
            self.routes.dispatch(c);
        }
        Ok(n)
    }
}

/// Where a token's completions go.
type Route = Rc<Recipient<Completion>>;

/// Token -> recipient, with generations so a stale token never reaches a newer registration.
///
/// Recipients sit behind an `Rc`: a completion holds its route for the length of its delivery
/// (the table is not borrowed then: the actor may run on the spot and register or unregister),
/// and an `Rc` clone is a plain increment where cloning the `Recipient` is an atomic one.
#[derive(Default)]
struct Routes {
    slots: RefCell<Vec<(u32, Option<Route>)>>,
    free: RefCell<Vec<u32>>,
}

impl Routes {
    fn insert(&self, r: Recipient<Completion>) -> Token {
        let mut slots = self.slots.borrow_mut();
        let index = match self.free.borrow_mut().pop() {
            Some(i) => i,
            None => {
                slots.push((0, None));
                (slots.len() - 1) as u32
            }
        };
        let slot = &mut slots[index as usize];
        slot.0 = slot.0.wrapping_add(1);
        slot.1 = Some(Rc::new(r));
        Token((u64::from(slot.0) << 32) | u64::from(index))
    }

    fn remove(&self, t: Token) {
        let (gen, index) = ((t.0 >> 32) as u32, t.0 as u32);
        let mut slots = self.slots.borrow_mut();
        if let Some(slot) = slots.get_mut(index as usize) {
            if slot.0 == gen && slot.1.take().is_some() {
                self.free.borrow_mut().push(index);
            }
        }
    }

    fn get(&self, t: Token) -> Option<Route> {
        let (gen, index) = ((t.0 >> 32) as u32, t.0 as u32);
        let slots = self.slots.borrow();
        slots
            .get(index as usize)
            .filter(|s| s.0 == gen)
            .and_then(|s| s.1.clone())
    }

    fn len(&self) -> usize {
        self.slots.borrow().iter().filter(|s| s.1.is_some()).count()
    }

    /// Delivers a completion to the actor that submitted its operation: handled on the spot
    /// when the worker's driver is handing it out and the actor is idle (no mailbox hop),
    /// else queued behind the actor's other messages.
    fn dispatch(&self, c: Completion) {
        match self.get(c.token) {
            // A completion answers an operation the actor submitted: it bypasses capacity
            // like a reply, so no buffer is ever lost to back-pressure.
            Some(to) => {
                if let Err(e) = to.send_now(c) {
                    tracing::debug!(error = %e, "completion for a stopped actor dropped");
                }
            }
            None => {
                tracing::debug!(token = ?c.token, event = ?c.event, "completion without a route dropped")
            }
        }
    }
}

/// A driver factory for `SystemBuilder::try_driver`: each worker gets its own reactor of
/// `backend`, parks in it, and routes its completions to actors.
pub fn io_driver(
    backend: Backend,
) -> impl Fn(usize) -> Result<Box<dyn Driver>, DriverError> + Send + Sync {
    move |worker| {
        let reactor = Reactor::new(backend)?;
        let routes = Rc::new(Routes::default());
        let r = routes.clone();
        let driver = IoDriver::new(reactor, move |_: &RefCell<Reactor>, c: Completion| {
            r.dispatch(c)
        });
        let io = WorkerIo {
            reactor: driver.reactor(),
            routes,
        };
        sinew_actors::set_worker_extension(Rc::new(io));
        tracing::debug!(worker, backend = %backend, "worker I/O ready");
        Ok(Box::new(driver) as Box<dyn Driver>)
    }
}
