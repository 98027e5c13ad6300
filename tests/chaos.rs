//! The fault-injecting proxy between a real client and a real server: pass-through, latency,
//! sliced writes, bandwidth cap, blackhole, reset, and faults changed while traffic flows.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sinew::testkit::chaos::{ChaosProxy, Faults};

/// A real echo server on its own threads; records the size of every read it makes.
fn echo_server() -> (SocketAddr, Arc<Mutex<Vec<usize>>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let reads = Arc::new(Mutex::new(Vec::new()));
    let r = reads.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let r = r.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            r.lock().unwrap().push(n);
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, reads)
}

fn client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

fn round_trip(s: &mut TcpStream, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(payload)?;
    let mut got = vec![0u8; payload.len()];
    s.read_exact(&mut got)?;
    Ok(got)
}

#[test]
fn passes_traffic_through_unchanged() {
    let (server, _) = echo_server();
    let proxy = ChaosProxy::start(server, Faults::default()).expect("proxy");
    let mut c = client(proxy.addr());
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(round_trip(&mut c, &payload).expect("echo"), payload);
}

#[test]
fn latency_delays_each_direction() {
    let (server, _) = echo_server();
    let proxy = ChaosProxy::start(
        server,
        Faults {
            latency: Duration::from_millis(40),
            ..Faults::default()
        },
    )
    .expect("proxy");
    let mut c = client(proxy.addr());
    let t = Instant::now();
    assert_eq!(round_trip(&mut c, b"ping").expect("echo"), b"ping");
    // Two one-way delays: the fault's own lower bound, not a performance figure.
    assert!(
        t.elapsed() >= Duration::from_millis(80),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn slicing_splits_writes() {
    let (server, reads) = echo_server();
    // Slices of 7 bytes, paced at 3.5 KB/s (one every 2 ms): the kernel may merge slices that
    // are in the socket buffer together, so pacing keeps the server from seeing them all at once
    // unless it sleeps for the whole 200 ms transfer.
    let faults = Faults {
        slice: Some(7),
        bandwidth: Some(3_500),
        ..Faults::default()
    };
    let proxy = ChaosProxy::start(server, faults).expect("proxy");
    let mut c = client(proxy.addr());
    let payload: Vec<u8> = (0..700u32).map(|i| i as u8).collect();
    assert_eq!(round_trip(&mut c, &payload).expect("echo"), payload);
    let reads = reads.lock().unwrap().clone();
    assert!(reads.len() > 1 && reads[0] < 700, "server reads: {reads:?}");
}

#[test]
fn bandwidth_cap_paces_transfers() {
    let (server, _) = echo_server();
    let proxy = ChaosProxy::start(
        server,
        Faults {
            bandwidth: Some(200_000),
            slice: Some(10_000),
            ..Faults::default()
        },
    )
    .expect("proxy");
    let mut c = client(proxy.addr());
    let payload = vec![7u8; 100_000];
    let t = Instant::now();
    assert_eq!(round_trip(&mut c, &payload).expect("echo"), payload);
    // 100 KB each way at 200 KB/s: at least ~0.4 s in total (minus the first slice each way).
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn blackhole_swallows_data_and_can_be_lifted() {
    let (server, _) = echo_server();
    let proxy = ChaosProxy::start(
        server,
        Faults {
            blackhole: true,
            ..Faults::default()
        },
    )
    .expect("proxy");
    let mut c = client(proxy.addr());
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    c.write_all(b"lost").expect("write");
    let mut buf = [0u8; 4];
    let e = c.read(&mut buf).expect_err("nothing comes back");
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );
    // Lift it while the connection is open: traffic flows again.
    proxy.set(Faults::default());
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert_eq!(round_trip(&mut c, b"back").expect("echo"), b"back");
}

#[test]
fn reset_tears_connections_down_with_rst() {
    let (server, _) = echo_server();
    let proxy = ChaosProxy::start(server, Faults::default()).expect("proxy");
    let mut c = client(proxy.addr());
    assert_eq!(round_trip(&mut c, b"ok").expect("echo"), b"ok");
    proxy.update(|f| f.reset = true);
    let _ = c.write_all(b"boom");
    let mut buf = [0u8; 4];
    match c.read(&mut buf) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("expected a reset, read {n} bytes"),
    }
}

/// Sends one RESP command and reads one line-terminated reply (enough for +OK, +PONG, $n bulk
/// replies of short values are read in full below).
fn resp(s: &mut TcpStream, cmd: &str) -> std::io::Result<String> {
    s.write_all(cmd.as_bytes())?;
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    // Read until the reply is complete: a simple line, or a bulk header plus its payload line.
    let mut lines_needed = 1;
    while lines_needed > 0 {
        s.read_exact(&mut b)?;
        out.push(b[0]);
        if out.ends_with(b"\r\n") {
            if out.len() > 2
                && out[0] == b'$'
                && lines_needed == 1
                && !out.starts_with(b"$-1")
                && out.iter().filter(|c| **c == b'\n').count() == 1
            {
                lines_needed = 2;
            }
            lines_needed -= 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn a_real_redis_server_through_latency_and_sliced_writes() {
    let redis = support::RealRedis::start();
    let proxy = ChaosProxy::start(
        redis.addr,
        Faults {
            latency: Duration::from_millis(20),
            slice: Some(1),
            ..Faults::default()
        },
    )
    .expect("proxy");
    let mut c = client(proxy.addr());
    let t = Instant::now();
    assert_eq!(
        resp(&mut c, "*3\r\n$3\r\nSET\r\n$5\r\nchaos\r\n$5\r\nworks\r\n").unwrap(),
        "+OK\r\n"
    );
    assert_eq!(
        resp(&mut c, "*2\r\n$3\r\nGET\r\n$5\r\nchaos\r\n").unwrap(),
        "$5\r\nworks\r\n"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(80),
        "two round trips through 20 ms each way"
    );
    // Reset mid-session: the client sees the connection die, redis keeps serving others.
    proxy.update(|f| f.reset = true);
    assert!(resp(&mut c, "*1\r\n$4\r\nPING\r\n").is_err());
    proxy.set(Faults::default());
    let mut again = client(proxy.addr());
    assert_eq!(
        resp(&mut again, "*1\r\n$4\r\nPING\r\n").unwrap(),
        "+PONG\r\n"
    );
}
