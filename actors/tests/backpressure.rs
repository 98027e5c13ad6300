//! Bounded mailboxes: `Full` from `try_send`, waiting senders resume, overflow policies, and
//! room notifications.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use sinew_actors::{
    Actor, Context, DeterministicSystem, MailboxConfig, Overflow, SendError, SpawnOptions,
};

/// Blocks its worker until told to go, so its mailbox fills up.
struct Gate {
    open: mpsc::Receiver<()>,
    seen: mpsc::Sender<u32>,
    waited: bool,
}

impl Actor for Gate {
    type Msg = u32;
    fn handle(&mut self, m: u32, _ctx: &mut Context<Self>) {
        if !self.waited {
            self.waited = true;
            self.open
                .recv_timeout(Duration::from_secs(10))
                .expect("gate opened");
        }
        self.seen.send(m).unwrap();
    }
}

#[test]
fn try_send_full_and_async_sender_resumes() {
    let sys = common::system(1);
    let (open_tx, open_rx) = mpsc::channel();
    let (seen_tx, seen_rx) = mpsc::channel();
    let gate = sys
        .spawn_with(
            Gate {
                open: open_rx,
                seen: seen_tx,
                waited: false,
            },
            SpawnOptions::default().mailbox(MailboxConfig::bounded(4)),
        )
        .unwrap();
    gate.try_send(0).unwrap();
    // Wait until the gate holds message 0 (the mailbox is then empty again).
    while gate.mailbox_len() != 1 {
        std::thread::yield_now();
    }
    for i in 1..4 {
        gate.try_send(i).unwrap();
    }
    match gate.try_send(99) {
        Err(SendError::Full(99)) => {}
        other => panic!("expected Full(99), got {other:?}"),
    }
    // An async sender waits for room.
    let g2 = gate.clone();
    let (sent_tx, sent_rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        futures::executor::block_on(g2.send(4)).unwrap();
        sent_tx.send(()).unwrap();
    });
    common::assert_silent(&sent_rx);
    open_tx.send(()).unwrap();
    common::recv(&sent_rx);
    waiter.join().unwrap();
    let got: Vec<u32> = (0..5).map(|_| common::recv(&seen_rx)).collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
}

#[test]
fn room_notification_fires_when_space_appears() {
    let sys = common::system(1);
    let (open_tx, open_rx) = mpsc::channel();
    let (seen_tx, _seen_rx) = mpsc::channel();
    let gate = sys
        .spawn_with(
            Gate {
                open: open_rx,
                seen: seen_tx,
                waited: false,
            },
            SpawnOptions::default().mailbox(MailboxConfig::bounded(2)),
        )
        .unwrap();
    gate.try_send(0).unwrap();
    while gate.mailbox_len() != 1 {
        std::thread::yield_now();
    }
    gate.try_send(1).unwrap();
    assert!(gate.try_send(2).is_err());
    let (room_tx, room_rx) = mpsc::channel();
    gate.notify_when_room(move || room_tx.send(()).unwrap());
    common::assert_silent(&room_rx);
    open_tx.send(()).unwrap();
    common::recv(&room_rx);
}

/// Records what it handles.
struct Rec(mpsc::Sender<u32>);

impl Actor for Rec {
    type Msg = u32;
    fn handle(&mut self, m: u32, _ctx: &mut Context<Self>) {
        self.0.send(m).unwrap();
    }
}

fn fill_with(overflow: Overflow) -> Vec<u32> {
    let sim = DeterministicSystem::new(3);
    let (tx, rx) = mpsc::channel();
    let a = sim
        .spawn_with(
            Rec(tx),
            SpawnOptions::default().mailbox(MailboxConfig {
                capacity: 3,
                overflow,
            }),
        )
        .unwrap();
    sim.run_until_idle();
    // From "outside": nothing runs until the next step, so the mailbox fills.
    for i in 0..6 {
        let _ = a.try_send(i);
    }
    sim.run_until_idle();
    rx.try_iter().collect()
}

#[test]
fn overflow_policies() {
    assert_eq!(fill_with(Overflow::Backpressure), vec![0, 1, 2]);
    assert_eq!(fill_with(Overflow::DropNewest), vec![0, 1, 2]);
    assert_eq!(fill_with(Overflow::DropOldest), vec![3, 4, 5]);
}

#[test]
fn drop_newest_reports_ok_and_counts() {
    let sim = DeterministicSystem::new(3);
    let (tx, _rx) = mpsc::channel();
    let cfg = MailboxConfig {
        capacity: 1,
        overflow: Overflow::DropNewest,
    };
    let a = sim
        .spawn_with(Rec(tx), SpawnOptions::default().mailbox(cfg))
        .unwrap();
    sim.run_until_idle();
    assert!(a.try_send(1).is_ok());
    assert!(a.try_send(2).is_ok(), "drop-newest discards silently");
    assert_eq!(a.mailbox_len(), 1);
}

#[test]
fn replies_bypass_capacity_but_not_a_stopped_actor() {
    let sim = DeterministicSystem::new(4);
    let (tx, rx) = mpsc::channel();
    let a = sim
        .spawn_with(
            Rec(tx),
            SpawnOptions::default().mailbox(MailboxConfig::bounded(1)),
        )
        .unwrap();
    sim.run_until_idle();
    a.try_send(1).unwrap();
    assert!(matches!(a.try_send(2), Err(SendError::Full(2))));
    // A reply to something the actor asked for is never lost to back-pressure.
    a.send_reply(3).unwrap();
    a.recipient().send_reply(4).unwrap();
    sim.run_until_idle();
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![1, 3, 4]);
    a.stop();
    sim.run_until_idle();
    assert!(matches!(a.send_reply(5), Err(SendError::Closed(5))));
}

/// Sends each batch it is given with `try_send_many`, within one turn (so the sink, on the
/// same worker, drains nothing in between), and reports each outcome and what was left.
struct Burst {
    to: sinew_actors::Recipient<u32>,
    report: mpsc::Sender<(&'static str, Vec<u32>)>,
}

impl Actor for Burst {
    type Msg = Vec<Vec<u32>>;
    fn handle(&mut self, batches: Vec<Vec<u32>>, _ctx: &mut Context<Self>) {
        for batch in batches {
            let mut q: std::collections::VecDeque<u32> = batch.into();
            let outcome = match self.to.try_send_many(&mut q) {
                Ok(()) => "ok",
                Err(SendError::Full(())) => "full",
                Err(SendError::Closed(())) => "closed",
            };
            self.report.send((outcome, q.into())).unwrap();
        }
    }
}

/// `try_send_many` from the receiver's own worker (a run admitted at once while it fits,
/// then one at a time) and from another thread: messages leave in order, the ones refused
/// stay in order, and the error says why.
#[test]
fn try_send_many_sends_what_fits_in_order_and_keeps_the_rest() {
    try_send_many_case(false);
}

/// The same through a recipient that maps its messages into the actor's (applied once each
/// is admitted, as for `try_send`).
#[test]
fn try_send_many_through_a_mapped_recipient() {
    try_send_many_case(true);
}

fn try_send_many_case(mapped: bool) {
    let sys = common::system(1);
    let (seen_tx, seen_rx) = mpsc::channel();
    let sink = sys
        .spawn_with(
            Rec(seen_tx),
            SpawnOptions::default().mailbox(MailboxConfig::bounded(4)),
        )
        .unwrap();
    let recipient = |mapped: bool| match mapped {
        true => sink.recipient_map(|m: u32| m),
        false => sink.recipient(),
    };
    let (report_tx, report_rx) = mpsc::channel();
    let burst = sys
        .spawn(Burst {
            to: recipient(mapped),
            report: report_tx,
        })
        .unwrap();
    burst
        .try_send(vec![vec![1, 2, 3], vec![4, 5, 6], vec![]])
        .unwrap();
    let recv = || report_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(recv(), ("ok", vec![]));
    assert_eq!(recv(), ("full", vec![5, 6]));
    assert_eq!(recv(), ("ok", vec![]));
    let seen: Vec<u32> = (0..4)
        .map(|_| seen_rx.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    assert_eq!(seen, [1, 2, 3, 4]);
    // The sink returns its places when its turn ends, which may be after it handed on the
    // last message: wait for that before expecting room.
    while sink.mailbox_len() != 0 {
        std::thread::yield_now();
    }
    // From a thread outside the system, one at a time.
    let mut q: std::collections::VecDeque<u32> = vec![5, 6].into();
    recipient(mapped).try_send_many(&mut q).unwrap();
    assert!(q.is_empty());
    let seen: Vec<u32> = (0..2)
        .map(|_| seen_rx.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    assert_eq!(seen, [5, 6]);
    // A stopped receiver refuses the whole run.
    sink.stop();
    while sink.is_alive() {
        std::thread::yield_now();
    }
    burst.try_send(vec![vec![7, 8]]).unwrap();
    assert_eq!(recv(), ("closed", vec![7, 8]));
    assert!(sys.shutdown(Duration::from_secs(5)).clean);
}
