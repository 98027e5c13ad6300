//! The HTTP/1.1 server connection state machine.
//!
//! Reading: a head, then (if any) a body, then the next head, for as long as keep-alive holds.
//! Each request gets a [`RequestId`] in arrival order and a slot in an ordered output queue;
//! the application may answer slots in any order, but bytes leave strictly in request order:
//! answers for later requests wait (bounded) in their slot until everything before them is
//! complete. That is what makes pipelining correct when requests are handled by different
//! actors on different cores.
//!
//! After a framing error nothing more is read: the error response takes the next slot and the
//! connection closes once it is flushed. Request smuggling needs a second request to be read
//! from bytes the parser could not frame, so this rule is the last line of defence.

use std::collections::VecDeque;
use std::time::{Instant, SystemTime};

use bytes::{Buf, Bytes, BytesMut};

use super::body::{BodyDecoder, Decoded};
use super::date::DateCache;
use super::encode::{self, ConnHeader, OutFraming, PlainHeadCache, WireBuf};
use super::error::Http1Error;
use super::limits::{Limits, Timeouts};
use super::message::{Body, Headers, Request, Response, Version};
use super::parse::{self, Framing, HeadKind, HeadScanner};
use crate::protocol::{RequestId, RequestPlace, ServerCodec, ServerEvent, TimeoutKind};

/// Server configuration: limits and timeouts as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Size limits.
    pub limits: Limits,
    /// Header-read and idle timeouts (`response` is unused on the server side).
    pub timeouts: Timeouts,
    /// Whether to add a `Date` header to responses that lack one.
    pub send_date: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            send_date: true,
        }
    }
}

/// An event from [`ServerConnection::poll_event`].
pub type Event = ServerEvent<Request, Headers, Http1Error>;

/// The built-in error response for a decode error: its status, a short plain-text reason and
/// `Connection: close`.
pub fn error_response(error: &Http1Error) -> Response {
    let mut body = error.to_string().into_bytes();
    body.push(b'\n');
    Response::new(error.status())
        .header("content-type", "text/plain; charset=utf-8")
        .header("connection", "close")
        .with_body(Body::Full(Bytes::from(body)))
}

#[derive(Debug)]
enum Read {
    /// Waiting for (the rest of) a request head.
    Head,
    /// A known-length body small enough to deliver with its request.
    Whole {
        request: Box<Request>,
        id: u64,
        len: usize,
        keep_alive: bool,
    },
    /// A streamed body.
    Stream {
        id: u64,
        decoder: BodyDecoder,
        keep_alive: bool,
    },
    /// `Expect: 100-continue`: the body is read only after `read_body`.
    AwaitContinue {
        id: u64,
        decoder: BodyDecoder,
        keep_alive: bool,
    },
    /// Nothing more will be read.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// No final response yet.
    Waiting,
    /// A streamed response is being written.
    Streaming { chunked: bool, discard: bool },
    /// The response is fully encoded.
    Done,
}

#[derive(Debug)]
struct Slot {
    head_request: bool,
    version: Version,
    keep_alive: bool,
    state: SlotState,
    /// Bytes encoded while this slot was not at the head of the line. Boxed and made on first
    /// use: answers usually come in order, and a slot is written per request, so keeping it
    /// small is what counts.
    data: Option<Box<WireBuf>>,
    close_after: bool,
}

/// The ordered output queue: one slot per request, bytes released in request order.
#[derive(Debug, Default)]
struct Ordered {
    /// Id of `slots[0]`.
    base: u64,
    slots: VecDeque<Slot>,
    wire: WireBuf,
    /// Bytes held in slots behind the head of the line.
    buffered: usize,
    /// A response that closes the connection has been released: nothing follows it.
    closing: bool,
}

impl Ordered {
    fn index(&self, id: RequestId) -> Option<usize> {
        let idx = usize::try_from(id.0.checked_sub(self.base)?).ok()?;
        (idx < self.slots.len()).then_some(idx)
    }

    /// Where bytes for slot `idx` go: the wire for the head of the line, else the slot.
    fn target(&mut self, idx: usize) -> &mut WireBuf {
        if idx == 0 {
            &mut self.wire
        } else {
            self.slots[idx].data.get_or_insert_with(Box::default)
        }
    }

    /// Releases completed slots from the front, and the buffered bytes of the new front.
    #[inline]
    fn advance(&mut self) {
        // The common case after an answer in order: the next request has nothing written
        // yet, so nothing to release (checked here without a call).
        if self
            .slots
            .front()
            .is_none_or(|f| f.data.is_none() && f.state != SlotState::Done)
        {
            return;
        }
        self.release_front();
    }

    /// `advance` with something to release.
    #[inline(never)]
    fn release_front(&mut self) {
        while let Some(front) = self.slots.front_mut() {
            if let Some(mut data) = front.data.take() {
                self.buffered = self.buffered.saturating_sub(data.len());
                self.wire.append(&mut data);
            }
            if front.state != SlotState::Done {
                break;
            }
            let close = front.close_after;
            self.slots.pop_front();
            self.base += 1;
            if close {
                self.closing = true;
                self.slots.clear();
                self.buffered = 0;
                break;
            }
        }
    }
}

/// One server-side HTTP/1.1 connection (sans-I/O).
///
/// See the [crate documentation](crate) for a driving example and
/// [`ServerCodec`] for the driving loop.
#[derive(Debug)]
pub struct ServerConnection {
    config: ServerConfig,
    read: Read,
    scanner: HeadScanner,
    next_id: u64,
    out: Ordered,
    date: DateCache,
    head_cache: PlainHeadCache,
    header_deadline: Option<Instant>,
    idle_deadline: Option<Instant>,
    /// Re-armed whenever body data arrives; `body_seen` is the buffer length last seen while
    /// waiting for a whole body, to notice progress.
    body_deadline: Option<Instant>,
    body_seen: usize,
    head_started: bool,
    shutting_down: bool,
}

impl ServerConnection {
    /// A connection accepted at `now`; the first head must arrive within the header-read
    /// timeout.
    pub fn new(config: ServerConfig, now: Instant) -> Self {
        let header_deadline = config.timeouts.header_read.map(|t| now + t);
        ServerConnection {
            config,
            read: Read::Head,
            scanner: HeadScanner::default(),
            next_id: 0,
            out: Ordered::default(),
            date: DateCache::default(),
            head_cache: PlainHeadCache::default(),
            header_deadline,
            idle_deadline: None,
            body_deadline: None,
            body_seen: 0,
            head_started: false,
            shutting_down: false,
        }
    }

    /// Refreshes the cached `Date` value (formats at most once per second). Call with the
    /// wall-clock time before sending responses; the I/O worker typically does so once per
    /// event-loop turn.
    pub fn set_date(&mut self, now: SystemTime) {
        self.date.update(now);
    }

    /// Requests parsed and not yet fully answered.
    pub fn in_flight(&self) -> usize {
        self.out.slots.len()
    }

    fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// Decodes the next event from `buf`.
    pub fn poll_event(&mut self, buf: &mut BytesMut, now: Instant) -> Option<Event> {
        self.poll_event_with(buf, now, &mut |request| request)
    }

    /// [`poll_event`](Self::poll_event), with a decoded request handed to `emit`, whose
    /// result the event carries: the request itself, or `()` once it is written in place
    /// ([`ServerCodec::poll_event_into`]). Always inlined, so the request is built where
    /// `emit` puts it.
    #[inline(always)]
    fn poll_event_with<R>(
        &mut self,
        buf: &mut BytesMut,
        now: Instant,
        emit: &mut impl FnMut(Request) -> R,
    ) -> Option<ServerEvent<R, Headers, Http1Error>> {
        loop {
            match &mut self.read {
                Read::Closed | Read::AwaitContinue { .. } => return None,
                Read::Head => {
                    if self.out.slots.len() >= self.limits().max_pipelined
                        || self.out.wire.len() >= self.limits().max_buffered_output
                    {
                        return None; // backpressure: answer what we have first
                    }
                    if !self.head_started {
                        let skip = parse::leading_empty_lines(buf, self.limits().line_endings);
                        if skip > 0 {
                            // Not `split_to`: that clones the buffer's handle (two atomic
                            // refcount updates) even for zero bytes, on every request.
                            buf.advance(skip);
                        }
                        // A lone CR may be the first half of another empty line.
                        if buf.is_empty() || buf[..] == b"\r"[..] {
                            self.arm_idle(now);
                            return None;
                        }
                        self.head_started = true;
                        self.idle_deadline = None;
                    }
                    // A whole head already in the buffer is parsed in one pass; the scanner
                    // runs only for heads that arrive in pieces or that it must judge.
                    let fast = if self.scanner.in_progress() {
                        None
                    } else {
                        parse::parse_request_fast(buf, &self.config.limits)
                    };
                    let (len, parsed) = match fast {
                        Some(parsed) => parsed,
                        None => {
                            let len =
                                match self
                                    .scanner
                                    .scan(buf, &self.config.limits, HeadKind::Request)
                                {
                                    Ok(Some(len)) => len,
                                    Ok(None) => {
                                        // The head is not all here: from now on it has the
                                        // header-read timeout to arrive. Armed only here, not
                                        // when it starts, since a head read whole would
                                        // disarm it at once (a clock sum per request).
                                        if self.header_deadline.is_none() {
                                            self.header_deadline =
                                                self.config.timeouts.header_read.map(|t| now + t);
                                        }
                                        return None;
                                    }
                                    Err(e) => return Some(self.fail(e)),
                                };
                            let head = buf.get(..len).unwrap_or_default();
                            parse::parse_request_in(head, &self.config.limits, false)
                                .map(|(_, parsed)| (len, parsed))
                                .unwrap_or((len, Err(Http1Error::Malformed("incomplete head"))))
                        }
                    };
                    self.scanner.reset();
                    self.head_started = false;
                    self.header_deadline = None;
                    let head = buf.split_to(len).freeze();
                    match parsed {
                        Ok(p) => {
                            if let Some(ev) = self.start_request(p, head, emit) {
                                return Some(ev);
                            }
                        }
                        Err(e) => return Some(self.fail(e)),
                    }
                }
                Read::Whole { len, .. } => {
                    if buf.len() < *len {
                        let len = buf.len();
                        self.body_progress(len, now);
                        return None;
                    }
                    self.body_deadline = None;
                    let Read::Whole {
                        mut request,
                        id,
                        len,
                        keep_alive,
                    } = std::mem::replace(&mut self.read, Read::Closed)
                    else {
                        return None;
                    };
                    request.body = Body::Full(buf.split_to(len).freeze());
                    self.read = self.after_request(keep_alive);
                    return Some(ServerEvent::Request {
                        id: RequestId(id),
                        request: emit(*request),
                    });
                }
                Read::Stream {
                    id,
                    decoder,
                    keep_alive,
                } => {
                    let (id, keep_alive) = (*id, *keep_alive);
                    match decoder.decode(buf, &self.config.limits) {
                        Ok(Decoded::Data(data)) => {
                            self.body_deadline = None;
                            self.body_progress(0, now);
                            return Some(ServerEvent::BodyChunk {
                                id: RequestId(id),
                                data,
                            });
                        }
                        Ok(Decoded::End(trailers)) => {
                            self.body_deadline = None;
                            self.read = self.after_request(keep_alive);
                            return Some(ServerEvent::BodyEnd {
                                id: RequestId(id),
                                trailers,
                            });
                        }
                        Ok(Decoded::NeedMore) => {
                            let len = buf.len();
                            self.body_progress(len, now);
                            return None;
                        }
                        Err(e) => return Some(self.fail(e)),
                    }
                }
            }
        }
    }

    /// Re-arms the body-read timer if the buffer grew since last time (or it is not armed).
    fn body_progress(&mut self, buffered: usize, now: Instant) {
        if self.body_deadline.is_none() || buffered > self.body_seen {
            self.body_deadline = self.config.timeouts.body_read.map(|t| now + t);
        }
        self.body_seen = buffered;
    }

    /// Takes a parsed head: assigns its id and slot, and decides how its body is read. The
    /// request is built where it goes (the event, or the state waiting for its body), so the
    /// common bodiless request is never copied on its way out.
    #[inline(always)]
    fn start_request<R>(
        &mut self,
        p: parse::ParsedRequest,
        head: Bytes,
        emit: &mut impl FnMut(Request) -> R,
    ) -> Option<ServerEvent<R, Headers, Http1Error>> {
        let id = self.next_id;
        self.next_id += 1;
        self.out.slots.push_back(Slot {
            head_request: p.is_head(),
            version: p.version(),
            keep_alive: p.keep_alive(),
            state: SlotState::Waiting,
            data: None,
            close_after: false,
        });
        let expect_continue = p.expect_continue();
        let keep_alive = p.keep_alive();
        let decoder = match p.framing() {
            Framing::None | Framing::CloseDelimited => {
                self.read = self.after_request(keep_alive);
                return Some(ServerEvent::Request {
                    id: RequestId(id),
                    request: emit(p.into_request(head, Body::empty())),
                });
            }
            Framing::Length(n) => {
                let whole = usize::try_from(n)
                    .ok()
                    .filter(|&n| n <= self.limits().body_stream_threshold);
                match whole {
                    Some(len) if !expect_continue => {
                        self.read = Read::Whole {
                            request: Box::new(p.into_request(head, Body::empty())),
                            id,
                            len,
                            keep_alive,
                        };
                        return None;
                    }
                    _ => BodyDecoder::length(n),
                }
            }
            Framing::Chunked => BodyDecoder::chunked(),
        };
        self.read = if expect_continue {
            Read::AwaitContinue {
                id,
                decoder,
                keep_alive,
            }
        } else {
            Read::Stream {
                id,
                decoder,
                keep_alive,
            }
        };
        Some(ServerEvent::Request {
            id: RequestId(id),
            request: emit(p.into_request(head, Body::Stream)),
        })
    }

    fn after_request(&self, keep_alive: bool) -> Read {
        if keep_alive && !self.shutting_down && !self.out.closing {
            Read::Head
        } else {
            Read::Closed
        }
    }

    /// A decode error: queue the error response in order, stop reading, close after flush.
    fn fail<R>(&mut self, error: Http1Error) -> ServerEvent<R, Headers, Http1Error> {
        let current = match &self.read {
            Read::Whole { id, .. } => Some((*id, false)),
            Read::Stream { id, .. } | Read::AwaitContinue { id, .. } => Some((*id, true)),
            _ => None,
        };
        self.read = Read::Closed;
        self.head_started = false;
        self.header_deadline = None;
        self.body_deadline = None;
        let response = error_response(&error);
        let seen_by_app = match current {
            Some((id, seen)) => {
                let rid = RequestId(id);
                match self.out.index(rid).map(|i| self.out.slots[i].state) {
                    Some(SlotState::Waiting) => {
                        // The request's own answer becomes the error response.
                        let _ = self.encode_response(rid, response, true);
                    }
                    Some(_) => {
                        if let Some(i) = self.out.index(rid) {
                            self.out.slots[i].close_after = true;
                        }
                    }
                    None => {}
                }
                seen.then_some(rid)
            }
            None => {
                let id = self.next_id;
                self.next_id += 1;
                self.out.slots.push_back(Slot {
                    head_request: false,
                    version: Version::Http11,
                    keep_alive: false,
                    state: SlotState::Waiting,
                    data: None,
                    close_after: true,
                });
                let _ = self.encode_response(RequestId(id), response, true);
                None
            }
        };
        ServerEvent::Error {
            id: seen_by_app,
            error,
        }
    }

    fn arm_idle(&mut self, now: Instant) {
        let idle = matches!(self.read, Read::Head)
            && !self.head_started
            && self.out.slots.is_empty()
            && self.out.wire.is_empty()
            && self.header_deadline.is_none();
        if idle && self.idle_deadline.is_none() {
            self.idle_deadline = self.config.timeouts.idle.map(|t| now + t);
        }
    }

    /// Answers request `id`. Answers may come in any order; they are sent in request order.
    ///
    /// `Content-Length`/`Transfer-Encoding`/`Connection` fields are written by the encoder
    /// (a `Connection: close` field makes this the last response). With [`Body::Stream`],
    /// follow with [`send_body_chunk`](Self::send_body_chunk) and
    /// [`finish_body`](Self::finish_body). A `1xx` status is sent as an interim response.
    pub fn send_response(&mut self, id: RequestId, response: Response) -> Result<(), Http1Error> {
        if self.send_plain(id, &response) {
            return Ok(());
        }
        self.encode_response(id, response, false)
    }

    /// The general encoder alone, for tests that hold [`send_plain`](Self::send_plain) to it.
    #[cfg(test)]
    pub(crate) fn send_response_general(
        &mut self,
        id: RequestId,
        response: Response,
    ) -> Result<(), Http1Error> {
        self.encode_response(id, response, false)
    }

    /// The common answer the short way: the answer to the request at the head of the line, a
    /// keep-alive HTTP/1.1 request that is not HEAD, with a whole small body and fields that
    /// need no checks ([`encode::plain_response`]). It goes straight to the wire and its slot
    /// is retired. Writes exactly what [`encode_response`](Self::encode_response) would;
    /// false (nothing done) for every other answer, which then takes that general way.
    #[inline]
    fn send_plain(&mut self, id: RequestId, response: &Response) -> bool {
        if id.0 != self.out.base
            || self.shutting_down
            || matches!(self.read, Read::AwaitContinue { .. })
        {
            return false;
        }
        let plain_slot = self.out.slots.front().is_some_and(|s| {
            s.state == SlotState::Waiting
                && !s.head_request
                && s.keep_alive
                && s.version == Version::Http11
                && !s.close_after
                && s.data.is_none()
        });
        let Body::Full(body) = &response.body else {
            return false;
        };
        if !plain_slot
            || encode::plain_response(
                self.out.wire.buf_mut(),
                &mut self.head_cache,
                response.status,
                &response.reason,
                &response.headers,
                body,
                self.config.send_date.then_some(&self.date),
            )
            .is_none()
        {
            return false;
        }
        self.out.slots.pop_front();
        self.out.base += 1;
        // Later answers that came first wait in their slots: release what is now complete.
        self.out.advance();
        true
    }

    fn encode_response(
        &mut self,
        id: RequestId,
        response: Response,
        internal: bool,
    ) -> Result<(), Http1Error> {
        let idx = self.out.index(id).ok_or(Http1Error::UnknownRequest)?;
        let slot = &self.out.slots[idx];
        if slot.state != SlotState::Waiting {
            return Err(Http1Error::UnknownRequest);
        }
        let (head_request, version) = (slot.head_request, slot.version);
        let status = response.status;
        let interim = (100..200).contains(&status);
        if status == 101 || (interim && version == Version::Http10) {
            return Err(Http1Error::InvalidStartLine); // upgrades are not supported (yet)
        }
        let bodiless = interim || status == 204 || status == 304;
        let body_len = match &response.body {
            Body::Full(b) if bodiless && !b.is_empty() => return Err(Http1Error::BodyNotAllowed),
            Body::Stream if bodiless => return Err(Http1Error::BodyNotAllowed),
            Body::Full(b) => b.len(),
            Body::Stream => 0,
        };
        if idx > 0
            && !internal
            && self.out.buffered + body_len + 512 > self.limits().max_buffered_output
        {
            return Err(Http1Error::OutputBufferFull);
        }
        // An unread `Expect: 100-continue` body (or the rest of a streamed upload we will not
        // read because the answer came first) leaves the framing unknown: close after.
        let unread_body = matches!(self.read, Read::AwaitContinue { id: r, .. } if r == id.0);
        let last_in_shutdown = self.shutting_down
            && matches!(self.read, Read::Closed)
            && idx + 1 == self.out.slots.len();
        // A `Connection: close` among the fields is found while they are written (below).
        let mut close = !slot.keep_alive || internal || unread_body || last_in_shutdown;
        // A HEAD answer may state the length its GET would have without building that body:
        // an explicit `Content-Length` with an empty body is reported as is.
        let head_length = match &response.body {
            Body::Full(b) if head_request && b.is_empty() => response
                .headers
                .get("content-length")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<u64>().ok()),
            _ => None,
        };
        let framing = match response.body {
            _ if bodiless => OutFraming::None,
            Body::Full(ref b) => OutFraming::Length(head_length.unwrap_or(b.len() as u64)),
            Body::Stream if version == Version::Http10 => {
                close = true; // no chunked in HTTP/1.0: the body ends at close
                OutFraming::None
            }
            Body::Stream => OutFraming::Chunked,
        };
        let conn = if interim {
            ConnHeader::None
        } else if close {
            ConnHeader::Close
        } else if version == Version::Http10 {
            ConnHeader::KeepAlive
        } else {
            ConnHeader::None
        };
        let date = self.config.send_date.then(|| self.date.as_array());
        let target = self.out.target(idx);
        let before = target.len();
        let asked_close = encode::response_head(
            target.buf_mut(),
            status,
            &response.reason,
            &response.headers,
            framing,
            conn,
            !interim,
            date,
        )?;
        close |= asked_close;
        if interim {
            self.account(idx, before);
            self.out.advance();
            return Ok(());
        }
        let state = match response.body {
            Body::Full(b) => {
                if !head_request && !bodiless {
                    self.out.target(idx).put_bytes(b);
                }
                SlotState::Done
            }
            Body::Stream => SlotState::Streaming {
                chunked: framing == OutFraming::Chunked,
                discard: head_request,
            },
        };
        self.account(idx, before);
        let slot = &mut self.out.slots[idx];
        slot.state = state;
        slot.close_after |= close;
        if close {
            // Nothing after a closing response is ever sent, so nothing more is read.
            self.read = Read::Closed;
            self.header_deadline = None;
        }
        self.out.advance();
        Ok(())
    }

    /// Counts bytes added to a non-head-of-line slot since `before`.
    fn account(&mut self, idx: usize, before: usize) {
        if idx > 0 {
            let now = self.out.slots[idx].data.as_ref().map_or(0, |d| d.len());
            self.out.buffered += now.saturating_sub(before);
        }
    }

    fn streaming_slot(&mut self, id: RequestId) -> Result<(usize, bool, bool), Http1Error> {
        let idx = self.out.index(id).ok_or(Http1Error::UnknownRequest)?;
        match self.out.slots[idx].state {
            SlotState::Streaming { chunked, discard } => Ok((idx, chunked, discard)),
            SlotState::Waiting => Err(Http1Error::BodyOutOfSequence),
            SlotState::Done => Err(Http1Error::UnknownRequest),
        }
    }

    /// Sends part of a streamed response body (dropped for HEAD requests).
    pub fn send_body_chunk(&mut self, id: RequestId, data: Bytes) -> Result<(), Http1Error> {
        let (idx, chunked, discard) = self.streaming_slot(id)?;
        if discard {
            return Ok(());
        }
        if idx > 0 && self.out.buffered + data.len() > self.limits().max_buffered_output {
            return Err(Http1Error::OutputBufferFull);
        }
        let target = self.out.target(idx);
        let before = target.len();
        if chunked {
            encode::chunk(target, data);
        } else {
            target.put_bytes(data);
        }
        self.account(idx, before);
        Ok(())
    }

    /// Ends a streamed response body, with optional trailer fields.
    pub fn finish_body(
        &mut self,
        id: RequestId,
        trailers: Option<Headers>,
    ) -> Result<(), Http1Error> {
        let (idx, chunked, discard) = self.streaming_slot(id)?;
        if chunked && !discard {
            let target = self.out.target(idx);
            let before = target.len();
            encode::last_chunk(target.buf_mut(), trailers.as_ref())?;
            self.account(idx, before);
        }
        self.out.slots[idx].state = SlotState::Done;
        self.out.advance();
        Ok(())
    }

    /// The application starts reading request `id`'s body: for `Expect: 100-continue`, this
    /// queues `100 Continue` (in order) and starts decoding the body.
    pub fn read_body(&mut self, id: RequestId) {
        if !matches!(self.read, Read::AwaitContinue { id: r, .. } if r == id.0) {
            return;
        }
        let Read::AwaitContinue {
            id: rid,
            decoder,
            keep_alive,
        } = std::mem::replace(&mut self.read, Read::Closed)
        else {
            return;
        };
        if let Some(idx) = self.out.index(id) {
            let target = self.out.target(idx);
            let before = target.len();
            target.buf_mut().extend_from_slice(encode::CONTINUE);
            self.account(idx, before);
        }
        self.read = Read::Stream {
            id: rid,
            decoder,
            keep_alive,
        };
    }

    /// The next bytes to send. Once everything is sent and nothing is in flight, the idle
    /// timer is armed from `now`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        let out = self.out.wire.pop();
        if out.is_none() {
            self.arm_idle(now);
        }
        out
    }

    /// Whether bytes are waiting in [`poll_transmit`](Self::poll_transmit).
    pub fn has_output(&self) -> bool {
        !self.out.wire.is_empty()
    }

    /// The earliest deadline (header read, body read or idle).
    pub fn next_timeout(&self) -> Option<Instant> {
        [self.header_deadline, self.body_deadline, self.idle_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Expires timers due at `now`. A late head gets `408` (if any of it arrived) and the
    /// connection closes; so does a body that stopped arriving; an idle connection just
    /// closes.
    pub fn on_timeout(&mut self, now: Instant) -> Option<TimeoutKind> {
        if self.header_deadline.is_some_and(|d| now >= d) && matches!(self.read, Read::Head) {
            self.header_deadline = None;
            if self.head_started {
                let _ = self.fail::<()>(Http1Error::HeaderReadTimeout);
            } else {
                self.read = Read::Closed;
            }
            return Some(TimeoutKind::RequestRead);
        }
        if self.body_deadline.is_some_and(|d| now >= d)
            && matches!(self.read, Read::Whole { .. } | Read::Stream { .. })
        {
            self.body_deadline = None;
            let _ = self.fail::<()>(Http1Error::BodyReadTimeout);
            return Some(TimeoutKind::RequestRead);
        }
        if self.idle_deadline.is_some_and(|d| now >= d) {
            self.idle_deadline = None;
            if matches!(self.read, Read::Head) && !self.head_started && self.out.slots.is_empty() {
                self.read = Read::Closed;
                return Some(TimeoutKind::Idle);
            }
        }
        None
    }

    /// The peer closed its sending side (call after draining [`poll_event`](Self::poll_event)).
    /// Nothing more is read; answers to complete requests are still sent. A request whose
    /// body was cut short is answered with 400, reported by the returned error event if the
    /// application already saw the request, or silently dropped if it did not.
    pub fn on_eof(&mut self) -> Option<Event> {
        self.header_deadline = None;
        self.idle_deadline = None;
        self.body_deadline = None;
        match std::mem::replace(&mut self.read, Read::Closed) {
            Read::Whole { .. } => {
                // The unseen request is always the newest slot.
                self.out.slots.pop_back();
                None
            }
            r @ (Read::Stream { .. } | Read::AwaitContinue { .. }) => {
                self.read = r;
                Some(self.fail(Http1Error::UnexpectedEof))
            }
            _ => None,
        }
    }

    /// Graceful shutdown: stop reading new requests, finish in-flight ones, then close.
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
        self.idle_deadline = None;
        if matches!(self.read, Read::Head | Read::AwaitContinue { .. }) {
            self.read = Read::Closed;
            self.header_deadline = None;
        }
    }

    /// Whether the caller should read more input.
    pub fn wants_read(&self) -> bool {
        !matches!(self.read, Read::Closed | Read::AwaitContinue { .. })
            && self.out.slots.len() < self.limits().max_pipelined
            && self.out.wire.len() < self.limits().max_buffered_output
    }

    /// Whether all output is sent and the transport should be closed now.
    pub fn should_close(&self) -> bool {
        self.out.wire.is_empty()
            && (self.out.closing
                || (matches!(self.read, Read::Closed) && self.out.slots.is_empty()))
    }
}

impl ServerCodec for ServerConnection {
    type Request = Request;
    type Response = Response;
    type Trailers = Headers;
    type Error = Http1Error;

    fn poll_event(&mut self, buf: &mut BytesMut, now: Instant) -> Option<Event> {
        ServerConnection::poll_event(self, buf, now)
    }
    #[inline(always)]
    fn poll_event_into(
        &mut self,
        buf: &mut BytesMut,
        now: Instant,
        place: &mut RequestPlace<'_, Request>,
    ) -> Option<ServerEvent<(), Headers, Http1Error>> {
        self.poll_event_with(buf, now, &mut |request| place.put(request))
    }
    fn send_response(&mut self, id: RequestId, response: Response) -> Result<(), Http1Error> {
        ServerConnection::send_response(self, id, response)
    }
    #[inline]
    fn try_send_borrowed(&mut self, id: RequestId, response: &Response) -> bool {
        self.send_plain(id, response)
    }
    fn send_body_chunk(&mut self, id: RequestId, data: Bytes) -> Result<(), Http1Error> {
        ServerConnection::send_body_chunk(self, id, data)
    }
    fn finish_body(&mut self, id: RequestId, trailers: Option<Headers>) -> Result<(), Http1Error> {
        ServerConnection::finish_body(self, id, trailers)
    }
    fn read_body(&mut self, id: RequestId) {
        ServerConnection::read_body(self, id)
    }
    fn wants_wall_clock(&self, now: Instant) -> bool {
        // The date shows whole seconds: the wall clock is read again when the cached second
        // ends (by the monotonic clock, which the caller reads anyway), not on every write.
        self.config.send_date && self.date.is_due(now)
    }
    fn set_wall_clock(&mut self, wall: SystemTime, now: Instant) {
        self.date.update_at(wall, now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        ServerConnection::poll_transmit(self, now)
    }
    fn next_timeout(&self) -> Option<Instant> {
        ServerConnection::next_timeout(self)
    }
    fn on_timeout(&mut self, now: Instant) -> Option<TimeoutKind> {
        ServerConnection::on_timeout(self, now)
    }
    fn on_eof(&mut self) -> Option<Event> {
        ServerConnection::on_eof(self)
    }
    fn shutdown(&mut self) {
        ServerConnection::shutdown(self)
    }
    fn wants_read(&self) -> bool {
        ServerConnection::wants_read(self)
    }
    fn should_close(&self) -> bool {
        ServerConnection::should_close(self)
    }
}
