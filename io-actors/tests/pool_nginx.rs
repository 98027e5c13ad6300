//! The pool against a real nginx: when nginx stops, the circuit opens and calls fail fast with
//! `CircuitOpen`; when it starts again on the same port, the circuit goes half-open, then
//! closed, calls succeed, and the pool and nginx are back to the connections they had.
//!
//! Needs `/usr/sbin/nginx` (or `SINEW_NGINX`); skipped with a note when it is not installed.

#[path = "../../tests/support/nginx.rs"]
mod nginx;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nginx::{free_port, nginx_binary, Nginx, TempDir};

use sinew_actors::{Addr, System};
use sinew_io_actors::{io_driver, Pool, PoolConfig, PoolError, PoolMetrics, PoolMsg};
use sinew_protocols::http1::{Body, Http1, Method, Request, Response};
use sinew_supervision::resilience::breaker::{BreakerConfig, Trip, Window};
use sinew_supervision::Backoff;
use sinew_transports::Backend;

fn io_system() -> System {
    System::builder()
        .workers(1)
        .try_driver(io_driver(Backend::Auto))
        .build()
        .expect("system")
}

fn call(pool: &Addr<Pool<Http1>>) -> Result<Response, PoolError> {
    let req = Request::new(Method::Get, "/").header("host", "backend");
    futures::executor::block_on(pool.ask(|r| PoolMsg::Call(req, r)))
        .unwrap_or(Err(PoolError::Stopped))
}

fn metrics(pool: &Addr<Pool<Http1>>) -> PoolMetrics {
    futures::executor::block_on(pool.ask(PoolMsg::Metrics)).expect("metrics")
}

fn assert_ok(r: Response) {
    assert_eq!(r.status, 200);
    assert!(matches!(r.body, Body::Full(ref b) if &b[..] == b"ok"));
}

/// Polls until `cond` holds, failing after 20 s with `what`.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn circuit_opens_when_nginx_stops_and_closes_when_it_returns() {
    if !nginx_binary().exists() {
        eprintln!("skipped: no nginx at {}", nginx_binary().display());
        return;
    }
    let dir = TempDir::new("sinew-pool-nginx");
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let nginx = Nginx::start(&dir.0, port);

    let cfg = PoolConfig {
        min_size: 1,
        max_size: 3,
        max_in_flight: 4,
        reconnect: Backoff {
            jitter: 0.0,
            ..Backoff::exponential(Duration::from_millis(10), Duration::from_millis(50))
        },
        breaker: BreakerConfig {
            window: Window::Count(10),
            trip: Trip::Rates,
            minimum_calls: 4,
            failure_rate: 0.5,
            half_open_calls: 2,
            // Long enough that the checks made while it is open (a few round trips
            // between threads) cannot outlast it on a loaded machine.
            open: Backoff {
                min: Duration::from_millis(2000),
                max: Duration::from_millis(2000),
                factor: 1.0,
                jitter: 0.0,
                reset_after: Duration::ZERO,
            },
            ..BreakerConfig::default()
        },
        ..PoolConfig::default()
    };
    let client = io_system();
    let pool = client
        .spawn(Pool::new(addr, Http1::default, cfg).classify(|r: &Response| r.status >= 500))
        .expect("pool");
    for _ in 0..5 {
        assert_ok(call(&pool).expect("nginx up"));
    }
    let baseline = metrics(&pool);
    assert_eq!(baseline.breaker, "closed");
    assert_eq!(baseline.size, 1, "{baseline:?}");
    assert_eq!(nginx.connections(), baseline.size);

    // nginx goes away: calls fail, the circuit opens, and calls then fail fast.
    nginx.stop();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match call(&pool) {
            Err(PoolError::CircuitOpen) => break,
            Err(e) => assert!(e.is_transient(), "{e}"),
            Ok(r) => panic!("nginx is down, got {}", r.status),
        }
        assert!(Instant::now() < deadline, "the circuit never opened");
    }
    assert_eq!(metrics(&pool).breaker, "open");
    let fast = Instant::now();
    assert_eq!(call(&pool).unwrap_err(), PoolError::CircuitOpen);
    assert!(
        fast.elapsed() < Duration::from_secs(1),
        "failing fast does not wait for a timeout"
    );
    let rejected = metrics(&pool).rejected_open;
    assert!(rejected >= 2, "{rejected}");

    // nginx comes back on the same port: the open period ends, trial calls go out (half-open),
    // succeed, and the circuit closes.
    let nginx = Nginx::start(&dir.0, port);
    // With no call made meanwhile, the end of the open period shows as half-open.
    eventually("the circuit is half-open", || {
        metrics(&pool).breaker == "half-open"
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ok = 0;
    while ok < 5 {
        match call(&pool) {
            Ok(r) => {
                assert_ok(r);
                ok += 1;
            }
            Err(e) => assert!(e.is_transient(), "{e}"),
        }
        assert!(Instant::now() < deadline, "the pool never recovered");
    }
    assert_eq!(metrics(&pool).breaker, "closed");

    // Back to the baseline number of connections, as the pool and nginx see them.
    eventually("connections back to the baseline", || {
        let m = metrics(&pool);
        m.size == baseline.size && nginx.connections() == baseline.size
    });
    client.shutdown(Duration::from_secs(5));
    drop(nginx);
}
