//! Tokens, socket ids and the completions a reactor hands back.

use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::datagram::DatagramAddr;
use crate::error::Result;

/// The caller's tag for an operation, returned unchanged in its [`Completion`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub u64);

/// A socket owned by a [`Reactor`](crate::Reactor). Ids carry a generation, so a stale id of a
/// closed socket never reaches a newer socket that reused its slot.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl SocketId {
    /// The id as one number (slot index in the high half, generation in the low half): a
    /// connection id for logs and metrics. Unique among this reactor's sockets for as long as
    /// a slot's generation does not wrap (2^32 reuses of one slot).
    pub fn as_u64(self) -> u64 {
        (u64::from(self.index) << 32) | u64::from(self.generation)
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}v{}", self.index, self.generation)
    }
}

impl fmt::Debug for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SocketId({}v{})", self.index, self.generation)
    }
}

/// A finished operation: the caller's token and what happened, including any owned buffer.
#[derive(Debug)]
pub struct Completion {
    /// The token the operation was submitted with.
    pub token: Token,
    /// The outcome.
    pub event: Event,
}

/// The outcome of one operation. Every variant that took a buffer gives it back, on success
/// and on error alike, so cancellation never loses a buffer.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// One result of a multishot accept. `more` is false on the last completion of this accept
    /// (its listener was closed); transient errors such as `EMFILE` keep `more` true because
    /// the backend backs off and retries by itself.
    Accepted {
        /// The listening socket.
        listener: SocketId,
        /// The new connection, or why this attempt failed.
        result: Result<SocketId>,
        /// Whether more completions will follow for this accept.
        more: bool,
    },
    /// A connect finished.
    Connected {
        /// The socket returned by [`Reactor::connect`](crate::Reactor::connect).
        socket: SocketId,
        /// Whether the connection is established.
        result: Result<()>,
    },
    /// A receive finished. On `Ok(n)` the buffer grew by `n` bytes; `Ok(0)` means the peer
    /// closed its sending side (end of stream).
    Received {
        /// The socket.
        socket: SocketId,
        /// The buffer that was submitted, with the received bytes appended.
        buf: BytesMut,
        /// Bytes received.
        result: Result<usize>,
    },
    /// One result of a multishot receive ([`Reactor::recv_multishot`]). `Ok(bytes)` with data
    /// is the next piece of the stream, in order; `Ok` of an empty `Bytes` means the peer
    /// closed its sending side (end of stream). `more` is false on the last completion of this
    /// receive: end of stream, an error, or [`Error::Cancelled`](crate::Error::Cancelled) after
    /// [`Reactor::cancel_recv_multishot`] or [`Reactor::close`]; exactly one completion has
    /// `more == false`.
    ///
    /// The `Bytes` may be a buffer lent from the reactor's receive pool (on io_uring, a slot
    /// of the provided buffer ring): dropping it returns the slot, so keep it only as long as
    /// needed: slice it for zero-copy use, or copy what must live long into your own buffer
    /// (`BytesMut::extend_from_slice`) and drop it. See [`Reactor::recv_multishot`].
    ///
    /// [`Reactor::recv_multishot`]: crate::Reactor::recv_multishot
    /// [`Reactor::cancel_recv_multishot`]: crate::Reactor::cancel_recv_multishot
    /// [`Reactor::close`]: crate::Reactor::close
    ReceivedBytes {
        /// The socket.
        socket: SocketId,
        /// The next bytes of the stream (empty at end of stream), or why the receive ended.
        result: Result<Bytes>,
        /// Whether more completions will follow for this receive.
        more: bool,
    },
    /// A send finished. On `Ok(n)`, `n` is the whole buffer: partial writes are continued
    /// inside the backend. After a zero-copy send the reactor may still hold a reference to
    /// the buffer until the kernel's notification (see
    /// [`Reactor::send`](crate::Reactor::send)).
    Sent {
        /// The socket.
        socket: SocketId,
        /// The buffer that was submitted.
        buf: Bytes,
        /// Bytes sent.
        result: Result<usize>,
    },
    /// A vectored send finished; like [`Event::Sent`] for all buffers together.
    SentVectored {
        /// The socket.
        socket: SocketId,
        /// The buffers that were submitted.
        bufs: Vec<Bytes>,
        /// Bytes sent in total.
        result: Result<usize>,
    },
    /// A datagram arrived (UDP or Unix datagram). On `Ok(n)` the buffer grew by `n` bytes, the
    /// datagram's length or, if it did not fit in the spare capacity, what fit (`truncated`).
    ReceivedFrom {
        /// The socket.
        socket: SocketId,
        /// The buffer that was submitted, with the datagram appended.
        buf: BytesMut,
        /// The sender (`None` on error).
        from: Option<DatagramAddr>,
        /// The datagram was longer than the buffer's spare capacity; the rest is lost.
        truncated: bool,
        /// Bytes received.
        result: Result<usize>,
    },
    /// A datagram was sent whole (datagrams are never partly sent).
    SentTo {
        /// The socket.
        socket: SocketId,
        /// The buffer that was submitted.
        buf: Bytes,
        /// The destination.
        to: DatagramAddr,
        /// Bytes sent.
        result: Result<usize>,
    },
    /// The bytes queued for sending on a socket crossed a watermark set with
    /// [`Reactor::set_write_watermarks`](crate::Reactor::set_write_watermarks): `high` is true
    /// when they rose to the high watermark (stop producing), false when they fell back to the
    /// low one (produce again). Reported once per crossing, from `poll`.
    WriteWatermark {
        /// The socket.
        socket: SocketId,
        /// Rose to the high watermark (true) or fell to the low one (false).
        high: bool,
        /// Bytes queued when the crossing was seen.
        queued: usize,
    },
    /// A shutdown finished (ordered after every send submitted before it).
    Shutdown {
        /// The socket.
        socket: SocketId,
        /// Whether the shutdown succeeded.
        result: Result<()>,
    },
    /// The socket is closed: every operation it had in flight has completed (most with
    /// [`Error::Cancelled`](crate::Error::Cancelled)) and its descriptor is released.
    Closed {
        /// The socket; its id is now stale.
        socket: SocketId,
    },
}
