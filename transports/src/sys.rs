//! Socket creation shared by the backends.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::Result;
use crate::options::{self, SockOpt};

/// The listen backlog. The kernel clamps it to `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

/// A TCP socket for `addr`'s family. io_uring wants blocking sockets (it arms its own poll;
/// a non-blocking socket would leak `EAGAIN` out of some opcodes), epoll non-blocking ones.
pub(crate) fn tcp_socket(addr: &SocketAddr, nonblocking: bool) -> Result<Socket> {
    let mut ty = Type::STREAM.cloexec();
    if nonblocking {
        ty = ty.nonblocking();
    }
    Ok(Socket::new(
        Domain::for_address(*addr),
        ty,
        Some(Protocol::TCP),
    )?)
}

/// A bound, listening TCP socket with `SO_REUSEADDR` and then `opts` applied before bind.
pub(crate) fn listener(addr: SocketAddr, opts: &[SockOpt], nonblocking: bool) -> Result<OwnedFd> {
    let socket = tcp_socket(&addr, nonblocking)?;
    socket.set_reuse_address(true)?;
    for opt in opts {
        options::set(socket.as_fd(), *opt)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
