//! # sinew-transports
//!
//! Completion-based network I/O with owned buffers, over io_uring or epoll (mio), for Sinew's
//! I/O workers.
//!
//! A [`Reactor`] is one worker's I/O engine. Operations (accept, connect, recv, send, vectored
//! send, shutdown, close) are submitted with a [`Token`] and an owned buffer; [`Reactor::poll`]
//! hands back [`Completion`]s carrying the token, the result and the buffer. This is
//! io_uring's model; the mio backend adapts epoll readiness to it, so code written against
//! the reactor runs unchanged on either. Errors are typed ([`Error`]) and classified
//! transient vs fatal; `EAGAIN`/`EINTR` are handled inside, and an accept out of descriptors
//! backs off on a timer instead of spinning.
//!
//! On io_uring the fast paths are used where the kernel has them, behind the same API (the
//! epoll backend emulates them; [`Capabilities`] says which are native):
//! [`Reactor::recv_multishot`] keeps delivering chunks ([`Event::ReceivedBytes`]) from one
//! submission, read by the kernel into a provided buffer ring and handed up as `Bytes` lent
//! from a pool of fixed-size buffers (returned when dropped); sends of at least
//! [`ReactorConfig::zero_copy_threshold`] bytes go zero copy (`SEND_ZC`), in order with the
//! others; [`Reactor::recv_timeout`] and [`Reactor::connect_timeout`] link a timeout to the
//! operation and fail it with [`Error::TimedOut`]. [`Reactor::connection_info`] reads a
//! connection's addresses, path MTU, segment size and buffer sizes; [`Reactor::stats`] the
//! pool and zero-copy counters.
//!
//! Besides TCP the reactor speaks UDP ([`Reactor::bind_udp`], [`Reactor::send_to`],
//! [`Reactor::recv_from`]; batched `recvmmsg`/`sendmmsg` on mio) and Unix domain sockets
//! (stream: [`Reactor::listen_unix`] / [`Reactor::connect_unix`]; datagram:
//! [`Reactor::bind_unix_datagram`]). Backpressure: [`Reactor::pause_recv`] stops submitting
//! receives so the kernel's window pushes back on the peer, and [`Reactor::send_queued`] with
//! [`Reactor::set_write_watermarks`] tells a producer when to stop and start again.
//!
//! [`SimNet`] is an in-memory, deterministic network ([`Backend::Sim`]): hosts by IP, TCP-like
//! connections, virtual time driven by the caller, seeded latency, jitter, loss, duplication,
//! reordering, bandwidth caps, slow readers, partitions and resets, all changeable at run time.
//!
//! [`IoDriver`] plugs a reactor into the actor core as the worker's
//! [`Driver`](sinew_actors::Driver): the worker parks in io_uring / epoll, and cross-thread
//! wakes go through an eventfd (io_uring) or `mio::Waker`.
//!
//! The backend is chosen by [`Backend`]: `Auto` probes io_uring and falls back to mio; the
//! environment variable `SINEW_TRANSPORT=uring|mio|sim` overrides it
//! ([`Reactor::from_env`]); a listener may ask for another backend than its reactor's
//! ([`Reactor::listen_on`]: the reactor then hosts that backend beside its own and waits on
//! both); asking for a backend that cannot run is an [`Error::Unavailable`], never a silent
//! fallback.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use sinew_transports::{Backend, Event, Reactor, SockOpt, Token};
//!
//! # fn main() -> Result<(), sinew_transports::Error> {
//! let mut reactor = Reactor::new(Backend::Auto)?;
//! let listener = reactor.listen("127.0.0.1:0".parse().unwrap(), &[])?;
//! let addr = reactor.local_addr(listener)?;
//! reactor.accept(listener, Token(0));
//! let client = reactor.connect(addr, &[SockOpt::NoDelay(true)], Token(1))?;
//! reactor.send(client, Bytes::from_static(b"ping"), Token(2));
//!
//! let mut got = None;
//! let mut completions = Vec::new();
//! while got.is_none() {
//!     reactor.poll(&mut completions, None)?;
//!     for c in completions.drain(..) {
//!         match c.event {
//!             // A new connection: read from it.
//!             Event::Accepted { result: Ok(conn), .. } => {
//!                 reactor.recv(conn, BytesMut::with_capacity(64), Token(3))
//!             }
//!             Event::Received { buf, result: Ok(_), .. } => got = Some(buf.freeze()),
//!             _ => {}
//!         }
//!     }
//! }
//! assert_eq!(got.as_deref(), Some(&b"ping"[..]));
//! # Ok(())
//! # }
//! ```

mod backend;
mod capabilities;
mod completion;
mod config;
mod datagram;
mod driver;
mod epoll;
mod error;
mod io;
pub mod options;
mod pool;
mod reactor;
mod returns;
mod sim;
mod slab;
mod stats;
mod sync;
mod sys;
mod uring;
mod write;

pub use backend::{Backend, ENV_VAR};
pub use capabilities::{Capabilities, ConnectionKind};
pub use completion::{Completion, Event, SocketId, Token};
pub use config::ReactorConfig;
pub use datagram::DatagramAddr;
pub use driver::{CompletionHandler, IoDriver};
pub use error::{Error, Result};
pub use options::{Keepalive, SockOpt, SockOptName};
pub use reactor::{ConnectionInfo, Reactor};
pub use sim::{LinkConfig, NetConfig, SimNet};
pub use stats::IoStats;

/// The name of this layer, as used in diagnostics and docs.
pub const LAYER: &str = "transports";
