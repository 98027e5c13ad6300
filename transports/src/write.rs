//! The per-socket write queue shared by the backends: sends and shutdowns run in submission
//! order, one at a time, and partial writes continue from where they stopped.

use std::io::IoSlice;
use std::net::Shutdown;

use bytes::Bytes;

use crate::completion::{Completion, Event, SocketId, Token};
use crate::error::{Error, Result};

/// One queued write-side operation.
pub(crate) enum WriteOp {
    Send {
        token: Token,
        buf: Bytes,
        done: usize,
        /// Success completes silently (`Reactor::send_quiet`).
        quiet: bool,
    },
    SendVectored {
        token: Token,
        bufs: Vec<Bytes>,
        done: usize,
        quiet: bool,
    },
    Shutdown {
        token: Token,
        how: Shutdown,
    },
}

impl WriteOp {
    /// The bytes still to write, as slices (at most `max` of them).
    pub(crate) fn remaining<'a>(&'a self, out: &mut Vec<IoSlice<'a>>, max: usize) {
        out.clear();
        match self {
            WriteOp::Send { buf, done, .. } => out.push(IoSlice::new(&buf[*done..])),
            WriteOp::SendVectored { bufs, done, .. } => {
                let mut skip = *done;
                for b in bufs {
                    if out.len() == max {
                        break;
                    }
                    if skip >= b.len() {
                        skip -= b.len();
                        continue;
                    }
                    out.push(IoSlice::new(&b[skip..]));
                    skip = 0;
                }
            }
            WriteOp::Shutdown { .. } => {}
        }
    }

    /// The next at most `max` unwritten bytes, as a zero-copy slice of one buffer (`None` for
    /// a shutdown or when everything is written). Call [`WriteOp::advance`] after using it.
    pub(crate) fn next_chunk(&self, max: usize) -> Option<Bytes> {
        match self {
            WriteOp::Send { buf, done, .. } => {
                let end = buf.len().min(done.saturating_add(max));
                (*done < end).then(|| buf.slice(*done..end))
            }
            WriteOp::SendVectored { bufs, done, .. } => {
                let mut skip = *done;
                for b in bufs {
                    if skip >= b.len() {
                        skip -= b.len();
                        continue;
                    }
                    let end = b.len().min(skip.saturating_add(max));
                    return Some(b.slice(skip..end));
                }
                None
            }
            WriteOp::Shutdown { .. } => None,
        }
    }

    /// Records `n` more bytes written; true once everything is written.
    pub(crate) fn advance(&mut self, n: usize) -> bool {
        match self {
            WriteOp::Send { buf, done, .. } => {
                *done += n;
                *done >= buf.len()
            }
            WriteOp::SendVectored { bufs, done, .. } => {
                *done += n;
                *done >= bufs.iter().map(Bytes::len).sum::<usize>()
            }
            WriteOp::Shutdown { .. } => true,
        }
    }

    /// How many bytes are still to write.
    pub(crate) fn remaining_len(&self) -> usize {
        match self {
            WriteOp::Send { buf, done, .. } => buf.len().saturating_sub(*done),
            WriteOp::SendVectored { bufs, done, .. } => bufs
                .iter()
                .map(Bytes::len)
                .sum::<usize>()
                .saturating_sub(*done),
            WriteOp::Shutdown { .. } => 0,
        }
    }

    /// True if nothing is left to write (an empty send completes at once).
    pub(crate) fn is_done(&self) -> bool {
        match self {
            WriteOp::Send { buf, done, .. } => *done >= buf.len(),
            WriteOp::SendVectored { bufs, done, .. } => {
                *done >= bufs.iter().map(Bytes::len).sum::<usize>()
            }
            WriteOp::Shutdown { .. } => false,
        }
    }

    /// The completion for a finished operation, or `None` for a quiet send that succeeded
    /// (its buffer is dropped here).
    pub(crate) fn finish(self, socket: SocketId, result: Result<()>) -> Option<Completion> {
        match &self {
            WriteOp::Send { quiet: true, .. } | WriteOp::SendVectored { quiet: true, .. }
                if result.is_ok() =>
            {
                None
            }
            _ => Some(self.complete(socket, result)),
        }
    }

    /// The completion for this operation with `result` (or the byte count on success).
    pub(crate) fn complete(self, socket: SocketId, result: Result<()>) -> Completion {
        match self {
            WriteOp::Send {
                token, buf, done, ..
            } => Completion {
                token,
                event: Event::Sent {
                    socket,
                    buf,
                    result: result.map(|()| done),
                },
            },
            WriteOp::SendVectored {
                token, bufs, done, ..
            } => Completion {
                token,
                event: Event::SentVectored {
                    socket,
                    bufs,
                    result: result.map(|()| done),
                },
            },
            WriteOp::Shutdown { token, .. } => Completion {
                token,
                event: Event::Shutdown { socket, result },
            },
        }
    }

    /// Completes with [`Error::Cancelled`].
    pub(crate) fn cancel(self, socket: SocketId) -> Completion {
        self.complete(socket, Err(Error::Cancelled))
    }
}

/// Bytes still to write in a socket's write queue.
pub(crate) fn queued_bytes<'a>(ops: impl IntoIterator<Item = &'a WriteOp>) -> usize {
    ops.into_iter().map(WriteOp::remaining_len).sum()
}

/// High/low write watermarks of one socket and which side of them it is on.
#[derive(Debug)]
pub(crate) struct Watermark {
    pub(crate) socket: SocketId,
    pub(crate) high: usize,
    pub(crate) low: usize,
    pub(crate) token: Token,
    /// Rose to `high` and has not fallen to `low` since.
    pub(crate) above: bool,
}

impl Watermark {
    /// The completion to report if `queued` crossed a watermark.
    pub(crate) fn update(&mut self, queued: usize) -> Option<Completion> {
        let cross = if !self.above && queued >= self.high {
            Some(true)
        } else if self.above && queued <= self.low {
            Some(false)
        } else {
            None
        };
        let high = cross?;
        self.above = high;
        Some(Completion {
            token: self.token,
            event: Event::WriteWatermark {
                socket: self.socket,
                high,
                queued,
            },
        })
    }
}

/// The `how` argument of `shutdown(2)`.
pub(crate) fn shutdown_how(how: Shutdown) -> i32 {
    match how {
        Shutdown::Read => libc::SHUT_RD,
        Shutdown::Write => libc::SHUT_WR,
        Shutdown::Both => libc::SHUT_RDWR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectored_progress_skips_written_bytes() {
        let mut op = WriteOp::SendVectored {
            token: Token(1),
            bufs: vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defg")],
            done: 0,
            quiet: false,
        };
        assert!(!op.advance(4));
        let mut slices = Vec::new();
        op.remaining(&mut slices, 8);
        assert_eq!(slices.len(), 1);
        assert_eq!(&*slices[0], b"efg");
        drop(slices);
        assert!(op.advance(3));
    }

    #[test]
    fn a_quiet_send_completes_only_on_failure() {
        let socket = SocketId {
            index: 3,
            generation: 1,
        };
        let send = |quiet| WriteOp::Send {
            token: Token(7),
            buf: Bytes::from_static(b"hello"),
            done: 5,
            quiet,
        };
        assert!(send(true).finish(socket, Ok(())).is_none());
        let failed = send(true).finish(socket, Err(Error::BrokenPipe));
        assert!(matches!(
            failed,
            Some(Completion {
                token: Token(7),
                event: Event::Sent {
                    result: Err(Error::BrokenPipe),
                    ..
                }
            })
        ));
        let loud = send(false).finish(socket, Ok(()));
        assert!(matches!(
            loud,
            Some(Completion {
                event: Event::Sent { result: Ok(5), .. },
                ..
            })
        ));
        // Cancellation is a failure: the sender hears of it.
        assert!(matches!(
            send(true).cancel(socket).event,
            Event::Sent {
                result: Err(Error::Cancelled),
                ..
            }
        ));
    }
}
