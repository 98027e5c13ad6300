//! Typed transport errors, mapped from errno and classified transient vs fatal.

use std::io;

use crate::backend::Backend;

/// A transport error.
///
/// `EAGAIN`/`EWOULDBLOCK` and `EINTR` never surface here: backends retry them internally.
/// Everything else is classified by [`Error::is_transient`]: a transient error means "the same
/// operation may succeed later" (the backend already backs off where that matters, e.g. accept
/// under `EMFILE`), a fatal one means the connection (or the operation's object) is done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer reset the connection (`ECONNRESET`). Fatal for the connection.
    #[error("connection reset by peer")]
    ConnectionReset,
    /// Writing to a connection the peer has closed (`EPIPE`). Fatal for the connection.
    #[error("broken pipe: the peer closed the connection")]
    BrokenPipe,
    /// Nobody listens at the address (`ECONNREFUSED`). Fatal for the connection attempt.
    #[error("connection refused")]
    ConnectionRefused,
    /// A connection was aborted before it was accepted (`ECONNABORTED`). Transient.
    #[error("connection aborted before accept")]
    ConnectionAborted,
    /// The connection or an operation timed out: the kernel gave up on the connection
    /// (`ETIMEDOUT`), or an operation's own deadline passed
    /// ([`Reactor::recv_timeout`](crate::Reactor::recv_timeout),
    /// [`Reactor::connect_timeout`](crate::Reactor::connect_timeout): io_uring's linked
    /// timeouts, `ETIME`, or the epoll backend's timers). Not transient: the operation is over.
    /// After a receive deadline the connection itself is intact and may be read again; after
    /// a connect deadline the socket is unusable and should be closed.
    #[error("timed out")]
    TimedOut,
    /// The operation was cancelled, typically because its socket was closed; any owned buffer
    /// comes back with the completion.
    #[error("operation cancelled")]
    Cancelled,
    /// The process (`EMFILE`) or system (`ENFILE`) is out of file descriptors. Transient: an
    /// accept backs off and retries on its own.
    #[error("too many open files ({0})")]
    TooManyOpenFiles(&'static str),
    /// A message (on a [`ConnectionKind::SeqPacket`](crate::ConnectionKind::SeqPacket)
    /// socket) was longer than the receive buffer's spare capacity: the buffer holds its
    /// first part, the kernel dropped the rest. Not transient: receive with a larger buffer.
    #[error("message of {len} bytes truncated to the receive buffer")]
    MessageTruncated {
        /// The message's full length.
        len: usize,
    },
    /// The local address is already in use (`EADDRINUSE`).
    #[error("address already in use")]
    AddrInUse,
    /// The socket id is unknown, already closed, or closing.
    #[error("unknown, closed or closing socket")]
    InvalidSocket,
    /// The operation does not apply to this socket (e.g. accept on a connected stream).
    #[error("operation not supported on this socket: {0}")]
    Unsupported(&'static str),
    /// An argument is out of range (e.g. a low watermark above the high one).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The requested backend cannot run here. Never silently replaced by another backend.
    #[error("transport backend `{backend}` is unavailable: {reason}")]
    Unavailable {
        /// The backend that was asked for.
        backend: Backend,
        /// Why it cannot be used.
        reason: String,
    },
    /// `SINEW_TRANSPORT` (or a parsed name) is not a known backend.
    #[error("unknown transport backend {0:?}: expected `auto`, `uring`, `mio` or `sim`")]
    UnknownBackend(String),
    /// Any other operating-system error.
    #[error("I/O error: {0}")]
    Io(io::Error),
}

impl Error {
    /// Maps a positive errno value to a typed error.
    pub fn from_errno(errno: i32) -> Error {
        match errno {
            libc::ECONNRESET => Error::ConnectionReset,
            libc::EPIPE => Error::BrokenPipe,
            libc::ECONNREFUSED => Error::ConnectionRefused,
            libc::ECONNABORTED => Error::ConnectionAborted,
            libc::ETIMEDOUT | libc::ETIME => Error::TimedOut,
            libc::ECANCELED => Error::Cancelled,
            libc::EMFILE => Error::TooManyOpenFiles("EMFILE"),
            libc::ENFILE => Error::TooManyOpenFiles("ENFILE"),
            libc::EADDRINUSE => Error::AddrInUse,
            other => Error::Io(io::Error::from_raw_os_error(other)),
        }
    }

    /// True if retrying the same operation later may succeed (the connection is not broken).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::TooManyOpenFiles(_) | Error::ConnectionAborted => true,
            Error::Io(e) => {
                matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) || matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::ENOMEM))
            }
            _ => false,
        }
    }

    /// True if the error ends the connection or operation for good: the opposite of
    /// [`Error::is_transient`].
    pub fn is_fatal(&self) -> bool {
        !self.is_transient()
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        match e.raw_os_error() {
            Some(errno) => Error::from_errno(errno),
            None => Error::Io(e),
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping_and_classification() {
        assert!(matches!(
            Error::from_errno(libc::ECONNRESET),
            Error::ConnectionReset
        ));
        assert!(matches!(Error::from_errno(libc::EPIPE), Error::BrokenPipe));
        assert!(Error::from_errno(libc::ECONNRESET).is_fatal());
        assert!(Error::from_errno(libc::EPIPE).is_fatal());
        assert!(Error::from_errno(libc::EMFILE).is_transient());
        assert!(Error::from_errno(libc::ENFILE).is_transient());
        assert!(Error::from_errno(libc::ECONNABORTED).is_transient());
        assert!(matches!(
            Error::from_errno(libc::ECANCELED),
            Error::Cancelled
        ));
        assert!(matches!(Error::from_errno(libc::ETIME), Error::TimedOut));
        assert!(matches!(
            Error::from_errno(libc::ETIMEDOUT),
            Error::TimedOut
        ));
        let other = Error::from_errno(libc::EACCES);
        assert!(matches!(other, Error::Io(ref e) if e.raw_os_error() == Some(libc::EACCES)));
        let from_io: Error = io::Error::from_raw_os_error(libc::ECONNREFUSED).into();
        assert!(matches!(from_io, Error::ConnectionRefused));
    }
}
