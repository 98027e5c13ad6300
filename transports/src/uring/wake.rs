//! The cross-thread wake: an eventfd the ring keeps a read armed on.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use sinew_actors::Unpark;

/// A blocking eventfd: io_uring arms its own poll for the read, while a non-blocking one
/// would complete the read with `EAGAIN` instead of waiting.
pub(super) struct EventFd(OwnedFd);

impl EventFd {
    pub(super) fn new() -> std::io::Result<Self> {
        // SAFETY: plain syscall with no pointer arguments.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

impl EventFd {
    /// A non-blocking eventfd, for descriptors that others poll (reads never wait).
    pub(super) fn new_nonblocking() -> std::io::Result<Self> {
        // SAFETY: plain syscall with no pointer arguments.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The descriptor, owned.
    pub(super) fn into_owned(self) -> OwnedFd {
        self.0
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Unpark for EventFd {
    fn unpark(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to a descriptor we own.
        let n = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if n != 8 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "eventfd wake failed");
        }
    }
}
