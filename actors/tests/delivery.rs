//! Ordering and delivery: FIFO per sender-receiver pair, nothing lost or duplicated under many
//! concurrent senders on several workers and on foreign threads.

mod common;

use std::collections::HashMap;
use std::sync::mpsc;

use sinew_actors::{Actor, Addr, Context, MailboxConfig, SpawnOptions};

/// Records (sender, seq) and reports when `expect` messages arrived.
struct Sink {
    last: HashMap<u32, u64>,
    seen: u64,
    expect: u64,
    done: mpsc::Sender<Result<u64, String>>,
}

impl Actor for Sink {
    type Msg = (u32, u64);
    fn handle(&mut self, (sender, seq): (u32, u64), _ctx: &mut Context<Self>) {
        let next = self.last.get(&sender).map_or(0, |l| l + 1);
        if seq != next {
            let _ = self
                .done
                .send(Err(format!("sender {sender}: got {seq}, expected {next}")));
        }
        self.last.insert(sender, seq);
        self.seen += 1;
        if self.seen == self.expect {
            let _ = self.done.send(Ok(self.seen));
        }
    }
}

/// An actor that sends `n` numbered messages to `to` as fast as back-pressure allows,
/// re-arming itself with a message so it never blocks its worker.
struct Producer {
    id: u32,
    next: u64,
    n: u64,
    to: Addr<Sink>,
}

impl Actor for Producer {
    type Msg = ();
    fn started(&mut self, ctx: &mut Context<Self>) {
        let _ = ctx.addr().try_send(());
    }
    fn handle(&mut self, _: (), ctx: &mut Context<Self>) {
        while self.next < self.n {
            match self.to.try_send((self.id, self.next)) {
                Ok(()) => self.next += 1,
                Err(e) if e.is_transient() => {
                    // Resume when the sink has room: the wake-up path I/O actors use.
                    let me = ctx.addr();
                    self.to.notify_when_room(move || {
                        let _ = me.try_send(());
                    });
                    return;
                }
                Err(e) => panic!("sink closed: {e}"),
            }
        }
    }
}

#[test]
fn fifo_per_pair_and_no_loss_across_workers() {
    let sys = common::system(2);
    let (tx, rx) = mpsc::channel();
    let producers = 8u32;
    let per = 20_000u64;
    let sink = sys
        .spawn_with(
            Sink {
                last: HashMap::new(),
                seen: 0,
                expect: producers as u64 * per,
                done: tx,
            },
            SpawnOptions::on_worker(0).mailbox(MailboxConfig::bounded(64)),
        )
        .unwrap();
    for id in 0..producers {
        let p = Producer {
            id,
            next: 0,
            n: per,
            to: sink.clone(),
        };
        sys.spawn_with(p, SpawnOptions::on_worker(id as usize % 2))
            .unwrap();
    }
    assert_eq!(common::recv(&rx), Ok(producers as u64 * per));
    common::assert_silent(&rx);
    assert!(sys.shutdown(std::time::Duration::from_secs(5)).clean);
}

#[test]
fn foreign_threads_async_send_loses_nothing() {
    let sys = common::system(2);
    let (tx, rx) = mpsc::channel();
    let threads = 6u32;
    let per = 20_000u64;
    let sink = sys
        .spawn_with(
            Sink {
                last: HashMap::new(),
                seen: 0,
                expect: threads as u64 * per,
                done: tx,
            },
            SpawnOptions::default().mailbox(MailboxConfig::bounded(16)),
        )
        .unwrap();
    let handles: Vec<_> = (0..threads)
        .map(|id| {
            let sink = sink.clone();
            std::thread::spawn(move || {
                futures::executor::block_on(async {
                    for seq in 0..per {
                        sink.send((id, seq)).await.expect("sink alive");
                    }
                })
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(common::recv(&rx), Ok(threads as u64 * per));
    common::assert_silent(&rx);
}
