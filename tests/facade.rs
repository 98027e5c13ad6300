//! The facade: what a user sees through `sinew::prelude`, end to end across workers.

use std::time::Duration;

use sinew::prelude::*;

/// Sums what it is sent; answers the total.
struct Sum(u64);

enum SumMsg {
    Add(u64),
    Total(ReplyTo<u64>),
}

impl Actor for Sum {
    type Msg = SumMsg;
    fn handle(&mut self, msg: SumMsg, _ctx: &mut Context<Self>) {
        match msg {
            SumMsg::Add(n) => self.0 += n,
            SumMsg::Total(r) => {
                r.send(self.0);
            }
        }
    }
}

/// Fans work out to children on every worker and collects their totals through reply
/// addresses that map into its own message type.
struct Coordinator {
    parts: Vec<Addr<Sum>>,
    pending: usize,
    total: u64,
    done: Option<ReplyTo<u64>>,
}

enum CoordMsg {
    Run(u64, ReplyTo<u64>),
    Part(Result<u64, ReplyError>),
}

impl Actor for Coordinator {
    type Msg = CoordMsg;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let workers = ctx.system().workers();
        for i in 0..workers * 2 {
            let opts = SpawnOptions::default().placement(Placement::Worker(i % workers));
            self.parts
                .push(ctx.spawn_with(Sum(0), opts).expect("running"));
        }
    }

    fn handle(&mut self, msg: CoordMsg, ctx: &mut Context<Self>) {
        match msg {
            CoordMsg::Run(n, done) => {
                for i in 1..=n {
                    let part = &self.parts[(i as usize) % self.parts.len()];
                    part.try_send(SumMsg::Add(i)).expect("room");
                }
                self.pending = self.parts.len();
                self.done = Some(done);
                for part in &self.parts {
                    let reply = ctx.reply_to(CoordMsg::Part);
                    part.try_send(SumMsg::Total(reply)).expect("room");
                }
            }
            CoordMsg::Part(r) => {
                self.total += r.expect("part answered");
                self.pending -= 1;
                if self.pending == 0 {
                    if let Some(d) = self.done.take() {
                        d.send(self.total);
                    }
                }
            }
        }
    }
}

#[test]
fn fan_out_fan_in_across_workers_through_the_facade() {
    let system = System::builder().workers(2).build().unwrap();
    let c = system
        .spawn(Coordinator {
            parts: Vec::new(),
            pending: 0,
            total: 0,
            done: None,
        })
        .unwrap();
    let total = futures::executor::block_on(c.ask(|r| CoordMsg::Run(500, r))).unwrap();
    assert_eq!(total, 500 * 501 / 2);
    // One coordinator and its four children.
    assert_eq!(system.live_actors(), 5);
    let report = system.shutdown(Duration::from_secs(5));
    assert!(report.clean, "{report:?}");
}
