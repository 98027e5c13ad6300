//! The HTTP/1.1 message types shared by the server and client state machines.
//!
//! Parsed heads are kept as one frozen `Bytes` (a slice of the receive buffer) plus index
//! ranges, so parsing a request costs no copy and no allocation per header field; fields added
//! for sending are owned `Bytes` pairs (static strings cost nothing).

use bytes::Bytes;
use std::fmt;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

/// A parsed field: name and value as ranges of the head's bytes.
pub(crate) type FieldSpan = (Span, Span);

/// The field at `name_start..name_end`, `value_start..value_end` of a head. Parsers build the
/// final span list directly (one allocation per head, on the request hot path).
pub(crate) fn field_span(
    name_start: usize,
    name_end: usize,
    value_start: usize,
    value_end: usize,
) -> FieldSpan {
    let span = |start: usize, end: usize| Span {
        start: start as u32,
        end: end as u32,
    };
    (span(name_start, name_end), span(value_start, value_end))
}

impl Span {
    fn get(self, buf: &Bytes) -> &[u8] {
        // Spans are only built by the parser from offsets into `buf`, so they are in range;
        // `get` keeps that an invariant checked at runtime rather than a panic.
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
}

/// An ordered list of header fields (names compared case-insensitively).
///
/// Parsed fields are index ranges into the head's `Bytes`; appended fields are owned pairs.
/// Iteration yields parsed fields first, then appended ones, each in order.
#[derive(Clone, Default)]
pub struct Headers {
    buf: Bytes,
    parsed: Vec<(Span, Span)>,
    added: Vec<(Bytes, Bytes)>,
}

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Headers::default()
    }

    /// Builds parsed headers over `buf` from fields made by [`field_span`]. Ranges must lie
    /// inside `buf` (the parser guarantees it); out-of-range spans read as empty rather than
    /// panic.
    pub(crate) fn from_parsed(buf: Bytes, parsed: Vec<FieldSpan>) -> Self {
        Headers {
            buf,
            parsed,
            added: Vec::new(),
        }
    }

    /// Appends a field. Validity (token name, no CR/LF/NUL in the value) is checked when the
    /// message is encoded.
    pub fn append(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.added.push((name.into(), value.into()));
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.parsed.len() + self.added.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Iterates over `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.parsed
            .iter()
            .map(|(n, v)| (n.get(&self.buf), v.get(&self.buf)))
            .chain(self.added.iter().map(|(n, v)| (&n[..], &v[..])))
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
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
            )
            .finish()
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The request target as sent (origin form `/path?query`, absolute form, `*`, ...).
    pub target: Bytes,
    /// The protocol version.
    pub version: Version,
    /// Header fields. The encoder writes framing (`Content-Length`, `Transfer-Encoding`) itself
    /// and skips such fields here.
    pub headers: Headers,
    /// The body.
    pub body: Body,
    /// Server side: the client sent `Expect: 100-continue`; the body is only read (and
    /// `100 Continue` only sent) after `ServerConnection::read_body`.
    pub expect_continue: bool,
}

impl Request {
    /// A request with no headers and an empty body.
    pub fn new(method: Method, target: impl Into<Bytes>) -> Self {
        Request {
            method,
            target: target.into(),
            version: Version::Http11,
            headers: Headers::new(),
            body: Body::empty(),
            expect_continue: false,
        }
    }

    /// Builder-style [`Headers::append`].
    pub fn header(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Builder-style body setter.
    pub fn with_body(mut self, body: Body) -> Self {
        self.body = body;
        self
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
    pub fn header(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Builder-style body setter.
    pub fn with_body(mut self, body: Body) -> Self {
        self.body = body;
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
        let buf = Bytes::from_static(b"Host: a\r\nX-A: 1\r\n");
        let mut h =
            Headers::from_parsed(buf, vec![field_span(0, 4, 6, 7), field_span(9, 12, 14, 15)]);
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
    fn out_of_range_spans_read_empty() {
        let h = Headers::from_parsed(Bytes::from_static(b"ab"), vec![field_span(0, 9, 1, 2)]);
        assert_eq!(h.iter().next(), Some((&b""[..], &b"b"[..])));
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
