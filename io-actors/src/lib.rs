//! # sinew-io-actors
//!
//! Server, client and hybrid I/O actors generic over a protocol: listeners, connection actors,
//! I/O groups per NUMA node. They glue codecs to transports; they do not parse.
//!
//! This first layer connects actors to the transports: each worker parks in its own reactor
//! ([`io_driver`]), and a completion is routed to the actor that submitted the operation and
//! enqueued in its mailbox on the same worker: no cross-core hop, no lock, and (like a reply)
//! never refused for lack of room, so no buffer is lost. Actors reach the worker's reactor
//! through [`WorkerIo`], a worker extension.
//!
//! ```no_run
//! use sinew_actors::System;
//! use sinew_io_actors::io_driver;
//! use sinew_transports::Backend;
//!
//! // Every worker parks in its own io_uring (or epoll) reactor.
//! let system = System::builder().workers(2).try_driver(io_driver(Backend::Auto)).build()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod admission;
mod body;
mod client;
mod deadline;
mod layout;
mod pool;
mod pool_group;
mod proxy;
pub mod redis;
mod server;
mod worker_io;

pub use admission::RateLimit;
pub use body::{BodyCtl, BodyOut, BodyPart, BodySender, BodyStream};
pub use client::{CallResult, ClientConn, ClientError, ClientMsg, PooledProtocol};
pub use layout::{Layout, LayoutError, Machine, Node, Role, Slot};
pub use pool::{
    CallCtx, HedgePolicy, Pool, PoolConfig, PoolError, PoolMetrics, PoolMsg, PoolOrder, PoolResult,
};
pub use pool_group::{PoolGroup, PoolGroupError, PoolScope};
pub use proxy::{Forwarded, Proxy, ProxyConfig, ProxyError, ProxyMsg, ProxyStats};
pub use redis::{Message, RedisClient, RedisClientConfig, RedisError, RedisResult};
pub use server::{
    serve, ConnMsg, Incoming, IncomingFor, Overload, PushError, Pusher, Routes, ServeError,
    ServedProtocol, ServerConfig, ServerConn, ServerListener,
};
pub use worker_io::{io_driver, WorkerIo};
