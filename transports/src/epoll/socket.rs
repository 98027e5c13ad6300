//! One epoll socket and its queued operations: connect, receives in order, and the write queue.

use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use socket2::SockRef;

use crate::completion::{Completion, Event, SocketId, Token};
use crate::error::{Error, Result};
use crate::io;
use crate::write::WriteOp;

/// At most this many slices go into one `sendmsg`.
const MAX_IOV: usize = 64;

pub(super) enum Kind {
    Listener(mio::net::TcpListener),
    Stream(mio::net::TcpStream),
}

/// A multishot accept in progress.
pub(super) struct Accept {
    pub(super) token: Token,
    /// Set while backing off after `EMFILE`/`ENFILE`.
    pub(super) retry_at: Option<Instant>,
    pub(super) backoff: Duration,
}

impl Accept {
    pub(super) fn new(token: Token) -> Self {
        Accept {
            token,
            retry_at: None,
            backoff: io::BACKOFF_MIN,
        }
    }
}

pub(super) struct Sock {
    pub(super) kind: Kind,
    pub(super) accept: Option<Accept>,
    /// The token of a connect still waiting for the socket to become writable.
    pub(super) connecting: Option<Token>,
    pub(super) recvs: VecDeque<(Token, BytesMut)>,
    pub(super) writes: VecDeque<WriteOp>,
}

impl Sock {
    pub(super) fn new(kind: Kind) -> Self {
        Sock {
            kind,
            accept: None,
            connecting: None,
            recvs: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }

    fn stream(&self) -> Option<&mio::net::TcpStream> {
        match &self.kind {
            Kind::Stream(s) => Some(s),
            Kind::Listener(_) => None,
        }
    }

    /// Finishes a pending connect once the socket reports writable (or an error).
    pub(super) fn drive_connect(&mut self, id: SocketId, ready: &mut Vec<Completion>) {
        let (Some(token), Some(stream)) = (self.connecting, self.stream()) else {
            return;
        };
        let result = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(Error::from(e)),
            Ok(None) => match stream.peer_addr() {
                Ok(_) => Ok(()),
                // Not connected yet: a spurious edge; wait for the next one.
                Err(e) if e.kind() == ErrorKind::NotConnected => return,
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => return,
                Err(e) => Err(Error::from(e)),
            },
        };
        self.connecting = None;
        ready.push(Completion {
            token,
            event: Event::Connected { socket: id, result },
        });
    }

    /// Completes queued receives, in order, until the socket would block.
    pub(super) fn drive_recv(&mut self, id: SocketId, ready: &mut Vec<Completion>) {
        if self.connecting.is_some() {
            return;
        }
        let Kind::Stream(stream) = &self.kind else {
            return;
        };
        while let Some((_, buf)) = self.recvs.front_mut() {
            io::ensure_spare(buf);
            let result = SockRef::from(stream).recv(buf.spare_capacity_mut());
            let result = match result {
                Ok(n) => {
                    // SAFETY: recv(2) initialised the first `n` bytes of the spare capacity,
                    // and `n` never exceeds the spare capacity it was given.
                    unsafe { buf.set_len(buf.len() + n) };
                    Ok(n)
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => Err(Error::from(e)),
            };
            if let Some((token, buf)) = self.recvs.pop_front() {
                ready.push(Completion {
                    token,
                    event: Event::Received {
                        socket: id,
                        buf,
                        result,
                    },
                });
            }
        }
    }

    /// Writes queued sends in order until the socket would block; runs queued shutdowns once
    /// every send before them finished.
    pub(super) fn drive_writes(&mut self, id: SocketId, ready: &mut Vec<Completion>) {
        if self.connecting.is_some() {
            return;
        }
        let Kind::Stream(stream) = &self.kind else {
            return;
        };
        let sock = SockRef::from(stream);
        while let Some(op) = self.writes.front_mut() {
            let result: Result<()> = match op {
                WriteOp::Shutdown { how, .. } => sock.shutdown(*how).map_err(Error::from),
                _ if op.is_done() => Ok(()),
                _ => {
                    let written = {
                        let mut slices: Vec<IoSlice<'_>> = Vec::new();
                        op.remaining(&mut slices, MAX_IOV);
                        sock.send_vectored_with_flags(&slices, libc::MSG_NOSIGNAL)
                    };
                    match written {
                        Ok(n) if !op.advance(n) => continue,
                        Ok(_) => Ok(()),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => Err(Error::from(e)),
                    }
                }
            };
            if let Some(op) = self.writes.pop_front() {
                ready.push(op.complete(id, result));
            }
        }
    }

    /// Completes everything queued with `Cancelled`, handing buffers back.
    pub(super) fn cancel_all(&mut self, id: SocketId, ready: &mut Vec<Completion>) {
        if let Some(acc) = self.accept.take() {
            ready.push(Completion {
                token: acc.token,
                event: Event::Accepted {
                    listener: id,
                    result: Err(Error::Cancelled),
                    more: false,
                },
            });
        }
        if let Some(token) = self.connecting.take() {
            ready.push(Completion {
                token,
                event: Event::Connected {
                    socket: id,
                    result: Err(Error::Cancelled),
                },
            });
        }
        for (token, buf) in self.recvs.drain(..) {
            ready.push(Completion {
                token,
                event: Event::Received {
                    socket: id,
                    buf,
                    result: Err(Error::Cancelled),
                },
            });
        }
        for op in self.writes.drain(..) {
            ready.push(op.cancel(id));
        }
    }
}
