//! The internal interface each backend implements behind [`Reactor`](crate::Reactor).

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sinew_actors::Unpark;

use crate::capabilities::Capabilities;
use crate::completion::{Completion, SocketId, Token};
use crate::error::Result;
use crate::options::SockOpt;
use crate::write::WriteOp;

/// One backend. Submissions never block and never lose a buffer: problems found at submit
/// time come back as completions, like everything else.
pub(crate) trait Io {
    fn listen(&mut self, addr: SocketAddr, opts: &[SockOpt]) -> Result<SocketId>;
    fn accept(&mut self, listener: SocketId, token: Token);
    fn connect(&mut self, addr: SocketAddr, opts: &[SockOpt], token: Token) -> Result<SocketId>;
    fn recv(&mut self, socket: SocketId, buf: BytesMut, token: Token);
    fn write(&mut self, socket: SocketId, op: WriteOp);
    fn close(&mut self, socket: SocketId, token: Token);
    fn fd(&self, socket: SocketId) -> Option<BorrowedFd<'_>>;
    fn poll(&mut self, out: &mut Vec<Completion>, timeout: Option<Duration>) -> Result<()>;
    fn unparker(&self) -> Arc<dyn Unpark>;
    fn capabilities(&self) -> Capabilities;
    fn socket_count(&self) -> usize;
}

/// How much a receive reserves when the caller's buffer has no spare capacity.
pub(crate) const DEFAULT_RECV: usize = 16 * 1024;

/// Accept backoff after `EMFILE`/`ENFILE`: starts here and doubles up to [`BACKOFF_MAX`].
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(5);
/// The longest accept backoff.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Makes sure `buf` has room to receive into.
pub(crate) fn ensure_spare(buf: &mut BytesMut) {
    if buf.capacity() == buf.len() {
        buf.reserve(DEFAULT_RECV);
    }
}

/// The earlier of two optional deadlines expressed as timeouts.
pub(crate) fn min_timeout(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
