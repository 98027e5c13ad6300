//! # sinew-actors
//!
//! The actor runtime of Sinew: actors with one typed mailbox each, addresses, one-shot reply
//! addresses, worker threads with local run queues, timers, a worker-local executor, a registry
//! and routers, and a deterministic mode for tests.
//!
//! - An [`Actor`] has one message type; its synchronous [`Actor::handle`] runs on the actor's home
//!   worker. A panic stops only that actor ([`ExitReason::Panicked`]); watchers are told.
//! - [`Addr<A>`] sends: [`Addr::try_send`] (fails with the message when full), async
//!   [`Addr::send`] (waits for room), [`Addr::ask`] (request and reply).
//! - [`ReplyTo<T>`] answers exactly once: by a value, or by an error when dropped or when the
//!   deadline it carries passes. Correlation is the reply address itself.
//! - Mailboxes are bounded ([`MailboxConfig`]); system signals travel on a separate priority path,
//!   so a full mailbox never blocks supervision.
//! - Workers park in a [`Driver`]; the transports crate supplies io_uring and epoll drivers.
//!
//! ```
//! use sinew_actors::{Actor, Context, ReplyTo, System};
//!
//! struct Counter(u64);
//!
//! enum Msg {
//!     Add(u64),
//!     Get(ReplyTo<u64>),
//! }
//!
//! impl Actor for Counter {
//!     type Msg = Msg;
//!     fn handle(&mut self, msg: Msg, _ctx: &mut Context<Self>) {
//!         match msg {
//!             Msg::Add(n) => self.0 += n,
//!             Msg::Get(reply) => {
//!                 reply.send(self.0);
//!             }
//!         }
//!     }
//! }
//!
//! let system = System::builder().workers(2).build().unwrap();
//! let counter = system.spawn(Counter(0)).unwrap();
//! counter.try_send(Msg::Add(2)).unwrap();
//! counter.try_send(Msg::Add(3)).unwrap();
//! let total = futures::executor::block_on(counter.ask(Msg::Get)).unwrap();
//! assert_eq!(total, 5);
//! assert!(system.shutdown(std::time::Duration::from_secs(1)).clean);
//! ```

mod actor;
mod addr;
mod cell;
mod context;
mod deterministic;
mod driver;
mod error;
mod extension;
mod fault;
mod group;
mod inbound;
mod mailbox;
mod metrics;
mod park;
mod registry;
mod reply;
mod reply_board;
mod rng;
mod spin;
mod sync;
mod system;
mod timer;
mod worker;

#[cfg(all(test, loom))]
mod loom_tests;

pub use actor::{Actor, ActorId, ExitReason, Terminated};
pub use addr::{ActorRef, Addr, Recipient, SendFuture};
pub use context::Context;
pub use deterministic::{Deadlock, DeterministicSystem};
pub use driver::{Driver, DriverError, DriverFactory, ThreadParkDriver, Unpark};
pub use error::{RegistryError, ReplyError, SendError, SpawnError, SystemError};
pub use extension::{remove_worker_extension, set_worker_extension, worker_extension};
pub use fault::{buggify, Delivery, FaultHook};
pub use group::{Group, Router, Strategy};
pub use mailbox::{MailboxConfig, Overflow};
pub use metrics::{ActorMetrics, SystemMetrics, WorkerMetrics};
pub use reply::{ReplyChannel, ReplyFuture, ReplyTo};
pub use reply_board::{Posted, ReplyBoard};
pub use rng::SplitMix64;
pub use system::{
    Placement, ShutdownReport, SpawnOptions, System, SystemBuilder, SystemHandle, BATCH_ENV,
    DEFAULT_BATCH, DEFAULT_SPIN, SPIN_ENV,
};
pub use timer::TimerHandle;
pub use worker::TraceEvent;
