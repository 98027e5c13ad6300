//! Per-listener backend selection: a listener may ask for another backend than its
//! reactor's, which then hosts that backend beside its own.

mod common;

use std::net::Shutdown;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{available, pattern, pattern_bytes, read_to_end, thousand_connections_on, Harness};
use sinew_transports::{Backend, Error, Event, Token};

/// A reactor on `own` with a listener on `hosted`: connections accepted there run on
/// `hosted`, a client on `own` talks to them both ways (a large transfer, checked byte for
/// byte), receive deadlines fire on the hosted side, blocking polls wake for the hosted
/// backend's events, and closing everything leaves no socket behind.
fn listener_on(own: Backend, hosted: Backend) {
    if !available(own) || !available(hosted) {
        return;
    }
    const SIZE: usize = 4 << 20;
    let mut h = Harness::new(own);
    let listener = h
        .reactor
        .listen_on(hosted, "127.0.0.1:0".parse().expect("addr"), &[])
        .expect("listen on the hosted backend");
    assert_eq!(h.reactor.socket_backend(listener).ok(), Some(hosted));
    assert_eq!(h.reactor.backends(), vec![own, hosted]);
    assert!(h.reactor.backend_capabilities(hosted).is_some());
    let addr = h.reactor.local_addr(listener).expect("local addr");
    h.reactor.accept(listener, Token(0));
    let client = h.reactor.connect(addr, &[], Token(1)).expect("connect");
    assert_eq!(h.reactor.socket_backend(client).ok(), Some(own));
    let (mut server, mut connected) = (None, false);
    while server.is_none() || !connected {
        match h.next().event {
            Event::Accepted {
                listener: l,
                result,
                ..
            } => {
                assert_eq!(l, listener);
                server = Some(result.expect("accept"));
            }
            Event::Connected { socket, result } => {
                assert_eq!(socket, client);
                result.expect("connected");
                connected = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let server = server.expect("server");
    assert_eq!(h.reactor.socket_backend(server).ok(), Some(hosted));
    let info = h.reactor.connection_info(server).expect("info");
    assert_eq!(info.id, server);
    assert_eq!(info.local_addr, Some(addr));

    // A receive deadline on the hosted side fires while the reactor blocks in its own
    // backend (nothing else is happening).
    h.reactor.recv_timeout(
        server,
        BytesMut::with_capacity(64),
        Duration::from_millis(20),
        Token(2),
    );
    match h.next().event {
        Event::Received {
            socket,
            result: Err(Error::TimedOut),
            ..
        } => assert_eq!(socket, server),
        other => panic!("expected the hosted receive to time out, got {other:?}"),
    }

    // Client (own backend) to server (hosted), then back.
    h.reactor
        .send(client, Bytes::from(pattern_bytes(0, SIZE)), Token(3));
    h.reactor.shutdown(client, Shutdown::Write, Token(4));
    let got = read_to_end(&mut h, server);
    assert_eq!(got.len(), SIZE);
    assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    h.reactor
        .send(server, Bytes::from(pattern_bytes(1, SIZE)), Token(5));
    h.reactor.shutdown(server, Shutdown::Write, Token(6));
    let back = read_to_end(&mut h, client);
    assert_eq!(back.len(), SIZE);
    assert!(back.iter().enumerate().all(|(i, &b)| b == pattern(i + 1)));

    for s in [client, server, listener] {
        h.reactor.close(s, Token(7));
    }
    let mut closed = Vec::new();
    while closed.len() < 3 {
        match h.next().event {
            Event::Closed { socket } => closed.push(socket),
            Event::Accepted {
                result: Err(Error::Cancelled),
                more: false,
                ..
            }
            | Event::Sent { result: Ok(_), .. }
            | Event::Shutdown { result: Ok(()), .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    closed.sort_by_key(|s| s.as_u64());
    let mut want = vec![client, server, listener];
    want.sort_by_key(|s| s.as_u64());
    assert_eq!(closed, want);
    assert_eq!(h.reactor.socket_count(), 0);
    assert!(matches!(
        h.reactor.socket_backend(server),
        Err(Error::InvalidSocket)
    ));
}

#[test]
fn mio_listener_in_uring_reactor() {
    listener_on(Backend::Uring, Backend::Mio);
}

#[test]
fn uring_listener_in_mio_reactor() {
    listener_on(Backend::Mio, Backend::Uring);
}

/// A hosted backend's events wake a reactor blocked in its own backend from another
/// thread's connect, with no timeout at all.
fn wakes_blocked_poll(own: Backend, hosted: Backend) {
    if !available(own) || !available(hosted) {
        return;
    }
    let mut h = Harness::new(own);
    let listener = h
        .reactor
        .listen_on(hosted, "127.0.0.1:0".parse().expect("addr"), &[])
        .expect("listen");
    let addr = h.reactor.local_addr(listener).expect("addr");
    h.reactor.accept(listener, Token(0));
    let peer = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(b"hello").expect("write");
        let mut reply = [0u8; 5];
        s.read_exact(&mut reply).expect("read");
        reply
    });
    let mut out = Vec::new();
    let mut conn = None;
    while conn.is_none() {
        h.reactor.poll(&mut out, None).expect("poll");
        for c in out.drain(..) {
            if let Event::Accepted { result, .. } = c.event {
                conn = Some(result.expect("accept"));
            }
        }
    }
    let conn = conn.expect("conn");
    let mut got = Vec::new();
    while got.len() < 5 {
        h.reactor.recv(conn, BytesMut::with_capacity(64), Token(1));
        let mut done = false;
        while !done {
            h.reactor.poll(&mut out, None).expect("poll");
            for c in out.drain(..) {
                if let Event::Received { buf, result, .. } = c.event {
                    assert!(result.expect("recv") > 0);
                    got.extend_from_slice(&buf);
                    done = true;
                }
            }
        }
    }
    assert_eq!(got, b"hello");
    h.reactor.send(conn, Bytes::from_static(b"world"), Token(2));
    let mut sent = false;
    while !sent {
        h.reactor.poll(&mut out, None).expect("poll");
        for c in out.drain(..) {
            if let Event::Sent { result, .. } = c.event {
                assert_eq!(result.expect("send"), 5);
                sent = true;
            }
        }
    }
    assert_eq!(&peer.join().expect("peer"), b"world");
}

#[test]
fn hosted_mio_wakes_uring_reactor() {
    wakes_blocked_poll(Backend::Uring, Backend::Mio);
}

#[test]
fn hosted_uring_wakes_mio_reactor() {
    wakes_blocked_poll(Backend::Mio, Backend::Uring);
}

/// Asking for the reactor's own backend, or `Auto`, uses it; the simulated network cannot
/// be hosted by a kernel reactor nor host a kernel backend, and says so with a typed error.
#[test]
fn own_auto_and_unhostable_backends() {
    let mut h = Harness::new(Backend::Mio);
    let any = "127.0.0.1:0".parse().expect("addr");
    let own = h.reactor.listen_on(Backend::Mio, any, &[]).expect("own");
    let auto = h.reactor.listen_on(Backend::Auto, any, &[]).expect("auto");
    assert_eq!(h.reactor.socket_backend(own).ok(), Some(Backend::Mio));
    assert_eq!(h.reactor.socket_backend(auto).ok(), Some(Backend::Mio));
    assert_eq!(h.reactor.backends(), vec![Backend::Mio]);
    match h.reactor.listen_on(Backend::Sim, any, &[]) {
        Err(
            e @ Error::Unavailable {
                backend: Backend::Sim,
                ..
            },
        ) => assert!(e.to_string().contains("sim"), "{e}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let mut sim = Harness::new(Backend::Sim);
    assert!(matches!(
        sim.reactor.listen_on(Backend::Mio, any, &[]),
        Err(Error::Unavailable {
            backend: Backend::Mio,
            ..
        })
    ));
}

/// A thousand connections echoing through a hosted listener: bursts of completions larger
/// than one batch of the hosted backend's deferred work must not stall the reactor.
#[test]
fn thousand_connections_through_a_hosted_uring_listener() {
    if available(Backend::Mio) && available(Backend::Uring) {
        thousand_connections_on(Harness::new(Backend::Mio), Backend::Uring);
    }
}

/// As above, with epoll hosted by an io_uring reactor.
#[test]
fn thousand_connections_through_a_hosted_mio_listener() {
    if available(Backend::Mio) && available(Backend::Uring) {
        thousand_connections_on(Harness::new(Backend::Uring), Backend::Mio);
    }
}
