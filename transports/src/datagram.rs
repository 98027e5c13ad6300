//! Datagram addresses (UDP and Unix domain) and the socket-address plumbing the backends share.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use socket2::SockAddr;

use crate::error::Result;

/// Where a datagram comes from or goes to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DatagramAddr {
    /// An IP address and port (UDP).
    Inet(SocketAddr),
    /// A Unix domain datagram socket bound to this path.
    Unix(PathBuf),
    /// A Unix domain socket without a name (an unbound sender; it cannot be answered).
    Unnamed,
}

impl DatagramAddr {
    /// The kernel form of this address.
    pub(crate) fn to_sockaddr(&self) -> Result<SockAddr> {
        Ok(match self {
            DatagramAddr::Inet(a) => SockAddr::from(*a),
            DatagramAddr::Unix(p) => SockAddr::unix(p)?,
            DatagramAddr::Unnamed => {
                return Err(crate::Error::Unsupported("sending to an unnamed address"))
            }
        })
    }

    /// Reads a kernel address back (`None` if the family is not IP or Unix).
    pub(crate) fn from_sockaddr(addr: &SockAddr) -> Option<DatagramAddr> {
        if let Some(a) = addr.as_socket() {
            return Some(DatagramAddr::Inet(a));
        }
        if addr.is_unix() {
            return Some(match addr.as_pathname() {
                Some(p) => DatagramAddr::Unix(p.to_path_buf()),
                None => DatagramAddr::Unnamed,
            });
        }
        None
    }
}

impl From<SocketAddr> for DatagramAddr {
    fn from(a: SocketAddr) -> Self {
        DatagramAddr::Inet(a)
    }
}

impl From<PathBuf> for DatagramAddr {
    fn from(p: PathBuf) -> Self {
        DatagramAddr::Unix(p)
    }
}

impl From<&Path> for DatagramAddr {
    fn from(p: &Path) -> Self {
        DatagramAddr::Unix(p.to_path_buf())
    }
}

/// What a datagram socket binds to.
pub(crate) enum Bind<'a> {
    Udp(SocketAddr, &'a [crate::options::SockOpt]),
    Unix(&'a Path),
}

/// Rebuilds an address the kernel wrote into zeroed storage, deriving its length from its
/// family (so it does not depend on the kernel writing the length back).
pub(crate) fn from_storage(storage: socket2::SockAddrStorage) -> Option<SockAddr> {
    let size = storage.size_of();
    // SAFETY: the storage is fully initialised (zeroed, then partly written by the kernel), so
    // its whole size is readable.
    let mut addr = unsafe { SockAddr::new(storage, size) };
    let len = match i32::from(addr.family()) {
        libc::AF_INET => std::mem::size_of::<libc::sockaddr_in>(),
        libc::AF_INET6 => std::mem::size_of::<libc::sockaddr_in6>(),
        libc::AF_UNIX => {
            let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
            // SAFETY: the family is AF_UNIX, so the storage (large enough for any address)
            // holds a `sockaddr_un`.
            let un = unsafe { &*addr.as_ptr().cast::<libc::sockaddr_un>() };
            match un.sun_path.iter().position(|&c| c == 0) {
                // Unnamed (or abstract, which we do not name).
                Some(0) => offset,
                Some(n) => offset + n + 1,
                None => std::mem::size_of::<libc::sockaddr_un>(),
            }
        }
        _ => return None,
    };
    // SAFETY: `len` is at most the storage size, all of which is initialised.
    unsafe { addr.set_length(len as libc::socklen_t) };
    Some(addr)
}

/// The completion of a datagram receive.
pub(crate) fn received_from(
    socket: crate::SocketId,
    token: crate::Token,
    buf: bytes::BytesMut,
    from: Option<DatagramAddr>,
    truncated: bool,
    result: Result<usize>,
) -> crate::Completion {
    crate::Completion {
        token,
        event: crate::Event::ReceivedFrom {
            socket,
            buf,
            from,
            truncated,
            result,
        },
    }
}

/// The completion of a datagram send.
pub(crate) fn sent_to(
    socket: crate::SocketId,
    token: crate::Token,
    buf: bytes::Bytes,
    to: DatagramAddr,
    result: Result<usize>,
) -> crate::Completion {
    crate::Completion {
        token,
        event: crate::Event::SentTo {
            socket,
            buf,
            to,
            result,
        },
    }
}
