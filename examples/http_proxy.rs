//! A reverse proxy (hybrid I/O): inbound HTTP/1.1 connections paired with a few pipelined
//! upstream connections.
//!
//! ```text
//! cargo run --release --example http_hello -- --addr 127.0.0.1:8080 &
//! cargo run --release --example http_proxy -- --listen 127.0.0.1:8000 --upstream 127.0.0.1:8080
//! curl http://127.0.0.1:8000/plaintext
//! ```
//!
//! Every request read by a connection actor goes to the proxy actor, which forwards it over one
//! of `--connections` upstream connections (round-robin) and relays the response back through
//! the request's `ReplyTo`. An unreachable upstream answers 502, a slow one 504.

use std::net::SocketAddr;
use std::time::Duration;

use sinew::io_actors::{io_driver, serve, Proxy, ProxyConfig, Routes, ServerConfig};
use sinew::prelude::*;
use sinew::protocols::http1::Http1;
use sinew::transports::Backend;

/// Request paths allocate a little; mimalloc makes each of those a few dozen instructions.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    listen: SocketAddr,
    upstream: Option<SocketAddr>,
    io_workers: usize,
    connections: usize,
    timeout: Duration,
    transport: Backend,
    run_for: Option<Duration>,
}

const USAGE: &str = "usage: http_proxy --upstream ADDR [--listen ADDR] [--io-workers N] \
[--connections N] [--timeout-ms MS] [--transport auto|uring|mio] [--run-for-secs S]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: ([127, 0, 0, 1], 8000).into(),
        upstream: None,
        io_workers: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        connections: 2,
        timeout: Duration::from_secs(30),
        transport: Backend::Auto,
        run_for: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--upstream" => {
                args.upstream = Some(value()?.parse().map_err(|e| format!("--upstream: {e}"))?)
            }
            "--io-workers" => {
                args.io_workers = value()?.parse().map_err(|e| format!("--io-workers: {e}"))?
            }
            "--connections" => {
                args.connections = value()?
                    .parse()
                    .map_err(|e| format!("--connections: {e}"))?
            }
            "--timeout-ms" => {
                args.timeout = Duration::from_millis(
                    value()?.parse().map_err(|e| format!("--timeout-ms: {e}"))?,
                )
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
            "--run-for-secs" => {
                args.run_for = Some(Duration::from_secs(
                    value()?
                        .parse()
                        .map_err(|e| format!("--run-for-secs: {e}"))?,
                ))
            }
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if args.upstream.is_none() {
        return Err(format!("--upstream is required\n{USAGE}"));
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
    let upstream = args.upstream.ok_or(USAGE)?;
    let system = System::builder()
        .workers(args.io_workers.max(1))
        .try_driver(io_driver(args.transport))
        .build()?;
    let mut config = ProxyConfig::new(upstream);
    config.connections = args.connections;
    config.timeout = args.timeout;
    // One proxy (with its own upstream connections) per worker: each inbound connection
    // forwards through the proxy on its own worker, so no request crosses a core.
    let proxies = (0..system.workers())
        .map(|w| {
            system
                .spawn_with(
                    Proxy::new(config),
                    SpawnOptions::default().placement(Placement::Worker(w)),
                )
                .map(|p| Proxy::handler(&p))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bound = serve(
        &system.handle(),
        Http1::default(),
        args.listen,
        0..system.workers(),
        Routes::per_worker(proxies),
        ServerConfig::default(),
    )?;
    tracing::info!(%bound, %upstream, workers = system.workers(), transport = %args.transport, "proxying");
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
