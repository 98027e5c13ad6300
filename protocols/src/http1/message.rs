//! The HTTP/1.1 message types shared by the server and client state machines.
//!
//! Parsed heads are kept as one frozen `Bytes` (a slice of the receive buffer) plus where their
//! fields start and how many there are, so parsing a request costs no copy and no allocation;
//! fields are read back from the validated head when asked for. Fields added for sending are
//! validated once and kept as encoded lines, which the encoder copies as one block.

use bytes::Bytes;
use std::fmt;

use super::error::Http1Error;
use super::field::{field_role, valid_token, valid_value, FieldRole};

/// An HTTP request method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `CONNECT`
    Connect,
    /// `OPTIONS`
    Options,
    /// `TRACE`
    Trace,
    /// `PATCH`
    Patch,
    /// Any other token (extension method).
    Other(Bytes),
}

impl Method {
    /// Recognises a method token; unknown tokens become [`Method::Other`] (copied: extension
    /// methods are rare enough that keeping the common case allocation-free is what matters).
    // Always: every request's method goes through here, and as a call it cost ~14
    // instructions more per request (callgrind).
    #[inline(always)]
    pub fn from_token(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"CONNECT" => Method::Connect,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"PATCH" => Method::Patch,
            other => Method::Other(Bytes::copy_from_slice(other)),
        }
    }

    /// The method's token as sent on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Method::Get => b"GET",
            Method::Head => b"HEAD",
            Method::Post => b"POST",
            Method::Put => b"PUT",
            Method::Delete => b"DELETE",
            Method::Connect => b"CONNECT",
            Method::Options => b"OPTIONS",
            Method::Trace => b"TRACE",
            Method::Patch => b"PATCH",
            Method::Other(b) => b,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// The protocol version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Version {
    /// HTTP/1.0: close by default, no chunked encoding.
    Http10,
    /// HTTP/1.1: keep-alive by default.
    #[default]
    Http11,
}

impl Version {
    pub(crate) fn as_bytes(self) -> &'static [u8] {
        match self {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
        }
    }
}

/// An ordered list of header fields (names compared case-insensitively).
///
/// Fields are kept in wire form and read back when asked for, never indexed: parsed fields
/// as the received head's `Bytes` (a slice of the receive buffer), appended ones as
/// `name: value` lines in one buffer. Parsing then costs no copy and no allocation, and
/// encoding appended fields is one copy of that buffer instead of four per field (the
/// validation an encoder must do happens once, when a field is appended). Iteration yields
/// parsed fields first, then appended ones, each in order.
#[derive(Clone, Default)]
pub struct Headers {
    buf: Bytes,
    /// Where the first parsed field's line starts in `buf`.
    start: u32,
    /// How many parsed fields follow `start` (at most [`Limits::HEADER_SLOTS`](super::Limits)).
    count: u16,
    /// What the encoder must know about the appended fields (`ADDED_*`).
    flags: u8,
    /// Appended fields, each `name: value\r\n`, validated.
    added: Vec<u8>,
}

/// An appended field was not valid (it was left out): encoding the message fails.
const ADDED_INVALID: u8 = 1;
/// An appended field is one the encoder writes itself or looks into (`Connection`,
/// `Content-Length`, `Transfer-Encoding`, `Date`): the encoder walks the appended fields
/// instead of copying them as a block.
const ADDED_SPECIAL: u8 = 2;

/// `buf` holds a [`FieldBlock`] (validated, encoded fields shared by many messages), not a
/// received head: the encoder copies it as it is unless `SHARED_SPECIAL` is set too.
const SHARED_BLOCK: u8 = 4;
/// The shared block has a field the encoder writes itself or looks into.
const SHARED_SPECIAL: u8 = 8;

/// Room for a few typical fields, reserved by the first append (one allocation per message).
const ADDED_FIRST_CAPACITY: usize = 128;

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Headers::default()
    }

    /// The buffer the parsed fields are read from: for a received message, its head.
    #[inline]
    pub(crate) fn head(&self) -> &Bytes {
        &self.buf
    }

    /// Parsed headers: `count` field lines of `buf` starting at `start`, each
    /// `name ":" OWS value OWS` ending in LF or CRLF and already validated by the parser (no
    /// obs-fold, no whitespace before the colon). Callers check in debug builds that reading
    /// them back gives what the parser saw.
    pub(crate) fn from_parsed(buf: Bytes, start: usize, count: usize) -> Self {
        // Heads are bounded by `Limits::max_head_size` and their fields by `HEADER_SLOTS`;
        // saturating keeps an absurd value from wrapping (fields then read as absent, never
        // as others).
        Headers {
            buf,
            start: u32::try_from(start).unwrap_or(u32::MAX),
            count: u16::try_from(count).unwrap_or(u16::MAX),
            flags: 0,
            added: Vec::new(),
        }
    }

    fn parsed(&self) -> FieldLines<'_> {
        FieldLines {
            rest: self.buf.get(self.start as usize..).unwrap_or_default(),
            left: u32::from(self.count),
        }
    }

    fn appended(&self) -> FieldLines<'_> {
        FieldLines {
            rest: &self.added,
            left: u32::MAX,
        }
    }

    /// Appends a field. The name must be a token and the value must not hold CR, LF or NUL
    /// (either would let the value split the message); leading and trailing blanks of the
    /// value are not kept, as on the wire. An invalid field is left out and makes encoding
    /// the message fail with [`Http1Error::InvalidHeader`](super::Http1Error::InvalidHeader),
    /// so a message built from untrusted input can never be sent half-valid.
    #[inline]
    pub fn append(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.append_field(name.as_ref(), value.as_ref());
    }

    fn append_field(&mut self, name: &[u8], value: &[u8]) {
        if !valid_token(name) || !valid_value(value) {
            self.flags |= ADDED_INVALID;
            return;
        }
        if field_role(name) != FieldRole::Plain {
            self.flags |= ADDED_SPECIAL;
        }
        let value = trim_blanks(value);
        let line = name.len() + value.len() + 4;
        if self.added.capacity() == 0 {
            // Straight to the allocator: growing an empty `Vec` goes through its general
            // (and, per response, measurably slower) growth path.
            self.added = Vec::with_capacity(line.max(ADDED_FIRST_CAPACITY));
        } else {
            self.added.reserve(line);
        }
        self.added.extend_from_slice(name);
        self.added.extend_from_slice(b": ");
        self.added.extend_from_slice(value);
        self.added.extend_from_slice(b"\r\n");
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.count as usize + self.added.iter().filter(|&&b| b == b'\n').count()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.added.is_empty()
    }

    /// Iterates over `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.parsed().chain(self.appended())
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// All values of `name` (case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Fields from a shared block: what `block` holds, at the cost of a reference count.
    #[inline]
    pub fn from_block(block: &FieldBlock) -> Self {
        Headers {
            buf: block.encoded.clone(),
            start: 0,
            count: block.count,
            flags: SHARED_BLOCK | if block.special { SHARED_SPECIAL } else { 0 },
            added: Vec::new(),
        }
    }

    /// Appends every field of `block`, after the fields already here. On a list with no
    /// fields yet this shares the block instead of copying it.
    #[inline]
    pub fn extend_from_block(&mut self, block: &FieldBlock) {
        if self.is_fresh() {
            *self = Headers::from_block(block);
        } else {
            self.append_block(block);
        }
    }

    /// Drops the list field by field, inline (see `Response::with_fields`).
    #[inline(always)]
    fn discard(self) {
        let Headers { buf, added, .. } = self;
        drop(added);
        drop(buf);
    }

    /// No fields and nothing recorded about any: a block can replace the list.
    #[inline]
    fn is_fresh(&self) -> bool {
        self.count == 0 && self.added.is_empty() && self.flags == 0
    }

    #[inline(never)]
    fn append_block(&mut self, block: &FieldBlock) {
        for (name, value) in block.iter() {
            self.append_field(name, value);
        }
    }

    /// The leading fields as one encoded block, when they are a shared [`FieldBlock`] the
    /// encoder may copy as it is (`None`: walk [`Headers::parsed_fields`], checking each).
    pub(crate) fn shared_block(&self) -> Option<&[u8]> {
        (self.flags & (SHARED_BLOCK | SHARED_SPECIAL) == SHARED_BLOCK).then_some(&self.buf[..])
    }

    /// The fields as at most two encoded blocks the encoder may copy as they are (a shared
    /// block or nothing, then the appended fields), when there is no field it must check or
    /// write itself; `None` otherwise (parsed fields, `Connection`, framing, `Date`, or an
    /// invalid appended field: the general encoder handles those).
    #[inline]
    pub(crate) fn plain_blocks(&self) -> Option<(&[u8], &[u8])> {
        if self.flags & (SHARED_SPECIAL | ADDED_SPECIAL | ADDED_INVALID) != 0 {
            return None;
        }
        let leading: &[u8] = if self.flags & SHARED_BLOCK != 0 {
            &self.buf
        } else if self.count == 0 {
            &[]
        } else {
            return None;
        };
        Some((leading, &self.added))
    }

    /// The fields as one shared block the encoder may copy as it is, with nothing appended
    /// (`Some(Some(block))`), or no fields at all (`Some(None)`); `None` for every other list.
    /// The block itself, not its bytes: the encoder keys its head cache on it.
    #[inline]
    pub(crate) fn sole_block(&self) -> Option<Option<&Bytes>> {
        if !self.added.is_empty()
            || self.flags & (SHARED_SPECIAL | ADDED_SPECIAL | ADDED_INVALID) != 0
        {
            return None;
        }
        if self.flags & SHARED_BLOCK != 0 {
            Some(Some(&self.buf))
        } else if self.count == 0 {
            Some(None)
        } else {
            None
        }
    }

    /// The parsed fields, for the encoder.
    pub(crate) fn parsed_fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.parsed()
    }

    /// The appended fields as encoded, when the encoder may copy them as they are (no field
    /// it writes itself or looks into): `Ok(None)` means walk them with [`Headers::iter`].
    pub(crate) fn appended_block(&self) -> Result<Option<&[u8]>, Http1Error> {
        if self.flags & ADDED_INVALID != 0 {
            return Err(Http1Error::InvalidHeader);
        }
        Ok((self.flags & ADDED_SPECIAL == 0).then_some(&self.added[..]))
    }

    /// The appended fields, for the encoder's walk (see [`Headers::appended_block`]).
    pub(crate) fn appended_fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.appended()
    }
}

/// Header fields validated and encoded once, to attach to many messages at the cost of a
/// reference count ([`Response::with_fields`], [`Headers::from_block`]): the fields a handler
/// sends with every response. Building one checks every field, so an invalid field is an error
/// here, once, instead of on every message.
///
/// ```
/// use sinew_protocols::http1::{FieldBlock, Response};
/// let common = FieldBlock::new([("server", "sinew"), ("content-type", "text/plain")])?;
/// let response = Response::new(200).with_fields(&common);
/// assert_eq!(response.headers.get("server"), Some(&b"sinew"[..]));
/// # Ok::<(), sinew_protocols::http1::Http1Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct FieldBlock {
    /// `name: value\r\n` lines.
    encoded: Bytes,
    count: u16,
    /// A field the encoder writes itself or looks into (`Connection`, `Date`, framing).
    special: bool,
}

impl FieldBlock {
    /// Validates and encodes `fields`. `Err(InvalidHeader)` if a name is not a token or a
    /// value holds CR, LF or NUL; `Err(TooManyHeaders)` past 65,535 fields.
    pub fn new<N, V>(fields: impl IntoIterator<Item = (N, V)>) -> Result<FieldBlock, Http1Error>
    where
        N: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut h = Headers::new();
        let mut count = 0usize;
        for (name, value) in fields {
            h.append(name, value);
            count += 1;
        }
        if h.flags & ADDED_INVALID != 0 {
            return Err(Http1Error::InvalidHeader);
        }
        let count = u16::try_from(count).map_err(|_| Http1Error::TooManyHeaders {
            limit: usize::from(u16::MAX),
        })?;
        Ok(FieldBlock {
            special: h.flags & ADDED_SPECIAL != 0,
            encoded: Bytes::from(h.added),
            count,
        })
    }

    /// The same block with its bytes moved to memory that lives as long as the process, so
    /// attaching it to a message costs no reference count: two atomic operations saved per
    /// message, for a block sent with every response. For blocks made once (a server's
    /// constant fields): each call leaks the block's bytes for good.
    ///
    /// ```
    /// use sinew_protocols::http1::{FieldBlock, Response};
    /// let common = FieldBlock::new([("server", "sinew")])?.into_static();
    /// let response = Response::new(200).with_fields(&common);
    /// assert_eq!(response.headers.get("server"), Some(&b"sinew"[..]));
    /// # Ok::<(), sinew_protocols::http1::Http1Error>(())
    /// ```
    pub fn into_static(self) -> FieldBlock {
        let bytes: &'static [u8] = Box::leak(Vec::from(self.encoded).into_boxed_slice());
        FieldBlock {
            encoded: Bytes::from_static(bytes),
            ..self
        }
    }

    /// Iterates over the `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        FieldLines {
            rest: &self.encoded,
            left: u32::from(self.count),
        }
    }
}

/// Fields as a list of `(name, value)` strings, for `Debug`.
fn debug_fields<'a>(
    f: &mut fmt::Formatter<'_>,
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> fmt::Result {
    f.debug_list()
        .entries(fields.map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))))
        .finish()
}

impl fmt::Debug for FieldBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_fields(f, self.iter())
    }
}

/// `value` without leading and trailing SP and HTAB (optional whitespace, RFC 9110 5.6.3).
fn trim_blanks(mut value: &[u8]) -> &[u8] {
    // Values rarely carry blanks: look at the ends only.
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// Reads field lines back (see [`Headers`]).
struct FieldLines<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for FieldLines<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.rest.is_empty() {
            return None;
        }
        self.left -= 1;
        let (line, rest) = match memchr::memchr(b'\n', self.rest) {
            Some(lf) => (&self.rest[..lf], &self.rest[lf + 1..]),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        // Names are tokens, so the first colon ends the name.
        let colon = memchr::memchr(b':', line).unwrap_or(line.len());
        let name = &line[..colon];
        let value = line.get(colon + 1..).unwrap_or_default();
        // As httparse trims: the CR of a CRLF (lines are validated: a CR stands only there),
        // then leading and trailing SP/HTAB.
        let value = value.strip_suffix(b"\r").unwrap_or(value);
        Some((name, trim_blanks(value)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_fields(f, self.iter())
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

/// A message body as the state machines see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The whole body (possibly empty). Incoming: a zero-copy slice of the receive buffer.
    Full(Bytes),
    /// The body is streamed: incoming, chunk events follow until a body-end event; outgoing,
    /// the sender supplies chunks and a finish call (chunked on the wire, or close-delimited
    /// towards an HTTP/1.0 client).
    Stream,
}

impl Body {
    /// An empty full body.
    #[inline]
    pub fn empty() -> Body {
        Body::Full(Bytes::new())
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

/// An HTTP request (received by a server, or sent by a client).
///
/// The target and the header fields are reached through methods ([`Request::target`],
/// [`Request::headers`], [`Request::headers_mut`]): a received request's target is a span of
/// the head its fields are read from, so it costs no reference count of its own (two atomic
/// operations per request on a server's hot path).
#[derive(Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    target: Target,
    /// The protocol version.
    pub version: Version,
    headers: Headers,
    /// The body.
    pub body: Body,
    /// Server side: the client sent `Expect: 100-continue`; the body is only read (and
    /// `100 Continue` only sent) after `ServerConnection::read_body`.
    pub expect_continue: bool,
}

/// Where a request's target is.
#[derive(Clone)]
enum Target {
    /// Its own bytes (a request built to send, or one whose fields were replaced).
    Own(Bytes),
    /// `start..end` of the received head, which the request's `headers` hold.
    InHead { start: u32, end: u32 },
}

impl Request {
    /// A request with no headers and an empty body.
    pub fn new(method: Method, target: impl Into<Bytes>) -> Self {
        Request {
            method,
            target: Target::Own(target.into()),
            version: Version::Http11,
            headers: Headers::new(),
            body: Body::empty(),
            expect_continue: false,
        }
    }

    /// A received request: its target is `target` of `head`, which `headers` hold.
    #[inline(always)]
    pub(crate) fn received(
        method: Method,
        target: (usize, usize),
        version: Version,
        headers: Headers,
        body: Body,
        expect_continue: bool,
    ) -> Self {
        // A head is bounded by `Limits::max_head_size` (u32 offsets); one past that could
        // only come from a bug, and reads as an empty target rather than another's bytes.
        let span = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
        Request {
            method,
            target: Target::InHead {
                start: span(target.0),
                end: span(target.1),
            },
            version,
            headers,
            body,
            expect_continue,
        }
    }

    /// The request target as sent (origin form `/path?query`, absolute form, `*`, ...).
    #[inline]
    pub fn target(&self) -> &[u8] {
        match &self.target {
            Target::Own(b) => b,
            Target::InHead { start, end } => self
                .headers
                .head()
                .get(*start as usize..*end as usize)
                .unwrap_or_default(),
        }
    }

    /// The target as `Bytes`, sharing the received head (no copy).
    pub fn target_bytes(&self) -> Bytes {
        match &self.target {
            Target::Own(b) => b.clone(),
            // `target()` is a slice of the head, or empty (which `slice_ref` answers with an
            // empty `Bytes`).
            Target::InHead { .. } => self.headers.head().slice_ref(self.target()),
        }
    }

    /// Replaces the target.
    pub fn set_target(&mut self, target: impl Into<Bytes>) {
        self.target = Target::Own(target.into());
    }

    /// Header fields. The encoder writes framing (`Content-Length`, `Transfer-Encoding`)
    /// itself and skips such fields here.
    #[inline]
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The header fields, to change. A received request's target first takes its own
    /// reference to the head, so it survives whatever is done to the fields.
    pub fn headers_mut(&mut self) -> &mut Headers {
        self.detach_target();
        &mut self.headers
    }

    /// Replaces the header fields (see [`Request::headers_mut`]).
    pub fn set_headers(&mut self, headers: Headers) {
        self.detach_target();
        self.headers = headers;
    }

    fn detach_target(&mut self) {
        if let Target::InHead { .. } = self.target {
            self.target = Target::Own(self.target_bytes());
        }
    }

    /// Builder-style [`Headers::append`].
    #[inline]
    pub fn header(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.headers_mut().append(name, value);
        self
    }

    /// Builder-style body setter.
    #[inline]
    pub fn with_body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }
}

/// Equal when everything a peer would see is: the target compares by its bytes, wherever
/// they are kept.
impl PartialEq for Request {
    fn eq(&self, other: &Self) -> bool {
        self.method == other.method
            && self.target() == other.target()
            && self.version == other.version
            && self.headers == other.headers
            && self.body == other.body
            && self.expect_continue == other.expect_continue
    }
}

impl Eq for Request {}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("target", &String::from_utf8_lossy(self.target()))
            .field("version", &self.version)
            .field("headers", &self.headers)
            .field("body", &self.body)
            .field("expect_continue", &self.expect_continue)
            .finish()
    }
}

/// An HTTP response (sent by a server, or received by a client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code (100..=999).
    pub status: u16,
    /// The reason phrase; empty means the canonical phrase for `status` when sending.
    pub reason: Bytes,
    /// The protocol version (sending always uses HTTP/1.1).
    pub version: Version,
    /// Header fields; framing fields are written by the encoder (see [`Request::headers`]).
    /// A `Connection: close` here makes the server close after this response.
    pub headers: Headers,
    /// The body. To a HEAD request only the framing headers are sent, never the body.
    pub body: Body,
}

impl Response {
    /// A response with no headers and an empty body.
    #[inline(always)]
    pub fn new(status: u16) -> Self {
        Response {
            status,
            reason: Bytes::new(),
            version: Version::Http11,
            headers: Headers::new(),
            body: Body::empty(),
        }
    }

    /// Builder-style [`Headers::append`].
    #[inline]
    pub fn header(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Builder-style body setter.
    // Always inlined, like the other builder steps: a by-value builder call that is not
    // inlined copies the whole message in and out (a `memcpy` call each way).
    #[inline(always)]
    pub fn with_body(self, body: Body) -> Self {
        // Built anew rather than assigned: assigning drops the old body first through an
        // opaque call, after which the compiler can no longer build the result in place.
        Response { body, ..self }
    }

    /// Builder-style [`Headers::extend_from_block`]: the fields of a prebuilt block, shared
    /// rather than copied when they are the response's first.
    #[inline(always)]
    pub fn with_fields(mut self, block: &FieldBlock) -> Self {
        if self.headers.is_fresh() {
            // Built anew, as in `with_body`, and the list it replaces dropped field by field:
            // dropped whole it goes through the out-of-line drop of `Headers`, which keeps the
            // compiler from seeing that a fresh list owns nothing (~40 instructions).
            let Response {
                status,
                reason,
                version,
                headers,
                body,
            } = self;
            headers.discard();
            return Response {
                status,
                reason,
                version,
                headers: Headers::from_block(block),
                body,
            };
        }
        self.headers.append_block(block);
        self
    }
}

/// The canonical reason phrase for a status code ("" when unknown).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_lookup_is_case_insensitive_and_ordered() {
        let buf = Bytes::from_static(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n");
        let mut h = Headers::from_parsed(buf, 16, 2);
        h.append("x-a", "2");
        assert_eq!(h.get("host"), Some(&b"a"[..]));
        assert_eq!(
            h.get_all("X-a").collect::<Vec<_>>(),
            vec![&b"1"[..], &b"2"[..]]
        );
        assert_eq!(h.len(), 3);
        assert!(!h.contains("missing"));
    }

    #[test]
    fn parsed_fields_read_back_as_parsed() {
        let buf = Bytes::from_static(b"A:\r\nB: \t x y \t\r\nC:z\nD:  \r\n\r\n");
        let h = Headers::from_parsed(buf, 0, 4);
        let want: Vec<(&[u8], &[u8])> =
            vec![(b"A", b""), (b"B", b"x y"), (b"C", b"z"), (b"D", b"")];
        assert_eq!(h.iter().collect::<Vec<_>>(), want);
        // Out of range: fewer fields than claimed, never a panic.
        let h = Headers::from_parsed(Bytes::from_static(b"ab"), 9, 3);
        assert_eq!(h.iter().count(), 0);
        let h = Headers::from_parsed(Bytes::from_static(b"ab"), 0, 3);
        assert_eq!(h.iter().next(), Some((&b"ab"[..], &b""[..])));
    }

    #[test]
    fn appended_fields_read_back_trimmed_and_in_order() {
        let mut h = Headers::new();
        h.append("Server", "sinew");
        h.append(String::from("x-n"), Bytes::from_static(b" \t 42 \t"));
        h.append("x-empty", "");
        h.append("server", "again");
        let want: Vec<(&[u8], &[u8])> = vec![
            (b"Server", b"sinew"),
            (b"x-n", b"42"),
            (b"x-empty", b""),
            (b"server", b"again"),
        ];
        assert_eq!(h.iter().collect::<Vec<_>>(), want);
        assert_eq!(h.len(), 4);
        assert_eq!(h.get_all("SERVER").count(), 2);
        assert_eq!(
            h.appended_block(),
            Ok(Some(
                &b"Server: sinew\r\nx-n: 42\r\nx-empty: \r\nserver: again\r\n"[..]
            ))
        );
    }

    #[test]
    fn an_invalid_appended_field_is_left_out_and_poisons_encoding() {
        for (name, value) in [
            (&b"bad name"[..], &b"v"[..]),
            (b"", b"v"),
            (b"x", b"a\r\nSet-Cookie: evil"),
            (b"x", b"a\nb"),
            (b"x", b"nul\0"),
            (b"x:y", b"v"),
        ] {
            let mut h = Headers::new();
            h.append("ok", "1");
            h.append(name, value);
            assert_eq!(h.iter().count(), 1, "{name:?} {value:?}");
            assert_eq!(
                h.appended_block(),
                Err(super::super::Http1Error::InvalidHeader)
            );
        }
    }

    #[test]
    fn fields_the_encoder_owns_turn_off_the_block_copy() {
        for name in ["Content-Length", "transfer-encoding", "CONNECTION", "date"] {
            let mut h = Headers::new();
            h.append("a", "b");
            h.append(name, "x");
            assert_eq!(h.appended_block(), Ok(None), "{name}");
            assert_eq!(h.appended_fields().count(), 2);
        }
    }

    proptest::proptest! {
        /// Whatever is appended, reading back gives exactly the valid fields, trimmed, in
        /// order, and the block form holds the same fields.
        #[test]
        fn appending_any_bytes_reads_back_the_valid_fields(
            fields in proptest::collection::vec(
                (proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6),
                 proptest::collection::vec(proptest::prelude::any::<u8>(), 0..12)),
                0..6,
            )
        ) {
            let mut h = Headers::new();
            let mut want = Vec::new();
            let mut invalid = false;
            for (n, v) in &fields {
                h.append(n, v);
                if valid_token(n) && valid_value(v) {
                    want.push((n.clone(), trim_blanks(v).to_vec()));
                } else {
                    invalid = true;
                }
            }
            let got: Vec<(Vec<u8>, Vec<u8>)> =
                h.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
            proptest::prop_assert_eq!(&got, &want);
            proptest::prop_assert_eq!(h.appended_block().is_err(), invalid);
        }
    }

    #[test]
    fn field_blocks_share_validated_fields() {
        let block = FieldBlock::new([("server", "sinew"), ("content-type", " text/plain ")])
            .expect("valid fields");
        let shared = Response::new(200).with_fields(&block);
        let built = Response::new(200)
            .header("server", "sinew")
            .header("content-type", "text/plain");
        assert_eq!(shared.headers, built.headers);
        assert_eq!(
            shared.headers.shared_block(),
            Some(&b"server: sinew\r\ncontent-type: text/plain\r\n"[..])
        );
        assert_eq!(shared.headers.len(), 2);
        // Fields already there come first; the block's are appended after them.
        let mixed = Response::new(200).header("x-a", "1").with_fields(&block);
        let names: Vec<&[u8]> = mixed.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec![&b"x-a"[..], b"server", b"content-type"]);
        // Appending after a shared block keeps both, in order.
        let mut h = Headers::from_block(&block);
        h.append("x-b", "2");
        assert_eq!(h.iter().count(), 3);
        assert_eq!(h.get("x-b"), Some(&b"2"[..]));
    }

    #[test]
    fn field_blocks_reject_what_could_split_a_message() {
        assert_eq!(
            FieldBlock::new([("x", "a\r\nSet-Cookie: evil")]),
            Err(Http1Error::InvalidHeader)
        );
        assert_eq!(
            FieldBlock::new([("bad name", "v")]),
            Err(Http1Error::InvalidHeader)
        );
        let special = FieldBlock::new([("connection", "close")]).expect("valid");
        // The encoder must look into it: not copied blind.
        assert_eq!(Headers::from_block(&special).shared_block(), None);
        assert_eq!(
            FieldBlock::new(Vec::<(&str, &str)>::new()).map(|b| b.iter().count()),
            Ok(0)
        );
    }

    #[test]
    fn methods_round_trip() {
        for m in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "BREW",
        ] {
            assert_eq!(Method::from_token(m.as_bytes()).as_bytes(), m.as_bytes());
        }
    }
}
