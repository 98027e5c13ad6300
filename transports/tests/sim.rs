//! The simulated network: determinism, partitions, bandwidth, loss, resets and slow readers,
//! all asserted on virtual time computed from the configuration (never wall time).

mod common;

use std::collections::VecDeque;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{pattern, pattern_bytes};
use sinew_actors::DeterministicSystem;
use sinew_transports::{
    Completion, Error, Event, LinkConfig, NetConfig, Reactor, SimNet, SocketId, Token,
};

const SERVER: usize = 0;
const CLIENT: usize = 1;
const PORT: u16 = 7000;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// A server host (10.0.0.1) and a client host (10.0.0.2) on one net, driven by hand: poll
/// every reactor, and when nothing is ready jump to the next event.
struct Sim {
    net: SimNet,
    hosts: Vec<Reactor>,
    queue: VecDeque<(usize, Completion)>,
    trace: Vec<String>,
}

impl Sim {
    fn new(net: SimNet) -> Sim {
        let hosts = vec![net.reactor(ip("10.0.0.1")), net.reactor(ip("10.0.0.2"))];
        Sim {
            net,
            hosts,
            queue: VecDeque::new(),
            trace: Vec::new(),
        }
    }

    fn server_addr() -> SocketAddr {
        SocketAddr::new(ip("10.0.0.1"), PORT)
    }

    /// The next completion from any host, or `None` once the network has nothing left to do.
    fn next(&mut self) -> Option<(usize, Completion)> {
        let mut scratch = Vec::new();
        loop {
            if let Some(x) = self.queue.pop_front() {
                self.trace.push(format!(
                    "{:?} host{} {:?} {}",
                    self.net.now(),
                    x.0,
                    x.1.token,
                    summary(&x.1.event)
                ));
                return Some(x);
            }
            for (i, r) in self.hosts.iter_mut().enumerate() {
                r.poll(&mut scratch, Some(Duration::ZERO)).expect("poll");
                self.queue.extend(scratch.drain(..).map(|c| (i, c)));
            }
            if self.queue.is_empty() {
                self.net.step()?;
            }
        }
    }

    fn expect(&mut self) -> (usize, Completion) {
        self.next().expect("the network went idle")
    }

    /// Listens on the server host and connects from the client host.
    fn pair(&mut self) -> (SocketId, SocketId) {
        let l = self.hosts[SERVER]
            .listen(Sim::server_addr(), &[])
            .expect("listen");
        self.hosts[SERVER].accept(l, Token(100));
        let c = self.hosts[CLIENT]
            .connect(Sim::server_addr(), &[], Token(101))
            .expect("connect");
        let (mut s, mut connected) = (None, false);
        while s.is_none() || !connected {
            match self.expect().1.event {
                Event::Accepted { result, .. } => s = Some(result.expect("accept")),
                Event::Connected { result, .. } => {
                    result.expect("connected");
                    connected = true;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        (c, s.expect("server"))
    }

    /// Reads `socket` on `host` to end of stream, checking the pattern byte for byte; returns
    /// the length and the virtual time the end of stream arrived.
    fn read_pattern_to_end(&mut self, host: usize, socket: SocketId) -> (usize, Duration) {
        let mut got = 0;
        self.hosts[host].recv(socket, BytesMut::with_capacity(64 * 1024), Token(200));
        loop {
            let (h, c) = self.expect();
            match c.event {
                Event::Received {
                    buf, result: Ok(0), ..
                } if h == host => {
                    assert!(buf.is_empty());
                    return (got, self.net.now());
                }
                Event::Received {
                    buf, result: Ok(n), ..
                } if h == host => {
                    for (k, &b) in buf.iter().enumerate() {
                        assert_eq!(b, pattern(got + k), "byte {} differs", got + k);
                    }
                    got += n;
                    let mut buf = buf;
                    buf.clear();
                    self.hosts[host].recv(socket, buf, Token(200));
                }
                Event::Sent { result, .. } => {
                    result.expect("send");
                }
                Event::Shutdown { result, .. } => result.expect("shutdown"),
                other => panic!("unexpected on host {h}: {other:?}"),
            }
        }
    }
}

fn summary(e: &Event) -> String {
    match e {
        Event::Received { result, buf, .. } => format!("recv {result:?} {}", buf.len()),
        Event::Sent { result, .. } => format!("sent {result:?}"),
        other => format!("{other:?}"),
    }
}

fn lossy() -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(2),
        jitter: Duration::from_millis(3),
        loss: 0.1,
        duplicate: 0.1,
        reorder: 0.2,
        reorder_delay: Duration::from_millis(4),
        ..LinkConfig::default()
    }
}

/// An echo of `rounds` messages over a lossy, jittery link; returns the completion trace.
fn echo_trace(seed: u64, rounds: usize) -> Vec<String> {
    let net = SimNet::with_config(
        seed,
        NetConfig {
            mss: 1000,
            ..NetConfig::default()
        },
    );
    net.set_default_link(lossy());
    let mut sim = Sim::new(net);
    let (c, s) = sim.pair();
    sim.hosts[SERVER].recv(s, BytesMut::with_capacity(4096), Token(1));
    for round in 0..rounds {
        let msg = pattern_bytes(round * 10_000, 10_000);
        sim.hosts[CLIENT].send(c, Bytes::from(msg.clone()), Token(2));
        sim.hosts[CLIENT].recv(c, BytesMut::with_capacity(4096), Token(3));
        let mut back = Vec::new();
        while back.len() < msg.len() {
            let (_, comp) = sim.expect();
            match (comp.token, comp.event) {
                (Token(1), Event::Received { buf, result, .. }) => {
                    assert!(result.expect("server recv") > 0);
                    sim.hosts[SERVER].send(s, buf.freeze(), Token(4));
                    sim.hosts[SERVER].recv(s, BytesMut::with_capacity(4096), Token(1));
                }
                (Token(3), Event::Received { buf, result, .. }) => {
                    assert!(result.expect("client recv") > 0);
                    back.extend_from_slice(&buf);
                    if back.len() < msg.len() {
                        sim.hosts[CLIENT].recv(c, BytesMut::with_capacity(4096), Token(3));
                    }
                }
                (_, Event::Sent { result, .. }) => {
                    result.expect("send");
                }
                (_, other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(back, msg, "round {round}: stream intact despite loss");
    }
    sim.trace
}

#[test]
fn same_seed_gives_identical_completion_trace() {
    let a = echo_trace(7, 5);
    let b = echo_trace(7, 5);
    assert!(a.len() > 20, "a real trace ({} entries)", a.len());
    assert_eq!(a, b, "same seed, same trace");
    let c = echo_trace(8, 5);
    assert_ne!(a, c, "another seed draws other delays");
}

#[test]
fn partition_makes_connect_time_out_with_typed_error() {
    let net = SimNet::new(1);
    let timeout = Duration::from_secs(3);
    net.set_connect_timeout(timeout);
    net.partition(ip("10.0.0.1"), ip("10.0.0.2"));
    let mut sim = Sim::new(net.clone());
    let l = sim.hosts[SERVER]
        .listen(Sim::server_addr(), &[])
        .expect("listen");
    sim.hosts[SERVER].accept(l, Token(0));
    let c = sim.hosts[CLIENT]
        .connect(Sim::server_addr(), &[], Token(1))
        .expect("connect");
    let (host, comp) = sim.expect();
    assert_eq!(host, CLIENT);
    match comp.event {
        Event::Connected {
            socket,
            result: Err(e),
        } => {
            assert_eq!(socket, c);
            assert!(matches!(e, Error::TimedOut), "{e:?}");
            assert!(e.is_fatal());
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(net.now(), timeout, "failed exactly at the connect timeout");
}

#[test]
fn connect_waits_out_a_partition_and_completes_after_heal() {
    let net = SimNet::new(2);
    let rto = net.config().rto;
    let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
    net.partition(a, b);
    let mut sim = Sim::new(net.clone());
    let l = sim.hosts[SERVER]
        .listen(Sim::server_addr(), &[])
        .expect("listen");
    sim.hosts[SERVER].accept(l, Token(0));
    sim.hosts[CLIENT]
        .connect(Sim::server_addr(), &[], Token(1))
        .expect("connect");
    let heal_at = Duration::from_secs(2);
    net.advance_to(heal_at);
    let mut out = Vec::new();
    for r in &mut sim.hosts {
        r.poll(&mut out, Some(Duration::ZERO)).expect("poll");
    }
    assert!(out.is_empty(), "nothing gets through a partition: {out:?}");
    net.heal(a, b);
    match sim.expect().1.event {
        Event::Accepted { result: Ok(_), .. } => {}
        other => panic!("expected the accept, got {other:?}"),
    }
    match sim.expect().1.event {
        Event::Connected { result: Ok(()), .. } => {}
        other => panic!("expected the connect, got {other:?}"),
    }
    // The SYN is retransmitted every RTO; the first one after the heal gets through.
    let latency = net.default_link().latency;
    assert!(net.now() > heal_at);
    assert!(net.now() <= heal_at + rto + 2 * latency, "{:?}", net.now());
}

#[test]
fn partition_holds_data_and_healing_resumes_delivery() {
    let net = SimNet::new(3);
    let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
    let mut sim = Sim::new(net.clone());
    let (c, s) = sim.pair();
    // One way only: client -> server is cut, server -> client still flows.
    net.partition_one_way(b, a);
    assert!(net.is_partitioned(b, a) && !net.is_partitioned(a, b));
    sim.hosts[CLIENT].send(c, Bytes::from_static(b"held"), Token(1));
    sim.hosts[SERVER].recv(s, BytesMut::with_capacity(64), Token(2));
    sim.hosts[SERVER].send(s, Bytes::from_static(b"flows"), Token(3));
    sim.hosts[CLIENT].recv(c, BytesMut::with_capacity(64), Token(4));
    let heal_at = net.now() + Duration::from_secs(5);
    let mut got_flow = false;
    while net.now() < heal_at {
        let mut out = Vec::new();
        for (i, r) in sim.hosts.iter_mut().enumerate() {
            r.poll(&mut out, Some(Duration::ZERO)).expect("poll");
            for comp in out.drain(..) {
                match (i, comp.event) {
                    (SERVER, Event::Received { .. }) => panic!("data crossed the partition"),
                    (CLIENT, Event::Received { buf, .. }) => {
                        assert_eq!(&buf[..], b"flows");
                        got_flow = true;
                    }
                    (_, Event::Sent { result, .. }) => {
                        result.expect("send is accepted into the buffer");
                    }
                    (_, other) => panic!("unexpected {other:?}"),
                }
            }
        }
        let next = net.next_event_time().expect("retransmissions pending");
        net.advance_to(next.min(heal_at));
    }
    assert!(got_flow, "the open direction delivered");
    net.heal(a, b);
    loop {
        let (h, comp) = sim.expect();
        if let (SERVER, Event::Received { buf, result, .. }) = (h, comp.event) {
            assert_eq!(result.expect("recv"), 4);
            assert_eq!(&buf[..], b"held");
            break;
        }
    }
    assert!(net.now() >= heal_at);
    assert!(net.now() <= heal_at + net.config().rto + 2 * net.default_link().latency);
}

#[test]
fn bandwidth_cap_sets_transfer_time() {
    const SIZE: usize = 1 << 20;
    const BW: u64 = 1_000_000; // bytes per virtual second
    let latency = Duration::from_millis(10);
    let net = SimNet::new(4);
    net.set_default_link(LinkConfig {
        latency,
        bandwidth: Some(BW),
        ..LinkConfig::default()
    });
    let mss = net.config().mss;
    let mut sim = Sim::new(net.clone());
    let (c, s) = sim.pair();
    let start = net.now();
    sim.hosts[CLIENT].send(c, Bytes::from(pattern_bytes(0, SIZE)), Token(1));
    sim.hosts[CLIENT].shutdown(c, Shutdown::Write, Token(2));
    let (got, eof_at) = sim.read_pattern_to_end(SERVER, s);
    assert_eq!(got, SIZE);
    let took = eof_at - start;
    let expected = Duration::from_secs_f64(SIZE as f64 / BW as f64) + latency;
    // The window (256 KiB) is far above the bandwidth-delay product (10 KB), so the link
    // never idles: the transfer costs serialization plus one latency, give or take a segment.
    let slack = Duration::from_secs_f64(2.0 * mss as f64 / BW as f64);
    assert!(took >= expected, "took {took:?}, expected {expected:?}");
    assert!(
        took <= expected + slack,
        "took {took:?}, expected {expected:?}"
    );
}

#[test]
fn loss_duplication_and_reordering_keep_the_stream_intact() {
    const SIZE: usize = 2 << 20;
    let net = SimNet::new(5);
    net.set_default_link(lossy());
    let mut sim = Sim::new(net.clone());
    let (c, s) = sim.pair();
    let start = net.now();
    sim.hosts[CLIENT].send(c, Bytes::from(pattern_bytes(0, SIZE)), Token(1));
    sim.hosts[CLIENT].shutdown(c, Shutdown::Write, Token(2));
    let (got, eof_at) = sim.read_pattern_to_end(SERVER, s);
    assert_eq!(got, SIZE);
    // 128 segments at 10% loss: at least one was lost and cost a retransmission timeout.
    assert!(eof_at - start >= net.config().rto);
}

#[test]
fn reset_injection_fails_both_ends() {
    let net = SimNet::new(6);
    let mut sim = Sim::new(net.clone());
    let (c, s) = sim.pair();
    sim.hosts[SERVER].recv(s, BytesMut::with_capacity(64), Token(1));
    sim.hosts[CLIENT].recv(c, BytesMut::with_capacity(64), Token(2));
    assert_eq!(net.reset_connections(ip("10.0.0.2")), 2);
    let mut reset = [false; 2];
    while !reset.iter().all(|&r| r) {
        let (h, comp) = sim.expect();
        match comp.event {
            Event::Received {
                result: Err(e),
                buf,
                ..
            } => {
                assert!(matches!(e, Error::ConnectionReset), "{e:?}");
                assert!(e.is_fatal());
                assert_eq!(buf.capacity(), 64);
                reset[h] = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    sim.hosts[CLIENT].send(c, Bytes::from_static(b"late"), Token(3));
    match sim.expect().1.event {
        Event::Sent { result: Err(e), .. } => assert!(e.is_fatal(), "{e:?}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn slow_reader_drains_at_the_capped_rate() {
    const SIZE: usize = 200_000;
    const RATE: u64 = 100_000; // bytes per virtual second
    let net = SimNet::new(7);
    let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
    net.set_link(
        b,
        a,
        LinkConfig {
            reader_rate: Some(RATE),
            ..LinkConfig::default()
        },
    );
    let mut sim = Sim::new(net.clone());
    let (c, s) = sim.pair();
    let start = net.now();
    sim.hosts[CLIENT].send(c, Bytes::from(pattern_bytes(0, SIZE)), Token(1));
    sim.hosts[CLIENT].shutdown(c, Shutdown::Write, Token(2));
    let (got, eof_at) = sim.read_pattern_to_end(SERVER, s);
    assert_eq!(got, SIZE);
    let took = (eof_at - start).as_secs_f64();
    let expected = SIZE as f64 / RATE as f64;
    // Each read takes at most 10 ms worth, so the last read's cost is the only slack.
    assert!(
        (expected - 0.011..=expected + 0.011).contains(&took),
        "took {took} s, expected {expected} s"
    );
}

#[test]
fn connect_to_nobody_is_refused() {
    let net = SimNet::new(8);
    let mut sim = Sim::new(net);
    sim.hosts[CLIENT]
        .connect(Sim::server_addr(), &[], Token(1))
        .expect("connect");
    match sim.expect().1.event {
        Event::Connected { result: Err(e), .. } => {
            assert!(matches!(e, Error::ConnectionRefused), "{e:?}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn driven_by_the_deterministic_actor_clock() {
    let sys = DeterministicSystem::new(9);
    let net = SimNet::new(9);
    net.set_default_link(LinkConfig {
        latency: Duration::from_millis(5),
        ..LinkConfig::default()
    });
    let mut server = net.reactor(ip("10.0.0.1"));
    let mut client = net.reactor(ip("10.0.0.2"));
    let l = server.listen(Sim::server_addr(), &[]).expect("listen");
    server.accept(l, Token(0));
    let c = client
        .connect(Sim::server_addr(), &[], Token(1))
        .expect("connect");
    client.send(c, Bytes::from_static(b"ping"), Token(2));
    let mut out = Vec::new();
    let mut got = None;
    // The harness loop: the actor system's clock is the only clock; the net follows it.
    while got.is_none() {
        for r in [&mut server, &mut client] {
            r.poll(&mut out, Some(Duration::ZERO)).expect("poll");
        }
        for comp in out.drain(..) {
            match comp.event {
                Event::Accepted { result: Ok(s), .. } => {
                    server.recv(s, BytesMut::with_capacity(64), Token(3))
                }
                Event::Received { buf, result, .. } => {
                    result.expect("recv");
                    got = Some(buf);
                }
                Event::Connected { result, .. } => result.expect("connect"),
                Event::Sent { result, .. } => {
                    result.expect("send");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        if got.is_none() {
            let next = net.next_event_time().expect("pending events");
            let next_ms = next.as_millis() as u64 + u64::from(next.subsec_nanos() % 1_000_000 != 0);
            let now_ms = sys.now_ms();
            sys.advance(Duration::from_millis(next_ms.saturating_sub(now_ms)));
            net.advance_to(Duration::from_millis(sys.now_ms()));
        }
    }
    assert_eq!(got.as_deref(), Some(&b"ping"[..]));
    // SYN, SYN-ACK, then the data: three one-way trips of 5 ms on the actor clock.
    assert_eq!(sys.now_ms(), 15);
    assert_eq!(net.now(), Duration::from_millis(15));
    // Nothing is left to happen (the connect's timeout went with the handshake).
    assert_eq!(net.next_event_time(), None);
}

#[test]
fn unix_sockets_and_datagrams_are_not_simulated() {
    let net = SimNet::new(10);
    let mut r = net.reactor(ip("10.0.0.1"));
    let caps = r.capabilities();
    assert!(!caps.unix_sockets && !caps.datagrams);
    assert!(matches!(
        r.listen_unix("/nonexistent/sinew.sock"),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        r.bind_udp("10.0.0.1:53".parse().expect("addr"), &[]),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn multishot_and_deadlines_work_on_the_simulated_network() {
    let net = SimNet::new(12);
    let mut sim = Sim::new(net.clone());
    let (c, s) = sim.pair();
    let caps = sim.hosts[SERVER].capabilities();
    // Deadlines are virtual-time events; multishot receive is served (not native, no pool);
    // nothing is zero copy.
    assert!(caps.operation_timeouts && !caps.multishot_recv && !caps.zero_copy_send);
    sim.hosts[SERVER].recv_multishot(s, Token(2));
    sim.hosts[CLIENT].send(c, Bytes::from_static(b"abc"), Token(4));
    let mut chunk = None;
    while chunk.is_none() {
        match sim.expect() {
            (
                SERVER,
                Completion {
                    token: Token(2),
                    event:
                        Event::ReceivedBytes {
                            result: Ok(bytes),
                            more: true,
                            ..
                        },
                },
            ) => chunk = Some(bytes),
            (
                CLIENT,
                Completion {
                    token: Token(4), ..
                },
            ) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(chunk.as_deref(), Some(&b"abc"[..]));
    let start = net.now();
    sim.hosts[CLIENT].recv_timeout(
        c,
        BytesMut::with_capacity(8),
        Duration::from_secs(1),
        Token(3),
    );
    match sim.expect() {
        (
            CLIENT,
            Completion {
                token: Token(3),
                event:
                    Event::Received {
                        result: Err(Error::TimedOut),
                        buf,
                        ..
                    },
            },
        ) => assert_eq!(buf.capacity(), 8, "buffer handed back"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(net.now() - start, Duration::from_secs(1), "virtual time");
    let info = sim.hosts[CLIENT].connection_info(c).expect("info");
    assert_eq!(info.id, c);
    assert_eq!(info.peer_addr, Some(Sim::server_addr()));
    assert_eq!(info.mtu, None, "no kernel socket");
}

#[test]
fn paused_reader_closes_the_window_until_resumed() {
    const SIZE: usize = 2 << 20;
    let net = SimNet::new(11);
    let recv_buffer = net.config().recv_buffer;
    let mut sim = Sim::new(net.clone());
    let (c, s) = sim.pair();
    sim.hosts[SERVER].pause_recv(s).expect("pause");
    sim.hosts[CLIENT]
        .set_write_watermarks(c, 1 << 20, 64 << 10, Token(20))
        .expect("watermarks");
    sim.hosts[CLIENT].send(c, Bytes::from(pattern_bytes(0, SIZE)), Token(1));
    sim.hosts[CLIENT].shutdown(c, Shutdown::Write, Token(2));
    sim.hosts[SERVER].recv(s, BytesMut::with_capacity(64 * 1024), Token(3));
    match sim.expect() {
        (
            CLIENT,
            Completion {
                event: Event::WriteWatermark { high: true, .. },
                ..
            },
        ) => {}
        other => panic!("expected the high watermark, got {other:?}"),
    }
    // Ten virtual seconds later nothing moved: the receive window (the reader's buffer) is
    // full and the rest waits in the sender's queue.
    net.advance(Duration::from_secs(10));
    if let Some((h, c)) = sim.next() {
        panic!(
            "nothing completes while paused: host {h} {:?} {}",
            c.token,
            summary(&c.event)
        );
    }
    assert_eq!(
        sim.hosts[CLIENT].send_queued(c).expect("queued"),
        SIZE - recv_buffer
    );
    sim.hosts[SERVER].resume_recv(s).expect("resume");
    // `read_pattern_to_end` posts its own receive; the one queued while paused comes first.
    let got;
    match sim.expect() {
        (SERVER, comp) => match comp.event {
            Event::Received { buf, result, .. } => {
                got = result.expect("recv");
                assert!(buf.iter().enumerate().all(|(i, &b)| b == pattern(i)));
            }
            other => panic!("unexpected {other:?}"),
        },
        (_, comp) => panic!("unexpected {comp:?}"),
    }
    let mut received = got;
    let mut low_seen = false;
    sim.hosts[SERVER].recv(s, BytesMut::with_capacity(64 * 1024), Token(3));
    loop {
        let (h, comp) = sim.expect();
        match comp.event {
            Event::Received { buf, result, .. } if h == SERVER => {
                let n = result.expect("recv");
                if n == 0 {
                    break;
                }
                for (k, &b) in buf.iter().enumerate() {
                    assert_eq!(b, pattern(received + k));
                }
                received += n;
                sim.hosts[SERVER].recv(s, BytesMut::with_capacity(64 * 1024), Token(3));
            }
            Event::WriteWatermark { high: false, .. } => low_seen = true,
            Event::Sent { result, .. } => assert_eq!(result.expect("send"), SIZE),
            Event::Shutdown { result, .. } => result.expect("shutdown"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(received, SIZE);
    assert!(low_seen, "the queue fell back below the low watermark");
}
