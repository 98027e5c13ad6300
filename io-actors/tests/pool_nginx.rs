//! The pool against a real nginx: when nginx stops, the circuit opens and calls fail fast with
//! `CircuitOpen`; when it starts again on the same port, the circuit goes half-open, then
//! closed, calls succeed, and the pool and nginx are back to the connections they had.
//!
//! Needs `/usr/sbin/nginx` (or `SINEW_NGINX`); skipped with a note when it is not installed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sinew_actors::{Addr, System};
use sinew_io_actors::{io_driver, Pool, PoolConfig, PoolError, PoolMetrics, PoolMsg};
use sinew_protocols::http1::{Body, Http1, Method, Request, Response};
use sinew_supervision::resilience::breaker::{BreakerConfig, Trip, Window};
use sinew_supervision::Backoff;
use sinew_transports::Backend;

fn nginx_binary() -> PathBuf {
    std::env::var_os("SINEW_NGINX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("sinew-pool-nginx-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One nginx process (no master, one worker) serving `ok` on `port`; killed when dropped.
struct Nginx {
    child: Child,
}

impl Nginx {
    fn start(dir: &Path, port: u16) -> Nginx {
        let d = dir.display();
        let conf = format!(
            "daemon off;
master_process off;
worker_processes 1;
error_log stderr;
pid {d}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /status {{ stub_status; }}
        location / {{ return 200 \"ok\"; }}
    }}
}}
"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).expect("nginx.conf");
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg("stderr")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx { child };
        // Ready once it accepts connections.
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        nginx
    }

    fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nginx's count of open client connections (stub_status), not counting the one asking.
fn nginx_connections(port: u16) -> usize {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to nginx");
    s.write_all(b"GET /status HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .expect("status request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("status response");
    let active = out
        .lines()
        .find_map(|l| l.strip_prefix("Active connections:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no stub_status in {out:?}"));
    active - 1
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

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
    let dir = TempDir::new();
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
            open: Backoff {
                min: Duration::from_millis(200),
                max: Duration::from_millis(200),
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
    assert_eq!(nginx_connections(port), baseline.size);

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
        m.size == baseline.size && nginx_connections(port) == baseline.size
    });
    client.shutdown(Duration::from_secs(5));
    drop(nginx);
}
