//! Timers in virtual time (deterministic mode) and on real workers.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use sinew_actors::{Actor, Context, DeterministicSystem, TimerHandle};

enum Msg {
    Arm(Duration, u32),
    Every(Duration),
    Cancel,
    Fired(u32),
    Tick,
}

struct Clocked {
    out: mpsc::Sender<(u64, u32)>,
    interval: Option<TimerHandle>,
    start: std::time::Instant,
}

impl Actor for Clocked {
    type Msg = Msg;
    fn handle(&mut self, msg: Msg, ctx: &mut Context<Self>) {
        let at = (ctx.now() - self.start).as_millis() as u64;
        match msg {
            Msg::Arm(d, tag) => {
                ctx.send_after(d, Msg::Fired(tag));
            }
            Msg::Every(p) => self.interval = Some(ctx.send_interval(p, || Msg::Tick)),
            Msg::Cancel => {
                if let Some(h) = self.interval.take() {
                    h.cancel();
                }
            }
            Msg::Fired(tag) => self.out.send((at, tag)).unwrap(),
            Msg::Tick => self.out.send((at, 0)).unwrap(),
        }
    }
}

#[test]
fn send_after_fires_at_the_virtual_instant() {
    let sim = DeterministicSystem::new(11);
    let (tx, rx) = mpsc::channel();
    let a = sim
        .spawn(Clocked {
            out: tx,
            interval: None,
            start: sim.now(),
        })
        .unwrap();
    a.try_send(Msg::Arm(Duration::from_millis(250), 1))
        .ok()
        .unwrap();
    a.try_send(Msg::Arm(Duration::from_secs(3600), 2))
        .ok()
        .unwrap();
    a.try_send(Msg::Arm(Duration::from_millis(10), 3))
        .ok()
        .unwrap();
    sim.run_until_idle();
    assert_eq!(sim.active_timers(), 3);
    sim.advance(Duration::from_millis(249));
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![(10, 3)]);
    sim.advance(Duration::from_millis(1));
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![(250, 1)]);
    // An hour passes in no real time.
    sim.advance(Duration::from_secs(3600));
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![(3_600_000, 2)]);
    assert_eq!(sim.active_timers(), 0);
}

#[test]
fn interval_ticks_until_cancelled() {
    let sim = DeterministicSystem::new(5);
    let (tx, rx) = mpsc::channel();
    let a = sim
        .spawn(Clocked {
            out: tx,
            interval: None,
            start: sim.now(),
        })
        .unwrap();
    a.try_send(Msg::Every(Duration::from_millis(100)))
        .ok()
        .unwrap();
    sim.advance(Duration::from_millis(350));
    let ticks: Vec<u64> = rx.try_iter().map(|(t, _)| t).collect();
    assert_eq!(ticks, vec![100, 200, 300]);
    a.try_send(Msg::Cancel).unwrap();
    sim.advance(Duration::from_secs(10));
    assert_eq!(rx.try_iter().count(), 0);
    assert_eq!(sim.active_timers(), 0);
}

#[test]
fn timers_are_cancelled_when_the_actor_stops() {
    let sim = DeterministicSystem::new(5);
    let (tx, _rx) = mpsc::channel();
    let a = sim
        .spawn(Clocked {
            out: tx,
            interval: None,
            start: sim.now(),
        })
        .unwrap();
    a.try_send(Msg::Every(Duration::from_millis(100)))
        .ok()
        .unwrap();
    a.try_send(Msg::Arm(Duration::from_secs(60), 1))
        .ok()
        .unwrap();
    sim.run_until_idle();
    assert_eq!(sim.active_timers(), 2);
    a.stop();
    sim.run_until_idle();
    assert_eq!(sim.active_timers(), 0);
    assert_eq!(sim.live_actors(), 0);
}

#[test]
fn real_time_send_after_fires_not_early() {
    let sys = common::system(2);
    let (tx, rx) = mpsc::channel();
    let start = std::time::Instant::now();
    let a = sys
        .spawn(Clocked {
            out: tx,
            interval: None,
            start,
        })
        .unwrap();
    a.try_send(Msg::Arm(Duration::from_millis(20), 1))
        .ok()
        .unwrap();
    let (at, tag) = common::recv(&rx);
    assert_eq!(tag, 1);
    assert!(at >= 20, "fired after {at} ms");
}

/// Arms one-shot timers at arbitrary points inside a millisecond and records, by the real
/// clock, when each was armed and when it fired.
struct Punctual {
    out: mpsc::Sender<Duration>,
    armed: std::collections::HashMap<u32, std::time::Instant>,
    next: u32,
}

enum PMsg {
    Arm,
    Fired(u32),
}

impl Actor for Punctual {
    type Msg = PMsg;
    fn handle(&mut self, msg: PMsg, ctx: &mut Context<Self>) {
        match msg {
            PMsg::Arm => {
                let tag = self.next;
                self.next += 1;
                self.armed.insert(tag, std::time::Instant::now());
                ctx.send_after(Duration::from_millis(3), PMsg::Fired(tag));
            }
            PMsg::Fired(tag) => {
                if let Some(at) = self.armed.remove(&tag) {
                    let _ = self.out.send(at.elapsed());
                }
            }
        }
    }
}

#[test]
fn real_timers_never_fire_early() {
    let system = sinew_actors::System::builder().workers(1).build().unwrap();
    let (tx, rx) = mpsc::channel();
    let a = system
        .spawn(Punctual {
            out: tx,
            armed: Default::default(),
            next: 0,
        })
        .unwrap();
    const N: usize = 200;
    for i in 0..N {
        a.try_send(PMsg::Arm).unwrap();
        // Spread the arming instants over sub-millisecond phases.
        std::thread::sleep(Duration::from_micros(37 * (i as u64 % 27)));
    }
    for _ in 0..N {
        let waited = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("timer fired");
        assert!(
            waited >= Duration::from_millis(3),
            "a 3 ms timer fired after {waited:?}"
        );
    }
    system.shutdown(Duration::from_secs(1));
}
