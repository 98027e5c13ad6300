//! The fault controls a simulation harness drives (resets between two hosts, one-way clogs),
//! the operations the simulated network shares with the kernel backends (multishot receive,
//! receive and connect deadlines, in virtual time) and its buggify fault points.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{NetConfig, SimNet};
use crate::completion::{Completion, Event, SocketId, Token};
use crate::error::Error;
use crate::reactor::Reactor;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, last])
}

/// Polls every reactor; when none has anything, moves the network to its next event. Returns
/// the completions of the first poll that had any, with the reactor's index; empty when the
/// network is idle or a minute of virtual time passed without any (a segment retransmitted
/// into a lasting partition keeps the network busy forever).
fn next(net: &SimNet, hosts: &mut [Reactor]) -> Vec<(usize, Completion)> {
    let limit = net.now() + Duration::from_secs(60);
    let mut out = Vec::new();
    loop {
        for (i, r) in hosts.iter_mut().enumerate() {
            let mut ready = Vec::new();
            r.poll(&mut ready, Some(Duration::ZERO)).expect("poll");
            out.extend(ready.into_iter().map(|c| (i, c)));
        }
        if !out.is_empty() || net.now() > limit || net.step().is_none() {
            return out;
        }
    }
}

/// Host 0 (10.0.0.1) listens; the other hosts connect. Returns the client sockets, and the
/// server side of each connection.
fn connected(net: &SimNet, hosts: &mut [Reactor]) -> (Vec<SocketId>, Vec<SocketId>) {
    let l = hosts[0]
        .listen(SocketAddr::new(ip(1), 80), &[])
        .expect("listen");
    hosts[0].accept(l, Token(0));
    let clients: Vec<SocketId> = (1..hosts.len())
        .map(|i| {
            hosts[i]
                .connect(SocketAddr::new(ip(1), 80), &[], Token(i as u64))
                .expect("connect")
        })
        .collect();
    let (mut up, mut servers) = (0, Vec::new());
    while up < clients.len() || servers.len() < clients.len() {
        let got = next(net, hosts);
        assert!(!got.is_empty(), "the network went idle before connecting");
        for (_, c) in got {
            match c.event {
                Event::Connected { result, .. } => {
                    result.expect("connected");
                    up += 1;
                }
                Event::Accepted { result, .. } => servers.push(result.expect("accepted")),
                _ => {}
            }
        }
    }
    (clients, servers)
}

#[test]
fn reset_between_two_hosts_leaves_their_other_connections_alone() {
    let net = SimNet::new(1);
    let mut hosts: Vec<Reactor> = (1..=3).map(|i| net.reactor(ip(i))).collect();
    let (clients, _) = connected(&net, &mut hosts);
    assert_eq!(
        net.reset_between(ip(1), ip(2)),
        2,
        "both ends of the 1-2 connection"
    );
    assert_eq!(net.reset_between(ip(1), ip(2)), 0, "already reset");
    for (i, &s) in clients.iter().enumerate() {
        hosts[i + 1].recv(s, BytesMut::with_capacity(64), Token(9));
    }
    let got = next(&net, &mut hosts);
    let reset: Vec<usize> = got
        .iter()
        .filter(|(_, c)| {
            matches!(
                &c.event,
                Event::Received {
                    result: Err(Error::ConnectionReset),
                    ..
                }
            )
        })
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(reset, vec![1], "only host 2's receive fails: {got:?}");
    // Host 3's connection still carries data.
    hosts[2].send(clients[1], Bytes::from_static(b"hi"), Token(3));
    let sent = next(&net, &mut hosts);
    assert!(sent
        .iter()
        .any(|(i, c)| *i == 2 && matches!(c.event, Event::Sent { result: Ok(_), .. })));
}

#[test]
fn a_clog_blocks_one_direction_until_unclogged() {
    let net = SimNet::new(2);
    let mut hosts: Vec<Reactor> = (1..=2).map(|i| net.reactor(ip(i))).collect();
    let (clients, servers) = connected(&net, &mut hosts);
    let (client, server) = (clients[0], servers[0]);
    net.partition_one_way(ip(2), ip(1));
    assert_eq!(net.partitions(), vec![(ip(2), ip(1))]);
    assert!(net.is_partitioned(ip(2), ip(1)) && !net.is_partitioned(ip(1), ip(2)));
    // Read on the server side and send from the (clogged) client.
    hosts[0].recv(server, BytesMut::with_capacity(64), Token(7));
    hosts[1].send(client, Bytes::from_static(b"ping"), Token(8));
    // Five seconds of retransmissions into the clog: the client's send completes (the data
    // is in its send buffer), the server reads nothing.
    net.advance(Duration::from_secs(5));
    for (i, r) in hosts.iter_mut().enumerate() {
        let mut ready = Vec::new();
        r.poll(&mut ready, Some(Duration::ZERO)).expect("poll");
        for c in ready {
            assert!(
                !(i == 0 && matches!(c.event, Event::Received { .. })),
                "data crossed a clogged direction"
            );
        }
    }
    net.heal_one_way(ip(2), ip(1));
    assert!(net.partitions().is_empty());
    let got = loop {
        let got = next(&net, &mut hosts);
        assert!(!got.is_empty(), "the network went idle");
        if let Some(n) = got.iter().find_map(|(i, c)| match &c.event {
            Event::Received { result: Ok(n), .. } if *i == 0 => Some(*n),
            _ => None,
        }) {
            break n;
        }
    };
    assert_eq!(got, 4);
}

/// The next completion for host `host` (others' completions are not expected).
fn next_of(net: &SimNet, hosts: &mut [Reactor], host: usize) -> Completion {
    let mut got = next(net, hosts);
    assert_eq!(got.len(), 1, "one completion expected: {got:?}");
    let (i, c) = got.remove(0);
    assert_eq!(i, host, "{c:?}");
    c
}

#[test]
fn recv_deadlines_run_on_virtual_time() {
    let net = SimNet::new(3);
    let mut hosts: Vec<Reactor> = (1..=2).map(|i| net.reactor(ip(i))).collect();
    let (clients, servers) = connected(&net, &mut hosts);
    let (client, server) = (clients[0], servers[0]);
    assert!(hosts[0].capabilities().operation_timeouts);

    // A silent peer: the deadline fires exactly when due, the buffer comes back.
    let start = net.now();
    hosts[0].recv_timeout(
        server,
        BytesMut::with_capacity(64),
        Duration::from_millis(50),
        Token(1),
    );
    match next_of(&net, &mut hosts, 0).event {
        Event::Received {
            result: Err(Error::TimedOut),
            buf,
            ..
        } => assert!(buf.capacity() >= 64 && buf.is_empty()),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(net.now() - start, Duration::from_millis(50));

    // Data first: delivered, and the deadline never fires afterwards.
    hosts[0].recv_timeout(
        server,
        BytesMut::with_capacity(64),
        Duration::from_secs(1),
        Token(2),
    );
    hosts[1].send(client, Bytes::from_static(b"data"), Token(3));
    let mut got = None;
    while got.is_none() {
        for (_, c) in next(&net, &mut hosts) {
            if let Event::Received { result, buf, .. } = c.event {
                assert_eq!(result.expect("data"), 4);
                got = Some(buf);
            }
        }
    }
    assert_eq!(got.as_deref(), Some(&b"data"[..]));
    net.advance(Duration::from_secs(2));
    assert!(next(&net, &mut hosts).is_empty(), "a stale deadline fired");

    // A paused receive is not active: its clock starts over on resume.
    hosts[0].recv_timeout(
        server,
        BytesMut::with_capacity(64),
        Duration::from_millis(10),
        Token(4),
    );
    hosts[0].pause_recv(server).expect("pause");
    net.advance(Duration::from_millis(100));
    assert!(next(&net, &mut hosts).is_empty(), "fired while paused");
    let resumed = net.now();
    hosts[0].resume_recv(server).expect("resume");
    match next_of(&net, &mut hosts, 0).event {
        Event::Received {
            result: Err(Error::TimedOut),
            ..
        } => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(net.now() - resumed, Duration::from_millis(10));

    // Queued receives: the second one's clock starts when the first completes.
    hosts[0].recv_timeout(
        server,
        BytesMut::with_capacity(64),
        Duration::from_millis(20),
        Token(5),
    );
    hosts[0].recv_timeout(
        server,
        BytesMut::with_capacity(64),
        Duration::from_millis(20),
        Token(6),
    );
    let first = net.now();
    for (token, after) in [(Token(5), 20), (Token(6), 40)] {
        let c = next_of(&net, &mut hosts, 0);
        assert_eq!(c.token, token);
        assert!(matches!(
            c.event,
            Event::Received {
                result: Err(Error::TimedOut),
                ..
            }
        ));
        assert_eq!(net.now() - first, Duration::from_millis(after));
    }
}

#[test]
fn connect_deadlines_run_on_virtual_time() {
    let net = SimNet::new(4);
    let mut hosts: Vec<Reactor> = (1..=2).map(|i| net.reactor(ip(i))).collect();
    let l = hosts[0]
        .listen(SocketAddr::new(ip(1), 80), &[])
        .expect("listen");
    hosts[0].accept(l, Token(0));
    net.partition(ip(1), ip(2));
    let start = net.now();
    let s = hosts[1]
        .connect_timeout(
            SocketAddr::new(ip(1), 80),
            &[],
            Duration::from_millis(30),
            Token(1),
        )
        .expect("connect");
    match next_of(&net, &mut hosts, 1).event {
        Event::Connected {
            socket,
            result: Err(Error::TimedOut),
        } => assert_eq!(socket, s),
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    assert_eq!(net.now() - start, Duration::from_millis(30));
    hosts[1].close(s, Token(2));
    assert!(matches!(
        next_of(&net, &mut hosts, 1).event,
        Event::Closed { .. }
    ));
    net.heal(ip(1), ip(2));
    // A deadline that does not pass: connected, and nothing fires later.
    hosts[1]
        .connect_timeout(
            SocketAddr::new(ip(1), 80),
            &[],
            Duration::from_secs(1),
            Token(3),
        )
        .expect("connect");
    let (mut up, mut accepted) = (false, false);
    while !(up && accepted) {
        for (_, c) in next(&net, &mut hosts) {
            match c.event {
                Event::Connected { result, .. } => {
                    result.expect("connected");
                    up = true;
                }
                Event::Accepted { result, .. } => {
                    result.expect("accepted");
                    accepted = true;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    net.advance(Duration::from_secs(2));
    assert!(next(&net, &mut hosts).is_empty());
}

#[test]
fn multishot_receive_pauses_resumes_cancels_and_ends() {
    const SIZE: usize = 300_000;
    let net = SimNet::new(5);
    let mut hosts: Vec<Reactor> = (1..=2).map(|i| net.reactor(ip(i))).collect();
    let (clients, servers) = connected(&net, &mut hosts);
    let (client, server) = (clients[0], servers[0]);
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    hosts[0].recv_multishot(server, Token(1));
    // Not together with plain receives.
    hosts[0].recv(server, BytesMut::with_capacity(8), Token(9));
    hosts[1].send(client, Bytes::from(data.clone()), Token(2));
    hosts[1].shutdown(client, std::net::Shutdown::Write, Token(3));
    let mut got = Vec::new();
    let mut paused_once = false;
    let mut ended = false;
    while !ended {
        let batch = next(&net, &mut hosts);
        assert!(!batch.is_empty(), "the network went idle");
        for (_, c) in batch {
            match c.event {
                Event::ReceivedBytes {
                    result: Ok(bytes),
                    more,
                    ..
                } => {
                    if !more {
                        assert!(bytes.is_empty(), "the last completion is end of stream");
                        ended = true;
                        continue;
                    }
                    assert!(!bytes.is_empty());
                    got.extend_from_slice(&bytes);
                    if !paused_once {
                        paused_once = true;
                        hosts[0].pause_recv(server).expect("pause");
                        net.advance(Duration::from_millis(50));
                        let mut idle = Vec::new();
                        hosts[0]
                            .poll(&mut idle, Some(Duration::ZERO))
                            .expect("poll");
                        assert!(
                            idle.iter()
                                .all(|c| !matches!(c.event, Event::ReceivedBytes { .. })),
                            "delivered while paused: {idle:?}"
                        );
                        hosts[0].resume_recv(server).expect("resume");
                    }
                }
                Event::Received {
                    result: Err(Error::Unsupported(_)),
                    ..
                } => assert_eq!(c.token, Token(9)),
                Event::Sent { result, .. } => assert_eq!(result.expect("sent"), SIZE),
                Event::Shutdown { result, .. } => result.expect("shutdown"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(got, data);

    // Cancel keeps later data for the next receive; a reset ends a multishot receive.
    let net = SimNet::new(6);
    let mut hosts: Vec<Reactor> = (1..=2).map(|i| net.reactor(ip(i))).collect();
    let (clients, servers) = connected(&net, &mut hosts);
    let (client, server) = (clients[0], servers[0]);
    hosts[0].recv_multishot(server, Token(4));
    hosts[0]
        .cancel_recv_multishot(server)
        .expect("cancel multishot");
    assert!(matches!(
        next_of(&net, &mut hosts, 0).event,
        Event::ReceivedBytes {
            result: Err(Error::Cancelled),
            more: false,
            ..
        }
    ));
    assert!(matches!(
        hosts[0].cancel_recv_multishot(server),
        Err(Error::InvalidArgument(_))
    ));
    hosts[1].send(client, Bytes::from_static(b"later"), Token(5));
    hosts[0].recv(server, BytesMut::with_capacity(64), Token(6));
    let mut later = None;
    while later.is_none() {
        for (_, c) in next(&net, &mut hosts) {
            if let Event::Received { buf, result, .. } = c.event {
                assert_eq!(result.expect("later"), 5);
                later = Some(buf);
            }
        }
    }
    assert_eq!(later.as_deref(), Some(&b"later"[..]));
    hosts[0].recv_multishot(server, Token(7));
    net.reset_between(ip(1), ip(2));
    match next_of(&net, &mut hosts, 0).event {
        Event::ReceivedBytes {
            result: Err(Error::ConnectionReset),
            more: false,
            ..
        } => {}
        other => panic!("expected the reset to end the receive, got {other:?}"),
    }
}

/// Echoes a stream per client (200 KB each) through a server on host 1: plain receives on
/// the server, multishot receives on the clients. Returns what each client got back and a
/// trace of every completion with its virtual time.
fn echo_run(net: &SimNet) -> (Vec<Vec<u8>>, Vec<String>) {
    const SIZE: usize = 200_000;
    let mut hosts: Vec<Reactor> = (1..=3).map(|i| net.reactor(ip(i))).collect();
    let mut trace = Vec::new();
    let (clients, servers) = connected(net, &mut hosts);
    trace.push(format!("{:?} connected", net.now()));
    for (i, &c) in clients.iter().enumerate() {
        let data: Vec<u8> = (0..SIZE).map(|j| ((j * 7 + i) % 251) as u8).collect();
        hosts[i + 1].recv_multishot(c, Token(10));
        hosts[i + 1].send(c, Bytes::from(data), Token(11));
        hosts[i + 1].shutdown(c, std::net::Shutdown::Write, Token(12));
    }
    for &s in &servers {
        hosts[0].recv(s, BytesMut::with_capacity(64 * 1024), Token(20));
    }
    let mut back = vec![Vec::new(); clients.len()];
    let mut done = 0;
    while done < clients.len() {
        let batch = next(net, &mut hosts);
        assert!(!batch.is_empty(), "the network went idle");
        for (h, c) in batch {
            trace.push(format!(
                "{:?} {h} {:?} {}",
                net.now(),
                c.token,
                summary(&c.event)
            ));
            match c.event {
                Event::Received {
                    socket,
                    buf,
                    result,
                } => match result.expect("server recv") {
                    0 => hosts[0].shutdown(socket, std::net::Shutdown::Write, Token(22)),
                    _ => {
                        hosts[0].send(socket, buf.freeze(), Token(21));
                        hosts[0].recv(socket, BytesMut::with_capacity(64 * 1024), Token(20));
                    }
                },
                Event::ReceivedBytes { result, more, .. } => {
                    // Client `i` is host `i + 1` (ids are per reactor).
                    back[h - 1].extend_from_slice(&result.expect("client recv"));
                    if !more {
                        done += 1;
                    }
                }
                Event::Sent { result, .. } => {
                    result.expect("send");
                }
                Event::Shutdown { result, .. } => result.expect("shutdown"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    for (i, got) in back.iter().enumerate() {
        assert_eq!(got.len(), SIZE, "client {i}");
        assert!(
            got.iter()
                .enumerate()
                .all(|(j, &b)| b == ((j * 7 + i) % 251) as u8),
            "client {i}: bytes out of order or corrupt"
        );
    }
    (back, trace)
}

fn summary(event: &Event) -> String {
    match event {
        Event::Received { result, .. } => format!("recv {:?}", result.as_ref().ok()),
        Event::ReceivedBytes { result, more, .. } => {
            format!("chunk {:?} {more}", result.as_ref().map(|b| b.len()).ok())
        }
        Event::Sent { result, .. } => format!("sent {:?}", result.as_ref().ok()),
        other => format!("{other:?}"),
    }
}

/// Counts plain receives that got less than a full buffer while more was already sent.
fn receive_count(trace: &[String]) -> usize {
    trace.iter().filter(|l| l.contains(" recv ")).count()
}

#[test]
fn buggify_fault_points_keep_every_byte_in_order() {
    let plain = SimNet::new(11);
    let (_, calm) = echo_run(&plain);
    let config = NetConfig {
        buggify: true,
        ..NetConfig::default()
    };
    let (_, faulty) = echo_run(&SimNet::with_config(11, config));
    // Short reads and partial writes cut the streams into more, smaller pieces, and late
    // accepts move the connections' times: a different trace over the same bytes.
    assert!(
        receive_count(&faulty) > receive_count(&calm),
        "no short reads: {} vs {}",
        receive_count(&faulty),
        receive_count(&calm)
    );
    assert_ne!(faulty, calm);
    // Seeded: the same seed gives the same faults.
    let (_, again) = echo_run(&SimNet::with_config(11, config));
    assert_eq!(again, faulty, "same seed, different trace");
}

#[test]
fn actor_core_buggify_drives_the_fault_points() {
    let (_, calm) = echo_run(&SimNet::new(12));
    let run = |seed| {
        let system = sinew_actors::DeterministicSystem::new(seed);
        system.set_buggify(true);
        system.enter(|| echo_run(&SimNet::new(12)).1)
    };
    let faulty = run(7);
    assert!(receive_count(&faulty) > receive_count(&calm));
    assert_eq!(run(7), faulty, "same seeds, different trace");
    // Outside a buggified system the fault points stay quiet.
    let system = sinew_actors::DeterministicSystem::new(7);
    assert_eq!(system.enter(|| echo_run(&SimNet::new(12)).1), calm);
}

#[test]
fn buggify_delays_some_accepts_and_loses_none() {
    const N: usize = 40;
    let net = SimNet::with_config(
        13,
        NetConfig {
            buggify: true,
            ..NetConfig::default()
        },
    );
    let mut hosts: Vec<Reactor> = (1..=2).map(|i| net.reactor(ip(i))).collect();
    let l = hosts[0]
        .listen(SocketAddr::new(ip(1), 80), &[])
        .expect("listen");
    hosts[0].accept(l, Token(0));
    let start = net.now();
    for i in 0..N {
        hosts[1]
            .connect(SocketAddr::new(ip(1), 80), &[], Token(i as u64 + 1))
            .expect("connect");
    }
    // Every SYN lands one link latency after the connects; an accept at that moment was
    // not held back.
    let on_time = start + crate::sim::LinkConfig::default().latency;
    let (mut accepted, mut late, mut connected) = (0, 0, 0);
    while accepted < N || connected < N {
        let batch = next(&net, &mut hosts);
        assert!(!batch.is_empty(), "the network went idle");
        for (_, c) in batch {
            match c.event {
                Event::Accepted { result, .. } => {
                    result.expect("accepted");
                    accepted += 1;
                    late += usize::from(net.now() > on_time);
                }
                Event::Connected { result, .. } => {
                    result.expect("connected");
                    connected += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(late > 0, "no accept was delayed");
    assert!(late < N, "every accept was delayed");
}
