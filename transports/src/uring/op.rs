//! What the kernel is working on: one entry per submitted operation, owning everything the
//! kernel points into (buffers, iovecs, addresses) until its final completion arrives.

use bytes::BytesMut;
use socket2::SockAddr;

use crate::completion::{SocketId, Token};

pub(super) enum Op {
    /// A multishot accept on a listener.
    Accept { socket: SocketId },
    /// A connect; the kernel reads `addr` until it completes.
    Connect {
        socket: SocketId,
        token: Token,
        _addr: Box<SockAddr>,
    },
    /// A receive into `buf`'s spare capacity.
    Recv {
        socket: SocketId,
        token: Token,
        buf: BytesMut,
    },
    /// The head of the socket's write queue (send, vectored send or shutdown). The buffers
    /// stay in that queue; the iovec array and message header the kernel reads live here.
    Write {
        socket: SocketId,
        _iov: Vec<libc::iovec>,
        _msg: Option<Box<libc::msghdr>>,
    },
}
