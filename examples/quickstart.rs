//! Quickstart, the flagship: a supervised key-value service over HTTP, with its load generator,
//! all in one process on embedded defaults.
//!
//! - Every worker parks in its own reactor (io_uring where available, else epoll) and listens
//!   on the same port (SO_REUSEPORT); connection actors decode HTTP/1.1 with the sans-I/O codec.
//! - `Front` routes requests (`GET /kv/:key`, `PUT /kv/:key/:value`, `GET /poison/:key`) with
//!   the router and asks `Store`, a supervisor-like root that owns one `Shard` per worker and
//!   restarts a shard that crashes. Answers travel back through each request's `ReplyTo`: the
//!   reply address is the correlation.
//! - `Loader` actors are HTTP clients on real sockets (one pipelined connection each), keeping a
//!   window of requests in flight; now and then a poisoned request crashes a shard. Requests
//!   caught in the crash are answered 503 at once, never left hanging.
//!
//! Run: `cargo run --release --example quickstart [-- REQUESTS]`

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sinew::io_actors::{io_driver, serve, ClientConn, ClientMsg, IncomingFor, ServerConfig};
use sinew::prelude::*;
use sinew::protocols::http1::{Body, Http1, Method, Request, Response, Router};
use sinew::transports::Backend;

/// Request paths allocate a little; mimalloc makes each of those a few dozen instructions.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// ---- the application: a sharded store whose shards are restarted when they crash ----------

/// One key-value partition.
#[derive(Default)]
struct Shard {
    data: HashMap<u64, u64>,
}

enum ShardMsg {
    Put(u64, u64, ReplyTo<Option<u64>>),
    Get(u64, ReplyTo<Option<u64>>),
    /// A request the shard cannot handle: it panics, as a buggy handler would.
    Poison(ReplyTo<Option<u64>>),
}

impl Actor for Shard {
    type Msg = ShardMsg;
    fn handle(&mut self, msg: ShardMsg, _ctx: &mut Context<Self>) {
        match msg {
            ShardMsg::Put(k, v, r) => {
                r.send(self.data.insert(k, v));
            }
            ShardMsg::Get(k, r) => {
                r.send(self.data.get(&k).copied());
            }
            ShardMsg::Poison(_r) => panic!("poisoned request"),
        }
    }
}

/// Owns one shard per worker; restarts crashed shards in place.
struct Store {
    shards: Vec<Addr<Shard>>,
    restarts: usize,
}

enum Op {
    Get(u64),
    Put(u64, u64),
    Poison(u64),
}

enum StoreMsg {
    Call(Op, ReplyTo<Option<u64>>),
    Restarts(ReplyTo<usize>),
}

impl Store {
    fn spawn_shard(ctx: &mut Context<Self>, worker: usize) -> Addr<Shard> {
        let opts = SpawnOptions::default().placement(Placement::Worker(worker));
        ctx.spawn_with(Shard::default(), opts)
            .expect("system is running")
    }
}

impl Actor for Store {
    type Msg = StoreMsg;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let workers = ctx.system().workers();
        self.shards = (0..workers.max(2))
            .map(|i| Self::spawn_shard(ctx, i % workers))
            .collect();
    }

    fn handle(&mut self, msg: StoreMsg, _ctx: &mut Context<Self>) {
        match msg {
            StoreMsg::Call(op, reply) => {
                let key = match op {
                    Op::Get(k) | Op::Put(k, _) | Op::Poison(k) => k,
                };
                let shard = &self.shards[(key % self.shards.len() as u64) as usize];
                let msg = match op {
                    Op::Get(k) => ShardMsg::Get(k, reply),
                    Op::Put(k, v) => ShardMsg::Put(k, v, reply),
                    Op::Poison(_) => ShardMsg::Poison(reply),
                };
                // A full shard refuses: the request's ReplyTo drops and the client gets 503.
                let _ = shard.try_send(msg);
            }
            StoreMsg::Restarts(r) => {
                r.send(self.restarts);
            }
        }
    }

    fn terminated(&mut self, ev: Terminated, ctx: &mut Context<Self>) {
        // Only crashes are restarted; shards stopping with the system are left alone.
        if ev.reason.is_normal() {
            return;
        }
        if let Some(i) = self.shards.iter().position(|s| s.id() == ev.id) {
            tracing::warn!(shard = i, reason = %ev.reason, "shard crashed; restarting");
            let workers = ctx.system().workers();
            let opts = SpawnOptions::default().placement(Placement::Worker(i % workers));
            match ctx.spawn_with(Shard::default(), opts) {
                Ok(shard) => {
                    self.shards[i] = shard;
                    self.restarts += 1;
                }
                Err(e) => tracing::warn!(error = %e, "shard not restarted"),
            }
        }
    }
}

// ---- the HTTP front: routes requests to the store ------------------------------------------

#[derive(Clone, Copy)]
enum Route {
    Get,
    Put,
    Poison,
}

// Each message is moved once into the mailbox and once out: boxing the large variant would
// cost an allocation per request to save copying a few hundred bytes.
#[allow(clippy::large_enum_variant)]
enum FrontMsg {
    Http(IncomingFor<Http1>),
    Answer(ReplyTo<Response>, Result<Option<u64>, ReplyError>),
}

struct Front {
    router: Router<Route>,
    store: Addr<Store>,
}

fn text(status: u16, body: String) -> Response {
    Response::new(status)
        .header("content-type", "text/plain")
        .with_body(Body::Full(Bytes::from(body)))
}

impl Actor for Front {
    type Msg = FrontMsg;

    fn handle(&mut self, msg: FrontMsg, ctx: &mut Context<Self>) {
        match msg {
            FrontMsg::Http(inc) => {
                let path = String::from_utf8_lossy(inc.request.target()).into_owned();
                let op = match self.router.at(&inc.request.method, &path) {
                    Ok(m) => {
                        let num =
                            |name: &str| m.params.get(name).and_then(|v| v.parse::<u64>().ok());
                        match (*m.value, num("key"), num("value")) {
                            (Route::Get, Some(k), _) => Some(Op::Get(k)),
                            (Route::Put, Some(k), Some(v)) => Some(Op::Put(k, v)),
                            (Route::Poison, Some(k), _) => Some(Op::Poison(k)),
                            _ => None,
                        }
                    }
                    Err(miss) => {
                        inc.reply.send(Response::new(miss.status()));
                        return;
                    }
                };
                let Some(op) = op else {
                    inc.reply
                        .send(text(400, "keys and values are numbers\n".into()));
                    return;
                };
                let mut http = Some(inc.reply);
                let answer = ctx.reply_to(move |r| FrontMsg::Answer(http.take().expect("once"), r));
                let _ = self.store.try_send(StoreMsg::Call(op, answer));
            }
            FrontMsg::Answer(http, result) => {
                http.send(match result {
                    Ok(Some(v)) => text(200, format!("{v}\n")),
                    Ok(None) => text(404, "no such key\n".into()),
                    // The shard holding the request crashed or refused: fail fast.
                    Err(_) => Response::new(503),
                });
            }
        }
    }
}

// ---- the load generator: HTTP clients on real sockets --------------------------------------

/// What a loader saw.
#[derive(Default)]
struct Report {
    ok: u64,
    failed_fast: u64,
    latencies_ns: Vec<u64>,
}

enum LoadMsg {
    Start(ReplyTo<Report>),
    Done(
        Instant,
        Result<Result<Response, sinew::io_actors::ClientError>, ReplyError>,
    ),
}

struct Loader {
    conn: Addr<ClientConn<Http1>>,
    seed: u64,
    total: u64,
    sent: u64,
    done: u64,
    window: u64,
    report: Report,
    to: Option<ReplyTo<Report>>,
}

impl Loader {
    fn send_one(&mut self, ctx: &mut Context<Self>) {
        let n = self.sent;
        self.sent += 1;
        let key = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.seed) % 10_000;
        let path = if n % 5_000 == 4_999 {
            format!("/poison/{key}")
        } else if n % 4 == 0 {
            format!("/kv/{key}/{n}")
        } else {
            format!("/kv/{key}")
        };
        let method = if n % 4 == 0 && n % 5_000 != 4_999 {
            Method::Put
        } else {
            Method::Get
        };
        let req = Request::new(method, path).header("host", "quickstart");
        let at = Instant::now();
        let reply = ctx.reply_to_within(Duration::from_secs(5), move |r| LoadMsg::Done(at, r));
        let _ = self.conn.try_send(ClientMsg::Call(req, reply));
    }
}

impl Actor for Loader {
    type Msg = LoadMsg;

    fn handle(&mut self, msg: LoadMsg, ctx: &mut Context<Self>) {
        match msg {
            LoadMsg::Start(to) => {
                self.to = Some(to);
                while self.sent < self.total.min(self.window) {
                    self.send_one(ctx);
                }
            }
            LoadMsg::Done(at, result) => {
                self.done += 1;
                match result {
                    Ok(Ok(resp)) if resp.status == 503 => self.report.failed_fast += 1,
                    Ok(Ok(_)) => {
                        self.report.ok += 1;
                        self.report
                            .latencies_ns
                            .push(at.elapsed().as_nanos() as u64);
                    }
                    other => tracing::warn!(?other, "request failed"),
                }
                if self.sent < self.total {
                    self.send_one(ctx);
                } else if self.done == self.total {
                    if let Some(to) = self.to.take() {
                        to.send(std::mem::take(&mut self.report));
                    }
                }
            }
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    Duration::from_nanos(sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "quickstart=info,sinew_actors=warn,sinew_io_actors=warn".into()
            }),
        )
        .with_target(false)
        .init();
    // The crashes below are injected; the runtime reports each through tracing.
    std::panic::set_hook(Box::new(|info| tracing::debug!(%info, "panic")));
    let total: u64 = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 200_000,
    };

    let system = System::builder()
        .try_driver(io_driver(Backend::Auto))
        .build()?;
    let store = system.spawn(Store {
        shards: Vec::new(),
        restarts: 0,
    })?;
    let mut router = Router::new();
    router.insert(Method::Get, "/kv/:key", Route::Get)?;
    router.insert(Method::Put, "/kv/:key/:value", Route::Put)?;
    router.insert(Method::Get, "/poison/:key", Route::Poison)?;
    let front = system.spawn(Front {
        router,
        store: store.clone(),
    })?;
    let addr = serve(
        &system.handle(),
        Http1::default(),
        ([127, 0, 0, 1], 0).into(),
        0..system.workers(),
        front.recipient_map(FrontMsg::Http),
        ServerConfig::default(),
    )?;

    // One loader per worker, each with its own pipelined connection.
    let loaders = system.workers().max(2) as u64;
    let per = total / loaders;
    let start = Instant::now();
    let mut pending = Vec::new();
    for i in 0..loaders {
        let opts =
            SpawnOptions::default().placement(Placement::Worker(i as usize % system.workers()));
        let conn = system.spawn_with(ClientConn::new(Http1::default(), addr), opts.clone())?;
        let loader = Loader {
            conn,
            seed: i,
            total: per,
            sent: 0,
            done: 0,
            window: 64,
            report: Report::default(),
            to: None,
        };
        let loader = system.spawn_with(loader, opts)?;
        let (reply, fut) = ReplyTo::channel();
        loader
            .try_send(LoadMsg::Start(reply))
            .map_err(|e| e.to_string())?;
        pending.push(fut);
    }
    let mut all = Report::default();
    for fut in pending {
        let r = futures::executor::block_on(fut)?;
        all.ok += r.ok;
        all.failed_fast += r.failed_fast;
        all.latencies_ns.extend(r.latencies_ns);
    }
    let secs = start.elapsed().as_secs_f64();
    let restarts = futures::executor::block_on(store.ask(StoreMsg::Restarts))?;
    all.latencies_ns.sort_unstable();
    let l = &all.latencies_ns;
    let requests = all.ok + all.failed_fast;
    println!(
        "{requests} HTTP requests over {loaders} connections in {secs:.3} s: {:.0} req/s; latency p50 {:?} p99 {:?} p99.9 {:?}; \
         {} answered 503 at once after injected shard crashes, {restarts} shard restarts",
        requests as f64 / secs,
        percentile(l, 0.50),
        percentile(l, 0.99),
        percentile(l, 0.999),
        all.failed_fast,
    );

    let shutdown = system.shutdown(Duration::from_secs(5));
    if !shutdown.clean {
        return Err(format!("shutdown was not clean: {shutdown:?}").into());
    }
    if requests != per * loaders {
        return Err(format!(
            "{} of {} requests unanswered",
            per * loaders - requests,
            per * loaders
        )
        .into());
    }
    Ok(())
}
