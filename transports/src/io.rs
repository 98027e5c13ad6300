//! The internal interface each backend implements behind [`Reactor`](crate::Reactor).

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sinew_actors::Unpark;
use socket2::SockRef;

use crate::capabilities::{Capabilities, ConnectionKind};
use crate::completion::{Completion, SocketId, Token};
use crate::datagram::{Bind, DatagramAddr};
use crate::error::{Error, Result};
use crate::options::{self, SockOpt, SockOptName};
use crate::stats::IoStats;
use crate::write::WriteOp;

/// One backend. Submissions never block and never lose a buffer: problems found at submit
/// time come back as completions, like everything else.
pub(crate) trait Io {
    fn listen(&mut self, addr: SocketAddr, opts: &[SockOpt]) -> Result<SocketId>;
    fn accept(&mut self, listener: SocketId, token: Token);
    fn connect(&mut self, addr: SocketAddr, opts: &[SockOpt], token: Token) -> Result<SocketId>;
    fn recv(&mut self, socket: SocketId, buf: BytesMut, token: Token);

    /// Starts connecting like [`Io::connect`], failing the connect with
    /// [`Error::TimedOut`] if it has not completed within `timeout`.
    fn connect_timeout(
        &mut self,
        _addr: SocketAddr,
        _opts: &[SockOpt],
        _timeout: Duration,
        _token: Token,
    ) -> Result<SocketId> {
        Err(Error::Unsupported("operation timeouts on this backend"))
    }

    /// Receives like [`Io::recv`], completing with [`Error::TimedOut`] if no data came
    /// within `timeout` of the receive becoming the socket's active one. An error returns
    /// the buffer; the caller completes the receive with it.
    fn recv_timeout(
        &mut self,
        _socket: SocketId,
        buf: BytesMut,
        _timeout: Duration,
        _token: Token,
    ) -> Result<(), (Error, BytesMut)> {
        Err((
            Error::Unsupported("operation timeouts on this backend"),
            buf,
        ))
    }

    /// Starts a multishot receive. An error means it never started; the caller reports it
    /// as the receive's one and last completion.
    fn recv_multishot(&mut self, _socket: SocketId, _token: Token) -> Result<()> {
        Err(Error::Unsupported("multishot receive on this backend"))
    }

    /// Ends `socket`'s multishot receive; its last completion says `Cancelled`.
    fn cancel_recv_multishot(&mut self, _socket: SocketId) -> Result<()> {
        Err(Error::Unsupported("multishot receive on this backend"))
    }

    /// The backend's counters.
    fn stats(&self) -> IoStats {
        IoStats::default()
    }

    /// Stops submitting receives on `socket` (queued ones wait; one already in the kernel is
    /// cancelled and re-queued, or completes if data beat the cancel).
    fn pause_recv(&mut self, socket: SocketId) -> Result<()>;

    /// Undoes [`Io::pause_recv`] and submits the queued receives.
    fn resume_recv(&mut self, socket: SocketId) -> Result<()>;

    /// Appends the sockets whose write queue changed since the last call (duplicates allowed).
    fn take_write_dirty(&mut self, out: &mut Vec<SocketId>);

    /// Bytes accepted by sends on `socket` and not yet handed to the kernel (the network, for
    /// the simulated backend).
    fn send_queued(&self, socket: SocketId) -> Result<usize>;

    /// A bound datagram socket (UDP or Unix).
    fn bind_datagram(&mut self, _bind: Bind<'_>) -> Result<SocketId> {
        Err(Error::Unsupported("datagram sockets on this backend"))
    }

    /// Sends one datagram to `to`.
    fn send_to(&mut self, socket: SocketId, buf: Bytes, to: DatagramAddr, token: Token);

    /// Receives one datagram into `buf`'s spare capacity.
    fn recv_from(&mut self, socket: SocketId, buf: BytesMut, token: Token);

    /// A Unix domain stream listener bound to `path`.
    fn listen_unix(&mut self, _path: &Path) -> Result<SocketId> {
        Err(Error::Unsupported("Unix domain sockets on this backend"))
    }

    /// Starts connecting a Unix domain stream socket to `path`.
    fn connect_unix(&mut self, _path: &Path, _token: Token) -> Result<SocketId> {
        Err(Error::Unsupported("Unix domain sockets on this backend"))
    }

    /// A Unix domain `SOCK_SEQPACKET` listener bound to `path`.
    fn listen_seqpacket(&mut self, _path: &Path) -> Result<SocketId> {
        Err(Error::Unsupported("seqpacket sockets on this backend"))
    }

    /// Starts connecting a Unix domain `SOCK_SEQPACKET` socket to `path`.
    fn connect_seqpacket(&mut self, _path: &Path, _token: Token) -> Result<SocketId> {
        Err(Error::Unsupported("seqpacket sockets on this backend"))
    }

    /// The socket's kind, from its descriptor's `SO_TYPE`.
    fn kind(&self, socket: SocketId) -> Option<ConnectionKind> {
        let ty = SockRef::from(&self.fd(socket)?).r#type().ok()?;
        if ty == socket2::Type::STREAM {
            Some(ConnectionKind::Stream)
        } else if ty == socket2::Type::DGRAM {
            Some(ConnectionKind::Datagram)
        } else if ty == socket2::Type::SEQPACKET {
            Some(ConnectionKind::SeqPacket)
        } else {
            None
        }
    }
    fn write(&mut self, socket: SocketId, op: WriteOp);
    fn close(&mut self, socket: SocketId, token: Token);
    fn fd(&self, socket: SocketId) -> Option<BorrowedFd<'_>>;

    /// The descriptor for raw socket options.
    fn raw_fd(&self, socket: SocketId) -> Result<BorrowedFd<'_>> {
        self.fd(socket).ok_or(Error::InvalidSocket)
    }

    fn local_addr(&self, socket: SocketId) -> Result<SocketAddr> {
        SockRef::from(&self.raw_fd(socket)?)
            .local_addr()?
            .as_socket()
            .ok_or(Error::Unsupported("not an IP socket"))
    }

    fn peer_addr(&self, socket: SocketId) -> Result<SocketAddr> {
        SockRef::from(&self.raw_fd(socket)?)
            .peer_addr()?
            .as_socket()
            .ok_or(Error::Unsupported("not an IP socket"))
    }

    fn set_option(&self, socket: SocketId, opt: SockOpt) -> Result<()> {
        options::set(self.raw_fd(socket)?, opt)
    }

    fn option(&self, socket: SocketId, name: SockOptName) -> Result<SockOpt> {
        options::get(self.raw_fd(socket)?, name)
    }
    fn poll(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> Result<()>;

    /// A descriptor that turns readable when this backend has something for `poll`, so a
    /// reactor of another backend can host this one ([`Io::watch_fd`]). Called once.
    fn wait_fd(&mut self) -> Result<RawFd> {
        Err(Error::Unsupported(
            "hosting this backend in another reactor",
        ))
    }

    /// Makes `poll` return when `fd` (a hosted backend's [`Io::wait_fd`]) turns readable.
    fn watch_fd(&mut self, _fd: RawFd) -> Result<()> {
        Err(Error::Unsupported(
            "hosting another backend in this reactor",
        ))
    }

    /// True if `poll` has something to hand out at once that its [`Io::wait_fd`] will not
    /// announce (completions queued at submit time, unread readiness).
    fn has_pending(&mut self) -> bool {
        false
    }

    /// Registers `len` bytes at `ptr` (the registered send pool) with the kernel, so sends
    /// from inside it can use them as a fixed buffer. Returns whether it did.
    ///
    /// # Safety
    ///
    /// The memory must stay allocated for as long as the backend lives, and sends from it
    /// must keep their `Bytes` until they complete (every backend does).
    unsafe fn register_send_region(&mut self, _ptr: *const u8, _len: usize) -> Result<bool> {
        Ok(false)
    }

    /// Time until the backend's next own timer (receive deadlines, accept backoff), which
    /// a hosting reactor must not sleep past: only the backend's kernel events reach
    /// [`Io::wait_fd`].
    fn next_deadline(&self) -> Option<Duration> {
        None
    }
    fn unparker(&self) -> Arc<dyn Unpark>;
    fn capabilities(&self) -> Capabilities;
    fn socket_count(&self) -> usize;
}

/// How much a receive reserves when the caller's buffer has no spare capacity.
pub(crate) const DEFAULT_RECV: usize = 16 * 1024;

/// Accept backoff after `EMFILE`/`ENFILE`: starts here and doubles up to [`BACKOFF_MAX`].
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(5);
/// The longest accept backoff.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Makes sure `buf` has room to receive into.
pub(crate) fn ensure_spare(buf: &mut BytesMut) {
    if buf.capacity() == buf.len() {
        buf.reserve(DEFAULT_RECV);
    }
}

/// Splits the listeners whose accept backoff (after `EMFILE`/`ENFILE`) has elapsed at `now`
/// from those still waiting. `retry_at` reads a listener's deadline; one without a deadline
/// (closed, or no longer backing off) leaves the list. Returns the due listeners and the time
/// to the next deadline; each backend re-arms the due accepts its own way. Backends call it
/// only with a listener backing off: their `expire_backoffs` runs on every poll and skips an
/// empty list before any call (or clock read).
pub(crate) fn due_backoffs(
    backoff: &mut Vec<SocketId>,
    retry_at: impl Fn(SocketId) -> Option<Instant>,
) -> (Vec<SocketId>, Option<Duration>) {
    let now = Instant::now();
    let mut next: Option<Duration> = None;
    let mut due = Vec::new();
    backoff.retain(|&id| {
        let Some(at) = retry_at(id) else {
            return false;
        };
        if at <= now {
            due.push(id);
            false
        } else {
            next = min_timeout(next, Some(at - now));
            true
        }
    });
    (due, next)
}

/// The earlier of two optional deadlines expressed as timeouts.
pub(crate) fn min_timeout(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
