//! The conformance suite: one generic function per behaviour, run against every backend.
#![allow(dead_code, missing_docs)]

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sinew_transports::{
    Backend, Completion, DatagramAddr, Error, Event, Reactor, ReactorConfig, SockOpt, SocketId,
    Token,
};

/// Upper bound on any single wait, so a broken backend fails instead of hanging the suite.
const WAIT: Duration = Duration::from_secs(30);

pub struct Harness {
    pub reactor: Reactor,
    queue: VecDeque<Completion>,
    scratch: Vec<Completion>,
}

/// False (and a note on stderr) if `backend` cannot run on this machine.
pub fn available(backend: Backend) -> bool {
    let ok = backend.is_available();
    if !ok {
        eprintln!("skipping: backend {backend} unavailable here");
    }
    ok
}

impl Harness {
    pub fn new(backend: Backend) -> Harness {
        Harness::with_config(backend, &ReactorConfig::default())
    }

    pub fn with_config(backend: Backend, config: &ReactorConfig) -> Harness {
        let reactor = Reactor::with_config(backend, config).expect("reactor");
        assert_eq!(reactor.backend(), backend);
        Harness {
            reactor,
            queue: VecDeque::new(),
            scratch: Vec::new(),
        }
    }

    /// The next completion, waiting for it.
    pub fn next(&mut self) -> Completion {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(c) = self.queue.pop_front() {
                return c;
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("timed out waiting for a completion");
            self.reactor
                .poll(&mut self.scratch, Some(left))
                .expect("poll");
            self.queue.extend(self.scratch.drain(..));
        }
    }

    /// Waits until `window` has passed, collecting every completion on the way.
    pub fn drain_for(&mut self, window: Duration) -> Vec<Completion> {
        let end = Instant::now() + window;
        let mut got: Vec<Completion> = self.queue.drain(..).collect();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            self.reactor
                .poll(&mut self.scratch, Some(left))
                .expect("poll");
            got.append(&mut self.scratch);
        }
        got
    }

    pub fn listen(&mut self) -> (SocketId, SocketAddr) {
        let l = self
            .reactor
            .listen("127.0.0.1:0".parse().expect("addr"), &[])
            .expect("listen");
        let addr = self.reactor.local_addr(l).expect("local addr");
        (l, addr)
    }

    /// Waits for the next accepted connection.
    pub fn accepted(&mut self) -> SocketId {
        match self.next().event {
            Event::Accepted {
                result: Ok(s),
                more: true,
                ..
            } => s,
            other => panic!("expected an accepted connection, got {other:?}"),
        }
    }
}

/// Byte `i` of the test pattern: not periodic at any power of two, so shifted or duplicated
/// chunks are caught.
pub fn pattern(i: usize) -> u8 {
    ((i * 31 + 7) % 251) as u8
}

pub fn pattern_bytes(start: usize, len: usize) -> Vec<u8> {
    (start..start + len).map(pattern).collect()
}

pub fn echo(backend: Backend) {
    if !available(backend) {
        return;
    }
    let mut h = Harness::new(backend);
    let (listener, addr) = h.listen();
    h.reactor.accept(listener, Token(0));
    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        for msg in [&b"hello"[..], b"sinew", &[7u8; 3000]] {
            s.write_all(msg).expect("write");
            let mut back = vec![0; msg.len()];
            s.read_exact(&mut back).expect("read echo");
            assert_eq!(back, msg);
        }
    });
    let conn = h.accepted();
    h.reactor
        .recv(conn, BytesMut::with_capacity(4096), Token(1));
    let mut echoed = 0;
    loop {
        match h.next().event {
            Event::Received {
                buf, result: Ok(0), ..
            } => {
                assert!(buf.is_empty());
                h.reactor.close(conn, Token(3));
            }
            Event::Received {
                buf, result: Ok(n), ..
            } => {
                echoed += n;
                h.reactor.send(conn, buf.freeze(), Token(2));
                h.reactor
                    .recv(conn, BytesMut::with_capacity(4096), Token(1));
            }
            Event::Sent { result, .. } => assert!(result.is_ok(), "{result:?}"),
            Event::Closed { socket } => {
                assert_eq!(socket, conn);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(echoed, 5 + 5 + 3000);
    client.join().expect("client");
}

pub fn partial_writes(backend: Backend) {
    if !available(backend) {
        return;
    }
    const BIG: usize = 8 << 20;
    let mut h = Harness::new(backend);
    let (listener, addr) = h.listen();
    h.reactor.accept(listener, Token(0));
    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        let mut all = Vec::new();
        s.read_to_end(&mut all).expect("read");
        all
    });
    let conn = h.accepted();
    // A small send buffer forces many partial writes inside the backend.
    h.reactor
        .set_option(conn, SockOpt::SendBuffer(4096))
        .expect("sndbuf");
    let big = Bytes::from(pattern_bytes(0, BIG));
    h.reactor.send(conn, big, Token(1));
    let (chunks, vtotal) = pattern_chunks(BIG, &[1, 4095, 70_000, 3, 200_000]);
    h.reactor.send_vectored(conn, chunks, Token(2));
    h.reactor.shutdown(conn, Shutdown::Write, Token(3));
    let mut order = Vec::new();
    while order.len() < 3 {
        let c = h.next();
        order.push(c.token);
        match c.event {
            Event::Sent { result, buf, .. } => {
                assert_eq!(result.expect("send"), BIG);
                assert_eq!(buf.len(), BIG);
            }
            Event::SentVectored { result, .. } => assert_eq!(result.expect("sendv"), vtotal),
            Event::Shutdown { result, .. } => result.expect("shutdown"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        order,
        vec![Token(1), Token(2), Token(3)],
        "writes complete in order"
    );
    let all = client.join().expect("client");
    assert_eq!(all.len(), BIG + vtotal);
    assert!(
        all.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "byte stream corrupted"
    );
}

pub fn half_close(backend: Backend) {
    if !available(backend) {
        return;
    }
    let mut h = Harness::new(backend);
    let (listener, addr) = h.listen();
    h.reactor.accept(listener, Token(0));
    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(b"request").expect("write");
        s.shutdown(Shutdown::Write).expect("half close");
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).expect("read");
        reply
    });
    let conn = h.accepted();
    let mut got = Vec::new();
    h.reactor.recv(conn, BytesMut::with_capacity(64), Token(1));
    loop {
        match h.next().event {
            Event::Received { result: Ok(0), .. } => break,
            Event::Received {
                buf, result: Ok(_), ..
            } => {
                got.extend_from_slice(&buf);
                h.reactor.recv(conn, BytesMut::with_capacity(64), Token(1));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, b"request");
    // Our side is still open for writing after the peer's half close.
    h.reactor
        .send(conn, Bytes::from_static(b"response"), Token(2));
    h.reactor.shutdown(conn, Shutdown::Write, Token(3));
    assert!(matches!(h.next().event, Event::Sent { result: Ok(8), .. }));
    assert!(matches!(
        h.next().event,
        Event::Shutdown { result: Ok(()), .. }
    ));
    assert_eq!(client.join().expect("client"), b"response");
}

pub fn peer_reset(backend: Backend) {
    if !available(backend) {
        return;
    }
    let mut h = Harness::new(backend);
    let (listener, addr) = h.listen();
    h.reactor.accept(listener, Token(0));
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        let s = TcpStream::connect(addr).expect("connect");
        go_rx.recv().expect("go");
        // Linger 0: close sends RST instead of FIN.
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
        drop(s);
    });
    let conn = h.accepted();
    go_tx.send(()).expect("go");
    client.join().expect("client");
    h.reactor.recv(conn, BytesMut::with_capacity(64), Token(1));
    match h.next().event {
        Event::Received {
            result: Err(e),
            buf,
            ..
        } => {
            assert!(matches!(e, Error::ConnectionReset), "{e:?}");
            assert!(e.is_fatal());
            assert_eq!(buf.capacity(), 64, "buffer handed back");
        }
        other => panic!("expected a reset, got {other:?}"),
    }
    h.reactor.send(conn, Bytes::from_static(b"late"), Token(2));
    match h.next().event {
        Event::Sent { result: Err(e), .. } => {
            assert!(
                matches!(e, Error::BrokenPipe | Error::ConnectionReset),
                "{e:?}"
            );
            assert!(e.is_fatal());
        }
        other => panic!("expected a send error, got {other:?}"),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    Client(u64),
    Server,
}

pub fn thousand_connections(backend: Backend) {
    if !available(backend) {
        return;
    }
    thousand_connections_on(Harness::new(backend), Backend::Auto);
}

/// [`thousand_connections`] with the listener (and so every server side) on `listen_on`:
/// `Auto` for the reactor's own backend, another one to have the reactor host it.
pub fn thousand_connections_on(mut h: Harness, listen_on: Backend) {
    const N: u64 = 1000;
    let listener = h
        .reactor
        .listen_on(listen_on, "127.0.0.1:0".parse().expect("addr"), &[])
        .expect("listen");
    let addr = h.reactor.local_addr(listener).expect("local addr");
    h.reactor.accept(listener, Token(u64::MAX));
    let mut roles: HashMap<SocketId, Role> = HashMap::new();
    let mut bufs: HashMap<SocketId, Vec<u8>> = HashMap::new();
    for i in 0..N {
        let s = h
            .reactor
            .connect(addr, &[SockOpt::NoDelay(true)], Token(i))
            .expect("connect");
        roles.insert(s, Role::Client(i));
    }
    let (mut verified, mut closed, mut accepted) = (0, 0, 0);
    while closed < 2 * N {
        let c = h.next();
        match c.event {
            Event::Accepted { result, .. } => {
                let s = result.expect("accept");
                accepted += 1;
                roles.insert(s, Role::Server);
                h.reactor.recv(s, BytesMut::with_capacity(8), Token(0));
            }
            Event::Connected { socket, result } => {
                result.expect("connected");
                let Some(Role::Client(i)) = roles.get(&socket).copied() else {
                    panic!("role")
                };
                h.reactor
                    .send(socket, Bytes::copy_from_slice(&i.to_le_bytes()), Token(i));
                h.reactor.recv(socket, BytesMut::with_capacity(8), Token(i));
            }
            Event::Received {
                socket,
                buf,
                result,
            } => {
                let n = result.expect("recv");
                let acc = bufs.entry(socket).or_default();
                acc.extend_from_slice(&buf);
                match roles[&socket] {
                    Role::Server if n == 0 => h.reactor.close(socket, Token(0)),
                    Role::Server => {
                        h.reactor.send(socket, buf.freeze(), Token(0));
                        h.reactor.recv(socket, BytesMut::with_capacity(8), Token(0));
                    }
                    Role::Client(i) if acc.len() == 8 => {
                        assert_eq!(acc[..], i.to_le_bytes(), "echo for client {i}");
                        verified += 1;
                        h.reactor.close(socket, Token(i));
                    }
                    Role::Client(i) => {
                        assert!(n > 0, "client {i} got EOF early");
                        h.reactor.recv(socket, BytesMut::with_capacity(8), Token(i));
                    }
                }
            }
            Event::Sent { result, .. } => {
                result.expect("send");
            }
            Event::Closed { .. } => closed += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(verified, N);
    assert_eq!(accepted, N);
    h.reactor.close(listener, Token(u64::MAX - 1));
    let mut listener_done = false;
    while !listener_done {
        if let Event::Closed { socket } = h.next().event {
            listener_done = socket == listener;
        }
    }
    assert_eq!(h.reactor.socket_count(), 0);
}

pub fn large_transfer(backend: Backend) {
    if !available(backend) {
        return;
    }
    const TOTAL: usize = 32 << 20;
    const CHUNK: usize = 256 * 1024;
    let mut h = Harness::new(backend);
    let (listener, addr) = h.listen();
    h.reactor.accept(listener, Token(0));
    let client = h.reactor.connect(addr, &[], Token(1)).expect("connect");
    // Submitted before the connect completes: it must wait for it, then run in order.
    let mut sent = 0;
    while sent < TOTAL {
        let chunk: Vec<Bytes> = (0..4)
            .map(|k| {
                let at = sent + k * CHUNK / 4;
                Bytes::from(pattern_bytes(at, CHUNK / 4))
            })
            .collect();
        h.reactor.send_vectored(client, chunk, Token(2));
        sent += CHUNK;
    }
    h.reactor.shutdown(client, Shutdown::Write, Token(3));
    let mut received = 0usize;
    let mut server = None;
    let mut sends_done = 0;
    let mut eof = false;
    while !eof || sends_done < TOTAL / CHUNK {
        match h.next().event {
            Event::Accepted { result, .. } => {
                let s = result.expect("accept");
                server = Some(s);
                h.reactor
                    .recv(s, BytesMut::with_capacity(64 * 1024), Token(4));
            }
            Event::Connected { result, .. } => result.expect("connect"),
            Event::SentVectored { result, .. } => {
                assert_eq!(result.expect("send"), CHUNK);
                sends_done += 1;
            }
            Event::Shutdown { result, .. } => result.expect("shutdown"),
            Event::Received {
                buf,
                result,
                socket,
            } => {
                let n = result.expect("recv");
                if n == 0 {
                    eof = true;
                    continue;
                }
                for (k, &b) in buf.iter().enumerate() {
                    assert_eq!(b, pattern(received + k), "byte {} differs", received + k);
                }
                received += n;
                let mut buf = buf;
                buf.clear(); // reuse the same allocation
                h.reactor.recv(socket, buf, Token(4));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(received, TOTAL);
    assert!(server.is_some());
}

/// Open descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Closes sockets with receives and large sends in flight: every buffer comes back, and once
/// the reactor is dropped no descriptor is left behind.
pub fn cancel_in_flight(backend: Backend) {
    if !available(backend) {
        return;
    }
    const N: usize = 50;
    let before = open_fds();
    {
        let mut h = Harness::new(backend);
        let (listener, addr) = h.listen();
        h.reactor.accept(listener, Token(0));
        let mut clients = Vec::new();
        for _ in 0..N {
            clients.push(h.reactor.connect(addr, &[], Token(1)).expect("connect"));
        }
        let (mut servers, mut connected) = (Vec::new(), 0);
        while servers.len() < N || connected < N {
            match h.next().event {
                Event::Accepted { result, .. } => servers.push(result.expect("accept")),
                Event::Connected { result, .. } => {
                    result.expect("connect");
                    connected += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let big = Bytes::from(vec![1u8; 8 << 20]);
        let mut outstanding = 0;
        for (&c, &s) in clients.iter().zip(&servers) {
            // Nobody reads: the send stays partly in flight; the receives never complete.
            h.reactor.send(c, big.clone(), Token(2));
            h.reactor.send(c, big.clone(), Token(2)); // queued behind the first
            h.reactor.recv(c, BytesMut::with_capacity(1024), Token(3));
            h.reactor.recv(s, BytesMut::with_capacity(1024), Token(3));
            h.reactor.recv(s, BytesMut::with_capacity(1024), Token(3)); // queued
            outstanding += 5;
        }
        for &s in clients.iter().chain(&servers).chain([&listener]) {
            h.reactor.close(s, Token(9));
        }
        let (mut closed, mut returned, mut cancelled) = (0, 0, 0);
        while closed < 2 * N + 1 {
            let c = h.next();
            match c.event {
                Event::Closed { .. } => closed += 1,
                Event::Received { buf, result, .. } => {
                    assert_eq!(buf.capacity(), 1024);
                    returned += 1;
                    cancelled += usize::from(matches!(result, Err(Error::Cancelled)));
                }
                Event::Sent { buf, result, .. } => {
                    assert_eq!(buf.len(), 8 << 20);
                    returned += 1;
                    cancelled += usize::from(matches!(result, Err(Error::Cancelled)));
                }
                Event::Accepted {
                    result: Err(Error::Cancelled),
                    more: false,
                    ..
                } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(returned, outstanding, "every buffer handed back");
        assert!(
            cancelled >= 3 * N,
            "queued operations are cancelled ({cancelled})"
        );
        assert_eq!(h.reactor.socket_count(), 0);
    }
    assert_eq!(open_fds(), before, "descriptors leaked");
}

/// Accept under a descriptor limit: reports a transient error, backs off instead of
/// spinning, and accepts the waiting connections once descriptors are available again.
/// Changes the process's `RLIMIT_NOFILE`: run it alone in its process.
pub fn emfile_backoff(backend: Backend) {
    if !available(backend) {
        return;
    }
    const K: usize = 4;
    let mut h = Harness::new(backend);
    let (listener, addr) = h.listen();
    let peers: Vec<TcpStream> = (0..K)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();

    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the valid struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let highest = std::fs::read_dir("/proc/self/fd")
        .expect("fds")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .expect("some fd");
    let low = libc::rlimit {
        rlim_cur: highest + 1,
        rlim_max: old.rlim_max,
    };
    // SAFETY: setrlimit reads the valid struct we pass.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    // Fill every hole below the limit so the next descriptor really fails with EMFILE.
    let mut fillers = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        fillers.push(f);
    }

    h.reactor.accept(listener, Token(0));
    let during = h.drain_for(Duration::from_millis(300));
    let mut emfile = 0;
    for c in &during {
        match &c.event {
            Event::Accepted {
                result: Err(Error::TooManyOpenFiles(_)),
                more: true,
                ..
            } => emfile += 1,
            other => panic!("unexpected while out of descriptors: {other:?}"),
        }
    }
    assert!(emfile >= 1, "EMFILE reported");
    // Backoff starts at 5 ms and doubles: a spinning acceptor would report thousands.
    assert!(
        emfile <= 12,
        "accept spun: {emfile} EMFILE reports in 300 ms"
    );

    drop(fillers);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) }, 0);
    let mut accepted = 0;
    while accepted < K {
        match h.next().event {
            Event::Accepted { result: Ok(_), .. } => accepted += 1,
            Event::Accepted {
                result: Err(e),
                more: true,
                ..
            } if e.is_transient() => {}
            other => panic!("unexpected after recovery: {other:?}"),
        }
    }
    drop(peers);
}

/// Drops a reactor while receives, a large send and an accept are in flight: the backend must
/// wait for (or cancel) the kernel's work before freeing buffers, and leave no descriptor.
pub fn drop_with_ops_in_flight(backend: Backend) {
    if !available(backend) {
        return;
    }
    let before = open_fds();
    {
        let mut h = Harness::new(backend);
        let (listener, addr) = h.listen();
        h.reactor.accept(listener, Token(0));
        let client = h.reactor.connect(addr, &[], Token(1)).expect("connect");
        let server = h.accepted();
        assert!(matches!(
            h.next().event,
            Event::Connected { result: Ok(()), .. }
        ));
        h.reactor
            .recv(server, BytesMut::with_capacity(4096), Token(2));
        h.reactor
            .recv(client, BytesMut::with_capacity(4096), Token(2));
        h.reactor
            .send(client, Bytes::from(vec![3u8; 16 << 20]), Token(3));
        // Submit without waiting for anything, then drop with all of it outstanding.
        let mut out = Vec::new();
        h.reactor
            .poll(&mut out, Some(Duration::ZERO))
            .expect("poll");
    }
    assert_eq!(open_fds(), before, "descriptors leaked by drop");
}

// ----- cases whose peers are sockets of the same reactor: they run on every backend,
// including the simulated network, where no real peer exists.

/// A connected (client, server) pair on one reactor.
pub fn connected_pair(h: &mut Harness, opts: &[SockOpt]) -> (SocketId, SocketId, SocketId) {
    let (listener, addr) = h.listen();
    h.reactor.accept(listener, Token(1000));
    let client = h.reactor.connect(addr, opts, Token(1001)).expect("connect");
    let (mut server, mut connected) = (None, false);
    while server.is_none() || !connected {
        match h.next().event {
            Event::Accepted { result, .. } => server = Some(result.expect("accept")),
            Event::Connected { result, .. } => {
                result.expect("connected");
                connected = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (listener, client, server.expect("server"))
}

/// Reads from `socket` until end of stream; fails on any other completion.
pub fn read_to_end(h: &mut Harness, socket: SocketId) -> Vec<u8> {
    let mut all = Vec::new();
    h.reactor
        .recv(socket, BytesMut::with_capacity(64 * 1024), Token(2000));
    loop {
        match h.next().event {
            Event::Received {
                buf, result: Ok(0), ..
            } => {
                assert!(buf.is_empty());
                return all;
            }
            Event::Received {
                buf, result: Ok(_), ..
            } => {
                all.extend_from_slice(&buf);
                let mut buf = buf;
                buf.clear();
                h.reactor.recv(socket, buf, Token(2000));
            }
            Event::Sent { result, .. } | Event::SentVectored { result, .. } => {
                result.expect("send");
            }
            Event::Shutdown { result, .. } => result.expect("shutdown"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

pub fn echo_peers(backend: Backend) {
    if !available(backend) {
        return;
    }
    let mut h = Harness::new(backend);
    let (_, client, server) = connected_pair(&mut h, &[SockOpt::NoDelay(true)]);
    h.reactor
        .recv(server, BytesMut::with_capacity(4096), Token(1));
    for msg in [&b"hello"[..], b"sinew", &pattern_bytes(0, 3000)] {
        h.reactor
            .send(client, Bytes::copy_from_slice(msg), Token(2));
        let mut back = Vec::new();
        h.reactor
            .recv(client, BytesMut::with_capacity(4096), Token(3));
        while back.len() < msg.len() {
            let c = h.next();
            match (c.token, c.event) {
                (Token(1), Event::Received { buf, result, .. }) => {
                    assert!(result.expect("server recv") > 0);
                    h.reactor.send(server, buf.freeze(), Token(4));
                    h.reactor
                        .recv(server, BytesMut::with_capacity(4096), Token(1));
                }
                (Token(3), Event::Received { buf, result, .. }) => {
                    assert!(result.expect("client recv") > 0);
                    back.extend_from_slice(&buf);
                    if back.len() < msg.len() {
                        h.reactor
                            .recv(client, BytesMut::with_capacity(4096), Token(3));
                    }
                }
                (_, Event::Sent { result, .. }) => {
                    result.expect("send");
                }
                (_, other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(back, msg);
    }
    h.reactor.close(client, Token(5));
    loop {
        match h.next().event {
            Event::Received { result: Ok(0), .. } => break,
            Event::Closed { socket } => assert_eq!(socket, client),
            Event::Sent { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Consecutive pieces of the test pattern starting at offset `at`, of the given lengths (for
/// a vectored send), and their total length.
fn pattern_chunks(at: usize, lens: &[usize]) -> (Vec<Bytes>, usize) {
    let chunks: Vec<Bytes> = lens
        .iter()
        .scan(at, |at, &len| {
            let b = Bytes::from(pattern_bytes(*at, len));
            *at += len;
            Some(b)
        })
        .collect();
    let total = chunks.iter().map(Bytes::len).sum();
    (chunks, total)
}

/// A connected pair (client, server) whose server side has a 4 KiB send buffer, so large
/// writes go out in many partial pieces.
fn pair_with_small_send_buffer(h: &mut Harness) -> (SocketId, SocketId) {
    let (_, client, server) = connected_pair(h, &[]);
    h.reactor
        .set_option(server, SockOpt::SendBuffer(4096))
        .expect("sndbuf");
    (client, server)
}

pub fn partial_writes_peers(backend: Backend) {
    if !available(backend) {
        return;
    }
    const BIG: usize = 4 << 20;
    let mut h = Harness::new(backend);
    let (client, server) = pair_with_small_send_buffer(&mut h);
    h.reactor
        .send(server, Bytes::from(pattern_bytes(0, BIG)), Token(1));
    let (chunks, vtotal) = pattern_chunks(BIG, &[1, 4095, 70_000, 3, 200_000]);
    h.reactor.send_vectored(server, chunks, Token(2));
    h.reactor.shutdown(server, Shutdown::Write, Token(3));
    let all = read_to_end(&mut h, client);
    assert_eq!(all.len(), BIG + vtotal);
    assert!(
        all.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "byte stream corrupted"
    );
}

/// Quiet sends: the peer gets every byte in order, no completion arrives for a send that
/// succeeded, the shutdown behind them completes once they are written, and a quiet send that
/// fails still says so.
pub fn quiet_sends_peers(backend: Backend) {
    if !available(backend) {
        return;
    }
    const BIG: usize = 2 << 20;
    let mut h = Harness::new(backend);
    let (client, server) = pair_with_small_send_buffer(&mut h);
    h.reactor
        .send_quiet(server, Bytes::from(pattern_bytes(0, BIG)), Token(1));
    let (chunks, vtotal) = pattern_chunks(BIG, &[1, 4095, 70_000, 3]);
    h.reactor.send_vectored_quiet(server, chunks, Token(2));
    h.reactor.shutdown(server, Shutdown::Write, Token(3));
    h.reactor
        .recv(client, BytesMut::with_capacity(64 * 1024), Token(2000));
    let (mut all, mut shut) = (Vec::new(), false);
    loop {
        let c = h.next();
        match c.event {
            Event::Received {
                buf, result: Ok(0), ..
            } => {
                assert!(buf.is_empty());
                break;
            }
            Event::Received {
                buf, result: Ok(_), ..
            } => {
                all.extend_from_slice(&buf);
                let mut buf = buf;
                buf.clear();
                h.reactor.recv(client, buf, Token(2000));
            }
            Event::Shutdown { result, .. } => {
                assert_eq!(c.token, Token(3));
                result.expect("shutdown");
                shut = true;
            }
            other => panic!("unexpected completion {other:?} (token {:?})", c.token),
        }
    }
    assert_eq!(all.len(), BIG + vtotal);
    assert!(
        all.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "byte stream corrupted"
    );
    // The shutdown ran after both sends: the client saw their bytes, then the end.
    while !shut {
        match h.next().event {
            Event::Shutdown { result, .. } => {
                result.expect("shutdown");
                shut = true;
            }
            other => panic!("unexpected completion {other:?}"),
        }
    }
    // A quiet send that fails completes with its error (here: after the shutdown).
    h.reactor
        .send_quiet(server, Bytes::from_static(b"late"), Token(4));
    let c = h.next();
    assert_eq!(c.token, Token(4));
    assert!(
        matches!(c.event, Event::Sent { result: Err(_), .. }),
        "{:?}",
        c.event
    );
}

pub fn half_close_peers(backend: Backend) {
    if !available(backend) {
        return;
    }
    let mut h = Harness::new(backend);
    let (_, client, server) = connected_pair(&mut h, &[]);
    h.reactor
        .send(client, Bytes::from_static(b"request"), Token(1));
    h.reactor.shutdown(client, Shutdown::Write, Token(2));
    assert_eq!(read_to_end(&mut h, server), b"request");
    // The server can still answer after the client's half close.
    h.reactor
        .send(server, Bytes::from_static(b"response"), Token(3));
    h.reactor.shutdown(server, Shutdown::Write, Token(4));
    assert_eq!(read_to_end(&mut h, client), b"response");
}

pub fn peer_reset_peers(backend: Backend) {
    if !available(backend) {
        return;
    }
    let mut h = Harness::new(backend);
    let (_, client, server) = connected_pair(&mut h, &[]);
    h.reactor
        .set_option(client, SockOpt::Linger(Some(Duration::ZERO)))
        .expect("linger");
    h.reactor
        .recv(server, BytesMut::with_capacity(64), Token(1));
    h.reactor.close(client, Token(2));
    let mut reset = false;
    while !reset {
        match h.next().event {
            Event::Closed { socket } => assert_eq!(socket, client),
            Event::Received {
                result: Err(e),
                buf,
                ..
            } => {
                assert!(matches!(e, Error::ConnectionReset), "{e:?}");
                assert!(e.is_fatal());
                assert_eq!(buf.capacity(), 64, "buffer handed back");
                reset = true;
            }
            other => panic!("expected a reset, got {other:?}"),
        }
    }
    h.reactor
        .send(server, Bytes::from_static(b"late"), Token(3));
    match h.next().event {
        Event::Sent { result: Err(e), .. } => {
            assert!(
                matches!(e, Error::BrokenPipe | Error::ConnectionReset),
                "{e:?}"
            );
            assert!(e.is_fatal());
        }
        other => panic!("expected a send error, got {other:?}"),
    }
}

/// A fresh socket path in the temp dir, unique per process, backend and case.
pub fn socket_path(backend: Backend, case: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "sinew-transports-{}-{backend}-{case}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// Unix domain stream sockets: listen and connect by path, a large transfer both ways with
/// half close, checked byte for byte.
pub fn unix_stream(backend: Backend) {
    if !available(backend) {
        return;
    }
    const SIZE: usize = 1 << 20;
    let path = socket_path(backend, "unix_stream");
    let mut h = Harness::new(backend);
    let listener = h.reactor.listen_unix(&path).expect("listen unix");
    h.reactor.accept(listener, Token(0));
    let client = h
        .reactor
        .connect_unix(&path, Token(1))
        .expect("connect unix");
    let (mut server, mut connected) = (None, false);
    while server.is_none() || !connected {
        match h.next().event {
            Event::Accepted { result, .. } => server = Some(result.expect("accept")),
            Event::Connected { socket, result } => {
                assert_eq!(socket, client);
                result.expect("connected");
                connected = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let server = server.expect("server");
    h.reactor
        .send(client, Bytes::from(pattern_bytes(0, SIZE)), Token(2));
    h.reactor.shutdown(client, Shutdown::Write, Token(3));
    let got = read_to_end(&mut h, server);
    assert_eq!(got.len(), SIZE);
    assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    if h.reactor.capabilities().zero_copy_send {
        // Unix sockets cannot send zero copy: the kernel copies by itself, or refuses
        // (EOPNOTSUPP) and the reactor sends again, copying; the data is intact either way.
        assert!(h.reactor.stats().zero_copy_sends > 0);
    }
    h.reactor
        .send(server, Bytes::from_static(b"done"), Token(4));
    h.reactor.shutdown(server, Shutdown::Write, Token(5));
    assert_eq!(read_to_end(&mut h, client), b"done");
    for s in [client, server, listener] {
        h.reactor.close(s, Token(6));
    }
    let mut closed = 0;
    while closed < 3 {
        match h.next().event {
            Event::Closed { .. } => closed += 1,
            Event::Accepted {
                result: Err(Error::Cancelled),
                more: false,
                ..
            } => {}
            // The server's last send and shutdown may be reaped after the client's EOF.
            Event::Sent { result: Ok(4), .. } | Event::Shutdown { result: Ok(()), .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(h.reactor.socket_count(), 0);
    std::fs::remove_file(&path).expect("remove socket file");
}

/// Connecting to a path nobody listens on fails with a typed error, at once or on completion.
pub fn unix_connect_refused(backend: Backend) {
    if !available(backend) {
        return;
    }
    let path = socket_path(backend, "unix_refused");
    let mut h = Harness::new(backend);
    match h.reactor.connect_unix(&path, Token(1)) {
        Err(e) => assert!(e.is_fatal(), "{e:?}"),
        Ok(_) => match h.next().event {
            Event::Connected { result: Err(e), .. } => assert!(e.is_fatal(), "{e:?}"),
            other => panic!("unexpected {other:?}"),
        },
    }
}

/// A datagram carrying its index in the first 4 bytes, then pattern bytes.
fn datagram(i: usize) -> Vec<u8> {
    let mut d = (i as u32).to_le_bytes().to_vec();
    d.extend(pattern_bytes(i * 1000, 20 + (i * 37) % 1200));
    d
}

/// Receives `n` datagrams on `socket` (with `n` receives queued up front, so batching
/// backends fill many per call); returns them by index, checking each one's content.
fn receive_datagrams(
    h: &mut Harness,
    socket: SocketId,
    n: usize,
    from: &DatagramAddr,
) -> Vec<bool> {
    let mut seen = vec![false; n];
    let mut got = 0;
    while got < n {
        match h.next().event {
            Event::ReceivedFrom {
                socket: s,
                buf,
                from: f,
                truncated,
                result,
            } if s == socket => {
                let len = result.expect("recv_from");
                assert!(!truncated);
                assert_eq!(len, buf.len());
                assert_eq!(f.as_ref(), Some(from), "sender address");
                let i = u32::from_le_bytes(buf[..4].try_into().expect("index")) as usize;
                assert_eq!(&buf[..], &datagram(i)[..], "datagram {i} intact");
                assert!(!seen[i], "datagram {i} delivered twice");
                seen[i] = true;
                got += 1;
            }
            Event::SentTo { result, buf, .. } => {
                assert_eq!(result.expect("send_to"), buf.len(), "{:?}", &buf[..4])
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    seen
}

/// UDP: bind, a burst of datagrams with receives queued (batched where the backend batches),
/// sender addresses, a reply, truncation, an oversized send, and cancellation by close.
pub fn udp(backend: Backend) {
    if !available(backend) {
        return;
    }
    const N: usize = 64;
    let mut h = Harness::new(backend);
    assert!(h.reactor.capabilities().datagrams);
    let local: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let a = h.reactor.bind_udp(local, &[]).expect("bind a");
    let b = h
        .reactor
        .bind_udp(local, &[SockOpt::RecvBuffer(1 << 20)])
        .expect("bind b");
    let (a_addr, b_addr) = (
        h.reactor.local_addr(a).expect("a addr"),
        h.reactor.local_addr(b).expect("b addr"),
    );
    for _ in 0..N {
        h.reactor
            .recv_from(b, BytesMut::with_capacity(2048), Token(1));
    }
    for i in 0..N {
        h.reactor
            .send_to(a, Bytes::from(datagram(i)), b_addr, Token(2));
    }
    let seen = receive_datagrams(&mut h, b, N, &DatagramAddr::Inet(a_addr));
    assert!(seen.iter().all(|&s| s));

    // A reply to the sender's address; then a datagram too big for its buffer.
    h.reactor
        .recv_from(a, BytesMut::with_capacity(16), Token(3));
    h.reactor
        .send_to(b, Bytes::from_static(b"pong"), a_addr, Token(4));
    h.reactor
        .send_to(b, Bytes::from(vec![9u8; 100]), a_addr, Token(4));
    let mut replies = Vec::new();
    while replies.len() < 2 {
        match h.next().event {
            Event::ReceivedFrom {
                buf,
                from,
                truncated,
                result,
                ..
            } => {
                assert_eq!(from, Some(DatagramAddr::Inet(b_addr)));
                replies.push((buf, truncated, result.expect("recv")));
                if replies.len() == 1 {
                    h.reactor
                        .recv_from(a, BytesMut::with_capacity(16), Token(3));
                }
            }
            Event::SentTo { result, .. } => {
                result.expect("send_to");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((&replies[0].0[..], replies[0].1), (&b"pong"[..], false));
    assert!(
        replies[1].1,
        "a datagram longer than the buffer is reported truncated"
    );
    assert_eq!(replies[1].0.len(), 16);

    // Larger than any UDP datagram: a typed, fatal error; the buffer comes back.
    h.reactor
        .send_to(a, Bytes::from(vec![0u8; 70_000]), b_addr, Token(5));
    match h.next().event {
        Event::SentTo {
            result: Err(e),
            buf,
            ..
        } => {
            assert!(e.is_fatal(), "{e:?}");
            assert_eq!(buf.len(), 70_000);
        }
        other => panic!("unexpected {other:?}"),
    }

    // Stream operations do not apply; closing cancels a pending receive.
    h.reactor.recv(a, BytesMut::with_capacity(8), Token(6));
    assert!(matches!(
        h.next().event,
        Event::Received {
            result: Err(Error::Unsupported(_)),
            ..
        }
    ));
    h.reactor.recv_from(a, BytesMut::with_capacity(8), Token(7));
    h.reactor.close(a, Token(8));
    h.reactor.close(b, Token(8));
    let mut closed = 0;
    while closed < 2 {
        match h.next().event {
            Event::Closed { .. } => closed += 1,
            Event::ReceivedFrom {
                result: Err(Error::Cancelled),
                buf,
                ..
            } => assert_eq!(buf.capacity(), 8),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(h.reactor.socket_count(), 0);
}

/// Unix domain datagram sockets: bind by path, send by path, the sender's path reported.
pub fn unix_datagram(backend: Backend) {
    if !available(backend) {
        return;
    }
    const N: usize = 16;
    let (pa, pb) = (
        socket_path(backend, "dgram_a"),
        socket_path(backend, "dgram_b"),
    );
    let mut h = Harness::new(backend);
    let a = h.reactor.bind_unix_datagram(&pa).expect("bind a");
    let b = h.reactor.bind_unix_datagram(&pb).expect("bind b");
    for _ in 0..N {
        h.reactor
            .recv_from(b, BytesMut::with_capacity(2048), Token(1));
    }
    for i in 0..N {
        h.reactor
            .send_to(a, Bytes::from(datagram(i)), pb.as_path(), Token(2));
    }
    let seen = receive_datagrams(&mut h, b, N, &DatagramAddr::Unix(pa.clone()));
    assert!(seen.iter().all(|&s| s));
    for s in [a, b] {
        h.reactor.close(s, Token(3));
    }
    let mut closed = 0;
    while closed < 2 {
        match h.next().event {
            Event::Closed { .. } => closed += 1,
            Event::SentTo { result, .. } => {
                result.expect("send_to");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    std::fs::remove_file(&pa).expect("remove a");
    std::fs::remove_file(&pb).expect("remove b");
}

/// Backpressure: a paused reader submits no receive, so the kernel's buffers fill and the
/// peer's large send stalls (its queued bytes cross the high watermark and stay queued);
/// resuming drains everything, intact, and the queue falls back past the low watermark.
pub fn paused_reader_stalls_sender(backend: Backend) {
    if !available(backend) {
        return;
    }
    const SIZE: usize = 8 << 20;
    const HIGH: usize = 1 << 20;
    const LOW: usize = 256 << 10;
    let mut h = Harness::new(backend);
    let (_, client, server) = connected_pair(&mut h, &[]);
    // Small, fixed kernel buffers (no autotuning): the kernel holds well under a megabyte.
    h.reactor
        .set_option(server, SockOpt::RecvBuffer(64 << 10))
        .expect("rcvbuf");
    h.reactor
        .set_option(client, SockOpt::SendBuffer(64 << 10))
        .expect("sndbuf");
    // A receive already submitted is taken back by the pause (io_uring cancels it).
    h.reactor
        .recv(server, BytesMut::with_capacity(64 << 10), Token(10));
    h.reactor
        .poll(&mut Vec::new(), Some(Duration::ZERO))
        .expect("submit the receive");
    h.reactor.pause_recv(server).expect("pause");
    h.reactor
        .set_write_watermarks(client, HIGH, LOW, Token(20))
        .expect("watermarks");
    assert!(matches!(
        h.reactor.set_write_watermarks(client, LOW, HIGH, Token(20)),
        Err(Error::InvalidArgument(_))
    ));
    h.reactor
        .send(client, Bytes::from(pattern_bytes(0, SIZE)), Token(11));
    match h.next().event {
        Event::WriteWatermark {
            socket,
            high: true,
            queued,
        } => {
            assert_eq!(socket, client);
            assert!(queued >= HIGH);
        }
        other => panic!("expected the high watermark, got {other:?}"),
    }
    // Nothing can complete while the reader is paused: watch for a while (a negative
    // assertion needs a window; a slow machine only makes it easier to pass).
    let during: Vec<Token> = h
        .drain_for(Duration::from_millis(300))
        .iter()
        .map(|c| c.token)
        .collect();
    assert!(during.is_empty(), "completed while paused: {during:?}");
    let stalled = h.reactor.send_queued(client).expect("queued");
    assert!(
        stalled > SIZE - (2 << 20),
        "the send stalled with most of it queued ({stalled} bytes)"
    );

    h.reactor.resume_recv(server).expect("resume");
    let (mut received, mut sent, mut low_seen) = (0usize, false, false);
    while received < SIZE || !sent || !low_seen {
        match h.next().event {
            Event::Received { buf, result, .. } => {
                let n = result.expect("recv");
                assert!(n > 0, "early end of stream");
                for (k, &b) in buf.iter().enumerate() {
                    assert_eq!(b, pattern(received + k), "byte {} differs", received + k);
                }
                received += n;
                let mut buf = buf;
                buf.clear();
                h.reactor.recv(server, buf, Token(10));
            }
            Event::Sent { result, .. } => {
                assert_eq!(result.expect("send"), SIZE);
                sent = true;
            }
            Event::WriteWatermark {
                high: false,
                queued,
                ..
            } => {
                assert!(queued <= LOW);
                low_seen = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(h.reactor.send_queued(client).expect("queued"), 0);
}

/// Closes datagram sockets with receives and sends in flight (including Unix datagrams
/// blocked on a full receiver): every buffer comes back, and no descriptor is left.
pub fn datagram_cancel_in_flight(backend: Backend) {
    if !available(backend) {
        return;
    }
    let before = open_fds();
    let (pa, pb) = (
        socket_path(backend, "cancel_a"),
        socket_path(backend, "cancel_b"),
    );
    {
        let mut h = Harness::new(backend);
        let udp = h
            .reactor
            .bind_udp("127.0.0.1:0".parse().expect("addr"), &[])
            .expect("bind udp");
        let a = h.reactor.bind_unix_datagram(&pa).expect("bind a");
        let b = h.reactor.bind_unix_datagram(&pb).expect("bind b");
        let mut outstanding = 0;
        for s in [udp, a] {
            h.reactor
                .recv_from(s, BytesMut::with_capacity(512), Token(1));
            outstanding += 1;
        }
        // Nobody reads `b`: its queue fills and later sends wait.
        for _ in 0..40 {
            h.reactor
                .send_to(a, Bytes::from(vec![5u8; 100]), pb.as_path(), Token(2));
            outstanding += 1;
        }
        h.reactor
            .poll(&mut Vec::new(), Some(Duration::ZERO))
            .map(|n| outstanding -= n)
            .expect("poll");
        for s in [udp, a, b] {
            h.reactor.close(s, Token(3));
        }
        let (mut closed, mut returned) = (0, 0);
        while closed < 3 || returned < outstanding {
            match h.next().event {
                Event::Closed { .. } => closed += 1,
                Event::ReceivedFrom { buf, result, .. } => {
                    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
                    assert_eq!(buf.capacity(), 512);
                    returned += 1;
                }
                Event::SentTo { buf, result, .. } => {
                    assert!(
                        matches!(result, Ok(100) | Err(Error::Cancelled)),
                        "{result:?}"
                    );
                    assert_eq!(buf.len(), 100);
                    returned += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(h.reactor.socket_count(), 0);
    }
    assert_eq!(open_fds(), before, "descriptors leaked");
    std::fs::remove_file(&pa).expect("remove a");
    std::fs::remove_file(&pb).expect("remove b");
}

// ----- multishot receive, zero-copy send, operation timeouts, connection properties.

/// Says on stderr which io_uring fast paths this kernel gave the reactor (for the report).
fn note_capabilities(h: &Harness, case: &str) {
    let caps = h.reactor.capabilities();
    eprintln!(
        "{case} on {}: multishot_recv={} provided_buffers={} zero_copy_send={} operation_timeouts={}",
        h.reactor.backend(),
        caps.multishot_recv,
        caps.provided_buffers,
        caps.zero_copy_send,
        caps.operation_timeouts
    );
}

/// Polls without blocking a few times, so buffers whose `Bytes` were dropped are collected:
/// enough times for the reactor to look at every lent buffer (it looks at a bounded number
/// per poll) and then some.
pub fn settle(h: &mut Harness) {
    let lent = h.reactor.stats().recv_buffers_lent;
    for _ in 0..3 + lent.div_ceil(16) {
        let mut out = Vec::new();
        h.reactor
            .poll(&mut out, Some(Duration::ZERO))
            .expect("poll");
        h.queue.extend(out);
    }
}

/// Collects a multishot receive's chunks until its last completion; the stream must end
/// with end of stream. Returns the bytes and how many chunks carried them. Other completions
/// (sends, shutdowns) must succeed.
pub fn collect_multishot(h: &mut Harness, socket: SocketId, max_chunk: usize) -> (Vec<u8>, usize) {
    let (mut all, mut chunks) = (Vec::new(), 0);
    loop {
        let c = h.next();
        match c.event {
            Event::ReceivedBytes {
                socket: s,
                result: Ok(bytes),
                more,
            } if s == socket => {
                if !more {
                    assert!(bytes.is_empty(), "the last completion carries no data");
                    return (all, chunks);
                }
                assert!(!bytes.is_empty(), "a chunk with `more` carries data");
                assert!(bytes.len() <= max_chunk, "chunk larger than a pool buffer");
                all.extend_from_slice(&bytes);
                chunks += 1;
            }
            Event::Sent { result, .. } | Event::SentVectored { result, .. } => {
                result.expect("send");
            }
            Event::Shutdown { result, .. } => result.expect("shutdown"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A large transfer into a multishot receive, delivered in order byte for byte.
fn multishot_transfer(backend: Backend, config: &ReactorConfig) {
    const BIG: usize = 6 << 20;
    let mut h = Harness::with_config(backend, config);
    note_capabilities(&h, "multishot_transfer");
    let (_, client, server) = connected_pair(&mut h, &[]);
    h.reactor.recv_multishot(server, Token(7));
    h.reactor
        .send(client, Bytes::from(pattern_bytes(0, BIG)), Token(1));
    let mut at = BIG;
    let pieces: Vec<Bytes> = [1usize, 70_000, 3, 300_000]
        .iter()
        .map(|&len| {
            let b = Bytes::from(pattern_bytes(at, len));
            at += len;
            b
        })
        .collect();
    h.reactor.send_vectored(client, pieces, Token(2));
    for _ in 0..100 {
        h.reactor
            .send(client, Bytes::from(pattern_bytes(at, 17)), Token(3));
        at += 17;
    }
    h.reactor.shutdown(client, Shutdown::Write, Token(4));
    let (got, chunks) = collect_multishot(&mut h, server, config.recv_buffer_size);
    assert_eq!(got.len(), at, "every byte arrived");
    assert!(
        got.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "byte stream corrupted"
    );
    let stats = h.reactor.stats();
    eprintln!("{chunks} chunks; {stats:?}");
    let caps = h.reactor.capabilities();
    assert_eq!(caps.multishot_recv, stats.multishot_arms > 0);
    if backend == Backend::Mio || !config.multishot_recv {
        assert!(!caps.multishot_recv, "emulated");
    }
    // Every chunk was dropped: every buffer is back once the reactor looks.
    settle(&mut h);
    assert_eq!(h.reactor.stats().recv_buffers_lent, 0, "buffers returned");
}

pub fn multishot_large_transfer(backend: Backend) {
    if !available(backend) {
        return;
    }
    multishot_transfer(backend, &ReactorConfig::default());
}

/// The portable path: multishot receive emulated even where the kernel has it.
pub fn multishot_emulated(backend: Backend) {
    if !available(backend) {
        return;
    }
    let config = ReactorConfig::default()
        .multishot_recv(false)
        .recv_buffer_size(4096);
    multishot_transfer(backend, &config);
}

/// Many connections each stream their own pattern into a multishot receive on a small
/// pool, with every chunk kept until its connection ends: the pool runs low, chunks get
/// copied instead of lent, no connection starves, every stream arrives intact.
pub fn multishot_many_connections(backend: Backend) {
    if !available(backend) {
        return;
    }
    const N: usize = 100;
    const LEN: usize = 200_000;
    const SIZE: usize = 4096;
    let config = ReactorConfig::default()
        .recv_buffer_count(64)
        .recv_buffer_size(SIZE);
    let mut h = Harness::with_config(backend, &config);
    let (listener, addr) = h.listen();
    h.reactor.accept(listener, Token(u64::MAX));
    let mut clients = HashMap::new();
    for i in 0..N {
        let c = h
            .reactor
            .connect(addr, &[], Token(i as u64))
            .expect("connect");
        clients.insert(c, i);
    }
    // Which client a server socket talks to: the client sends its index first.
    let mut servers: HashMap<SocketId, (Option<usize>, Vec<Bytes>)> = HashMap::new();
    let mut done = 0;
    let mut peak_lent = 0;
    while done < N {
        let c = h.next();
        match c.event {
            Event::Accepted { result, .. } => {
                let s = result.expect("accept");
                servers.insert(s, (None, Vec::new()));
                h.reactor.recv_multishot(s, Token(1000));
            }
            Event::Connected { socket, result } => {
                result.expect("connected");
                let i = clients[&socket];
                let mut payload = (i as u32).to_le_bytes().to_vec();
                payload.extend(pattern_bytes(i * 7919, LEN));
                h.reactor.send(socket, Bytes::from(payload), Token(1));
                h.reactor.shutdown(socket, Shutdown::Write, Token(2));
            }
            Event::ReceivedBytes {
                socket,
                result,
                more,
            } => {
                let bytes = result.expect("multishot");
                let entry = servers.get_mut(&socket).expect("server");
                if more {
                    assert!(bytes.len() <= SIZE);
                    entry.1.push(bytes);
                    peak_lent = peak_lent.max(h.reactor.stats().recv_buffers_lent);
                    continue;
                }
                let mut all = Vec::new();
                for b in entry.1.drain(..) {
                    all.extend_from_slice(&b);
                }
                let i = u32::from_le_bytes(all[..4].try_into().expect("index")) as usize;
                assert!(
                    entry.0.replace(i).is_none(),
                    "one end of stream per connection"
                );
                assert_eq!(all.len(), 4 + LEN, "connection {i} complete");
                assert!(
                    all[4..] == pattern_bytes(i * 7919, LEN)[..],
                    "connection {i} intact"
                );
                done += 1;
                h.reactor.close(socket, Token(3));
            }
            Event::Sent { result, .. } => {
                result.expect("send");
            }
            Event::Shutdown { result, .. } => result.expect("shutdown"),
            Event::Closed { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let stats = h.reactor.stats();
    eprintln!("peak lent {peak_lent}; {stats:?}");
    assert!(peak_lent <= 64);
    assert!(
        stats.recv_copied > 0,
        "chunks held by the consumer make the reactor copy"
    );
    settle(&mut h);
    assert_eq!(h.reactor.stats().recv_buffers_lent, 0);
}

/// The rules and the control paths: no mixing with plain receives, cancel keeps data that
/// arrives later for the next receive, pause holds data back until resume.
pub fn multishot_control(backend: Backend) {
    if !available(backend) {
        return;
    }
    let mut h = Harness::new(backend);
    let (listener, client, server) = connected_pair(&mut h, &[]);
    // Not with a plain receive outstanding, and not twice.
    h.reactor
        .recv(server, BytesMut::with_capacity(16), Token(1));
    h.reactor.recv_multishot(server, Token(2));
    match h.next().event {
        Event::ReceivedBytes {
            result: Err(Error::Unsupported(_)),
            more: false,
            ..
        } => {}
        other => panic!("unexpected {other:?}"),
    }
    h.reactor.send(client, Bytes::from_static(b"x"), Token(3));
    let mut got_plain = false;
    while !got_plain {
        match h.next().event {
            Event::Received { buf, result, .. } => {
                assert_eq!(result.expect("recv"), 1);
                assert_eq!(&buf[..], b"x");
                got_plain = true;
            }
            Event::Sent { result, .. } => {
                result.expect("send");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(matches!(
        h.reactor.cancel_recv_multishot(server),
        Err(Error::InvalidArgument(_))
    ));
    // Multishot on a listener is refused.
    h.reactor.recv_multishot(listener, Token(4));
    assert!(matches!(
        h.next().event,
        Event::ReceivedBytes {
            result: Err(Error::Unsupported(_)),
            more: false,
            ..
        }
    ));

    h.reactor.recv_multishot(server, Token(5));
    // A plain receive on a socket with a multishot receive is refused.
    h.reactor
        .recv(server, BytesMut::with_capacity(16), Token(6));
    assert!(matches!(
        h.next().event,
        Event::Received {
            result: Err(Error::Unsupported(_)),
            ..
        }
    ));
    // Pause: data sent meanwhile is not delivered until resume.
    h.reactor.pause_recv(server).expect("pause");
    h.reactor
        .send(client, Bytes::from_static(b"held back"), Token(7));
    for c in h.drain_for(Duration::from_millis(200)) {
        match c.event {
            Event::Sent { result, .. } => assert_eq!(result.expect("send"), 9),
            other => panic!("delivered while paused: {other:?}"),
        }
    }
    h.reactor.resume_recv(server).expect("resume");
    let mut got = Vec::new();
    while got.len() < 9 {
        match h.next().event {
            Event::ReceivedBytes {
                result: Ok(b),
                more: true,
                ..
            } => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, b"held back");
    // Cancel: the last completion says so; data sent afterwards waits in the socket.
    h.reactor.cancel_recv_multishot(server).expect("cancel");
    match h.next().event {
        Event::ReceivedBytes {
            result: Err(Error::Cancelled),
            more: false,
            ..
        } => {}
        other => panic!("unexpected {other:?}"),
    }
    h.reactor
        .send(client, Bytes::from_static(b"later"), Token(8));
    h.reactor
        .recv(server, BytesMut::with_capacity(16), Token(9));
    let mut got = Vec::new();
    while got.len() < 5 {
        match h.next().event {
            Event::Received { buf, result, .. } => {
                result.expect("recv");
                got.extend_from_slice(&buf);
                if got.len() < 5 {
                    h.reactor.recv(server, buf, Token(9));
                }
            }
            Event::Sent { result, .. } => {
                result.expect("send");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, b"later");
    // A peer reset ends a multishot receive with the error.
    h.reactor.recv_multishot(server, Token(10));
    h.reactor
        .set_option(client, SockOpt::Linger(Some(Duration::ZERO)))
        .expect("linger");
    h.reactor.close(client, Token(11));
    loop {
        match h.next().event {
            Event::Closed { .. } => {}
            Event::ReceivedBytes {
                result: Err(e),
                more: false,
                ..
            } => {
                assert!(matches!(e, Error::ConnectionReset), "{e:?}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Waits until the reactor has no zero-copy notification outstanding.
fn wait_zero_copy_released(h: &mut Harness) {
    let deadline = Instant::now() + WAIT;
    while h.reactor.stats().zero_copy_pending > 0 {
        assert!(
            Instant::now() < deadline,
            "zero-copy notifications never came"
        );
        let mut out = Vec::new();
        h.reactor
            .poll(&mut out, Some(Duration::from_millis(10)))
            .expect("poll");
        h.queue.extend(out);
    }
}

/// 1 MiB payloads (plain and vectored, with small sends between them and a small send
/// buffer forcing partial sends): zero copy where the backend has it, in order, byte for
/// byte, and every buffer released (unique again) once the kernel's notifications came.
fn zero_copy_transfer(backend: Backend, config: &ReactorConfig) {
    const MIB: usize = 1 << 20;
    let mut h = Harness::with_config(backend, config);
    note_capabilities(&h, "zero_copy_transfer");
    let (_, client, server) = connected_pair(&mut h, &[]);
    h.reactor
        .set_option(client, SockOpt::SendBuffer(256 << 10))
        .expect("sndbuf");
    let mut at = 0;
    let mut expected_order = Vec::new();
    // The first large send is vectored: on loopback the kernel copies zero-copy sends and
    // the reactor then stops using zero copy on the connection, so the first one is the one
    // sure to take the zero-copy path.
    for k in 0..6u64 {
        if k % 3 == 0 {
            let pieces: Vec<Bytes> = [MIB / 2, 1, MIB / 2 - 1]
                .iter()
                .map(|&len| {
                    let b = Bytes::from(pattern_bytes(at, len));
                    at += len;
                    b
                })
                .collect();
            h.reactor.send_vectored(client, pieces, Token(k * 2));
        } else {
            h.reactor
                .send(client, Bytes::from(pattern_bytes(at, MIB)), Token(k * 2));
            at += MIB;
        }
        expected_order.push(Token(k * 2));
        // Below the threshold: an ordinary send between the large ones.
        h.reactor.send(
            client,
            Bytes::from(pattern_bytes(at, 100)),
            Token(k * 2 + 1),
        );
        at += 100;
        expected_order.push(Token(k * 2 + 1));
    }
    h.reactor.shutdown(client, Shutdown::Write, Token(99));
    expected_order.push(Token(99));

    let mut got = Vec::new();
    let (mut order, mut returned) = (Vec::new(), Vec::new());
    h.reactor
        .recv(server, BytesMut::with_capacity(256 << 10), Token(100));
    let mut eof = false;
    while !eof || order.len() < expected_order.len() {
        let c = h.next();
        match c.event {
            Event::Received { buf, result, .. } => {
                if result.expect("recv") == 0 {
                    eof = true;
                    continue;
                }
                got.extend_from_slice(&buf);
                let mut buf = buf;
                buf.clear();
                h.reactor.recv(server, buf, Token(100));
            }
            Event::Sent { buf, result, .. } => {
                assert_eq!(result.expect("send"), buf.len());
                order.push(c.token);
                returned.push(buf);
            }
            Event::SentVectored { bufs, result, .. } => {
                assert_eq!(result.expect("sendv"), MIB);
                order.push(c.token);
                returned.extend(bufs);
            }
            Event::Shutdown { result, .. } => {
                result.expect("shutdown");
                order.push(c.token);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(order, expected_order, "writes complete in submission order");
    assert_eq!(got.len(), at);
    assert!(
        got.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "byte stream corrupted"
    );
    let stats = h.reactor.stats();
    eprintln!("{stats:?}");
    let zc = h.reactor.capabilities().zero_copy_send;
    assert_eq!(zc, stats.zero_copy_sends > 0, "large sends go zero copy");
    if stats.zero_copy_copied > 0 {
        // The kernel reported copying: the connection went back to copying sends, so fewer
        // zero-copy sends than the six large payloads need even unsplit.
        assert!(stats.zero_copy_sends < 6, "{stats:?}");
    }
    wait_zero_copy_released(&mut h);
    for b in returned {
        assert!(b.is_unique(), "the reactor released every buffer");
    }
}

pub fn zero_copy_send(backend: Backend) {
    if !available(backend) {
        return;
    }
    zero_copy_transfer(backend, &ReactorConfig::default());
}

/// The portable path: zero copy off.
pub fn zero_copy_disabled(backend: Backend) {
    if !available(backend) {
        return;
    }
    let config = ReactorConfig::default().zero_copy_threshold(None);
    let h = Harness::with_config(backend, &config);
    assert!(!h.reactor.capabilities().zero_copy_send);
    drop(h);
    zero_copy_transfer(backend, &config);
}

/// A receive deadline fires on a silent peer (the buffer comes back, the connection stays
/// usable), does not fire when data arrives first, and a close still reports `Cancelled`.
pub fn recv_timeout(backend: Backend) {
    if !available(backend) {
        return;
    }
    let mut h = Harness::new(backend);
    assert!(h.reactor.capabilities().operation_timeouts);
    let (_, client, server) = connected_pair(&mut h, &[]);
    let start = Instant::now();
    h.reactor.recv_timeout(
        server,
        BytesMut::with_capacity(64),
        Duration::from_millis(200),
        Token(1),
    );
    match h.next().event {
        Event::Received {
            result: Err(Error::TimedOut),
            buf,
            ..
        } => {
            assert_eq!(buf.capacity(), 64, "buffer handed back");
            assert!(buf.is_empty());
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(190),
        "fired early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "fired late: {waited:?}");

    // Data within the deadline: delivered, and the deadline never fires afterwards.
    h.reactor.recv_timeout(
        server,
        BytesMut::with_capacity(64),
        Duration::from_millis(300),
        Token(2),
    );
    h.reactor
        .send(client, Bytes::from_static(b"hello"), Token(3));
    let mut got = false;
    while !got {
        match h.next().event {
            Event::Received { buf, result, .. } => {
                assert_eq!(result.expect("recv"), 5);
                assert_eq!(&buf[..], b"hello");
                got = true;
            }
            Event::Sent { result, .. } => {
                result.expect("send");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for c in h.drain_for(Duration::from_millis(500)) {
        match c.event {
            Event::Sent { .. } => {}
            other => panic!("after data arrived: {other:?}"),
        }
    }

    // Two queued: the second's clock starts when it becomes active.
    h.reactor.recv_timeout(
        server,
        BytesMut::with_capacity(8),
        Duration::from_millis(100),
        Token(4),
    );
    h.reactor.recv_timeout(
        server,
        BytesMut::with_capacity(8),
        Duration::from_millis(100),
        Token(5),
    );
    let mut timed_out = Vec::new();
    while timed_out.len() < 2 {
        let c = h.next();
        match c.event {
            Event::Received {
                result: Err(Error::TimedOut),
                ..
            } => timed_out.push(c.token),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(timed_out, vec![Token(4), Token(5)], "in order");

    // Closing the socket cancels a timed receive: `Cancelled`, not `TimedOut`.
    h.reactor.recv_timeout(
        server,
        BytesMut::with_capacity(8),
        Duration::from_secs(10),
        Token(6),
    );
    h.reactor
        .poll(&mut Vec::new(), Some(Duration::ZERO))
        .expect("submit");
    h.reactor.close(server, Token(7));
    let mut seen = 0;
    while seen < 2 {
        match h.next().event {
            Event::Received {
                result: Err(Error::Cancelled),
                ..
            } => seen += 1,
            Event::Closed { socket } => {
                assert_eq!(socket, server);
                seen += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it
/// hangs. Returns the listener and the connections filling its queue.
fn full_listener() -> (socket2::Socket, SocketAddr, Vec<TcpStream>) {
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    listener.bind(&any.into()).expect("bind");
    listener.listen(0).expect("listen");
    let addr = listener
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("inet");
    let mut fill = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fill.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return (listener, addr, fill),
            Err(e) => panic!("filling the accept queue: {e}"),
        }
    }
    panic!("the accept queue never filled up");
}

/// A connect deadline fires on a peer that never answers, and does not fire on one that
/// does.
pub fn connect_timeout(backend: Backend) {
    if !available(backend) {
        return;
    }
    let mut h = Harness::new(backend);
    let (_listener, addr, _fill) = full_listener();
    let start = Instant::now();
    let s = h
        .reactor
        .connect_timeout(addr, &[], Duration::from_millis(300), Token(1))
        .expect("connect");
    match h.next().event {
        Event::Connected {
            socket,
            result: Err(Error::TimedOut),
        } => assert_eq!(socket, s),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(290),
        "fired early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "fired late: {waited:?}");
    h.reactor.close(s, Token(2));
    assert!(matches!(h.next().event, Event::Closed { .. }));

    // A listener that answers: connected, and the deadline stays quiet.
    let (listener, addr) = h.listen();
    h.reactor.accept(listener, Token(3));
    let c = h
        .reactor
        .connect_timeout(addr, &[], Duration::from_millis(200), Token(4))
        .expect("connect");
    let (mut connected, mut accepted) = (false, false);
    while !connected || !accepted {
        match h.next().event {
            Event::Connected { socket, result } => {
                assert_eq!(socket, c);
                result.expect("connected");
                connected = true;
            }
            Event::Accepted { result, .. } => {
                result.expect("accept");
                accepted = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let late = h.drain_for(Duration::from_millis(400));
    assert!(late.is_empty(), "after connecting: {late:?}");
}

/// Connection properties: id, addresses, MTU, segment size, buffer sizes.
pub fn connection_info(backend: Backend) {
    if !available(backend) {
        return;
    }
    let mut h = Harness::new(backend);
    let (listener, client, server) = connected_pair(&mut h, &[SockOpt::RecvBuffer(128 << 10)]);
    let ci = h.reactor.connection_info(client).expect("client info");
    let si = h.reactor.connection_info(server).expect("server info");
    assert_eq!(ci.id, client);
    assert_ne!(client.as_u64(), server.as_u64());
    assert_eq!(ci.peer_addr, si.local_addr);
    assert_eq!(si.peer_addr, ci.local_addr);
    let lo_mtu = std::fs::read_to_string("/sys/class/net/lo/mtu")
        .ok()
        .and_then(|m| m.trim().parse::<usize>().ok());
    match lo_mtu {
        // IPv4 caps a route's MTU at 65535 (IP_MAX_MTU) below loopback's 65536.
        Some(m) => assert_eq!(ci.mtu, Some(m.min(65535)), "loopback MTU"),
        None => assert!(matches!(ci.mtu, Some(n) if n >= 1280), "{ci:?}"),
    }
    assert!(
        matches!(ci.max_segment, Some(n) if n > 1000 && n < 65536),
        "{ci:?}"
    );
    assert!(
        matches!(ci.recv_buffer, Some(n) if n >= 128 << 10),
        "{ci:?}"
    );
    assert!(ci.send_buffer.is_some());
    let li = h.reactor.connection_info(listener).expect("listener info");
    assert_eq!(li.peer_addr, None);
    assert_eq!(li.mtu, None, "no path MTU before connecting");
    h.reactor.close(client, Token(1));
    assert!(matches!(h.next().event, Event::Closed { .. }));
    assert!(matches!(
        h.reactor.connection_info(client),
        Err(Error::InvalidSocket)
    ));
}

/// Multishot receives in flight with chunks still held, ended by cancel, by close and by
/// dropping the reactor: each ends exactly once, every pool buffer comes back, held chunks
/// stay valid after the reactor is gone, and no descriptor is left.
pub fn multishot_cancel_in_flight(backend: Backend) {
    if !available(backend) {
        return;
    }
    const N: usize = 40;
    let before = open_fds();
    let kept: Vec<Bytes>;
    {
        let mut h = Harness::new(backend);
        let (listener, addr) = h.listen();
        h.reactor.accept(listener, Token(0));
        let mut clients = Vec::new();
        for _ in 0..N {
            clients.push(h.reactor.connect(addr, &[], Token(1)).expect("connect"));
        }
        let (mut servers, mut connected) = (Vec::new(), 0);
        while servers.len() < N || connected < N {
            match h.next().event {
                Event::Accepted { result, .. } => {
                    let s = result.expect("accept");
                    h.reactor.recv_multishot(s, Token(2));
                    servers.push(s);
                }
                Event::Connected { result, .. } => {
                    result.expect("connect");
                    connected += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        for &c in &clients {
            h.reactor
                .send(c, Bytes::from(pattern_bytes(0, 40_000)), Token(3));
        }
        // Receive some of it, keeping every chunk.
        let mut held: Vec<Bytes> = Vec::new();
        let mut sent = 0;
        while held.len() < 2 * N || sent < N {
            match h.next().event {
                Event::ReceivedBytes {
                    result: Ok(b),
                    more: true,
                    ..
                } => held.push(b),
                Event::Sent { result, .. } => {
                    result.expect("send");
                    sent += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            h.reactor.stats().recv_buffers_lent > 0 || !h.reactor.capabilities().multishot_recv
        );
        // Half are cancelled, half closed with the multishot in flight; clients close too.
        let (cancel, close) = servers.split_at(N / 2);
        for &s in cancel {
            h.reactor.cancel_recv_multishot(s).expect("cancel");
        }
        for &s in close.iter().chain(&clients).chain([&listener]) {
            h.reactor.close(s, Token(4));
        }
        let mut finals: HashMap<SocketId, usize> = HashMap::new();
        let mut closed = 0;
        while closed < N + N / 2 + 1 || finals.len() < N {
            match h.next().event {
                Event::ReceivedBytes {
                    socket,
                    result,
                    more,
                } => {
                    if more {
                        held.push(result.expect("data"));
                        continue;
                    }
                    // Cancelled, or (cancelled ones) the peer's close seen first.
                    match result {
                        Err(Error::Cancelled) | Err(Error::ConnectionReset) => {}
                        Ok(b) => assert!(b.is_empty()),
                        Err(e) => panic!("{e:?}"),
                    }
                    *finals.entry(socket).or_default() += 1;
                }
                Event::Closed { .. } => closed += 1,
                Event::Sent { .. }
                | Event::Accepted {
                    result: Err(Error::Cancelled),
                    more: false,
                    ..
                } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            finals.values().all(|&n| n == 1),
            "exactly one last completion each"
        );
        for &s in cancel {
            h.reactor.close(s, Token(5));
        }
        let mut closed = 0;
        while closed < N / 2 {
            if let Event::Closed { .. } = h.next().event {
                closed += 1;
            }
        }
        assert_eq!(h.reactor.socket_count(), 0);
        // Dropping the chunks returns every buffer.
        let keep = held.split_off(held.len() - 3);
        drop(held);
        settle(&mut h);
        let lent = h.reactor.stats().recv_buffers_lent;
        assert!(lent <= 3, "only the kept chunks are out ({lent})");
        drop(keep);
        settle(&mut h);
        assert_eq!(h.reactor.stats().recv_buffers_lent, 0, "every buffer back");

        // Drop the reactor with a multishot receive armed and chunks held: the chunks stay
        // readable afterwards.
        let (_, client, server) = connected_pair(&mut h, &[]);
        h.reactor.recv_multishot(server, Token(6));
        h.reactor
            .send(client, Bytes::from(pattern_bytes(0, 1000)), Token(7));
        let mut got = Vec::new();
        let mut len = 0;
        while len < 1000 {
            match h.next().event {
                Event::ReceivedBytes {
                    result: Ok(b),
                    more: true,
                    ..
                } => {
                    len += b.len();
                    got.push(b);
                }
                Event::Sent { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        kept = got;
    }
    let all: Vec<u8> = kept.iter().flat_map(|b| b.iter().copied()).collect();
    assert_eq!(all, pattern_bytes(0, 1000), "chunks outlive the reactor");
    drop(kept);
    assert_eq!(open_fds(), before, "descriptors leaked");
}

// ----- Unix seqpacket sockets.

/// A connected seqpacket pair: (listener, client, server).
fn seqpacket_pair(h: &mut Harness, path: &std::path::Path) -> (SocketId, SocketId, SocketId) {
    let listener = h.reactor.listen_seqpacket(path).expect("listen seqpacket");
    h.reactor.accept(listener, Token(0));
    let client = h
        .reactor
        .connect_seqpacket(path, Token(1))
        .expect("connect seqpacket");
    let (mut server, mut connected) = (None, false);
    while server.is_none() || !connected {
        match h.next().event {
            Event::Accepted { result, .. } => server = Some(result.expect("accept")),
            Event::Connected { socket, result } => {
                assert_eq!(socket, client);
                result.expect("connected");
                connected = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (listener, client, server.expect("server"))
}

/// The next receive completion of `socket`: its buffer and result. Sends and shutdowns on
/// the way must succeed.
fn next_received(h: &mut Harness, socket: SocketId) -> (BytesMut, Result<usize, Error>) {
    loop {
        match h.next().event {
            Event::Received {
                socket: s,
                buf,
                result,
            } if s == socket => return (buf, result),
            Event::Sent { result: Ok(_), .. }
            | Event::SentVectored { result: Ok(_), .. }
            | Event::Shutdown { result: Ok(()), .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Unix `SOCK_SEQPACKET`: messages of different sizes (one sent vectored) arrive as exactly
/// as many receives, byte for byte, even with every receive queued before any data; a
/// message longer than the buffer is reported truncated; multishot receive is refused; the
/// kind is reported; half close, peer close (end of stream) and sending to a closed peer
/// (broken pipe) are detected. Backends without seqpacket refuse it with a typed error.
pub fn seqpacket(backend: Backend) {
    if !available(backend) {
        return;
    }
    let path = socket_path(backend, "seqpacket");
    let mut h = Harness::new(backend);
    if !h.reactor.capabilities().seqpacket {
        assert!(!h
            .reactor
            .capabilities()
            .supports(sinew_transports::ConnectionKind::SeqPacket));
        assert!(matches!(
            h.reactor.listen_seqpacket(&path),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            h.reactor.connect_seqpacket(&path, Token(1)),
            Err(Error::Unsupported(_))
        ));
        return;
    }
    assert!(h
        .reactor
        .capabilities()
        .supports(sinew_transports::ConnectionKind::SeqPacket));
    let (listener, client, server) = seqpacket_pair(&mut h, &path);
    for s in [client, server] {
        let info = h.reactor.connection_info(s).expect("info");
        assert_eq!(info.kind, Some(sinew_transports::ConnectionKind::SeqPacket));
    }

    // Receives queued before any data: each must still take exactly one message.
    const SIZES: [usize; 3] = [1, 3000, 70_000];
    for i in 0..SIZES.len() {
        h.reactor.recv(
            server,
            BytesMut::with_capacity(128 * 1024),
            Token(10 + i as u64),
        );
    }
    h.reactor
        .send(client, Bytes::from(pattern_bytes(0, SIZES[0])), Token(2));
    let second = pattern_bytes(SIZES[0], SIZES[1]);
    h.reactor.send_vectored(
        client,
        vec![
            Bytes::copy_from_slice(&second[..1000]),
            Bytes::copy_from_slice(&second[1000..]),
        ],
        Token(3),
    );
    h.reactor.send(
        client,
        Bytes::from(pattern_bytes(SIZES[0] + SIZES[1], SIZES[2])),
        Token(4),
    );
    let mut start = 0;
    for size in SIZES {
        let (buf, result) = next_received(&mut h, server);
        assert_eq!(result.expect("message"), size, "one receive, one message");
        assert_eq!(&buf[..], &pattern_bytes(start, size)[..]);
        start += size;
    }

    // A message longer than the buffer: the part that fit, and the full length.
    let long = pattern_bytes(7, 100);
    h.reactor.send(client, Bytes::from(long.clone()), Token(5));
    h.reactor
        .recv(server, BytesMut::with_capacity(10), Token(6));
    let (buf, result) = next_received(&mut h, server);
    match result {
        Err(Error::MessageTruncated { len: 100 }) => {}
        other => panic!("expected a truncated message, got {other:?}"),
    }
    assert!(!buf.is_empty() && buf.len() < 100);
    assert_eq!(&buf[..], &long[..buf.len()]);
    // The rest of that message is gone: the next receive gets the next message.
    h.reactor
        .send(client, Bytes::from_static(b"next"), Token(7));
    h.reactor
        .recv(server, BytesMut::with_capacity(64), Token(8));
    let (buf, result) = next_received(&mut h, server);
    assert_eq!(result.expect("next message"), 4);
    assert_eq!(&buf[..], b"next");

    h.reactor.recv_multishot(server, Token(9));
    match h.next().event {
        Event::ReceivedBytes {
            result: Err(Error::Unsupported(_)),
            more: false,
            ..
        } => {}
        other => panic!("expected multishot to be refused, got {other:?}"),
    }

    // Half close: the server sees end of stream and can still answer.
    h.reactor.shutdown(client, Shutdown::Write, Token(20));
    h.reactor
        .recv(server, BytesMut::with_capacity(64), Token(21));
    let (_, result) = next_received(&mut h, server);
    assert_eq!(result.expect("end of stream"), 0);
    h.reactor
        .send(server, Bytes::from_static(b"bye"), Token(22));
    h.reactor
        .recv(client, BytesMut::with_capacity(64), Token(23));
    let (buf, result) = next_received(&mut h, client);
    assert_eq!(result.expect("answer"), 3);
    assert_eq!(&buf[..], b"bye");

    // Peer close: a receive sees end of stream, a send a broken pipe.
    h.reactor.close(server, Token(24));
    h.reactor
        .recv(client, BytesMut::with_capacity(64), Token(25));
    let mut eof = false;
    while !eof {
        match h.next().event {
            Event::Closed { socket } => assert_eq!(socket, server),
            Event::Received {
                socket,
                result: Ok(0),
                ..
            } if socket == client => eof = true,
            // The client's shutdown may be reaped this late.
            Event::Shutdown { result: Ok(()), .. } | Event::Sent { result: Ok(_), .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    h.reactor
        .send(client, Bytes::from_static(b"late"), Token(26));
    match h.next().event {
        Event::Sent { result: Err(e), .. } => assert!(
            matches!(e, Error::BrokenPipe | Error::ConnectionReset),
            "{e:?}"
        ),
        other => panic!("expected a failed send, got {other:?}"),
    }
    for s in [client, listener] {
        h.reactor.close(s, Token(27));
    }
    let mut closed = 0;
    while closed < 2 {
        match h.next().event {
            Event::Closed { .. } => closed += 1,
            Event::Accepted {
                result: Err(Error::Cancelled),
                more: false,
                ..
            } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(h.reactor.socket_count(), 0);
    std::fs::remove_file(&path).expect("remove socket file");
}

/// The readiness a short read leaves behind: after a receive that emptied the socket, a new
/// receive must still complete when more data comes (no lost wake-up), when end of stream
/// arrives on its own, and when data and end of stream arrive together; a receive after a
/// read that filled its buffer exactly must find the rest without a new edge. The peer is a
/// plain `TcpStream` on this thread, so each step happens in a known order.
pub fn short_reads(backend: Backend) {
    if !available(backend) {
        return;
    }
    let mut h = Harness::new(backend);
    let (listener, addr) = h.listen();
    h.reactor.accept(listener, Token(0));
    let mut peer = TcpStream::connect(addr).expect("connect");
    peer.set_nodelay(true).expect("nodelay");
    let conn = h.accepted();
    // Reads `want` bytes with receives of `cap` bytes, one at a time.
    let read = |h: &mut Harness, want: usize, cap: usize| {
        let mut got = Vec::new();
        while got.len() < want {
            h.reactor.recv(conn, BytesMut::with_capacity(cap), Token(1));
            let (buf, result) = next_received(h, conn);
            assert!(result.expect("data") > 0, "unexpected end of stream");
            got.extend_from_slice(&buf);
        }
        got
    };
    // Data, then a receive submitted after the short read that consumed it, then more data.
    for round in 0..20 {
        let msg = pattern_bytes(round * 100, 10 + round);
        peer.write_all(&msg).expect("write");
        assert_eq!(read(&mut h, msg.len(), 16 * 1024), msg);
        h.reactor
            .recv(conn, BytesMut::with_capacity(16 * 1024), Token(2));
        // Nothing is there yet: the receive waits (its completion must not be early).
        assert!(h.drain_for(Duration::from_millis(5)).is_empty());
        let more = pattern_bytes(round * 100 + 50, 7);
        peer.write_all(&more).expect("write");
        let (buf, result) = next_received(&mut h, conn);
        assert_eq!(result.expect("more"), 7);
        assert_eq!(&buf[..], &more[..]);
    }
    // A read that fills its buffer exactly leaves the rest for the next receive.
    let block = pattern_bytes(0, 3000);
    peer.write_all(&block).expect("write");
    let mut got = Vec::new();
    while got.len() < block.len() {
        got.extend(read(&mut h, 1, 1000));
    }
    assert_eq!(got, block);
    // Data and end of stream together, the second receive submitted after the short read.
    peer.write_all(b"tail").expect("write");
    peer.shutdown(Shutdown::Write).expect("half close");
    assert_eq!(read(&mut h, 4, 64), b"tail");
    h.reactor.recv(conn, BytesMut::with_capacity(64), Token(3));
    let (_, result) = next_received(&mut h, conn);
    assert_eq!(result.expect("end of stream"), 0);
    // End of stream is sticky: every later receive sees it at once.
    h.reactor.recv(conn, BytesMut::with_capacity(64), Token(4));
    let (_, result) = next_received(&mut h, conn);
    assert_eq!(result.expect("end of stream again"), 0);
}

/// A short read followed by end of stream alone (no data with it): the receive waiting
/// after the short read completes with end of stream.
pub fn short_read_then_eof(backend: Backend) {
    if !available(backend) {
        return;
    }
    let mut h = Harness::new(backend);
    let (listener, addr) = h.listen();
    h.reactor.accept(listener, Token(0));
    let mut peer = TcpStream::connect(addr).expect("connect");
    let conn = h.accepted();
    peer.write_all(b"abc").expect("write");
    let mut got = Vec::new();
    while got.len() < 3 {
        h.reactor.recv(conn, BytesMut::with_capacity(64), Token(1));
        let (buf, result) = next_received(&mut h, conn);
        assert!(result.expect("data") > 0);
        got.extend_from_slice(&buf);
    }
    assert_eq!(got, b"abc");
    h.reactor.recv(conn, BytesMut::with_capacity(64), Token(2));
    drop(peer);
    let (_, result) = next_received(&mut h, conn);
    assert_eq!(result.expect("end of stream"), 0);
}

// ----- the registered send pool.

/// Messages encoded straight into registered send buffers (small ones, ones above the
/// zero-copy threshold, and slices of one) arrive byte for byte; on io_uring they use the
/// ring's fixed buffer. The pool runs out while its `Bytes` are held and refills once they
/// drop; a reactor without a pool has none to give.
pub fn registered_send(backend: Backend) {
    if !available(backend) {
        return;
    }
    // More buffers than the messages below, which are all in flight at once.
    const COUNT: usize = 16;
    const SIZE: usize = 64 * 1024;
    let config = ReactorConfig::default().registered_buffers(COUNT, SIZE);
    let mut h = Harness::with_config(backend, &config);
    if backend == Backend::Sim {
        // The simulated network has no kernel and no pool.
        assert!(h.reactor.fill_registered(|_| 0).is_none());
        return;
    }
    let registered = h.reactor.capabilities().registered_buffers;
    assert_eq!(registered, backend == Backend::Uring, "{backend}");
    let (_, client, server) = connected_pair(&mut h, &[]);
    let mut expected = Vec::new();
    let sizes = [1, 100, 4096, 20_000, SIZE, 3000, 40_000, 7];
    for (k, &len) in sizes.iter().enumerate() {
        let start = expected.len();
        let msg = h
            .reactor
            .fill_registered(|buf| {
                assert_eq!(buf.len(), SIZE);
                buf[..len].copy_from_slice(&pattern_bytes(start, len));
                len
            })
            .expect("a free registered buffer");
        assert_eq!(msg.len(), len);
        expected.extend_from_slice(&msg);
        h.reactor.send(client, msg, Token(10 + k as u64));
    }
    // A slice of a registered buffer is registered memory too.
    let start = expected.len();
    let whole = h
        .reactor
        .fill_registered(|buf| {
            buf[..1000].copy_from_slice(&pattern_bytes(start - 10, 1000));
            1000
        })
        .expect("buffer");
    let part = whole.slice(10..);
    expected.extend_from_slice(&part);
    drop(whole);
    h.reactor.send(client, part, Token(30));
    h.reactor.shutdown(client, Shutdown::Write, Token(31));
    let got = read_to_end(&mut h, server);
    assert_eq!(got.len(), expected.len());
    assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    assert_eq!(got, expected);
    let stats = h.reactor.stats();
    eprintln!("registered_send on {backend}: {stats:?}");
    if registered {
        assert!(stats.registered_sends > 0, "{stats:?}");
    } else {
        assert_eq!(stats.registered_sends, 0);
    }

    // Every buffer lent: none left until one comes back.
    settle(&mut h);
    wait_zero_copy_released(&mut h);
    let held: Vec<Bytes> = (0..COUNT)
        .map(|_| h.reactor.fill_registered(|_| 1).expect("buffer"))
        .collect();
    assert_eq!(h.reactor.stats().registered_buffers_lent, COUNT);
    assert!(h.reactor.fill_registered(|_| 1).is_none(), "pool exhausted");
    drop(held);
    assert!(
        h.reactor.fill_registered(|_| 1).is_some(),
        "buffers came back"
    );

    let mut plain = Harness::new(backend);
    assert!(plain.reactor.fill_registered(|_| 0).is_none());
    assert!(!plain.reactor.capabilities().registered_buffers);
}
