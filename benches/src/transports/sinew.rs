//! Sinew: `sinew_transports::Reactor` driven directly (no actors), one reactor per thread,
//! on the io_uring or the mio backend. This measures the transport layer itself.
//!
//! Receives are done the way Sinew's I/O actors do them: where the backend has a native
//! multishot receive (io_uring), one `recv_multishot` per connection for its whole life, the
//! chunks lent straight from the provided-buffer ring; elsewhere (epoll) plain receives into
//! recycled buffers. The echo server sends the very buffer it received: a ring chunk goes back
//! out with `send_quiet` and returns to the ring when the send drops it; a plain `BytesMut` is
//! frozen, sent, and taken back from the `Sent` completion. The steady state allocates
//! nothing either way, like the peers' reused buffers.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sinew_transports::{Backend, Completion, Event, Reactor, SockOpt, SocketId, Token};

use super::{
    loopback, Gate, PingSpec, ServerMode, BULK_CHUNK, BULK_RECV_BUF, BULK_WINDOW, ECHO_BUF, REQ,
    REQ_BYTES,
};

/// The io_uring backend.
pub const URING: Backend = Backend::Uring;
/// The mio (epoll) backend.
pub const MIO: Backend = Backend::Mio;

const T_ACCEPT: Token = Token(0);
const T_RECV: Token = Token(1);
const T_SEND: Token = Token(2);
const T_CLOSE: Token = Token(3);
const T_CONNECT: Token = Token(4);

fn reactor(backend: Backend) -> Reactor {
    Reactor::new(backend).unwrap_or_else(|e| panic!("sinew reactor on {backend}: {e}"))
}

fn poll(r: &mut Reactor, cs: &mut Vec<Completion>) {
    r.poll(cs, None).expect("reactor poll");
}

/// Whether to receive with one multishot receive per connection (as the I/O actors do
/// where the backend has it natively).
fn multishot(r: &Reactor) -> bool {
    r.capabilities().multishot_recv
}

/// The server: accepts `conns` connections and serves them in `mode` until all are closed.
pub fn server(backend: Backend, mode: ServerMode, conns: usize, addr_tx: mpsc::Sender<SocketAddr>) {
    let mut r = reactor(backend);
    let listener = r
        .listen(loopback(), &[SockOpt::NoDelay(true)])
        .expect("listen");
    addr_tx
        .send(r.local_addr(listener).expect("local addr"))
        .expect("main alive");
    r.accept(listener, T_ACCEPT);
    let cap = match mode {
        ServerMode::Echo => ECHO_BUF,
        ServerMode::Sink(_) => BULK_RECV_BUF,
    };
    let mut pool: Vec<BytesMut> = Vec::new();
    // Bytes received per connection (bulk only has one; a Vec beats a map at this size).
    let mut received: Vec<(SocketId, u64)> = Vec::new();
    let mut closed = 0;
    let mut cs = Vec::with_capacity(64);
    // Bulk keeps its large plain receives: a 64 KiB read per completion beats ring chunks there.
    let multishot = matches!(mode, ServerMode::Echo) && multishot(&r);
    while closed < conns {
        poll(&mut r, &mut cs);
        for c in cs.drain(..) {
            match c.event {
                Event::Accepted { result: Ok(s), .. } => {
                    r.set_option(s, SockOpt::NoDelay(true)).expect("nodelay");
                    if multishot {
                        r.recv_multishot(s, T_RECV);
                    } else {
                        r.recv(s, BytesMut::with_capacity(cap), T_RECV);
                    }
                }
                Event::Accepted { result: Err(e), .. } => panic!("accept: {e}"),
                Event::ReceivedBytes {
                    socket,
                    result: Ok(chunk),
                    ..
                } if !chunk.is_empty() => r.send_quiet(socket, chunk, T_SEND),
                Event::ReceivedBytes { socket, result, .. } => {
                    if let Err(e) = result {
                        eprintln!("[transports] sinew server: recv error {e}; closing");
                    }
                    r.close(socket, T_CLOSE);
                }
                Event::Received {
                    socket,
                    result: Ok(0),
                    ..
                } => r.close(socket, T_CLOSE),
                Event::Received {
                    socket,
                    mut buf,
                    result: Ok(n),
                } => match mode {
                    ServerMode::Echo => {
                        r.send(socket, buf.freeze(), T_SEND);
                        let next = pool.pop().unwrap_or_else(|| BytesMut::with_capacity(cap));
                        r.recv(socket, next, T_RECV);
                    }
                    ServerMode::Sink(total) => {
                        let i = match received.iter().position(|(s, _)| *s == socket) {
                            Some(i) => i,
                            None => {
                                received.push((socket, 0));
                                received.len() - 1
                            }
                        };
                        received[i].1 += n as u64;
                        if received[i].1 == total {
                            r.send(socket, Bytes::from_static(b"!"), T_SEND);
                        }
                        buf.clear();
                        r.recv(socket, buf, T_RECV);
                    }
                },
                Event::Received {
                    socket,
                    result: Err(e),
                    ..
                } => {
                    eprintln!("[transports] sinew server: recv error {e}; closing");
                    r.close(socket, T_CLOSE);
                }
                Event::Sent { buf, result, .. } => {
                    result.expect("server send");
                    if let Ok(mut b) = buf.try_into_mut() {
                        b.clear();
                        pool.push(b);
                    }
                }
                Event::Closed { socket } if socket != listener => closed += 1,
                _ => {}
            }
        }
    }
}

/// Opens `n` connections and waits until all are established; with `multishot`, each gets
/// its multishot receive, kept for the connection's life.
fn connect_all(r: &mut Reactor, addr: SocketAddr, n: usize, multishot: bool) -> Vec<SocketId> {
    let socks: Vec<SocketId> = (0..n)
        .map(|_| {
            r.connect(addr, &[SockOpt::NoDelay(true)], T_CONNECT)
                .expect("connect")
        })
        .collect();
    let mut pending = n;
    let mut cs = Vec::new();
    while pending > 0 {
        poll(r, &mut cs);
        for c in cs.drain(..) {
            match c.event {
                Event::Connected { result, .. } => {
                    result.expect("connected");
                    pending -= 1;
                }
                other => panic!("unexpected while connecting: {other:?}"),
            }
        }
    }
    if multishot {
        for &s in &socks {
            r.recv_multishot(s, T_RECV);
        }
    }
    socks
}

/// Closes every socket and waits for the `Closed` completions.
fn close_all(r: &mut Reactor, socks: &[SocketId]) {
    for &s in socks {
        r.close(s, T_CLOSE);
    }
    let mut left = socks.len();
    let mut cs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while left > 0 && Instant::now() < deadline {
        r.poll(&mut cs, Some(Duration::from_millis(100)))
            .expect("poll");
        for c in cs.drain(..) {
            if let Event::Closed { .. } = c.event {
                left -= 1;
            }
        }
    }
}

/// Where a connection's round trips stand after more of an echo arrived.
enum Echo {
    /// The echo is not whole yet.
    Partial,
    /// A round trip ended and another follows.
    Again,
    /// The connection's last round trip ended.
    Done,
}

/// Counts `n` echoed bytes on `socket`; `st` holds, per connection of `socks`, the bytes of the
/// current echo received and the round trips left.
fn echoed(st: &mut [(usize, u64)], socks: &[SocketId], socket: SocketId, n: usize) -> Echo {
    let i = socks
        .iter()
        .position(|s| *s == socket)
        .expect("known socket");
    let (got, left) = &mut st[i];
    *got += n;
    if *got < REQ {
        return Echo::Partial;
    }
    *got -= REQ;
    *left -= 1;
    if *left == 0 {
        Echo::Done
    } else {
        Echo::Again
    }
}

/// Every connection does `iters` round trips; returns when all have. With `multishot` the
/// connections' multishot receives are already armed ([`connect_all`]).
fn phase(
    r: &mut Reactor,
    socks: &[SocketId],
    pool: &mut Vec<BytesMut>,
    cs: &mut Vec<Completion>,
    iters: u64,
    multishot: bool,
) {
    if iters == 0 {
        return;
    }
    let req = Bytes::from_static(&REQ_BYTES);
    // Per connection: (bytes of the current echo received, round trips left).
    let mut st: Vec<(usize, u64)> = vec![(0, iters); socks.len()];
    for &s in socks {
        r.send(s, req.clone(), T_SEND);
        if !multishot {
            let buf = pool
                .pop()
                .unwrap_or_else(|| BytesMut::with_capacity(ECHO_BUF));
            r.recv(s, buf, T_RECV);
        }
    }
    let mut active = socks.len();
    while active > 0 {
        poll(r, cs);
        for c in cs.drain(..) {
            match c.event {
                Event::ReceivedBytes {
                    socket,
                    result: Ok(chunk),
                    ..
                } if !chunk.is_empty() => match echoed(&mut st, socks, socket, chunk.len()) {
                    Echo::Partial => {}
                    Echo::Again => r.send(socket, req.clone(), T_SEND),
                    Echo::Done => active -= 1,
                },
                Event::ReceivedBytes { result, .. } => panic!("client recv: {result:?}"),
                Event::Received {
                    socket,
                    mut buf,
                    result: Ok(n),
                } if n > 0 => {
                    buf.clear();
                    match echoed(&mut st, socks, socket, n) {
                        Echo::Partial => {}
                        Echo::Again => r.send(socket, req.clone(), T_SEND),
                        Echo::Done => {
                            active -= 1;
                            pool.push(buf);
                            continue;
                        }
                    }
                    r.recv(socket, buf, T_RECV);
                }
                Event::Received { result, .. } => panic!("client recv: {result:?}"),
                Event::Sent { result, .. } => {
                    result.expect("client send");
                }
                other => panic!("client: unexpected {other:?}"),
            }
        }
    }
}

/// The ping-pong client; returns the duration of the timed phase.
pub fn client_pingpong(
    backend: Backend,
    addr: SocketAddr,
    spec: &PingSpec,
    gate: &Gate,
) -> Duration {
    let mut r = reactor(backend);
    let multishot = multishot(&r);
    let socks = connect_all(&mut r, addr, spec.conns, multishot);
    let mut pool = Vec::new();
    let mut cs = Vec::with_capacity(64);
    let warmup = spec.warmup_per_conn;
    phase(&mut r, &socks, &mut pool, &mut cs, warmup, multishot);
    gate.start();
    let t = Instant::now();
    phase(
        &mut r,
        &socks,
        &mut pool,
        &mut cs,
        spec.iters_per_conn,
        multishot,
    );
    let el = t.elapsed();
    gate.end();
    close_all(&mut r, &socks);
    el
}

/// The bulk client: streams `total` bytes, keeping [`BULK_WINDOW`] writes submitted, and
/// waits for the server's acknowledgement.
pub fn client_bulk(backend: Backend, addr: SocketAddr, total: u64) -> Duration {
    let mut r = reactor(backend);
    let socks = connect_all(&mut r, addr, 1, false);
    let s = socks[0];
    let chunk = Bytes::from(vec![0x5au8; BULK_CHUNK]);
    let mut cs = Vec::with_capacity(64);
    let t = Instant::now();
    let mut queued = 0u64;
    let mut in_flight = 0usize;
    let refill = |r: &mut Reactor, queued: &mut u64, in_flight: &mut usize| {
        while *queued < total && *in_flight < BULK_WINDOW {
            let len = (total - *queued).min(BULK_CHUNK as u64) as usize;
            r.send(s, chunk.slice(..len), T_SEND);
            *queued += len as u64;
            *in_flight += 1;
        }
    };
    refill(&mut r, &mut queued, &mut in_flight);
    r.recv(s, BytesMut::with_capacity(64), T_RECV);
    let mut acked = false;
    while !acked {
        poll(&mut r, &mut cs);
        for c in cs.drain(..) {
            match c.event {
                Event::Sent { result, .. } => {
                    result.expect("bulk send");
                    in_flight -= 1;
                    refill(&mut r, &mut queued, &mut in_flight);
                }
                Event::Received { result: Ok(n), .. } if n > 0 => acked = true,
                other => panic!("bulk client: unexpected {other:?}"),
            }
        }
    }
    let el = t.elapsed();
    close_all(&mut r, &socks);
    el
}
