//! What the kernel is working on: one entry per submitted operation, owning everything the
//! kernel points into (buffers, iovecs, addresses) until its final completion arrives.

use bytes::{Bytes, BytesMut};
use socket2::{SockAddr, SockAddrStorage};

use crate::datagram::DatagramAddr;

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
    /// A datagram receive (`RECVMSG`): the kernel writes into `buf`'s spare capacity and
    /// `addr`, reading `msg` and `iov`.
    RecvFrom {
        socket: SocketId,
        token: Token,
        buf: BytesMut,
        addr: Box<SockAddrStorage>,
        msg: Box<libc::msghdr>,
        _iov: Box<libc::iovec>,
    },
    /// A datagram send (`SENDMSG`): the kernel reads `buf`, `addr`, `msg` and `iov`.
    SendTo {
        socket: SocketId,
        token: Token,
        buf: Bytes,
        to: Box<DatagramAddr>,
        _addr: Box<SockAddr>,
        _msg: Box<libc::msghdr>,
        _iov: Box<libc::iovec>,
    },
}
