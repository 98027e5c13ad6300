//! Fault-injection hooks of deterministic mode, and `buggify`.
//!
//! A simulation installs a [`FaultHook`] on its `DeterministicSystem`; every delivery of a
//! message to an actor asks it what to do (deliver, drop, delay, duplicate, or crash the
//! receiver). Real systems never consult it. `sinew::testkit` builds fault plans on this.

use std::any::Any;
use std::time::Duration;

use crate::actor::ActorId;
use crate::worker::with_current;

/// What happens to one delivery.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Deliver normally.
    Deliver,
    /// Lose the message (its reply address, if any, answers with `ReplyError::Dropped`).
    Drop,
    /// Deliver it after this much virtual time (later messages may overtake it).
    Delay(Duration),
    /// Deliver it twice (only for actors whose messages the hook can clone).
    Duplicate,
    /// Crash the receiver instead: the message is lost and the actor stops with
    /// `ExitReason::Panicked("injected fault")`, as if its handler had panicked.
    Crash,
}

/// Decides deliveries in a deterministic system.
pub trait FaultHook: 'static {
    /// Called for every message about to enter `to`'s mailbox, at virtual time `now_ms`.
    fn on_deliver(&mut self, to: ActorId, now_ms: u64) -> Delivery;

    /// Clones a message for [`Delivery::Duplicate`]; `None` when it cannot (the message is then
    /// delivered once).
    fn clone_message(&self, _to: ActorId, _msg: &dyn Any) -> Option<Box<dyn Any>> {
        None
    }
}

/// A fault point: true with probability `p`, drawn from the simulation's seeded generator, and
/// only when running inside a deterministic system with buggify enabled; always false in real
/// systems. Framework and user code mark rare paths with it so simulations exercise them
/// (FoundationDB's BUGGIFY).
#[inline]
pub fn buggify(p: f64) -> bool {
    with_current(|w| w.is_some_and(|w| w.buggify(p)))
}
