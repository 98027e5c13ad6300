//! Streamed bodies, both ways.
//!
//! Requests: a request whose body is too large to hold whole (or has no length
//! in advance) reaches the application with a [`BodyStream`]; the application says where the
//! parts go ([`BodyStream::read_into`]) and the connection forwards them as they are decoded,
//! with back-pressure: while the recipient is full (or has not been named yet and a small
//! buffer is used up) the connection stops reading its socket. Dropping the stream unread
//! discards the body.
//!
//! Responses: an application answers with a streaming response (HTTP: `Body::Stream`) and then
//! sends its parts through the request's [`BodySender`]; the connection encodes them (chunked
//! for HTTP/1.1) as they come.

use std::collections::VecDeque;

use bytes::Bytes;
use sinew_actors::{Recipient, SendError};
use sinew_protocols::protocol::RequestId;

/// Bytes of body held while the application has not named a recipient yet.
const HELD_MAX: usize = 64 * 1024;

/// One part of a streamed request body, in order; exactly one `End` or `Aborted` comes last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyPart {
    /// The next bytes.
    Data(Bytes),
    /// The body is complete.
    End,
    /// The connection ended before the body did.
    Aborted,
}

/// What an application does with a streamed body (sent to the connection).
pub enum BodyCtl {
    /// Forward the parts of request `id` to the recipient.
    ReadInto(u64, Recipient<BodyPart>),
    /// Nobody will read request `id`'s body: discard it.
    Discard(u64),
}

impl std::fmt::Debug for BodyCtl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyCtl::ReadInto(id, _) => write!(f, "ReadInto({id})"),
            BodyCtl::Discard(id) => write!(f, "Discard({id})"),
        }
    }
}

/// The handle to a streamed request body, handed to the application with the request.
pub struct BodyStream {
    conn: Recipient<BodyCtl>,
    id: u64,
    taken: bool,
}

impl std::fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyStream").field("id", &self.id).finish()
    }
}

impl BodyStream {
    pub(crate) fn new(conn: Recipient<BodyCtl>, id: RequestId) -> Self {
        BodyStream {
            conn,
            id: id.0,
            taken: false,
        }
    }

    /// Sends the body's parts to `to`, in order, ending with [`BodyPart::End`] (or
    /// [`BodyPart::Aborted`]). For HTTP this is also when `100 Continue` goes out.
    pub fn read_into(mut self, to: Recipient<BodyPart>) {
        self.taken = true;
        // Control messages bypass the connection's capacity: they unblock it.
        let _ = self.conn.send_reply(BodyCtl::ReadInto(self.id, to));
    }
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        if !self.taken {
            let _ = self.conn.send_reply(BodyCtl::Discard(self.id));
        }
    }
}

/// Whether the connection may keep decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Go on.
    Go,
    /// The recipient is full: wait for room, then pump again.
    Full,
    /// No recipient yet and the buffer is used up: wait for `read_into`.
    Wait,
}

/// The connection's side of the one streamed body it is decoding.
#[derive(Debug)]
pub(crate) struct StreamIn {
    pub(crate) id: RequestId,
    to: Option<Recipient<BodyPart>>,
    held: VecDeque<BodyPart>,
    held_bytes: usize,
    discard: bool,
    /// The codec delivered the last part.
    ended: bool,
}

impl StreamIn {
    pub(crate) fn new(id: RequestId) -> Self {
        StreamIn {
            id,
            to: None,
            held: VecDeque::new(),
            held_bytes: 0,
            discard: false,
            ended: false,
        }
    }

    /// A part from the codec.
    pub(crate) fn offer(&mut self, part: BodyPart) -> Flow {
        self.ended |= !matches!(part, BodyPart::Data(_));
        if self.discard {
            return Flow::Go;
        }
        if let BodyPart::Data(d) = &part {
            self.held_bytes += d.len();
        }
        self.held.push_back(part);
        self.pump()
    }

    /// The application named the recipient.
    pub(crate) fn attach(&mut self, to: Recipient<BodyPart>) -> Flow {
        self.to = Some(to);
        self.pump()
    }

    /// The application dropped the stream unread.
    pub(crate) fn discard(&mut self) {
        self.discard = true;
        self.held.clear();
        self.held_bytes = 0;
    }

    /// Whether the last part went out (or the body is discarded and complete).
    pub(crate) fn finished(&self) -> bool {
        self.ended && self.held.is_empty()
    }

    /// Delivers held parts in order.
    pub(crate) fn pump(&mut self) -> Flow {
        let Some(to) = &self.to else {
            return if self.held_bytes > HELD_MAX {
                Flow::Wait
            } else {
                Flow::Go
            };
        };
        while let Some(part) = self.held.pop_front() {
            let len = match &part {
                BodyPart::Data(d) => d.len(),
                _ => 0,
            };
            match to.try_send(part) {
                Ok(()) => self.held_bytes -= len,
                Err(SendError::Full(part)) => {
                    self.held.push_front(part);
                    return Flow::Full;
                }
                // The reader is gone: nothing more to deliver.
                Err(SendError::Closed(_)) => {
                    self.discard();
                    return Flow::Go;
                }
            }
        }
        Flow::Go
    }

    /// The connection is ending before the body did: the reader gets [`BodyPart::Aborted`]
    /// even if its mailbox is full (what was held for it is dropped).
    pub(crate) fn abort(self) {
        if let (Some(to), false, false) = (self.to, self.discard, self.ended) {
            let _ = to.send_reply(BodyPart::Aborted);
        }
    }

    /// Registers `wake` to run when the recipient has room.
    pub(crate) fn when_room(&self, wake: impl FnOnce() + Send + 'static) {
        if let Some(to) = &self.to {
            to.notify_when_room(wake);
        }
    }
}

/// A part of a streamed response, sent to the connection.
#[derive(Debug)]
pub enum BodyOut {
    /// The next bytes of response `id`.
    Data(u64, Bytes),
    /// Response `id` is complete.
    Finish(u64),
    /// The sender was dropped before finishing: the response is cut short.
    Abort(u64),
}

/// Sends the parts of a streamed response. Send the response itself (with a streaming body)
/// through the request's reply address first; parts sent from the same actor arrive after it.
/// Dropping a sender that sent parts without [`BodySender::finish`] cuts the response short
/// (the connection closes, so the client cannot mistake it for a complete body); an unused
/// sender is dropped silently (the response had a whole body), so answer a streaming
/// response with at least [`BodySender::finish`].
pub struct BodySender {
    conn: Recipient<BodyOut>,
    id: u64,
    finished: bool,
    sent: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for BodySender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodySender").field("id", &self.id).finish()
    }
}

impl BodySender {
    pub(crate) fn new(conn: Recipient<BodyOut>, id: RequestId) -> Self {
        BodySender {
            conn,
            id: id.0,
            finished: false,
            sent: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Queues the next bytes. `Err` with the bytes when the connection's mailbox is full
    /// (wait with [`BodySender::notify_when_room`]) or the connection is gone.
    pub fn send(&self, data: Bytes) -> Result<(), SendError<Bytes>> {
        self.sent.store(true, std::sync::atomic::Ordering::Relaxed);
        self.conn
            .try_send(BodyOut::Data(self.id, data))
            .map_err(|e| match e {
                SendError::Full(BodyOut::Data(_, d)) => SendError::Full(d),
                SendError::Closed(BodyOut::Data(_, d)) => SendError::Closed(d),
                SendError::Full(_) => SendError::Full(Bytes::new()),
                SendError::Closed(_) => SendError::Closed(Bytes::new()),
            })
    }

    /// Runs `f` once the connection has room again.
    pub fn notify_when_room(&self, f: impl FnOnce() + Send + 'static) {
        self.conn.notify_when_room(f);
    }

    /// Ends the response.
    pub fn finish(mut self) {
        self.finished = true;
        let _ = self.conn.send_reply(BodyOut::Finish(self.id));
    }
}

impl Drop for BodySender {
    fn drop(&mut self) {
        if !self.finished && *self.sent.get_mut() {
            let _ = self.conn.send_reply(BodyOut::Abort(self.id));
        }
    }
}
