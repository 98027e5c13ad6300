//! One actor timer that follows a sans-I/O codec's next deadline (`next_timeout`): re-armed
//! only when the deadline moves earlier.
//!
//! Keep-alive and header timeouts move later with every request, and re-arming a timer per
//! request (cancel, box a closure, insert into the wheel) cost ~700 instructions of an
//! unpipelined HTTP request. So a timer that fires no later than the new deadline is kept:
//! when it fires early the codec finds nothing due (codecs compare deadlines with `now`)
//! and the owner syncs again, arming the later deadline then.

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
        match (self.0.as_ref(), next) {
            (Some((armed, _)), Some(t)) if *armed <= t => return,
            // No deadline for now (a request is being answered): the armed timer stays, as
            // the next one (keep-alive) will be later still; if it fires first, it is a no-op.
            (_, None) => return,
            _ => {}
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
