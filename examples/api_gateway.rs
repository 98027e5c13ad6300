//! An API gateway: fan-out / fan-in over pooled, circuit-broken backends.
//!
//! ```text
//! cargo run --release --example api_gateway -- --listen 127.0.0.1:8080 \
//!     --backend http://127.0.0.1:9001 --backend http://127.0.0.1:9002 [--path /plaintext]
//! curl http://127.0.0.1:8080/aggregate   # every backend's answer, merged
//! curl http://127.0.0.1:8080/health      # each backend's circuit state
//! ```
//!
//! Each backend has a pool (a supervisor of its connection actors) with a circuit breaker. A
//! backend whose circuit is open is reported as unavailable at once, without waiting for a
//! timeout; the gateway itself never blocks: every fan-out is a set of asks whose answers come
//! back as messages.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sinew::io_actors::{
    io_driver, serve, IncomingFor, Pool, PoolConfig, PoolError, PoolMetrics, PoolMsg, ServerConfig,
};
use sinew::prelude::*;
use sinew::protocols::http1::{Body, Http1, Method, Request, Response};
use sinew::supervision::resilience::breaker::BreakerConfig;
use sinew::supervision::Backoff;
use sinew::transports::Backend;

/// Request paths allocate a little; mimalloc makes each of those a few dozen instructions.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One fan-out in progress.
struct Pending {
    reply: ReplyTo<Response>,
    parts: Vec<Option<String>>,
    left: usize,
}

enum GwMsg {
    Http(IncomingFor<Http1>),
    Part(u64, usize, Result<Result<Response, PoolError>, ReplyError>),
    Health(u64, usize, Result<PoolMetrics, ReplyError>),
}

struct Gateway {
    backends: Vec<(String, Addr<Pool<Http1>>)>,
    path: Bytes,
    pending: std::collections::HashMap<u64, Pending>,
    next: u64,
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Gateway {
    fn start(&mut self, reply: ReplyTo<Response>) -> u64 {
        let id = self.next;
        self.next += 1;
        let n = self.backends.len();
        self.pending.insert(
            id,
            Pending {
                reply,
                parts: vec![None; n],
                left: n,
            },
        );
        id
    }

    fn part(&mut self, id: u64, i: usize, text: String) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        if p.parts[i].is_none() {
            p.parts[i] = Some(text);
            p.left -= 1;
        }
        if p.left == 0 {
            if let Some(p) = self.pending.remove(&id) {
                let body = format!(
                    "[{}]",
                    p.parts.into_iter().flatten().collect::<Vec<_>>().join(",")
                );
                p.reply.send(
                    Response::new(200)
                        .header("content-type", "application/json")
                        .with_body(Body::Full(Bytes::from(body))),
                );
            }
        }
    }
}

impl Actor for Gateway {
    type Msg = GwMsg;

    fn handle(&mut self, msg: GwMsg, ctx: &mut Context<Self>) {
        match msg {
            GwMsg::Http(inc) => match inc.request.target() {
                b"/aggregate" => {
                    let id = self.start(inc.reply);
                    for (i, (_, pool)) in self.backends.iter().enumerate() {
                        let reply = ctx.reply_to(move |r| GwMsg::Part(id, i, r));
                        let req =
                            Request::new(Method::Get, self.path.clone()).header("host", "backend");
                        let _ = pool.try_send(PoolMsg::Call(req, reply));
                    }
                }
                b"/health" => {
                    let id = self.start(inc.reply);
                    for (i, (_, pool)) in self.backends.iter().enumerate() {
                        let reply = ctx.reply_to(move |r| GwMsg::Health(id, i, r));
                        let _ = pool.try_send(PoolMsg::Metrics(reply));
                    }
                }
                _ => {
                    inc.reply.send(Response::new(404));
                }
            },
            GwMsg::Part(id, i, r) => {
                let name = json_str(&self.backends[i].0);
                let text = match r {
                    Ok(Ok(resp)) => {
                        let body = match &resp.body {
                            Body::Full(b) => String::from_utf8_lossy(b).into_owned(),
                            _ => String::new(),
                        };
                        format!(
                            r#"{{"backend":{name},"status":{},"body":{}}}"#,
                            resp.status,
                            json_str(&body)
                        )
                    }
                    Ok(Err(PoolError::CircuitOpen)) => {
                        format!(r#"{{"backend":{name},"error":"unavailable (circuit open)"}}"#)
                    }
                    Ok(Err(e)) => format!(
                        r#"{{"backend":{name},"error":{}}}"#,
                        json_str(&e.to_string())
                    ),
                    Err(e) => format!(
                        r#"{{"backend":{name},"error":{}}}"#,
                        json_str(&e.to_string())
                    ),
                };
                self.part(id, i, text);
            }
            GwMsg::Health(id, i, r) => {
                let name = json_str(&self.backends[i].0);
                let text = match r {
                    Ok(m) => format!(
                        r#"{{"backend":{name},"circuit":"{}","connections":{},"waiters":{}}}"#,
                        m.breaker, m.size, m.waiters
                    ),
                    Err(e) => format!(
                        r#"{{"backend":{name},"error":{}}}"#,
                        json_str(&e.to_string())
                    ),
                };
                self.part(id, i, text);
            }
        }
    }
}

fn parse_backend(url: &str) -> Result<SocketAddr, String> {
    let hostport = url
        .strip_prefix("http://")
        .unwrap_or(url)
        .trim_end_matches('/');
    hostport
        .parse()
        .map_err(|e| format!("--backend {url}: {e} (expected http://IP:PORT)"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8080).into();
    let mut backends = Vec::new();
    let mut run_for = None;
    let mut path = String::from("/");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = value.parse()?,
            "--backend" => backends.push((value.clone(), parse_backend(&value)?)),
            "--path" => path = value,
            "--run-for-secs" => run_for = Some(Duration::from_secs(value.parse()?)),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if backends.is_empty() {
        return Err("at least one --backend URL is required".into());
    }
    let system = System::builder()
        .workers(2)
        .try_driver(io_driver(Backend::Auto))
        .build()?;
    let cfg = PoolConfig {
        breaker: BreakerConfig {
            minimum_calls: 4,
            open: Backoff {
                min: Duration::from_secs(2),
                max: Duration::from_secs(30),
                factor: 2.0,
                jitter: 0.1,
                reset_after: Duration::ZERO,
            },
            ..BreakerConfig::default()
        },
        call_timeout: Duration::from_secs(2),
        ..PoolConfig::default()
    };
    let mut pools = Vec::new();
    for (name, addr) in &backends {
        pools.push((
            name.clone(),
            system.spawn(Pool::new(*addr, Http1::default, cfg.clone()))?,
        ));
    }
    let gw = system.spawn(Gateway {
        backends: pools,
        path: Bytes::from(path),
        pending: Default::default(),
        next: 0,
    })?;
    let bound = serve(
        &system.handle(),
        Http1::default(),
        listen,
        0..system.workers(),
        gw.recipient_map(GwMsg::Http),
        ServerConfig::default(),
    )?;
    tracing::info!(%bound, backends = backends.len(), "gateway serving /aggregate and /health");
    match run_for {
        Some(d) => {
            std::thread::sleep(d);
            system.shutdown(Duration::from_secs(5));
        }
        None => {
            system.join();
        }
    }
    Ok(())
}
