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
use crate::pool::BufPool;
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
    // Declared (so dropped) before `send_pool`: the backends may have the pool registered
    // with the kernel, and must be gone before its memory is.
    io: Box<dyn Io>,
    backend: Backend,
    /// Further backends this reactor hosts for listeners that asked for them
    /// ([`Reactor::listen_on`]); slot `i + 1` in socket ids.
    hosted: Vec<Hosted>,
    /// How hosted backends are set up (the reactor's own configuration).
    config: ReactorConfig,
    /// A hosted backend may have more completions at once: the next poll must not block.
    hosted_busy: bool,
    /// The registered send pool ([`Reactor::fill_registered`]), if configured.
    send_pool: Option<BufPool>,
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

/// A backend hosted beside the reactor's own one.
struct Hosted {
    backend: Backend,
    io: Box<dyn Io>,
}

/// Socket ids of hosted backends carry their slot (1..) in the top bits of the index; the
/// reactor's own backend is slot 0, so its ids are unchanged.
const SLOT_SHIFT: u32 = 29;
/// The index bits a backend's own slab uses.
const INDEX_MASK: u32 = (1 << SLOT_SHIFT) - 1;
/// At most this many hosted backends (the slot must fit in the top bits).
const MAX_HOSTED: usize = 3;
/// A hosted backend is polled again (without waiting) while a poll of it returns at least
/// this many completions: io_uring runs deferred completion work in bounded batches and
/// signals its descriptor only for work queued after a batch, so a large burst can leave
/// work behind that nothing would wake the reactor for.
const HOSTED_BURST: usize = 16;

/// `id` of backend `slot` as the reactor's callers see it.
fn tag(slot: usize, id: SocketId) -> SocketId {
    if slot == 0 {
        return id;
    }
    SocketId {
        index: id.index | ((slot as u32) << SLOT_SHIFT),
        generation: id.generation,
    }
}

/// Rewrites the socket ids of a hosted backend's completion into the reactor's ids.
fn retag(event: &mut Event, slot: usize) {
    let t = |id: &mut SocketId| *id = tag(slot, *id);
    match event {
        Event::Accepted {
            listener, result, ..
        } => {
            t(listener);
            if let Ok(conn) = result {
                t(conn);
            }
        }
        Event::Connected { socket, .. }
        | Event::Received { socket, .. }
        | Event::ReceivedBytes { socket, .. }
        | Event::Sent { socket, .. }
        | Event::SentVectored { socket, .. }
        | Event::ReceivedFrom { socket, .. }
        | Event::SentTo { socket, .. }
        | Event::WriteWatermark { socket, .. }
        | Event::Shutdown { socket, .. }
        | Event::Closed { socket } => t(socket),
    }
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
        if backend == Backend::Sim {
            return Ok(crate::sim::SimNet::current().reactor(crate::sim::DEFAULT_HOST));
        }
        let mut reactor = Reactor::from_io(kernel_io(backend, config)?, backend);
        reactor.config = config.clone();
        if config.registered_buffer_count > 0 {
            let pool = BufPool::new(
                config.registered_buffer_count,
                config.registered_buffer_size,
            )?;
            let (ptr, len) = pool.region();
            // SAFETY: the pool's memory lives in `reactor.send_pool` until the reactor drops,
            // after its backends (field order), and lent `Bytes` keep it alive beyond; the
            // backends keep every send's `Bytes` until the send completes.
            unsafe { reactor.io.register_send_region(ptr, len)? };
            reactor.send_pool = Some(pool);
        }
        Ok(reactor)
    }

    /// A reactor over an already built backend.
    pub(crate) fn from_io(io: Box<dyn Io>, backend: Backend) -> Reactor {
        Reactor {
            io,
            backend,
            hosted: Vec::new(),
            config: ReactorConfig::default(),
            hosted_busy: false,
            send_pool: None,
            watermarks: HashMap::new(),
            dirty: Vec::new(),
            immediate: Vec::new(),
        }
    }

    /// A reactor on the backend named by `SINEW_TRANSPORT` (auto when unset).
    pub fn from_env() -> Result<Reactor> {
        Reactor::new(Backend::from_env()?)
    }

    /// The concrete backend in use (never `Auto`): the reactor's own one. Listeners may
    /// run on others ([`Reactor::listen_on`], [`Reactor::socket_backend`]).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// What this reactor's own backend can do (see [`Reactor::backend_capabilities`] for a
    /// hosted one).
    pub fn capabilities(&self) -> Capabilities {
        self.io.capabilities()
    }

    /// The backends this reactor runs: its own first, then those it hosts for listeners.
    pub fn backends(&self) -> Vec<Backend> {
        std::iter::once(self.backend)
            .chain(self.hosted.iter().map(|h| h.backend))
            .collect()
    }

    /// What `backend` can do, if this reactor runs it.
    pub fn backend_capabilities(&self, backend: Backend) -> Option<Capabilities> {
        if backend == self.backend {
            return Some(self.io.capabilities());
        }
        self.hosted
            .iter()
            .find(|h| h.backend == backend)
            .map(|h| h.io.capabilities())
    }

    /// The backend that carries `socket`: the one its listener (or
    /// [`Reactor::connect_on`]) asked for, else the reactor's own.
    /// [`Error::InvalidSocket`] if the socket is unknown or closed.
    pub fn socket_backend(&self, socket: SocketId) -> Result<Backend> {
        let (slot, local) = self.route(socket);
        match self.io_ref(slot).raw_fd(local) {
            Err(Error::InvalidSocket) => Err(Error::InvalidSocket),
            _ => Ok(self.backend_at(slot)),
        }
    }

    /// Binds a TCP listener like [`Reactor::listen`], on `backend` rather than the reactor's
    /// own: per-listener backend selection. The listener, every connection it accepts and
    /// every operation on them run on that backend; ids and completions come through this
    /// reactor as for any other socket, so callers do not see the difference.
    ///
    /// The reactor hosts one instance of each further backend it is asked for (set up with
    /// the reactor's [`ReactorConfig`]), created by the first listener that needs it: an
    /// io_uring reactor with a mio listener polls the epoll instance through an
    /// `IORING_OP_POLL_ADD` on its descriptor, a mio reactor with an io_uring listener
    /// watches an eventfd registered with the ring; either way [`Reactor::poll`] waits on
    /// one descriptor and wakes for both. The price, paid only by reactors that host a
    /// backend: one non-blocking poll of each hosted backend per [`Reactor::poll`].
    ///
    /// [`Backend::Auto`] (and the reactor's own backend) means the reactor's own backend.
    /// A backend that cannot run here is an [`Error::Unavailable`], never a silent fallback,
    /// and so is mixing the simulated network with a kernel backend (a simulated reactor
    /// never blocks in the kernel; a kernel one cannot drive virtual time).
    pub fn listen_on(
        &mut self,
        backend: Backend,
        addr: SocketAddr,
        opts: &[SockOpt],
    ) -> Result<SocketId> {
        let slot = self.slot_for(backend)?;
        let id = self.io_at(slot).listen(addr, opts)?;
        Ok(tag(slot, id))
    }

    /// [`Reactor::listen_unix`] on `backend`; see [`Reactor::listen_on`].
    pub fn listen_unix_on(&mut self, backend: Backend, path: impl AsRef<Path>) -> Result<SocketId> {
        let slot = self.slot_for(backend)?;
        let id = self.io_at(slot).listen_unix(path.as_ref())?;
        Ok(tag(slot, id))
    }

    /// [`Reactor::connect`] on `backend`; see [`Reactor::listen_on`].
    pub fn connect_on(
        &mut self,
        backend: Backend,
        addr: SocketAddr,
        opts: &[SockOpt],
        token: Token,
    ) -> Result<SocketId> {
        let slot = self.slot_for(backend)?;
        let id = self.io_at(slot).connect(addr, opts, token)?;
        Ok(tag(slot, id))
    }

    /// The slot of `backend` in this reactor, hosting it first if needed.
    fn slot_for(&mut self, backend: Backend) -> Result<usize> {
        if backend == Backend::Auto || backend == self.backend {
            return Ok(0);
        }
        if let Some(i) = self.hosted.iter().position(|h| h.backend == backend) {
            return Ok(i + 1);
        }
        if backend == Backend::Sim || self.backend == Backend::Sim {
            return Err(Error::Unavailable {
                backend,
                reason: format!(
                    "a {} reactor cannot host a {backend} listener: the simulated network \
                     and the kernel backends do not share a reactor",
                    self.backend
                ),
            });
        }
        let backend = backend.resolve()?;
        if self.hosted.len() >= MAX_HOSTED {
            return Err(Error::Unavailable {
                backend,
                reason: "this reactor hosts as many backends as it can".into(),
            });
        }
        let mut io = kernel_io(backend, &self.config)?;
        if let Some(pool) = &self.send_pool {
            let (ptr, len) = pool.region();
            // SAFETY: as in `Reactor::with_config`: hosted backends drop with `self.hosted`,
            // before `self.send_pool`.
            unsafe { io.register_send_region(ptr, len)? };
        }
        let fd = io.wait_fd()?;
        self.io.watch_fd(fd)?;
        self.hosted.push(Hosted { backend, io });
        Ok(self.hosted.len())
    }

    /// The backend slot that owns `socket` and the socket's id there. Ids whose slot is not
    /// hosted go to the reactor's own backend unchanged, which reports them invalid.
    fn route(&self, socket: SocketId) -> (usize, SocketId) {
        let slot = (socket.index >> SLOT_SHIFT) as usize;
        if slot == 0 || slot > self.hosted.len() {
            return (0, socket);
        }
        let local = SocketId {
            index: socket.index & INDEX_MASK,
            generation: socket.generation,
        };
        (slot, local)
    }

    fn io_at(&mut self, slot: usize) -> &mut dyn Io {
        match slot.checked_sub(1).and_then(|i| self.hosted.get_mut(i)) {
            Some(h) => &mut *h.io,
            None => &mut *self.io,
        }
    }

    fn io_ref(&self, slot: usize) -> &dyn Io {
        match slot.checked_sub(1).and_then(|i| self.hosted.get(i)) {
            Some(h) => &*h.io,
            None => &*self.io,
        }
    }

    fn backend_at(&self, slot: usize) -> Backend {
        match slot.checked_sub(1).and_then(|i| self.hosted.get(i)) {
            Some(h) => h.backend,
            None => self.backend,
        }
    }

    /// The backend that owns `socket`, and the socket's id there.
    fn on(&mut self, socket: SocketId) -> (&mut dyn Io, SocketId) {
        let (slot, local) = self.route(socket);
        (self.io_at(slot), local)
    }

    /// [`Reactor::on`] for queries.
    fn on_ref(&self, socket: SocketId) -> (&dyn Io, SocketId) {
        let (slot, local) = self.route(socket);
        (self.io_ref(slot), local)
    }

    /// Polls every hosted backend without waiting, appending their completions (with the
    /// reactor's ids). True if one may have more at once.
    fn poll_hosted(&mut self, out: &mut Vec<Completion>) -> Result<bool> {
        let mut busy = false;
        for (i, h) in self.hosted.iter_mut().enumerate() {
            let mut rounds = 0;
            loop {
                let start = out.len();
                h.io.poll(out, Some(Duration::ZERO))?;
                for c in &mut out[start..] {
                    retag(&mut c.event, i + 1);
                }
                rounds += 1;
                if out.len() - start < HOSTED_BURST {
                    break;
                }
                if rounds == 4 {
                    busy = true;
                    break;
                }
            }
            busy |= h.io.has_pending();
        }
        Ok(busy)
    }

    /// Binds a TCP listener (`SO_REUSEADDR` on, then `opts`, applied before bind).
    pub fn listen(&mut self, addr: SocketAddr, opts: &[SockOpt]) -> Result<SocketId> {
        self.io.listen(addr, opts)
    }

    /// Starts a multishot accept on `listener`: one [`Event::Accepted`](crate::Event::Accepted)
    /// per connection until the listener is closed. Descriptor exhaustion is reported (as a
    /// transient error) and backed off, never spun on.
    pub fn accept(&mut self, listener: SocketId, token: Token) {
        let (io, listener) = self.on(listener);
        io.accept(listener, token)
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
    /// io_uring links an `IORING_OP_LINK_TIMEOUT` to the connect; epoll uses a timer; the
    /// simulated network an event in virtual time (never later than its
    /// [`NetConfig::connect_timeout`](crate::NetConfig::connect_timeout)).
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
        let (io, socket) = self.on(socket);
        io.send_to(socket, buf, to.into(), token)
    }

    /// Receives one datagram into `buf`'s spare capacity (16 KiB is reserved if it has none);
    /// completes with [`Event::ReceivedFrom`](crate::Event::ReceivedFrom). The mio backend
    /// fills many queued receives with one `recvmmsg`.
    pub fn recv_from(&mut self, socket: SocketId, buf: BytesMut, token: Token) {
        let (io, socket) = self.on(socket);
        io.recv_from(socket, buf, token)
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
        let (io, socket) = self.on(socket);
        io.recv(socket, buf, token)
    }

    /// [`Reactor::recv`] with a deadline: if no data arrives within `timeout`, the receive
    /// completes with [`Error::TimedOut`] and its buffer, and the connection stays usable.
    /// The clock starts when the receive becomes the socket's active one (receives complete
    /// in order; one queued behind another waits for it first) and starts over if
    /// [`Reactor::pause_recv`] takes it back. io_uring links an `IORING_OP_LINK_TIMEOUT` to
    /// the receive; epoll uses a timer; the simulated network an event in virtual time.
    /// Completes with [`Error::Unsupported`] where
    /// [`Capabilities::operation_timeouts`] is false.
    pub fn recv_timeout(
        &mut self,
        socket: SocketId,
        buf: BytesMut,
        timeout: Duration,
        token: Token,
    ) {
        let (io, local) = self.on(socket);
        if let Err((err, buf)) = io.recv_timeout(local, buf, timeout, token) {
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
    /// socket with a multishot receive does too. On the simulated network each chunk is one
    /// received segment (at most [`NetConfig::mss`](crate::NetConfig::mss) bytes), handed
    /// up without a copy; pause, resume, cancel, end of stream and resets behave as here.
    pub fn recv_multishot(&mut self, socket: SocketId, token: Token) {
        let (io, local) = self.on(socket);
        if let Err(err) = io.recv_multishot(local, token) {
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
        let (io, socket) = self.on(socket);
        io.cancel_recv_multishot(socket)
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
        self.send_op(socket, buf, token, false)
    }

    /// Sends like [`Reactor::send`], but success completes silently: the buffer is dropped
    /// once written, and only a failure (an error, or cancellation by a close) completes, as
    /// [`Event::Sent`](crate::Event::Sent) with `Err`. For writers that need no word per
    /// send: a later [`Reactor::shutdown`] still runs after it, so a connection learns that
    /// everything before went out from the shutdown's completion. Saves a completion (and
    /// its delivery) per send.
    pub fn send_quiet(&mut self, socket: SocketId, buf: Bytes, token: Token) {
        self.send_op(socket, buf, token, true)
    }

    fn send_op(&mut self, socket: SocketId, buf: Bytes, token: Token, quiet: bool) {
        let (io, socket) = self.on(socket);
        io.write(
            socket,
            WriteOp::Send {
                token,
                buf,
                done: 0,
                quiet,
            },
        )
    }

    /// Sends all of `bufs` with vectored writes, in order with other sends; large ones go
    /// zero copy as for [`Reactor::send`] (`SENDMSG_ZC`, Linux 6.1+).
    pub fn send_vectored(&mut self, socket: SocketId, bufs: Vec<Bytes>, token: Token) {
        self.send_vectored_op(socket, bufs, token, false)
    }

    /// [`Reactor::send_vectored`] completing only on failure, as [`Reactor::send_quiet`].
    pub fn send_vectored_quiet(&mut self, socket: SocketId, bufs: Vec<Bytes>, token: Token) {
        self.send_vectored_op(socket, bufs, token, true)
    }

    fn send_vectored_op(&mut self, socket: SocketId, bufs: Vec<Bytes>, token: Token, quiet: bool) {
        let (io, socket) = self.on(socket);
        io.write(
            socket,
            WriteOp::SendVectored {
                token,
                bufs,
                done: 0,
                quiet,
            },
        )
    }

    /// Shuts down one or both directions once every send submitted before it has finished.
    pub fn shutdown(&mut self, socket: SocketId, how: Shutdown, token: Token) {
        let (io, socket) = self.on(socket);
        io.write(socket, WriteOp::Shutdown { token, how })
    }

    /// Closes `socket`: cancels its operations (they complete with
    /// [`Error::Cancelled`] and return their buffers), then releases the descriptor and
    /// completes with [`Event::Closed`](crate::Event::Closed).
    pub fn close(&mut self, socket: SocketId, token: Token) {
        self.watermarks.remove(&socket);
        let (io, socket) = self.on(socket);
        io.close(socket, token)
    }

    /// Stops reading `socket`: no receive is submitted until [`Reactor::resume_recv`], so the
    /// kernel's receive buffer fills and TCP's window pushes back on the peer. Receives
    /// submitted meanwhile wait in order; one already in the kernel is cancelled and put back
    /// (or completes normally if data arrived first).
    pub fn pause_recv(&mut self, socket: SocketId) -> Result<()> {
        let (io, socket) = self.on(socket);
        io.pause_recv(socket)
    }

    /// Resumes reading a paused socket: its queued receives are submitted again.
    pub fn resume_recv(&mut self, socket: SocketId) -> Result<()> {
        let (io, socket) = self.on(socket);
        io.resume_recv(socket)
    }

    /// Bytes accepted by sends on `socket` that the kernel has not taken yet (for the
    /// simulated network: not yet transmitted).
    pub fn send_queued(&self, socket: SocketId) -> Result<usize> {
        let (io, socket) = self.on_ref(socket);
        io.send_queued(socket)
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
        self.send_queued(socket)?;
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
        let (io, socket) = self.on_ref(socket);
        io.set_option(socket, opt)
    }

    /// Reads a typed socket option.
    pub fn option(&self, socket: SocketId, name: SockOptName) -> Result<SockOpt> {
        let (io, socket) = self.on_ref(socket);
        io.option(socket, name)
    }

    /// Raw `setsockopt` on `socket`.
    pub fn setsockopt_raw(
        &self,
        socket: SocketId,
        level: i32,
        name: i32,
        value: &[u8],
    ) -> Result<()> {
        let (io, socket) = self.on_ref(socket);
        options::set_raw(io.raw_fd(socket)?, level, name, value)
    }

    /// Raw `getsockopt` on `socket`; returns the option's length.
    pub fn getsockopt_raw(
        &self,
        socket: SocketId,
        level: i32,
        name: i32,
        buf: &mut [u8],
    ) -> Result<usize> {
        let (io, socket) = self.on_ref(socket);
        options::get_raw(io.raw_fd(socket)?, level, name, buf)
    }

    /// The socket's local address.
    pub fn local_addr(&self, socket: SocketId) -> Result<SocketAddr> {
        let (io, socket) = self.on_ref(socket);
        io.local_addr(socket)
    }

    /// The connected peer's address.
    pub fn peer_addr(&self, socket: SocketId) -> Result<SocketAddr> {
        let (io, socket) = self.on_ref(socket);
        io.peer_addr(socket)
    }

    /// Properties of `socket`: its id, addresses, path MTU, TCP maximum segment size, kernel
    /// buffer sizes and incoming CPU, as far as the socket and backend know them.
    /// [`Error::InvalidSocket`] if the socket is unknown or closed.
    pub fn connection_info(&self, id: SocketId) -> Result<ConnectionInfo> {
        let (io, socket) = self.on_ref(id);
        let local_addr = match io.local_addr(socket) {
            Ok(a) => Some(a),
            Err(Error::InvalidSocket) => return Err(Error::InvalidSocket),
            Err(_) => None,
        };
        let fd = io.raw_fd(socket).ok();
        let int = |name| match io.option(socket, name) {
            Ok(SockOpt::SendBuffer(n) | SockOpt::RecvBuffer(n)) => Some(n),
            // The kernel says -1 until a packet arrived.
            Ok(SockOpt::IncomingCpu(n)) => i32::try_from(n).ok().map(|_| n),
            _ => None,
        };
        Ok(ConnectionInfo {
            id,
            local_addr,
            peer_addr: io.peer_addr(socket).ok(),
            mtu: fd.and_then(|fd| options::path_mtu(fd).ok()),
            max_segment: match fd.map(|fd| options::get(fd, SockOptName::MaxSegment)) {
                Some(Ok(SockOpt::MaxSegment(n))) => usize::try_from(n).ok(),
                _ => None,
            },
            send_buffer: int(SockOptName::SendBuffer),
            recv_buffer: int(SockOptName::RecvBuffer),
            incoming_cpu: int(SockOptName::IncomingCpu),
            kind: io.kind(socket),
        })
    }

    /// The reactor's counters: receive pool use, multishot arms, zero-copy sends, the
    /// registered send pool.
    pub fn stats(&self) -> IoStats {
        let mut total = self.io.stats();
        for h in &self.hosted {
            total.add(&h.io.stats());
        }
        if let Some(pool) = &self.send_pool {
            total.registered_buffers_lent = pool.lent();
        }
        total
    }

    /// Fills a buffer of the registered send pool ([`ReactorConfig::registered_buffer_count`])
    /// and returns what `f` wrote as `Bytes`, to pass to [`Reactor::send`] (whole or sliced;
    /// the memory stays valid after the reactor is gone). `f` gets the whole buffer
    /// ([`ReactorConfig::registered_buffer_size`] bytes, holding zeroes or an earlier
    /// message's bytes) and returns how many bytes it wrote; more than the buffer holds are
    /// clamped to it. Encode straight into it: the message is not copied again.
    ///
    /// On io_uring with [`Capabilities::registered_buffers`] the pool is registered with the
    /// ring, so zero-copy sends from it (see [`Reactor::send`]) use its fixed buffer
    /// (`IORING_RECVSEND_FIXED_BUF`): the kernel pinned the pages once at setup instead of
    /// per send ([`IoStats::registered_sends`]). Copying sends use it too where the kernel
    /// takes fixed buffers for plain `SEND`; one that refuses (6.18 does, with `EINVAL`) is
    /// asked once, then they copy from the pool as from any memory. Elsewhere the pool is
    /// ordinary memory and the same code works.
    ///
    /// `None` if the reactor has no pool (the default; the simulated network never has one)
    /// or every buffer is in use: a buffer comes back when the last clone of its `Bytes`
    /// drops (after its send completed).
    pub fn fill_registered(&mut self, f: impl FnOnce(&mut [u8]) -> usize) -> Option<Bytes> {
        let pool = self.send_pool.as_mut()?;
        pool.reclaim_into_free();
        let held = pool.take()?;
        let n = f(pool.buf_mut(&held));
        Some(pool.lend(held, n))
    }

    /// Submits what is pending, waits up to `timeout` (`None`: until something happens) for
    /// completions or a wake, and appends the completions to `out`. Returns how many arrived.
    pub fn poll(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> Result<usize> {
        let before = out.len();
        let mut timeout = if self.immediate.is_empty() {
            timeout
        } else {
            out.append(&mut self.immediate);
            Some(Duration::ZERO)
        };
        if !self.hosted.is_empty() {
            if self.hosted_busy || self.hosted.iter_mut().any(|h| h.io.has_pending()) {
                // Completions waiting in a hosted backend wake nobody: do not block.
                timeout = Some(Duration::ZERO);
            }
            for h in &self.hosted {
                timeout = crate::io::min_timeout(timeout, h.io.next_deadline());
            }
        }
        self.io.poll(out, timeout)?;
        self.io.take_write_dirty(&mut self.dirty);
        if !self.hosted.is_empty() {
            // Our own poll returned (maybe woken by a hosted backend's descriptor): collect
            // what the hosted backends have.
            self.hosted_busy = self.poll_hosted(out)?;
            for (i, h) in self.hosted.iter_mut().enumerate() {
                let start = self.dirty.len();
                h.io.take_write_dirty(&mut self.dirty);
                for id in &mut self.dirty[start..] {
                    *id = tag(i + 1, *id);
                }
            }
        }
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

    /// How many sockets this reactor owns (closing ones included), on every backend it runs.
    pub fn socket_count(&self) -> usize {
        self.io.socket_count()
            + self
                .hosted
                .iter()
                .map(|h| h.io.socket_count())
                .sum::<usize>()
    }
}

/// A kernel backend's implementation.
fn kernel_io(backend: Backend, config: &ReactorConfig) -> Result<Box<dyn Io>> {
    Ok(match backend {
        Backend::Uring => Box::new(crate::uring::UringReactor::new(config)?),
        Backend::Mio => Box::new(crate::epoll::EpollReactor::new(config)?),
        other => {
            return Err(Error::Unavailable {
                backend: other,
                reason: "no kernel implementation in this build".into(),
            })
        }
    })
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("backend", &self.backend)
            .field("sockets", &self.socket_count())
            .finish()
    }
}
