//! The io_uring backend: native completions, multishot accept, batched submits (one kernel
//! entry per poll), `SINGLE_ISSUER` + `DEFER_TASKRUN`, and an eventfd read for cross-thread
//! wakes.

mod op;
mod ring;
mod wake;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue};
use sinew_actors::Unpark;
use socket2::{SockAddr, SockAddrStorage};

use crate::capabilities::Capabilities;
use crate::completion::{Completion, Event, SocketId, Token};
use crate::datagram::{Bind, DatagramAddr};
use crate::error::{Error, Result};
use crate::io::{self, Io};
use crate::options::{self, SockOpt};
use crate::slab::Slab;
use crate::sys;
use crate::write::{shutdown_how, WriteOp};

use op::Op;
use ring::Ring;
use wake::EventFd;

pub(crate) use ring::probe;

/// User data of the eventfd read that wakes the ring.
const WAKE_UD: u64 = u64::MAX;
/// User data of cancel requests, whose own completions carry nothing we need.
const CANCEL_UD: u64 = u64::MAX - 1;
/// At most this many slices go into one `sendmsg`.
const MAX_IOV: usize = 64;

/// A multishot accept and its backoff state.
struct Accept {
    token: Token,
    /// The accept is submitted and has not posted its final (no `MORE`) completion.
    armed: bool,
    /// Set while backing off after `EMFILE`/`ENFILE`.
    retry_at: Option<Instant>,
    backoff: Duration,
}

/// One socket and its queued (not yet submitted) operations.
struct Sock {
    fd: OwnedFd,
    listener: bool,
    /// A UDP or Unix datagram socket.
    datagram: bool,
    /// A Unix datagram socket: its sends go straight to io_uring's workers (see `send_to`).
    unix_datagram: bool,
    accept: Option<Accept>,
    connecting: bool,
    recvs: VecDeque<(Token, BytesMut)>,
    recv_busy: bool,
    /// Reading is paused (backpressure): no receive is submitted.
    paused: bool,
    /// The head is in flight while `write_busy`.
    writes: VecDeque<WriteOp>,
    write_busy: bool,
    /// The receive in flight (its op id), for cancelling it on pause.
    recv_op: Option<SocketId>,
    /// Operations submitted to the kernel for this socket and not finished.
    inflight: u32,
    /// Set by `close`: the close's token.
    closing: Option<Token>,
}

impl Sock {
    fn new(fd: OwnedFd, listener: bool) -> Self {
        Sock {
            fd,
            listener,
            datagram: false,
            unix_datagram: false,
            accept: None,
            connecting: false,
            recvs: VecDeque::new(),
            recv_busy: false,
            paused: false,
            recv_op: None,
            writes: VecDeque::new(),
            write_busy: false,
            inflight: 0,
            closing: None,
        }
    }
}

/// The io_uring reactor of one worker.
pub(crate) struct UringReactor {
    ring: Ring,
    ops: Slab<Op>,
    sockets: Slab<Sock>,
    ready: Vec<Completion>,
    backoff: Vec<SocketId>,
    wake: Arc<EventFd>,
    /// The eventfd read's target; the kernel writes here while the read is armed.
    wake_buf: Box<u64>,
    wake_armed: bool,
    caps: Capabilities,
    cqes: Vec<(u64, i32, u32)>,
    /// Unix datagram sends that met a full receive queue, waiting for `blocked_retry`.
    blocked_sends: VecDeque<(SocketId, Token, Bytes, DatagramAddr)>,
    blocked_retry: Option<Instant>,
    blocked_backoff: Duration,
    /// Sockets whose write queue changed since the last `take_write_dirty`.
    write_dirty: Vec<SocketId>,
}

/// Retry delays for Unix datagram sends blocked by a full receiver.
const BLOCKED_BACKOFF_MIN: Duration = Duration::from_micros(100);
/// The longest such delay.
const BLOCKED_BACKOFF_MAX: Duration = Duration::from_millis(10);

impl UringReactor {
    pub(crate) fn new() -> Result<Self> {
        let (ring, defer_taskrun) = ring::build()?;
        let mut reactor = UringReactor {
            ring,
            ops: Slab::new(),
            sockets: Slab::new(),
            ready: Vec::new(),
            backoff: Vec::new(),
            wake: Arc::new(EventFd::new()?),
            wake_buf: Box::new(0),
            wake_armed: false,
            caps: Capabilities {
                native_completions: true,
                multishot_accept: true,
                zero_copy_send: false,
                vectored_io: true,
                batched_submit: true,
                datagrams: true,
                unix_sockets: true,
                defer_taskrun,
                ..Capabilities::default()
            },
            cqes: Vec::with_capacity(256),
            blocked_sends: VecDeque::new(),
            blocked_retry: None,
            blocked_backoff: BLOCKED_BACKOFF_MIN,
            write_dirty: Vec::new(),
        };
        reactor.arm_wake()?;
        Ok(reactor)
    }

    /// Submits a connect of `socket` to `addr`; a submission failure completes at once.
    fn start_connect(&mut self, socket: socket2::Socket, addr: SockAddr, token: Token) -> SocketId {
        let mut sock = Sock::new(socket.into(), false);
        sock.connecting = true;
        let fd = sock.fd.as_raw_fd();
        let id = self.sockets.insert(sock);
        let addr = Box::new(addr);
        let entry = opcode::Connect::new(Fd(fd), addr.as_ptr().cast(), addr.len()).build();
        if let Err((err, _)) = self.submit_op(
            id,
            Op::Connect {
                socket: id,
                token,
                _addr: addr,
            },
            entry,
        ) {
            if let Some(sock) = self.sockets.get_mut(id) {
                sock.connecting = false;
            }
            self.ready.push(Completion {
                token,
                event: Event::Connected {
                    socket: id,
                    result: Err(err),
                },
            });
        }
        id
    }

    /// Queues an SQE, submitting first if the queue is full.
    fn push(&mut self, entry: squeue::Entry) -> Result<()> {
        for _ in 0..2 {
            // SAFETY: every pointer in `entry` targets memory owned by an `Op` in `self.ops`
            // (or `wake_buf`, or a `Bytes` held at the head of a write queue) that stays put
            // until the operation's final completion is reaped.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
        Err(Error::Io(std::io::Error::other(
            "io_uring submission queue full",
        )))
    }

    fn arm_wake(&mut self) -> Result<()> {
        let buf: *mut u64 = &mut *self.wake_buf;
        let entry = opcode::Read::new(Fd(self.wake.as_raw_fd()), buf.cast(), 8)
            .build()
            .user_data(WAKE_UD);
        self.push(entry)?;
        self.wake_armed = true;
        Ok(())
    }

    /// Submits an operation for `socket` and accounts it as in flight. On failure the
    /// operation comes back so its buffer can be returned to the caller.
    fn submit_op(
        &mut self,
        socket: SocketId,
        op: Op,
        entry: squeue::Entry,
    ) -> Result<SocketId, (Error, Op)> {
        let id = self.ops.insert(op);
        if let Err(e) = self.push(entry.user_data(u64::from(id.index))) {
            return match self.ops.remove(id) {
                Some(op) => Err((e, op)),
                None => Ok(id),
            };
        }
        if let Some(sock) = self.sockets.get_mut(socket) {
            sock.inflight += 1;
        }
        Ok(id)
    }

    fn arm_accept(&mut self, id: SocketId) {
        let Some(sock) = self.sockets.get_mut(id) else {
            return;
        };
        let fd = sock.fd.as_raw_fd();
        let Some(acc) = sock.accept.as_mut() else {
            return;
        };
        if acc.armed || acc.retry_at.is_some() || sock.closing.is_some() {
            return;
        }
        acc.armed = true;
        let token = acc.token;
        let entry = opcode::AcceptMulti::new(Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build();
        if let Err((err, _)) = self.submit_op(id, Op::Accept { socket: id }, entry) {
            if let Some(sock) = self.sockets.get_mut(id) {
                sock.accept = None;
            }
            self.ready.push(Completion {
                token,
                event: Event::Accepted {
                    listener: id,
                    result: Err(err),
                    more: false,
                },
            });
        }
    }

    /// Submits the next queued receive of `id`, if none is in flight.
    fn start_recv(&mut self, id: SocketId) {
        let Some(sock) = self.sockets.get_mut(id) else {
            return;
        };
        if sock.recv_busy || sock.paused || sock.connecting || sock.closing.is_some() {
            return;
        }
        let Some((token, mut buf)) = sock.recvs.pop_front() else {
            return;
        };
        io::ensure_spare(&mut buf);
        let spare = buf.spare_capacity_mut();
        let len = u32::try_from(spare.len()).unwrap_or(u32::MAX);
        let entry =
            opcode::Recv::new(Fd(sock.fd.as_raw_fd()), spare.as_mut_ptr().cast(), len).build();
        sock.recv_busy = true;
        // Moving the `BytesMut` into the op table does not move its heap storage.
        let submitted = self.submit_op(
            id,
            Op::Recv {
                socket: id,
                token,
                buf,
            },
            entry,
        );
        if let Ok(op_id) = submitted {
            if let Some(sock) = self.sockets.get_mut(id) {
                sock.recv_op = Some(op_id);
            }
        }
        if let Err((err, op)) = submitted {
            if let Some(sock) = self.sockets.get_mut(id) {
                sock.recv_busy = false;
            }
            if let Op::Recv { buf, .. } = op {
                let event = Event::Received {
                    socket: id,
                    buf,
                    result: Err(err),
                };
                self.ready.push(Completion { token, event });
            }
        }
    }

    /// Submits the head of `id`'s write queue, if nothing is in flight.
    fn start_write(&mut self, id: SocketId) {
        loop {
            let Some(sock) = self.sockets.get_mut(id) else {
                return;
            };
            if sock.write_busy || sock.connecting || sock.closing.is_some() {
                return;
            }
            let fd = Fd(sock.fd.as_raw_fd());
            let Some(head) = sock.writes.front() else {
                return;
            };
            let (op, entry) = match head {
                WriteOp::Shutdown { how, .. } => (
                    Op::Write {
                        socket: id,
                        _iov: Vec::new(),
                        _msg: None,
                    },
                    opcode::Shutdown::new(fd, shutdown_how(*how)).build(),
                ),
                _ if head.is_done() => {
                    if let Some(done) = sock.writes.pop_front() {
                        self.ready.push(done.complete(id, Ok(())));
                    }
                    continue;
                }
                WriteOp::Send { buf, done, .. } => {
                    let rest = &buf[*done..];
                    let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
                    (
                        Op::Write {
                            socket: id,
                            _iov: Vec::new(),
                            _msg: None,
                        },
                        opcode::Send::new(fd, rest.as_ptr(), len)
                            .flags(libc::MSG_NOSIGNAL)
                            .build(),
                    )
                }
                WriteOp::SendVectored { .. } => {
                    let mut slices = Vec::new();
                    head.remaining(&mut slices, MAX_IOV);
                    let mut iov: Vec<libc::iovec> = slices
                        .iter()
                        .map(|s| libc::iovec {
                            iov_base: s.as_ptr() as *mut _,
                            iov_len: s.len(),
                        })
                        .collect();
                    // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
                    let mut msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
                    msg.msg_iov = iov.as_mut_ptr();
                    msg.msg_iovlen = iov.len();
                    let entry = opcode::SendMsg::new(fd, &*msg)
                        .flags(libc::MSG_NOSIGNAL as u32)
                        .build();
                    (
                        Op::Write {
                            socket: id,
                            _iov: iov,
                            _msg: Some(msg),
                        },
                        entry,
                    )
                }
            };
            sock.write_busy = true;
            if let Err((err, _)) = self.submit_op(id, op, entry) {
                if let Some(sock) = self.sockets.get_mut(id) {
                    sock.write_busy = false;
                    if let Some(head) = sock.writes.pop_front() {
                        self.ready.push(head.complete(id, Err(err)));
                    }
                }
                continue;
            }
            return;
        }
    }

    /// Releases a closing socket once nothing of it is in flight.
    fn maybe_finish_close(&mut self, id: SocketId) {
        let done =
            matches!(self.sockets.get(id), Some(s) if s.closing.is_some() && s.inflight == 0);
        if !done {
            return;
        }
        if let Some(sock) = self.sockets.remove(id) {
            if let Some(acc) = sock.accept {
                self.ready.push(Completion {
                    token: acc.token,
                    event: Event::Accepted {
                        listener: id,
                        result: Err(Error::Cancelled),
                        more: false,
                    },
                });
            }
            if let Some(token) = sock.closing {
                self.ready.push(Completion {
                    token,
                    event: Event::Closed { socket: id },
                });
            }
            // `sock.fd` drops here: the kernel holds no request on it any more.
        }
    }

    /// Handles one completion queue entry.
    fn complete(&mut self, ud: u64, res: i32, flags: u32) {
        match ud {
            WAKE_UD => {
                self.wake_armed = false;
                if let Err(e) = self.arm_wake() {
                    tracing::error!(error = %e, "cannot re-arm io_uring wake read");
                }
                return;
            }
            CANCEL_UD => return,
            _ => {}
        }
        let Some(op_id) = usize::try_from(ud).ok().and_then(|i| self.ops.id_at(i)) else {
            tracing::warn!(ud, "completion for unknown io_uring operation");
            return;
        };
        let more = cqueue::more(flags);
        let socket = match self.ops.get(op_id) {
            Some(Op::Accept { socket }) => *socket,
            Some(
                Op::Connect { socket, .. }
                | Op::Recv { socket, .. }
                | Op::Write { socket, .. }
                | Op::RecvFrom { socket, .. }
                | Op::SendTo { socket, .. },
            ) => *socket,
            None => return,
        };
        let is_accept = matches!(self.ops.get(op_id), Some(Op::Accept { .. }));
        let op = if is_accept && more {
            None
        } else {
            self.ops.remove(op_id)
        };
        if op.is_some() {
            if let Some(sock) = self.sockets.get_mut(socket) {
                sock.inflight = sock.inflight.saturating_sub(1);
            }
        }
        match op {
            None | Some(Op::Accept { .. }) => self.complete_accept(socket, res, more),
            Some(Op::Connect { token, .. }) => {
                if let Some(sock) = self.sockets.get_mut(socket) {
                    sock.connecting = false;
                }
                let result = if res >= 0 {
                    Ok(())
                } else {
                    Err(Error::from_errno(-res))
                };
                self.ready.push(Completion {
                    token,
                    event: Event::Connected { socket, result },
                });
                self.start_recv(socket);
                self.start_write(socket);
            }
            Some(Op::Recv { token, mut buf, .. }) => {
                if let Some(sock) = self.sockets.get_mut(socket) {
                    sock.recv_busy = false;
                    sock.recv_op = None;
                    let repause = res == -libc::ECANCELED && sock.paused && sock.closing.is_none();
                    if repause || res == -libc::EINTR || res == -libc::EAGAIN {
                        // Transient: handled here, the caller never sees it.
                        sock.recvs.push_front((token, buf));
                        self.start_recv(socket);
                        return self.maybe_finish_close(socket);
                    }
                }
                let result = if res >= 0 {
                    let n = res as usize;
                    // SAFETY: the kernel wrote `n` bytes into the spare capacity it was given,
                    // and `n` never exceeds that capacity.
                    unsafe { buf.set_len(buf.len() + n) };
                    Ok(n)
                } else {
                    Err(Error::from_errno(-res))
                };
                self.ready.push(Completion {
                    token,
                    event: Event::Received {
                        socket,
                        buf,
                        result,
                    },
                });
                self.start_recv(socket);
            }
            Some(Op::RecvFrom {
                token,
                mut buf,
                addr,
                msg,
                ..
            }) => {
                let closing = self.sockets.get(socket).is_none_or(|s| s.closing.is_some());
                if !closing && (res == -libc::EINTR || res == -libc::EAGAIN) {
                    // Transient: resubmitted here, the caller never sees it.
                    self.recv_from(socket, buf, token);
                    return;
                }
                let res = if closing && res < 0 {
                    -libc::ECANCELED
                } else {
                    res
                };
                let c = if res >= 0 {
                    let real = res as usize;
                    let n = real.min(buf.capacity() - buf.len());
                    // SAFETY: the kernel wrote `n` bytes (the datagram, clamped to the spare
                    // capacity it was given) into the spare capacity.
                    unsafe { buf.set_len(buf.len() + n) };
                    let from = crate::datagram::from_storage(*addr)
                        .and_then(|a| DatagramAddr::from_sockaddr(&a));
                    let truncated = real > n || msg.msg_flags & libc::MSG_TRUNC != 0;
                    crate::datagram::received_from(socket, token, buf, from, truncated, Ok(n))
                } else {
                    let err = Error::from_errno(-res);
                    crate::datagram::received_from(socket, token, buf, None, false, Err(err))
                };
                self.ready.push(c);
            }
            Some(Op::SendTo { token, buf, to, .. }) => {
                let to = *to;
                let closing = self.sockets.get(socket).is_none_or(|s| s.closing.is_some());
                let unix = self.sockets.get(socket).is_some_and(|s| s.unix_datagram);
                if !closing && unix && res == -libc::EAGAIN {
                    // The receiver's queue is full and nothing will tell us when it drains.
                    self.blocked_sends.push_back((socket, token, buf, to));
                    let now = Instant::now();
                    self.blocked_retry.get_or_insert(now + self.blocked_backoff);
                    self.blocked_backoff = (self.blocked_backoff * 2).min(BLOCKED_BACKOFF_MAX);
                    return;
                }
                if unix && res >= 0 {
                    self.blocked_backoff = BLOCKED_BACKOFF_MIN;
                }
                if !closing && (res == -libc::EINTR || res == -libc::EAGAIN) {
                    self.send_to(socket, buf, to, token);
                    return;
                }
                let res = if closing && res < 0 {
                    -libc::ECANCELED
                } else {
                    res
                };
                let result = if res >= 0 {
                    Ok(res as usize)
                } else {
                    Err(Error::from_errno(-res))
                };
                self.ready
                    .push(crate::datagram::sent_to(socket, token, buf, to, result));
            }
            Some(Op::Write { .. }) => {
                self.write_dirty.push(socket);
                let Some(sock) = self.sockets.get_mut(socket) else {
                    return;
                };
                sock.write_busy = false;
                let finished = match sock.writes.front_mut() {
                    None => None,
                    Some(_) if res == -libc::EINTR || res == -libc::EAGAIN => None,
                    Some(head) if res >= 0 => {
                        if head.advance(res as usize) {
                            Some(Ok(()))
                        } else {
                            None // partial write: the rest is submitted below
                        }
                    }
                    Some(_) => Some(Err(Error::from_errno(-res))),
                };
                if let Some(result) = finished {
                    if let Some(head) = sock.writes.pop_front() {
                        self.ready.push(head.complete(socket, result));
                    }
                }
                if let Some(sock) = self.sockets.get_mut(socket) {
                    if sock.closing.is_some() {
                        // The head ran while closing; anything behind it was cancelled.
                        for op in sock.writes.drain(..) {
                            self.ready.push(op.cancel(socket));
                        }
                    }
                }
                self.start_write(socket);
            }
        }
        self.maybe_finish_close(socket);
    }

    fn complete_accept(&mut self, listener: SocketId, res: i32, more: bool) {
        let Some(sock) = self.sockets.get_mut(listener) else {
            if res >= 0 {
                // SAFETY: a successful accept returns a fresh descriptor that nobody owns yet;
                // wrapping it closes it, as its listener is gone.
                drop(unsafe { OwnedFd::from_raw_fd(res) });
            }
            return;
        };
        let closing = sock.closing.is_some();
        let Some(acc) = sock.accept.as_mut() else {
            return;
        };
        if !more {
            acc.armed = false;
        }
        let token = acc.token;
        if res >= 0 {
            // SAFETY: as above, the kernel handed us ownership of a new descriptor.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            acc.backoff = io::BACKOFF_MIN;
            if !closing {
                let new = self.sockets.insert(Sock::new(fd, false));
                self.ready.push(Completion {
                    token,
                    event: Event::Accepted {
                        listener,
                        result: Ok(new),
                        more: true,
                    },
                });
            }
        } else {
            let err = Error::from_errno(-res);
            match err {
                Error::Cancelled if closing || acc.retry_at.is_some() => {}
                Error::TooManyOpenFiles(_) => {
                    if acc.retry_at.is_none() {
                        // Back off by timer; the connection stays in the backlog.
                        acc.retry_at = Some(Instant::now() + acc.backoff);
                        acc.backoff = (acc.backoff * 2).min(io::BACKOFF_MAX);
                        self.backoff.push(listener);
                        self.ready.push(Completion {
                            token,
                            event: Event::Accepted {
                                listener,
                                result: Err(err),
                                more: true,
                            },
                        });
                    }
                    if acc.armed {
                        let entry = opcode::AsyncCancel::new(u64::from(listener_op_ud(
                            &self.ops, listener,
                        )))
                        .build()
                        .user_data(CANCEL_UD);
                        if let Err(e) = self.push(entry) {
                            tracing::warn!(error = %e, "cannot cancel accept during backoff");
                        }
                    }
                }
                e if e.is_transient() => self.ready.push(Completion {
                    token,
                    event: Event::Accepted {
                        listener,
                        result: Err(e),
                        more: true,
                    },
                }),
                e => {
                    if !more {
                        sock.accept = None;
                    }
                    self.ready.push(Completion {
                        token,
                        event: Event::Accepted {
                            listener,
                            result: Err(e),
                            more,
                        },
                    });
                    return;
                }
            }
        }
        if !more && !closing {
            self.arm_accept(listener);
        }
    }

    /// Re-arms accepts whose backoff elapsed; returns the time to the next deadline.
    fn expire_backoffs(&mut self) -> Option<Duration> {
        let sockets = &self.sockets;
        let (due, next) = io::due_backoffs(&mut self.backoff, Instant::now(), |id| {
            sockets
                .get(id)
                .and_then(|s| s.accept.as_ref())
                .and_then(|a| a.retry_at)
        });
        for id in due {
            if let Some(acc) = self.sockets.get_mut(id).and_then(|s| s.accept.as_mut()) {
                acc.retry_at = None;
            }
            self.arm_accept(id);
        }
        next
    }

    /// Resubmits blocked Unix datagram sends once their retry time came; returns the time
    /// left until the next retry.
    fn retry_blocked(&mut self) -> Option<Duration> {
        let at = self.blocked_retry?;
        let now = Instant::now();
        if at > now {
            return Some(at - now);
        }
        self.blocked_retry = None;
        for (socket, token, buf, to) in std::mem::take(&mut self.blocked_sends) {
            self.send_to(socket, buf, to, token);
        }
        None
    }

    /// Enters the kernel once: submits everything queued and waits as asked.
    fn enter(&mut self, timeout: Option<Duration>) -> Result<()> {
        let res = match timeout {
            Some(t) if t.is_zero() => {
                // A non-blocking turn with nothing to submit and no deferred completion work
                // (IORING_SQ_TASKRUN, set because of `setup_taskrun_flag`) needs no syscall:
                // the worker polls every loop turn, so this keeps idle turns syscall-free.
                let mut sq = self.ring.submission();
                sq.sync();
                if sq.is_empty() && !sq.taskrun() {
                    return Ok(());
                }
                drop(sq);
                self.ring.submit()
            }
            Some(t) => {
                let ts = Timespec::from(t);
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn reap(&mut self) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(ud, res, flags) in &cqes {
            self.complete(ud, res, flags);
        }
        self.cqes = cqes;
    }
}

/// The op-table index of `listener`'s multishot accept.
fn listener_op_ud(ops: &Slab<Op>, listener: SocketId) -> u32 {
    ops.ids()
        .into_iter()
        .find(|&id| matches!(ops.get(id), Some(Op::Accept { socket }) if *socket == listener))
        .map_or(u32::MAX, |id| id.index)
}

impl Io for UringReactor {
    fn listen(&mut self, addr: SocketAddr, opts: &[SockOpt]) -> Result<SocketId> {
        let fd = sys::listener(addr, opts, false)?;
        Ok(self.sockets.insert(Sock::new(fd, true)))
    }

    fn accept(&mut self, listener: SocketId, token: Token) {
        let err = match self.sockets.get_mut(listener) {
            None => Some(Error::InvalidSocket),
            Some(s) if !s.listener || s.accept.is_some() || s.closing.is_some() => Some(
                Error::Unsupported("accept needs a listener without an accept in flight"),
            ),
            Some(s) => {
                s.accept = Some(Accept {
                    token,
                    armed: false,
                    retry_at: None,
                    backoff: io::BACKOFF_MIN,
                });
                None
            }
        };
        match err {
            Some(err) => self.ready.push(Completion {
                token,
                event: Event::Accepted {
                    listener,
                    result: Err(err),
                    more: false,
                },
            }),
            None => self.arm_accept(listener),
        }
    }

    fn connect(&mut self, addr: SocketAddr, opts: &[SockOpt], token: Token) -> Result<SocketId> {
        let socket = sys::tcp_socket(&addr, false)?;
        for opt in opts {
            options::set(socket.as_fd(), *opt)?;
        }
        Ok(self.start_connect(socket, SockAddr::from(addr), token))
    }

    fn pause_recv(&mut self, socket: SocketId) -> Result<()> {
        let sock = self.sockets.get_mut(socket).ok_or(Error::InvalidSocket)?;
        if sock.paused {
            return Ok(());
        }
        sock.paused = true;
        if let Some(op_id) = sock.recv_op {
            // Take the receive back from the kernel; its completion re-queues it.
            let entry = opcode::AsyncCancel::new(u64::from(op_id.index))
                .build()
                .user_data(CANCEL_UD);
            self.push(entry)?;
        }
        Ok(())
    }

    fn resume_recv(&mut self, socket: SocketId) -> Result<()> {
        let sock = self.sockets.get_mut(socket).ok_or(Error::InvalidSocket)?;
        sock.paused = false;
        self.start_recv(socket);
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
        let fd = sys::datagram(&bind, false)?;
        let mut sock = Sock::new(fd, false);
        sock.datagram = true;
        sock.unix_datagram = matches!(bind, Bind::Unix(_));
        Ok(self.sockets.insert(sock))
    }

    fn recv_from(&mut self, socket: SocketId, mut buf: BytesMut, token: Token) {
        let fd = match self.sockets.get(socket) {
            Some(s) if s.datagram && s.closing.is_none() => s.fd.as_raw_fd(),
            other => {
                let err = match other {
                    Some(s) if !s.datagram => Error::Unsupported("recv_from on a stream socket"),
                    _ => Error::InvalidSocket,
                };
                let c = crate::datagram::received_from(socket, token, buf, None, false, Err(err));
                return self.ready.push(c);
            }
        };
        io::ensure_spare(&mut buf);
        let spare = buf.spare_capacity_mut();
        let mut iov = Box::new(libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: spare.len(),
        });
        let mut addr = Box::new(SockAddrStorage::zeroed());
        // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
        let mut msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msg.msg_name = (&mut *addr as *mut SockAddrStorage).cast();
        msg.msg_namelen = addr.size_of();
        msg.msg_iov = &mut *iov;
        msg.msg_iovlen = 1;
        // MSG_TRUNC: the result is the datagram's real length, so truncation is visible.
        let entry = opcode::RecvMsg::new(Fd(fd), &mut *msg)
            .flags(libc::MSG_TRUNC as u32)
            .build();
        // The boxes and the buffer's heap storage do not move when the op is stored.
        let op = Op::RecvFrom {
            socket,
            token,
            buf,
            addr,
            msg,
            _iov: iov,
        };
        if let Err((err, Op::RecvFrom { token, buf, .. })) = self.submit_op(socket, op, entry) {
            let c = crate::datagram::received_from(socket, token, buf, None, false, Err(err));
            self.ready.push(c);
        }
    }

    fn send_to(&mut self, socket: SocketId, buf: Bytes, to: DatagramAddr, token: Token) {
        let (fd, unix) = match self.sockets.get(socket) {
            Some(s) if s.datagram && s.closing.is_none() => (s.fd.as_raw_fd(), s.unix_datagram),
            other => {
                let err = match other {
                    Some(s) if !s.datagram => Error::Unsupported("send_to on a stream socket"),
                    _ => Error::InvalidSocket,
                };
                return self
                    .ready
                    .push(crate::datagram::sent_to(socket, token, buf, to, Err(err)));
            }
        };
        let addr = match to.to_sockaddr() {
            Ok(a) => Box::new(a),
            Err(err) => {
                return self
                    .ready
                    .push(crate::datagram::sent_to(socket, token, buf, to, Err(err)))
            }
        };
        let mut iov = Box::new(libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        });
        // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
        let mut msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msg.msg_name = addr.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = addr.len();
        msg.msg_iov = &mut *iov;
        msg.msg_iovlen = 1;
        // A Unix datagram send into a full receive queue fails with EAGAIN only after
        // consuming its data, so io_uring's own poll-and-retry would send an empty datagram.
        // Such sends are tried once (MSG_DONTWAIT) and retried on a backoff timer instead.
        let flags = if unix { libc::MSG_DONTWAIT as u32 } else { 0 };
        let entry = opcode::SendMsg::new(Fd(fd), &*msg).flags(flags).build();
        let op = Op::SendTo {
            socket,
            token,
            buf,
            to: Box::new(to),
            _addr: addr,
            _msg: msg,
            _iov: iov,
        };
        if let Err((err, Op::SendTo { token, buf, to, .. })) = self.submit_op(socket, op, entry) {
            self.ready
                .push(crate::datagram::sent_to(socket, token, buf, *to, Err(err)));
        }
    }

    fn listen_unix(&mut self, path: &Path) -> Result<SocketId> {
        let fd = sys::unix_listener(path, false)?;
        Ok(self.sockets.insert(Sock::new(fd, true)))
    }

    fn connect_unix(&mut self, path: &Path, token: Token) -> Result<SocketId> {
        let addr = SockAddr::unix(path)?;
        let socket = sys::unix_stream(false)?;
        Ok(self.start_connect(socket, addr, token))
    }

    fn recv(&mut self, socket: SocketId, buf: BytesMut, token: Token) {
        match self.sockets.get_mut(socket) {
            Some(s) if !s.listener && !s.datagram && s.closing.is_none() => {
                s.recvs.push_back((token, buf));
                self.start_recv(socket);
            }
            other => {
                let err = match other {
                    Some(s) if s.listener || s.datagram => {
                        Error::Unsupported("recv needs a connected stream")
                    }
                    _ => Error::InvalidSocket,
                };
                self.ready.push(Completion {
                    token,
                    event: Event::Received {
                        socket,
                        buf,
                        result: Err(err),
                    },
                });
            }
        }
    }

    fn write(&mut self, socket: SocketId, op: WriteOp) {
        match self.sockets.get_mut(socket) {
            Some(s) if !s.listener && !s.datagram && s.closing.is_none() => {
                s.writes.push_back(op);
                self.write_dirty.push(socket);
                self.start_write(socket);
            }
            other => {
                let err = match other {
                    Some(s) if s.listener || s.datagram => {
                        Error::Unsupported("send needs a connected stream")
                    }
                    _ => Error::InvalidSocket,
                };
                self.ready.push(op.complete(socket, Err(err)));
            }
        }
    }

    fn close(&mut self, socket: SocketId, token: Token) {
        let Some(sock) = self.sockets.get_mut(socket) else {
            self.ready.push(Completion {
                token,
                event: Event::Closed { socket },
            });
            return;
        };
        if sock.closing.is_some() {
            self.ready.push(Completion {
                token,
                event: Event::Closed { socket },
            });
            return;
        }
        sock.closing = Some(token);
        let (blocked, others): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.blocked_sends)
            .into_iter()
            .partition(|(s, ..)| *s == socket);
        self.blocked_sends = others;
        for (_, token, buf, to) in blocked {
            self.ready.push(crate::datagram::sent_to(
                socket,
                token,
                buf,
                to,
                Err(Error::Cancelled),
            ));
        }
        let Some(sock) = self.sockets.get_mut(socket) else {
            return;
        };
        for (token, buf) in sock.recvs.drain(..) {
            let event = Event::Received {
                socket,
                buf,
                result: Err(Error::Cancelled),
            };
            self.ready.push(Completion { token, event });
        }
        let keep = usize::from(sock.write_busy);
        for op in sock.writes.drain(keep..) {
            self.ready.push(op.cancel(socket));
        }
        if sock.inflight > 0 {
            let fd = sock.fd.as_raw_fd();
            let entry = opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(fd)).all())
                .build()
                .user_data(CANCEL_UD);
            if let Err(e) = self.push(entry) {
                tracing::error!(error = %e, "cannot cancel operations of a closing socket");
            }
        }
        self.maybe_finish_close(socket);
    }

    fn fd(&self, socket: SocketId) -> Option<BorrowedFd<'_>> {
        self.sockets.get(socket).map(|s| s.fd.as_fd())
    }

    fn poll(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> Result<()> {
        let backoff = io::min_timeout(self.expire_backoffs(), self.retry_blocked());
        let pending = !self.ready.is_empty() || !self.ring.completion().is_empty();
        let timeout = if pending {
            Some(Duration::ZERO)
        } else {
            io::min_timeout(timeout, backoff)
        };
        self.enter(timeout)?;
        self.reap();
        self.expire_backoffs();
        out.append(&mut self.ready);
        Ok(())
    }

    fn unparker(&self) -> Arc<dyn Unpark> {
        self.wake.clone()
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn socket_count(&self) -> usize {
        self.sockets.len()
    }
}

impl Drop for UringReactor {
    fn drop(&mut self) {
        // The kernel may still write into buffers we own: cancel everything and wait until
        // every operation has completed before those buffers are freed.
        let entry = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(CANCEL_UD);
        if self.push(entry).is_err() {
            tracing::warn!("cannot submit cancel-all while dropping the ring");
        }
        for _ in 0..100 {
            if self.ops.len() == 0 && !self.wake_armed {
                return;
            }
            if self.enter(Some(Duration::from_millis(10))).is_err() {
                break;
            }
            for c in self.ring.completion() {
                match c.user_data() {
                    WAKE_UD => self.wake_armed = false,
                    CANCEL_UD => {}
                    ud => {
                        if !cqueue::more(c.flags()) {
                            if let Some(id) =
                                usize::try_from(ud).ok().and_then(|i| self.ops.id_at(i))
                            {
                                self.ops.remove(id);
                            }
                        }
                    }
                }
            }
        }
        if self.ops.len() > 0 || self.wake_armed {
            // Leak rather than free memory the kernel might still write to.
            tracing::error!(
                ops = self.ops.len(),
                "io_uring operations still in flight at drop; leaking their buffers"
            );
            std::mem::forget(std::mem::replace(&mut self.ops, Slab::new()));
            std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
        }
    }
}
