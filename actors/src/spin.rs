//! Whether an idle worker spins before it parks, learned from what ended its recent idle
//! periods.
//!
//! A spin pays when a message from another thread arrives during it: the sender then wakes
//! nothing (waking a parked vCPU costs ~22 us here). Work the driver brings (a socket became
//! readable) would have woken the park anyway, so a spin that ends in driver I/O, or runs out,
//! bought only CPU: a worker fed by its sockets alone stops spinning, and spends that CPU on
//! requests instead (measured on the HTTP server: ~0.5 us of user time per unpipelined
//! request). Every sixteenth idle period still spins, to notice when messages come back. A
//! worker with an actor waiting on a peer's answer over I/O (`Context::set_awaiting_io`: a
//! client with calls in flight) spins regardless: there the wake-up is paid on every round
//! trip, and it halves a single caller's rate.

use std::cell::Cell;

/// Spins left on credit: a message from another thread refills it, anything else uses one.
const FULL: u8 = 8;
/// Without credit, one idle period in this many spins anyway (a probe).
const PROBE_EVERY: u32 = 16;

/// The spin decision of one worker (thread-owned).
#[derive(Debug)]
pub(crate) struct SpinGate {
    adaptive: bool,
    credit: Cell<u8>,
    idle: Cell<u32>,
}

impl SpinGate {
    /// A gate that learns (`adaptive`), or one that always spins.
    pub(crate) fn new(adaptive: bool) -> Self {
        SpinGate {
            adaptive,
            credit: Cell::new(FULL),
            idle: Cell::new(0),
        }
    }

    /// Whether to spin in the idle period that starts now; `awaiting_io`: an actor on the
    /// worker waits on a peer's answer (a round trip), which a spin catches without a wake-up.
    pub(crate) fn should_spin(&self, awaiting_io: bool) -> bool {
        if !self.adaptive || awaiting_io || self.credit.get() > 0 {
            return true;
        }
        let n = self.idle.get().wrapping_add(1);
        self.idle.set(n);
        n % PROBE_EVERY == 0
    }

    /// A message from another thread ended the idle period (during a spin or a park).
    pub(crate) fn inbound(&self) {
        self.credit.set(FULL);
    }

    /// The spin ended with the driver's own work, or ran out.
    pub(crate) fn no_inbound(&self) {
        self.credit.set(self.credit.get().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_fed_by_its_driver_stops_spinning_and_probes() {
        let g = SpinGate::new(true);
        for _ in 0..FULL {
            assert!(g.should_spin(false));
            g.no_inbound();
        }
        let spins = (0..PROBE_EVERY * 4)
            .filter(|_| g.should_spin(false))
            .count();
        assert_eq!(spins, 4, "one probe per {PROBE_EVERY} idle periods");
    }

    /// An adaptive gate whose credit ran out: idle periods ended by nothing from other threads.
    fn spent() -> SpinGate {
        let g = SpinGate::new(true);
        for _ in 0..FULL {
            g.no_inbound();
        }
        g
    }

    #[test]
    fn a_message_from_another_thread_turns_spinning_back_on() {
        let g = spent();
        assert!(!g.should_spin(false));
        g.inbound();
        for _ in 0..FULL {
            assert!(g.should_spin(false));
            g.no_inbound();
        }
        assert!(!g.should_spin(false));
    }

    #[test]
    fn a_worker_awaiting_an_answer_spins_without_credit() {
        let g = spent();
        assert!(!g.should_spin(false));
        assert!(g.should_spin(true));
    }

    #[test]
    fn a_fixed_gate_always_spins() {
        let g = SpinGate::new(false);
        for _ in 0..100 {
            g.no_inbound();
            assert!(g.should_spin(false));
        }
    }
}
