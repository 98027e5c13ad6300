//! Fault plans: what to break, where, and how often, decided by the run's seed.

use std::any::Any;
use std::collections::HashMap;
use std::time::Duration;

use sinew_actors::{Actor, ActorId, Addr, Delivery, FaultHook};

use super::rng::SimRng;

/// Which actors a rule applies to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every actor.
    Any,
    /// One actor.
    Actor(ActorId),
}

impl Target {
    fn matches(self, id: ActorId) -> bool {
        match self {
            Target::Any => true,
            Target::Actor(a) => a == id,
        }
    }
}

#[derive(Clone, Debug)]
enum Rule {
    CrashOnMessage {
        target: ActorId,
        nth: u64,
    },
    Drop {
        target: Target,
        p: f64,
    },
    Delay {
        target: Target,
        p: f64,
        max: Duration,
    },
    Duplicate {
        target: ActorId,
        p: f64,
    },
}

type Cloner = Box<dyn Fn(&dyn Any) -> Option<Box<dyn Any>>>;

/// Message faults for one simulation run. Probabilities are drawn from the run's seeded
/// generator, so a seed replays the same faults.
pub struct FaultPlan {
    rules: Vec<Rule>,
    delivered: HashMap<ActorId, u64>,
    cloners: HashMap<ActorId, Cloner>,
    rng: SimRng,
    injected: u64,
}

impl std::fmt::Debug for FaultPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultPlan")
            .field("rules", &self.rules)
            .field("injected", &self.injected)
            .finish()
    }
}

impl FaultPlan {
    pub(crate) fn new(seed: u64) -> Self {
        FaultPlan {
            rules: Vec::new(),
            delivered: HashMap::new(),
            cloners: HashMap::new(),
            // A stream separate from the scheduler's, so adding a rule does not reshuffle
            // the schedule of unrelated actors.
            rng: SimRng::new(seed ^ 0xFA17_FA17_FA17_FA17),
            injected: 0,
        }
    }

    /// Crashes `target` on its `nth` delivered message (1-based): that message is lost and the
    /// actor stops with `ExitReason::Panicked`, as if its handler had panicked.
    pub fn crash_on_message(&mut self, target: ActorId, nth: u64) -> &mut Self {
        self.rules.push(Rule::CrashOnMessage { target, nth });
        self
    }

    /// Loses messages to `target` with probability `p`.
    pub fn drop_messages(&mut self, target: Target, p: f64) -> &mut Self {
        self.rules.push(Rule::Drop { target, p });
        self
    }

    /// Delays messages to `target` with probability `p` by up to `max` (uniform), which also
    /// reorders them against later messages.
    pub fn delay_messages(&mut self, target: Target, p: f64, max: Duration) -> &mut Self {
        self.rules.push(Rule::Delay { target, p, max });
        self
    }

    /// Delivers messages to `addr` twice with probability `p` (its messages must be `Clone`).
    pub fn duplicate_messages<A>(&mut self, addr: &Addr<A>, p: f64) -> &mut Self
    where
        A: Actor,
        A::Msg: Clone,
    {
        let id = addr.id();
        self.cloners.insert(
            id,
            Box::new(|m: &dyn Any| {
                m.downcast_ref::<A::Msg>()
                    .map(|m| Box::new(m.clone()) as Box<dyn Any>)
            }),
        );
        self.rules.push(Rule::Duplicate { target: id, p });
        self
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected
    }
}

impl FaultHook for FaultPlan {
    fn on_deliver(&mut self, to: ActorId, _now_ms: u64) -> Delivery {
        let n = {
            let c = self.delivered.entry(to).or_insert(0);
            *c += 1;
            *c
        };
        for rule in &self.rules {
            let decision = match *rule {
                Rule::CrashOnMessage { target, nth } if target == to && nth == n => {
                    Some(Delivery::Crash)
                }
                Rule::Drop { target, p } if target.matches(to) && self.rng.chance(p) => {
                    Some(Delivery::Drop)
                }
                Rule::Delay { target, p, max } if target.matches(to) && self.rng.chance(p) => {
                    let ms = self.rng.below(max.as_millis().max(1) as u64) + 1;
                    Some(Delivery::Delay(Duration::from_millis(ms)))
                }
                Rule::Duplicate { target, p } if target == to && self.rng.chance(p) => {
                    Some(Delivery::Duplicate)
                }
                _ => None,
            };
            if let Some(d) = decision {
                self.injected += 1;
                tracing::debug!(actor = %to, nth = n, fault = ?d, "fault injected");
                return d;
            }
        }
        Delivery::Deliver
    }

    fn clone_message(&self, to: ActorId, msg: &dyn Any) -> Option<Box<dyn Any>> {
        self.cloners.get(&to).and_then(|c| c(msg))
    }
}

/// Shares one plan between the run (which adds rules) and the system (which consults it).
pub(crate) struct SharedPlan(pub(crate) std::rc::Rc<std::cell::RefCell<FaultPlan>>);

impl FaultHook for SharedPlan {
    fn on_deliver(&mut self, to: ActorId, now_ms: u64) -> Delivery {
        self.0.borrow_mut().on_deliver(to, now_ms)
    }

    fn clone_message(&self, to: ActorId, msg: &dyn Any) -> Option<Box<dyn Any>> {
        self.0.borrow().clone_message(to, msg)
    }
}
