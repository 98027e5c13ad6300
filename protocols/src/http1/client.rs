//! The HTTP/1.1 client connection state machine.
//!
//! Requests are encoded as they are sent and remembered in a FIFO (HTTP/1.1 answers in order),
//! so pipelining is just sending again before the previous answer arrived. Each response is
//! matched to the FIFO's front; HEAD-ness travels with the entry because it changes how the
//! response is framed. On any failure every outstanding request still gets exactly one event
//! (an error), so nothing waiting on this connection hangs.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::body::{BodyDecoder, Decoded};
use super::encode::{self, ConnHeader, OutFraming, WireBuf};
use super::error::Http1Error;
use super::limits::{Limits, Timeouts};
use super::message::{Body, Headers, Method, Request, Response, Version};
use super::parse::{self, Framing, HeadKind, HeadScanner};
use crate::protocol::{ClientCodec, ClientEvent, RequestId, TimeoutKind};

/// Client configuration: limits and timeouts as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientConfig {
    /// Size limits for responses.
    pub limits: Limits,
    /// `response` (no progress while requests are outstanding) and `idle` timeouts.
    pub timeouts: Timeouts,
}

/// An event from [`ClientConnection::poll_event`].
pub type ClientEventOf = ClientEvent<Response, Headers, Http1Error>;

#[derive(Debug, Clone, Copy)]
struct Pending {
    id: u64,
    head_request: bool,
}

#[derive(Debug)]
enum Read {
    Head,
    Whole {
        response: Box<Response>,
        id: u64,
        len: usize,
        keep_alive: bool,
    },
    Stream {
        id: u64,
        decoder: BodyDecoder,
        keep_alive: bool,
    },
    /// Nothing more will be read; outstanding requests fail with `reason`.
    Closed {
        reason: Http1Error,
    },
}

/// One client-side HTTP/1.1 connection (sans-I/O).
#[derive(Debug)]
pub struct ClientConnection {
    config: ClientConfig,
    out: WireBuf,
    next_id: u64,
    pending: VecDeque<Pending>,
    read: Read,
    scanner: HeadScanner,
    /// A request whose streamed body is still being sent: (id, chunked).
    sending_body: Option<(u64, bool)>,
    /// A request or response said `Connection: close` (or the response was close-delimited).
    no_reuse: bool,
    eof: bool,
    response_deadline: Option<Instant>,
    idle_deadline: Option<Instant>,
}

fn bodiless_method(m: &Method) -> bool {
    matches!(
        m,
        Method::Get
            | Method::Head
            | Method::Delete
            | Method::Options
            | Method::Trace
            | Method::Connect
    )
}

impl ClientConnection {
    /// A client connection established at `now`.
    pub fn new(config: ClientConfig, now: Instant) -> Self {
        ClientConnection {
            config,
            out: WireBuf::default(),
            next_id: 0,
            pending: VecDeque::new(),
            read: Read::Head,
            scanner: HeadScanner::default(),
            sending_body: None,
            no_reuse: false,
            eof: false,
            response_deadline: None,
            idle_deadline: config.timeouts.idle.map(|t| now + t),
        }
    }

    /// Encodes and queues a request (pipelining: earlier responses need not have arrived).
    ///
    /// The caller supplies `Host`; framing fields are written by the encoder. A `Connection:
    /// close` field makes this the connection's last request.
    pub fn send_request(&mut self, request: Request) -> Result<RequestId, Http1Error> {
        if !self.is_reusable() {
            return Err(Http1Error::ConnectionClosed);
        }
        if self.sending_body.is_some() {
            return Err(Http1Error::BodyOutOfSequence);
        }
        let framing = match &request.body {
            Body::Full(b) if b.is_empty() && bodiless_method(&request.method) => OutFraming::None,
            Body::Full(b) => OutFraming::Length(b.len() as u64),
            Body::Stream if request.version == Version::Http10 => {
                return Err(Http1Error::BodyOutOfSequence)
            }
            Body::Stream => OutFraming::Chunked,
        };
        let close = encode::wants_close(request.headers());
        let conn = match (close, request.version) {
            (true, _) => ConnHeader::Close,
            (false, Version::Http10) => ConnHeader::KeepAlive,
            (false, Version::Http11) => ConnHeader::None,
        };
        encode::request_head(
            self.out.buf_mut(),
            request.method.as_bytes(),
            request.target(),
            request.version,
            request.headers(),
            framing,
            conn,
        )?;
        let id = self.next_id;
        self.next_id += 1;
        match request.body {
            Body::Full(b) => self.out.put_bytes(b),
            Body::Stream => self.sending_body = Some((id, true)),
        }
        self.no_reuse |= close;
        self.pending.push_back(Pending {
            id,
            head_request: request.method == Method::Head,
        });
        self.idle_deadline = None;
        Ok(RequestId(id))
    }

    /// Sends part of a streamed request body.
    pub fn send_body_chunk(&mut self, id: RequestId, data: Bytes) -> Result<(), Http1Error> {
        match self.sending_body {
            Some((sid, _)) if sid == id.0 => {
                encode::chunk(&mut self.out, data);
                Ok(())
            }
            _ => Err(Http1Error::BodyOutOfSequence),
        }
    }

    /// Ends a streamed request body.
    pub fn finish_body(
        &mut self,
        id: RequestId,
        trailers: Option<Headers>,
    ) -> Result<(), Http1Error> {
        match self.sending_body {
            Some((sid, _)) if sid == id.0 => {
                encode::last_chunk(self.out.buf_mut(), trailers.as_ref())?;
                self.sending_body = None;
                Ok(())
            }
            _ => Err(Http1Error::BodyOutOfSequence),
        }
    }

    fn fail(&mut self, id: Option<u64>, error: Http1Error) -> ClientEventOf {
        let reason = match error {
            Http1Error::ResponseTimeout => Http1Error::ResponseTimeout,
            _ => Http1Error::ConnectionClosed,
        };
        self.read = Read::Closed { reason };
        self.no_reuse = true;
        self.response_deadline = None;
        ClientEvent::Error {
            id: id.map(RequestId),
            error,
        }
    }

    /// Re-arms the response timer from `now` while anything is outstanding: requests waiting
    /// for their head, or the body being read (the last request's body counts too: without it
    /// a body that stopped coming was never timed out).
    fn progress(&mut self, now: Instant) {
        self.response_deadline = if self.in_flight() == 0 {
            None
        } else {
            self.config.timeouts.response.map(|t| now + t)
        };
    }

    fn after_response(&mut self, keep_alive: bool, now: Instant) -> Read {
        self.progress(now);
        if keep_alive && !self.no_reuse {
            if self.pending.is_empty() {
                self.idle_deadline = self.config.timeouts.idle.map(|t| now + t);
            }
            Read::Head
        } else {
            self.no_reuse = true;
            Read::Closed {
                reason: Http1Error::ConnectionClosed,
            }
        }
    }

    /// Decodes the next event from `buf`. After the connection failed or closed, yields one
    /// error per outstanding request.
    pub fn poll_event(&mut self, buf: &mut BytesMut, now: Instant) -> Option<ClientEventOf> {
        loop {
            match &mut self.read {
                Read::Closed { reason } => {
                    let reason = reason.clone();
                    let p = self.pending.pop_front()?;
                    return Some(ClientEvent::Error {
                        id: Some(RequestId(p.id)),
                        error: reason,
                    });
                }
                Read::Head => {
                    if buf.is_empty() {
                        if self.eof {
                            self.read = Read::Closed {
                                reason: Http1Error::ConnectionClosed,
                            };
                            continue;
                        }
                        return None;
                    }
                    let Some(&front) = self.pending.front() else {
                        return Some(self.fail(None, Http1Error::UnsolicitedResponse));
                    };
                    let len = match self
                        .scanner
                        .scan(buf, &self.config.limits, HeadKind::Response)
                    {
                        Ok(Some(len)) => len,
                        Ok(None) if self.eof => {
                            self.pending.pop_front();
                            return Some(self.fail(Some(front.id), Http1Error::UnexpectedEof));
                        }
                        Ok(None) => return None,
                        Err(e) => {
                            self.pending.pop_front();
                            return Some(self.fail(Some(front.id), e));
                        }
                    };
                    let head = buf.split_to(len).freeze();
                    self.scanner.reset();
                    let h = match parse::parse_response(
                        head,
                        &self.config.limits,
                        front.head_request,
                    ) {
                        Ok(h) => h,
                        Err(e) => {
                            self.pending.pop_front();
                            return Some(self.fail(Some(front.id), e));
                        }
                    };
                    if (100..200).contains(&h.status) && h.status != 101 {
                        self.progress(now);
                        continue; // interim responses are skipped
                    }
                    self.pending.pop_front();
                    let mut response = Response {
                        status: h.status,
                        reason: h.reason,
                        version: h.version,
                        headers: h.headers,
                        body: Body::empty(),
                    };
                    let id = RequestId(front.id);
                    let keep_alive = h.keep_alive && h.status != 101;
                    // Known now, before the body: no new request may be sent on this one.
                    self.no_reuse |= !keep_alive;
                    let decoder = match h.framing {
                        Framing::None => {
                            self.read = self.after_response(keep_alive, now);
                            return Some(ClientEvent::Response { id, response });
                        }
                        Framing::Length(n) => {
                            let whole = usize::try_from(n)
                                .ok()
                                .filter(|&n| n <= self.config.limits.body_stream_threshold);
                            if let Some(len) = whole {
                                self.read = Read::Whole {
                                    response: Box::new(response),
                                    id: front.id,
                                    len,
                                    keep_alive,
                                };
                                // The head is progress, as for a streamed body.
                                self.progress(now);
                                continue;
                            }
                            BodyDecoder::length(n)
                        }
                        Framing::Chunked => BodyDecoder::chunked(),
                        Framing::CloseDelimited => BodyDecoder::close_delimited(),
                    };
                    response.body = Body::Stream;
                    self.read = Read::Stream {
                        id: front.id,
                        decoder,
                        keep_alive,
                    };
                    self.progress(now);
                    return Some(ClientEvent::Response { id, response });
                }
                Read::Whole { len, id, .. } => {
                    if buf.len() < *len {
                        if self.eof {
                            let id = *id;
                            return Some(self.fail(Some(id), Http1Error::UnexpectedEof));
                        }
                        return None;
                    }
                    let Read::Whole {
                        mut response,
                        id,
                        len,
                        keep_alive,
                    } = std::mem::replace(&mut self.read, Read::Head)
                    else {
                        return None;
                    };
                    response.body = Body::Full(buf.split_to(len).freeze());
                    self.read = self.after_response(keep_alive, now);
                    return Some(ClientEvent::Response {
                        id: RequestId(id),
                        response: *response,
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
                            self.progress(now);
                            return Some(ClientEvent::BodyChunk {
                                id: RequestId(id),
                                data,
                            });
                        }
                        Ok(Decoded::End(trailers)) => {
                            // Done with this body before the timer is looked at again.
                            self.read = Read::Head;
                            self.read = self.after_response(keep_alive, now);
                            return Some(ClientEvent::BodyEnd {
                                id: RequestId(id),
                                trailers,
                            });
                        }
                        Ok(Decoded::NeedMore) if self.eof => {
                            if decoder.is_close_delimited() {
                                self.read = Read::Closed {
                                    reason: Http1Error::ConnectionClosed,
                                };
                                self.response_deadline = None;
                                return Some(ClientEvent::BodyEnd {
                                    id: RequestId(id),
                                    trailers: None,
                                });
                            }
                            return Some(self.fail(Some(id), Http1Error::UnexpectedEof));
                        }
                        Ok(Decoded::NeedMore) => return None,
                        Err(e) => return Some(self.fail(Some(id), e)),
                    }
                }
            }
        }
    }

    /// The next bytes to send; arms the response timer from `now` while requests are
    /// outstanding.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        if self.response_deadline.is_none() && !self.pending.is_empty() {
            self.response_deadline = self.config.timeouts.response.map(|t| now + t);
        }
        self.out.pop()
    }

    /// The earliest deadline (response or idle).
    pub fn next_timeout(&self) -> Option<Instant> {
        match (self.response_deadline, self.idle_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires timers due at `now`. A response timeout fails every outstanding request
    /// (reported by the following `poll_event` calls) and closes.
    pub fn on_timeout(&mut self, now: Instant) -> Option<TimeoutKind> {
        if self.response_deadline.is_some_and(|d| now >= d) {
            self.response_deadline = None;
            // The request whose body was being read fails first, like the ones waiting.
            if let Read::Whole { id, .. } | Read::Stream { id, .. } = self.read {
                self.pending.push_front(Pending {
                    id,
                    head_request: false,
                });
            }
            self.read = Read::Closed {
                reason: Http1Error::ResponseTimeout,
            };
            self.no_reuse = true;
            return Some(TimeoutKind::Response);
        }
        if self.idle_deadline.is_some_and(|d| now >= d) && self.pending.is_empty() {
            self.idle_deadline = None;
            if matches!(self.read, Read::Head) {
                self.read = Read::Closed {
                    reason: Http1Error::ConnectionClosed,
                };
                self.no_reuse = true;
                return Some(TimeoutKind::Idle);
            }
        }
        None
    }

    /// The server closed: ends a close-delimited body; everything else outstanding fails.
    pub fn on_eof(&mut self) {
        self.eof = true;
        self.no_reuse = true;
    }

    /// Requests sent and not yet fully answered.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
            + usize::from(matches!(
                self.read,
                Read::Whole { .. } | Read::Stream { .. }
            ))
    }

    /// Whether another request may be sent (keep-alive reuse).
    pub fn is_reusable(&self) -> bool {
        !self.no_reuse && !self.eof && !matches!(self.read, Read::Closed { .. })
    }

    /// Whether the connection should be closed now (it cannot be reused and every request
    /// has been answered or failed).
    pub fn should_close(&self) -> bool {
        // Unsent bytes do not matter once no response can be read any more.
        matches!(self.read, Read::Closed { .. }) && self.pending.is_empty()
    }
}

impl ClientCodec for ClientConnection {
    type Request = Request;
    type Response = Response;
    type Trailers = Headers;
    type Error = Http1Error;

    fn send_request(&mut self, request: Request) -> Result<RequestId, Http1Error> {
        ClientConnection::send_request(self, request)
    }
    fn send_body_chunk(&mut self, id: RequestId, data: Bytes) -> Result<(), Http1Error> {
        ClientConnection::send_body_chunk(self, id, data)
    }
    fn finish_body(&mut self, id: RequestId, trailers: Option<Headers>) -> Result<(), Http1Error> {
        ClientConnection::finish_body(self, id, trailers)
    }
    fn poll_event(&mut self, buf: &mut BytesMut, now: Instant) -> Option<ClientEventOf> {
        ClientConnection::poll_event(self, buf, now)
    }
    fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        ClientConnection::poll_transmit(self, now)
    }
    fn next_timeout(&self) -> Option<Instant> {
        ClientConnection::next_timeout(self)
    }
    fn on_timeout(&mut self, now: Instant) -> Option<TimeoutKind> {
        ClientConnection::on_timeout(self, now)
    }
    fn on_eof(&mut self) {
        ClientConnection::on_eof(self)
    }
    fn in_flight(&self) -> usize {
        ClientConnection::in_flight(self)
    }
    fn is_reusable(&self) -> bool {
        ClientConnection::is_reusable(self)
    }
    fn should_close(&self) -> bool {
        ClientConnection::should_close(self)
    }
}
