//! The pool as a supervisor of connection actors, against a real backend (Sinew's own HTTP
//! server): calls spread over connections; when the backend stops the circuit opens and calls
//! fail fast; when it comes back the circuit goes half-open, then closed, and calls succeed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sinew_actors::{Actor, Addr, Context, System};
use sinew_io_actors::{
    io_driver, serve, IncomingFor, Pool, PoolConfig, PoolError, PoolMsg, PoolOrder, ServerConfig,
};
use sinew_protocols::http1::{Body, Http1, Method, Request, Response};
use sinew_supervision::resilience::breaker::{BreakerConfig, Trip, Window};
use sinew_supervision::Backoff;
use sinew_transports::Backend;

struct Hello;

impl Actor for Hello {
    type Msg = IncomingFor<Http1>;
    fn handle(&mut self, inc: IncomingFor<Http1>, _ctx: &mut Context<Self>) {
        inc.reply
            .send(Response::new(200).with_body(Body::Full(Bytes::from_static(b"ok"))));
    }
}

/// A one-worker system whose workers park in their own reactors.
fn io_system() -> System {
    System::builder()
        .workers(1)
        .try_driver(io_driver(Backend::Auto))
        .build()
        .expect("system")
}

/// Serves `app` over HTTP on `addr` in a system of its own.
fn serve_app<A: Actor<Msg = IncomingFor<Http1>>>(app: A, addr: SocketAddr) -> (System, SocketAddr) {
    let sys = io_system();
    let app = sys.spawn(app).expect("app");
    let bound = serve(
        &sys.handle(),
        Http1::default(),
        addr,
        0..1,
        app.recipient(),
        ServerConfig::default(),
    )
    .expect("serve");
    (sys, bound)
}

/// The healthy backend.
fn backend(addr: SocketAddr) -> (System, SocketAddr) {
    serve_app(Hello, addr)
}

fn get() -> Request {
    Request::new(Method::Get, "/").header("host", "backend")
}

fn call(pool: &Addr<Pool<Http1>>) -> Result<Response, PoolError> {
    futures::executor::block_on(pool.ask(|r| PoolMsg::Call(get(), r)))
        .unwrap_or(Err(PoolError::Stopped))
}

fn metrics(pool: &Addr<Pool<Http1>>) -> sinew_io_actors::PoolMetrics {
    futures::executor::block_on(pool.ask(PoolMsg::Metrics)).expect("metrics")
}

fn config() -> PoolConfig {
    PoolConfig {
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
    }
}

#[test]
fn calls_spread_over_a_bounded_number_of_connections() {
    let (backend_sys, addr) = backend("127.0.0.1:0".parse().unwrap());
    let client = io_system();
    let pool = client
        .spawn(Pool::new(addr, Http1::default, config()))
        .unwrap();
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let p = pool.clone();
            std::thread::spawn(move || call(&p))
        })
        .collect();
    for c in calls {
        assert_eq!(c.join().unwrap().expect("call").status, 200);
    }
    let m = metrics(&pool);
    assert!(m.size >= 1 && m.size <= 3, "{m:?}");
    assert_eq!(m.waiters, 0);
    assert_eq!(m.breaker, "closed");
    client.shutdown(Duration::from_secs(5));
    backend_sys.shutdown(Duration::from_secs(5));
}

#[test]
fn circuit_opens_when_the_backend_dies_and_closes_when_it_returns() {
    let (backend_sys, addr) = backend("127.0.0.1:0".parse().unwrap());
    let client = io_system();
    let pool = client
        .spawn(Pool::new(addr, Http1::default, config()))
        .unwrap();
    for _ in 0..5 {
        assert_eq!(call(&pool).expect("backend up").status, 200);
    }

    // The backend goes away: calls fail, then the circuit opens and calls fail fast.
    backend_sys.shutdown(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match call(&pool) {
            Err(PoolError::CircuitOpen) => break,
            Err(e) => assert!(e.is_transient(), "{e}"),
            Ok(r) => panic!("backend is down, got {}", r.status),
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
    assert!(metrics(&pool).rejected_open >= 2);

    // It comes back on the same address: half-open trials succeed and the circuit closes.
    let (backend_sys, again) = backend(addr);
    assert_eq!(again, addr);
    let deadline = Instant::now() + Duration::from_secs(10);
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
    let m = metrics(&pool);
    assert_eq!(m.breaker, "closed");
    assert!(
        m.size >= 1 && m.size <= 3,
        "connections back to a bounded count: {m:?}"
    );
    client.shutdown(Duration::from_secs(5));
    backend_sys.shutdown(Duration::from_secs(5));
}

/// Always answers 500.
struct Broken;

impl Actor for Broken {
    type Msg = IncomingFor<Http1>;
    fn handle(&mut self, inc: IncomingFor<Http1>, _ctx: &mut Context<Self>) {
        inc.reply.send(Response::new(500));
    }
}

#[test]
fn server_errors_classified_as_failures_open_the_circuit() {
    let (sys, addr) = serve_app(Broken, "127.0.0.1:0".parse().unwrap());
    let client = io_system();
    let pool = client
        .spawn(Pool::new(addr, Http1::default, config()).classify(|r: &Response| r.status >= 500))
        .unwrap();
    // The 500s reach the caller, and count as failures: after the minimum number of calls the
    // circuit opens.
    for _ in 0..4 {
        assert_eq!(call(&pool).expect("the caller gets the 500").status, 500);
    }
    assert_eq!(call(&pool).unwrap_err(), PoolError::CircuitOpen);
    client.shutdown(Duration::from_secs(5));
    sys.shutdown(Duration::from_secs(5));
}

/// Answers 500 and counts the requests it receives.
struct CountingBroken(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Actor for CountingBroken {
    type Msg = IncomingFor<Http1>;
    fn handle(&mut self, inc: IncomingFor<Http1>, _ctx: &mut Context<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        inc.reply.send(Response::new(500));
    }
}

#[test]
fn retry_budget_caps_extra_load_on_a_failing_backend() {
    use sinew_supervision::resilience::retry::{RetryBudget, RetryPolicy};
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (sys, addr) = serve_app(CountingBroken(seen.clone()), "127.0.0.1:0".parse().unwrap());
    let client = io_system();
    let mut cfg = config();
    // Keep the breaker out of the way: this test is about the budget.
    cfg.breaker.failure_rate = 2.0;
    let pool = Pool::new(addr, Http1::default, cfg)
        .classify(|r: &Response| r.status >= 500)
        .retries(
            RetryPolicy::new(5, Backoff::none(), 1),
            RetryBudget::new(0.2, 0, Duration::from_secs(60)),
            // GET is idempotent and retried; anything else is not.
            |r: &Request| (r.method == Method::Get).then(|| r.clone()),
        );
    let pool = client.spawn(pool).unwrap();
    for _ in 0..100 {
        assert_eq!(
            call(&pool)
                .expect("the final 500 reaches the caller")
                .status,
            500
        );
    }
    let gets = seen.load(std::sync::atomic::Ordering::SeqCst);
    assert!(gets > 100, "retries happened: {gets}");
    assert!(
        gets <= 120,
        "retries add at most 20%: the server saw {gets} requests for 100 calls"
    );

    // Non-idempotent requests are never retried.
    seen.store(0, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..10 {
        let post = Request::new(Method::Post, "/").header("host", "backend");
        let r = futures::executor::block_on(pool.ask(|r| PoolMsg::Call(post, r))).unwrap();
        assert_eq!(r.unwrap().status, 500);
    }
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 10);
    client.shutdown(Duration::from_secs(5));
    sys.shutdown(Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------------
// Retirement, health checks, FIFO/LIFO and wait metrics, against a plain-threads HTTP/1.1
// backend that numbers its connections (each response's body is its connection's number) and
// counts accepted and open connections.

mod raw {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    /// What the connection threads share.
    #[derive(Default)]
    struct Shared {
        accepted: AtomicUsize,
        open: AtomicUsize,
        /// Status of `/health` answers (200 unless set).
        health_status: AtomicU16,
        health_seen: AtomicUsize,
        stop: AtomicBool,
        /// Requests that reached `/gate/N` or `/hold`, and whether `/hold` is released.
        gate: Mutex<(usize, bool)>,
        moved: Condvar,
    }

    /// The backend; stopped (its listener closed, its connections closed) when dropped.
    pub struct Backend {
        pub addr: SocketAddr,
        shared: Arc<Shared>,
        acceptor: Option<JoinHandle<()>>,
    }

    impl Backend {
        /// Listens on a free local port.
        pub fn start() -> Backend {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let shared = Arc::new(Shared::default());
            shared.health_status.store(200, Ordering::SeqCst);
            let s = shared.clone();
            let acceptor = std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let id = s.accepted.fetch_add(1, Ordering::SeqCst) + 1;
                    s.open.fetch_add(1, Ordering::SeqCst);
                    let s = s.clone();
                    std::thread::spawn(move || {
                        serve(stream, id, &s);
                        s.open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            });
            Backend {
                addr,
                shared,
                acceptor: Some(acceptor),
            }
        }

        /// Connections accepted so far.
        pub fn accepted(&self) -> usize {
            self.shared.accepted.load(Ordering::SeqCst)
        }

        /// Connections open now (the peer has not closed them).
        pub fn open(&self) -> usize {
            self.shared.open.load(Ordering::SeqCst)
        }

        /// Health requests answered so far.
        pub fn health_seen(&self) -> usize {
            self.shared.health_seen.load(Ordering::SeqCst)
        }

        /// Answers `/health` with `status` from now on.
        pub fn set_health(&self, status: u16) {
            self.shared.health_status.store(status, Ordering::SeqCst);
        }

        /// Requests waiting at `/hold` or `/gate/N` (or past them).
        pub fn arrived(&self) -> usize {
            self.shared.gate.lock().unwrap().0
        }

        /// Lets `/hold` requests (present and future) be answered.
        pub fn release(&self) {
            self.shared.gate.lock().unwrap().1 = true;
            self.shared.moved.notify_all();
        }
    }

    impl Drop for Backend {
        fn drop(&mut self) {
            self.shared.stop.store(true, Ordering::SeqCst);
            self.release();
            let _ = TcpStream::connect(self.addr);
            if let Some(a) = self.acceptor.take() {
                let _ = a.join();
            }
        }
    }

    fn serve(mut stream: TcpStream, id: usize, s: &Shared) {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
        let _ = stream.set_nodelay(true);
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + 4);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let mut status = 200;
                if path == "/health" {
                    s.health_seen.fetch_add(1, Ordering::SeqCst);
                    status = s.health_status.load(Ordering::SeqCst);
                } else if let Some(n) = path.strip_prefix("/gate/") {
                    let n: usize = n.parse().unwrap_or(1);
                    wait(s, |(arrived, _)| *arrived >= n);
                } else if path == "/hold" {
                    wait(s, |(_, released)| *released);
                }
                let body = id.to_string();
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(response.as_bytes()).is_err() {
                    return;
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if s.stop.load(Ordering::SeqCst) {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// Counts this request in, then waits (at most 20 s) until `ready`.
    fn wait(s: &Shared, ready: impl Fn(&(usize, bool)) -> bool) {
        let mut g = s.gate.lock().unwrap();
        g.0 += 1;
        s.moved.notify_all();
        let until = Instant::now() + Duration::from_secs(20);
        while !ready(&g) && !s.stop.load(Ordering::SeqCst) && Instant::now() < until {
            g = s
                .moved
                .wait_timeout(g, Duration::from_millis(50))
                .unwrap()
                .0;
        }
    }
}

fn get_path(path: &'static str) -> Request {
    Request::new(Method::Get, path).header("host", "backend")
}

/// Calls `path` and returns the number of the backend connection that answered.
fn conn_id(pool: &Addr<Pool<Http1>>, path: &'static str) -> Result<usize, PoolError> {
    let req = get_path(path);
    let r = futures::executor::block_on(pool.ask(|r| PoolMsg::Call(req, r)))
        .unwrap_or(Err(PoolError::Stopped))?;
    assert_eq!(r.status, 200);
    let Body::Full(b) = r.body else {
        panic!("a full body")
    };
    Ok(std::str::from_utf8(&b).unwrap().parse().unwrap())
}

/// Polls until `cond` holds (timer-driven effects), failing after 20 s with `what`.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn idle_connections_above_min_size_close_after_idle_timeout() {
    let backend = raw::Backend::start();
    let client = io_system();
    let cfg = PoolConfig {
        min_size: 1,
        max_size: 4,
        max_in_flight: 1,
        idle_timeout: Some(Duration::from_millis(300)),
        ..config()
    };
    let pool = client
        .spawn(Pool::new(backend.addr, Http1::default, cfg))
        .unwrap();
    // Four calls that the backend answers only once all four arrived: four connections.
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let p = pool.clone();
            std::thread::spawn(move || conn_id(&p, "/gate/4"))
        })
        .collect();
    let mut ids: Vec<usize> = calls
        .into_iter()
        .map(|c| c.join().unwrap().expect("call"))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3, 4], "one call per connection");
    assert_eq!(backend.accepted(), 4);

    // Idle for the idle timeout: the three above min_size close, the pool and the backend see
    // one connection, and never fewer.
    eventually("the pool shrinks to min_size", || {
        let m = metrics(&pool);
        assert!(m.size >= 1, "never below min_size: {m:?}");
        m.size == 1 && m.retiring == 0 && backend.open() == 1
    });
    let m = metrics(&pool);
    assert_eq!(m.retired_idle, 3, "{m:?}");
    assert_eq!(m.retired_lifetime + m.retired_health, 0, "{m:?}");
    // The survivor still serves, and no connection was opened to replace the closed ones.
    let id = conn_id(&pool, "/").expect("call");
    assert!(ids.contains(&id));
    assert_eq!(backend.accepted(), 4);
    assert_eq!(metrics(&pool).size, 1);
    client.shutdown(Duration::from_secs(5));
}

#[test]
fn max_lifetime_retires_and_replaces_connections_without_failing_calls() {
    let backend = raw::Backend::start();
    let client = io_system();
    let cfg = PoolConfig {
        min_size: 2,
        max_size: 4,
        max_in_flight: 2,
        max_lifetime: Some(Duration::from_millis(150)),
        ..config()
    };
    let pool = client
        .spawn(Pool::new(backend.addr, Http1::default, cfg))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (p, stop) = (pool.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut ok = 0u32;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    // Every call succeeds: a retired connection finishes what it carries.
                    conn_id(&p, "/").expect("no call fails because of a retirement");
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    eventually("six connections retired by age", || {
        metrics(&pool).retired_lifetime >= 6
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let ok: u32 = callers.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(ok > 0);
    let m = metrics(&pool);
    assert!(m.size >= 2 && m.size <= 4, "{m:?}");
    assert_eq!(m.breaker, "closed");
    // The pool counts a replacement before the backend's acceptor has accepted it: wait for
    // the acceptor to catch up.
    eventually("retired connections were replaced", || {
        backend.accepted() as u64 >= m.retired_lifetime + 2
    });
    // Without traffic the pool keeps renewing its min_size connections.
    let before = metrics(&pool).retired_lifetime;
    eventually("idle connections are renewed too", || {
        metrics(&pool).retired_lifetime >= before + 2
    });
    eventually(
        "the pool and the backend agree on min_size connections",
        || {
            let m = metrics(&pool);
            m.size == 2 && m.retiring == 0 && backend.open() == 2
        },
    );
    client.shutdown(Duration::from_secs(5));
}

#[test]
fn a_failed_health_check_replaces_the_connection() {
    let backend = raw::Backend::start();
    let client = io_system();
    let cfg = PoolConfig {
        min_size: 1,
        max_size: 2,
        health_check_interval: Some(Duration::from_millis(40)),
        ..config()
    };
    // The protocol's own probe (`GET /health`); 5xx counts as a failure.
    let pool = client
        .spawn(
            Pool::new(backend.addr, Http1::default, cfg).classify(|r: &Response| r.status >= 500),
        )
        .unwrap();
    let first = conn_id(&pool, "/").expect("call");

    // Healthy: probes pass and the connection stays.
    eventually("three probes passed", || {
        metrics(&pool).health_checks >= 3 && backend.health_seen() >= 3
    });
    let m = metrics(&pool);
    assert_eq!(m.retired_health, 0, "{m:?}");
    assert_eq!(conn_id(&pool, "/").expect("call"), first);
    assert_eq!(backend.accepted(), 1);

    // The backend starts failing its health checks: the connection is retired.
    backend.set_health(500);
    eventually("a failed probe retired the connection", || {
        metrics(&pool).retired_health >= 1
    });
    backend.set_health(200);
    // Calls go to a new connection; probes are not calls, so the circuit stayed closed.
    let second = conn_id(&pool, "/").expect("call on the replacement");
    assert_ne!(second, first);
    assert!(backend.accepted() >= 2);
    eventually("one connection again, on both sides", || {
        let m = metrics(&pool);
        m.size == 1 && m.retiring == 0 && backend.open() == 1
    });
    let m = metrics(&pool);
    assert_eq!(m.breaker, "closed", "{m:?}");
    assert_eq!(m.retired_idle + m.retired_lifetime, 0, "{m:?}");
    client.shutdown(Duration::from_secs(5));
}

/// Nine sequential calls over three warm connections, in `order`: the connection numbers.
fn sequential_ids(order: PoolOrder) -> Vec<usize> {
    let backend = raw::Backend::start();
    let client = io_system();
    let cfg = PoolConfig {
        min_size: 3,
        max_size: 3,
        order,
        ..config()
    };
    let pool = client
        .spawn(Pool::new(backend.addr, Http1::default, cfg))
        .unwrap();
    eventually("three connections are up", || backend.accepted() == 3);
    let ids = (0..9).map(|_| conn_id(&pool, "/").expect("call")).collect();
    assert_eq!(backend.accepted(), 3);
    client.shutdown(Duration::from_secs(5));
    ids
}

#[test]
fn lifo_keeps_one_hot_connection_and_fifo_rotates_over_idle_ones() {
    // LIFO: the most recently released connection takes the next call, every time.
    let lifo = sequential_ids(PoolOrder::Lifo);
    assert!(lifo.iter().all(|&id| id == lifo[0]), "LIFO: {lifo:?}");
    assert_eq!(PoolConfig::default().order, PoolOrder::Lifo, "the default");

    // FIFO: the least recently released one does, so calls rotate over all three.
    let fifo = sequential_ids(PoolOrder::Fifo);
    let mut first3 = fifo[..3].to_vec();
    first3.sort_unstable();
    first3.dedup();
    assert_eq!(first3.len(), 3, "FIFO uses every connection: {fifo:?}");
    for i in 3..fifo.len() {
        assert_eq!(fifo[i], fifo[i - 3], "FIFO rotates: {fifo:?}");
    }
}

#[test]
fn calls_that_wait_for_a_connection_are_timed() {
    let backend = raw::Backend::start();
    let client = io_system();
    let cfg = PoolConfig {
        min_size: 1,
        max_size: 1,
        max_in_flight: 1,
        checkout_timeout: Duration::from_secs(30),
        ..config()
    };
    let pool = client
        .spawn(Pool::new(backend.addr, Http1::default, cfg))
        .unwrap();
    // One call holds the only connection; three more wait for it.
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let p = pool.clone();
            std::thread::spawn(move || conn_id(&p, "/hold"))
        })
        .collect();
    eventually("three calls wait", || {
        metrics(&pool).waiters == 3 && backend.arrived() == 1
    });
    std::thread::sleep(Duration::from_millis(20));
    backend.release();
    for c in calls {
        assert_eq!(c.join().unwrap().expect("call"), 1);
    }
    let m = metrics(&pool);
    assert_eq!(m.waited, 3, "{m:?}");
    assert_eq!(m.waiters, 0);
    assert_eq!(m.checkout_timeouts, 0);
    assert!(m.wait_max >= Duration::from_millis(20), "{m:?}");
    assert!(m.wait_mean() > Duration::ZERO && m.wait_mean() <= m.wait_max);
    assert!(m.wait_total >= m.wait_max);
    client.shutdown(Duration::from_secs(5));
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so connecting to it
/// hangs (until the client gives up). Holds the connections that fill it.
fn black_hole() -> (std::net::TcpListener, Vec<std::net::TcpStream>) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns; it ends up in a
    // TcpListener, which closes it.
    let listener = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket");
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), len),
            0
        );
        assert_eq!(libc::listen(fd, 0), 0);
        std::net::TcpListener::from_raw_fd(fd)
    };
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => held.push(s),
            Err(_) => return (listener, held),
        }
    }
    panic!("the accept queue never filled");
}

#[test]
fn connect_timeout_bounds_connection_setup() {
    let (hole, _held) = black_hole();
    let client = io_system();
    let cfg = PoolConfig {
        connect_timeout: Some(Duration::from_millis(200)),
        call_timeout: Duration::from_secs(20),
        checkout_timeout: Duration::from_secs(20),
        ..config()
    };
    let pool = client
        .spawn(Pool::new(hole.local_addr().unwrap(), Http1::default, cfg))
        .unwrap();
    let started = Instant::now();
    match call(&pool) {
        Err(PoolError::Client(sinew_io_actors::ClientError::Connection(why))) => {
            assert!(why.contains("connect timed out"), "{why}")
        }
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    // The protocol's own bound (HTTP/1.1's 10 s header-read timeout) did not apply.
    assert!(started.elapsed() < Duration::from_secs(5));
    client.shutdown(Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------------
// Hedging, against a plain-threads HTTP/1.1 backend whose first connection answers slowly.

mod slow {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;
    use std::time::Duration;

    #[derive(Default)]
    struct Shared {
        accepted: AtomicUsize,
        /// Requests received, per connection number (index 0 unused).
        requests: Mutex<Vec<usize>>,
        stop: AtomicBool,
    }

    /// Numbers its connections from 1 and answers each request with its connection's number;
    /// connection 1 waits `delay` before each answer. Stopped when dropped.
    pub struct SlowFirst {
        pub addr: SocketAddr,
        shared: Arc<Shared>,
        acceptor: Option<JoinHandle<()>>,
    }

    impl SlowFirst {
        pub fn start(delay: Duration) -> SlowFirst {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let shared = Arc::new(Shared::default());
            let s = shared.clone();
            let acceptor = std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let id = s.accepted.fetch_add(1, Ordering::SeqCst) + 1;
                    let wait = if id == 1 { delay } else { Duration::ZERO };
                    let s = s.clone();
                    std::thread::spawn(move || serve(stream, id, wait, &s));
                }
            });
            SlowFirst {
                addr,
                shared,
                acceptor: Some(acceptor),
            }
        }

        pub fn accepted(&self) -> usize {
            self.shared.accepted.load(Ordering::SeqCst)
        }

        /// Requests connection `id` received.
        pub fn requests_on(&self, id: usize) -> usize {
            self.shared
                .requests
                .lock()
                .unwrap()
                .get(id)
                .copied()
                .unwrap_or(0)
        }

        /// Requests received on every connection.
        pub fn requests(&self) -> usize {
            self.shared.requests.lock().unwrap().iter().sum()
        }
    }

    impl Drop for SlowFirst {
        fn drop(&mut self) {
            self.shared.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(self.addr);
            if let Some(a) = self.acceptor.take() {
                let _ = a.join();
            }
        }
    }

    fn serve(mut stream: TcpStream, id: usize, wait: Duration, s: &Shared) {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
        let _ = stream.set_nodelay(true);
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                buf.drain(..end + 4);
                {
                    let mut r = s.requests.lock().unwrap();
                    if r.len() <= id {
                        r.resize(id + 1, 0);
                    }
                    r[id] += 1;
                }
                std::thread::sleep(wait);
                let body = id.to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(response.as_bytes()).is_err() {
                    return;
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if s.stop.load(Ordering::SeqCst) {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }
}

/// How long the slow connection takes to answer.
const SLOW: Duration = Duration::from_millis(1000);

/// A pool of at most two connections to a fresh slow-first backend, GETs retryable (hence
/// hedgeable) with `budget`, hedging by `hedge`; returns once connection 1 is up.
fn hedged_pool(
    client: &System,
    hedge: Option<sinew_io_actors::HedgePolicy>,
    budget: sinew_supervision::resilience::retry::RetryBudget,
    max_size: usize,
) -> (slow::SlowFirst, Addr<Pool<Http1>>) {
    use sinew_supervision::resilience::retry::RetryPolicy;
    let backend = slow::SlowFirst::start(SLOW);
    let cfg = PoolConfig {
        min_size: 1,
        max_size,
        max_in_flight: 4,
        call_timeout: Duration::from_secs(10),
        hedge,
        ..config()
    };
    let pool = Pool::new(backend.addr, Http1::default, cfg).retries(
        // One attempt: no retries, so whatever extra request the backend sees is a hedge.
        RetryPolicy::new(1, Backoff::none(), 1),
        budget,
        |r: &Request| (r.method == Method::Get).then(|| r.clone()),
    );
    let pool = client.spawn(pool).unwrap();
    eventually("connection 1 is up", || backend.accepted() == 1);
    (backend, pool)
}

fn roomy_budget() -> sinew_supervision::resilience::retry::RetryBudget {
    sinew_supervision::resilience::retry::RetryBudget::new(0.2, 10, Duration::from_secs(10))
}

fn hedge_50ms() -> Option<sinew_io_actors::HedgePolicy> {
    Some(sinew_io_actors::HedgePolicy {
        delay: Duration::from_millis(50),
        max_extra: 1,
    })
}

/// Sends `req` through the pool: the answering connection's number and the time it took.
fn timed(pool: &Addr<Pool<Http1>>, req: Request) -> (usize, Duration) {
    let started = Instant::now();
    let r = futures::executor::block_on(pool.ask(|r| PoolMsg::Call(req, r)))
        .unwrap_or(Err(PoolError::Stopped))
        .expect("call");
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    let Body::Full(b) = r.body else {
        panic!("a full body")
    };
    (std::str::from_utf8(&b).unwrap().parse().unwrap(), took)
}

#[test]
fn a_hedge_on_another_connection_answers_a_slow_call() {
    let client = io_system();
    let (backend, pool) = hedged_pool(&client, hedge_50ms(), roomy_budget(), 2);
    let (id, took) = timed(&pool, get());
    assert_eq!(id, 2, "the hedge went to a second connection and won");
    assert!(
        took < SLOW / 2,
        "the call did not wait for the slow connection: {took:?}"
    );
    let m = metrics(&pool);
    assert_eq!((m.calls, m.hedges, m.hedge_wins), (1, 1, 1), "{m:?}");
    assert_eq!(backend.requests_on(1), 1);
    assert_eq!(backend.requests_on(2), 1);
    // The slow answer arrives later, is dropped, and frees its connection.
    eventually("the late answer released connection 1", || {
        let m = metrics(&pool);
        m.in_flight == 0 && m.size == 2 && m.idle == 2
    });
    // The next call goes to an idle connection at once: nothing left behind.
    let (_, took) = timed(&pool, get());
    assert!(took < SLOW / 2, "{took:?}");
    client.shutdown(Duration::from_secs(5));
}

#[test]
fn without_hedging_a_slow_call_waits() {
    let client = io_system();
    let (backend, pool) = hedged_pool(&client, None, roomy_budget(), 2);
    let (id, took) = timed(&pool, get());
    assert_eq!(id, 1);
    assert!(took >= SLOW - Duration::from_millis(50), "{took:?}");
    let m = metrics(&pool);
    assert_eq!((m.hedges, m.hedge_wins), (0, 0), "{m:?}");
    assert_eq!(backend.requests(), 1);
    assert_eq!(backend.accepted(), 1);
    client.shutdown(Duration::from_secs(5));
}

#[test]
fn requests_that_may_not_be_repeated_are_never_hedged() {
    let client = io_system();
    let (backend, pool) = hedged_pool(&client, hedge_50ms(), roomy_budget(), 2);
    // `retryable` returns None for POST: not idempotent, so never sent twice.
    let post = Request::new(Method::Post, "/").header("host", "backend");
    let (id, took) = timed(&pool, post);
    assert_eq!(id, 1);
    assert!(took >= SLOW - Duration::from_millis(50), "{took:?}");
    let m = metrics(&pool);
    assert_eq!(m.hedges, 0, "{m:?}");
    assert_eq!(backend.requests(), 1, "the backend saw the POST once");
    client.shutdown(Duration::from_secs(5));
}

#[test]
fn no_hedge_once_the_retry_budget_is_spent() {
    use sinew_supervision::resilience::retry::RetryBudget;
    let client = io_system();
    // A budget that allows nothing: hedges are paid from it, so none goes out.
    let (backend, pool) = hedged_pool(
        &client,
        hedge_50ms(),
        RetryBudget::new(0.0, 0, Duration::from_secs(10)),
        2,
    );
    let (id, took) = timed(&pool, get());
    assert_eq!(id, 1);
    assert!(took >= SLOW - Duration::from_millis(50), "{took:?}");
    let m = metrics(&pool);
    assert_eq!((m.hedges, m.hedges_over_budget), (0, 1), "{m:?}");
    assert_eq!(backend.requests(), 1);
    assert_eq!(
        backend.accepted(),
        1,
        "no connection opened for a hedge the budget refused"
    );
    client.shutdown(Duration::from_secs(5));
}

#[test]
fn a_hedge_never_goes_to_the_connection_it_backs_up() {
    let client = io_system();
    // One connection at most: the only other place a hedge could go is the slow connection
    // itself, so it does not go at all.
    let (backend, pool) = hedged_pool(&client, hedge_50ms(), roomy_budget(), 1);
    let (id, took) = timed(&pool, get());
    assert_eq!(id, 1);
    assert!(took >= SLOW - Duration::from_millis(50), "{took:?}");
    let m = metrics(&pool);
    assert_eq!((m.hedges, m.in_flight), (0, 0), "{m:?}");
    assert_eq!(backend.requests(), 1);
    client.shutdown(Duration::from_secs(5));
}

#[test]
fn hedged_calls_still_retry_failures_within_the_budget() {
    use sinew_supervision::resilience::retry::{RetryBudget, RetryPolicy};
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (sys, addr) = serve_app(CountingBroken(seen.clone()), "127.0.0.1:0".parse().unwrap());
    let client = io_system();
    let mut cfg = config();
    cfg.breaker.failure_rate = 2.0;
    cfg.hedge = hedge_50ms();
    let pool = Pool::new(addr, Http1::default, cfg)
        .classify(|r: &Response| r.status >= 500)
        .retries(
            RetryPolicy::new(5, Backoff::none(), 1),
            RetryBudget::new(0.2, 0, Duration::from_secs(60)),
            |r: &Request| (r.method == Method::Get).then(|| r.clone()),
        );
    let pool = client.spawn(pool).unwrap();
    // Every answer is a fast 500: the calls are retried (not hedged: nothing stays
    // unanswered for the hedge delay), and retries and hedges together stay in the budget.
    for _ in 0..100 {
        assert_eq!(call(&pool).expect("the final 500").status, 500);
    }
    let gets = seen.load(std::sync::atomic::Ordering::SeqCst);
    assert!(gets > 100, "retries happened: {gets}");
    assert!(gets <= 120, "{gets} requests for 100 calls");
    let m = metrics(&pool);
    assert_eq!(m.calls, 100);
    assert_eq!(m.in_flight, 0, "{m:?}");
    client.shutdown(Duration::from_secs(5));
    sys.shutdown(Duration::from_secs(5));
}

/// Callers that give up while queued for a connection are never sent, and leave the pool
/// as they found it.
#[test]
fn cancelled_checkouts_are_never_sent_and_leak_nothing() {
    let backend = raw::Backend::start();
    let client = io_system();
    let cfg = PoolConfig {
        min_size: 1,
        max_size: 1,
        max_in_flight: 1,
        checkout_timeout: Duration::from_secs(30),
        ..config()
    };
    let pool = client
        .spawn(Pool::new(backend.addr, Http1::default, cfg))
        .unwrap();
    let holder = {
        let p = pool.clone();
        std::thread::spawn(move || conn_id(&p, "/hold"))
    };
    eventually("the first call holds the connection", || {
        backend.arrived() == 1
    });
    // Five callers queue behind it and give up after 50 ms.
    for _ in 0..5 {
        let req = get_path("/hold");
        let r = futures::executor::block_on(
            pool.ask_within(Duration::from_millis(50), |r| PoolMsg::Call(req, r)),
        );
        assert!(r.is_err(), "the caller gave up: {r:?}");
    }
    backend.release();
    assert_eq!(holder.join().unwrap().expect("held call"), 1);
    // A live caller still gets through, on the same connection.
    assert_eq!(conn_id(&pool, "/x").expect("call"), 1);
    let m = metrics(&pool);
    assert_eq!(m.checkouts_cancelled, 5, "{m:?}");
    assert_eq!((m.waiters, m.in_flight, m.size), (0, 0, 1), "{m:?}");
    // Of the six `/hold` calls the backend saw one: the cancelled five were never sent.
    assert_eq!(backend.arrived(), 1);
    client.shutdown(Duration::from_secs(5));
}
