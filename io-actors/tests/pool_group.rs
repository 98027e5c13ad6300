//! Pool groups on real sockets: one pool per worker, one per NUMA node (a synthetic two-node
//! layout), or one shared; a caller's calls go through the pool of the worker (or node) it
//! runs on, and the group's metrics add the pools' up.

use std::time::{Duration, Instant};

use sinew_actors::{Actor, Addr, Context, ReplyTo, SpawnOptions, System};
use sinew_io_actors::{
    io_driver, Layout, Machine, PoolConfig, PoolError, PoolGroup, PoolGroupError, PoolMetrics,
    PoolMsg, PoolResult, PoolScope,
};
use sinew_protocols::http1::{Body, Http1, Method, Request};
use sinew_transports::Backend;

/// A plain-threads HTTP/1.1 backend that numbers its connections from 1 and answers every
/// request with its connection's number. Stopped when dropped.
mod backend {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread::JoinHandle;
    use std::time::Duration;

    #[derive(Default)]
    struct Shared {
        accepted: AtomicUsize,
        stop: AtomicBool,
    }

    pub struct Numbered {
        pub addr: SocketAddr,
        shared: Arc<Shared>,
        acceptor: Option<JoinHandle<()>>,
    }

    impl Numbered {
        pub fn start() -> Numbered {
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
                    let s = s.clone();
                    std::thread::spawn(move || serve(stream, id, &s));
                }
            });
            Numbered {
                addr,
                shared,
                acceptor: Some(acceptor),
            }
        }

        pub fn accepted(&self) -> usize {
            self.shared.accepted.load(Ordering::SeqCst)
        }
    }

    impl Drop for Numbered {
        fn drop(&mut self) {
            self.shared.stop.store(true, Ordering::SeqCst);
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
                buf.drain(..end + 4);
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

/// A system of `n` workers, each parking in its own reactor.
fn io_system(n: usize) -> System {
    System::builder()
        .workers(n)
        .try_driver(io_driver(Backend::Auto))
        .build()
        .expect("system")
}

/// Connections open only on demand, so a pool that carried no call holds none.
fn config() -> PoolConfig {
    PoolConfig {
        min_size: 0,
        max_size: 2,
        ..PoolConfig::default()
    }
}

fn get() -> Request {
    Request::new(Method::Get, "/").header("host", "backend")
}

/// Makes calls through the group's pool for its worker, reporting which worker it runs on.
struct Caller(PoolGroup<Http1>);

enum CallerMsg {
    Call(ReplyTo<PoolResult<Http1>>),
    Where(ReplyTo<usize>),
}

impl Actor for Caller {
    type Msg = CallerMsg;
    fn handle(&mut self, msg: CallerMsg, ctx: &mut Context<Self>) {
        match msg {
            CallerMsg::Call(reply) => self.0.call(ctx, get(), reply),
            CallerMsg::Where(reply) => {
                reply.send(ctx.worker_index());
            }
        }
    }
}

/// A caller on worker `w`.
fn caller_on(sys: &System, group: &PoolGroup<Http1>, w: usize) -> Addr<Caller> {
    let c = sys
        .spawn_with(Caller(group.clone()), SpawnOptions::on_worker(w))
        .expect("caller");
    let at = futures::executor::block_on(c.ask(CallerMsg::Where)).expect("where");
    assert_eq!(at, w);
    c
}

/// `n` calls made by `caller`, each answered with status 200.
fn calls_from(caller: &Addr<Caller>, n: usize) {
    for _ in 0..n {
        let r = futures::executor::block_on(caller.ask(CallerMsg::Call))
            .unwrap_or(Err(PoolError::Stopped))
            .expect("call");
        assert_eq!(r.status, 200);
        assert!(matches!(r.body, Body::Full(ref b) if !b.is_empty()));
    }
}

fn each(group: &PoolGroup<Http1>) -> Vec<PoolMetrics> {
    futures::executor::block_on(group.metrics_each()).expect("metrics")
}

fn total(group: &PoolGroup<Http1>) -> PoolMetrics {
    futures::executor::block_on(group.metrics()).expect("metrics")
}

#[test]
fn per_worker_pools_carry_the_calls_of_their_own_worker() {
    let backend = backend::Numbered::start();
    let sys = io_system(2);
    let group = PoolGroup::start(
        &sys.handle(),
        backend.addr,
        Http1::default,
        config(),
        PoolScope::PerWorker,
    )
    .expect("group");
    assert_eq!(group.pools().len(), 2);
    assert_eq!(group.homes(), &[0, 1]);

    // Calls made on worker 1 go through worker 1's pool only.
    let on1 = caller_on(&sys, &group, 1);
    calls_from(&on1, 5);
    let m = each(&group);
    assert_eq!((m[0].calls, m[0].size), (0, 0), "{m:?}");
    assert_eq!((m[1].calls, m[1].size), (5, 1), "{m:?}");
    assert_eq!(backend.accepted(), 1);

    // And those made on worker 0 through worker 0's.
    let on0 = caller_on(&sys, &group, 0);
    calls_from(&on0, 3);
    let m = each(&group);
    assert_eq!((m[0].calls, m[0].size), (3, 1), "{m:?}");
    assert_eq!(m[1].calls, 5, "{m:?}");
    assert_eq!(backend.accepted(), 2, "one connection per pool");

    // Callers outside the workers take the pools in turn.
    for _ in 0..4 {
        let r = futures::executor::block_on(group.any().ask(|r| PoolMsg::Call(get(), r)))
            .expect("answer")
            .expect("call");
        assert_eq!(r.status, 200);
    }
    let m = each(&group);
    assert_eq!((m[0].calls, m[1].calls), (5, 7), "{m:?}");

    // The group's metrics add the pools' up.
    let t = total(&group);
    assert_eq!((t.calls, t.size, t.in_flight), (12, 2, 0), "{t:?}");
    assert_eq!(t.breaker, "closed");
    group.stop();
    sys.shutdown(Duration::from_secs(5));
}

#[test]
fn a_shared_pool_carries_every_workers_calls() {
    let backend = backend::Numbered::start();
    let sys = io_system(2);
    let group = PoolGroup::start(
        &sys.handle(),
        backend.addr,
        Http1::default,
        config(),
        PoolScope::Shared,
    )
    .expect("group");
    assert_eq!(group.pools().len(), 1);
    calls_from(&caller_on(&sys, &group, 0), 2);
    calls_from(&caller_on(&sys, &group, 1), 3);
    let m = each(&group);
    assert_eq!(m.len(), 1);
    assert_eq!((m[0].calls, m[0].size), (5, 1), "{m:?}");
    assert_eq!(backend.accepted(), 1);
    sys.shutdown(Duration::from_secs(5));
}

#[test]
fn per_node_pools_live_on_their_node_and_serve_its_workers() {
    // A synthetic machine of two nodes with two CPUs each: per node one client I/O worker
    // and one application worker (workers 0 and 1 on node 0, 2 and 3 on node 1).
    let machine = Machine::synthetic("numa:2 core:2 pu:1").expect("topology");
    let layout = Layout::per_node(&machine, 0, 1).expect("layout");
    assert_eq!(layout.slots.len(), 4);
    let backend = backend::Numbered::start();
    let sys = io_system(4);
    let group = PoolGroup::start(
        &sys.handle(),
        backend.addr,
        Http1::default,
        config(),
        PoolScope::PerNode(layout.clone()),
    )
    .expect("group");
    assert_eq!(group.pools().len(), 2);
    assert_eq!(group.homes(), &[0, 2], "each node's client I/O worker");
    for (w, pool) in [(0, 0), (1, 0), (2, 1), (3, 1)] {
        assert_eq!(group.index_for_worker(w), pool, "worker {w}");
    }

    // An application worker of node 1 calls through node 1's pool.
    calls_from(&caller_on(&sys, &group, 3), 4);
    let m = each(&group);
    assert_eq!((m[0].calls, m[0].size), (0, 0), "{m:?}");
    assert_eq!((m[1].calls, m[1].size), (4, 1), "{m:?}");
    // Both workers of node 0 share node 0's pool (and its one connection).
    calls_from(&caller_on(&sys, &group, 1), 2);
    calls_from(&caller_on(&sys, &group, 0), 2);
    let m = each(&group);
    assert_eq!((m[0].calls, m[0].size), (4, 1), "{m:?}");
    assert_eq!(m[1].calls, 4, "{m:?}");
    assert_eq!(backend.accepted(), 2);

    // A layout that names workers the system does not have is refused.
    let small = io_system(2);
    let err = PoolGroup::start(
        &small.handle(),
        backend.addr,
        Http1::default,
        config(),
        PoolScope::PerNode(layout),
    )
    .unwrap_err();
    assert!(matches!(err, PoolGroupError::Spawn(_)), "{err}");
    small.shutdown(Duration::from_secs(5));
    sys.shutdown(Duration::from_secs(5));
}

#[test]
fn stopping_the_group_stops_every_pool() {
    let backend = backend::Numbered::start();
    let sys = io_system(2);
    let group = PoolGroup::start(
        &sys.handle(),
        backend.addr,
        Http1::default,
        PoolConfig {
            min_size: 1,
            ..config()
        },
        PoolScope::PerWorker,
    )
    .expect("group");
    let deadline = Instant::now() + Duration::from_secs(20);
    while backend.accepted() < 2 {
        assert!(
            Instant::now() < deadline,
            "min_size connections never opened"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    group.stop();
    while group.pools().iter().any(|p| p.is_alive()) {
        assert!(Instant::now() < deadline, "pools still alive");
        std::thread::sleep(Duration::from_millis(5));
    }
    sys.shutdown(Duration::from_secs(5));
}
