//! The RESP server connection state machine.
//!
//! Commands are decoded in arrival order and numbered; each gets a slot in an ordered output
//! queue. Answers may come in any order (different actors, different cores), but they are
//! encoded and released strictly in request order: an answer that arrives early waits, as a
//! [`Value`], in its slot. Encoding at release time is what makes `HELLO` work with
//! out-of-order answers: the protocol version in force for a reply is known only once every
//! earlier reply has gone out.
//!
//! After a protocol error nothing more is read: the error reply takes the next slot and the
//! connection closes once it is flushed, as redis-server does.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::command::{parse_i64, CommandDecoder};
use super::encode::{encode_into, Wire};
use super::error::{error_reply, RespError};
use super::limits::RespLimits;
use super::value::{Command, Value};
use super::{Resp, RespVersion};
use crate::protocol::{RequestId, ServerCodec, ServerEvent, TimeoutKind};

/// An event from [`RespServerCodec::poll_event`].
pub type RespServerEvent = ServerEvent<Command, (), RespError>;

/// What releasing a slot's answer does besides writing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotKind {
    Plain,
    /// `HELLO <protover>`: a non-error answer switches to that version (the answer itself
    /// is encoded in the new version, as redis does).
    Hello(RespVersion),
    /// `RESET`: a non-error answer switches back to RESP2.
    Reset,
    /// `QUIT`: the connection closes after the answer.
    Quit,
    /// A protocol error reply: the connection closes after it.
    Fatal,
}

#[derive(Debug)]
struct Slot {
    kind: SlotKind,
    answer: Option<Value>,
}

fn classify(cmd: &Command) -> SlotKind {
    // Cheap on the hot path: `is` compares lengths first.
    if cmd.is("hello") {
        match cmd.get(1).and_then(|v| parse_i64(v)) {
            Some(2) => SlotKind::Hello(RespVersion::Resp2),
            Some(3) => SlotKind::Hello(RespVersion::Resp3),
            _ => SlotKind::Plain,
        }
    } else if cmd.is("reset") {
        SlotKind::Reset
    } else if cmd.is("quit") {
        SlotKind::Quit
    } else {
        SlotKind::Plain
    }
}

/// One server-side RESP connection (sans-I/O).
///
/// See the [module documentation](super) for a driving example and [`ServerCodec`] for the
/// driving loop.
///
/// - Commands are numbered in arrival order; answers may come in any order and are encoded
///   and sent in request order (an early answer waits as a [`Value`]).
/// - The connection starts in RESP2. When the answer to `HELLO 2` or `HELLO 3` is not an
///   error, that answer and everything after it are encoded in the requested version (the
///   application builds the HELLO reply; the codec only switches). A non-error answer to
///   `RESET` switches back to RESP2.
/// - `QUIT`: nothing after it is read, and the connection closes once its answer is sent.
/// - Malformed input: [`ServerEvent::Error`], the error reply (redis's wording) queued
///   behind earlier answers, nothing more read, a close once it is flushed.
/// - Backpressure: no decoding while `max_pipeline` commands are unanswered or
///   `max_buffered_output` bytes wait to be sent.
#[derive(Debug)]
pub struct RespServerCodec {
    limits: RespLimits,
    idle: Option<Duration>,
    decoder: CommandDecoder,
    version: RespVersion,
    /// False once nothing more will be decoded (error, EOF, shutdown, QUIT, idle timeout).
    reading: bool,
    /// Id of `slots[0]`.
    base: u64,
    next_id: u64,
    slots: VecDeque<Slot>,
    wire: Wire,
    /// A closing answer has been released: nothing follows it.
    closing: bool,
    idle_deadline: Option<Instant>,
    /// The input buffer's length when `poll_event` last ran dry (to notice progress).
    seen_len: usize,
}

impl RespServerCodec {
    /// A connection accepted at `now`, configured by `config` (its limits and idle timeout;
    /// `config.version` is a client setting and is ignored here).
    pub fn new(config: Resp, now: Instant) -> Self {
        RespServerCodec {
            limits: config.limits,
            idle: config.timeouts.idle,
            decoder: CommandDecoder::default(),
            version: RespVersion::Resp2,
            reading: true,
            base: 0,
            next_id: 0,
            slots: VecDeque::new(),
            wire: Wire::default(),
            closing: false,
            idle_deadline: config.timeouts.idle.map(|t| now + t),
            seen_len: 0,
        }
    }

    /// The protocol version replies are currently encoded in.
    pub fn version(&self) -> RespVersion {
        self.version
    }

    /// Commands decoded and not yet answered (or answered but waiting behind an earlier one).
    pub fn in_flight(&self) -> usize {
        self.slots.len()
    }

    /// Whether bytes are waiting in [`poll_transmit`](Self::poll_transmit).
    pub fn has_output(&self) -> bool {
        !self.wire.is_empty()
    }

    fn backpressured(&self) -> bool {
        self.slots.len() >= self.limits.max_pipeline
            || self.wire.len() >= self.limits.max_buffered_output
    }

    /// Decodes the next command from the front of `buf`.
    ///
    /// Returns `None` when more input is needed, when `max_pipeline` commands are waiting for
    /// answers or too much output is buffered (backpressure: call again after answering and
    /// transmitting), or when nothing more will be read.
    pub fn poll_event(&mut self, buf: &mut BytesMut, now: Instant) -> Option<RespServerEvent> {
        if !self.reading || self.backpressured() {
            return None;
        }
        match self.decoder.decode(buf, &self.limits) {
            Ok(Some(request)) => {
                self.idle_deadline = None;
                self.seen_len = buf.len();
                let kind = classify(&request);
                if kind == SlotKind::Quit {
                    self.reading = false;
                }
                let id = self.push_slot(kind, None);
                Some(ServerEvent::Request { id, request })
            }
            Ok(None) => {
                let progressed = buf.len() != self.seen_len;
                self.seen_len = buf.len();
                self.arm_idle(now, progressed);
                None
            }
            Err(error) => Some(self.fail(error)),
        }
    }

    fn push_slot(&mut self, kind: SlotKind, answer: Option<Value>) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        self.slots.push_back(Slot { kind, answer });
        RequestId(id)
    }

    /// A protocol error: queue the error reply in order, stop reading, close after flush.
    fn fail(&mut self, error: RespError) -> RespServerEvent {
        self.reading = false;
        self.idle_deadline = None;
        self.push_slot(SlotKind::Fatal, Some(error_reply(&error)));
        self.advance();
        ServerEvent::Error { id: None, error }
    }

    /// The idle timer runs while nothing is in flight; new input bytes push it back.
    fn arm_idle(&mut self, now: Instant, progressed: bool) {
        let Some(idle) = self.idle else { return };
        let idle_now = self.reading && self.slots.is_empty() && self.wire.is_empty();
        if !idle_now {
            self.idle_deadline = None;
        } else if progressed || self.idle_deadline.is_none() {
            self.idle_deadline = Some(now + idle);
        }
    }

    /// Answers request `id`. Answers may come in any order; they are sent in request order,
    /// each encoded in the protocol version in force when its turn comes.
    pub fn send_response(&mut self, id: RequestId, response: Value) -> Result<(), RespError> {
        let idx =
            id.0.checked_sub(self.base)
                .and_then(|i| usize::try_from(i).ok())
                .filter(|&i| i < self.slots.len())
                .ok_or(RespError::UnknownRequest)?;
        let slot = &mut self.slots[idx];
        if slot.answer.is_some() {
            return Err(RespError::UnknownRequest);
        }
        slot.answer = Some(response);
        if idx == 0 {
            self.advance();
        }
        Ok(())
    }

    /// The answer to the oldest open request, a plain command, encoded from where it lies
    /// (see [`ServerCodec::try_send_borrowed`]); false, with nothing done, for any other.
    #[inline]
    pub fn try_send_borrowed(&mut self, id: RequestId, response: &Value) -> bool {
        if id.0 != self.base
            || !self
                .slots
                .front()
                .is_some_and(|s| s.kind == SlotKind::Plain && s.answer.is_none())
        {
            return false;
        }
        self.slots.pop_front();
        self.base += 1;
        encode_into(&mut self.wire, response, self.version, true);
        // Later answers that came first wait in their slots: release what is now complete.
        self.advance();
        true
    }

    /// Encodes answered slots from the front, in order.
    fn advance(&mut self) {
        while self.slots.front().is_some_and(|s| s.answer.is_some()) {
            let Some(Slot {
                kind,
                answer: Some(answer),
            }) = self.slots.pop_front()
            else {
                break;
            };
            self.base += 1;
            if let SlotKind::Hello(v) = kind {
                if !answer.is_error() {
                    // Redis answers HELLO in the protocol it switches to.
                    self.version = v;
                }
            }
            encode_into(&mut self.wire, &answer, self.version, true);
            match kind {
                SlotKind::Reset if !answer.is_error() => self.version = RespVersion::Resp2,
                SlotKind::Quit | SlotKind::Fatal => {
                    self.closing = true;
                    self.reading = false;
                    self.slots.clear();
                    break;
                }
                _ => {}
            }
        }
    }

    /// Queues a message that answers no request (a pub/sub message; build it as
    /// [`Value::Push`], which RESP2 sends as an array). It goes out right after the answers
    /// already released, ahead of answers still missing. Returns `false` and drops the
    /// message when the connection is closing or `max_buffered_output` bytes are already
    /// waiting (a slow reader; redis would disconnect it, the application may do the same).
    pub fn send_push(&mut self, message: Value) -> bool {
        if self.closing || self.wire.len() >= self.limits.max_buffered_output {
            return false;
        }
        encode_into(&mut self.wire, &message, self.version, true);
        true
    }

    /// The next bytes to send: everything ready, coalesced into one buffer (large bulk
    /// strings come as their own parts, uncopied). Once everything is sent and nothing is in
    /// flight, the idle timer is armed from `now`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        let out = self.wire.pop();
        if out.is_none() {
            self.arm_idle(now, false);
        }
        out
    }

    /// The idle deadline, if `timeouts.idle` is set and nothing is in flight.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.idle_deadline
    }

    /// Expires the idle timer: an idle connection stops reading and closes.
    pub fn on_timeout(&mut self, now: Instant) -> Option<TimeoutKind> {
        if self.idle_deadline.is_some_and(|d| now >= d) {
            self.idle_deadline = None;
            if self.reading && self.slots.is_empty() && self.wire.is_empty() {
                self.reading = false;
                return Some(TimeoutKind::Idle);
            }
        }
        None
    }

    /// The peer closed its sending side: nothing more is read (a partial command is
    /// dropped, as redis does); decoded commands are still answered, then the connection
    /// closes. Commands are whole when the application sees them, so this never reports an
    /// error.
    pub fn on_eof(&mut self) -> Option<RespServerEvent> {
        self.reading = false;
        self.idle_deadline = None;
        None
    }

    /// Graceful shutdown: read no new commands, answer in-flight ones, then close.
    pub fn shutdown(&mut self) {
        self.reading = false;
        self.idle_deadline = None;
    }

    /// Whether the caller should read more input.
    pub fn wants_read(&self) -> bool {
        self.reading && !self.backpressured()
    }

    /// Whether all output is sent and the transport should be closed now.
    pub fn should_close(&self) -> bool {
        self.wire.is_empty() && (self.closing || (!self.reading && self.slots.is_empty()))
    }
}

impl ServerCodec for RespServerCodec {
    type Request = Command;
    type Response = Value;
    type Trailers = ();
    type Error = RespError;

    fn poll_event(&mut self, buf: &mut BytesMut, now: Instant) -> Option<RespServerEvent> {
        RespServerCodec::poll_event(self, buf, now)
    }
    fn send_response(&mut self, id: RequestId, response: Value) -> Result<(), RespError> {
        RespServerCodec::send_response(self, id, response)
    }
    #[inline]
    fn try_send_borrowed(&mut self, id: RequestId, response: &Value) -> bool {
        RespServerCodec::try_send_borrowed(self, id, response)
    }
    fn send_body_chunk(&mut self, _id: RequestId, _data: Bytes) -> Result<(), RespError> {
        Err(RespError::StreamingNotSupported)
    }
    fn finish_body(&mut self, _id: RequestId, _trailers: Option<()>) -> Result<(), RespError> {
        Err(RespError::StreamingNotSupported)
    }
    fn send_push(&mut self, message: Value) -> bool {
        RespServerCodec::send_push(self, message)
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        RespServerCodec::poll_transmit(self, now)
    }
    fn next_timeout(&self) -> Option<Instant> {
        RespServerCodec::next_timeout(self)
    }
    fn on_timeout(&mut self, now: Instant) -> Option<TimeoutKind> {
        RespServerCodec::on_timeout(self, now)
    }
    fn on_eof(&mut self) -> Option<RespServerEvent> {
        RespServerCodec::on_eof(self)
    }
    fn shutdown(&mut self) {
        RespServerCodec::shutdown(self)
    }
    fn wants_read(&self) -> bool {
        RespServerCodec::wants_read(self)
    }
    fn should_close(&self) -> bool {
        RespServerCodec::should_close(self)
    }
}
