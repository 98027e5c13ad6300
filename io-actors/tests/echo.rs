//! Actors on real sockets: a listener actor accepts, one connection actor per connection echoes,
//! completions arrive in the actors' mailboxes on their own worker. Both backends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use bytes::BytesMut;
use sinew_actors::{Actor, Context, System};
use sinew_io_actors::{io_driver, WorkerIo};
use sinew_transports::{Backend, Completion, Event, SockOpt, SocketId, Token};

struct Listener {
    ready: mpsc::Sender<SocketAddr>,
}

impl Actor for Listener {
    type Msg = Completion;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let io = ctx.extension::<WorkerIo>().expect("worker has I/O");
        let token = io.register(ctx.addr().recipient());
        let mut reactor = io.reactor();
        let listener = reactor
            .listen(
                "127.0.0.1:0".parse().expect("addr"),
                &[SockOpt::ReuseAddr(true)],
            )
            .expect("listen");
        reactor.accept(listener, token);
        let addr = reactor.local_addr(listener).expect("local addr");
        self.ready.send(addr).expect("test waits");
    }

    fn handle(&mut self, c: Completion, ctx: &mut Context<Self>) {
        if let Event::Accepted {
            result: Ok(socket), ..
        } = c.event
        {
            ctx.spawn(Conn {
                socket,
                token: None,
            })
            .expect("spawn connection");
        }
    }
}

/// Echoes; panics when it receives the byte `!` (fault isolation test).
struct Conn {
    socket: SocketId,
    token: Option<Token>,
}

impl Conn {
    fn recv(&self, io: &WorkerIo) {
        if let Some(t) = self.token {
            io.reactor()
                .recv(self.socket, BytesMut::with_capacity(4096), t);
        }
    }
}

impl Actor for Conn {
    type Msg = Completion;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let io = ctx.extension::<WorkerIo>().expect("worker has I/O");
        self.token = Some(io.register(ctx.addr().recipient()));
        self.recv(&io);
    }

    fn handle(&mut self, c: Completion, ctx: &mut Context<Self>) {
        let io = ctx.extension::<WorkerIo>().expect("worker has I/O");
        let Some(token) = self.token else { return };
        match c.event {
            Event::Received {
                buf, result: Ok(n), ..
            } if n > 0 => {
                assert!(!buf.contains(&b'!'), "poisoned input");
                io.reactor().send(self.socket, buf.freeze(), token);
            }
            Event::Sent { result: Ok(_), .. } => self.recv(&io),
            Event::Closed { .. } => ctx.stop(),
            // End of stream or an error: close; the Closed completion stops us.
            _ => io.reactor().close(self.socket, token),
        }
    }

    fn stopping(&mut self, ctx: &mut Context<Self>) {
        let io = ctx.extension::<WorkerIo>().expect("worker has I/O");
        if let Some(t) = self.token.take() {
            io.reactor().close(self.socket, t);
            io.unregister(t);
        }
    }
}

fn echo_round(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(payload).expect("write");
    let mut got = vec![0u8; payload.len()];
    s.read_exact(&mut got).expect("echo back");
    got
}

fn run(backend: Backend) {
    let sys = System::builder()
        .workers(1)
        .try_driver(io_driver(backend))
        .build()
        .expect("system");
    let (tx, rx) = mpsc::channel();
    sys.spawn(Listener { ready: tx }).expect("listener");
    let addr = rx.recv_timeout(Duration::from_secs(10)).expect("listening");

    // Many concurrent clients, each checked byte for byte.
    let clients: Vec<_> = (0..32u8)
        .map(|i| {
            std::thread::spawn(move || {
                let payload: Vec<u8> = (0..20_000u32)
                    .map(|j| (j as u8).wrapping_add(i) | 1)
                    .map(|b| if b == b'!' { b'?' } else { b })
                    .collect();
                assert_eq!(echo_round(addr, &payload), payload);
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }

    // A connection whose actor panics is closed; the others keep working.
    let mut poisoned = TcpStream::connect(addr).expect("connect");
    poisoned
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut healthy = TcpStream::connect(addr).expect("connect");
    healthy
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    poisoned.write_all(b"!").expect("write");
    let mut buf = [0u8; 8];
    let n = poisoned.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the crashed connection is closed, not left hanging");
    healthy.write_all(b"still here").expect("write");
    let mut got = [0u8; 10];
    healthy
        .read_exact(&mut got)
        .expect("healthy connection still echoes");
    assert_eq!(&got, b"still here");
    drop(healthy);

    let report = sys.shutdown(Duration::from_secs(5));
    assert!(report.clean, "{report:?}");
}

#[test]
fn echo_over_mio() {
    run(Backend::Mio);
}

#[test]
fn echo_over_io_uring() {
    run(Backend::Uring);
}
