//! The facade: one per-worker reactor over whichever backend was selected.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sinew_actors::Unpark;

use crate::backend::Backend;
use crate::capabilities::{Capabilities, ConnectionKind};
use crate::completion::{Completion, Event, SocketId, Token};
use crate::config::ReactorConfig;
use crate::datagram::{Bind, DatagramAddr};
use crate::error::{Error, Result};
use crate::io::Io;
use crate::options::{self, SockOpt, SockOptName};
use crate::stats::IoStats;
use crate::write::{Watermark, WriteOp};

/// A per-worker, completion-based I/O reactor that owns its sockets.
///
/// Submit operations with a [`Token`] and an owned buffer; [`Reactor::poll`] hands back one
/// [`Completion`] per operation (many for a multishot accept or receive) carrying the token,
/// the result and the buffer. Sockets live until [`Reactor::close`] completes: closing cancels whatever is
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
    /// Completions decided at submit time by the facade (operations the backend refused),
    /// handed out by the next poll.
    immediate: Vec<Completion>,
}

/// What is known about one connection ([`Reactor::connection_info`]). Fields the socket
/// or backend cannot tell (a Unix socket has no MTU, a simulated one no kernel buffers) are
/// `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The reactor's id of the socket; [`SocketId::as_u64`] makes it a number for logs.
    pub id: SocketId,
    /// The local address (IP sockets).
    pub local_addr: Option<SocketAddr>,
    /// The peer's address (connected IP sockets).
    pub peer_addr: Option<SocketAddr>,
    /// The path MTU the kernel currently assumes (`IP_MTU` / `IPV6_MTU`; connected IP
    /// sockets).
    pub mtu: Option<usize>,
    /// The TCP maximum segment size (`TCP_MAXSEG`): the largest payload per segment.
    pub max_segment: Option<usize>,
    /// The kernel send buffer size (`SO_SNDBUF`).
    pub send_buffer: Option<usize>,
    /// The kernel receive buffer size (`SO_RCVBUF`).
    pub recv_buffer: Option<usize>,
    /// The CPU whose receive queue the socket's packets arrive on (`SO_INCOMING_CPU`).
    pub incoming_cpu: Option<usize>,
    /// Stream, datagram or seqpacket (the kernel's `SO_TYPE`; a simulated socket is a
    /// stream).
    pub kind: Option<ConnectionKind>,
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
        Reactor::with_config(backend, &ReactorConfig::default())
    }

    /// A reactor on `backend` set up by `config` (receive pool, multishot receive,
    /// zero-copy threshold); see [`Reactor::new`]. The simulated network ignores `config`.
    pub fn with_config(backend: Backend, config: &ReactorConfig) -> Result<Reactor> {
        config.validate()?;
        let backend = backend.resolve()?;
        let io: Box<dyn Io> = match backend {
            Backend::Uring => Box::new(crate::uring::UringReactor::new(config)?),
            Backend::Mio => Box::new(crate::epoll::EpollReactor::new(config)?),
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
        Ok(Reactor::from_io(io, backend))
    }

    /// A reactor over an already built backend.
    pub(crate) fn from_io(io: Box<dyn Io>, backend: Backend) -> Reactor {
        Reactor {
            io,
            backend,
            watermarks: HashMap::new(),
            dirty: Vec::new(),
            immediate: Vec::new(),
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

    /// [`Reactor::connect`] with a deadline: if the connection is not established within
    /// `timeout`, the connect completes with [`Error::TimedOut`] (then close the socket).
    /// io_uring links an `IORING_OP_LINK_TIMEOUT` to the connect; epoll uses a timer.
    /// [`Error::Unsupported`] where [`Capabilities::operation_timeouts`] is false.
    pub fn connect_timeout(
        &mut self,
        addr: SocketAddr,
        opts: &[SockOpt],
        timeout: Duration,
        token: Token,
    ) -> Result<SocketId> {
        self.io.connect_timeout(addr, opts, timeout, token)
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

    /// Binds a Unix domain `SOCK_SEQPACKET` listener at `path` (which must not exist yet):
    /// connections keep message boundaries ([`ConnectionKind::SeqPacket`]). Accept, send,
    /// shutdown and close work as for streams, but each [`Reactor::send`] (or
    /// [`Reactor::send_vectored`], all its buffers together) is one message, sent whole or
    /// failed, and each [`Reactor::recv`] completes with exactly one message; one longer than
    /// the buffer's spare capacity fails with [`Error::MessageTruncated`] (the buffer holds
    /// what fit). `Ok(0)` is end of stream, as for streams, so empty messages cannot be told
    /// from it: do not send them. [`Reactor::recv_multishot`] is refused on seqpacket
    /// sockets ([`Error::Unsupported`]): the kernel would cut a message longer than a pool
    /// buffer without saying so. Not on the simulated network
    /// ([`Capabilities::seqpacket`]).
    pub fn listen_seqpacket(&mut self, path: impl AsRef<Path>) -> Result<SocketId> {
        self.io.listen_seqpacket(path.as_ref())
    }

    /// Starts connecting a Unix domain `SOCK_SEQPACKET` socket to `path`; completes with
    /// [`Event::Connected`](crate::Event::Connected). See [`Reactor::listen_seqpacket`].
    pub fn connect_seqpacket(&mut self, path: impl AsRef<Path>, token: Token) -> Result<SocketId> {
        self.io.connect_seqpacket(path.as_ref(), token)
    }

    /// Receives into `buf`'s spare capacity (16 KiB is reserved if it has none). Receives on
    /// one socket complete in submission order. On a seqpacket socket one receive is one
    /// message ([`Reactor::listen_seqpacket`]).
    pub fn recv(&mut self, socket: SocketId, buf: BytesMut, token: Token) {
        self.io.recv(socket, buf, token)
    }

    /// [`Reactor::recv`] with a deadline: if no data arrives within `timeout`, the receive
    /// completes with [`Error::TimedOut`] and its buffer, and the connection stays usable.
    /// The clock starts when the receive becomes the socket's active one (receives complete
    /// in order; one queued behind another waits for it first) and starts over if
    /// [`Reactor::pause_recv`] takes it back. io_uring links an `IORING_OP_LINK_TIMEOUT` to
    /// the receive; epoll uses a timer. Completes with [`Error::Unsupported`] where
    /// [`Capabilities::operation_timeouts`] is false.
    pub fn recv_timeout(
        &mut self,
        socket: SocketId,
        buf: BytesMut,
        timeout: Duration,
        token: Token,
    ) {
        if let Err((err, buf)) = self.io.recv_timeout(socket, buf, timeout, token) {
            self.immediate.push(Completion {
                token,
                event: Event::Received {
                    socket,
                    buf,
                    result: Err(err),
                },
            });
        }
    }

    /// Starts a multishot receive on a connected stream: one
    /// [`Event::ReceivedBytes`] per chunk of data, in order, until end of stream, an
    /// error, [`Reactor::cancel_recv_multishot`] or [`Reactor::close`]; the last completion
    /// has `more == false`. No buffer is passed in: chunks come from the reactor's receive
    /// pool ([`ReactorConfig::recv_buffer_size`] bytes each at most), so an idle connection
    /// holds no buffer.
    ///
    /// On io_uring with [`Capabilities::multishot_recv`] this is one
    /// `IORING_RECV_MULTISHOT` receive with a provided buffer ring: the kernel picks a ring
    /// buffer per completion and the chunk is that buffer itself, lent out as `Bytes`
    /// (zero copy); dropping the last clone of it returns the buffer, which goes back on the
    /// ring at the next [`Reactor::poll`]. So that consumers holding chunks never starve the
    /// ring (and every other connection on it), once three quarters of the pool is lent the
    /// reactor copies new chunks into fresh allocations and re-provides their ring buffer at
    /// once ([`IoStats::recv_copied`]). If the ring runs dry anyway the kernel stops the
    /// receive and the reactor re-arms it when buffers are back; when the kernel ends a
    /// multishot by itself it is re-armed too. Elsewhere (epoll, or io_uring without
    /// kernel support, or [`ReactorConfig::multishot_recv`] off) the reactor emulates it:
    /// epoll reads pool buffers on each readiness edge; io_uring keeps one plain receive in
    /// flight into a per-socket buffer that chunks are split off.
    ///
    /// Consumers get cheap appends either way: parse in place when a chunk holds whole
    /// frames (slices of it are zero copy), or `extend_from_slice` it into your own parse
    /// buffer and drop it. There is no back-pressure by buffer supply: data is delivered as
    /// it arrives; use [`Reactor::pause_recv`] (the receive leaves the kernel and is re-armed
    /// by [`Reactor::resume_recv`]).
    ///
    /// A socket has either plain receives or one multishot receive: this completes at once
    /// with [`Error::Unsupported`] if receives are outstanding, and [`Reactor::recv`] on a
    /// socket with a multishot receive does too. The simulated network does not support it
    /// (also [`Error::Unsupported`]).
    pub fn recv_multishot(&mut self, socket: SocketId, token: Token) {
        if let Err(err) = self.io.recv_multishot(socket, token) {
            self.immediate.push(Completion {
                token,
                event: Event::ReceivedBytes {
                    socket,
                    result: Err(err),
                    more: false,
                },
            });
        }
    }

    /// Ends `socket`'s multishot receive: data already received is still delivered, then
    /// the last completion says [`Error::Cancelled`]; data arriving later stays in the socket
    /// for the next receive. [`Error::InvalidArgument`] if the socket has no multishot
    /// receive.
    pub fn cancel_recv_multishot(&mut self, socket: SocketId) -> Result<()> {
        self.io.cancel_recv_multishot(socket)
    }

    /// Sends all of `buf`; partial writes are continued internally. Sends on one socket are
    /// written, and complete, in submission order.
    ///
    /// On io_uring, payloads of at least [`ReactorConfig::zero_copy_threshold`] bytes go
    /// zero copy (`SEND_ZC`) where the kernel can: [`Event::Sent`] comes when the kernel has
    /// taken every byte, but it may read the pages until its notification completion, so
    /// the reactor keeps a reference to the buffer until then ([`IoStats::zero_copy_pending`];
    /// `Bytes::is_unique` turns true again afterwards). A `Bytes` is immutable, so nothing
    /// can change the data under the kernel. Sockets that refuse zero copy fall back to a
    /// copying send transparently.
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

    /// Sends all of `bufs` with vectored writes, in order with other sends; large ones go
    /// zero copy as for [`Reactor::send`] (`SENDMSG_ZC`, Linux 6.1+).
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

    /// Properties of `socket`: its id, addresses, path MTU, TCP maximum segment size, kernel
    /// buffer sizes and incoming CPU, as far as the socket and backend know them.
    /// [`Error::InvalidSocket`] if the socket is unknown or closed.
    pub fn connection_info(&self, socket: SocketId) -> Result<ConnectionInfo> {
        let local_addr = match self.io.local_addr(socket) {
            Ok(a) => Some(a),
            Err(Error::InvalidSocket) => return Err(Error::InvalidSocket),
            Err(_) => None,
        };
        let fd = self.io.raw_fd(socket).ok();
        let int = |name| match self.io.option(socket, name) {
            Ok(SockOpt::SendBuffer(n) | SockOpt::RecvBuffer(n)) => Some(n),
            // The kernel says -1 until a packet arrived.
            Ok(SockOpt::IncomingCpu(n)) => i32::try_from(n).ok().map(|_| n),
            _ => None,
        };
        Ok(ConnectionInfo {
            id: socket,
            local_addr,
            peer_addr: self.io.peer_addr(socket).ok(),
            mtu: fd.and_then(|fd| options::path_mtu(fd).ok()),
            max_segment: match fd.map(|fd| options::get(fd, SockOptName::MaxSegment)) {
                Some(Ok(SockOpt::MaxSegment(n))) => usize::try_from(n).ok(),
                _ => None,
            },
            send_buffer: int(SockOptName::SendBuffer),
            recv_buffer: int(SockOptName::RecvBuffer),
            incoming_cpu: int(SockOptName::IncomingCpu),
            kind: self.io.kind(socket),
        })
    }

    /// The reactor's counters: receive pool use, multishot arms, zero-copy sends.
    pub fn stats(&self) -> IoStats {
        self.io.stats()
    }

    /// Submits what is pending, waits up to `timeout` (`None`: until something happens) for
    /// completions or a wake, and appends the completions to `out`. Returns how many arrived.
    pub fn poll(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> Result<usize> {
        let before = out.len();
        let timeout = if self.immediate.is_empty() {
            timeout
        } else {
            out.append(&mut self.immediate);
            Some(Duration::ZERO)
        };
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
