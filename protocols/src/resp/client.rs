//! The RESP client connection state machine.
//!
//! Commands are encoded as they are sent and remembered in a FIFO: Redis answers in order,
//! so each decoded reply answers the oldest outstanding command, and pipelining is just
//! sending again before the previous answer arrived. On any failure every outstanding
//! command still gets exactly one event (an error), so nothing waiting on this connection
//! hangs.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::command::parse_i64;
use super::encode::{encode_command_into, Wire};
use super::error::RespError;
use super::limits::RespLimits;
use super::reply::{self, ReplyScanner};
use super::value::{Command, Value};
use super::{Resp, RespVersion};
use crate::protocol::{ClientCodec, ClientEvent, RequestId, TimeoutKind};

/// An event from [`RespClientCodec::poll_event`].
pub type RespClientEvent = ClientEvent<Value, (), RespError>;

/// The pub/sub command kinds, in the order of [`SubKind::NAMES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubKind {
    Subscribe,
    PSubscribe,
    SSubscribe,
    Unsubscribe,
    PUnsubscribe,
    SUnsubscribe,
}

impl SubKind {
    const ALL: [SubKind; 6] = [
        SubKind::Subscribe,
        SubKind::PSubscribe,
        SubKind::SSubscribe,
        SubKind::Unsubscribe,
        SubKind::PUnsubscribe,
        SubKind::SUnsubscribe,
    ];
    const NAMES: [&'static str; 6] = [
        "subscribe",
        "psubscribe",
        "ssubscribe",
        "unsubscribe",
        "punsubscribe",
        "sunsubscribe",
    ];

    fn from_name(name: &[u8]) -> Option<SubKind> {
        Self::NAMES
            .iter()
            .position(|n| name.eq_ignore_ascii_case(n.as_bytes()))
            .map(|i| Self::ALL[i])
    }

    /// Which subscription set it acts on: channels, patterns, shard channels.
    fn family(self) -> usize {
        match self {
            SubKind::Subscribe | SubKind::Unsubscribe => 0,
            SubKind::PSubscribe | SubKind::PUnsubscribe => 1,
            SubKind::SSubscribe | SubKind::SUnsubscribe => 2,
        }
    }

    fn is_unsubscribe(self) -> bool {
        matches!(
            self,
            SubKind::Unsubscribe | SubKind::PUnsubscribe | SubKind::SUnsubscribe
        )
    }
}

/// What an outstanding command's reply means to the codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Plain,
    Hello(RespVersion),
    Reset,
    Quit,
    /// A pub/sub command naming `channels` channels (0: all of them).
    Sub {
        kind: SubKind,
        channels: usize,
    },
}

fn classify(cmd: &Command) -> Expect {
    let name = cmd.name();
    if name.eq_ignore_ascii_case(b"hello") {
        match cmd.get(1).and_then(|v| parse_i64(v)) {
            Some(2) => Expect::Hello(RespVersion::Resp2),
            Some(3) => Expect::Hello(RespVersion::Resp3),
            _ => Expect::Plain,
        }
    } else if name.eq_ignore_ascii_case(b"reset") {
        Expect::Reset
    } else if name.eq_ignore_ascii_case(b"quit") {
        Expect::Quit
    } else if let Some(kind) = SubKind::from_name(name) {
        Expect::Sub {
            kind,
            channels: cmd.len() - 1,
        }
    } else {
        Expect::Plain
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    /// `None` for the codec's own `HELLO`.
    id: Option<u64>,
    expect: Expect,
}

/// What a decoded array or push looks like to pub/sub.
enum PubSub<'a> {
    /// `[kind, channel or null, count]`.
    Confirmation(SubKind, Option<&'a Bytes>),
    /// `message`, `pmessage`, `smessage`.
    Message,
}

fn pubsub(value: &Value) -> Option<PubSub<'_>> {
    let items = match value {
        Value::Array(items) | Value::Push(items) => items,
        _ => return None,
    };
    let name = items.first()?.as_bytes()?;
    if let Some(kind) = SubKind::from_name(name) {
        return match items.as_slice() {
            [_, channel, Value::Integer(_)] => Some(PubSub::Confirmation(kind, channel.as_bytes())),
            _ => None,
        };
    }
    let message = (items.len() == 3
        && (name.eq_ignore_ascii_case(b"message") || name.eq_ignore_ascii_case(b"smessage")))
        || (items.len() == 4 && name.eq_ignore_ascii_case(b"pmessage"));
    message.then_some(PubSub::Message)
}

/// One client-side RESP connection (sans-I/O), driven as [`ClientCodec`] describes.
///
/// # Protocol version
///
/// With [`Resp::version`] set to RESP3 the codec sends `HELLO 3` itself, before anything
/// else, and consumes its reply (callers never see it). If the server refuses (an error
/// reply: a Redis before 6, or `NOAUTH` on a server that wants `AUTH` first) the connection
/// stays in RESP2 and carries on: every command still works, only the reply types differ.
/// A `HELLO <2|3>` the caller sends itself switches the version the same way, and `RESET`
/// switches back to RESP2. Decoding itself does not depend on the version (each reply is
/// decoded from its own syntax), so the switch can never garble a reply.
///
/// # Pub/sub
///
/// A message that answers no command is reported as [`ClientEvent::Push`]. The rule:
///
/// - a RESP3 push frame (`>`) is a push, unless it is the first subscription confirmation
///   answering an outstanding `(P|S)(UN)SUBSCRIBE` (RESP3 servers confirm with pushes);
/// - a pub/sub confirmation (an array or push `[kind, channel, count]`, kind one of
///   `subscribe`, `psubscribe`, `ssubscribe`, `unsubscribe`, `punsubscribe`, `sunsubscribe`)
///   answers the oldest outstanding command if that is a command of the same kind;
///   a command naming k channels gets k confirmations, the first answers it and the other
///   k-1 are pushes (without channels, an unsubscribe gets one confirmation per channel of
///   that kind the connection is subscribed to, at least one);
/// - a confirmation that answers nothing is a push if the connection is subscribed or it
///   is an unsubscribe confirmation (the server may drop subscriptions on its own);
/// - while subscribed, `["message", channel, payload]`, `["pmessage", pattern, channel,
///   payload]` and `["smessage", channel, payload]` arrays are pushes;
/// - anything else answers the oldest outstanding command.
///
/// A subscribed connection is not [reusable](RespClientCodec::is_reusable) for ordinary
/// calls, but still accepts commands (more subscriptions, `UNSUBSCRIBE`, `PING`, `RESET`).
///
/// # Example
///
/// ```
/// use std::time::Instant;
/// use bytes::BytesMut;
/// use sinew_protocols::protocol::ClientEvent;
/// use sinew_protocols::resp::{Command, Resp, RespClientCodec, Value};
///
/// let now = Instant::now();
/// let mut conn = RespClientCodec::new(Resp::default(), now);
/// let get = conn.send_request(Command::new("GET").arg("k")).unwrap();
/// let wire = conn.poll_transmit(now).unwrap();
/// assert_eq!(&wire[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
/// // The reply arrives in two pieces.
/// let mut buf = BytesMut::from(&b"$2\r\nv"[..]);
/// assert!(conn.poll_event(&mut buf, now).is_none());
/// buf.extend_from_slice(b"1\r\n");
/// let event = conn.poll_event(&mut buf, now);
/// assert_eq!(event, Some(ClientEvent::Response { id: get, response: Value::bulk("v1") }));
/// assert_eq!(conn.in_flight(), 0);
/// ```
#[derive(Debug)]
pub struct RespClientCodec {
    limits: RespLimits,
    response_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    out: Wire,
    next_id: u64,
    pending: VecDeque<Pending>,
    /// Outstanding commands that have a caller (not the codec's own `HELLO`).
    callers: usize,
    /// Outstanding subscribe commands (the connection is about to be subscribed).
    subscribing: usize,
    scanner: ReplyScanner,
    version: RespVersion,
    /// Confirmations of this kind still due to a command already answered.
    extra_confirmations: Option<(SubKind, usize)>,
    /// Channels, patterns and shard channels subscribed to, from the confirmations of
    /// this connection's own commands.
    subscriptions: [HashSet<Bytes>; 3],
    /// Once set, nothing more is decoded and outstanding commands fail with this.
    closed: Option<RespError>,
    eof: bool,
    quit_sent: bool,
    response_deadline: Option<Instant>,
    idle_deadline: Option<Instant>,
}

impl RespClientCodec {
    /// A connection established at `now`. With `config.version` RESP3 the codec's own
    /// `HELLO 3` is the first thing it sends.
    pub fn new(config: Resp, now: Instant) -> Self {
        let mut codec = RespClientCodec {
            limits: config.limits,
            response_timeout: config.timeouts.response,
            idle_timeout: config.timeouts.idle,
            out: Wire::default(),
            next_id: 0,
            pending: VecDeque::new(),
            callers: 0,
            subscribing: 0,
            scanner: ReplyScanner::default(),
            version: RespVersion::Resp2,
            extra_confirmations: None,
            subscriptions: Default::default(),
            closed: None,
            eof: false,
            quit_sent: false,
            response_deadline: None,
            idle_deadline: None,
        };
        if config.version == RespVersion::Resp3 {
            let hello = Command::new("HELLO").arg("3");
            encode_command_into(&mut codec.out, &hello);
            codec.pending.push_back(Pending {
                id: None,
                expect: Expect::Hello(RespVersion::Resp3),
            });
        } else {
            codec.idle_deadline = config.timeouts.idle.map(|t| now + t);
        }
        codec
    }

    /// The protocol version the server has agreed to (RESP2 until a `HELLO 3` succeeded).
    pub fn version(&self) -> RespVersion {
        self.version
    }

    /// Whether the connection is in pub/sub mode (subscribed, or a subscription pending).
    pub fn is_subscribed(&self) -> bool {
        self.subscribing > 0 || self.has_subscriptions()
    }

    /// Whether confirmed subscriptions are active (what decides that a message is a push).
    fn has_subscriptions(&self) -> bool {
        self.subscriptions.iter().any(|s| !s.is_empty())
    }

    /// Encodes and queues a command (pipelining: earlier replies need not have arrived).
    /// Fails once the connection is closed or broken, or after `QUIT`.
    pub fn send_request(&mut self, request: Command) -> Result<RequestId, RespError> {
        if self.closed.is_some() || self.eof || self.quit_sent {
            return Err(RespError::ConnectionClosed);
        }
        let expect = classify(&request);
        match expect {
            Expect::Quit => self.quit_sent = true,
            Expect::Sub { kind, .. } if !kind.is_unsubscribe() => self.subscribing += 1,
            _ => {}
        }
        encode_command_into(&mut self.out, &request);
        let id = self.next_id;
        self.next_id += 1;
        self.pending.push_back(Pending {
            id: Some(id),
            expect,
        });
        self.callers += 1;
        self.idle_deadline = None;
        Ok(RequestId(id))
    }

    fn pop_pending(&mut self) -> Option<Pending> {
        let p = self.pending.pop_front()?;
        if p.id.is_some() {
            self.callers -= 1;
        }
        if let Expect::Sub { kind, .. } = p.expect {
            if !kind.is_unsubscribe() {
                self.subscribing -= 1;
            }
        }
        Some(p)
    }

    /// Stops decoding; outstanding commands will fail with `reason`.
    fn close(&mut self, reason: RespError) {
        if self.closed.is_none() {
            self.closed = Some(reason);
        }
        self.response_deadline = None;
        self.idle_deadline = None;
    }

    fn fail(&mut self, error: RespError) -> RespClientEvent {
        self.close(RespError::ConnectionClosed);
        ClientEvent::Error { id: None, error }
    }

    /// Re-arms the response timer after progress, or the idle timer when nothing is due.
    fn progress(&mut self, now: Instant) {
        self.response_deadline = if self.pending.is_empty() {
            None
        } else {
            self.response_timeout.map(|t| now + t)
        };
        if self.pending.is_empty() && !self.is_subscribed() && self.closed.is_none() {
            self.idle_deadline = self.idle_timeout.map(|t| now + t);
        }
    }

    /// Decodes the next event from `buf`. After the connection failed or closed, yields one
    /// error per outstanding command.
    pub fn poll_event(&mut self, buf: &mut BytesMut, now: Instant) -> Option<RespClientEvent> {
        loop {
            if let Some(reason) = &self.closed {
                let reason = reason.clone();
                while let Some(p) = self.pop_pending() {
                    if let Some(id) = p.id {
                        return Some(ClientEvent::Error {
                            id: Some(RequestId(id)),
                            error: reason,
                        });
                    }
                }
                return None;
            }
            let len = match self.scanner.scan(buf, &self.limits) {
                Ok(Some(len)) => len,
                Ok(None) if self.eof => {
                    self.close(RespError::ConnectionClosed);
                    if buf.is_empty() {
                        continue;
                    }
                    // A reply was cut short: it belonged to the oldest command.
                    match self.pending.front().and_then(|p| p.id) {
                        Some(id) => {
                            self.pop_pending();
                            return Some(ClientEvent::Error {
                                id: Some(RequestId(id)),
                                error: RespError::UnexpectedEof,
                            });
                        }
                        None => {
                            return Some(ClientEvent::Error {
                                id: None,
                                error: RespError::UnexpectedEof,
                            })
                        }
                    }
                }
                Ok(None) => return None,
                Err(e) => return Some(self.fail(e)),
            };
            let frame = buf.split_to(len).freeze();
            let value = match reply::decode(&frame) {
                Ok(v) => v,
                Err(e) => return Some(self.fail(e)),
            };
            if let Some(event) = self.route(value, now) {
                return Some(event);
            }
        }
    }

    /// Decides what a decoded value is: a push, or the answer to the oldest command.
    /// `None`: the codec consumed it (the reply to its own `HELLO`).
    fn route(&mut self, value: Value, now: Instant) -> Option<RespClientEvent> {
        match pubsub(&value) {
            Some(PubSub::Confirmation(kind, channel)) => {
                let channel = channel.cloned();
                if let Some((k, left)) = self.extra_confirmations {
                    if k == kind && left > 0 {
                        self.extra_confirmations = (left > 1).then_some((k, left - 1));
                        self.track(kind, channel);
                        return Some(ClientEvent::Push { message: value });
                    }
                }
                self.extra_confirmations = None;
                let front = self.pending.front().map(|p| p.expect);
                if let Some(Expect::Sub { kind: k, channels }) = front {
                    if k == kind {
                        let due = if channels > 0 {
                            channels
                        } else {
                            self.subscriptions[kind.family()].len().max(1)
                        };
                        self.extra_confirmations = (due > 1).then_some((kind, due - 1));
                        self.track(kind, channel);
                        return self.answer(value, now);
                    }
                }
                let push = matches!(value, Value::Push(_))
                    || self.has_subscriptions()
                    || kind.is_unsubscribe();
                // Only confirmations of our own commands add to the sets, so a server cannot
                // grow them beyond what was asked for.
                if kind.is_unsubscribe() {
                    self.track(kind, channel);
                }
                if push {
                    return Some(ClientEvent::Push { message: value });
                }
            }
            Some(PubSub::Message) if self.has_subscriptions() => {
                self.extra_confirmations = None;
                return Some(ClientEvent::Push { message: value });
            }
            _ => self.extra_confirmations = None,
        }
        if matches!(value, Value::Push(_)) {
            return Some(ClientEvent::Push { message: value });
        }
        self.answer(value, now)
    }

    /// Updates the subscription sets from a confirmation.
    fn track(&mut self, kind: SubKind, channel: Option<Bytes>) {
        let set = &mut self.subscriptions[kind.family()];
        match channel {
            Some(c) if kind.is_unsubscribe() => {
                set.remove(&c);
            }
            Some(c) => {
                set.insert(c);
            }
            None => {}
        }
    }

    /// `value` answers the oldest outstanding command.
    fn answer(&mut self, value: Value, now: Instant) -> Option<RespClientEvent> {
        let Some(p) = self.pop_pending() else {
            return Some(self.fail(RespError::UnsolicitedReply));
        };
        match p.expect {
            Expect::Hello(v) if !value.is_error() => self.version = v,
            Expect::Reset if !value.is_error() => {
                self.version = RespVersion::Resp2;
                self.subscriptions = Default::default();
                self.extra_confirmations = None;
            }
            Expect::Quit => self.close(RespError::ConnectionClosed),
            _ => {}
        }
        self.progress(now);
        p.id.map(|id| ClientEvent::Response {
            id: RequestId(id),
            response: value,
        })
    }

    /// The next bytes to send; arms the response timer from `now` while commands are
    /// outstanding.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        if self.response_deadline.is_none() && !self.pending.is_empty() && self.closed.is_none() {
            self.response_deadline = self.response_timeout.map(|t| now + t);
        }
        self.out.pop()
    }

    /// The earliest deadline: a reply due (`timeouts.response`, counted from the last
    /// progress while commands are outstanding) or idleness (`timeouts.idle`).
    pub fn next_timeout(&self) -> Option<Instant> {
        match (self.response_deadline, self.idle_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires timers due at `now`. A response timeout fails every outstanding command
    /// (reported by the following `poll_event` calls) and closes; an idle connection closes.
    pub fn on_timeout(&mut self, now: Instant) -> Option<TimeoutKind> {
        if self.response_deadline.is_some_and(|d| now >= d) {
            self.close(RespError::ResponseTimeout);
            return Some(TimeoutKind::Response);
        }
        if self.idle_deadline.is_some_and(|d| now >= d) {
            self.idle_deadline = None;
            if self.pending.is_empty() && self.closed.is_none() && !self.is_subscribed() {
                self.close(RespError::ConnectionClosed);
                return Some(TimeoutKind::Idle);
            }
        }
        None
    }

    /// The server closed: complete replies still buffered are decoded by the following
    /// `poll_event` calls, then every outstanding command fails.
    pub fn on_eof(&mut self) {
        self.eof = true;
    }

    /// Commands sent and not yet answered (the codec's own `HELLO` not counted).
    pub fn in_flight(&self) -> usize {
        self.callers
    }

    /// Whether the connection can carry ordinary calls: not closed or broken, no `QUIT`
    /// sent, and not in pub/sub mode.
    pub fn is_reusable(&self) -> bool {
        self.closed.is_none() && !self.eof && !self.quit_sent && !self.is_subscribed()
    }

    /// Whether the connection should be closed now (nothing more can be read and every
    /// command has been answered or failed).
    pub fn should_close(&self) -> bool {
        self.closed.is_some() && self.callers == 0
    }
}

impl ClientCodec for RespClientCodec {
    type Request = Command;
    type Response = Value;
    type Trailers = ();
    type Error = RespError;

    fn send_request(&mut self, request: Command) -> Result<RequestId, RespError> {
        RespClientCodec::send_request(self, request)
    }
    fn send_body_chunk(&mut self, _id: RequestId, _data: Bytes) -> Result<(), RespError> {
        Err(RespError::StreamingNotSupported)
    }
    fn finish_body(&mut self, _id: RequestId, _trailers: Option<()>) -> Result<(), RespError> {
        Err(RespError::StreamingNotSupported)
    }
    fn poll_event(&mut self, buf: &mut BytesMut, now: Instant) -> Option<RespClientEvent> {
        RespClientCodec::poll_event(self, buf, now)
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        RespClientCodec::poll_transmit(self, now)
    }
    fn next_timeout(&self) -> Option<Instant> {
        RespClientCodec::next_timeout(self)
    }
    fn on_timeout(&mut self, now: Instant) -> Option<TimeoutKind> {
        RespClientCodec::on_timeout(self, now)
    }
    fn on_eof(&mut self) {
        RespClientCodec::on_eof(self)
    }
    fn in_flight(&self) -> usize {
        RespClientCodec::in_flight(self)
    }
    fn is_reusable(&self) -> bool {
        RespClientCodec::is_reusable(self)
    }
    fn should_close(&self) -> bool {
        RespClientCodec::should_close(self)
    }
}
