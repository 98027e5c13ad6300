//! # sinew-supervision
//!
//! Supervision trees for Sinew: supervisors are actors, as in Erlang/OTP.
//!
//! - [`ChildSpec`]: plain data (id, a factory called on every start, [`Restart`] type,
//!   [`Shutdown`], [`ChildKind`]). Start failures are handled like crashes.
//! - [`Strategy`]: one-for-one, one-for-all, rest-for-one, and simple-one-for-one for dynamic
//!   children (e.g. one per connection).
//! - [`Intensity`]: at most N restarts in a sliding window (OTP's default: 1 in 5 s); one more
//!   and the supervisor stops its children right to left and exits with
//!   `ExitReason::RestartIntensity`, escalating to its parent; a root supervisor then stops the
//!   system with that reason.
//! - [`Backoff`]: exponential with jitter between restarts, reset after a stable period; timed
//!   on the actor clock, so it runs in virtual time in deterministic mode.
//! - [`StableAddr`]: a handle that keeps working across restarts; while the child is down,
//!   messages are held in a bounded buffer or refused ([`DownPolicy`]). Requests queued in a
//!   crashed incarnation fail at once with `ReplyError::Dropped`.
//! - [`SupervisionEvent`]s are traced and delivered to [`Observer`]s.
//! - Policies can come from configuration ([`SupervisorConfig`], TOML).
//!
//! [`resilience`] holds the policies pool supervisors apply: circuit breakers, retries with
//! budgets, rate and concurrency limits, load balancing with outlier ejection, discovery.
//!
//! Links and monitors are the core's (`Context::link`, `Context::watch`), with typed
//! `ExitReason`s.
//!
//! ```
//! use std::time::Duration;
//! use sinew_actors::{Actor, Context, DeterministicSystem};
//! use sinew_supervision::{ChildSpec, DownPolicy, Strategy, SupervisorBuilder};
//!
//! struct Worker;
//! impl Actor for Worker {
//!     type Msg = bool;
//!     fn handle(&mut self, crash: bool, _ctx: &mut Context<Self>) {
//!         assert!(!crash, "injected crash");
//!     }
//! }
//!
//! let sim = DeterministicSystem::new(1);
//! let (spec, worker) = ChildSpec::with_addr("worker", || Worker, DownPolicy::Hold(16));
//! let tree = SupervisorBuilder::new("app")
//!     .strategy(Strategy::OneForOne)
//!     .intensity(3, Duration::from_secs(5))
//!     .child(spec);
//! sim.spawn(tree.build_root()).unwrap();
//! sim.run_until_idle();
//! let first = worker.current().unwrap().id();
//! worker.try_send(true).unwrap(); // crash it
//! sim.run_until_idle();
//! assert_ne!(worker.current().unwrap().id(), first); // restarted; the stable address follows
//! ```

mod backoff;
mod config;
mod event;
mod intensity;
pub mod resilience;
mod spec;
mod stable;
mod supervisor;

pub use backoff::Backoff;
pub use config::{ChildConfig, ConfigError, SupervisorConfig};
pub use event::{Observer, RecipientObserver, SupervisionEvent};
pub use intensity::Intensity;
pub use spec::{ChildKind, ChildSpec, Restart, Shutdown, StartCtx, StartError};
pub use stable::{DownPolicy, StableAddr, StableSendError};
pub use supervisor::{
    ChildInfo, Strategy, Supervisor, SupervisorBuilder, SupervisorMsg, SupervisorRef,
};
