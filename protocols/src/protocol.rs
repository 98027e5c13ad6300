//! The protocol traits the I/O actors are generic over.
//!
//! A protocol is two things: a description (`Protocol`: name, port, wire properties, limits and
//! timeouts as data) and per-connection sans-I/O codecs (`ServerCodec`, `ClientCodec`): bytes
//! in, events out, bytes to send out, timers as data. The codecs never touch a socket, a clock
//! or a thread, so an I/O actor can drive them on any transport and tests can drive them with
//! byte slices and made-up instants.
//!
//! Request correlation is by [`RequestId`]: a codec numbers requests in arrival order (server)
//! or send order (client). Pipelined protocols (HTTP/1.1, RESP, PostgreSQL) answer in that
//! order, and the codec reorders answers itself; multiplexed ones (HTTP/2) may use the wire's
//! own stream id. Either way the I/O actor only keeps `RequestId -> ReplyTo`.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

/// Identifies one request on one connection (unique for the connection's lifetime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Whether a protocol's wire format is text or binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// Human-readable lines (HTTP/1.1, RESP inline commands).
    Text,
    /// Length-prefixed binary frames (HTTP/2, PostgreSQL, Kafka).
    Binary,
}

/// How many requests a connection can carry at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Multiplexing {
    /// One request at a time.
    None,
    /// Several requests in flight, answered in order (HTTP/1.1, RESP, PostgreSQL).
    Pipelined,
    /// Several requests in flight, answered in any order (HTTP/2, Kafka).
    Multiplexed,
}

/// Static facts about a protocol, for routing, listeners and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolInfo {
    /// Identifier, e.g. `"HTTP/1.1"`.
    pub name: &'static str,
    /// The standard port.
    pub default_port: u16,
    /// Text or binary.
    pub wire_format: WireFormat,
    /// Whether bodies or messages can be streamed in parts.
    pub streaming: bool,
    /// Whether the protocol must run over TLS.
    pub tls_required: bool,
    /// Concurrency on one connection.
    pub multiplexing: Multiplexing,
}

/// Connection timeouts as data; a codec turns them into deadlines (`next_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProtocolTimeouts {
    /// Time allowed to receive one request head (server) or connect (client).
    pub request_read: Option<Duration>,
    /// Time an idle connection stays open.
    pub idle: Option<Duration>,
    /// Time allowed for a response (client).
    pub response: Option<Duration>,
}

/// Which timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// A request head did not arrive in time (slowloris defence).
    RequestRead,
    /// An idle connection timed out.
    Idle,
    /// A response did not arrive in time.
    Response,
}

/// Who the peer is, for lifecycle hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// A connection number unique within the I/O worker.
    pub id: u64,
    /// The peer's address as text, if the transport has one.
    pub peer: Option<String>,
}

/// Why a connection ended, for [`ServerProtocol::on_disconnect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The codec finished (close requested, shutdown, or after an error response).
    Done,
    /// The peer closed.
    PeerClosed,
    /// A timer fired.
    Timeout(TimeoutKind),
    /// The transport failed.
    TransportError,
}

/// What a server codec reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent<Req, Trailers, Err> {
    /// A request (with its whole body, or a streamed body whose chunks follow).
    Request {
        /// Correlates the answer.
        id: RequestId,
        /// The request.
        request: Req,
    },
    /// Part of a streamed request body.
    BodyChunk {
        /// The request the data belongs to.
        id: RequestId,
        /// Zero-copy slice of the receive buffer.
        data: Bytes,
    },
    /// A streamed request body is complete.
    BodyEnd {
        /// The request.
        id: RequestId,
        /// Trailing fields, if the protocol has them.
        trailers: Option<Trailers>,
    },
    /// The input was bad. The codec has already queued the protocol's error response (see
    /// [`ServerProtocol::error_response`]) behind any earlier answers and will close if the
    /// protocol demands it; `id` names the affected request if the application saw it.
    Error {
        /// The request the application already knows about, if any.
        id: Option<RequestId>,
        /// What was wrong.
        error: Err,
    },
}

/// Where a server codec writes a decoded request in place
/// ([`ServerCodec::poll_event_into`]): a caller-owned, possibly uninitialised slot (inside the
/// allocation the request is sent on in, for an I/O actor) and whether it was written.
///
/// A request built straight into its slot is never moved: a move right after the request's
/// fields were stored reads them back wider than they were written, which stalls the CPU on
/// every request (store forwarding; `perf` put ~2% of a pipelined HTTP server's time there).
///
/// The place never drops what it holds: once [`RequestPlace::is_written`] says so, the request
/// belongs to the slot's owner.
///
/// ```
/// use std::mem::MaybeUninit;
/// use sinew_protocols::protocol::RequestPlace;
///
/// let mut slot = MaybeUninit::<String>::uninit();
/// let mut place = RequestPlace::new(&mut slot);
/// assert!(!place.is_written());
/// place.put(String::from("GET /"));
/// assert!(place.is_written());
/// // SAFETY: `is_written` said the slot holds a value, and it is read out once.
/// let request = unsafe { slot.assume_init() };
/// assert_eq!(request, "GET /");
/// ```
pub struct RequestPlace<'a, R> {
    slot: &'a mut std::mem::MaybeUninit<R>,
    written: bool,
}

impl<'a, R> RequestPlace<'a, R> {
    /// A place writing into `slot`, not written yet.
    #[inline(always)]
    pub fn new(slot: &'a mut std::mem::MaybeUninit<R>) -> Self {
        RequestPlace {
            slot,
            written: false,
        }
    }

    /// Writes the request into the slot. A second `put` drops the first request.
    #[inline(always)]
    pub fn put(&mut self, request: R) {
        if self.written {
            // SAFETY: `written` is set only after the slot was written, and nothing has read
            // the value out since (the place's owner takes it only after the place is gone,
            // its borrow of the slot ended).
            unsafe { self.slot.assume_init_drop() };
        }
        self.slot.write(request);
        self.written = true;
    }

    /// Whether the slot holds a request written through this place.
    #[inline(always)]
    pub fn is_written(&self) -> bool {
        self.written
    }
}

impl<R> fmt::Debug for RequestPlace<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestPlace")
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

/// What a client codec reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent<Resp, Trailers, Err> {
    /// The response to request `id` (whole, or with a streamed body whose chunks follow).
    Response {
        /// The request this answers.
        id: RequestId,
        /// The response.
        response: Resp,
    },
    /// Part of a streamed response body.
    BodyChunk {
        /// The request the data answers.
        id: RequestId,
        /// Zero-copy slice of the receive buffer.
        data: Bytes,
    },
    /// A streamed response body is complete.
    BodyEnd {
        /// The request.
        id: RequestId,
        /// Trailing fields, if any.
        trailers: Option<Trailers>,
    },
    /// A message the peer sent on its own, answering no request: a RESP3 push, a RESP2
    /// pub/sub message, a server-sent notification. Protocols without the notion never
    /// produce it.
    Push {
        /// The message.
        message: Resp,
    },
    /// Request `id` (or the connection, if `None`) failed; every outstanding request gets
    /// exactly one such event or a response, so no caller hangs.
    Error {
        /// The failed request, if the failure belongs to one.
        id: Option<RequestId>,
        /// What went wrong.
        error: Err,
    },
}

/// A protocol's description and shared configuration.
pub trait Protocol {
    /// The request type (decoded by servers, encoded by clients).
    type Request;
    /// The response type (encoded by servers, decoded by clients).
    type Response;
    /// Extra fields after a streamed body (HTTP trailers); `()` if the protocol has none.
    type Trailers;
    /// Decode and encode errors.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Static facts: name, default port, format, streaming, TLS, multiplexing.
    fn info(&self) -> ProtocolInfo;
    /// Largest request (or response) body accepted, in bytes.
    fn max_message_size(&self) -> u64;
    /// Timeouts as data.
    fn timeouts(&self) -> ProtocolTimeouts;
}

/// Server side of a protocol: makes connection codecs and says how to answer failures.
pub trait ServerProtocol: Protocol {
    /// The per-connection server codec.
    type Codec: ServerCodec<
        Request = Self::Request,
        Response = Self::Response,
        Trailers = Self::Trailers,
        Error = Self::Error,
    >;

    /// A codec for a new connection accepted at `now`.
    fn new_codec(&self, now: Instant) -> Self::Codec;
    /// The protocol's own answer to a decode error (HTTP: a 4xx/5xx; RESP: an error reply),
    /// or `None` if the protocol just closes.
    fn error_response(&self, error: &Self::Error) -> Option<Self::Response>;
    /// The protocol's answer when the application is unavailable (a handler panicked, or a
    /// mailbox is full and the I/O actor sheds): HTTP 503, a RESP error, ...
    fn unavailable_response(&self) -> Self::Response;
    /// A canned "healthy" answer for health-check routes.
    fn health_check_response(&self) -> Self::Response;
    /// The protocol's answer to a client over its rate limit (HTTP 429 with `Retry-After`).
    /// Default: the "unavailable" response.
    fn rate_limited_response(&self, _retry_after: Duration) -> Self::Response {
        self.unavailable_response()
    }
    /// Whether this request's body follows it in parts (the codec reports `BodyChunk`s and a
    /// `BodyEnd`): the I/O layer then hands the application a stream to read them from.
    /// Default: never.
    fn streams_body(&self, _request: &Self::Request) -> bool {
        false
    }
    /// Whether the application needs a way to send this connection messages that answer no
    /// request (a RESP `SUBSCRIBE`): the I/O layer then hands it a push handle with the
    /// request. Default: never.
    fn needs_push(&self, _request: &Self::Request) -> bool {
        false
    }

    /// Called when a connection is accepted.
    fn on_connect(&self, _info: &ConnectionInfo) {}
    /// Called when a connection ends.
    fn on_disconnect(&self, _info: &ConnectionInfo, _reason: DisconnectReason) {}
    /// Called when the codec reports an error.
    fn on_error(&self, _info: &ConnectionInfo, _error: &Self::Error) {}
    /// Called when a timer fires.
    fn on_timeout(&self, _info: &ConnectionInfo, _kind: TimeoutKind) {}
}

/// Client side of a protocol: makes connection codecs.
pub trait ClientProtocol: Protocol {
    /// The per-connection client codec.
    type Codec: ClientCodec<
        Request = Self::Request,
        Response = Self::Response,
        Trailers = Self::Trailers,
        Error = Self::Error,
    >;

    /// A codec for a connection established at `now`.
    fn new_codec(&self, now: Instant) -> Self::Codec;
    /// A request suitable for probing the peer's health, if the protocol has one
    /// (RESP `PING`, an HTTP `GET` of a health path).
    fn health_check_request(&self) -> Option<Self::Request>;

    /// Called when a connection is established.
    fn on_connect(&self, _info: &ConnectionInfo) {}
    /// Called when a connection ends.
    fn on_disconnect(&self, _info: &ConnectionInfo, _reason: DisconnectReason) {}
    /// Called when the codec reports an error.
    fn on_error(&self, _info: &ConnectionInfo, _error: &Self::Error) {}
    /// Called when a timer fires.
    fn on_timeout(&self, _info: &ConnectionInfo, _kind: TimeoutKind) {}
}

/// A server connection's sans-I/O state machine.
///
/// Driving loop: append received bytes to a `BytesMut` and call [`poll_event`] until `None`;
/// answer with [`send_response`]; send whatever [`poll_transmit`] yields; arm a timer for
/// [`next_timeout`] and call [`on_timeout`] when it fires; read only while [`wants_read`];
/// close the transport when [`should_close`].
///
/// [`poll_event`]: ServerCodec::poll_event
/// [`send_response`]: ServerCodec::send_response
/// [`poll_transmit`]: ServerCodec::poll_transmit
/// [`next_timeout`]: ServerCodec::next_timeout
/// [`on_timeout`]: ServerCodec::on_timeout
/// [`wants_read`]: ServerCodec::wants_read
/// [`should_close`]: ServerCodec::should_close
pub trait ServerCodec {
    /// Decoded requests.
    type Request;
    /// Responses to encode.
    type Response;
    /// Fields after a streamed body.
    type Trailers;
    /// Errors.
    type Error;

    /// Decodes the next event from the front of `buf` (consumed bytes are split off).
    fn poll_event(
        &mut self,
        buf: &mut BytesMut,
        now: Instant,
    ) -> Option<ServerEvent<Self::Request, Self::Trailers, Self::Error>>;
    /// [`poll_event`](Self::poll_event) with a decoded request written into `place` instead
    /// of returned: a [`ServerEvent::Request`] comes back with `()` for its request, and the
    /// request is in the place ([`RequestPlace::is_written`]). An I/O actor passes the slot
    /// of the message the request travels in, so the request is built where it goes. The
    /// default decodes with `poll_event` and moves the request into the place; codecs that
    /// build requests in place override it.
    #[inline(always)]
    fn poll_event_into(
        &mut self,
        buf: &mut BytesMut,
        now: Instant,
        place: &mut RequestPlace<'_, Self::Request>,
    ) -> Option<ServerEvent<(), Self::Trailers, Self::Error>> {
        Some(match self.poll_event(buf, now)? {
            ServerEvent::Request { id, request } => {
                place.put(request);
                ServerEvent::Request { id, request: () }
            }
            ServerEvent::BodyChunk { id, data } => ServerEvent::BodyChunk { id, data },
            ServerEvent::BodyEnd { id, trailers } => ServerEvent::BodyEnd { id, trailers },
            ServerEvent::Error { id, error } => ServerEvent::Error { id, error },
        })
    }
    /// Answers request `id`; answers may come in any order, they are sent in request order.
    fn send_response(&mut self, id: RequestId, response: Self::Response)
        -> Result<(), Self::Error>;
    /// Answers request `id` from a borrowed response when the codec can (it copies what it
    /// sends, as for a small answer that goes straight to the wire), and says whether it did;
    /// otherwise nothing happens and the caller hands the response over with
    /// [`send_response`](Self::send_response). An I/O actor holding the answer in a box then
    /// never moves it out. The default never can.
    fn try_send_borrowed(&mut self, id: RequestId, response: &Self::Response) -> bool {
        let _ = (id, response);
        false
    }
    /// Sends part of a streamed response body.
    fn send_body_chunk(&mut self, id: RequestId, data: Bytes) -> Result<(), Self::Error>;
    /// Ends a streamed response body.
    fn finish_body(
        &mut self,
        id: RequestId,
        trailers: Option<Self::Trailers>,
    ) -> Result<(), Self::Error>;
    /// Queues a message that answers no request (RESP pub/sub messages and RESP3 pushes,
    /// WebSocket server frames): it goes out after the answers already queued in order, ahead
    /// of answers still missing. Returns `false` (and drops the message) when the protocol or
    /// the connection's current state has no such notion; the default is that.
    fn send_push(&mut self, _message: Self::Response) -> bool {
        false
    }
    /// The application starts reading request `id`'s streamed body (HTTP: sends
    /// `100 Continue` if the client asked for it). A no-op for protocols without the notion.
    fn read_body(&mut self, _id: RequestId) {}
    /// Whether the codec needs the wall-clock time at `now` (monotonic) for what it puts on
    /// the wire (HTTP's `Date`): only then does the I/O layer read the wall clock for
    /// [`ServerCodec::set_wall_clock`]. A codec that shows whole seconds asks once a second.
    fn wants_wall_clock(&self, _now: Instant) -> bool {
        false
    }
    /// The wall-clock time `wall`, read at monotonic time `now`, for protocols that put it on
    /// the wire (HTTP's `Date`). The I/O layer calls it before encoding when
    /// [`ServerCodec::wants_wall_clock`] says so.
    fn set_wall_clock(&mut self, _wall: std::time::SystemTime, _now: Instant) {}
    /// The next bytes to send, in order; `now` arms idle timers once output drains.
    fn poll_transmit(&mut self, now: Instant) -> Option<Bytes>;
    /// The earliest deadline the caller must report through `on_timeout`.
    fn next_timeout(&self) -> Option<Instant>;
    /// Expires timers due at `now`; returns which fired, if any.
    fn on_timeout(&mut self, now: Instant) -> Option<TimeoutKind>;
    /// The peer closed its sending side (call after draining `poll_event`). Returns an error
    /// event if a request the application has seen was cut short.
    fn on_eof(&mut self) -> Option<ServerEvent<Self::Request, Self::Trailers, Self::Error>>;
    /// Graceful shutdown: read no new requests, finish in-flight ones, then close.
    fn shutdown(&mut self);
    /// Whether the caller should read more input (false under backpressure or when done).
    fn wants_read(&self) -> bool;
    /// Whether everything is sent and the connection should now be closed.
    fn should_close(&self) -> bool;
}

/// A client connection's sans-I/O state machine (driven like [`ServerCodec`]).
pub trait ClientCodec {
    /// Requests to encode.
    type Request;
    /// Decoded responses.
    type Response;
    /// Fields after a streamed body.
    type Trailers;
    /// Errors.
    type Error;

    /// Encodes a request and queues it; the id correlates the response.
    fn send_request(&mut self, request: Self::Request) -> Result<RequestId, Self::Error>;
    /// Sends part of a streamed request body.
    fn send_body_chunk(&mut self, id: RequestId, data: Bytes) -> Result<(), Self::Error>;
    /// Ends a streamed request body.
    fn finish_body(
        &mut self,
        id: RequestId,
        trailers: Option<Self::Trailers>,
    ) -> Result<(), Self::Error>;
    /// Decodes the next event from the front of `buf`.
    fn poll_event(
        &mut self,
        buf: &mut BytesMut,
        now: Instant,
    ) -> Option<ClientEvent<Self::Response, Self::Trailers, Self::Error>>;
    /// The next bytes to send, in order; `now` arms the response timer.
    fn poll_transmit(&mut self, now: Instant) -> Option<Bytes>;
    /// The earliest deadline the caller must report through `on_timeout`.
    fn next_timeout(&self) -> Option<Instant>;
    /// Expires timers due at `now`.
    fn on_timeout(&mut self, now: Instant) -> Option<TimeoutKind>;
    /// The peer closed (ends close-delimited bodies; fails the rest).
    fn on_eof(&mut self);
    /// Requests sent and not yet fully answered.
    fn in_flight(&self) -> usize;
    /// Whether another request may be sent on this connection (keep-alive reuse).
    fn is_reusable(&self) -> bool;
    /// Whether the connection should now be closed.
    fn should_close(&self) -> bool;
}
