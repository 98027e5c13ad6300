//! Reply addresses: answered once, errors when dropped, deadlines, asks between actors.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use sinew_actors::{Actor, Addr, Context, DeterministicSystem, ReplyError, ReplyTo};

enum Req {
    Echo(u32, ReplyTo<u32>),
    Ignore(ReplyTo<u32>),
    Hold(ReplyTo<u32>),
    Panic(ReplyTo<u32>),
}

#[derive(Default)]
struct Server {
    held: Vec<ReplyTo<u32>>,
}

impl Actor for Server {
    type Msg = Req;
    fn handle(&mut self, msg: Req, _ctx: &mut Context<Self>) {
        match msg {
            Req::Echo(v, r) => {
                r.send(v);
            }
            Req::Ignore(r) => drop(r),
            Req::Hold(r) => self.held.push(r),
            Req::Panic(_r) => panic!("handler failure"),
        }
    }
}

#[test]
fn ask_gets_the_answer() {
    let sys = common::system(2);
    let s = sys.spawn(Server::default()).unwrap();
    let v = futures::executor::block_on(s.ask(|r| Req::Echo(41, r))).unwrap();
    assert_eq!(v, 41);
}

#[test]
fn dropped_reply_to_is_an_error_not_a_hang() {
    let sys = common::system(1);
    let s = sys.spawn(Server::default()).unwrap();
    assert_eq!(
        futures::executor::block_on(s.ask(Req::Ignore)),
        Err(ReplyError::Dropped)
    );
}

#[test]
fn panicking_holder_fails_pending_asks_fast() {
    let sys = common::system(1);
    let s = sys.spawn(Server::default()).unwrap();
    // The held request is queued before the panicking one (sent from this thread, in order),
    // so the actor holds it when it crashes.
    let (hold, held) = ReplyTo::channel();
    s.try_send(Req::Hold(hold)).unwrap();
    assert_eq!(
        futures::executor::block_on(s.ask(Req::Panic)),
        Err(ReplyError::Dropped)
    );
    // The held request was in the crashed actor's state: it is answered with an error too.
    assert_eq!(futures::executor::block_on(held), Err(ReplyError::Dropped));
    assert!(!s.is_alive());
    // Asking a stopped actor fails at once.
    assert_eq!(
        futures::executor::block_on(s.ask(Req::Ignore)),
        Err(ReplyError::Stopped)
    );
}

#[test]
fn ask_deadline_times_out_in_virtual_time() {
    let sim = DeterministicSystem::new(7);
    let s = sim.spawn(Server::default()).unwrap();
    let fut = s.ask_within(Duration::from_secs(30), Req::Hold);
    let start = sim.now_ms();
    assert_eq!(sim.block_on(fut).unwrap(), Err(ReplyError::Timeout));
    // The clock jumped straight to the deadline: no real waiting.
    assert_eq!(sim.now_ms() - start, 30_000);
}

#[test]
fn ask_deadline_times_out_on_real_workers() {
    let sys = common::system(2);
    let s = sys.spawn(Server::default()).unwrap();
    let started = std::time::Instant::now();
    let r = futures::executor::block_on(s.ask_within(Duration::from_millis(30), Req::Hold));
    assert_eq!(r, Err(ReplyError::Timeout));
    assert!(started.elapsed() >= Duration::from_millis(30));
}

/// An actor asking another with a deadline receives the timeout as a message.
struct Client {
    server: Addr<Server>,
    out: mpsc::Sender<Result<u32, ReplyError>>,
}

enum ClientMsg {
    Go(bool),
    Answer(Result<u32, ReplyError>),
}

impl Actor for Client {
    type Msg = ClientMsg;
    fn handle(&mut self, msg: ClientMsg, ctx: &mut Context<Self>) {
        match msg {
            ClientMsg::Go(answer) => {
                let reply = ctx.reply_to_within(Duration::from_millis(500), ClientMsg::Answer);
                assert!(
                    reply.deadline().is_some(),
                    "the deadline travels with the request"
                );
                let req = if answer {
                    Req::Echo(9, reply)
                } else {
                    Req::Hold(reply)
                };
                self.server.try_send(req).expect("server has room");
            }
            ClientMsg::Answer(r) => self.out.send(r).unwrap(),
        }
    }
}

#[test]
fn actor_side_deadline_delivers_timeout_once() {
    let sim = DeterministicSystem::new(1);
    let (tx, rx) = mpsc::channel();
    let server = sim.spawn(Server::default()).unwrap();
    let client = sim.spawn(Client { server, out: tx }).unwrap();
    client.try_send(ClientMsg::Go(true)).unwrap();
    client.try_send(ClientMsg::Go(false)).unwrap();
    sim.run_until_idle();
    assert_eq!(rx.try_recv(), Ok(Ok(9)));
    assert!(rx.try_recv().is_err(), "no timeout before the deadline");
    sim.advance(Duration::from_millis(499));
    assert!(rx.try_recv().is_err());
    sim.advance(Duration::from_millis(1));
    assert_eq!(rx.try_recv(), Ok(Err(ReplyError::Timeout)));
    // The answered request's timer fired too, but delivered nothing: exactly once.
    sim.advance(Duration::from_secs(5));
    assert!(rx.try_recv().is_err());
}

/// A requester that asks through a reply channel: tagged addresses, one shared sink.
struct Tagger {
    server: Addr<Server>,
    out: mpsc::Sender<(u64, Result<u32, ReplyError>)>,
}

enum TaggerMsg {
    Go,
    Answer(u64, Result<u32, ReplyError>),
}

impl Actor for Tagger {
    type Msg = TaggerMsg;
    fn handle(&mut self, msg: TaggerMsg, ctx: &mut Context<Self>) {
        match msg {
            TaggerMsg::Go => {
                let channel = ctx.reply_channel(|tag, r| TaggerMsg::Answer(tag, *r));
                let plain = channel.reply_to(9);
                assert_eq!(plain.channel_tag(), Some(9));
                assert!(plain.channel_extension::<&str>().is_none());
                drop(plain);
                let with = ctx.reply_channel_with(|tag, r| TaggerMsg::Answer(tag, *r), "side");
                let addr = with.reply_to(4);
                assert_eq!(addr.channel_extension::<&str>(), Some(&"side"));
                assert!(
                    addr.channel_extension::<u32>().is_none(),
                    "wrong type is None"
                );
                drop(addr);
                // Answered, dropped, and answered out of order: each tag arrives exactly once.
                let _ = self.server.try_send(Req::Ignore(channel.reply_to(2)));
                let _ = self.server.try_send(Req::Echo(10, channel.reply_to(1)));
                let _ = self.server.try_send(Req::Echo(30, channel.reply_to(3)));
            }
            TaggerMsg::Answer(tag, r) => {
                let _ = self.out.send((tag, r));
            }
        }
    }
}

#[test]
fn reply_channel_tags_every_answer_and_every_drop() {
    let sim = DeterministicSystem::new(3);
    let server = sim.spawn(Server::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    let tagger = sim.spawn(Tagger { server, out: tx }).unwrap();
    tagger.try_send(TaggerMsg::Go).unwrap();
    sim.run_until_idle();
    let mut got: Vec<_> = rx.try_iter().collect();
    got.sort_by_key(|(tag, _)| *tag);
    assert_eq!(
        got,
        vec![
            (1, Ok(10)),
            (2, Err(ReplyError::Dropped)),
            (3, Ok(30)),
            (4, Err(ReplyError::Dropped)),
            (9, Err(ReplyError::Dropped))
        ]
    );
}
