//! A Redis-compatible in-memory server: `redis-cli` and `redis-benchmark` work unmodified.
//!
//! ```text
//! cargo run --release --example redis_server -- --addr 127.0.0.1:6380 --io-workers 1 --shards 4
//! redis-cli -p 6380 set greeting hello
//! redis-benchmark -p 6380 -t get,set -P 16 -q
//! ```
//!
//! Keys are sharded across actors by hash (shared-nothing, no locks); each connection routes
//! a command to its shard as it decodes it. See `sinew::redis` for the command list.

use std::net::SocketAddr;
use std::time::Duration;

use sinew::io_actors::io_driver;
use sinew::prelude::*;
use sinew::redis::{RedisConfig, RedisServer};
use sinew::transports::Backend;

/// Request paths allocate a little; mimalloc makes each of those a few dozen instructions.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    addr: SocketAddr,
    io_workers: usize,
    workers: usize,
    shards: usize,
    transport: Backend,
    run_for: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = Args {
        addr: ([127, 0, 0, 1], 6379).into(),
        io_workers: cores,
        workers: cores,
        shards: cores,
        transport: Backend::Auto,
        run_for: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--addr" => args.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--io-workers" => args.io_workers = num(value()?)?,
            "--workers" => args.workers = num(value()?)?,
            "--shards" => args.shards = num(value()?)?,
            "--transport" => {
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
                args.run_for = Some(Duration::from_secs(num(value()?)? as u64));
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.shards == 0 || args.io_workers == 0 {
        return Err("--shards and --io-workers must be at least 1".into());
    }
    args.workers = args.workers.max(args.io_workers);
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = parse_args()?;
    let system = System::builder()
        .workers(args.workers)
        .pin_workers(true)
        .try_driver(io_driver(args.transport))
        .build()?;
    let server = RedisServer::start(
        &system.handle(),
        args.addr,
        0..args.io_workers,
        RedisConfig {
            shards: args.shards,
            ..RedisConfig::default()
        },
    )?;
    tracing::info!(
        addr = %server.addr(),
        io_workers = args.io_workers,
        shards = server.shards(),
        transport = %args.transport,
        "serving RESP"
    );
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
