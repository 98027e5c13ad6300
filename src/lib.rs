//! # Sinew
//!
//! A supervised actor-system framework for high-performance networked services. Application
//! logic and network I/O are both actors with typed, bounded mailboxes; I/O actors own
//! connections and drive sans-I/O protocol codecs; supervisors own restarts, pools and circuit
//! breakers; a request's reply address is its correlation.
//!
//! This facade re-exports the member crates behind cargo features:
//!
//! | module | crate | feature |
//! |---|---|---|
//! | [`actors`] (and the [`prelude`]) | `sinew-actors` | always |
//! | `supervision` | `sinew-supervision` | `supervision` |
//! | `transports` | `sinew-transports` | `transports` |
//! | `protocols` | `sinew-protocols` | `protocols` |
//! | `io_actors` | `sinew-io-actors` | `io-actors` |
//! | [`testkit`] | deterministic simulation and fault injection | always |
//! | `redis` | a Redis-compatible server built from the parts above | `io-actors` |
//!
//! ```
//! use sinew::prelude::*;
//!
//! struct Greeter;
//!
//! impl Actor for Greeter {
//!     type Msg = (String, ReplyTo<String>);
//!     fn handle(&mut self, (name, reply): Self::Msg, _ctx: &mut Context<Self>) {
//!         reply.send(format!("hello, {name}"));
//!     }
//! }
//!
//! let system = System::builder().workers(1).build().unwrap();
//! let greeter = system.spawn(Greeter).unwrap();
//! let answer = futures::executor::block_on(greeter.ask(|r| ("sinew".to_string(), r))).unwrap();
//! assert_eq!(answer, "hello, sinew");
//! ```

pub use sinew_actors as actors;
#[cfg(feature = "io-actors")]
pub use sinew_io_actors as io_actors;
#[cfg(feature = "protocols")]
pub use sinew_protocols as protocols;
#[cfg(feature = "supervision")]
pub use sinew_supervision as supervision;
#[cfg(feature = "transports")]
pub use sinew_transports as transports;

#[cfg(feature = "io-actors")]
pub mod redis;
pub mod testkit;

/// The names most programs need.
pub mod prelude {
    pub use sinew_actors::{
        Actor, ActorId, ActorRef, Addr, Context, ExitReason, MailboxConfig, Overflow, Placement,
        Recipient, ReplyError, ReplyTo, SendError, SpawnOptions, System, SystemHandle, Terminated,
    };
}

/// The README's examples compile and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
