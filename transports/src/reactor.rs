//! The facade: one per-worker reactor over whichever backend was selected.

use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sinew_actors::Unpark;
use socket2::SockRef;

use crate::backend::Backend;
use crate::capabilities::Capabilities;
use crate::completion::{Completion, SocketId, Token};
use crate::error::{Error, Result};
use crate::io::Io;
use crate::options::{self, SockOpt, SockOptName};
use crate::write::WriteOp;

/// A per-worker, completion-based I/O reactor that owns its sockets.
///
/// Submit operations with a [`Token`] and an owned buffer; [`Reactor::poll`] hands back one
/// [`Completion`] per operation (many for a multishot accept) carrying the token, the result
/// and the buffer. Sockets live until [`Reactor::close`] completes: closing cancels whatever is
/// in flight on them and returns every buffer. A reactor is bound to the thread that created it
/// (`!Send`), as io_uring's `SINGLE_ISSUER` requires.
pub struct Reactor {
    io: Box<dyn Io>,
    backend: Backend,
}

impl Reactor {
    /// A reactor on `backend`; [`Backend::Auto`] probes io_uring and falls back to mio. A
    /// concrete backend that cannot run here is an [`Error::Unavailable`].
    pub fn new(backend: Backend) -> Result<Reactor> {
        let backend = backend.resolve()?;
        let io: Box<dyn Io> = match backend {
            Backend::Uring => Box::new(crate::uring::UringReactor::new()?),
            Backend::Mio => Box::new(crate::epoll::EpollReactor::new()?),
            other => {
                return Err(Error::Unavailable {
                    backend: other,
                    reason: "no implementation in this build".into(),
                })
            }
        };
        Ok(Reactor { io, backend })
    }

    /// A reactor on the backend named by `SINEW_TRANSPORT` (auto when unset).
    pub fn from_env() -> Result<Reactor> {
        Reactor::new(Backend::from_env()?)
    }

    /// The concrete backend in use (never `Auto`).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// What this backend can do.
    pub fn capabilities(&self) -> Capabilities {
        self.io.capabilities()
    }

    /// Binds a TCP listener (`SO_REUSEADDR` on, then `opts`, applied before bind).
    pub fn listen(&mut self, addr: SocketAddr, opts: &[SockOpt]) -> Result<SocketId> {
        self.io.listen(addr, opts)
    }

    /// Starts a multishot accept on `listener`: one [`Event::Accepted`](crate::Event::Accepted)
    /// per connection until the listener is closed. Descriptor exhaustion is reported (as a
    /// transient error) and backed off, never spun on.
    pub fn accept(&mut self, listener: SocketId, token: Token) {
        self.io.accept(listener, token)
    }

    /// Starts connecting to `addr` with `opts` applied first. The socket id is usable at once
    /// (e.g. to close it); operations queued before the connect completes run after it.
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        opts: &[SockOpt],
        token: Token,
    ) -> Result<SocketId> {
        self.io.connect(addr, opts, token)
    }

    /// Receives into `buf`'s spare capacity (16 KiB is reserved if it has none). Receives on
    /// one socket complete in submission order.
    pub fn recv(&mut self, socket: SocketId, buf: BytesMut, token: Token) {
        self.io.recv(socket, buf, token)
    }

    /// Sends all of `buf`; partial writes are continued internally. Sends on one socket are
    /// written in submission order.
    pub fn send(&mut self, socket: SocketId, buf: Bytes, token: Token) {
        self.io.write(
            socket,
            WriteOp::Send {
                token,
                buf,
                done: 0,
            },
        )
    }

    /// Sends all of `bufs` with vectored writes, in order with other sends.
    pub fn send_vectored(&mut self, socket: SocketId, bufs: Vec<Bytes>, token: Token) {
        self.io.write(
            socket,
            WriteOp::SendVectored {
                token,
                bufs,
                done: 0,
            },
        )
    }

    /// Shuts down one or both directions once every send submitted before it has finished.
    pub fn shutdown(&mut self, socket: SocketId, how: Shutdown, token: Token) {
        self.io.write(socket, WriteOp::Shutdown { token, how })
    }

    /// Closes `socket`: cancels its operations (they complete with
    /// [`Error::Cancelled`] and return their buffers), then releases the descriptor and
    /// completes with [`Event::Closed`](crate::Event::Closed).
    pub fn close(&mut self, socket: SocketId, token: Token) {
        self.io.close(socket, token)
    }

    /// Sets a typed socket option.
    pub fn set_option(&self, socket: SocketId, opt: SockOpt) -> Result<()> {
        options::set(self.io.fd(socket).ok_or(Error::InvalidSocket)?, opt)
    }

    /// Reads a typed socket option.
    pub fn option(&self, socket: SocketId, name: SockOptName) -> Result<SockOpt> {
        options::get(self.io.fd(socket).ok_or(Error::InvalidSocket)?, name)
    }

    /// Raw `setsockopt` on `socket`.
    pub fn setsockopt_raw(
        &self,
        socket: SocketId,
        level: i32,
        name: i32,
        value: &[u8],
    ) -> Result<()> {
        options::set_raw(
            self.io.fd(socket).ok_or(Error::InvalidSocket)?,
            level,
            name,
            value,
        )
    }

    /// Raw `getsockopt` on `socket`; returns the option's length.
    pub fn getsockopt_raw(
        &self,
        socket: SocketId,
        level: i32,
        name: i32,
        buf: &mut [u8],
    ) -> Result<usize> {
        options::get_raw(
            self.io.fd(socket).ok_or(Error::InvalidSocket)?,
            level,
            name,
            buf,
        )
    }

    /// The socket's local address.
    pub fn local_addr(&self, socket: SocketId) -> Result<SocketAddr> {
        let fd = self.io.fd(socket).ok_or(Error::InvalidSocket)?;
        SockRef::from(&fd)
            .local_addr()?
            .as_socket()
            .ok_or(Error::Unsupported("not an IP socket"))
    }

    /// The connected peer's address.
    pub fn peer_addr(&self, socket: SocketId) -> Result<SocketAddr> {
        let fd = self.io.fd(socket).ok_or(Error::InvalidSocket)?;
        SockRef::from(&fd)
            .peer_addr()?
            .as_socket()
            .ok_or(Error::Unsupported("not an IP socket"))
    }

    /// Submits what is pending, waits up to `timeout` (`None`: until something happens) for
    /// completions or a wake, and appends the completions to `out`. Returns how many arrived.
    pub fn poll(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> Result<usize> {
        let before = out.len();
        self.io.poll(out, timeout)?;
        Ok(out.len() - before)
    }

    /// A handle that makes a blocked [`Reactor::poll`] return, from any thread.
    pub fn unparker(&self) -> Arc<dyn Unpark> {
        self.io.unparker()
    }

    /// How many sockets this reactor owns (closing ones included).
    pub fn socket_count(&self) -> usize {
        self.io.socket_count()
    }
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("backend", &self.backend)
            .field("sockets", &self.socket_count())
            .finish()
    }
}
