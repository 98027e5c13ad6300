//! Socket creation shared by the backends.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

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

/// A Unix domain stream socket (blocking or not, as for [`tcp_socket`]).
pub(crate) fn unix_stream(nonblocking: bool) -> Result<Socket> {
    let mut ty = Type::STREAM.cloexec();
    if nonblocking {
        ty = ty.nonblocking();
    }
    Ok(Socket::new(Domain::UNIX, ty, None)?)
}

/// A Unix domain stream socket bound to `path` and listening.
pub(crate) fn unix_listener(path: &Path, nonblocking: bool) -> Result<OwnedFd> {
    let socket = unix_stream(nonblocking)?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// A Unix domain `SOCK_SEQPACKET` socket (blocking or not, as for [`tcp_socket`]).
pub(crate) fn unix_seqpacket(nonblocking: bool) -> Result<Socket> {
    let mut ty = Type::SEQPACKET.cloexec();
    if nonblocking {
        ty = ty.nonblocking();
    }
    Ok(Socket::new(Domain::UNIX, ty, None)?)
}

/// A Unix domain `SOCK_SEQPACKET` socket bound to `path` and listening.
pub(crate) fn unix_seqpacket_listener(path: &Path, nonblocking: bool) -> Result<OwnedFd> {
    let socket = unix_seqpacket(nonblocking)?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// A bound datagram socket: UDP (with `opts` applied before bind) or Unix domain.
pub(crate) fn datagram(bind: &crate::datagram::Bind<'_>, nonblocking: bool) -> Result<OwnedFd> {
    let mut ty = Type::DGRAM.cloexec();
    if nonblocking {
        ty = ty.nonblocking();
    }
    let socket = match bind {
        crate::datagram::Bind::Udp(addr, opts) => {
            let socket = Socket::new(Domain::for_address(*addr), ty, Some(Protocol::UDP))?;
            for opt in *opts {
                options::set(socket.as_fd(), *opt)?;
            }
            socket.bind(&(*addr).into())?;
            socket
        }
        crate::datagram::Bind::Unix(path) => {
            let socket = Socket::new(Domain::UNIX, ty, None)?;
            socket.bind(&SockAddr::unix(path)?)?;
            socket
        }
    };
    Ok(socket.into())
}
