//! Client I/O, generic over a protocol: a connection actor to one destination that pipelines
//! requests from many callers over one connection.
//!
//! Each call carries its caller's `ReplyTo`; the connection keeps them keyed by the codec's
//! request id (for pipelined protocols that is a FIFO) and answers each from the decoded
//! response. No correlation table exists above the connection: the reply address is the
//! correlation. When the connection fails, times out or closes, every outstanding call is
//! answered with an error at once.
//!
//! # Fault points
//!
//! Under simulation with buggify on (`sinew::testkit::Simulation::buggify`), a connection
//! misbehaves on purpose, the way real ones do, so simulations exercise what callers and pools
//! do about it. Each point costs one thread-local read when off (real systems never fire them):
//!
//! - a connect refused, as if nothing listened ([`BUGGIFY_CONNECT_REFUSED`]);
//! - a response held back past its deadline, as on a stalled peer ([`BUGGIFY_LATE_RESPONSE`]);
//! - an idle connection found closed by the peer when a call arrives, as when a server's idle
//!   timeout races the call ([`BUGGIFY_IDLE_CLOSE`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sinew_actors::{Actor, Context, Recipient, ReplyTo, SendError};
use sinew_protocols::protocol::{
    ClientCodec, ClientEvent, ClientProtocol, ConnectionInfo, DisconnectReason, Protocol, RequestId,
};
use sinew_transports::{Completion, Error as TransportError, Event, SockOpt, SocketId, Token};

use crate::deadline::Deadline;
use crate::worker_io::WorkerIo;

/// Probability that a connect is refused (fault point, simulation only).
pub(crate) const BUGGIFY_CONNECT_REFUSED: f64 = 0.02;
/// Probability that a read carrying a response is held back past the call's deadline (fault
/// point, simulation only).
pub(crate) const BUGGIFY_LATE_RESPONSE: f64 = 0.01;
/// Probability that a call on an idle connection finds it closed by the peer (fault point,
/// simulation only).
pub(crate) const BUGGIFY_IDLE_CLOSE: f64 = 0.02;

/// How late a held-back response arrives when the codec has no deadline of its own: past any
/// sensible call timeout.
const LATE_WITHOUT_DEADLINE: Duration = Duration::from_secs(2);

/// A client protocol whose connections can live in actors: codec, requests and responses
/// cross threads. Implemented for every such protocol.
pub trait PooledProtocol:
    ClientProtocol<Codec: Send + 'static>
    + Protocol<Request: Send + 'static, Response: Send + 'static>
    + Send
    + 'static
{
}

impl<T> PooledProtocol for T where
    T: ClientProtocol<Codec: Send + 'static>
        + Protocol<Request: Send + 'static, Response: Send + 'static>
        + Send
        + 'static
{
}

/// Why a call failed.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The connection could not be established or was lost (transient).
    #[error("connection failed: {0}")]
    Connection(String),
    /// The peer's response was malformed or the codec refused the request (fatal for this call).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The codec's response timeout fired (transient).
    #[error("response timed out")]
    Timeout,
}

impl ClientError {
    /// True when the same call may succeed on a new connection.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ClientError::Protocol(_))
    }
}

/// A call's answer.
pub type CallResult<P> = Result<<P as Protocol>::Response, ClientError>;

/// Messages of a client connection.
pub enum ClientMsg<P: ClientProtocol>
where
    P::Response: Send + 'static,
{
    /// Sends a request; the answer goes to the reply address.
    Call(P::Request, ReplyTo<CallResult<P>>),
    /// A completion from the worker's reactor.
    Io(Completion),
    /// A codec deadline may have passed.
    Timer,
    /// The connect deadline passed.
    ConnectTimeout,
    /// The push recipient has room again.
    Resume,
}

/// A connection to one destination.
pub struct ClientConn<P: ClientProtocol>
where
    P::Response: Send + 'static,
{
    protocol: P,
    codec: P::Codec,
    addr: SocketAddr,
    socket: Option<SocketId>,
    token: Option<Token>,
    connected: bool,
    /// Calls made before the connection was up.
    queued: Vec<(P::Request, ReplyTo<CallResult<P>>)>,
    /// Outstanding calls in send order: pipelined protocols answer the front, so lookups
    /// are O(1) there (multiplexed ones search).
    waiting: VecDeque<(RequestId, ReplyTo<CallResult<P>>)>,
    /// Where messages that answer no call go (pub/sub), if anywhere.
    pushes: Option<Recipient<P::Response>>,
    /// A push the recipient had no room for: events and reads wait until it is taken.
    held_push: Option<P::Response>,
    /// Something changed this turn: decode, write and read once the turn's messages are in.
    dirty: bool,
    rbuf: Option<BytesMut>,
    reading: bool,
    writes_in_flight: usize,
    closing: bool,
    /// The peer closed: errors the codec reports now are connection errors (a close-delimited
    /// response completed by the close is still delivered).
    eof: bool,
    timer: Deadline,
    /// How long connection setup may take (the protocol's request-read timeout by default).
    connect_timeout: Option<Duration>,
}

impl<P: PooledProtocol> ClientConn<P> {
    /// A connection to `addr`, opened when the actor starts.
    pub fn new(protocol: P, addr: SocketAddr) -> Self {
        let codec = protocol.new_codec(Instant::now());
        let connect_timeout = protocol.timeouts().request_read;
        ClientConn {
            protocol,
            codec,
            addr,
            socket: None,
            token: None,
            connected: false,
            queued: Vec::new(),
            waiting: VecDeque::new(),
            pushes: None,
            held_push: None,
            dirty: false,
            rbuf: Some(BytesMut::with_capacity(16 * 1024)),
            reading: false,
            writes_in_flight: 0,
            closing: false,
            eof: false,
            timer: Deadline::default(),
            connect_timeout,
        }
    }

    /// Bounds connection setup by `limit` instead of the protocol's request-read timeout
    /// (`None`: unbounded). When it passes, queued calls fail with a connection error.
    pub fn with_connect_timeout(mut self, limit: Option<Duration>) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// Sends messages the peer pushes on its own (pub/sub deliveries, RESP3 pushes) to
    /// `recipient`. Without one they are dropped. A full recipient pauses this connection
    /// (no more decoding or reading) until it has room: nothing is lost, and the server sees
    /// TCP back-pressure.
    pub fn with_pushes(mut self, recipient: Recipient<P::Response>) -> Self {
        self.pushes = Some(recipient);
        self
    }

    fn take_waiting(&mut self, id: RequestId) -> Option<ReplyTo<CallResult<P>>> {
        match self.waiting.front() {
            Some((front, _)) if *front == id => self.waiting.pop_front().map(|(_, r)| r),
            _ => {
                let at = self.waiting.iter().position(|(i, _)| *i == id)?;
                self.waiting.remove(at).map(|(_, r)| r)
            }
        }
    }

    /// Offers a push to the recipient; false when it is full and the push is now held.
    fn deliver_push(&mut self, message: P::Response, ctx: &mut Context<Self>) -> bool {
        let Some(to) = &self.pushes else {
            tracing::debug!("push dropped: no push recipient");
            return true;
        };
        match to.try_send(message) {
            Ok(()) => true,
            Err(SendError::Full(message)) => {
                self.held_push = Some(message);
                let me = ctx.addr();
                to.notify_when_room(move || {
                    let _ = me.send_reply(ClientMsg::Resume);
                });
                false
            }
            Err(SendError::Closed(_)) => {
                tracing::debug!("push dropped: push recipient stopped");
                true
            }
        }
    }

    fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            id: self.token.map_or(0, |t| t.0),
            peer: Some(self.addr.to_string()),
        }
    }

    fn send_call(&mut self, req: P::Request, reply: ReplyTo<CallResult<P>>) {
        match self.codec.send_request(req) {
            Ok(id) => {
                self.waiting.push_back((id, reply));
            }
            // A connection that is closing (the peer said `Connection: close`) refuses new
            // requests: nothing was sent, so that is a connection error, safe to retry.
            Err(_) if self.codec.should_close() => {
                reply.send(Err(ClientError::Connection(
                    "connection closing: request not sent".into(),
                )));
            }
            Err(_) => {
                reply.send(Err(ClientError::Protocol(
                    "request refused by the codec".into(),
                )));
            }
        }
    }

    fn step(&mut self, ctx: &mut Context<Self>) {
        let now = ctx.now();
        if let Some(mut buf) = self.rbuf.take() {
            while self.held_push.is_none() {
                let Some(ev) = self.codec.poll_event(&mut buf, now) else {
                    break;
                };
                match ev {
                    ClientEvent::Response { id, response } => {
                        if let Some(r) = self.take_waiting(id) {
                            r.send(Ok(response));
                        }
                    }
                    ClientEvent::Push { message } => {
                        self.deliver_push(message, ctx);
                    }
                    ClientEvent::Error { id, error } => {
                        let err = if self.eof {
                            ClientError::Connection(format!(
                                "peer closed before answering ({error:?})"
                            ))
                        } else {
                            ClientError::Protocol(format!("{error:?}"))
                        };
                        match id {
                            Some(id) => {
                                if let Some(r) = self.take_waiting(id) {
                                    r.send(Err(err));
                                }
                            }
                            None => self.fail_all(err),
                        }
                    }
                    // Streamed response bodies are not surfaced to callers yet.
                    ClientEvent::BodyChunk { .. } | ClientEvent::BodyEnd { .. } => {}
                }
            }
            self.rbuf = Some(buf);
        }
        self.flush(ctx, now);
        self.read(ctx);
        self.arm_timer(ctx, now);
        // Calls in flight are round trips someone waits on: the worker keeps spinning for
        // their answers rather than parking.
        ctx.set_awaiting_io(!self.waiting.is_empty());
    }

    fn flush(&mut self, ctx: &mut Context<Self>, now: Instant) {
        if !self.connected {
            return;
        }
        let mut out: Vec<Bytes> = Vec::new();
        while let Some(b) = self.codec.poll_transmit(now) {
            out.push(b);
        }
        let (Some(io), Some(token), Some(socket)) =
            (ctx.extension::<WorkerIo>(), self.token, self.socket)
        else {
            return;
        };
        if !out.is_empty() {
            self.writes_in_flight += 1;
            if out.len() == 1 {
                if let Some(b) = out.pop() {
                    io.reactor().send(socket, b, token);
                }
            } else {
                io.reactor().send_vectored(socket, out, token);
            }
        }
        if self.codec.should_close() && self.writes_in_flight == 0 {
            self.close(ctx);
        }
    }

    fn read(&mut self, ctx: &mut Context<Self>) {
        if !self.connected || self.reading || self.closing || self.held_push.is_some() {
            return;
        }
        let (Some(io), Some(token), Some(socket)) =
            (ctx.extension::<WorkerIo>(), self.token, self.socket)
        else {
            return;
        };
        let Some(mut buf) = self.rbuf.take() else {
            return;
        };
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        self.reading = true;
        io.reactor().recv(socket, buf, token);
    }

    fn arm_timer(&mut self, ctx: &mut Context<Self>, now: Instant) {
        let next = self.codec.next_timeout();
        self.timer.sync(ctx, next, now, || ClientMsg::Timer);
    }

    /// Fault point: how long to hold back this completion, when it carries response bytes
    /// and buggify says so (just past the codec's next deadline, so that deadline fires first).
    fn buggify_late(&self, c: &Completion, now: Instant) -> Option<Duration> {
        let data = matches!(c.event, Event::Received { result: Ok(n), .. } if n > 0);
        if !data || self.waiting.is_empty() || !sinew_actors::buggify(BUGGIFY_LATE_RESPONSE) {
            return None;
        }
        Some(match self.codec.next_timeout() {
            Some(t) => t.saturating_duration_since(now) + Duration::from_millis(1),
            None => LATE_WITHOUT_DEADLINE,
        })
    }

    /// The peer closed while the connection was idle: the call that found it fails like the
    /// rest of a closed connection's calls, and the connection closes.
    fn closed_by_peer(&mut self, reply: ReplyTo<CallResult<P>>, ctx: &mut Context<Self>) {
        self.eof = true;
        self.codec.on_eof();
        reply.send(Err(ClientError::Connection("peer closed".into())));
        self.fail_all(ClientError::Connection("peer closed".into()));
        self.close(ctx);
    }

    /// A completion from the reactor.
    fn on_io(&mut self, c: Completion, ctx: &mut Context<Self>) {
        match c.event {
            // A connect that completes after the connection gave up on it changes nothing.
            Event::Connected { .. } if self.closing => {}
            Event::Connected { result: Ok(()), .. } => {
                self.connected = true;
                self.protocol.on_connect(&self.info());
                for (req, reply) in std::mem::take(&mut self.queued) {
                    self.send_call(req, reply);
                }
                self.dirty = true;
            }
            Event::Connected { result: Err(e), .. } => {
                self.fail_all(ClientError::Connection(e.to_string()));
                self.close(ctx);
            }
            Event::Received {
                buf, result: Ok(n), ..
            } => {
                self.reading = false;
                self.rbuf = Some(buf);
                if n == 0 {
                    self.eof = true;
                    self.codec.on_eof();
                    // Deliver what the close completed before failing the rest.
                    self.step(ctx);
                    self.fail_all(ClientError::Connection("peer closed".into()));
                    self.close(ctx);
                } else {
                    self.dirty = true;
                }
            }
            Event::Sent { result: Ok(_), .. } | Event::SentVectored { result: Ok(_), .. } => {
                self.writes_in_flight = self.writes_in_flight.saturating_sub(1);
                self.dirty = true;
            }
            Event::Closed { .. } => {
                self.fail_all(ClientError::Connection("connection closed".into()));
                ctx.stop();
            }
            _ => {
                self.fail_all(ClientError::Connection("transport error".into()));
                self.close(ctx);
            }
        }
    }

    fn fail_all(&mut self, err: ClientError) {
        for (_, r) in self.waiting.drain(..) {
            r.send(Err(err.clone()));
        }
        for (_, r) in self.queued.drain(..) {
            r.send(Err(err.clone()));
        }
    }

    fn close(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        match (ctx.extension::<WorkerIo>(), self.token, self.socket) {
            (Some(io), Some(t), Some(s)) => io.reactor().close(s, t),
            _ => ctx.stop(),
        }
    }
}

impl<P: PooledProtocol> Actor for ClientConn<P> {
    type Msg = ClientMsg<P>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Nothing was sent yet (calls wait in `queued`): rebuild the codec on the actor clock
        // (virtual in simulation) so its deadlines are that clock's.
        self.codec = self.protocol.new_codec(ctx.now());
        let Some(io) = ctx.extension::<WorkerIo>() else {
            return ctx.stop();
        };
        let token = io.register(ctx.addr().recipient_map(ClientMsg::Io));
        self.token = Some(token);
        // The protocol's request-read timeout (or the configured one) bounds connection setup.
        if let Some(limit) = self.connect_timeout {
            ctx.send_after(limit, ClientMsg::ConnectTimeout);
        }
        let socket = io
            .reactor()
            .connect(self.addr, &[SockOpt::NoDelay(true)], token);
        match socket {
            Ok(s) => {
                self.socket = Some(s);
                if sinew_actors::buggify(BUGGIFY_CONNECT_REFUSED) {
                    // Fault point: the connect reports a refusal, as if nothing listened. It
                    // is ahead of any real completion in the mailbox; the real one that
                    // follows finds the connection closing and is ignored.
                    let refused = Completion {
                        token,
                        event: Event::Connected {
                            socket: s,
                            result: Err(TransportError::ConnectionRefused),
                        },
                    };
                    let _ = ctx.addr().send_reply(ClientMsg::Io(refused));
                }
            }
            Err(e) => {
                self.fail_all(ClientError::Connection(e.to_string()));
                ctx.stop();
            }
        }
    }

    /// Decoding, dispatching and writing happen once per run of messages: sixteen answers
    /// that arrive together leave in one send.
    fn handled_batch(&mut self, ctx: &mut Context<Self>) {
        if std::mem::take(&mut self.dirty) {
            self.step(ctx);
        }
    }

    fn handle(&mut self, msg: ClientMsg<P>, ctx: &mut Context<Self>) {
        match msg {
            ClientMsg::Call(req, reply) => {
                if self.closing {
                    reply.send(Err(ClientError::Connection("connection closing".into())));
                } else if self.connected {
                    // Only an idle connection can have been closed idle by the peer; the
                    // check costs nothing on a busy one.
                    let idle = self.waiting.is_empty() && self.writes_in_flight == 0;
                    if idle && sinew_actors::buggify(BUGGIFY_IDLE_CLOSE) {
                        return self.closed_by_peer(reply, ctx);
                    }
                    self.send_call(req, reply);
                    self.dirty = true;
                } else {
                    self.queued.push((req, reply));
                }
            }
            ClientMsg::Io(c) => {
                if let Some(late) = self.buggify_late(&c, ctx.now()) {
                    // `reading` stays set: no other read overtakes the held one.
                    ctx.send_after(late, ClientMsg::Io(c));
                    return;
                }
                self.on_io(c, ctx);
            }
            ClientMsg::ConnectTimeout => {
                if !self.connected && !self.closing {
                    self.fail_all(ClientError::Connection("connect timed out".into()));
                    self.close(ctx);
                }
            }
            ClientMsg::Resume => {
                if let Some(message) = self.held_push.take() {
                    if !self.deliver_push(message, ctx) {
                        return;
                    }
                }
                self.dirty = true;
            }
            ClientMsg::Timer => {
                self.timer.fired();
                let now = ctx.now();
                if self.codec.on_timeout(now).is_some() {
                    self.step(ctx);
                    self.fail_all(ClientError::Timeout);
                    self.close(ctx);
                } else {
                    self.dirty = true;
                }
            }
        }
    }

    fn stopping(&mut self, ctx: &mut Context<Self>) {
        if self.connected {
            self.protocol
                .on_disconnect(&self.info(), DisconnectReason::Done);
        }
        self.fail_all(ClientError::Connection("client stopped".into()));
        if let (Some(io), Some(t)) = (ctx.extension::<WorkerIo>(), self.token.take()) {
            if !self.closing {
                if let Some(s) = self.socket {
                    io.reactor().close(s, t);
                }
            }
            io.unregister(t);
        }
    }
}

impl<P: ClientProtocol> std::fmt::Debug for ClientConn<P>
where
    P::Response: Send + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConn")
            .field("addr", &self.addr)
            .field("connected", &self.connected)
            .field("outstanding", &self.waiting.len())
            .finish()
    }
}
