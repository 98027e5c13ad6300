//! The mio (epoll) backend: readiness adapted to completions.
//!
//! Every operation is tried at once when submitted (the socket may already be ready) and
//! otherwise queued on its socket; epoll is edge-triggered, so a queued operation is retried on
//! the next readiness edge and always ends in `WouldBlock` or a completion. Multishot receives
//! are emulated by reading pool buffers on each edge; operation timeouts are timers.

mod socket;
mod timers;

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mio::{Events, Interest, Poll};
use sinew_actors::Unpark;

use crate::capabilities::Capabilities;
use crate::completion::{Completion, Event, SocketId, Token};
use crate::config::ReactorConfig;
use crate::datagram::{Bind, DatagramAddr};
use crate::error::{Error, Result};
use crate::io::{self, Io};
use crate::options::{self, SockOpt};
use crate::pool::BufPool;
use crate::slab::Slab;
use crate::stats::IoStats;
use crate::sys;
use crate::write::WriteOp;

use socket::{Kind, RecvReq, Sock};
use timers::{TimerKind, Timers};

/// The token of the cross-thread waker; socket tokens are slab indices.
const WAKE: mio::Token = mio::Token(usize::MAX);
/// The token of hosted backends' descriptors ([`Io::watch_fd`]): their readiness only
/// makes `poll` return; the reactor hosting them polls them.
const WATCH: mio::Token = mio::Token(usize::MAX - 1);

/// Wakes a parked epoll reactor through `mio::Waker` (an eventfd).
struct MioUnpark(mio::Waker);

impl Unpark for MioUnpark {
    fn unpark(&self) {
        if let Err(e) = self.0.wake() {
            tracing::warn!(error = %e, "mio waker failed");
        }
    }
}

/// What one epoll event said about a socket.
#[derive(Clone, Copy)]
struct Ready {
    readable: bool,
    writable: bool,
    /// End of stream or an error: readiness that no later edge will repeat.
    read_closed: bool,
}

/// The epoll reactor of one worker.
pub(crate) struct EpollReactor {
    poll: Poll,
    events: Events,
    unpark: Arc<MioUnpark>,
    sockets: Slab<Sock>,
    /// Completions produced outside `poll` (at submit time) waiting to be handed out.
    ready: Vec<Completion>,
    /// Listeners whose accept is backing off after `EMFILE`/`ENFILE`.
    backoff: Vec<SocketId>,
    /// Scratch list of the readiness the last epoll_wait reported, per socket index.
    fired: Vec<(usize, Ready)>,
    /// Consecutive polls answered from `ready` without asking the kernel (bounded, so
    /// readiness events are never starved).
    skipped_waits: u32,
    /// Sockets whose write queue changed since the last `take_write_dirty`.
    write_dirty: Vec<SocketId>,
    /// Buffers that multishot receives read into.
    pool: BufPool,
    /// Receive and connect deadlines.
    timers: Timers,
    /// Sockets whose multishot receive stopped on its budget with data possibly left.
    recheck: Vec<SocketId>,
    /// Multishot chunks read into fresh allocations because the pool was empty.
    recv_copied: u64,
    /// The last `epoll_wait` filled `events`: more readiness may be waiting.
    saturated: bool,
}

impl EpollReactor {
    pub(crate) fn new(config: &ReactorConfig) -> Result<Self> {
        config.validate()?;
        let pool = BufPool::new(config.recv_buffer_count, config.recv_buffer_size)?;
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKE)?;
        Ok(EpollReactor {
            poll,
            events: Events::with_capacity(1024),
            unpark: Arc::new(MioUnpark(waker)),
            sockets: Slab::new(),
            ready: Vec::new(),
            backoff: Vec::new(),
            fired: Vec::new(),
            skipped_waits: 0,
            write_dirty: Vec::new(),
            pool,
            timers: Timers::default(),
            recheck: Vec::new(),
            recv_copied: 0,
            saturated: false,
        })
    }

    /// Reads for `id`'s multishot receive; remembers the socket if data may be left.
    fn drive_multi(&mut self, id: SocketId) {
        let Some(sock) = self.sockets.get_mut(id) else {
            return;
        };
        if sock.drive_multi(id, &mut self.ready, &mut self.pool, &mut self.recv_copied) {
            self.recheck.push(id);
        }
    }

    /// Fires the deadlines that have passed; returns the time to the next one.
    #[inline]
    fn expire_timers(&mut self) -> Option<Duration> {
        // Every poll comes here twice: without a deadline, no clock read and no call.
        if self.timers.is_empty() {
            return None;
        }
        self.fire_timers()
    }

    /// `expire_timers` with at least one deadline armed.
    #[inline(never)]
    fn fire_timers(&mut self) -> Option<Duration> {
        let now = Instant::now();
        while let Some((key, id, kind)) = self.timers.pop_due(now) {
            let Some(sock) = self.sockets.get_mut(id) else {
                continue;
            };
            match kind {
                TimerKind::Recv => {
                    if sock.recvs.front().and_then(|r| r.timer) != Some(key) {
                        continue;
                    }
                    if sock.paused {
                        // A paused receive is not active: its clock starts over on resume.
                        if let Some(head) = sock.recvs.front_mut() {
                            head.timer = None;
                        }
                        continue;
                    }
                    if let Some(req) = sock.recvs.pop_front() {
                        self.ready.push(Completion {
                            token: req.token,
                            event: Event::Received {
                                socket: id,
                                buf: req.buf,
                                result: Err(Error::TimedOut),
                            },
                        });
                    }
                    // The next receive (if any) becomes active: start its clock.
                    sock.drive_recv(id, &mut self.ready, &mut self.timers);
                }
                TimerKind::Connect => {
                    if sock.connect_timer != Some(key) {
                        continue;
                    }
                    sock.connect_timer = None;
                    if let Some(token) = sock.connecting.take() {
                        self.ready.push(Completion {
                            token,
                            event: Event::Connected {
                                socket: id,
                                result: Err(Error::TimedOut),
                            },
                        });
                    }
                }
            }
        }
        self.timers.next_in(now)
    }

    /// Adds a socket and registers it for both directions (edge-triggered).
    fn add(&mut self, kind: Kind) -> Result<SocketId> {
        let id = self.sockets.insert(Sock::new(kind));
        let token = mio::Token(id.index as usize);
        let registry = self.poll.registry();
        let res = match self.sockets.get_mut(id).map(|s| &mut s.kind) {
            Some(kind) if kind.is_listener() => {
                registry.register(kind.source(), token, Interest::READABLE)
            }
            Some(kind) => registry.register(
                kind.source(),
                token,
                Interest::READABLE | Interest::WRITABLE,
            ),
            None => return Err(Error::InvalidSocket),
        };
        if let Err(e) = res {
            self.sockets.remove(id);
            return Err(e.into());
        }
        Ok(id)
    }

    /// Accepts until the listener would block, backing off on descriptor exhaustion.
    fn drive_accept(&mut self, id: SocketId) {
        loop {
            let Some(sock) = self.sockets.get_mut(id) else {
                return;
            };
            let Some(acc) = sock.accept.as_mut() else {
                return;
            };
            if acc.retry_at.is_some() {
                return;
            }
            let token = acc.token;
            if !sock.kind.is_listener() {
                return;
            }
            let seqpacket = sock.seqpacket;
            match sock.kind.accept() {
                Ok(stream) => {
                    acc.backoff = io::BACKOFF_MIN;
                    let result = self.add(stream);
                    if let Some(conn) = result.as_ref().ok().and_then(|&c| self.sockets.get_mut(c))
                    {
                        conn.seqpacket = seqpacket;
                    }
                    self.ready.push(Completion {
                        token,
                        event: Event::Accepted {
                            listener: id,
                            result,
                            more: true,
                        },
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let err = Error::from(e);
                    if matches!(err, Error::TooManyOpenFiles(_)) {
                        // The pending connection stays in the backlog; epoll will not report
                        // it again, so a timer (not a spin) brings us back.
                        acc.retry_at = Some(Instant::now() + acc.backoff);
                        acc.backoff = (acc.backoff * 2).min(io::BACKOFF_MAX);
                        self.backoff.push(id);
                        self.ready.push(Completion {
                            token,
                            event: Event::Accepted {
                                listener: id,
                                result: Err(err),
                                more: true,
                            },
                        });
                        return;
                    }
                    let more = err.is_transient();
                    if !more {
                        sock.accept = None;
                    }
                    self.ready.push(Completion {
                        token,
                        event: Event::Accepted {
                            listener: id,
                            result: Err(err),
                            more,
                        },
                    });
                    if !more {
                        return;
                    }
                }
            }
        }
    }

    /// Runs every queued operation of a socket that its readiness allows.
    fn drive(&mut self, id: SocketId, ready: Ready) {
        let Ready {
            readable,
            writable,
            read_closed,
        } = ready;
        let Some(sock) = self.sockets.get_mut(id) else {
            return;
        };
        if readable {
            // A new edge: whatever the last read left behind, there may be data now.
            sock.drained = false;
            sock.read_closed |= read_closed;
        }
        if sock.kind.is_listener() {
            if readable {
                self.drive_accept(id);
            }
            return;
        }
        if sock.kind.is_datagram() {
            if readable {
                sock.drive_recv_from(id, &mut self.ready);
            }
            if writable {
                sock.drive_send_to(id, &mut self.ready);
            }
            return;
        }
        let mut connected = false;
        if writable && sock.connecting.is_some() {
            sock.drive_connect(id, &mut self.ready, &mut self.timers);
            connected = sock.connecting.is_none();
        }
        // A connect that just finished lets queued receives run and start their clocks.
        if readable || connected {
            sock.drive_recv(id, &mut self.ready, &mut self.timers);
            if sock.drive_multi(id, &mut self.ready, &mut self.pool, &mut self.recv_copied) {
                self.recheck.push(id);
            }
        }
        if writable {
            sock.write_blocked = false;
            if !sock.writes.is_empty() {
                sock.drive_writes(id, &mut self.ready);
                self.write_dirty.push(id);
            }
        }
    }

    /// Queues a stream receive (with an optional deadline) and tries it at once.
    fn queue_recv(
        &mut self,
        socket: SocketId,
        buf: BytesMut,
        token: Token,
        timeout: Option<Duration>,
    ) {
        match self.sockets.get_mut(socket) {
            Some(sock) if sock.kind.is_stream() && sock.multi.is_none() => {
                sock.recvs.push_back(RecvReq {
                    token,
                    buf,
                    timeout,
                    timer: None,
                });
                sock.drive_recv(socket, &mut self.ready, &mut self.timers);
            }
            other => {
                let err = match other {
                    Some(s) if s.multi.is_some() => {
                        Error::Unsupported("recv on a socket with a multishot receive")
                    }
                    Some(_) => Error::Unsupported("recv needs a connected stream"),
                    None => Error::InvalidSocket,
                };
                let event = Event::Received {
                    socket,
                    buf,
                    result: Err(err),
                };
                self.ready.push(Completion { token, event });
            }
        }
    }

    /// Retries accepts whose backoff has elapsed; returns the time to the next deadline.
    #[inline]
    fn expire_backoffs(&mut self) -> Option<Duration> {
        // Every poll comes here: without a backed-off accept, not even a call.
        if self.backoff.is_empty() {
            return None;
        }
        self.retry_backoffs()
    }

    /// `expire_backoffs` with at least one accept backing off.
    #[inline(never)]
    fn retry_backoffs(&mut self) -> Option<Duration> {
        let sockets = &self.sockets;
        let (due, next) = io::due_backoffs(&mut self.backoff, |id| {
            sockets
                .get(id)
                .and_then(|s| s.accept.as_ref())
                .and_then(|a| a.retry_at)
        });
        for id in due {
            if let Some(acc) = self.sockets.get_mut(id).and_then(|s| s.accept.as_mut()) {
                acc.retry_at = None;
            }
            self.drive_accept(id);
        }
        next
    }
}

impl Io for EpollReactor {
    fn listen(&mut self, addr: SocketAddr, opts: &[SockOpt]) -> Result<SocketId> {
        let fd = sys::listener(addr, opts, true)?;
        let std = std::net::TcpListener::from(fd);
        self.add(Kind::Listener(mio::net::TcpListener::from_std(std)))
    }

    fn accept(&mut self, listener: SocketId, token: Token) {
        let Some(sock) = self.sockets.get_mut(listener) else {
            let event = Event::Accepted {
                listener,
                result: Err(Error::InvalidSocket),
                more: false,
            };
            return self.ready.push(Completion { token, event });
        };
        if !sock.kind.is_listener() || sock.accept.is_some() {
            let err = Error::Unsupported("accept needs a listener without an accept in flight");
            let event = Event::Accepted {
                listener,
                result: Err(err),
                more: false,
            };
            return self.ready.push(Completion { token, event });
        }
        sock.accept = Some(socket::Accept::new(token));
        self.drive_accept(listener);
    }

    fn connect(&mut self, addr: SocketAddr, opts: &[SockOpt], token: Token) -> Result<SocketId> {
        let socket = sys::tcp_socket(&addr, true)?;
        for opt in opts {
            options::set(socket.as_fd(), *opt)?;
        }
        let started = match socket.connect(&addr.into()) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
            Err(e) => Err(Error::from(e)),
        };
        let std = std::net::TcpStream::from(OwnedFd::from(socket));
        let id = self.add(Kind::Stream(mio::net::TcpStream::from_std(std)))?;
        match started {
            Ok(()) => {
                if let Some(sock) = self.sockets.get_mut(id) {
                    sock.connecting = Some(token);
                }
            }
            Err(err) => self.ready.push(Completion {
                token,
                event: Event::Connected {
                    socket: id,
                    result: Err(err),
                },
            }),
        }
        Ok(id)
    }

    fn pause_recv(&mut self, socket: SocketId) -> Result<()> {
        let sock = self.sockets.get_mut(socket).ok_or(Error::InvalidSocket)?;
        sock.paused = true;
        Ok(())
    }

    fn resume_recv(&mut self, socket: SocketId) -> Result<()> {
        let sock = self.sockets.get_mut(socket).ok_or(Error::InvalidSocket)?;
        sock.paused = false;
        // Edge-triggered: data that arrived while paused raised no new edge, so try now.
        sock.drive_recv(socket, &mut self.ready, &mut self.timers);
        self.drive_multi(socket);
        Ok(())
    }

    fn take_write_dirty(&mut self, out: &mut Vec<SocketId>) {
        out.append(&mut self.write_dirty);
    }

    fn send_queued(&self, socket: SocketId) -> Result<usize> {
        let sock = self.sockets.get(socket).ok_or(Error::InvalidSocket)?;
        Ok(crate::write::queued_bytes(&sock.writes))
    }

    fn bind_datagram(&mut self, bind: Bind<'_>) -> Result<SocketId> {
        let fd = sys::datagram(&bind, true)?;
        let kind = match bind {
            Bind::Udp(..) => Kind::Udp(mio::net::UdpSocket::from_std(fd.into())),
            Bind::Unix(_) => Kind::UnixDatagram(mio::net::UnixDatagram::from_std(fd.into())),
        };
        self.add(kind)
    }

    fn recv_from(&mut self, socket: SocketId, buf: BytesMut, token: Token) {
        match self.sockets.get_mut(socket) {
            Some(sock) if sock.kind.is_datagram() => {
                sock.recv_froms.push_back((token, buf));
                sock.drive_recv_from(socket, &mut self.ready);
            }
            other => {
                let err = if other.is_some() {
                    Error::Unsupported("recv_from on a stream socket")
                } else {
                    Error::InvalidSocket
                };
                let c = crate::datagram::received_from(socket, token, buf, None, false, Err(err));
                self.ready.push(c);
            }
        }
    }

    fn send_to(&mut self, socket: SocketId, buf: Bytes, to: DatagramAddr, token: Token) {
        let addr = match to.to_sockaddr() {
            Ok(a) => a,
            Err(err) => {
                return self
                    .ready
                    .push(crate::datagram::sent_to(socket, token, buf, to, Err(err)))
            }
        };
        match self.sockets.get_mut(socket) {
            Some(sock) if sock.kind.is_datagram() => {
                sock.send_tos.push_back((token, buf, to, addr));
                sock.drive_send_to(socket, &mut self.ready);
            }
            other => {
                let err = if other.is_some() {
                    Error::Unsupported("send_to on a stream socket")
                } else {
                    Error::InvalidSocket
                };
                self.ready
                    .push(crate::datagram::sent_to(socket, token, buf, to, Err(err)));
            }
        }
    }

    fn listen_unix(&mut self, path: &Path) -> Result<SocketId> {
        let fd = sys::unix_listener(path, true)?;
        let std = std::os::unix::net::UnixListener::from(fd);
        self.add(Kind::UnixListener(mio::net::UnixListener::from_std(std)))
    }

    fn connect_unix(&mut self, path: &Path, token: Token) -> Result<SocketId> {
        let stream = mio::net::UnixStream::connect(path)?;
        let id = self.add(Kind::UnixStream(stream))?;
        if let Some(sock) = self.sockets.get_mut(id) {
            sock.connecting = Some(token);
        }
        Ok(id)
    }

    fn listen_seqpacket(&mut self, path: &Path) -> Result<SocketId> {
        let fd = sys::unix_seqpacket_listener(path, true)?;
        // mio's Unix types only wrap the descriptor: accept(2), recv(2) and send(2) behave
        // as the socket's type says, so they carry seqpacket sockets unchanged.
        let std = std::os::unix::net::UnixListener::from(fd);
        let id = self.add(Kind::UnixListener(mio::net::UnixListener::from_std(std)))?;
        if let Some(sock) = self.sockets.get_mut(id) {
            sock.seqpacket = true;
        }
        Ok(id)
    }

    fn connect_seqpacket(&mut self, path: &Path, token: Token) -> Result<SocketId> {
        let socket = sys::unix_seqpacket(true)?;
        match socket.connect(&socket2::SockAddr::unix(path)?) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e.into()),
        }
        let std = std::os::unix::net::UnixStream::from(OwnedFd::from(socket));
        let id = self.add(Kind::UnixStream(mio::net::UnixStream::from_std(std)))?;
        if let Some(sock) = self.sockets.get_mut(id) {
            sock.seqpacket = true;
            sock.connecting = Some(token);
        }
        Ok(id)
    }

    fn recv(&mut self, socket: SocketId, buf: BytesMut, token: Token) {
        self.queue_recv(socket, buf, token, None)
    }

    fn recv_timeout(
        &mut self,
        socket: SocketId,
        buf: BytesMut,
        timeout: Duration,
        token: Token,
    ) -> Result<(), (Error, BytesMut)> {
        self.queue_recv(socket, buf, token, Some(timeout));
        Ok(())
    }

    fn connect_timeout(
        &mut self,
        addr: SocketAddr,
        opts: &[SockOpt],
        timeout: Duration,
        token: Token,
    ) -> Result<SocketId> {
        let id = self.connect(addr, opts, token)?;
        if let Some(sock) = self.sockets.get_mut(id) {
            if sock.connecting.is_some() {
                sock.connect_timer = Some(self.timers.add(timeout, id, TimerKind::Connect));
            }
        }
        Ok(id)
    }

    fn recv_multishot(&mut self, socket: SocketId, token: Token) -> Result<()> {
        let sock = self.sockets.get_mut(socket).ok_or(Error::InvalidSocket)?;
        if !sock.kind.is_stream() {
            return Err(Error::Unsupported(
                "recv_multishot needs a connected stream",
            ));
        }
        if sock.seqpacket {
            return Err(Error::Unsupported(
                "recv_multishot on a seqpacket socket: use recv, which reports truncation",
            ));
        }
        if sock.multi.is_some() || !sock.recvs.is_empty() {
            return Err(Error::Unsupported(
                "recv_multishot on a socket with receives outstanding",
            ));
        }
        sock.multi = Some(token);
        self.drive_multi(socket);
        Ok(())
    }

    fn cancel_recv_multishot(&mut self, socket: SocketId) -> Result<()> {
        let sock = self.sockets.get_mut(socket).ok_or(Error::InvalidSocket)?;
        let token = sock.multi.take().ok_or(Error::InvalidArgument(
            "no multishot receive on this socket",
        ))?;
        self.ready.push(Completion {
            token,
            event: Event::ReceivedBytes {
                socket,
                result: Err(Error::Cancelled),
                more: false,
            },
        });
        Ok(())
    }

    fn stats(&self) -> IoStats {
        IoStats {
            recv_buffers: self.pool.count(),
            recv_buffers_lent: self.pool.lent(),
            recv_copied: self.recv_copied,
            ..IoStats::default()
        }
    }
    fn write(&mut self, socket: SocketId, op: WriteOp) {
        match self.sockets.get_mut(socket) {
            Some(sock) if sock.kind.is_stream() => {
                sock.writes.push_back(op);
                sock.drive_writes(socket, &mut self.ready);
                self.write_dirty.push(socket);
            }
            other => {
                let err = if other.is_some() {
                    Error::Unsupported("send needs a connected stream")
                } else {
                    Error::InvalidSocket
                };
                self.ready.push(op.complete(socket, Err(err)));
            }
        }
    }

    fn close(&mut self, socket: SocketId, token: Token) {
        if let Some(mut sock) = self.sockets.remove(socket) {
            let registry = self.poll.registry();
            let res = registry.deregister(sock.kind.source());
            if let Err(e) = res {
                tracing::debug!(error = %e, "deregister on close failed");
            }
            // Nothing is in flight in the kernel with epoll: cancel what is queued, then the
            // descriptor closes when `sock` drops.
            sock.cancel_all(socket, &mut self.ready, &mut self.timers);
        }
        self.ready.push(Completion {
            token,
            event: Event::Closed { socket },
        });
    }

    fn fd(&self, socket: SocketId) -> Option<BorrowedFd<'_>> {
        self.sockets.get(socket).map(|s| s.kind.fd())
    }

    fn poll(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> Result<()> {
        // Completions already queued (a send that finished when submitted, say) answer this
        // poll without an `epoll_wait`: it would return nothing new but cost a syscall per
        // request. Every few turns the kernel is asked anyway, so readiness is never starved.
        const MAX_SKIPPED_WAITS: u32 = 8;
        // Buffers whose `Bytes` were dropped are free again (and show so in the stats).
        self.pool.reclaim_into_free();
        if !self.ready.is_empty() && self.skipped_waits < MAX_SKIPPED_WAITS {
            self.skipped_waits += 1;
            self.expire_backoffs();
            self.expire_timers();
            out.append(&mut self.ready);
            return Ok(());
        }
        self.skipped_waits = 0;
        let backoff = io::min_timeout(self.expire_backoffs(), self.expire_timers());
        let timeout = if self.ready.is_empty() && self.recheck.is_empty() {
            io::min_timeout(timeout, backoff)
        } else {
            Some(Duration::ZERO)
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
        self.fired.clear();
        let mut count = 0;
        for ev in self.events.iter() {
            count += 1;
            if ev.token() == WAKE || ev.token() == WATCH {
                continue;
            }
            let read_closed = ev.is_read_closed() || ev.is_error();
            let ready = Ready {
                readable: ev.is_readable() || read_closed,
                writable: ev.is_writable() || ev.is_write_closed() || ev.is_error(),
                read_closed,
            };
            self.fired.push((ev.token().0, ready));
        }
        self.saturated = count >= self.events.capacity();
        let fired = std::mem::take(&mut self.fired);
        for &(index, ready) in &fired {
            if let Some(id) = self.sockets.id_at(index) {
                self.drive(id, ready);
            }
        }
        self.fired = fired;
        for id in std::mem::take(&mut self.recheck) {
            self.drive_multi(id);
        }
        self.expire_backoffs();
        self.expire_timers();
        out.append(&mut self.ready);
        Ok(())
    }

    fn unparker(&self) -> Arc<dyn Unpark> {
        self.unpark.clone()
    }

    fn wait_fd(&mut self) -> Result<RawFd> {
        // The epoll descriptor itself is readable while it has readiness to report.
        Ok(self.poll.as_raw_fd())
    }

    fn watch_fd(&mut self, fd: RawFd) -> Result<()> {
        self.poll
            .registry()
            .register(&mut mio::unix::SourceFd(&fd), WATCH, Interest::READABLE)?;
        Ok(())
    }

    fn has_pending(&mut self) -> bool {
        !self.ready.is_empty() || !self.recheck.is_empty() || self.saturated
    }

    fn next_deadline(&self) -> Option<Duration> {
        let now = Instant::now();
        let backoff = self
            .backoff
            .iter()
            .filter_map(|&id| self.sockets.get(id)?.accept.as_ref()?.retry_at)
            .min()
            .map(|at| at.saturating_duration_since(now));
        io::min_timeout(self.timers.next_in(now), backoff)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            vectored_io: true,
            datagrams: true,
            batched_datagrams: true,
            unix_sockets: true,
            seqpacket: true,
            operation_timeouts: true,
            ..Capabilities::default()
        }
    }

    fn socket_count(&self) -> usize {
        self.sockets.len()
    }
}
