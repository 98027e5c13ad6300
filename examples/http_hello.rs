//! TechEmpower-style HTTP server: `GET /plaintext` and `GET /json`.
//!
//! ```text
//! cargo run --release --example http_hello -- --addr 127.0.0.1:8080 --io-workers 2 --transport auto
//! cargo run --release --example http_hello -- --io-workers 1 --app-workers 1   # app on its own core
//! cargo run --release --example http_hello -- --inline   # answers on the connections' turns
//! curl http://127.0.0.1:8080/plaintext
//! ```
//!
//! Every worker parks in its own reactor (io_uring or epoll) with a listener (SO_REUSEPORT);
//! connection actors decode requests with the sans-I/O HTTP/1.1 codec and hand them to the
//! application actor, whose answers come back through each request's `ReplyTo`.

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sinew::io_actors::{io_driver, serve, IncomingFor, Routes, ServerConfig};
use sinew::prelude::*;
use sinew::protocols::http1::{Body, FieldBlock, Http1, Http1Error, Request, Response};
use sinew::transports::Backend;

/// Request paths allocate a little; mimalloc makes each of those a few dozen instructions.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Answers the two benchmark endpoints. The header fields of each answer are validated and
/// encoded once, at start, and shared by every response (a reference count each).
#[derive(Clone)]
struct Hello {
    plaintext: FieldBlock,
    json: FieldBlock,
}

impl Hello {
    fn new() -> Result<Self, Http1Error> {
        Ok(Hello {
            // Made once for the life of the server: static, so attaching them costs no
            // reference count.
            plaintext: FieldBlock::new([("server", "sinew"), ("content-type", "text/plain")])?
                .into_static(),
            json: FieldBlock::new([("server", "sinew"), ("content-type", "application/json")])?
                .into_static(),
        })
    }
}

impl Actor for Hello {
    type Msg = IncomingFor<Http1>;

    fn handle(&mut self, inc: IncomingFor<Http1>, _ctx: &mut Context<Self>) {
        let resp = self.answer(&inc.request);
        inc.reply.send(resp);
    }
}

impl Hello {
    /// The answer to `request`: what the actor sends, or what `--inline` gives on the
    /// connection's own turn.
    #[inline]
    fn answer(&self, request: &Request) -> Response {
        match request.target() {
            b"/plaintext" => Response::new(200)
                .with_fields(&self.plaintext)
                .with_body(Body::Full(Bytes::from_static(b"Hello, World!"))),
            b"/json" => Response::new(200)
                .with_fields(&self.json)
                .with_body(Body::Full(Bytes::from_static(
                    br#"{"message":"Hello, World!"}"#,
                ))),
            _ => Response::new(404),
        }
    }
}

struct Args {
    addr: SocketAddr,
    io_workers: usize,
    /// Workers for application actors alone; 0 runs the application on the I/O workers.
    app_workers: usize,
    transport: Backend,
    /// Answer on the connections' own turns (`Routes::answer_inline`), not in the actors.
    inline: bool,
    run_for: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: ([127, 0, 0, 1], 8080).into(),
        io_workers: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        app_workers: 0,
        transport: Backend::Auto,
        inline: false,
        run_for: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => args.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--io-workers" => {
                args.io_workers = value()?.parse().map_err(|e| format!("--io-workers: {e}"))?
            }
            "--app-workers" => {
                args.app_workers = value()?
                    .parse()
                    .map_err(|e| format!("--app-workers: {e}"))?
            }
            "--transport" => {
                // The transports' own parser; the simulated network cannot serve real clients.
                let name = value()?;
                args.transport = match name.parse::<Backend>() {
                    Ok(Backend::Sim) | Err(_) => {
                        return Err(format!(
                            "--transport: unknown backend {name:?} (auto|uring|mio)"
                        ))
                    }
                    Ok(b) => b,
                }
            }
            "--inline" => args.inline = true,
            "--run-for-secs" => {
                args.run_for = Some(Duration::from_secs(
                    value()?
                        .parse()
                        .map_err(|e| format!("--run-for-secs: {e}"))?,
                ))
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = parse_args()?;
    let io_workers = args.io_workers.max(1);
    let system = System::builder()
        .workers(io_workers + args.app_workers)
        .pin_workers(true)
        .try_driver(io_driver(args.transport))
        .build()?;
    // One application actor per application worker, or one per I/O worker, on it.
    let app_placement: Vec<usize> = if args.app_workers == 0 {
        (0..io_workers).collect()
    } else {
        (io_workers..io_workers + args.app_workers).collect()
    };
    let hello = Hello::new()?;
    let apps = app_placement
        .iter()
        .map(|&w| {
            system
                .spawn_with(
                    hello.clone(),
                    SpawnOptions::default().placement(Placement::Worker(w)),
                )
                .map(|a| a.recipient())
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Application actors on the I/O workers: each connection talks to its own worker's actor,
    // so no request crosses a core. On separate application workers: round-robin, counted per
    // I/O thread (a shared counter would be an atomic write per request on every core).
    let mut routes = if args.app_workers == 0 {
        Routes::per_worker(apps)
    } else {
        Routes::by(apps, |_| {
            thread_local!(static NEXT: Cell<usize> = const { Cell::new(0) });
            NEXT.with(|n| {
                let i = n.get();
                n.set(i.wrapping_add(1));
                i
            })
        })
    };
    if args.inline {
        routes = routes.answer_inline(move |request| Some(hello.answer(request)));
    }
    let bound = serve(
        &system.handle(),
        Http1::default(),
        args.addr,
        0..io_workers,
        routes,
        ServerConfig::default(),
    )?;
    tracing::info!(%bound, io_workers, app_workers = args.app_workers, transport = %args.transport, "serving /plaintext and /json");
    match args.run_for {
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
