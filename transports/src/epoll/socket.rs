//! One epoll socket and its queued operations: connect, receives in order, and the write queue.

use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice};
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use socket2::{SockAddr, SockAddrStorage, SockRef};

use crate::completion::{Completion, Event, SocketId, Token};
use crate::datagram::{received_from, sent_to, DatagramAddr};
use crate::error::{Error, Result};
use crate::io;
use crate::pool::BufPool;
use crate::write::WriteOp;

use super::timers::{TimerKey, TimerKind, Timers};

/// At most this many slices go into one `sendmsg`.
const MAX_IOV: usize = 64;

/// At most this many datagrams go into one `recvmmsg` / `sendmmsg`.
const BATCH: usize = 32;

/// At most this many chunks are read for one multishot receive per readiness edge; a socket
/// that still has data is driven again at the next poll, so one fast sender cannot
/// monopolise the worker.
pub(super) const MULTI_BUDGET: usize = 32;

/// A queued stream receive.
pub(super) struct RecvReq {
    pub(super) token: Token,
    pub(super) buf: BytesMut,
    /// Its deadline's length, counted from when it becomes the socket's active receive.
    pub(super) timeout: Option<Duration>,
    /// The armed deadline.
    pub(super) timer: Option<TimerKey>,
}

pub(super) enum Kind {
    Listener(mio::net::TcpListener),
    Stream(mio::net::TcpStream),
    UnixListener(mio::net::UnixListener),
    UnixStream(mio::net::UnixStream),
    Udp(mio::net::UdpSocket),
    UnixDatagram(mio::net::UnixDatagram),
}

impl Kind {
    pub(super) fn is_listener(&self) -> bool {
        matches!(self, Kind::Listener(_) | Kind::UnixListener(_))
    }

    pub(super) fn is_datagram(&self) -> bool {
        matches!(self, Kind::Udp(_) | Kind::UnixDatagram(_))
    }

    /// A connected (or connecting) byte stream.
    pub(super) fn is_stream(&self) -> bool {
        matches!(self, Kind::Stream(_) | Kind::UnixStream(_))
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Kind::Listener(l) => l.as_fd(),
            Kind::Stream(s) => s.as_fd(),
            Kind::UnixListener(l) => l.as_fd(),
            Kind::UnixStream(s) => s.as_fd(),
            Kind::Udp(s) => s.as_fd(),
            Kind::UnixDatagram(s) => s.as_fd(),
        }
    }

    /// The registrable event source.
    pub(super) fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Kind::Listener(l) => l,
            Kind::Stream(s) => s,
            Kind::UnixListener(l) => l,
            Kind::UnixStream(s) => s,
            Kind::Udp(s) => s,
            Kind::UnixDatagram(s) => s,
        }
    }

    /// Accepts one connection from a listener of either family.
    pub(super) fn accept(&self) -> std::io::Result<Kind> {
        match self {
            Kind::Listener(l) => l.accept().map(|(s, _)| Kind::Stream(s)),
            Kind::UnixListener(l) => l.accept().map(|(s, _)| Kind::UnixStream(s)),
            _ => Err(std::io::Error::from(ErrorKind::InvalidInput)),
        }
    }
}

/// A multishot accept in progress.
pub(super) struct Accept {
    pub(super) token: Token,
    /// Set while backing off after `EMFILE`/`ENFILE`.
    pub(super) retry_at: Option<Instant>,
    pub(super) backoff: Duration,
}

impl Accept {
    pub(super) fn new(token: Token) -> Self {
        Accept {
            token,
            retry_at: None,
            backoff: io::BACKOFF_MIN,
        }
    }
}

pub(super) struct Sock {
    pub(super) kind: Kind,
    /// A Unix `SOCK_SEQPACKET` socket (listener or connection): receives keep message
    /// boundaries and report truncation.
    pub(super) seqpacket: bool,
    pub(super) accept: Option<Accept>,
    /// The token of a connect still waiting for the socket to become writable.
    pub(super) connecting: Option<Token>,
    /// The connect's deadline.
    pub(super) connect_timer: Option<TimerKey>,
    pub(super) recvs: VecDeque<RecvReq>,
    /// The token of the (emulated) multishot receive, if one is active.
    pub(super) multi: Option<Token>,
    /// Reading is paused (backpressure): queued receives wait.
    pub(super) paused: bool,
    /// The last read of this stream found its receive queue empty (a short read, or
    /// `EAGAIN`): the readiness epoll reported is used up, so a receive submitted now waits
    /// for the next edge instead of trying a read that would only say `EAGAIN` (a syscall per
    /// request in a ping-pong). Any edge clears it. Never set on seqpacket sockets, where a
    /// short read is just a short message, nor once the peer's end of stream or an error was
    /// seen: their readiness may already have been reported with the data, and no further
    /// edge would come.
    pub(super) drained: bool,
    /// epoll reported end of stream (`EPOLLRDHUP`/`EPOLLHUP`) or an error on this socket.
    pub(super) read_closed: bool,
    /// The last write found the send buffer full (a partial write, or `EAGAIN`). The kernel
    /// then marks the socket `SOCK_NOSPACE` and reports a writable edge once room frees up,
    /// so a send submitted meanwhile waits for that edge instead of a `sendmsg` that would
    /// only say `EAGAIN` (tokio clears write readiness on a short write for the same reason).
    /// A writable edge clears it.
    pub(super) write_blocked: bool,
    pub(super) writes: VecDeque<WriteOp>,
    /// Datagram receives, filled in order (many per `recvmmsg`).
    pub(super) recv_froms: VecDeque<(Token, BytesMut)>,
    /// Datagram sends with their kernel addresses, sent in order (many per `sendmmsg`).
    pub(super) send_tos: VecDeque<(Token, Bytes, DatagramAddr, SockAddr)>,
}

impl Sock {
    pub(super) fn new(kind: Kind) -> Self {
        Sock {
            kind,
            seqpacket: false,
            accept: None,
            connecting: None,
            connect_timer: None,
            recvs: VecDeque::new(),
            multi: None,
            paused: false,
            drained: false,
            read_closed: false,
            write_blocked: false,
            writes: VecDeque::new(),
            recv_froms: VecDeque::new(),
            send_tos: VecDeque::new(),
        }
    }

    /// The descriptor of a connected (or connecting) stream of either family.
    fn stream(&self) -> Option<BorrowedFd<'_>> {
        self.kind.is_stream().then(|| self.kind.fd())
    }

    /// Fills queued datagram receives, up to [`BATCH`] per `recvmmsg`, until the socket would
    /// block.
    pub(super) fn drive_recv_from(&mut self, id: SocketId, ready: &mut Vec<Completion>) {
        if !self.kind.is_datagram() {
            return;
        }
        let fd = self.kind.fd().as_raw_fd();
        while !self.recv_froms.is_empty() {
            let n = self.recv_froms.len().min(BATCH);
            let mut iovs: Vec<libc::iovec> = self
                .recv_froms
                .iter_mut()
                .take(n)
                .map(|(_, buf)| {
                    io::ensure_spare(buf);
                    let spare = buf.spare_capacity_mut();
                    libc::iovec {
                        iov_base: spare.as_mut_ptr().cast(),
                        iov_len: spare.len(),
                    }
                })
                .collect();
            let mut addrs: Vec<SockAddrStorage> =
                (0..n).map(|_| SockAddrStorage::zeroed()).collect();
            // SAFETY: mmsghdr is a plain C struct for which all-zero is a valid value.
            let mut hdrs: Vec<libc::mmsghdr> = (0..n).map(|_| unsafe { mem::zeroed() }).collect();
            for ((hdr, addr), iov) in hdrs.iter_mut().zip(&mut addrs).zip(&mut iovs) {
                hdr.msg_hdr.msg_name = (addr as *mut SockAddrStorage).cast();
                hdr.msg_hdr.msg_namelen = addr.size_of();
                hdr.msg_hdr.msg_iov = iov;
                hdr.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: every pointer in `hdrs` targets `addrs`, `iovs` or the spare capacity of
            // a queued buffer; all of them stay alive and unmoved during the call, and `n` is
            // the length of `hdrs`.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    // MSG_TRUNC: each length is the datagram's real one, so truncation shows.
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                match e.kind() {
                    ErrorKind::WouldBlock => return,
                    ErrorKind::Interrupted => continue,
                    _ => {
                        if let Some((token, buf)) = self.recv_froms.pop_front() {
                            ready.push(received_from(id, token, buf, None, false, Err(e.into())));
                        }
                        continue;
                    }
                }
            }
            let got = usize::try_from(r).unwrap_or(0).min(n);
            for (hdr, addr) in hdrs.iter().zip(addrs).take(got) {
                let Some((token, mut buf)) = self.recv_froms.pop_front() else {
                    break;
                };
                let real = hdr.msg_len as usize;
                let len = real.min(buf.capacity() - buf.len());
                // SAFETY: recvmmsg initialised `len` bytes of this buffer's spare capacity,
                // the iovec it was given (and `len` is clamped to that capacity).
                unsafe { buf.set_len(buf.len() + len) };
                let from = crate::datagram::from_storage(addr)
                    .and_then(|a| DatagramAddr::from_sockaddr(&a));
                let truncated = real > len || hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                ready.push(received_from(id, token, buf, from, truncated, Ok(len)));
            }
        }
    }

    /// Sends queued datagrams, up to [`BATCH`] per `sendmmsg`, until the socket would block.
    pub(super) fn drive_send_to(&mut self, id: SocketId, ready: &mut Vec<Completion>) {
        if !self.kind.is_datagram() {
            return;
        }
        let fd = self.kind.fd().as_raw_fd();
        while !self.send_tos.is_empty() {
            let n = self.send_tos.len().min(BATCH);
            let mut iovs: Vec<libc::iovec> = self
                .send_tos
                .iter()
                .take(n)
                .map(|(_, buf, _, _)| libc::iovec {
                    iov_base: buf.as_ptr() as *mut libc::c_void,
                    iov_len: buf.len(),
                })
                .collect();
            // SAFETY: mmsghdr is a plain C struct for which all-zero is a valid value.
            let mut hdrs: Vec<libc::mmsghdr> = (0..n).map(|_| unsafe { mem::zeroed() }).collect();
            for ((hdr, iov), (_, _, _, addr)) in hdrs.iter_mut().zip(&mut iovs).zip(&self.send_tos)
            {
                hdr.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
                hdr.msg_hdr.msg_namelen = addr.len();
                hdr.msg_hdr.msg_iov = iov;
                hdr.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: every pointer in `hdrs` targets `iovs`, a queued `Bytes` or a queued
            // address; all stay alive and unmoved during the call (the kernel only reads them),
            // and `n` is the length of `hdrs`.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                match e.kind() {
                    ErrorKind::WouldBlock => return,
                    ErrorKind::Interrupted => continue,
                    _ => {
                        // The first datagram failed (e.g. too large): report it, go on.
                        if let Some((token, buf, to, _)) = self.send_tos.pop_front() {
                            ready.push(sent_to(id, token, buf, to, Err(e.into())));
                        }
                        continue;
                    }
                }
            }
            let sent = usize::try_from(r).unwrap_or(0).min(n);
            for hdr in hdrs.iter().take(sent) {
                if let Some((token, buf, to, _)) = self.send_tos.pop_front() {
                    ready.push(sent_to(id, token, buf, to, Ok(hdr.msg_len as usize)));
                }
            }
        }
    }

    /// Finishes a pending connect once the socket reports writable (or an error).
    pub(super) fn drive_connect(
        &mut self,
        id: SocketId,
        ready: &mut Vec<Completion>,
        timers: &mut Timers,
    ) {
        let (Some(token), Some(stream)) = (self.connecting, self.stream()) else {
            return;
        };
        let sock = SockRef::from(&stream);
        let result = match sock.take_error() {
            Ok(Some(e)) | Err(e) => Err(Error::from(e)),
            Ok(None) => match sock.peer_addr() {
                Ok(_) => Ok(()),
                // Not connected yet: a spurious edge; wait for the next one.
                Err(e) if e.kind() == ErrorKind::NotConnected => return,
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => return,
                Err(e) => Err(Error::from(e)),
            },
        };
        self.connecting = None;
        if let Some(key) = self.connect_timer.take() {
            timers.remove(key);
        }
        ready.push(Completion {
            token,
            event: Event::Connected { socket: id, result },
        });
    }

    /// Completes queued receives, in order, until the socket would block; then starts the
    /// deadline of the receive left waiting, if it has one.
    pub(super) fn drive_recv(
        &mut self,
        id: SocketId,
        ready: &mut Vec<Completion>,
        timers: &mut Timers,
    ) {
        if self.connecting.is_some() || self.paused {
            return;
        }
        if !self.kind.is_stream() {
            return;
        }
        let stream = self.kind.fd();
        // MSG_TRUNC makes a seqpacket receive return the message's full length, so a cut
        // message is reported instead of silently shortened (on a TCP socket it would
        // discard data instead: never set it there).
        let flags = if self.seqpacket { libc::MSG_TRUNC } else { 0 };
        let may_drain = !self.seqpacket && !self.read_closed;
        while let Some(RecvReq { buf, .. }) = self.recvs.front_mut() {
            if self.drained {
                break;
            }
            io::ensure_spare(buf);
            let spare = buf.spare_capacity_mut();
            let room = spare.len();
            let result = SockRef::from(&stream).recv_with_flags(spare, flags);
            let result = match result {
                Ok(n) => {
                    let got = n.min(room);
                    // SAFETY: recv(2) initialised the first `got` bytes of the spare
                    // capacity: `n` (or, with MSG_TRUNC, the part of the message that fit,
                    // `got`) never exceeds the spare capacity it was given.
                    unsafe { buf.set_len(buf.len() + got) };
                    // A stream read returns less than asked only when the kernel's queue
                    // ran empty; zero is end of stream, which stays readable.
                    self.drained = may_drain && n > 0 && n < room;
                    if n > room {
                        Err(Error::MessageTruncated { len: n })
                    } else {
                        Ok(n)
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.drained = may_drain;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => Err(Error::from(e)),
            };
            if let Some(req) = self.recvs.pop_front() {
                if let Some(key) = req.timer {
                    timers.remove(key);
                }
                ready.push(Completion {
                    token: req.token,
                    event: Event::Received {
                        socket: id,
                        buf: req.buf,
                        result,
                    },
                });
            }
        }
        if let Some(head) = self.recvs.front_mut() {
            if let (Some(after), None) = (head.timeout, head.timer) {
                head.timer = Some(timers.add(after, id, TimerKind::Recv));
            }
        }
    }

    /// Reads for the (emulated) multishot receive until the socket would block, each chunk
    /// into a pool buffer lent out as `Bytes` (a fresh allocation if the pool is empty,
    /// counted in `copied`). Returns true if it stopped on its budget with the socket
    /// possibly still readable: the caller must drive it again, as edge-triggered epoll will
    /// not report the socket again.
    pub(super) fn drive_multi(
        &mut self,
        id: SocketId,
        ready: &mut Vec<Completion>,
        pool: &mut BufPool,
        copied: &mut u64,
    ) -> bool {
        if self.connecting.is_some() || self.paused || !self.kind.is_stream() {
            return false;
        }
        let Some(token) = self.multi else {
            return false;
        };
        let may_drain = !self.seqpacket && !self.read_closed;
        let stream = self.kind.fd();
        let sock = SockRef::from(&stream);
        for _ in 0..MULTI_BUDGET {
            if self.drained {
                return false;
            }
            let read = match pool.take() {
                Some(held) => match sock.recv(pool.read_buf(&held)) {
                    Ok(n) if n > 0 => {
                        self.drained = may_drain && n < pool.buf_size();
                        Ok(pool.lend(held, n))
                    }
                    other => {
                        pool.put(held);
                        other.map(|_| Bytes::new())
                    }
                },
                None => {
                    let mut buf = BytesMut::with_capacity(pool.buf_size());
                    let room = buf.capacity();
                    let drained = &mut self.drained;
                    sock.recv(buf.spare_capacity_mut()).map(|n| {
                        *drained = may_drain && n > 0 && n < room;
                        // SAFETY: recv(2) initialised the first `n` bytes of the spare
                        // capacity, and `n` never exceeds the spare capacity it was given.
                        unsafe { buf.set_len(n) };
                        *copied += u64::from(n > 0);
                        buf.freeze()
                    })
                }
            };
            let (result, more) = match read {
                Ok(bytes) => {
                    let more = !bytes.is_empty();
                    (Ok(bytes), more)
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.drained = may_drain;
                    return false;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => (Err(Error::from(e)), false),
            };
            ready.push(Completion {
                token,
                event: Event::ReceivedBytes {
                    socket: id,
                    result,
                    more,
                },
            });
            if !more {
                self.multi = None;
                return false;
            }
        }
        true
    }

    /// Writes queued sends in order until the socket would block; runs queued shutdowns once
    /// every send before them finished.
    pub(super) fn drive_writes(&mut self, id: SocketId, ready: &mut Vec<Completion>) {
        if self.connecting.is_some() {
            return;
        }
        if !self.kind.is_stream() || self.write_blocked {
            return;
        }
        let stream = self.kind.fd();
        let sock = SockRef::from(&stream);
        while let Some(op) = self.writes.front_mut() {
            let result: Result<()> = match op {
                WriteOp::Shutdown { how, .. } => {
                    if matches!(how, std::net::Shutdown::Read | std::net::Shutdown::Both) {
                        // Our own end of stream: reads return 0 from now on, edge or not.
                        self.drained = false;
                        self.read_closed = true;
                    }
                    sock.shutdown(*how).map_err(Error::from)
                }
                _ if op.is_done() => Ok(()),
                _ => {
                    let (written, wanted) = if let WriteOp::Send { buf, done, .. } = op {
                        // One buffer (the usual case): a plain send, no slice list to build.
                        let rest = &buf[*done..];
                        (sock.send_with_flags(rest, libc::MSG_NOSIGNAL), rest.len())
                    } else {
                        let mut slices: Vec<IoSlice<'_>> = Vec::new();
                        op.remaining(&mut slices, MAX_IOV);
                        let wanted: usize = slices.iter().map(|s| s.len()).sum();
                        (
                            sock.send_vectored_with_flags(&slices, libc::MSG_NOSIGNAL),
                            wanted,
                        )
                    };
                    match written {
                        Ok(n) if !op.advance(n) => {
                            if n < wanted {
                                // The send buffer is full: wait for the writable edge.
                                self.write_blocked = true;
                                return;
                            }
                            continue;
                        }
                        Ok(_) => Ok(()),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            self.write_blocked = true;
                            return;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => Err(Error::from(e)),
                    }
                }
            };
            if let Some(op) = self.writes.pop_front() {
                ready.extend(op.finish(id, result));
            }
        }
    }

    /// Completes everything queued with `Cancelled`, handing buffers back.
    pub(super) fn cancel_all(
        &mut self,
        id: SocketId,
        ready: &mut Vec<Completion>,
        timers: &mut Timers,
    ) {
        if let Some(key) = self.connect_timer.take() {
            timers.remove(key);
        }
        if let Some(token) = self.multi.take() {
            ready.push(Completion {
                token,
                event: Event::ReceivedBytes {
                    socket: id,
                    result: Err(Error::Cancelled),
                    more: false,
                },
            });
        }
        if let Some(acc) = self.accept.take() {
            ready.push(Completion {
                token: acc.token,
                event: Event::Accepted {
                    listener: id,
                    result: Err(Error::Cancelled),
                    more: false,
                },
            });
        }
        if let Some(token) = self.connecting.take() {
            ready.push(Completion {
                token,
                event: Event::Connected {
                    socket: id,
                    result: Err(Error::Cancelled),
                },
            });
        }
        for req in self.recvs.drain(..) {
            if let Some(key) = req.timer {
                timers.remove(key);
            }
            ready.push(Completion {
                token: req.token,
                event: Event::Received {
                    socket: id,
                    buf: req.buf,
                    result: Err(Error::Cancelled),
                },
            });
        }
        for op in self.writes.drain(..) {
            ready.push(op.cancel(id));
        }
        for (token, buf) in self.recv_froms.drain(..) {
            ready.push(received_from(
                id,
                token,
                buf,
                None,
                false,
                Err(Error::Cancelled),
            ));
        }
        for (token, buf, to, _) in self.send_tos.drain(..) {
            ready.push(sent_to(id, token, buf, to, Err(Error::Cancelled)));
        }
    }
}
