//! The facade: one per-worker reactor over whichever backend was selected.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sinew_actors::Unpark;

use crate::backend::Backend;
use crate::capabilities::Capabilities;
use crate::completion::{Completion, SocketId, Token};
use crate::datagram::{Bind, DatagramAddr};
use crate::error::{Error, Result};
use crate::io::Io;
use crate::options::{self, SockOpt, SockOptName};
use crate::write::{Watermark, WriteOp};

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
    /// Sockets with write watermarks.
    watermarks: HashMap<SocketId, Watermark>,
    /// Sockets to check against their watermarks at the next poll: the backend's list of
    /// changed write queues, plus sockets whose watermarks were just set. Order is the
    /// backend's, so reports are deterministic.
    dirty: Vec<SocketId>,
}

impl Reactor {
    /// A reactor on `backend`; [`Backend::Auto`] probes io_uring and falls back to mio. A
    /// concrete backend that cannot run here is an [`Error::Unavailable`]. [`Backend::Sim`]
    /// gives a reactor on host `127.0.0.1` of this thread's [`SimNet::current`] network (use
    /// [`SimNet::reactor`] to pick the network and host).
    ///
    /// [`SimNet::current`]: crate::SimNet::current
    /// [`SimNet::reactor`]: crate::SimNet::reactor
    pub fn new(backend: Backend) -> Result<Reactor> {
        let backend = backend.resolve()?;
        let io: Box<dyn Io> = match backend {
            Backend::Uring => Box::new(crate::uring::UringReactor::new()?),
            Backend::Mio => Box::new(crate::epoll::EpollReactor::new()?),
            Backend::Sim => {
                return Ok(crate::sim::SimNet::current().reactor(crate::sim::DEFAULT_HOST))
            }
            other => {
                return Err(Error::Unavailable {
                    backend: other,
                    reason: "no implementation in this build".into(),
                })
            }
        };
        Ok(Reactor {
            io,
            backend,
            watermarks: HashMap::new(),
            dirty: Vec::new(),
        })
    }

    /// A reactor over an already built backend.
    pub(crate) fn from_io(io: Box<dyn Io>, backend: Backend) -> Reactor {
        Reactor {
            io,
            backend,
            watermarks: HashMap::new(),
            dirty: Vec::new(),
        }
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

    /// Binds a UDP socket to `addr` with `opts` applied before bind; use it with
    /// [`Reactor::send_to`] and [`Reactor::recv_from`].
    pub fn bind_udp(&mut self, addr: SocketAddr, opts: &[SockOpt]) -> Result<SocketId> {
        self.io.bind_datagram(Bind::Udp(addr, opts))
    }

    /// Binds a Unix domain datagram socket at `path` (which must not exist yet).
    pub fn bind_unix_datagram(&mut self, path: impl AsRef<Path>) -> Result<SocketId> {
        self.io.bind_datagram(Bind::Unix(path.as_ref()))
    }

    /// Sends `buf` as one datagram to `to`; completes with
    /// [`Event::SentTo`](crate::Event::SentTo). The mio backend batches queued datagrams into
    /// one `sendmmsg`; io_uring submits one `SENDMSG` per datagram.
    pub fn send_to(
        &mut self,
        socket: SocketId,
        buf: Bytes,
        to: impl Into<DatagramAddr>,
        token: Token,
    ) {
        self.io.send_to(socket, buf, to.into(), token)
    }

    /// Receives one datagram into `buf`'s spare capacity (16 KiB is reserved if it has none);
    /// completes with [`Event::ReceivedFrom`](crate::Event::ReceivedFrom). The mio backend
    /// fills many queued receives with one `recvmmsg`.
    pub fn recv_from(&mut self, socket: SocketId, buf: BytesMut, token: Token) {
        self.io.recv_from(socket, buf, token)
    }

    /// Binds a Unix domain stream listener at `path` (which must not exist yet); accept,
    /// recv, send, shutdown and close then work as for TCP. Not on the simulated network.
    pub fn listen_unix(&mut self, path: impl AsRef<Path>) -> Result<SocketId> {
        self.io.listen_unix(path.as_ref())
    }

    /// Starts connecting a Unix domain stream socket to `path`; completes with
    /// [`Event::Connected`](crate::Event::Connected) like [`Reactor::connect`].
    pub fn connect_unix(&mut self, path: impl AsRef<Path>, token: Token) -> Result<SocketId> {
        self.io.connect_unix(path.as_ref(), token)
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
        self.watermarks.remove(&socket);
        self.io.close(socket, token)
    }

    /// Stops reading `socket`: no receive is submitted until [`Reactor::resume_recv`], so the
    /// kernel's receive buffer fills and TCP's window pushes back on the peer. Receives
    /// submitted meanwhile wait in order; one already in the kernel is cancelled and put back
    /// (or completes normally if data arrived first).
    pub fn pause_recv(&mut self, socket: SocketId) -> Result<()> {
        self.io.pause_recv(socket)
    }

    /// Resumes reading a paused socket: its queued receives are submitted again.
    pub fn resume_recv(&mut self, socket: SocketId) -> Result<()> {
        self.io.resume_recv(socket)
    }

    /// Bytes accepted by sends on `socket` that the kernel has not taken yet (for the
    /// simulated network: not yet transmitted).
    pub fn send_queued(&self, socket: SocketId) -> Result<usize> {
        self.io.send_queued(socket)
    }

    /// Reports [`Event::WriteWatermark`](crate::Event::WriteWatermark) (with `token`) when the
    /// bytes queued on `socket` rise to `high`, and again when they fall back to `low`.
    /// Replaces earlier watermarks of the socket; `low` must not exceed `high`.
    pub fn set_write_watermarks(
        &mut self,
        socket: SocketId,
        high: usize,
        low: usize,
        token: Token,
    ) -> Result<()> {
        if low > high {
            return Err(Error::InvalidArgument("low watermark above the high one"));
        }
        self.io.send_queued(socket)?;
        self.watermarks.insert(
            socket,
            Watermark {
                socket,
                high,
                low,
                token,
                above: false,
            },
        );
        self.dirty.push(socket);
        Ok(())
    }

    /// Stops watermark reports for `socket`.
    pub fn clear_write_watermarks(&mut self, socket: SocketId) {
        self.watermarks.remove(&socket);
    }

    /// Sets a typed socket option.
    pub fn set_option(&self, socket: SocketId, opt: SockOpt) -> Result<()> {
        self.io.set_option(socket, opt)
    }

    /// Reads a typed socket option.
    pub fn option(&self, socket: SocketId, name: SockOptName) -> Result<SockOpt> {
        self.io.option(socket, name)
    }

    /// Raw `setsockopt` on `socket`.
    pub fn setsockopt_raw(
        &self,
        socket: SocketId,
        level: i32,
        name: i32,
        value: &[u8],
    ) -> Result<()> {
        options::set_raw(self.io.raw_fd(socket)?, level, name, value)
    }

    /// Raw `getsockopt` on `socket`; returns the option's length.
    pub fn getsockopt_raw(
        &self,
        socket: SocketId,
        level: i32,
        name: i32,
        buf: &mut [u8],
    ) -> Result<usize> {
        options::get_raw(self.io.raw_fd(socket)?, level, name, buf)
    }

    /// The socket's local address.
    pub fn local_addr(&self, socket: SocketId) -> Result<SocketAddr> {
        self.io.local_addr(socket)
    }

    /// The connected peer's address.
    pub fn peer_addr(&self, socket: SocketId) -> Result<SocketAddr> {
        self.io.peer_addr(socket)
    }

    /// Submits what is pending, waits up to `timeout` (`None`: until something happens) for
    /// completions or a wake, and appends the completions to `out`. Returns how many arrived.
    pub fn poll(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> Result<usize> {
        let before = out.len();
        self.io.poll(out, timeout)?;
        self.io.take_write_dirty(&mut self.dirty);
        if !self.watermarks.is_empty() {
            for socket in self.dirty.drain(..) {
                let Some(w) = self.watermarks.get_mut(&socket) else {
                    continue;
                };
                match self.io.send_queued(socket) {
                    Ok(queued) => out.extend(w.update(queued)),
                    // Closed: nothing more to report.
                    Err(_) => {
                        self.watermarks.remove(&socket);
                    }
                }
            }
        }
        self.dirty.clear();
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
