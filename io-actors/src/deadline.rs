//! One actor timer that follows a sans-I/O codec's next deadline (`next_timeout`): re-armed
//! only when the deadline moves, cancelled when it goes away.

use std::time::Instant;

use sinew_actors::{Actor, Context, TimerHandle};

#[derive(Default)]
pub(crate) struct Deadline(Option<(Instant, TimerHandle)>);

impl Deadline {
    /// Arms the timer for `next` (sending `msg()` when it fires), replacing a different one.
    pub(crate) fn sync<A: Actor>(
        &mut self,
        ctx: &mut Context<A>,
        next: Option<Instant>,
        now: Instant,
        msg: impl FnOnce() -> A::Msg,
    ) {
        if self.0.as_ref().map(|(t, _)| *t) == next {
            return;
        }
        if let Some((_, h)) = self.0.take() {
            h.cancel();
        }
        if let Some(t) = next {
            self.0 = Some((t, ctx.send_after(t.saturating_duration_since(now), msg())));
        }
    }

    /// The timer fired: nothing is armed any more.
    pub(crate) fn fired(&mut self) {
        self.0 = None;
    }
}
