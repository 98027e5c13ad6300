//! The complete example of docs/TESTING.md, kept compiling and passing.

use std::time::Duration;

use sinew::prelude::*;
use sinew::supervision::{ChildSpec, DownPolicy, SupervisorBuilder};
use sinew::testkit::{Simulation, Target};

/// Counts hits; answers the count.
struct Counter(u64);

enum CounterMsg {
    Hit,
    Get(ReplyTo<u64>),
}

impl Actor for Counter {
    type Msg = CounterMsg;
    fn handle(&mut self, msg: CounterMsg, _ctx: &mut Context<Self>) {
        match msg {
            CounterMsg::Hit => self.0 += 1,
            CounterMsg::Get(r) => {
                r.send(self.0);
            }
        }
    }
}

#[test]
fn counter_survives_crashes_and_loss() {
    Simulation::new("counter")
        .seeds(200) // SINEW_SEEDS overrides, SINEW_SEED replays one
        .check_determinism(true) // every seed twice; fail on any divergence
        .run(|run| {
            // 1. Build the system under test, exactly as in production.
            let (spec, counter) =
                ChildSpec::with_addr("counter", || Counter(0), DownPolicy::Hold(100));
            run.system()
                .spawn(
                    SupervisorBuilder::new("app")
                        .intensity(10, Duration::from_secs(1))
                        .child(spec)
                        .build(),
                )
                .map_err(|e| e.to_string())?;
            run.system().run_until_idle();

            // 2. Plan the faults: the seed decides when they strike.
            let first = counter.current().ok_or("not started")?.id();
            let nth = 1 + run.rng().below(50);
            run.faults()
                .crash_on_message(first, nth) // a crash
                .drop_messages(Target::Any, 0.01) // lost messages
                .delay_messages(Target::Any, 0.05, Duration::from_millis(20)); // reordering

            // 3. Drive it: sends, virtual time, asks.
            for _ in 0..100 {
                let _ = counter.try_send(CounterMsg::Hit);
                run.advance(Duration::from_millis(1));
            }
            let n = run.block_on(counter.ask(CounterMsg::Get))?;

            // 4. Check what must hold, whatever the seed.
            match n {
                Ok(n) if n <= 100 => Ok(()),
                Ok(n) => Err(format!("counted {n} hits out of 100")),
                Err(_) => Ok(()), // the Get itself may be lost: it fails, it never hangs
            }
        });
}
