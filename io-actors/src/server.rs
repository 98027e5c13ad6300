//! Server I/O, generic over a protocol: a listener actor per worker (SO_REUSEPORT) and one
//! connection actor per connection, owned by that worker and supervised by its listener.
//!
//! A connection actor feeds received bytes to the protocol's sans-I/O codec, sends each request
//! to the application as an [`Incoming`] whose `ReplyTo` points back at the connection, and
//! writes the answers in request order (the codec orders them). When the application's mailbox
//! is full it stops reading the socket (TCP then pushes back on the client) or answers with the
//! protocol's "unavailable" response, by configuration. A request whose handler drops its
//! `ReplyTo` (it stopped or panicked) is answered with that same response, never left hanging.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sinew_actors::{
    Actor, Context, Placement, Posted, Recipient, ReplyBoard, ReplyChannel, ReplyError, ReplyTo,
    SendError, SpawnError, SpawnOptions, SystemHandle,
};
use sinew_protocols::protocol::{
    Protocol, RequestId, RequestPlace, ServerCodec, ServerEvent, ServerProtocol,
};
use sinew_transports::{Completion, Event, SockOpt, SocketId, Token};

use crate::admission::{Gate, RateLimit, Verdict};
use crate::body::{BodyCtl, BodyOut, BodyPart, BodySender, BodyStream, Flow, StreamIn};
use crate::deadline::Deadline;
use crate::worker_io::WorkerIo;

/// A server protocol whose connections can live in actors: shared by every connection of a
/// listener (`Sync`), with a codec, requests and responses that cross threads. Implemented for
/// every such protocol.
pub trait ServedProtocol:
    ServerProtocol<Codec: Send + 'static>
    + Protocol<Request: Send + 'static, Response: Send + 'static>
    + Send
    + Sync
    + 'static
{
}

impl<T> ServedProtocol for T where
    T: ServerProtocol<Codec: Send + 'static>
        + Protocol<Request: Send + 'static, Response: Send + 'static>
        + Send
        + Sync
        + 'static
{
}

/// A request's message without its request: the allocation the codec writes the request
/// into ([`ServerCodec::poll_event_into`]) before the rest of the message is known.
type Slot<P> = Box<
    std::mem::MaybeUninit<
        Incoming<
            <P as sinew_protocols::protocol::Protocol>::Request,
            <P as sinew_protocols::protocol::Protocol>::Response,
        >,
    >,
>;

/// The request's field of a message slot, for the codec to write the request into.
#[inline(always)]
fn request_field<Req, Resp: Send + 'static>(
    slot: &mut std::mem::MaybeUninit<Incoming<Req, Resp>>,
) -> &mut std::mem::MaybeUninit<Req> {
    let whole = slot.as_mut_ptr();
    // SAFETY: `whole` points to the slot's (possibly uninitialised) value, which is
    // allocated; `addr_of_mut!` takes its `request` field's address without making a
    // reference to uninitialised memory. `MaybeUninit<Req>` has the layout of `Req` and any
    // bytes are a valid `MaybeUninit`, so the reference made is valid; it is tied to the
    // exclusive borrow of the slot, so nothing else reaches the field meanwhile.
    unsafe { &mut *std::ptr::addr_of_mut!((*whole).request).cast::<std::mem::MaybeUninit<Req>>() }
}

/// Completes a message whose request the codec wrote into `slot`, in place: the request is
/// never moved. `Box::new(Incoming { .. })` builds the whole message on the stack and copies
/// it into the allocation (a request is ~180 bytes, the message ~260); even a single move of
/// a request just built stalls the CPU (its fields were stored narrow and are read back wide,
/// which defeats store forwarding: ~2% of a pipelined server's time with `perf`).
///
/// # Safety
/// The slot's `request` field holds a request (written through [`request_field`]).
#[inline(always)]
unsafe fn finish_incoming<Req, Resp: Send + 'static>(
    mut slot: Box<std::mem::MaybeUninit<Incoming<Req, Resp>>>,
    reply: ReplyTo<Resp>,
    push: Option<Pusher<Resp>>,
    body: Option<BodyStream>,
) -> Box<Incoming<Req, Resp>> {
    // Names every field with no `..`: a field added to `Incoming` fails to compile here
    // until it is written below too.
    let _every_field = |i: Incoming<Req, Resp>| {
        let Incoming {
            request: _,
            reply: _,
            push: _,
            body: _,
        } = i;
    };
    let p = slot.as_mut_ptr();
    // SAFETY: `p` points into the box's allocation, sized and aligned for `Incoming`; the
    // request is there already (the caller's contract) and each other field is written
    // exactly once through a raw pointer (no reference to uninitialised memory is made). The
    // exhaustive pattern above proves these are all its fields, so the value is fully
    // initialised when `assume_init` runs. Nothing here can unwind.
    unsafe {
        std::ptr::addr_of_mut!((*p).reply).write(reply);
        std::ptr::addr_of_mut!((*p).push).write(push);
        std::ptr::addr_of_mut!((*p).body).write(body);
        slot.assume_init()
    }
}

/// A request for the application, with the address its answer goes to.
pub struct Incoming<Req, Resp: Send + 'static> {
    /// The decoded request.
    pub request: Req,
    /// Where the response goes (the connection actor that read the request).
    pub reply: ReplyTo<Resp>,
    /// A handle for messages that answer no request (pub/sub deliveries), present when the
    /// protocol says this request needs one ([`ServerProtocol::needs_push`]).
    pub push: Option<Pusher<Resp>>,
    /// The request's body, when it arrives in parts ([`ServerProtocol::streams_body`]):
    /// name a recipient with [`BodyStream::read_into`], or drop it to discard the body.
    pub body: Option<BodyStream>,
}

impl<Req, Resp: Send + 'static> Incoming<Req, Resp> {
    /// Where the parts of a streamed response go, for protocols that stream
    /// ([`ProtocolInfo::streaming`](sinew_protocols::protocol::ProtocolInfo)); `None` for
    /// others. Ask before answering with the response's head: it is made from
    /// [`Incoming::reply`], which the answer consumes.
    ///
    /// Made on request: most answers are whole, so a request does not carry one (it would cost
    /// every request a reference count on the connection).
    pub fn body_sender(&self) -> Option<BodySender> {
        let conn = self.reply.channel_extension::<Recipient<BodyOut>>()?;
        let id = self.reply.channel_tag()?;
        Some(BodySender::new(conn.clone(), RequestId(id)))
    }
}

/// Sends a connection messages that answer no request (a RESP subscriber's deliveries).
///
/// Pushes go through the connection's bounded mailbox: a subscriber that cannot keep up gets
/// [`PushError::Full`], and the sender decides (Redis disconnects slow subscribers:
/// [`Pusher::disconnect`]). Two pushers are equal when they reach the same connection.
pub struct Pusher<Resp> {
    target: Recipient<Resp>,
}

impl<Resp> Clone for Pusher<Resp> {
    fn clone(&self) -> Self {
        Pusher {
            target: self.target.clone(),
        }
    }
}

impl<Resp: Send + 'static> std::fmt::Debug for Pusher<Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher")
            .field("connection", &self.target.id())
            .finish()
    }
}

impl<Resp: Send + 'static> PartialEq for Pusher<Resp> {
    fn eq(&self, other: &Self) -> bool {
        self.target.id() == other.target.id()
    }
}

impl<Resp: Send + 'static> Eq for Pusher<Resp> {}

/// Why a push was not queued.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The connection's mailbox is full: the subscriber is not keeping up (transient).
    #[error("subscriber connection is not keeping up")]
    Full,
    /// The connection is gone (fatal: forget this pusher).
    #[error("connection closed")]
    Closed,
}

impl<Resp: Send + 'static> Pusher<Resp> {
    /// Queues `message` for the connection.
    pub fn push(&self, message: Resp) -> Result<(), PushError> {
        self.target.try_send(message).map_err(|e| match e {
            SendError::Full(_) => PushError::Full,
            SendError::Closed(_) => PushError::Closed,
        })
    }

    /// The connection actor's id: stable for the connection's lifetime, so a pub/sub hub can
    /// key its subscriptions by it.
    pub fn connection(&self) -> sinew_actors::ActorId {
        self.target.id()
    }

    /// Whether the connection is still open.
    pub fn is_alive(&self) -> bool {
        self.target.is_alive()
    }

    /// Closes the connection (what Redis does to a subscriber past its output limit).
    pub fn disconnect(&self) {
        self.target.actor_ref().stop();
    }
}

impl<Req, Resp: Send + 'static> std::fmt::Debug for Incoming<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").finish_non_exhaustive()
    }
}

/// What a connection does when the application's mailbox is full.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Overload {
    /// Stop reading this connection until the application has room (back-pressure end to end).
    #[default]
    Pause,
    /// Answer at once with the protocol's "unavailable" response (HTTP 503).
    Shed,
}

/// Server settings.
#[derive(Copy, Clone, Debug)]
pub struct ServerConfig {
    /// Overload behaviour.
    pub overload: Overload,
    /// Receive buffer size per read.
    pub read_buffer: usize,
    /// Per-client-IP rate limit: requests over it get the protocol's rate-limited answer
    /// (HTTP 429 with `Retry-After`) without reaching the application.
    pub rate_limit: Option<RateLimit>,
    /// Requests in flight across the whole server at most: beyond, requests get the
    /// protocol's "unavailable" answer (HTTP 503) at once (load shedding).
    pub max_in_flight: Option<usize>,
    /// Use the reactor's multishot receive where it is native (io_uring): one submission per
    /// connection instead of one per read. Default on.
    pub multishot: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            overload: Overload::Pause,
            read_buffer: 16 * 1024,
            rate_limit: None,
            max_in_flight: None,
            multishot: true,
        }
    }
}

/// The message a protocol's application handler receives: an [`Incoming`], boxed.
///
/// Boxed because a request message is a few hundred bytes and moves through several hands
/// (codec, router, mailbox, handler): one allocation costs less than copying it at each, and
/// fields read and move out of a `Box` as they do out of the value (`inc.reply.send(..)`).
pub type IncomingFor<P> = Box<
    Incoming<
        <P as sinew_protocols::protocol::Protocol>::Request,
        <P as sinew_protocols::protocol::Protocol>::Response,
    >,
>;

/// The state of a connection's multishot receive.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Multishot {
    /// Plain receives (the reactor has no native multishot).
    Unused,
    /// Multishot, not armed (not yet, or the kernel ended it): armed on the next read.
    Idle,
    /// Armed: chunks arrive as `Event::ReceivedBytes`.
    Armed,
    /// Taken out of the kernel while the application or the codec wants no input.
    Paused,
}

/// Where a connection sends each request: one handler, or one of several picked by a function
/// of the request (key-hash sharding, a command table). Picking happens on the connection's
/// worker as the request is decoded, so routing adds no actor hop.
pub struct Routes<P: ServerProtocol>
where
    P::Response: Send + 'static,
{
    targets: Vec<Recipient<IncomingFor<P>>>,
    pick: Pick<P>,
    inline: Option<InlineAnswer<P>>,
}

type Picker<P> = Box<dyn Fn(&<P as Protocol>::Request) -> usize + Send + Sync>;

/// See [`Routes::answer_inline`].
type InlineAnswer<P> =
    Box<dyn Fn(&<P as Protocol>::Request) -> Option<<P as Protocol>::Response> + Send + Sync>;

enum Pick<P: Protocol> {
    First,
    By(Picker<P>),
    /// The target at the connection's worker index.
    Local,
}

impl<P: ServerProtocol> Routes<P>
where
    P::Response: Send + 'static,
{
    /// Every request goes to `handler`.
    pub fn single(handler: Recipient<IncomingFor<P>>) -> Self {
        Routes {
            targets: vec![handler],
            pick: Pick::First,
            inline: None,
        }
    }

    /// Each request goes to `targets[pick(&request) % targets.len()]`.
    ///
    /// # Panics
    /// If `targets` is empty.
    pub fn by(
        targets: Vec<Recipient<IncomingFor<P>>>,
        pick: impl Fn(&P::Request) -> usize + Send + Sync + 'static,
    ) -> Self {
        assert!(!targets.is_empty(), "Routes::by needs at least one target");
        Routes {
            targets,
            pick: Pick::By(Box::new(pick)),
            inline: None,
        }
    }

    /// Each connection sends to `targets[w]`, `w` being the index of the worker it lives on
    /// (modulo the count): one application actor per I/O worker, and no request crosses a
    /// core on its way in.
    ///
    /// # Panics
    /// If `targets` is empty.
    pub fn per_worker(targets: Vec<Recipient<IncomingFor<P>>>) -> Self {
        assert!(
            !targets.is_empty(),
            "Routes::per_worker needs at least one target"
        );
        Routes {
            targets,
            pick: Pick::Local,
            inline: None,
        }
    }

    /// Lets `answer` answer requests on the connection's own turn, before they are sent to a
    /// handler actor: what it answers (`Some`) goes straight to the codec, what it declines
    /// (`None`) goes on to the targets as usual. Answers still leave in request order.
    ///
    /// For answers that need no actor's state and never wait: health checks, static pages,
    /// values from a shared read-mostly cache. It skips the message, the handler's turn and
    /// the reply address (a fifth of the server's own instructions per pipelined HTTP
    /// request, a quarter unpipelined; see docs/BENCHMARKS.md), and it runs on the I/O
    /// worker, so anything slow here stalls every connection of that worker. Requests that stream their body or take pushes always go
    /// to the targets. A panic in `answer` is caught: that request gets the protocol's
    /// "unavailable" answer (HTTP 503) and the connection carries on.
    ///
    /// ```
    /// # use sinew_actors::Recipient;
    /// # use sinew_io_actors::{IncomingFor, Routes};
    /// use sinew_protocols::http1::{Http1, Response};
    /// # fn routes(app: Recipient<IncomingFor<Http1>>) -> Routes<Http1> {
    /// // `Http1` named: a handler's address alone does not say which protocol it serves.
    /// Routes::<Http1>::single(app).answer_inline(|request| {
    ///     (request.target() == b"/health").then(|| Response::new(204))
    /// })
    /// # }
    /// ```
    pub fn answer_inline(
        mut self,
        answer: impl Fn(&P::Request) -> Option<P::Response> + Send + Sync + 'static,
    ) -> Self {
        self.inline = Some(Box::new(answer));
        self
    }

    /// The inline answer to `request`, if [`Routes::answer_inline`] gives one; a panic there
    /// is answered with `protocol`'s "unavailable" response.
    #[inline]
    fn inline_answer(&self, protocol: &P, request: &P::Request) -> Option<P::Response> {
        let answer = self.inline.as_ref()?;
        if protocol.needs_push(request) || protocol.streams_body(request) {
            return None;
        }
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(request))).unwrap_or_else(
            |_| {
                tracing::error!(
                    "an inline answer panicked; the request is answered as unavailable"
                );
                Some(protocol.unavailable_response())
            },
        )
    }

    fn index(&self, request: &P::Request, worker: usize) -> usize {
        let n = self.targets.len();
        match &self.pick {
            Pick::By(pick) if n > 1 => pick(request) % n,
            // Every request comes here: a compare, not a division (tens of cycles), when
            // each worker has its own target, as `Routes::per_worker` sets up.
            Pick::Local if worker < n => worker,
            Pick::Local => worker % n,
            _ => 0,
        }
    }
}

impl<P: ServerProtocol> From<Recipient<IncomingFor<P>>> for Routes<P>
where
    P::Response: Send + 'static,
{
    fn from(handler: Recipient<IncomingFor<P>>) -> Self {
        Routes::single(handler)
    }
}

/// Messages of a connection actor.
///
/// The large payloads are boxed so the message is a few words: every message is copied into
/// the mailbox and out again whole, whatever its variant, and an answer per request crosses
/// here (the box costs less than those copies of a 150-byte enum).
pub enum ConnMsg<P: ServerProtocol> {
    /// A completion from the worker's reactor.
    Io(Box<Completion>),
    /// The application's answer to a request (through the mailbox).
    Reply(RequestId, Box<Result<P::Response, ReplyError>>),
    /// Answers are waiting on the connection's reply board.
    Replies,
    /// A codec deadline may have passed.
    Timer,
    /// The application has room again.
    Resume,
    /// A message that answers no request (see [`Pusher`]).
    Push(Box<P::Response>),
    /// A lingering close ran out of time.
    LingerDone,
    /// The application's decision about a streamed request body.
    Body(BodyCtl),
    /// A part of a streamed response.
    BodyOut(BodyOut),
}

/// How long a closing connection keeps reading (and discarding) after its last answer, and
/// how much: closing a socket with unread input makes the kernel send a reset, which can
/// destroy the error response still in flight to the client (nginx's `lingering_close`).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// One connection.
pub struct ServerConn<P: ServerProtocol>
where
    P::Response: Send + 'static,
{
    protocol: Arc<P>,
    codec: P::Codec,
    socket: SocketId,
    token: Option<Token>,
    routes: Arc<Routes<P>>,
    config: ServerConfig,
    /// The receive buffer when no read is in flight.
    rbuf: Option<BytesMut>,
    /// The next request's message, allocated before the request is decoded so the codec can
    /// write the request straight into it; kept when decoding found no request.
    spare: Option<Slot<P>>,
    reading: bool,
    /// The multishot receive, when the reactor has a native one (one submission for the
    /// connection's life instead of one per read).
    multishot: Multishot,
    /// Requests decoded in this step and not yet sent, all for the target `outbox_target`:
    /// a pipelined burst goes to the application as one run (one admission, one scheduling).
    /// When the target is full (and the overload policy pauses), the ones it refused wait
    /// here, in order, and reading stops until it has room.
    outbox: VecDeque<IncomingFor<P>>,
    outbox_target: usize,
    /// The target refused the outbox's first request: waiting for room.
    paused: bool,
    /// A request for another target, decoded when the outbox's target refused: it waits for
    /// the outbox to go first.
    held: Option<(usize, IncomingFor<P>)>,
    /// The write side's shutdown (queued behind every send) has completed: everything
    /// written before it went out. Sends are quiet (no completion unless they fail), so this
    /// is what a closing connection waits for before it closes.
    shut_down: bool,
    closing: bool,
    /// Set once the write side is shut: input is read and discarded (bytes so far) until
    /// the peer closes or a limit is reached.
    linger: Option<usize>,
    /// The peer closed its side.
    peer_eof: bool,
    /// Something changed this turn: decode, write and read once the turn's messages are in.
    dirty: bool,
    /// Reply addresses for requests, made without an allocation each (both set when started).
    /// A lone request's answer (none unanswered, no more input buffered) comes through the
    /// mailbox, a message of its own; answers to pipelined requests collect on the board and
    /// are taken a run at a time, on its wake (a board costs its wake message plus two locks:
    /// cheaper only for more than one answer).
    replies: Option<ReplyChannel<P::Response>>,
    board: Option<ReplyBoard<P::Response>>,
    /// Answers taken from the board and not yet handled (kept for its allocation).
    answers: Vec<Posted<P::Response>>,
    /// Requests given a reply address and not answered yet.
    unanswered: usize,
    /// A request has been given a [`Pusher`]: from then on every answer comes through the
    /// mailbox, because a board may hand an answer over ahead of a push its responder sent
    /// before it, and a subscriber must see them in the order they were sent.
    pushes: bool,
    /// The server's admission limits, if any, and the peer they apply to.
    gate: Option<Arc<Gate>>,
    peer: Option<std::net::IpAddr>,
    /// Requests this connection has admitted and not yet seen answered.
    admitted: usize,
    /// The streamed request body being decoded, if any (one at a time on a connection).
    stream_in: Option<StreamIn>,
    /// Decoding waits for the body's reader (full, or not attached yet).
    body_blocked: bool,
    timer: Deadline,
}

impl<P> ServerConn<P>
where
    P: ServedProtocol,
{
    fn new(
        protocol: Arc<P>,
        socket: SocketId,
        routes: Arc<Routes<P>>,
        config: ServerConfig,
        gate: Option<Arc<Gate>>,
    ) -> Self {
        let codec = protocol.new_codec(Instant::now());
        ServerConn {
            protocol,
            codec,
            socket,
            token: None,
            routes,
            config,
            rbuf: Some(BytesMut::with_capacity(config.read_buffer)),
            spare: None,
            reading: false,
            multishot: Multishot::Unused,
            outbox: VecDeque::new(),
            outbox_target: 0,
            paused: false,
            held: None,
            shut_down: false,
            closing: false,
            linger: None,
            peer_eof: false,
            dirty: false,
            replies: None,
            board: None,
            answers: Vec::new(),
            unanswered: 0,
            pushes: false,
            gate,
            peer: None,
            admitted: 0,
            stream_in: None,
            body_blocked: false,
            timer: Deadline::default(),
        }
    }

    /// Hands an answer to the codec. The common answer is copied to the wire from where it
    /// lies (on the board, or in its box), not moved out first.
    #[inline]
    fn answered(&mut self, id: RequestId, result: &mut Result<P::Response, ReplyError>) {
        self.unanswered = self.unanswered.saturating_sub(1);
        if let Some(gate) = &self.gate {
            if self.admitted > 0 {
                self.admitted -= 1;
                gate.done(1);
            }
        }
        self.dirty = true;
        if let Ok(response) = &*result {
            if self.codec.try_send_borrowed(id, response) {
                return;
            }
        }
        let result = std::mem::replace(result, Err(ReplyError::Dropped));
        let response = result.unwrap_or_else(|_| self.protocol.unavailable_response());
        if self.codec.send_response(id, response).is_err() {
            tracing::debug!(?id, "response not accepted by the codec");
        }
    }

    fn io(ctx: &Context<Self>) -> Option<std::rc::Rc<WorkerIo>> {
        ctx.extension::<WorkerIo>()
    }

    /// Decodes what was read, dispatches requests, writes what is ready, reads more, and keeps
    /// the codec's timer armed.
    fn step(&mut self, ctx: &mut Context<Self>) {
        let now = ctx.now();
        // Looked up once per step (a scan of the worker's extensions and a reference count),
        // not once per use.
        let io = Self::io(ctx);
        while !self.paused && !self.body_blocked {
            let Some(buf) = self.rbuf.as_mut() else { break };
            // With input to decode, the request is written straight into its message (see
            // `finish_incoming`). Without, no message is allocated for a request that is
            // unlikely to come (decoding may still end one, say a body of zero bytes): it
            // lands on the stack and moves into a message then.
            let mut local = std::mem::MaybeUninit::uninit();
            let in_slot = !buf.is_empty();
            let field = if in_slot {
                request_field(self.spare.get_or_insert_with(Box::new_uninit))
            } else {
                &mut local
            };
            let mut place = RequestPlace::new(field);
            let event = self.codec.poll_event_into(buf, now, &mut place);
            let written = place.is_written();
            match event {
                None => break,
                Some(ServerEvent::Request { id, .. }) => {
                    // More input behind it: likely more requests, whose answers come together.
                    let more = !buf.is_empty();
                    let slot = match (written, in_slot) {
                        (true, true) => self.spare.take(),
                        (true, false) => {
                            let mut slot: Slot<P> = Box::new_uninit();
                            // SAFETY: `written`: the codec wrote the request into `local`
                            // through the place, and it is read out once, here.
                            request_field(&mut slot).write(unsafe { local.assume_init() });
                            Some(slot)
                        }
                        _ => None,
                    };
                    match slot {
                        // SAFETY: the slot's request was written: by the codec (`written`)
                        // or just above.
                        Some(slot) => unsafe { self.dispatch(id, slot, more, ctx) },
                        None => {
                            tracing::error!(?id, "the codec reported a request it did not write")
                        }
                    }
                }
                Some(ServerEvent::Error { error, .. }) => {
                    // The codec has queued the protocol's error response and will close.
                    tracing::debug!(error = ?std::mem::discriminant(&error), "bad request");
                }
                Some(ServerEvent::BodyChunk { id, data }) => {
                    self.body_part(id, BodyPart::Data(data), ctx);
                }
                Some(ServerEvent::BodyEnd { id, .. }) => self.body_part(id, BodyPart::End, ctx),
            }
        }
        if !self.paused && !self.outbox.is_empty() {
            self.send_outbox(ctx);
        }
        self.flush(now, io.as_deref());
        self.read(io.as_deref());
        self.arm_timer(ctx, now);
    }

    /// Sends the requests in the outbox to their target as one run; see `outbox`.
    fn send_outbox(&mut self, ctx: &mut Context<Self>) {
        let target = self.outbox_target;
        loop {
            match self.routes.targets[target].try_send_many(&mut self.outbox) {
                Ok(()) => return,
                Err(SendError::Full(())) => match self.config.overload {
                    Overload::Pause => {
                        self.paused = true;
                        return self.wait_for_room(target, ctx);
                    }
                    // Dropping the request drops its ReplyTo: the answer is "unavailable".
                    // The next may find room freed meanwhile.
                    Overload::Shed => drop(self.outbox.pop_front()),
                },
                Err(SendError::Closed(())) => return self.outbox.clear(),
            }
        }
    }

    /// Forwards a part of the streamed body (parts of bodies nobody reads are dropped).
    fn body_part(&mut self, id: RequestId, part: BodyPart, ctx: &mut Context<Self>) {
        let Some(stream) = self.stream_in.as_mut().filter(|s| s.id == id) else {
            return;
        };
        let flow = stream.offer(part);
        self.body_flow(flow, ctx);
    }

    fn body_flow(&mut self, flow: Flow, ctx: &mut Context<Self>) {
        self.body_blocked = flow != Flow::Go;
        if flow == Flow::Full {
            if let Some(stream) = &self.stream_in {
                let me = ctx.addr();
                stream.when_room(move || {
                    let _ = me.send_reply(ConnMsg::Resume);
                });
            }
        }
        if self.stream_in.as_ref().is_some_and(|s| s.finished()) {
            self.stream_in = None;
        }
    }

    /// Hands a decoded request, already in its message's slot, to its target: admission,
    /// reply address, body stream and pushes, then a send or the outbox.
    ///
    /// # Safety
    /// `slot` holds the request (its `request` field is written).
    // Always inlined into `step`, with the slot kept in registers rather than stored in an
    // argument.
    #[inline(always)]
    unsafe fn dispatch(
        &mut self,
        id: RequestId,
        mut slot: Slot<P>,
        more: bool,
        ctx: &mut Context<Self>,
    ) {
        if let Some(gate) = &self.gate {
            let answer = match gate.admit(self.peer, ctx.now()) {
                Verdict::Admit => {
                    self.admitted += 1;
                    None
                }
                Verdict::Limited(after) => Some(self.protocol.rate_limited_response(after)),
                Verdict::Shed => Some(self.protocol.unavailable_response()),
            };
            if let Some(answer) = answer {
                // SAFETY: the request is in the slot (the caller's contract).
                return unsafe { self.answer_here(id, answer, slot) };
            }
        }
        // SAFETY: the request is in the slot (the caller's contract). A copy of the reference
        // is used below until `finish_incoming` takes the slot.
        let request: &P::Request = unsafe { request_field(&mut slot).assume_init_ref() };
        if let Some(answer) = self.routes.inline_answer(&self.protocol, request) {
            // Answered here: it was never in flight with a handler.
            if let Some(gate) = self.gate.as_ref().filter(|_| self.admitted > 0) {
                self.admitted -= 1;
                gate.done(1);
            }
            self.dirty = true;
            // SAFETY: the request is in the slot (the caller's contract).
            return unsafe { self.answer_here(id, answer, slot) };
        }
        let push = self.protocol.needs_push(request).then(|| Pusher {
            target: ctx.addr().recipient_map(|m| ConnMsg::Push(Box::new(m))),
        });
        self.pushes |= push.is_some();
        let reply = match (&self.board, &self.replies) {
            (Some(board), _) if (more || self.unanswered > 0) && !self.pushes => {
                board.reply_to(id.0)
            }
            (_, Some(channel)) => channel.reply_to(id.0),
            (_, None) => ctx.reply_to(move |r| ConnMsg::Reply(id, Box::new(r))),
        };
        self.unanswered += 1;
        let body = self.protocol.streams_body(request).then(|| {
            self.stream_in = Some(StreamIn::new(id));
            BodyStream::new(ctx.addr().recipient_map(ConnMsg::Body), id)
        });
        let target = self.routes.index(request, ctx.worker_index());
        // A request that streams its body or takes pushes leaves at once: its body's reader
        // and its subscription are set up by its handler, which must have it first.
        let alone = body.is_some() || push.is_some();
        // SAFETY: the request is in the slot (the caller's contract).
        let incoming = unsafe { finish_incoming(slot, reply, push, body) };
        if !more && self.outbox.is_empty() {
            // A lone request goes straight on: a run of one costs more than a send.
            return match self.routes.targets[target].try_send(incoming) {
                Ok(()) => {}
                // Refused: it waits in the outbox, as a refused run does.
                Err(SendError::Full(incoming)) => {
                    self.outbox_target = target;
                    self.outbox.push_back(incoming);
                    self.send_outbox(ctx);
                }
                Err(SendError::Closed(incoming)) => drop(incoming),
            };
        }
        if target != self.outbox_target && !self.outbox.is_empty() {
            self.send_outbox(ctx);
            if self.paused {
                // Decoding stops here; this one goes after the refused ones.
                self.held = Some((target, incoming));
                return;
            }
        }
        self.outbox_target = target;
        self.outbox.push_back(incoming);
        if alone {
            self.send_outbox(ctx);
        }
    }

    /// Answers a request on the connection's turn (refused by admission, or answered
    /// inline): the answer goes to the codec, the request is dropped in place, and its slot
    /// is kept for the next request.
    ///
    /// # Safety
    /// `slot` holds the request (its `request` field is written).
    #[inline(always)]
    unsafe fn answer_here(&mut self, id: RequestId, answer: P::Response, mut slot: Slot<P>) {
        if self.codec.send_response(id, answer).is_err() {
            tracing::debug!(
                ?id,
                "answer given on the connection's turn not accepted by the codec"
            );
        }
        // SAFETY: the request is in the slot (the caller's contract) and is dropped once,
        // here; the slot is then uninitialised again and kept for the next.
        unsafe { request_field(&mut slot).assume_init_drop() };
        self.spare = Some(slot);
    }

    fn wait_for_room(&self, target: usize, ctx: &mut Context<Self>) {
        let me = ctx.addr();
        self.routes.targets[target].notify_when_room(move || {
            let _ = me.send_reply(ConnMsg::Resume);
        });
    }

    fn flush(&mut self, now: Instant, io: Option<&WorkerIo>) {
        // A codec that shows the wall clock (HTTP's `Date`, whole seconds) asks for it once a
        // second, not on every write.
        if self.codec.wants_wall_clock(now) {
            self.codec.set_wall_clock(std::time::SystemTime::now(), now);
        }
        let first = self.codec.poll_transmit(now);
        let (Some(io), Some(token)) = (io, self.token) else {
            return;
        };
        if let Some(first) = first {
            let mut r = io.reactor();
            // Quiet: a send that succeeds costs no completion (and no turn); a failed one
            // completes with its error. Usually one buffer (a burst of answers coalesces): no
            // list to allocate then.
            match self.codec.poll_transmit(now) {
                None => r.send_quiet(self.socket, first, token),
                Some(second) => {
                    let mut out = vec![first, second];
                    while let Some(b) = self.codec.poll_transmit(now) {
                        out.push(b);
                    }
                    r.send_vectored_quiet(self.socket, out, token);
                }
            }
        }
        if self.codec.should_close() && self.linger.is_none() && !self.closing {
            // The shutdown runs after every send queued before it; its completion closes a
            // connection whose peer has finished too. Until then, linger (read and discard)
            // so unread input does not make the kernel reset the answer away.
            self.linger = Some(0);
            io.reactor()
                .shutdown(self.socket, std::net::Shutdown::Write, token);
        }
    }

    fn close(&mut self, ctx: &mut Context<Self>) {
        if self.closing {
            return;
        }
        self.closing = true;
        if let (Some(io), Some(t)) = (Self::io(ctx), self.token) {
            io.reactor().close(self.socket, t);
        }
    }

    fn read(&mut self, io: Option<&WorkerIo>) {
        let lingering = self.linger.is_some();
        let want = !self.closing
            && !self.peer_eof
            && (lingering || (!self.paused && !self.body_blocked && self.codec.wants_read()));
        let (Some(io), Some(token)) = (io, self.token) else {
            return;
        };
        if self.multishot != Multishot::Unused {
            let mut r = io.reactor();
            match (want, self.multishot) {
                (true, Multishot::Idle) => {
                    r.recv_multishot(self.socket, token);
                    self.multishot = Multishot::Armed;
                }
                (true, Multishot::Paused) if r.resume_recv(self.socket).is_ok() => {
                    self.multishot = Multishot::Armed;
                }
                (false, Multishot::Armed) if !self.closing && r.pause_recv(self.socket).is_ok() => {
                    self.multishot = Multishot::Paused;
                }
                _ => {}
            }
            return;
        }
        if self.reading || !want {
            return;
        }
        let Some(mut buf) = self.rbuf.take() else {
            return;
        };
        if buf.capacity() - buf.len() < self.config.read_buffer / 4 {
            buf.reserve(self.config.read_buffer);
        }
        self.reading = true;
        io.reactor().recv(self.socket, buf, token);
    }

    fn arm_timer(&mut self, ctx: &mut Context<Self>, now: Instant) {
        let next = self.codec.next_timeout();
        self.timer.sync(ctx, next, now, || ConnMsg::Timer);
    }

    /// `n` bytes arrived (0: the peer closed), by either kind of receive. While lingering
    /// they are only counted (the caller drops them) and the connection closes at EOF or past
    /// the linger budget. Returns whether the bytes are input to decode.
    fn arrived(&mut self, n: usize, ctx: &mut Context<Self>) -> bool {
        if let Some(discarded) = self.linger.as_mut() {
            *discarded += n;
            if n == 0 {
                self.peer_eof = true;
                // Closing cancels sends still queued: wait for the shutdown behind them.
                if self.shut_down {
                    self.close(ctx);
                }
            } else if *discarded > LINGER_BYTES {
                self.close(ctx);
            }
            return false;
        }
        if n == 0 {
            self.peer_eof = true;
            if let Some(ServerEvent::Error { .. }) = self.codec.on_eof() {
                tracing::debug!("connection closed mid-request");
            }
            self.codec.shutdown();
        }
        self.dirty = true;
        true
    }

    /// A multishot chunk: appended to the receive buffer (the ring slot goes back to the
    /// kernel as soon as the chunk is dropped); empty at EOF.
    fn received_chunk(&mut self, chunk: &Bytes, ctx: &mut Context<Self>) {
        if self.arrived(chunk.len(), ctx) {
            if let Some(buf) = self.rbuf.as_mut() {
                buf.extend_from_slice(chunk);
            }
        }
    }
}

impl<P> Actor for ServerConn<P>
where
    P: ServedProtocol,
{
    type Msg = ConnMsg<P>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The codec's deadlines run on the actor clock (virtual in simulation): build it now.
        self.codec = self.protocol.new_codec(ctx.now());
        let Some(io) = Self::io(ctx) else {
            return ctx.stop();
        };
        self.token = Some(io.register(ctx.addr().recipient_map(|c| ConnMsg::Io(Box::new(c)))));
        if self.config.multishot && io.reactor().capabilities().multishot_recv {
            self.multishot = Multishot::Idle;
        }
        // Streaming protocols' answers may come in parts: the reply addresses carry the
        // connection's address for them, for the handlers that ask (`Incoming::body_sender`).
        // The parts come through the mailbox, after the answer's wake: never ahead of it.
        let wake = || ConnMsg::Replies;
        let map = |id, r| ConnMsg::Reply(RequestId(id), r);
        if self.protocol.info().streaming {
            let parts = ctx.addr().recipient_map(ConnMsg::BodyOut);
            self.board = Some(ctx.reply_board_with(wake, parts.clone()));
            self.replies = Some(ctx.reply_channel_with(map, parts));
        } else {
            self.board = Some(ctx.reply_board(wake));
            self.replies = Some(ctx.reply_channel(map));
        }
        if self.gate.is_some() {
            self.peer = io.reactor().peer_addr(self.socket).ok().map(|a| a.ip());
        }
        let _ = io.reactor().set_option(self.socket, SockOpt::NoDelay(true));
        self.step(ctx);
    }

    /// Decoding, dispatching and writing happen once per run of messages: sixteen answers
    /// that arrive together leave in one send.
    fn handled_batch(&mut self, ctx: &mut Context<Self>) {
        if std::mem::take(&mut self.dirty) {
            self.step(ctx);
        }
    }

    fn handle(&mut self, msg: ConnMsg<P>, ctx: &mut Context<Self>) {
        match msg {
            ConnMsg::Io(c) => match c.event {
                Event::Received {
                    buf, result: Ok(n), ..
                } => {
                    self.reading = false;
                    let mut buf = buf;
                    let keep = self.arrived(n, ctx);
                    if !keep {
                        buf.clear();
                    }
                    self.rbuf = Some(buf);
                    if !keep && !self.closing {
                        self.read(Self::io(ctx).as_deref());
                    }
                }
                Event::ReceivedBytes { result, more, .. } => {
                    if !more {
                        self.multishot = Multishot::Idle;
                    }
                    match result {
                        Ok(chunk) => self.received_chunk(&chunk, ctx),
                        // Ended by our own close, or re-armed on the next read.
                        Err(_) if self.closing || more => {}
                        Err(sinew_transports::Error::Cancelled) => {}
                        Err(_) => self.close(ctx),
                    }
                }
                // Everything sent before the shutdown has gone out: a connection whose peer
                // has finished closes now; one still lingering closes at the peer's end.
                Event::Shutdown { result: Ok(()), .. } => {
                    self.shut_down = true;
                    if self.peer_eof {
                        self.close(ctx);
                    } else {
                        // The linger's time counts from here, when the last answer has gone
                        // out: a large answer to a slow reader is never cut short by it.
                        ctx.send_after(LINGER_TIME, ConnMsg::LingerDone);
                    }
                }
                // Sends are quiet: only loud ones (none today) complete on success.
                Event::Sent { result: Ok(_), .. } | Event::SentVectored { result: Ok(_), .. } => {}
                Event::Closed { .. } => ctx.stop(),
                // Reset, broken pipe, a failed shutdown, or a cancelled operation: the
                // connection is done.
                _ => {
                    self.reading = false;
                    self.close(ctx);
                }
            },
            ConnMsg::LingerDone => self.close(ctx),
            ConnMsg::Replies => {
                let mut answers = std::mem::take(&mut self.answers);
                if let Some(board) = &self.board {
                    board.take(&mut answers);
                }
                for (id, result) in &mut answers {
                    self.answered(RequestId(*id), result);
                }
                answers.clear();
                self.answers = answers;
            }
            ConnMsg::Reply(id, mut result) => self.answered(id, &mut result),
            ConnMsg::Push(message) => {
                if !self.codec.send_push(*message) {
                    tracing::debug!("push not accepted by the codec");
                }
                self.dirty = true;
            }
            ConnMsg::Timer => {
                self.timer.fired();
                let now = ctx.now();
                if let Some(kind) = self.codec.on_timeout(now) {
                    tracing::debug!(?kind, "connection timer fired");
                }
                self.dirty = true;
            }
            ConnMsg::BodyOut(part) => {
                let r = match part {
                    BodyOut::Data(id, data) => self.codec.send_body_chunk(RequestId(id), data),
                    BodyOut::Finish(id) => self.codec.finish_body(RequestId(id), None),
                    BodyOut::Abort(id) => {
                        tracing::debug!(id, "streamed response cut short: closing");
                        return self.close(ctx);
                    }
                };
                if r.is_err() {
                    tracing::debug!("response part not accepted by the codec");
                }
                self.dirty = true;
            }
            ConnMsg::Body(ctl) => {
                if let Some(stream) = self.stream_in.as_mut() {
                    match ctl {
                        BodyCtl::ReadInto(id, to) if id == stream.id.0 => {
                            self.codec.read_body(stream.id);
                            let flow = stream.attach(to);
                            self.body_flow(flow, ctx);
                        }
                        BodyCtl::Discard(id) if id == stream.id.0 => {
                            stream.discard();
                            self.body_flow(Flow::Go, ctx);
                        }
                        _ => {}
                    }
                }
                self.dirty = true;
            }
            ConnMsg::Resume => {
                if let Some(stream) = self.stream_in.as_mut() {
                    let flow = stream.pump();
                    self.body_flow(flow, ctx);
                    if self.body_blocked {
                        return;
                    }
                }
                if std::mem::take(&mut self.paused) {
                    self.send_outbox(ctx);
                    if self.paused {
                        return;
                    }
                    if let Some((target, incoming)) = self.held.take() {
                        self.outbox_target = target;
                        self.outbox.push_back(incoming);
                        self.send_outbox(ctx);
                        if self.paused {
                            return;
                        }
                    }
                }
                self.dirty = true;
            }
        }
    }

    fn stopping(&mut self, ctx: &mut Context<Self>) {
        // A reader of an unfinished body learns that no more is coming.
        if let Some(stream) = self.stream_in.take() {
            stream.abort();
        }
        // Answers still on their way will find this actor gone: release their places now.
        if let Some(gate) = &self.gate {
            gate.done(std::mem::take(&mut self.admitted));
        }
        if let (Some(io), Some(t)) = (Self::io(ctx), self.token.take()) {
            if !self.closing {
                io.reactor().close(self.socket, t);
            }
            io.unregister(t);
        }
    }
}

/// Accepts connections on one worker and supervises them (temporary children: a crashed
/// connection is not restarted; its client sees the connection close).
pub struct ServerListener<P: ServerProtocol>
where
    P::Response: Send + 'static,
{
    protocol: Arc<P>,
    addr: SocketAddr,
    routes: Arc<Routes<P>>,
    config: ServerConfig,
    gate: Option<Arc<Gate>>,
    ready: Option<mpsc::Sender<Result<SocketAddr, String>>>,
}

impl<P> Actor for ServerListener<P>
where
    P: ServedProtocol,
{
    type Msg = Completion;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(io) = ctx.extension::<WorkerIo>() else {
            if let Some(r) = self.ready.take() {
                let _ = r.send(Err("worker has no I/O driver (use io_driver)".into()));
            }
            return ctx.stop();
        };
        let token = io.register(ctx.addr().recipient());
        let bound = {
            let mut r = io.reactor();
            r.listen(
                self.addr,
                &[SockOpt::ReuseAddr(true), SockOpt::ReusePort(true)],
            )
            .and_then(|l| {
                r.accept(l, token);
                r.local_addr(l)
            })
        };
        let result = bound.map_err(|e| e.to_string());
        if result.is_err() {
            ctx.stop();
        }
        if let Some(r) = self.ready.take() {
            let _ = r.send(result);
        }
    }

    fn handle(&mut self, c: Completion, ctx: &mut Context<Self>) {
        if let Event::Accepted {
            result: Ok(socket), ..
        } = c.event
        {
            let conn = ServerConn::new(
                self.protocol.clone(),
                socket,
                self.routes.clone(),
                self.config,
                self.gate.clone(),
            );
            if let Err(e) = ctx.spawn(conn) {
                tracing::warn!(error = %e, "connection refused: system shutting down");
            }
        }
    }
}

/// Serving failed to start.
#[derive(thiserror::Error, Debug)]
pub enum ServeError {
    /// A listener actor could not be spawned.
    #[error("spawn: {0}")]
    Spawn(#[from] SpawnError),
    /// A listener could not bind or did not start.
    #[error("listen: {0}")]
    Listen(String),
}

/// Serves `protocol` on `addr` with one listener per worker in `workers` (SO_REUSEPORT: the
/// kernel spreads connections across them; each connection stays on the worker that accepted
/// it). Requests go to `handler`: one recipient, or [`Routes`] that pick one per request.
/// Returns the bound address (useful with port 0).
pub fn serve<P>(
    system: &SystemHandle,
    protocol: P,
    addr: SocketAddr,
    workers: impl IntoIterator<Item = usize>,
    handler: impl Into<Routes<P>>,
    config: ServerConfig,
) -> Result<SocketAddr, ServeError>
where
    P: ServedProtocol,
{
    let protocol = Arc::new(protocol);
    let routes = Arc::new(handler.into());
    let gate = Gate::new(config.rate_limit, config.max_in_flight).map(Arc::new);
    let mut bound = addr;
    for w in workers {
        let (tx, rx) = mpsc::channel();
        let listener = ServerListener {
            protocol: protocol.clone(),
            addr: bound,
            routes: routes.clone(),
            config,
            gate: gate.clone(),
            ready: Some(tx),
        };
        system.spawn_with(
            listener,
            SpawnOptions::default().placement(Placement::Worker(w)),
        )?;
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| ServeError::Listen("listener did not start".into()))?
            .map_err(ServeError::Listen)?;
        // Later listeners share the first one's port.
        bound = got;
    }
    Ok(bound)
}

#[cfg(test)]
mod footprint {
    /// Messages are copied whole into the mailbox and out again, once or more per request:
    /// the connection's messages and the application's request message stay a few words.
    #[test]
    fn per_request_messages_stay_small() {
        use sinew_protocols::http1::Http1;
        let conn = std::mem::size_of::<super::ConnMsg<Http1>>();
        let incoming = std::mem::size_of::<super::IncomingFor<Http1>>();
        assert!(conn <= 48, "ConnMsg grew to {conn} bytes");
        assert!(incoming <= 8, "IncomingFor grew to {incoming} bytes");
    }
}

#[cfg(test)]
mod boxed {
    use sinew_actors::ReplyTo;

    /// The in-place box holds exactly the parts it was given, and they work and drop as parts
    /// of a normal value (run under miri in CI: the unsafe initialisation is checked there).
    #[test]
    fn in_place_message_holds_every_part() {
        let (reply, answer) = ReplyTo::<u32>::channel();
        let request = vec![String::from("GET"), String::from("/plaintext")];
        let mut slot = Box::new_uninit();
        super::request_field(&mut slot).write(request.clone());
        // SAFETY: the slot's request was written just above.
        let inc = unsafe { super::finish_incoming(slot, reply, None, None) };
        assert_eq!(inc.request, request);
        assert!(inc.push.is_none() && inc.body.is_none());
        assert!(inc.reply.is_open());
        let super::Incoming {
            request: got,
            reply,
            ..
        } = *inc;
        assert_eq!(got, request);
        assert!(reply.send(7));
        let mut answer = std::pin::pin!(answer);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(matches!(
            std::future::Future::poll(answer.as_mut(), &mut cx),
            std::task::Poll::Ready(Ok(7))
        ));
    }

    /// A slot outlives the requests written into it: a second write through one place drops
    /// the first request, a refused request is dropped in place (as the admission gate does)
    /// and the slot takes the next one. Run under miri in CI, which catches a double drop, a
    /// leak or a read of uninitialised memory.
    #[test]
    fn in_place_slot_is_reused_after_its_request_is_dropped() {
        use sinew_protocols::protocol::RequestPlace;
        let mut slot = Box::new_uninit();
        let mut place = RequestPlace::new(super::request_field(&mut slot));
        place.put(vec![String::from("first")]);
        place.put(vec![String::from("second")]);
        assert!(place.is_written());
        // SAFETY: the place wrote the slot's request; it is dropped once.
        unsafe { super::request_field(&mut slot).assume_init_drop() };
        super::request_field(&mut slot).write(vec![String::from("third")]);
        let (reply, _answer) = ReplyTo::<u32>::channel();
        // SAFETY: the slot's request was written just above.
        let inc = unsafe { super::finish_incoming(slot, reply, None, None) };
        assert_eq!(inc.request, vec![String::from("third")]);
    }
}
