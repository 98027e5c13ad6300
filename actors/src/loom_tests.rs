//! loom models of the runtime's lock-free protocols: mailbox admission and waiting for room, and
//! the worker park/wake handshake. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p sinew-actors --lib --release loom`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::SeqCst;

use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::sync::{Arc, Mutex};
use loom::thread;

use crate::inbound::{Inbound, Pop};
use crate::mailbox::{Admission, Admit, MailboxConfig, Waiter};
use crate::park::Sleeper;
use crate::worker::WorkerLocal;

/// Two senders race for one place while the consumer drains: never more admitted than the
/// capacity at once, and the counter returns to zero.
#[test]
fn admission_never_exceeds_capacity() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let adm = Arc::new(Admission::new(MailboxConfig::bounded(1)));
        let in_box = Arc::new(AtomicUsize::new(0));
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let (adm, in_box) = (adm.clone(), in_box.clone());
                thread::spawn(move || {
                    if adm.try_admit(false) == Admit::Ok {
                        let n = in_box.fetch_add(1, SeqCst) + 1;
                        assert!(n <= 1, "capacity exceeded");
                        // Consumed at once by this model's consumer.
                        in_box.fetch_sub(1, SeqCst);
                        adm.release(1);
                    }
                })
            })
            .collect();
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!(adm.len(), 0);
        assert!(adm.has_room());
    });
}

/// The exact lost-wake-up scenario: a sender finds the mailbox full and parks a waiter while the
/// consumer concurrently releases. After both finish, the waiter has either been fired or the
/// sender's re-check observed room (so it retries instead of sleeping).
#[test]
fn full_sender_and_release_race_has_no_lost_wakeup() {
    loom::model(|| parked_sender_races_a_release(false));
}

/// The same race when the place was claimed on the home worker, so the release returns it with
/// a plain store to the home counter rather than an atomic read-modify-write: the fences on
/// both sides still leave no lost wake-up.
#[test]
fn release_of_a_home_place_and_a_parked_sender_have_no_lost_wakeup() {
    loom::model(|| parked_sender_races_a_release(true));
}

/// One place, claimed on the home worker or not; a sender on another thread finds it taken and
/// parks while the home worker (from here on the only writer of the home counter) releases it.
fn parked_sender_races_a_release(home_place: bool) {
    let adm = Arc::new(Admission::new(MailboxConfig::bounded(1)));
    assert_eq!(adm.try_admit(home_place), Admit::Ok);
    let woken = Arc::new(AtomicBool::new(false));
    let sender = {
        let adm = adm.clone();
        let woken = woken.clone();
        thread::spawn(move || {
            if adm.try_admit(false) == Admit::Ok {
                return true;
            }
            let w = woken.clone();
            adm.park(Waiter::Callback(Box::new(move || w.store(true, SeqCst))));
            adm.has_room()
        })
    };
    let home = {
        let adm = adm.clone();
        thread::spawn(move || adm.release(1))
    };
    let rechecked_room = sender.join().unwrap();
    home.join().unwrap();
    assert!(rechecked_room || woken.load(SeqCst), "lost wake-up");
}

/// The worker parks only when no sender will skip waking it.
#[test]
fn park_handshake_has_no_lost_wakeup() {
    loom::model(|| {
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let sleeper = Arc::new(Sleeper::new());
        let worker = {
            let queue = queue.clone();
            let sleeper = sleeper.clone();
            thread::spawn(move || loop {
                if queue.lock().unwrap().pop_front().is_some() {
                    return;
                }
                sleeper.prepare_park();
                if !queue.lock().unwrap().is_empty() {
                    sleeper.awake();
                    continue;
                }
                // A lost wake-up makes loom report a deadlock here.
                thread::park();
                sleeper.awake();
            })
        };
        queue.lock().unwrap().push_back(1u8);
        if sleeper.must_wake() {
            worker.thread().unpark();
        }
        worker.join().unwrap();
    });
}

/// The inbound MPSC queue: two producers, one consumer; every job is handed out exactly once,
/// in order per producer, and none is lost when the consumer races a producer mid-push.
#[test]
fn inbound_queue_hands_out_every_job_once_in_order() {
    // Bounded preemptions keep the model under a minute; bugs in queues of this kind show up
    // within two or three preemptions.
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        struct Probe(u8, Arc<Mutex<Vec<u8>>>);
        impl Drop for Probe {
            fn drop(&mut self) {
                self.1.lock().unwrap().push(self.0);
            }
        }
        let q = Arc::new(Inbound::new());
        let log = Arc::new(Mutex::new(Vec::new()));
        let producers: Vec<_> = (0..2u8)
            .map(|p| {
                let (q, log) = (q.clone(), log.clone());
                thread::spawn(move || {
                    for i in 0..2u8 {
                        let probe = Probe(p * 10 + i, log.clone());
                        q.push(move |_w: &WorkerLocal| drop(probe));
                    }
                })
            })
            .collect();
        let mut got = 0;
        while got < 4 {
            // SAFETY: this thread is the only consumer.
            match unsafe { q.pop() } {
                Pop::Job(j) => {
                    drop(j);
                    got += 1;
                }
                Pop::Busy | Pop::Empty => thread::yield_now(),
            }
        }
        for p in producers {
            p.join().unwrap();
        }
        let log = log.lock().unwrap().clone();
        assert_eq!(log.len(), 4);
        for p in 0..2u8 {
            let mine: Vec<u8> = log.iter().copied().filter(|x| x / 10 == p).collect();
            assert_eq!(mine, vec![p * 10, p * 10 + 1], "per-producer order");
        }
    });
}

/// Two responders answer on a reply board while its owner handles its mailbox: every answer
/// is followed by a wake that takes it, so an answer is never stranded on the board, and a
/// message a responder sends after answering finds its answer already taken.
#[test]
fn reply_board_wake_never_strands_an_answer() {
    use crate::reply_board::{Posted, ReplyBoard};

    enum Msg {
        Wake,
        After(u64),
    }
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let mailbox = Arc::new(Mutex::new(VecDeque::new()));
        let m = mailbox.clone();
        let wake = Box::new(move || m.lock().unwrap().push_back(Msg::Wake));
        let board = ReplyBoard::<u64>::new(wake, None);
        let responders: Vec<_> = (0..2u64)
            .map(|tag| {
                let (reply, mailbox) = (board.reply_to(tag), mailbox.clone());
                thread::spawn(move || {
                    assert!(reply.send(tag * 10));
                    mailbox.lock().unwrap().push_back(Msg::After(tag));
                })
            })
            .collect();
        let mut taken: Vec<Posted<u64>> = Vec::new();
        let mut batch = Vec::new();
        let mut afters = 0;
        while afters < 2 {
            let msg = mailbox.lock().unwrap().pop_front();
            match msg {
                Some(Msg::Wake) => {
                    board.take(&mut batch);
                    taken.append(&mut batch);
                }
                Some(Msg::After(tag)) => {
                    assert!(
                        taken.iter().any(|(t, _)| *t == tag),
                        "a message overtook its sender's answer"
                    );
                    afters += 1;
                }
                None => thread::yield_now(),
            }
        }
        for r in responders {
            r.join().unwrap();
        }
        taken.sort_by_key(|(t, _)| *t);
        assert_eq!(taken, vec![(0, Ok(0)), (1, Ok(10))]);
    });
}
