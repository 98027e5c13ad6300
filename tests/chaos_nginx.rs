//! The chaos proxy between HTTP clients (curl, and Sinew's own pool with its circuit breaker)
//! and a real nginx: 1-byte writes and a bandwidth cap still deliver byte-exact bodies, latency
//! shows in every exchange, a reset fails the request but not nginx, a blackhole times requests
//! out until it is lifted, and the pool's breaker opens under resets and closes once the faults
//! end.
//!
//! Needs nginx (apt: nginx, or `SINEW_NGINX`) and curl; both are installed by `.ci/run`.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sinew::actors::{Addr, System};
use sinew::io_actors::{io_driver, Pool, PoolConfig, PoolError, PoolMsg};
use sinew::protocols::http1::{Body, Http1, Method, Request, Response};
use sinew::supervision::resilience::breaker::{BreakerConfig, Trip, Window};
use sinew::supervision::Backoff;
use sinew::testkit::chaos::{ChaosProxy, Faults};
use sinew::transports::Backend;
use support::nginx::{big_byte, free_port, Nginx, TempDir, BIG_LEN};

/// nginx in a temp dir (the guard order drops nginx before its directory).
struct Server {
    nginx: Nginx,
    _dir: TempDir,
}

fn nginx() -> Server {
    let dir = TempDir::new("sinew-chaos-nginx");
    let nginx = Nginx::start(&dir.0, free_port());
    Server { nginx, _dir: dir }
}

fn proxy(server: &Server, faults: Faults) -> ChaosProxy {
    ChaosProxy::start(server.nginx.addr, faults).expect("start the chaos proxy")
}

/// curl `path` through `addr` with a whole-transfer limit; its output (body on stdout).
fn curl(addr: std::net::SocketAddr, path: &str, max_time: Duration) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time"])
        .arg(format!("{:.3}", max_time.as_secs_f64()))
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("run curl (apt: curl)")
}

/// The body of a transfer that must have succeeded.
fn body(out: &Output) -> &[u8] {
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    &out.stdout
}

fn assert_big(body: &[u8]) {
    assert_eq!(body.len(), BIG_LEN, "whole body");
    if let Some(i) = (0..BIG_LEN).find(|&i| body[i] != big_byte(i)) {
        panic!("byte {i} differs");
    }
}

#[test]
fn one_byte_writes_still_deliver_exact_bodies() {
    let server = nginx();
    let p = proxy(
        &server,
        Faults {
            slice: Some(1),
            ..Faults::default()
        },
    );
    let out = curl(p.addr(), "/", Duration::from_secs(30));
    assert_eq!(body(&out), b"ok");
    // A larger body in 1-byte writes takes too long on loopback; 64-byte slices still split
    // every TCP segment nginx sends into many writes.
    p.update(|f| f.slice = Some(64));
    let out = curl(p.addr(), "/big", Duration::from_secs(60));
    assert_big(body(&out));
}

#[test]
fn latency_shows_in_every_exchange() {
    let server = nginx();
    let latency = Duration::from_millis(40);
    let p = proxy(
        &server,
        Faults {
            latency,
            ..Faults::default()
        },
    );
    // One request on a fresh connection: the request and the response each cross the proxy
    // once with the added delay (the connect handshake is answered by the proxy itself).
    let start = Instant::now();
    let out = curl(p.addr(), "/", Duration::from_secs(30));
    let took = start.elapsed();
    assert_eq!(body(&out), b"ok");
    assert!(
        took >= 2 * latency,
        "took {took:?}, below two one-way delays"
    );
}

#[test]
fn bandwidth_cap_paces_a_download_and_keeps_it_exact() {
    let server = nginx();
    let rate = 1024 * 1024;
    let p = proxy(
        &server,
        Faults {
            bandwidth: Some(rate),
            ..Faults::default()
        },
    );
    let start = Instant::now();
    let out = curl(p.addr(), "/big", Duration::from_secs(60));
    let took = start.elapsed();
    assert_big(body(&out));
    // 256 KiB at 1 MiB/s: at least a quarter of a second, less the burst the cap allows.
    let floor = Duration::from_secs_f64(BIG_LEN as f64 / rate as f64 / 2.0);
    assert!(took >= floor, "took {took:?}, faster than the cap allows");
}

#[test]
fn reset_fails_the_request_not_nginx() {
    let server = nginx();
    let p = proxy(
        &server,
        Faults {
            reset: true,
            ..Faults::default()
        },
    );
    let out = curl(p.addr(), "/", Duration::from_secs(30));
    assert!(!out.status.success(), "a reset request must fail");
    // curl: 56 = failure receiving (reset), 52 = empty reply; either way no HTTP answer.
    let code = out.status.code();
    assert!(
        matches!(code, Some(52) | Some(56)),
        "curl exit {code:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    // nginx itself is unharmed, directly and through the proxy once the fault is lifted.
    let direct = curl(server.nginx.addr, "/", Duration::from_secs(10));
    assert_eq!(direct.stdout, b"ok");
    p.set(Faults::default());
    let through = curl(p.addr(), "/", Duration::from_secs(10));
    assert_eq!(through.stdout, b"ok");
}

#[test]
fn blackhole_times_requests_out_until_lifted() {
    let server = nginx();
    let p = proxy(
        &server,
        Faults {
            blackhole: true,
            ..Faults::default()
        },
    );
    let out = curl(p.addr(), "/", Duration::from_millis(500));
    assert_eq!(out.status.code(), Some(28), "curl exit 28 is a timeout");
    p.set(Faults::default());
    let out = curl(p.addr(), "/", Duration::from_secs(10));
    assert_eq!(out.stdout, b"ok");
}

fn call(pool: &Addr<Pool<Http1>>) -> Result<Response, PoolError> {
    let req = Request::new(Method::Get, "/").header("host", "backend");
    futures::executor::block_on(pool.ask(|r| PoolMsg::Call(req, r)))
        .unwrap_or(Err(PoolError::Stopped))
}

fn breaker(pool: &Addr<Pool<Http1>>) -> &'static str {
    futures::executor::block_on(pool.ask(PoolMsg::Metrics))
        .expect("metrics")
        .breaker
}

#[test]
fn pool_breaker_opens_under_resets_and_closes_after() {
    let server = nginx();
    let p = proxy(&server, Faults::default());
    let cfg = PoolConfig {
        min_size: 1,
        max_size: 2,
        reconnect: Backoff {
            jitter: 0.0,
            ..Backoff::exponential(Duration::from_millis(5), Duration::from_millis(20))
        },
        breaker: BreakerConfig {
            window: Window::Count(10),
            trip: Trip::Rates,
            minimum_calls: 4,
            failure_rate: 0.5,
            half_open_calls: 1,
            // Long enough that the checks made while it is open (a few round trips
            // between threads) cannot outlast it on a loaded machine.
            open: Backoff {
                min: Duration::from_millis(1000),
                max: Duration::from_millis(1000),
                factor: 1.0,
                jitter: 0.0,
                reset_after: Duration::ZERO,
            },
            ..BreakerConfig::default()
        },
        ..PoolConfig::default()
    };
    let client = System::builder()
        .workers(1)
        .try_driver(io_driver(Backend::Auto))
        .build()
        .expect("system");
    let pool = client
        .spawn(Pool::new(p.addr(), Http1::default, cfg))
        .expect("pool");
    for _ in 0..3 {
        let r = call(&pool).expect("clean proxy");
        assert_eq!(r.status, 200);
        assert!(matches!(r.body, Body::Full(ref b) if &b[..] == b"ok"));
    }

    // Every connection is reset as it carries data: calls fail with transient errors until the
    // breaker opens, then fail fast.
    p.set(Faults {
        reset: true,
        ..Faults::default()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match call(&pool) {
            Err(PoolError::CircuitOpen) => break,
            Err(e) => assert!(e.is_transient(), "{e}"),
            Ok(r) => panic!("every connection is reset, got {}", r.status),
        }
        assert!(Instant::now() < deadline, "the circuit never opened");
    }
    assert_eq!(breaker(&pool), "open");

    // Faults lifted: after the open period a trial call succeeds and the circuit closes.
    p.set(Faults::default());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ok = 0;
    while ok < 5 {
        match call(&pool) {
            Ok(r) => {
                assert_eq!(r.status, 200);
                ok += 1;
            }
            Err(e) => assert!(e.is_transient(), "{e}"),
        }
        assert!(Instant::now() < deadline, "the pool never recovered");
    }
    assert_eq!(breaker(&pool), "closed");
    client.shutdown(Duration::from_secs(5));
}
