//! Typed socket options (through socket2 and libc) plus a raw `setsockopt`/`getsockopt`
//! escape hatch for anything not covered.

use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

use crate::error::{Error, Result};

/// TCP keepalive parameters: idle time before the first probe, time between probes, and how
/// many unanswered probes drop the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// `TCP_KEEPIDLE`.
    pub idle: Duration,
    /// `TCP_KEEPINTVL`.
    pub interval: Duration,
    /// `TCP_KEEPCNT`.
    pub retries: u32,
}

/// A socket option with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SockOpt {
    /// `TCP_NODELAY`: disable Nagle's algorithm.
    NoDelay(bool),
    /// `SO_KEEPALIVE` with its intervals; `None` turns keepalive off.
    KeepAlive(Option<Keepalive>),
    /// `SO_SNDBUF` in bytes (the kernel doubles and clamps it).
    SendBuffer(usize),
    /// `SO_RCVBUF` in bytes (the kernel doubles and clamps it).
    RecvBuffer(usize),
    /// `SO_REUSEADDR`.
    ReuseAddr(bool),
    /// `SO_REUSEPORT`: several listeners (one per I/O worker) share a port.
    ReusePort(bool),
    /// `TCP_DEFER_ACCEPT`: wake the acceptor only once data arrived, waiting at most this long.
    DeferAccept(Duration),
    /// `TCP_QUICKACK`: send ACKs at once (the kernel resets it after some traffic).
    QuickAck(bool),
    /// `SO_LINGER`: `Some(0)` makes close send a reset; `None` is the default graceful close.
    Linger(Option<Duration>),
    /// `TCP_CORK`: hold partial frames until uncorked.
    Cork(bool),
    /// `SO_INCOMING_CPU`: prefer connections whose packets arrive on this CPU.
    IncomingCpu(usize),
    /// `TCP_MAXSEG`: the maximum segment size. Set before connecting (or on a listener) to
    /// clamp what is advertised; read on a connection for the payload per segment.
    MaxSegment(u32),
}

/// The name of a socket option, for reading it back with [`get`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SockOptName {
    /// `TCP_NODELAY`.
    NoDelay,
    /// `SO_KEEPALIVE` and its intervals.
    KeepAlive,
    /// `SO_SNDBUF`.
    SendBuffer,
    /// `SO_RCVBUF`.
    RecvBuffer,
    /// `SO_REUSEADDR`.
    ReuseAddr,
    /// `SO_REUSEPORT`.
    ReusePort,
    /// `TCP_DEFER_ACCEPT`.
    DeferAccept,
    /// `TCP_QUICKACK`.
    QuickAck,
    /// `SO_LINGER`.
    Linger,
    /// `TCP_CORK`.
    Cork,
    /// `SO_INCOMING_CPU`.
    IncomingCpu,
    /// `TCP_MAXSEG`.
    MaxSegment,
}

/// Applies `opt` to the socket `fd`.
pub fn set(fd: BorrowedFd<'_>, opt: SockOpt) -> Result<()> {
    let s = SockRef::from(&fd);
    match opt {
        SockOpt::NoDelay(on) => s.set_tcp_nodelay(on)?,
        SockOpt::KeepAlive(None) => s.set_keepalive(false)?,
        SockOpt::KeepAlive(Some(k)) => {
            s.set_keepalive(true)?;
            let params = TcpKeepalive::new()
                .with_time(k.idle)
                .with_interval(k.interval)
                .with_retries(k.retries);
            s.set_tcp_keepalive(&params)?;
        }
        SockOpt::SendBuffer(n) => s.set_send_buffer_size(n)?,
        SockOpt::RecvBuffer(n) => s.set_recv_buffer_size(n)?,
        SockOpt::ReuseAddr(on) => s.set_reuse_address(on)?,
        SockOpt::ReusePort(on) => s.set_reuse_port(on)?,
        SockOpt::DeferAccept(d) => {
            let secs = i32::try_from(d.as_secs()).unwrap_or(i32::MAX);
            set_raw(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                &secs.to_ne_bytes(),
            )?
        }
        SockOpt::QuickAck(on) => s.set_tcp_quickack(on)?,
        SockOpt::Linger(l) => s.set_linger(l)?,
        SockOpt::Cork(on) => s.set_tcp_cork(on)?,
        SockOpt::IncomingCpu(cpu) => s.set_cpu_affinity(cpu)?,
        SockOpt::MaxSegment(mss) => {
            let mss = i32::try_from(mss).map_err(|_| Error::InvalidArgument("TCP_MAXSEG"))?;
            set_raw(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG, &mss.to_ne_bytes())?
        }
    }
    Ok(())
}

/// Reads the current value of option `name` from the socket `fd`.
pub fn get(fd: BorrowedFd<'_>, name: SockOptName) -> Result<SockOpt> {
    let s = SockRef::from(&fd);
    Ok(match name {
        SockOptName::NoDelay => SockOpt::NoDelay(s.tcp_nodelay()?),
        SockOptName::KeepAlive => {
            if s.keepalive()? {
                SockOpt::KeepAlive(Some(Keepalive {
                    idle: Duration::from_secs(get_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE)?),
                    interval: Duration::from_secs(get_int(
                        fd,
                        libc::IPPROTO_TCP,
                        libc::TCP_KEEPINTVL,
                    )?),
                    retries: u32::try_from(get_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT)?)
                        .unwrap_or(u32::MAX),
                }))
            } else {
                SockOpt::KeepAlive(None)
            }
        }
        SockOptName::SendBuffer => SockOpt::SendBuffer(s.send_buffer_size()?),
        SockOptName::RecvBuffer => SockOpt::RecvBuffer(s.recv_buffer_size()?),
        SockOptName::ReuseAddr => SockOpt::ReuseAddr(s.reuse_address()?),
        SockOptName::ReusePort => SockOpt::ReusePort(s.reuse_port()?),
        SockOptName::DeferAccept => SockOpt::DeferAccept(Duration::from_secs(get_int(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
        )?)),
        SockOptName::QuickAck => SockOpt::QuickAck(s.tcp_quickack()?),
        SockOptName::Linger => SockOpt::Linger(s.linger()?),
        SockOptName::Cork => SockOpt::Cork(s.tcp_cork()?),
        SockOptName::IncomingCpu => SockOpt::IncomingCpu(s.cpu_affinity()?),
        SockOptName::MaxSegment => SockOpt::MaxSegment(
            u32::try_from(get_int(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG)?).unwrap_or(u32::MAX),
        ),
    })
}

/// The path MTU the kernel currently assumes for a connected IP socket (`IP_MTU`, or
/// `IPV6_MTU` for IPv6). `ENOTCONN` (an [`Error::Io`]) if the socket is not connected;
/// [`Error::Unsupported`] if it is not an IP socket.
pub fn path_mtu(fd: BorrowedFd<'_>) -> Result<usize> {
    let local = SockRef::from(&fd).local_addr()?;
    let (level, name) = match local.as_socket() {
        Some(std::net::SocketAddr::V4(_)) => (libc::IPPROTO_IP, libc::IP_MTU),
        Some(std::net::SocketAddr::V6(_)) => (libc::IPPROTO_IPV6, libc::IPV6_MTU),
        None => return Err(Error::Unsupported("path MTU of a non-IP socket")),
    };
    usize::try_from(get_int(fd, level, name)?).map_err(|_| Error::Unsupported("MTU size"))
}

fn get_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> Result<u64> {
    let mut buf = [0u8; mem::size_of::<i32>()];
    let n = get_raw(fd, level, name, &mut buf)?;
    if n != buf.len() {
        return Err(Error::Unsupported("unexpected option size"));
    }
    Ok(u64::try_from(i32::from_ne_bytes(buf)).unwrap_or(0))
}

/// Raw `setsockopt(fd, level, name, value)`: the escape hatch for options without a type here.
pub fn set_raw(fd: BorrowedFd<'_>, level: i32, name: i32, value: &[u8]) -> Result<()> {
    let len = libc::socklen_t::try_from(value.len())
        .map_err(|_| Error::Unsupported("option value too large"))?;
    // SAFETY: `fd` is a live descriptor for the borrow's duration; the kernel reads exactly
    // `len` bytes from `value`, which is a valid slice of that length.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, value.as_ptr().cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().into())
    }
}

/// Raw `getsockopt(fd, level, name)` into `buf`; returns the option's length in bytes.
pub fn get_raw(fd: BorrowedFd<'_>, level: i32, name: i32, buf: &mut [u8]) -> Result<usize> {
    let mut len = libc::socklen_t::try_from(buf.len())
        .map_err(|_| Error::Unsupported("option buffer too large"))?;
    // SAFETY: `fd` is live; the kernel writes at most `len` bytes into `buf` (valid for that
    // many bytes) and stores the actual length in `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(len as usize)
    } else {
        Err(std::io::Error::last_os_error().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn typed_options_round_trip() -> Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let stream = std::net::TcpStream::connect(listener.local_addr()?)?;
        let fd = stream.as_fd();
        for opt in [
            SockOpt::NoDelay(true),
            SockOpt::Cork(true),
            SockOpt::ReusePort(true),
        ] {
            set(fd, opt)?;
        }
        assert_eq!(get(fd, SockOptName::NoDelay)?, SockOpt::NoDelay(true));
        assert_eq!(get(fd, SockOptName::Cork)?, SockOpt::Cork(true));
        assert_eq!(get(fd, SockOptName::ReusePort)?, SockOpt::ReusePort(true));
        let ka = Keepalive {
            idle: Duration::from_secs(30),
            interval: Duration::from_secs(5),
            retries: 4,
        };
        set(fd, SockOpt::KeepAlive(Some(ka)))?;
        assert_eq!(
            get(fd, SockOptName::KeepAlive)?,
            SockOpt::KeepAlive(Some(ka))
        );
        set(fd, SockOpt::Linger(Some(Duration::from_secs(0))))?;
        assert_eq!(
            get(fd, SockOptName::Linger)?,
            SockOpt::Linger(Some(Duration::ZERO))
        );
        set(fd, SockOpt::SendBuffer(64 * 1024))?;
        assert!(
            matches!(get(fd, SockOptName::SendBuffer)?, SockOpt::SendBuffer(n) if n >= 64 * 1024)
        );
        set(fd, SockOpt::QuickAck(true))?;
        set(fd, SockOpt::IncomingCpu(0))?;
        // Loopback's MTU (65536 by default); the segment size follows from it.
        assert!(path_mtu(fd)? >= 1280);
        assert!(
            matches!(get(fd, SockOptName::MaxSegment)?, SockOpt::MaxSegment(n) if n > 1000 && n < 65536)
        );
        // Clamping the segment size on a fresh socket sticks.
        let fresh = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        set(fresh.as_fd(), SockOpt::MaxSegment(1200))?;
        assert_eq!(
            get(fresh.as_fd(), SockOptName::MaxSegment)?,
            SockOpt::MaxSegment(1200)
        );
        assert!(path_mtu(fresh.as_fd()).is_err(), "not connected");
        let lfd = listener.as_fd();
        set(lfd, SockOpt::DeferAccept(Duration::from_secs(2)))?;
        assert!(
            matches!(get(lfd, SockOptName::DeferAccept)?, SockOpt::DeferAccept(d) if d >= Duration::from_secs(2))
        );
        // The raw hatch sees what the typed API set.
        let mut raw = [0u8; 4];
        assert_eq!(
            get_raw(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &mut raw)?,
            4
        );
        assert_eq!(i32::from_ne_bytes(raw), 1);
        set_raw(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &0i32.to_ne_bytes(),
        )?;
        assert_eq!(get(fd, SockOptName::NoDelay)?, SockOpt::NoDelay(false));
        Ok(())
    }
}
