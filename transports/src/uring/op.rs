//! What the kernel is working on: one entry per submitted operation, owning everything the
//! kernel points into (buffers, iovecs, addresses) until its final completion arrives.

use bytes::{Bytes, BytesMut};
use io_uring::types::Timespec;
use socket2::{SockAddr, SockAddrStorage};

use std::time::Duration;

use crate::datagram::DatagramAddr;

use crate::completion::{SocketId, Token};

pub(super) enum Op {
    /// A multishot accept on a listener.
    Accept { socket: SocketId },
    /// A connect; the kernel reads `addr` until it completes. `timeout` is the linked
    /// timeout's duration (the kernel reads `_ts` when the link is submitted).
    Connect {
        socket: SocketId,
        token: Token,
        _addr: Box<SockAddr>,
        timeout: Option<Duration>,
        _ts: Option<Box<Timespec>>,
    },
    /// A receive into `buf`'s spare capacity, with an optional linked timeout.
    Recv {
        socket: SocketId,
        token: Token,
        buf: BytesMut,
        timeout: Option<Duration>,
        _ts: Option<Box<Timespec>>,
    },
    /// A multishot receive: native (`buf` is `None`; the kernel picks buffers from the
    /// provided buffer ring and posts completions until one lacks `IORING_CQE_F_MORE`), or
    /// its emulation by one plain receive into `buf`'s spare capacity.
    RecvMulti {
        socket: SocketId,
        buf: Option<BytesMut>,
    },
    /// The head of the socket's write queue (send, vectored send or shutdown). The buffers
    /// stay in that queue; the iovec array and message header the kernel reads live here.
    /// A zero-copy send (`zc`) also keeps references to its buffers (`_keep`): the kernel
    /// reads them until its notification completion, which may come after the head left
    /// the queue and its buffers went back to the caller.
    Write {
        socket: SocketId,
        _iov: Vec<libc::iovec>,
        _msg: Option<Box<libc::msghdr>>,
        zc: bool,
        /// Sent from the registered send pool with the ring's fixed buffer.
        fixed: bool,
        _keep: Vec<Bytes>,
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
