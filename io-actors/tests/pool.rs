//! The pool as a supervisor of connection actors, against a real backend (Sinew's own HTTP
//! server): calls spread over connections; when the backend stops the circuit opens and calls
//! fail fast; when it comes back the circuit goes half-open, then closed, and calls succeed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sinew_actors::{Actor, Addr, Context, System};
use sinew_io_actors::{
    io_driver, serve, IncomingFor, Pool, PoolConfig, PoolError, PoolMsg, ServerConfig,
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
