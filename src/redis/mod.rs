//! A Redis-compatible in-memory server built from Sinew's parts: the RESP codec, server I/O
//! actors, and application actors that own the data.
//!
//! The keyspace is split across shard actors by key hash: shared-nothing, no locks. Each
//! connection routes a command as it decodes it (no dispatcher hop): keyed commands to the
//! shard owning the key, pub/sub commands to the hub, connection and server commands to the
//! control actor. Multi-key commands (MGET, MSET, DEL, EXISTS) start on their first key's
//! shard, which gathers the other shards' parts, so answers match redis-server's.
//!
//! Supported: GET, SET (EX, PX, NX, XX, GET, KEEPTTL), SETNX, SETEX, PSETEX, GETSET, GETDEL,
//! APPEND, STRLEN, TYPE, DEL, UNLINK, EXISTS, INCR, DECR, INCRBY, DECRBY, MGET, MSET, EXPIRE,
//! PEXPIRE (NX, XX, GT, LT), TTL, PTTL, PERSIST, PING, ECHO, HELLO (2 and 3), SELECT 0,
//! DBSIZE, FLUSHALL, FLUSHDB, INFO, COMMAND (COUNT, INFO, DOCS), CONFIG GET, CLIENT
//! (SETNAME, GETNAME, ID, SETINFO), SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBLISH.
//!
//! ```no_run
//! use sinew::prelude::*;
//! use sinew::io_actors::io_driver;
//! use sinew::redis::{RedisConfig, RedisServer};
//! use sinew::transports::Backend;
//!
//! let system = System::builder().workers(2).try_driver(io_driver(Backend::Auto)).build()?;
//! let server = RedisServer::start(
//!     &system.handle(),
//!     "127.0.0.1:6379".parse()?,
//!     0..1,
//!     RedisConfig::default(),
//! )?;
//! println!("redis-cli -p {}", server.addr().port());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod commands;
mod control;
mod keyspace;
mod pubsub;
mod shard;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use sinew_actors::{Addr, Placement, SpawnError, SpawnOptions, SystemHandle};
use sinew_io_actors::{serve, Routes, ServeError, ServerConfig};
use sinew_protocols::resp::Resp;

pub use commands::shard_of;
pub use keyspace::{parse_i64, ArithError, ExpireCondition, Keyspace, SetOptions, Ttl};
pub use pubsub::glob_match;

use commands::{route_of, Route};
use control::{Control, ControlMsg};
use pubsub::{Hub, HubMsg};
use shard::{Shard, ShardMsg};

/// Server settings.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// Shard actors (at least one). They are spread round-robin over `shard_workers`.
    pub shards: usize,
    /// Workers the shards run on; empty means every worker of the system.
    pub shard_workers: Vec<usize>,
    /// The RESP protocol settings (limits, timeouts).
    pub resp: Resp,
    /// Server I/O settings (overload behaviour, read buffer).
    pub server: ServerConfig,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            shard_workers: Vec::new(),
            resp: Resp::default(),
            server: ServerConfig::default(),
        }
    }
}

/// Why the server did not start.
#[derive(thiserror::Error, Debug)]
pub enum RedisServerError {
    /// An actor could not be spawned (the system is shutting down).
    #[error("spawn: {0}")]
    Spawn(#[from] SpawnError),
    /// The listeners could not start.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
}

/// A running server: its address and its actors.
#[derive(Debug)]
pub struct RedisServer {
    addr: SocketAddr,
    shards: Vec<Addr<Shard>>,
}

/// Messages a shard handles per turn ([`SpawnOptions::batch`]): no count, whatever the mailbox
/// capacity. A turn takes what was queued when it began (other threads' messages reach the
/// queue between turns), and the runtime's time slice ends it if that takes long.
const SHARD_BATCH: usize = usize::MAX;

impl RedisServer {
    /// Spawns the shards, the pub/sub hub and the control actor, then serves RESP on `addr`
    /// with one listener per worker in `io_workers`.
    pub fn start(
        system: &SystemHandle,
        addr: SocketAddr,
        io_workers: impl IntoIterator<Item = usize>,
        config: RedisConfig,
    ) -> Result<RedisServer, RedisServerError> {
        if config.shards == 0 {
            return Err(RedisServerError::Config("shards must be at least 1"));
        }
        let workers: Vec<usize> = if config.shard_workers.is_empty() {
            (0..system.workers()).collect()
        } else {
            config.shard_workers.clone()
        };
        let on = |i: usize| {
            SpawnOptions::default().placement(Placement::Worker(workers[i % workers.len()]))
        };
        // Every connection sends to the shards: a turn long enough for the whole queue answers
        // each connection's pipelined burst at once, so its answers leave in one send (with
        // the default 64, a timer tick that shifted the queue split bursts across turns).
        let shards = (0..config.shards)
            .map(|i| system.spawn_with(Shard::new(i), on(i).batch(SHARD_BATCH)))
            .collect::<Result<Vec<_>, _>>()?;
        for s in &shards {
            // Sent before anything is served, so every shard knows its peers first.
            let _ = s.send_reply(ShardMsg::Peers(shards.clone()));
        }
        let control = system.spawn_with(Control::new(shards.clone()), on(0))?;
        let hub = system.spawn_with(Hub::default(), on(1))?;

        let n = shards.len();
        let mut targets: Vec<_> = shards
            .iter()
            .map(|s| s.recipient_map(ShardMsg::Client))
            .collect();
        targets.push(control.recipient_map(ControlMsg::Client));
        targets.push(hub.recipient_map(HubMsg::Client));
        let next = AtomicUsize::new(0);
        let routes = Routes::by(targets, move |cmd| match route_of(cmd) {
            Route::Key(i) => cmd.get(i).map_or(0, |k| shard_of(k, n)),
            Route::Control => n,
            Route::PubSub => n + 1,
            Route::Any => next.fetch_add(1, Ordering::Relaxed) % n,
        });
        let addr = serve(system, config.resp, addr, io_workers, routes, config.server)?;
        Ok(RedisServer { addr, shards })
    }

    /// The bound address (useful when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many shards hold the keys.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }
}
