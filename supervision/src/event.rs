//! Supervision events: what a supervisor did, as typed values, traced and observable.

use std::sync::Arc;
use std::time::Duration;

use sinew_actors::{ActorId, ExitReason, Recipient};

use crate::spec::StartError;

/// Something a supervisor did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SupervisionEvent {
    /// A child (an incarnation of it) started.
    ChildStarted {
        /// The supervisor.
        supervisor: ActorId,
        /// The child's spec id.
        child: String,
        /// The new incarnation.
        actor: ActorId,
    },
    /// A child exited.
    ChildExited {
        /// The supervisor.
        supervisor: ActorId,
        /// The child's spec id.
        child: String,
        /// The incarnation that exited.
        actor: ActorId,
        /// Why.
        reason: ExitReason,
    },
    /// A child will be restarted after `delay` (its `attempt`-th consecutive restart).
    ChildRestarting {
        /// The supervisor.
        supervisor: ActorId,
        /// The child's spec id.
        child: String,
        /// Consecutive restarts so far (reset after a stable period).
        attempt: u32,
        /// Backoff before the restart.
        delay: Duration,
    },
    /// A child's factory failed (handled like a crash).
    StartFailed {
        /// The supervisor.
        supervisor: ActorId,
        /// The child's spec id.
        child: String,
        /// The error.
        error: StartError,
    },
    /// More restarts than the intensity allows: the supervisor stops its children.
    IntensityExceeded {
        /// The supervisor.
        supervisor: ActorId,
        /// Restarts counted in the window.
        restarts: usize,
        /// The window.
        within: Duration,
    },
    /// The supervisor stopped its children and exits, escalating to its parent (or, for the
    /// root, stopping the system).
    Escalated {
        /// The supervisor.
        supervisor: ActorId,
        /// Its name.
        name: String,
        /// Its exit reason (`RestartIntensity`).
        reason: ExitReason,
    },
}

/// Receives supervision events. Called on the supervisor's worker: keep it short.
pub trait Observer: Send + Sync + 'static {
    /// One event.
    fn on_event(&self, event: &SupervisionEvent);
}

impl<F: Fn(&SupervisionEvent) + Send + Sync + 'static> Observer for F {
    fn on_event(&self, event: &SupervisionEvent) {
        self(event)
    }
}

/// Forwards events to an actor (dropped when its mailbox is full: observing never blocks
/// supervision).
pub struct RecipientObserver(pub Recipient<SupervisionEvent>);

impl Observer for RecipientObserver {
    fn on_event(&self, event: &SupervisionEvent) {
        let _ = self.0.try_send(event.clone());
    }
}

pub(crate) type Observers = Vec<Arc<dyn Observer>>;
