//! The io_uring backend: native completions, multishot accept, multishot receive with a
//! provided buffer ring, zero-copy sends, linked timeouts, batched submits (one kernel entry
//! per poll), `SINGLE_ISSUER` + `DEFER_TASKRUN`, and an eventfd read for cross-thread wakes.

mod bufring;
mod op;
mod ring;
mod wake;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
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
use crate::config::ReactorConfig;
use crate::datagram::{Bind, DatagramAddr};
use crate::error::{Error, Result};
use crate::io::{self, Io};
use crate::options::{self, SockOpt};
use crate::pool::{BufPool, Held};
use crate::slab::Slab;
use crate::stats::IoStats;
use crate::sys;
use crate::write::{shutdown_how, WriteOp};

use bufring::BufRing;
use op::Op;
use ring::Ring;
use wake::EventFd;

pub(crate) use ring::probe;

/// User data of the eventfd read that wakes the ring.
const WAKE_UD: u64 = u64::MAX;
/// User data of cancel requests, whose own completions carry nothing we need.
const CANCEL_UD: u64 = u64::MAX - 1;
/// User data of linked timeouts; their completions carry nothing we need either (the linked
/// operation's own completion says `ECANCELED` when the timeout fired).
const LINK_TIMEOUT_UD: u64 = u64::MAX - 2;
/// The buffer group of the provided buffer ring.
const BGID: u16 = 0;
/// `IORING_SEND_ZC_REPORT_USAGE` (Linux 6.2): the notification says whether the kernel
/// copied after all.
const ZC_REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`: set in a notification's result when the data was copied.
const ZC_COPIED: u32 = 1 << 31;
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

/// A multishot receive on a stream socket.
struct Multi {
    token: Token,
    /// The receive in the kernel: native multishot or one emulating receive.
    op: Option<SocketId>,
    /// The caller cancelled it: its last completion says `Cancelled`.
    stopping: bool,
    /// The buffer ring ran dry (`ENOBUFS`): re-armed once buffers are back.
    starved: bool,
    /// Emulation: what the next receive reads into (chunks are split off its front).
    spare: BytesMut,
}

/// One socket and its queued (not yet submitted) operations.
struct Sock {
    fd: OwnedFd,
    listener: bool,
    /// A UDP or Unix datagram socket.
    datagram: bool,
    /// A Unix datagram socket: its sends go straight to io_uring's workers (see `send_to`).
    unix_datagram: bool,
    /// A Unix `SOCK_SEQPACKET` socket (listener or connection): receives keep message
    /// boundaries and report truncation.
    seqpacket: bool,
    accept: Option<Accept>,
    connecting: bool,
    /// Queued receives with their timeouts.
    recvs: VecDeque<(Token, BytesMut, Option<Duration>)>,
    recv_busy: bool,
    /// The multishot receive, if one is active (never together with plain receives).
    multi: Option<Multi>,
    /// Sends of this socket may use zero copy (cleared when the socket type refuses it).
    zero_copy: bool,
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
            seqpacket: false,
            accept: None,
            connecting: false,
            recvs: VecDeque::new(),
            recv_busy: false,
            multi: None,
            zero_copy: true,
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
    /// The receive pool and its ring, when multishot receives are native.
    bufs: Option<(BufPool, BufRing)>,
    /// Pool buffers on the ring (provided, not yet handed back in a completion).
    in_ring: usize,
    /// Lend a chunk only while fewer than this many buffers are lent; copy otherwise.
    lend_limit: usize,
    /// Scratch for buffers returned to the pool.
    reclaimed: Vec<Held>,
    /// Sockets whose multishot receive waits for the ring to refill.
    starved: Vec<SocketId>,
    /// Buffer size of emulated multishot receives.
    recv_size: usize,
    /// Sends of at least this many bytes use zero copy (`None`: never, or unsupported).
    zc_threshold: Option<usize>,
    /// Vectored sends may use zero copy too (`SENDMSG_ZC`, Linux 6.1).
    zc_vectored: bool,
    /// Ask zero-copy notifications whether the kernel copied (Linux 6.2).
    zc_report: bool,
    /// Zero-copy sends waiting for their notification.
    zc_pending: usize,
    stats: IoStats,
    /// An eventfd registered with the ring when another reactor hosts this one
    /// ([`Io::wait_fd`]): the kernel signals it as completions (or deferred completion
    /// work) arrive.
    notify: Option<OwnedFd>,
    /// The registered send pool's address range (`start..end`), fixed buffer 0.
    fixed: Option<(usize, usize)>,
    /// Copying sends from the pool use the fixed buffer (cleared if the kernel refuses it:
    /// plain `SEND` takes fixed buffers only on recent kernels).
    fixed_send: bool,
    /// Zero-copy sends from the pool use the fixed buffer (cleared if the kernel refuses).
    fixed_zc: bool,
    /// Descriptors of backends this reactor hosts ([`Io::watch_fd`]), each with a
    /// multishot poll armed (`WATCH_UD + index`) that only makes `poll` return.
    watched: Vec<(RawFd, bool)>,
}

/// `IORING_RECVSEND_FIXED_BUF`: the send's buffer lies in a registered (fixed) buffer.
const RECVSEND_FIXED_BUF: u16 = 1 << 2;

/// User data of the polls on watched descriptors: `WATCH_UD + index` (far above op indices
/// and below the other reserved values).
const WATCH_UD: u64 = 1 << 62;

/// How often a multishot receive starved of ring buffers looks for returned ones.
const STARVED_RECHECK: Duration = Duration::from_millis(1);

/// Retry delays for Unix datagram sends blocked by a full receiver.
const BLOCKED_BACKOFF_MIN: Duration = Duration::from_micros(100);
/// The longest such delay.
const BLOCKED_BACKOFF_MAX: Duration = Duration::from_millis(10);

impl UringReactor {
    pub(crate) fn new(config: &ReactorConfig) -> Result<Self> {
        config.validate()?;
        let (ring, defer_taskrun) = ring::build()?;
        let features = ring::features(&ring);
        // Multishot receive has no opcode to probe; it came with SEND_ZC in Linux 6.0.
        let bufs = if config.multishot_recv && features.send_zc {
            match Self::buffer_ring(&ring, config) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::debug!(error = %e, "no provided buffer ring; multishot receive emulated");
                    None
                }
            }
        } else {
            None
        };
        let count = config.recv_buffer_count;
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
                multishot_recv: bufs.is_some(),
                provided_buffers: bufs.is_some(),
                zero_copy_send: features.send_zc && config.zero_copy_threshold.is_some(),
                vectored_io: true,
                batched_submit: true,
                datagrams: true,
                unix_sockets: true,
                seqpacket: true,
                operation_timeouts: features.link_timeout,
                defer_taskrun,
                ..Capabilities::default()
            },
            cqes: Vec::with_capacity(256),
            blocked_sends: VecDeque::new(),
            blocked_retry: None,
            blocked_backoff: BLOCKED_BACKOFF_MIN,
            write_dirty: Vec::new(),
            bufs,
            in_ring: 0,
            // Keep at least a quarter of the pool (and one buffer) off loan, so consumers
            // holding chunks never starve the ring for every other connection.
            lend_limit: count - (count / 4).max(1),
            reclaimed: Vec::new(),
            starved: Vec::new(),
            recv_size: config.recv_buffer_size,
            zc_threshold: config.zero_copy_threshold.filter(|_| features.send_zc),
            zc_vectored: features.sendmsg_zc,
            zc_report: true,
            zc_pending: 0,
            stats: IoStats::default(),
            notify: None,
            watched: Vec::new(),
            fixed: None,
            fixed_send: false,
            fixed_zc: false,
        };
        if let Some((pool, ring)) = reactor.bufs.as_mut() {
            reactor.stats.recv_buffers = pool.count();
            while let Some(held) = pool.take() {
                let (addr, len, bid) = pool.provide(held);
                ring.push(addr, len, bid);
                reactor.in_ring += 1;
            }
            ring.publish();
        }
        reactor.arm_wake()?;
        Ok(reactor)
    }

    /// The receive pool and its registered ring.
    fn buffer_ring(ring: &Ring, config: &ReactorConfig) -> Result<(BufPool, BufRing)> {
        let pool = BufPool::new(config.recv_buffer_count, config.recv_buffer_size)?;
        let entries = u16::try_from(config.recv_buffer_count)
            .map_err(|_| Error::InvalidArgument("recv_buffer_count"))?;
        let ring = BufRing::new(ring, entries, BGID)?;
        Ok((pool, ring))
    }

    /// Puts a pool buffer back on the ring (published before the next kernel entry).
    fn reprovide(&mut self, held: Held) {
        if let Some((pool, ring)) = self.bufs.as_mut() {
            let (addr, len, bid) = pool.provide(held);
            ring.push(addr, len, bid);
            self.in_ring += 1;
        }
    }

    /// Before entering the kernel: buffers whose `Bytes` were dropped go back on the ring,
    /// starved multishot receives are re-armed if the ring has buffers, and the ring's tail
    /// is published. Returns true if a receive still starves (the caller then bounds its
    /// wait, as dropped `Bytes` do not wake the ring).
    fn refill(&mut self) -> bool {
        let Some((pool, _)) = self.bufs.as_mut() else {
            return false;
        };
        let mut held = std::mem::take(&mut self.reclaimed);
        pool.reclaim(&mut held);
        for h in held.drain(..) {
            self.reprovide(h);
        }
        self.reclaimed = held;
        if self.in_ring > 0 && !self.starved.is_empty() {
            // At most one receive per buffer on the ring, oldest first: re-arming more would
            // only end them again with ENOBUFS.
            let n = self.in_ring.min(self.starved.len());
            let due: Vec<SocketId> = self.starved.drain(..n).collect();
            for id in due {
                if let Some(m) = self.sockets.get_mut(id).and_then(|s| s.multi.as_mut()) {
                    m.starved = false;
                }
                self.arm_multi(id);
            }
        }
        if let Some((_, ring)) = self.bufs.as_mut() {
            ring.publish();
        }
        !self.starved.is_empty()
    }

    /// Submits a connect of `socket` to `addr` (with a linked timeout if `timeout` is set);
    /// a submission failure completes at once.
    fn start_connect(
        &mut self,
        socket: socket2::Socket,
        addr: SockAddr,
        token: Token,
        timeout: Option<Duration>,
    ) -> SocketId {
        let mut sock = Sock::new(socket.into(), false);
        sock.connecting = true;
        let fd = sock.fd.as_raw_fd();
        let id = self.sockets.insert(sock);
        let addr = Box::new(addr);
        let entry = opcode::Connect::new(Fd(fd), addr.as_ptr().cast(), addr.len()).build();
        let ts = timeout.map(|t| Box::new(Timespec::from(t)));
        let link = ts.as_deref().map(link_timeout);
        if let Err((err, _)) = self.submit_op_linked(
            id,
            Op::Connect {
                socket: id,
                token,
                _addr: addr,
                timeout,
                _ts: ts,
            },
            entry,
            link,
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
        self.push_all(std::slice::from_ref(&entry))
    }

    /// Queues SQEs together (a linked chain must not be split across submissions),
    /// submitting first if the queue lacks room.
    fn push_all(&mut self, entries: &[squeue::Entry]) -> Result<()> {
        for _ in 0..2 {
            // SAFETY: every pointer in `entries` targets memory owned by an `Op` in
            // `self.ops` (or `wake_buf`, or a `Bytes` held at the head of a write queue, or
            // the provided buffer ring) that stays put until the operation's final completion
            // is reaped; a linked timeout's timespec lives in its operation's `Op`.
            if unsafe { self.ring.submission().push_multiple(entries) }.is_ok() {
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
        self.submit_op_linked(socket, op, entry, None)
    }

    /// [`UringReactor::submit_op`] with an optional linked timeout: the operation is
    /// cancelled (`ECANCELED`) if it has not completed when the timeout fires.
    fn submit_op_linked(
        &mut self,
        socket: SocketId,
        op: Op,
        entry: squeue::Entry,
        link: Option<squeue::Entry>,
    ) -> Result<SocketId, (Error, Op)> {
        let id = self.ops.insert(op);
        let entry = entry.user_data(u64::from(id.index));
        let pushed = match link {
            None => self.push(entry),
            Some(timeout) => self.push_all(&[entry.flags(squeue::Flags::IO_LINK), timeout]),
        };
        if let Err(e) = pushed {
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

    /// Queues a receive (with an optional linked timeout) and submits it if it is next.
    fn queue_recv(
        &mut self,
        socket: SocketId,
        buf: BytesMut,
        token: Token,
        timeout: Option<Duration>,
    ) {
        match self.sockets.get_mut(socket) {
            Some(s) if !s.listener && !s.datagram && s.closing.is_none() && s.multi.is_none() => {
                s.recvs.push_back((token, buf, timeout));
                self.start_recv(socket);
            }
            other => {
                let err = match other {
                    Some(s) if s.listener || s.datagram => {
                        Error::Unsupported("recv needs a connected stream")
                    }
                    Some(s) if s.multi.is_some() => {
                        Error::Unsupported("recv on a socket with a multishot receive")
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

    /// Submits the next queued receive of `id`, if none is in flight.
    fn start_recv(&mut self, id: SocketId) {
        let Some(sock) = self.sockets.get_mut(id) else {
            return;
        };
        if sock.recv_busy || sock.paused || sock.connecting || sock.closing.is_some() {
            return;
        }
        let Some((token, mut buf, timeout)) = sock.recvs.pop_front() else {
            return;
        };
        io::ensure_spare(&mut buf);
        let spare = buf.spare_capacity_mut();
        let len = u32::try_from(spare.len()).unwrap_or(u32::MAX);
        // MSG_TRUNC makes a seqpacket receive return the message's full length, so a cut
        // message is reported (on a TCP socket it would discard data: never set it there).
        let flags = if sock.seqpacket { libc::MSG_TRUNC } else { 0 };
        let entry = opcode::Recv::new(Fd(sock.fd.as_raw_fd()), spare.as_mut_ptr().cast(), len)
            .flags(flags)
            .build();
        sock.recv_busy = true;
        let ts = timeout.map(|t| Box::new(Timespec::from(t)));
        let link = ts.as_deref().map(link_timeout);
        // Moving the `BytesMut` into the op table does not move its heap storage.
        let submitted = self.submit_op_linked(
            id,
            Op::Recv {
                socket: id,
                token,
                buf,
                timeout,
                _ts: ts,
            },
            entry,
            link,
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

    /// Submits `id`'s multishot receive if it is active and not in the kernel: natively
    /// (one submission, many completions, buffers from the ring) or, where that is not
    /// available, as one plain receive into the socket's spare buffer.
    fn arm_multi(&mut self, id: SocketId) {
        let native = self.caps.multishot_recv;
        let recv_size = self.recv_size;
        let bgid = self.bufs.as_ref().map_or(BGID, |(_, ring)| ring.bgid());
        let Some(sock) = self.sockets.get_mut(id) else {
            return;
        };
        if sock.paused || sock.connecting || sock.closing.is_some() {
            return;
        }
        let fd = Fd(sock.fd.as_raw_fd());
        let Some(multi) = sock.multi.as_mut() else {
            return;
        };
        if multi.op.is_some() || multi.stopping || multi.starved {
            return;
        }
        let token = multi.token;
        let (op, entry) = if native {
            let entry = opcode::RecvMulti::new(fd, bgid).build();
            (
                Op::RecvMulti {
                    socket: id,
                    buf: None,
                },
                entry,
            )
        } else {
            let mut buf = std::mem::take(&mut multi.spare);
            if buf.capacity() - buf.len() < recv_size.div_ceil(4) {
                buf.reserve(recv_size);
            }
            let spare = buf.spare_capacity_mut();
            let len = u32::try_from(spare.len()).unwrap_or(u32::MAX);
            let entry = opcode::Recv::new(fd, spare.as_mut_ptr().cast(), len).build();
            // Moving the `BytesMut` into the op table does not move its heap storage.
            (
                Op::RecvMulti {
                    socket: id,
                    buf: Some(buf),
                },
                entry,
            )
        };
        match self.submit_op(id, op, entry) {
            Ok(op_id) => {
                if native {
                    self.stats.multishot_arms += 1;
                }
                if let Some(m) = self.sockets.get_mut(id).and_then(|s| s.multi.as_mut()) {
                    m.op = Some(op_id);
                }
            }
            Err((err, _)) => {
                if let Some(sock) = self.sockets.get_mut(id) {
                    sock.multi = None;
                }
                self.ready.push(multi_done(id, token, Err(err)));
            }
        }
    }

    /// Handles a completion of a multishot receive (native or emulated).
    fn complete_multi(&mut self, op_id: SocketId, socket: SocketId, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        let mut data = None;
        let mut spare = None;
        if !more {
            if let Some(Op::RecvMulti { buf, .. }) = self.ops.remove(op_id) {
                if let Some(sock) = self.sockets.get_mut(socket) {
                    sock.inflight = sock.inflight.saturating_sub(1);
                }
                if let Some(mut buf) = buf {
                    if res > 0 {
                        // SAFETY: the kernel wrote `res` bytes into the spare capacity it
                        // was given, and `res` never exceeds that capacity.
                        unsafe { buf.set_len(buf.len() + res as usize) };
                        data = Some(buf.split().freeze());
                    }
                    spare = Some(buf);
                }
            }
        }
        if let Some(bid) = cqueue::buffer_select(flags) {
            self.in_ring = self.in_ring.saturating_sub(1);
            let lend_limit = self.lend_limit;
            let held = self.bufs.as_mut().and_then(|(pool, _)| {
                let held = pool.kernel_returned(bid)?;
                Some((pool.lent() < lend_limit, held))
            });
            if let Some((lend, held)) = held {
                if res > 0 && lend {
                    data = self
                        .bufs
                        .as_mut()
                        .map(|(pool, _)| pool.lend(held, res as usize));
                } else {
                    if res > 0 {
                        // Most of the pool is lent out: copy, so the ring refills at once.
                        data = self
                            .bufs
                            .as_ref()
                            .map(|(pool, _)| pool.copy(&held, res as usize));
                        self.stats.recv_copied += 1;
                    }
                    self.reprovide(held);
                }
            }
        }
        let Some(sock) = self.sockets.get_mut(socket) else {
            return;
        };
        let closing = sock.closing.is_some();
        let Some(multi) = sock.multi.as_mut() else {
            return;
        };
        let token = multi.token;
        if let Some(spare) = spare {
            multi.spare = spare;
        }
        if let Some(bytes) = data {
            self.ready.push(multi_more(socket, token, bytes));
        }
        if more {
            return;
        }
        multi.op = None;
        let last = if closing || multi.stopping {
            Some(Err(Error::Cancelled))
        } else if res > 0 {
            None // the kernel ended the multishot (or the emulating receive is done): re-arm
        } else if res == 0 {
            Some(Ok(Bytes::new()))
        } else {
            match -res {
                libc::ENOBUFS => {
                    // The ring ran dry: wait for buffers (see `refill`), nothing is lost.
                    multi.starved = true;
                    self.starved.push(socket);
                    None
                }
                // Cancelled by `pause_recv` (re-armed on resume), or transient.
                libc::ECANCELED | libc::EINTR | libc::EAGAIN => None,
                libc::EINVAL if self.caps.multishot_recv => {
                    // A kernel without IORING_RECV_MULTISHOT: emulate from now on.
                    tracing::debug!("multishot receive refused; emulating it");
                    self.caps.multishot_recv = false;
                    None
                }
                errno => Some(Err(Error::from_errno(errno))),
            }
        };
        match last {
            Some(result) => {
                sock.multi = None;
                self.ready.push(multi_done(socket, token, result));
            }
            None => self.arm_multi(socket),
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
            // Large payloads go zero copy: the kernel sends from our pages and tells us when
            // it no longer needs them (a notification completion).
            let zc = sock.zero_copy
                && self.zc_threshold.is_some_and(|t| head.remaining_len() >= t)
                && match head {
                    WriteOp::Send { .. } => true,
                    WriteOp::SendVectored { .. } => self.zc_vectored,
                    WriteOp::Shutdown { .. } => false,
                };
            let zc_flags = if self.zc_report { ZC_REPORT_USAGE } else { 0 };
            let (op, entry) = match head {
                WriteOp::Shutdown { how, .. } => (
                    Op::Write {
                        socket: id,
                        _iov: Vec::new(),
                        _msg: None,
                        zc: false,
                        fixed: false,
                        _keep: Vec::new(),
                    },
                    opcode::Shutdown::new(fd, shutdown_how(*how)).build(),
                ),
                _ if head.is_done() => {
                    if let Some(done) = sock.writes.pop_front() {
                        self.ready.extend(done.finish(id, Ok(())));
                    }
                    continue;
                }
                WriteOp::Send { buf, done, .. } => {
                    let rest = &buf[*done..];
                    let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
                    // Inside the registered send pool: the kernel finds the pages in the
                    // ring's fixed buffer 0 instead of pinning or looking them up.
                    let fixed = (if zc { self.fixed_zc } else { self.fixed_send })
                        && self.fixed.is_some_and(|(start, end)| {
                            let at = rest.as_ptr() as usize;
                            at >= start && at + len as usize <= end
                        });
                    let entry = if zc {
                        opcode::SendZc::new(fd, rest.as_ptr(), len)
                            .buf_index(fixed.then_some(0))
                            .flags(libc::MSG_NOSIGNAL)
                            .zc_flags(zc_flags)
                            .build()
                    } else {
                        // The fixed flag selects buffer index 0, the SQE's zeroed default.
                        opcode::Send::new(fd, rest.as_ptr(), len)
                            .flags(libc::MSG_NOSIGNAL)
                            .ioprio(if fixed { RECVSEND_FIXED_BUF } else { 0 })
                            .build()
                    };
                    (
                        Op::Write {
                            socket: id,
                            _iov: Vec::new(),
                            _msg: None,
                            zc,
                            fixed,
                            _keep: if zc { vec![buf.clone()] } else { Vec::new() },
                        },
                        entry,
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
                    let entry = if zc {
                        opcode::SendMsgZc::new(fd, &*msg)
                            .flags(libc::MSG_NOSIGNAL as u32)
                            .ioprio(zc_flags)
                            .build()
                    } else {
                        opcode::SendMsg::new(fd, &*msg)
                            .flags(libc::MSG_NOSIGNAL as u32)
                            .build()
                    };
                    let keep = match head {
                        WriteOp::SendVectored { bufs, .. } if zc => bufs.clone(),
                        _ => Vec::new(),
                    };
                    (
                        Op::Write {
                            socket: id,
                            _iov: iov,
                            _msg: Some(msg),
                            zc,
                            fixed: false,
                            _keep: keep,
                        },
                        entry,
                    )
                }
            };
            sock.write_busy = true;
            if zc {
                self.stats.zero_copy_sends += 1;
            }
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
            CANCEL_UD | LINK_TIMEOUT_UD => return,
            ud if (WATCH_UD..WATCH_UD + 64).contains(&ud) => {
                // A hosted backend has work: waking up was the point. A poll that ended
                // (the kernel turns multishot polls woken by io_uring or epoll wake-ups
                // into one-shot ones) is armed again.
                let i = (ud - WATCH_UD) as usize;
                if !cqueue::more(flags) {
                    if let Some(w) = self.watched.get_mut(i) {
                        w.1 = false;
                    }
                    self.arm_watch(i);
                }
                return;
            }
            _ => {}
        }
        let Some(op_id) = usize::try_from(ud).ok().and_then(|i| self.ops.id_at(i)) else {
            tracing::warn!(ud, "completion for unknown io_uring operation");
            return;
        };
        let more = cqueue::more(flags);
        if cqueue::notif(flags) {
            // A zero-copy send's notification: the kernel is done with its buffers, which
            // the op held on to; dropping it releases them.
            if let Some(Op::Write { socket, .. }) = self.ops.remove(op_id) {
                self.zc_pending = self.zc_pending.saturating_sub(1);
                if res as u32 & ZC_COPIED != 0 {
                    // The kernel copied after all (loopback, or a device without
                    // scatter-gather): zero copy only costs on this path, so the socket
                    // copies from now on.
                    self.stats.zero_copy_copied += 1;
                    if let Some(sock) = self.sockets.get_mut(socket) {
                        sock.zero_copy = false;
                    }
                }
            }
            return;
        }
        let socket = match self.ops.get(op_id) {
            Some(Op::Accept { socket }) => *socket,
            Some(
                Op::Connect { socket, .. }
                | Op::Recv { socket, .. }
                | Op::RecvMulti { socket, .. }
                | Op::Write { socket, .. }
                | Op::RecvFrom { socket, .. }
                | Op::SendTo { socket, .. },
            ) => *socket,
            None => return,
        };
        match self.ops.get(op_id) {
            Some(Op::RecvMulti { .. }) => {
                self.complete_multi(op_id, socket, res, flags);
                return self.maybe_finish_close(socket);
            }
            Some(Op::Write {
                zc: true, fixed, ..
            }) if more => {
                let fixed = *fixed;
                // A zero-copy send is done; its notification follows. The op (and with it
                // the references to the buffers) stays until then, but the socket may go on.
                self.zc_pending += 1;
                if let Some(sock) = self.sockets.get_mut(socket) {
                    sock.inflight = sock.inflight.saturating_sub(1);
                }
                self.complete_write(socket, res, true, fixed);
                return self.maybe_finish_close(socket);
            }
            _ => {}
        }
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
            Some(Op::Connect { token, timeout, .. }) => {
                let mut closing = true;
                if let Some(sock) = self.sockets.get_mut(socket) {
                    sock.connecting = false;
                    closing = sock.closing.is_some();
                }
                let result = if res >= 0 {
                    Ok(())
                } else if res == -libc::ECANCELED && timeout.is_some() && !closing {
                    // Cancelled by its linked timeout.
                    Err(Error::TimedOut)
                } else {
                    Err(Error::from_errno(-res))
                };
                self.ready.push(Completion {
                    token,
                    event: Event::Connected { socket, result },
                });
                self.start_recv(socket);
                self.arm_multi(socket);
                self.start_write(socket);
            }
            Some(Op::Recv {
                token,
                mut buf,
                timeout,
                ..
            }) => {
                let mut closing = true;
                if let Some(sock) = self.sockets.get_mut(socket) {
                    sock.recv_busy = false;
                    sock.recv_op = None;
                    closing = sock.closing.is_some();
                    let repause = res == -libc::ECANCELED && sock.paused && !closing;
                    if repause || res == -libc::EINTR || res == -libc::EAGAIN {
                        // Transient: handled here, the caller never sees it. A timeout starts
                        // over when the receive is submitted again.
                        sock.recvs.push_front((token, buf, timeout));
                        self.start_recv(socket);
                        return self.maybe_finish_close(socket);
                    }
                }
                let result = if res >= 0 {
                    let n = res as usize;
                    let room = buf.capacity() - buf.len();
                    let got = n.min(room);
                    // SAFETY: the kernel wrote `got` bytes into the spare capacity it was
                    // given (the buffer has not changed since): `n` never exceeds it, except
                    // with MSG_TRUNC on a seqpacket socket, where only what fit was written.
                    unsafe { buf.set_len(buf.len() + got) };
                    if n > room {
                        Err(Error::MessageTruncated { len: n })
                    } else {
                        Ok(n)
                    }
                } else if res == -libc::ECANCELED && timeout.is_some() && !closing {
                    // Cancelled by its linked timeout.
                    Err(Error::TimedOut)
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
            Some(Op::RecvMulti { .. }) => {} // handled above
            Some(Op::Write { zc, fixed, .. }) => self.complete_write(socket, res, zc, fixed),
        }
        self.maybe_finish_close(socket);
    }

    /// Handles the completion of the head of `socket`'s write queue (`zc`: it was a
    /// zero-copy send).
    fn complete_write(&mut self, socket: SocketId, res: i32, zc: bool, fixed: bool) {
        self.write_dirty.push(socket);
        let Some(sock) = self.sockets.get_mut(socket) else {
            return;
        };
        sock.write_busy = false;
        if fixed && res == -libc::EINVAL && sock.closing.is_none() {
            // Nothing was sent: a kernel without fixed buffers for this send opcode. Send
            // from the pool like from any memory with this opcode from now on, and send the
            // head again.
            if zc {
                self.fixed_zc = false;
            } else {
                self.fixed_send = false;
            }
            return self.start_write(socket);
        }
        if fixed && res >= 0 {
            self.stats.registered_sends += 1;
        }
        if zc && (res == -libc::EOPNOTSUPP || res == -libc::EINVAL) && sock.closing.is_none() {
            // Nothing was sent. EINVAL: first assume a kernel without usage reports (before
            // 6.2), then one refusing zero copy; EOPNOTSUPP: a socket type without zero copy
            // (older kernels refuse Unix domain sockets; 6.18 copies for them by itself).
            // Either way the head is sent again, copying if need be.
            if res == -libc::EINVAL && self.zc_report {
                self.zc_report = false;
            } else {
                sock.zero_copy = false;
            }
            return self.start_write(socket);
        }
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
                self.ready.extend(head.finish(socket, result));
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
        let seqpacket = sock.seqpacket;
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
                let mut conn = Sock::new(fd, false);
                conn.seqpacket = seqpacket;
                let new = self.sockets.insert(conn);
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

    /// Arms the multishot poll on watched descriptor `i` unless it is armed.
    fn arm_watch(&mut self, i: usize) {
        let Some(&(fd, false)) = self.watched.get(i) else {
            return;
        };
        let entry = opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(WATCH_UD + i as u64);
        match self.push(entry) {
            Ok(()) => {
                if let Some(w) = self.watched.get_mut(i) {
                    w.1 = true;
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot watch a hosted backend"),
        }
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

/// A linked timeout SQE for `ts`, which must stay put until the chain is submitted.
fn link_timeout(ts: &Timespec) -> squeue::Entry {
    opcode::LinkTimeout::new(ts)
        .build()
        .user_data(LINK_TIMEOUT_UD)
}

/// A multishot receive's completion carrying data (more follow).
fn multi_more(socket: SocketId, token: Token, bytes: Bytes) -> Completion {
    Completion {
        token,
        event: Event::ReceivedBytes {
            socket,
            result: Ok(bytes),
            more: true,
        },
    }
}

/// A multishot receive's last completion.
fn multi_done(socket: SocketId, token: Token, result: Result<Bytes>) -> Completion {
    Completion {
        token,
        event: Event::ReceivedBytes {
            socket,
            result,
            more: false,
        },
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
        Ok(self.start_connect(socket, SockAddr::from(addr), token, None))
    }

    fn connect_timeout(
        &mut self,
        addr: SocketAddr,
        opts: &[SockOpt],
        timeout: Duration,
        token: Token,
    ) -> Result<SocketId> {
        if !self.caps.operation_timeouts {
            return Err(Error::Unsupported("IORING_OP_LINK_TIMEOUT on this kernel"));
        }
        let socket = sys::tcp_socket(&addr, false)?;
        for opt in opts {
            options::set(socket.as_fd(), *opt)?;
        }
        Ok(self.start_connect(socket, SockAddr::from(addr), token, Some(timeout)))
    }

    fn recv_timeout(
        &mut self,
        socket: SocketId,
        buf: BytesMut,
        timeout: Duration,
        token: Token,
    ) -> Result<(), (Error, BytesMut)> {
        if !self.caps.operation_timeouts {
            let err = Error::Unsupported("IORING_OP_LINK_TIMEOUT on this kernel");
            return Err((err, buf));
        }
        self.queue_recv(socket, buf, token, Some(timeout));
        Ok(())
    }

    fn recv_multishot(&mut self, socket: SocketId, token: Token) -> Result<()> {
        let sock = self.sockets.get_mut(socket).ok_or(Error::InvalidSocket)?;
        if sock.closing.is_some() {
            return Err(Error::InvalidSocket);
        }
        if sock.listener || sock.datagram {
            return Err(Error::Unsupported(
                "recv_multishot needs a connected stream",
            ));
        }
        if sock.seqpacket {
            return Err(Error::Unsupported(
                "recv_multishot on a seqpacket socket: use recv, which reports truncation",
            ));
        }
        if sock.multi.is_some() || sock.recv_busy || !sock.recvs.is_empty() {
            return Err(Error::Unsupported(
                "recv_multishot on a socket with receives outstanding",
            ));
        }
        sock.multi = Some(Multi {
            token,
            op: None,
            stopping: false,
            starved: false,
            spare: BytesMut::new(),
        });
        self.arm_multi(socket);
        Ok(())
    }

    fn cancel_recv_multishot(&mut self, socket: SocketId) -> Result<()> {
        let sock = self.sockets.get_mut(socket).ok_or(Error::InvalidSocket)?;
        let multi = sock.multi.as_mut().ok_or(Error::InvalidArgument(
            "no multishot receive on this socket",
        ))?;
        if multi.stopping {
            return Ok(());
        }
        multi.stopping = true;
        match multi.op {
            // Its last completion (after any data already received) reports the cancel.
            Some(op_id) => {
                let entry = opcode::AsyncCancel::new(u64::from(op_id.index))
                    .build()
                    .user_data(CANCEL_UD);
                self.push(entry)?;
            }
            None => {
                let token = multi.token;
                sock.multi = None;
                self.ready
                    .push(multi_done(socket, token, Err(Error::Cancelled)));
            }
        }
        Ok(())
    }

    fn stats(&self) -> IoStats {
        IoStats {
            recv_buffers_lent: self.bufs.as_ref().map_or(0, |(pool, _)| pool.lent()),
            zero_copy_pending: self.zc_pending,
            ..self.stats
        }
    }

    fn pause_recv(&mut self, socket: SocketId) -> Result<()> {
        let sock = self.sockets.get_mut(socket).ok_or(Error::InvalidSocket)?;
        if sock.paused {
            return Ok(());
        }
        sock.paused = true;
        let multi_op = sock.multi.as_ref().and_then(|m| m.op);
        if let Some(op_id) = sock.recv_op.or(multi_op) {
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
        self.arm_multi(socket);
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
        Ok(self.start_connect(socket, addr, token, None))
    }

    fn listen_seqpacket(&mut self, path: &Path) -> Result<SocketId> {
        let fd = sys::unix_seqpacket_listener(path, false)?;
        let mut sock = Sock::new(fd, true);
        sock.seqpacket = true;
        Ok(self.sockets.insert(sock))
    }

    fn connect_seqpacket(&mut self, path: &Path, token: Token) -> Result<SocketId> {
        let addr = SockAddr::unix(path)?;
        let socket = sys::unix_seqpacket(false)?;
        let id = self.start_connect(socket, addr, token, None);
        if let Some(sock) = self.sockets.get_mut(id) {
            sock.seqpacket = true;
        }
        Ok(id)
    }

    fn recv(&mut self, socket: SocketId, buf: BytesMut, token: Token) {
        self.queue_recv(socket, buf, token, None)
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
        for (token, buf, _) in sock.recvs.drain(..) {
            let event = Event::Received {
                socket,
                buf,
                result: Err(Error::Cancelled),
            };
            self.ready.push(Completion { token, event });
        }
        if sock.multi.as_ref().is_some_and(|m| m.op.is_none()) {
            // Not in the kernel (paused, starved or connecting): it ends here. One in the
            // kernel ends with the cancel below.
            if let Some(multi) = sock.multi.take() {
                self.ready
                    .push(multi_done(socket, multi.token, Err(Error::Cancelled)));
            }
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
        let mut backoff = io::min_timeout(self.expire_backoffs(), self.retry_blocked());
        if self.refill() {
            // A receive waits for lent buffers to come back; dropping a `Bytes` does not
            // wake the ring, so look again soon.
            backoff = io::min_timeout(backoff, Some(STARVED_RECHECK));
        }
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

    unsafe fn register_send_region(&mut self, ptr: *const u8, len: usize) -> Result<bool> {
        let iov = libc::iovec {
            iov_base: ptr as *mut libc::c_void,
            iov_len: len,
        };
        // SAFETY: the caller keeps the memory allocated for this reactor's life; the kernel
        // pins its pages now and only ever reads them (we submit sends from it, never
        // fixed reads into it).
        match unsafe { self.ring.submitter().register_buffers(&[iov]) } {
            Ok(()) => {
                self.fixed = Some((ptr as usize, ptr as usize + len));
                self.fixed_send = true;
                self.fixed_zc = self.zc_threshold.is_some();
                self.caps.registered_buffers = true;
                Ok(true)
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot register the send pool; sends copy from it");
                Ok(false)
            }
        }
    }

    fn wait_fd(&mut self) -> Result<RawFd> {
        if let Some(fd) = &self.notify {
            return Ok(fd.as_raw_fd());
        }
        let fd = EventFd::new_nonblocking()?.into_owned();
        self.ring.submitter().register_eventfd(fd.as_raw_fd())?;
        let raw = fd.as_raw_fd();
        self.notify = Some(fd);
        Ok(raw)
    }

    fn watch_fd(&mut self, fd: RawFd) -> Result<()> {
        if self.watched.len() >= 64 {
            return Err(Error::Unsupported("watching more than 64 descriptors"));
        }
        self.watched.push((fd, false));
        self.arm_watch(self.watched.len() - 1);
        Ok(())
    }

    fn has_pending(&mut self) -> bool {
        if !self.ready.is_empty() || !self.ring.completion().is_empty() {
            return true;
        }
        // Entries not submitted yet (a hosted ring submits only when polled), or deferred
        // completion work the kernel runs at our next enter.
        let mut sq = self.ring.submission();
        sq.sync();
        !sq.is_empty() || sq.taskrun()
    }

    fn next_deadline(&self) -> Option<Duration> {
        let now = Instant::now();
        let backoff = self
            .backoff
            .iter()
            .filter_map(|&id| self.sockets.get(id)?.accept.as_ref()?.retry_at)
            .chain(self.blocked_retry)
            .min()
            .map(|at| at.saturating_duration_since(now));
        let starved = (!self.starved.is_empty()).then_some(STARVED_RECHECK);
        io::min_timeout(backoff, starved)
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
                break;
            }
            if self.enter(Some(Duration::from_millis(10))).is_err() {
                break;
            }
            for c in self.ring.completion() {
                match c.user_data() {
                    WAKE_UD => self.wake_armed = false,
                    CANCEL_UD | LINK_TIMEOUT_UD => {}
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
            // Leak rather than free memory the kernel might still write to or read from
            // (the op table's buffers, the receive pool and its ring).
            tracing::error!(
                ops = self.ops.len(),
                "io_uring operations still in flight at drop; leaking their buffers"
            );
            std::mem::forget(std::mem::replace(&mut self.ops, Slab::new()));
            std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
            std::mem::forget(self.bufs.take());
        } else if let Some((_, ring)) = self.bufs.as_mut() {
            if let Err(e) = ring.unregister(&self.ring) {
                tracing::warn!(error = %e, "cannot unregister the provided buffer ring");
                // The ring closes right after; it stops using the buffer ring then.
            }
        }
    }
}
