//! Head parsing: finding where a head ends (our own bounded, incremental scan) and tokenising
//! it (httparse), then deriving the message's framing from its header fields.
//!
//! A request head that is whole in the receive buffer is parsed in one pass: first by the
//! quick parser in `quick.rs` if it has the common shape, otherwise by httparse on the buffer,
//! checked against the scanner's rules without running the scanner. The scanner runs only for
//! heads that arrive in pieces or that it must judge (a bare LF, a limit, a grammar error), for
//! three reasons: it makes byte-at-a-time input linear instead of quadratic (httparse restarts
//! from the beginning on every call), it enforces the 414/431 limits before more data is
//! buffered, and it is where the smuggling-relevant line rules (bare LF policy, obs-fold) are
//! applied uniformly. Response heads always go through the scanner, then httparse.

use std::mem::MaybeUninit;

use bytes::Bytes;

use super::error::Http1Error;
use super::limits::{Limits, LineEndingPolicy};
use super::message::{Body, Headers, Method, Request, Version};
use super::quick::quick_request;

/// Which start line a head begins with; only request lines have their own length limit (414).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadKind {
    Request,
    Response,
}

/// Incremental search for the end of a head (the empty line). Remembers how far it got so
/// each byte is looked at once, however the input is fragmented.
#[derive(Debug, Default, Clone)]
pub(crate) struct HeadScanner {
    pos: usize,
    line_start: usize,
    start_line_done: bool,
}

impl HeadScanner {
    /// Whether part of a head was scanned already (the rest is still to come).
    pub(crate) fn in_progress(&self) -> bool {
        self.pos != 0
    }

    /// Forget progress (call after a head was consumed from the buffer).
    pub(crate) fn reset(&mut self) {
        *self = HeadScanner::default();
    }

    /// Returns the head's length once `buf` holds a complete head (including its final empty
    /// line), `None` if more bytes are needed, or the limit/grammar error.
    pub(crate) fn scan(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        kind: HeadKind,
    ) -> Result<Option<usize>, Http1Error> {
        loop {
            let rest = buf.get(self.pos..).unwrap_or_default();
            let Some(off) = memchr::memchr(b'\n', rest) else {
                self.pos = buf.len();
                // A CR at the end may be the first half of the request line's CRLF, which the
                // limit does not count once the line is whole: counting it here would make a
                // line of exactly the limit pass or fail depending on where the input was cut.
                let line_so_far = buf.len() - usize::from(buf.last() == Some(&b'\r'));
                if !self.start_line_done
                    && kind == HeadKind::Request
                    && line_so_far > limits.max_request_line
                {
                    return Err(Http1Error::RequestLineTooLong {
                        limit: limits.max_request_line,
                    });
                }
                if buf.len() > limits.max_head_size {
                    return Err(Http1Error::HeadTooLarge {
                        limit: limits.max_head_size,
                    });
                }
                return Ok(None);
            };
            let lf = self.pos + off;
            let content_end = line_content_end(buf, self.line_start, lf, limits.line_endings)?;
            let line = &buf[self.line_start..content_end];
            self.pos = lf + 1;
            if !self.start_line_done {
                if kind == HeadKind::Request && line.len() > limits.max_request_line {
                    return Err(Http1Error::RequestLineTooLong {
                        limit: limits.max_request_line,
                    });
                }
                if line.is_empty() {
                    return Err(Http1Error::Malformed("empty start line"));
                }
                self.start_line_done = true;
            } else if line.is_empty() {
                if self.pos > limits.max_head_size {
                    return Err(Http1Error::HeadTooLarge {
                        limit: limits.max_head_size,
                    });
                }
                return Ok(Some(self.pos));
            } else if line[0] == b' ' || line[0] == b'\t' {
                // obs-fold, or whitespace between the start line and the first field: both are
                // read differently by different parsers, so neither is allowed.
                return Err(Http1Error::ObsFold);
            }
            if self.pos > limits.max_head_size {
                return Err(Http1Error::HeadTooLarge {
                    limit: limits.max_head_size,
                });
            }
            self.line_start = self.pos;
        }
    }
}

/// Given the LF at `lf` ending the line that starts at `line_start`, returns where the line's
/// content ends (before CR), applying the bare-LF policy.
pub(crate) fn line_content_end(
    buf: &[u8],
    line_start: usize,
    lf: usize,
    policy: LineEndingPolicy,
) -> Result<usize, Http1Error> {
    if lf > line_start && buf.get(lf - 1) == Some(&b'\r') {
        Ok(lf - 1)
    } else if policy == LineEndingPolicy::AllowBareLf {
        Ok(lf)
    } else {
        Err(Http1Error::BareLf)
    }
}

/// Strips empty lines before a request line (RFC 9112 2.2 asks servers to ignore at least
/// one; clients often send a stray CRLF after a POST body). Returns the number of bytes.
pub(crate) fn leading_empty_lines(buf: &[u8], policy: LineEndingPolicy) -> usize {
    let mut n = 0;
    loop {
        match buf.get(n..n + 2) {
            Some(b"\r\n") => n += 2,
            _ if buf.get(n) == Some(&b'\n') && policy == LineEndingPolicy::AllowBareLf => n += 1,
            _ => return n,
        }
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body at all.
    None,
    /// Exactly this many bytes (non-zero).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    CloseDelimited,
}

/// A parsed request head and what it implies for the connection, as the parser's tests see
/// it (the server builds the request straight into its event: [`ParsedRequest::into_request`]).
#[derive(Debug)]
#[cfg(test)]
pub(crate) struct RequestHead {
    pub(crate) request: Request,
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
}

/// A parsed response head and what it implies for the connection.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) status: u16,
    pub(crate) reason: Bytes,
    pub(crate) version: Version,
    pub(crate) headers: Headers,
    pub(crate) framing: Framing,
    pub(crate) keep_alive: bool,
}

fn map_httparse(e: httparse::Error, limits: &Limits) -> Http1Error {
    match e {
        httparse::Error::TooManyHeaders => Http1Error::TooManyHeaders {
            limit: header_slots(limits),
        },
        httparse::Error::HeaderName => Http1Error::Malformed("invalid header name"),
        httparse::Error::HeaderValue => Http1Error::Malformed("invalid header value"),
        httparse::Error::NewLine => Http1Error::Malformed("invalid line ending"),
        httparse::Error::Status => Http1Error::Malformed("invalid status"),
        httparse::Error::Token => Http1Error::Malformed("invalid token"),
        httparse::Error::Version => Http1Error::Malformed("invalid version"),
    }
}

pub(super) fn header_slots(limits: &Limits) -> usize {
    limits.max_headers.min(Limits::HEADER_SLOTS)
}

fn offset_in(base: &[u8], part: &[u8]) -> (usize, usize) {
    // Pointer arithmetic only (no dereference): httparse hands out subslices of `base`.
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    (start, start + part.len())
}

/// Where the parsed `fields` of `head` start and how many there are, for
/// [`Headers::from_parsed`] (the fields are read back from the head when asked for).
pub(crate) fn field_range(head: &[u8], fields: &[httparse::Header<'_>]) -> (usize, usize) {
    let start = fields
        .first()
        .map_or(head.len(), |h| offset_in(head, h.name.as_bytes()).0);
    #[cfg(debug_assertions)]
    {
        // Every parse in tests, property tests and fuzzing checks that reading the fields back
        // agrees with httparse.
        let read_back = Headers::from_parsed(Bytes::copy_from_slice(head), start, fields.len());
        let same = read_back.iter().count() == fields.len()
            && read_back
                .iter()
                .zip(fields)
                .all(|((n, v), f)| n == f.name.as_bytes() && v == f.value);
        assert!(same, "parsed fields read back differently: {read_back:?}");
    }
    (start, fields.len())
}

fn version_of(minor: Option<u8>) -> Result<Version, Http1Error> {
    match minor {
        Some(0) => Ok(Version::Http10),
        Some(1) => Ok(Version::Http11),
        _ => Err(Http1Error::Malformed("invalid version")),
    }
}

/// A request head parsed where it lies in the receive buffer, kept as plain values (offsets
/// into the buffer) so the buffer can be split after parsing.
#[derive(Debug, PartialEq)]
pub(crate) struct ParsedRequest {
    method: Method,
    target: (usize, usize),
    version: Version,
    fields_start: usize,
    fields: usize,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

impl ParsedRequest {
    /// Builds the request from the head's bytes (the parsed buffer's first bytes, split off
    /// after parsing), with what it implies for the connection.
    #[cfg(test)]
    pub(crate) fn build(self, head: Bytes) -> RequestHead {
        RequestHead {
            framing: self.framing,
            keep_alive: self.keep_alive,
            request: self.into_request(head, Body::empty()),
        }
    }

    /// The request alone, with `body`: built where the caller puts it (the server builds it
    /// straight into its event).
    #[inline]
    pub(crate) fn into_request(self, head: Bytes, body: Body) -> Request {
        Request::received(
            self.method,
            self.target,
            self.version,
            Headers::from_parsed(head, self.fields_start, self.fields),
            body,
            self.expect_continue,
        )
    }

    /// How the body is framed.
    pub(crate) fn framing(&self) -> Framing {
        self.framing
    }

    /// Whether the connection stays open after this request.
    pub(crate) fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// The request's version.
    pub(crate) fn version(&self) -> Version {
        self.version
    }

    /// Whether it is a HEAD request (its answer has no body).
    pub(crate) fn is_head(&self) -> bool {
        self.method == Method::Head
    }

    /// Whether the client waits for `100 Continue` before sending the body.
    pub(crate) fn expect_continue(&self) -> bool {
        self.expect_continue
    }
}

/// Whether httparse's complete parse of `buf[..len]` is exactly what [`HeadScanner`] would
/// accept on the same bytes, with the head ending at the same place: then the scanner need not
/// run. httparse's grammar already rules out obs-fold and whitespace before a field (both are
/// invalid field-name bytes without the `ParserConfig` options we never set), lets CR appear
/// only as part of CRLF, and ends the head at the first empty line after the request line,
/// which is the scanner's end too. What is left is checked here: empty lines skipped before
/// the request line (the caller strips the ones our policy allows, so any left are the
/// scanner's business), a bare LF ending any line under [`LineEndingPolicy::RequireCrlf`], and
/// the 414 and 431 limits. `false` sends the head to the scanner, which gives the exact error.
fn complete_head_passes_scanner(
    buf: &[u8],
    len: usize,
    req: &httparse::Request<'_, '_>,
    limits: &Limits,
) -> bool {
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return false;
    };
    if offset_in(buf, method.as_bytes()).0 != 0 || len > limits.max_head_size {
        return false;
    }
    // "METHOD SP target SP HTTP/1.x": the version is eight bytes and the line ends after it.
    let line_len = offset_in(buf, path.as_bytes()).1 + 9;
    if line_len > limits.max_request_line {
        return false;
    }
    if limits.line_endings == LineEndingPolicy::RequireCrlf {
        // Every line ends in LF right before the next line starts: the request line at
        // `line_len`, each field line before the next field's name, the last field line
        // before the final empty line. A CR before each of those LFs, and before the final
        // one, means no line ended in a bare LF (httparse allows CR only directly before LF).
        let cr_before_lf = |next_line: usize| {
            next_line
                .checked_sub(2)
                .is_some_and(|i| buf.get(i) == Some(&b'\r'))
        };
        if !cr_before_lf(len) || !cr_before_lf(len.saturating_sub(2)) {
            return false;
        }
        if !req
            .headers
            .iter()
            .all(|h| cr_before_lf(offset_in(buf, h.name.as_bytes()).0))
        {
            return false;
        }
    }
    true
}

/// Parses the request head at the start of `buf`. Returns the head's length (including its
/// final empty line) with the request or the error it gets.
///
/// With `fast`, `buf` is the whole receive buffer and nothing was scanned yet: a complete head
/// that [`complete_head_passes_scanner`] is parsed in this one pass; anything else (a partial
/// head, an httparse error, a head the scanner must judge) returns `None`, and the caller
/// runs the scanner, then calls again without `fast` on exactly the head it found.
#[inline]
pub(crate) fn parse_request_in(
    buf: &[u8],
    limits: &Limits,
    fast: bool,
) -> Option<(usize, Result<ParsedRequest, Http1Error>)> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; Limits::HEADER_SLOTS];
    let mut req = httparse::Request::new(&mut []);
    let n = header_slots(limits);
    let len = match req.parse_with_uninit_headers(buf, &mut slots[..n]) {
        Ok(httparse::Status::Complete(len)) => {
            if fast && !complete_head_passes_scanner(buf, len, &req, limits) {
                return None;
            }
            len
        }
        _ if fast => return None,
        Ok(httparse::Status::Partial) => {
            return Some((buf.len(), Err(Http1Error::Malformed("incomplete head"))))
        }
        Err(e) => return Some((buf.len(), Err(map_httparse(e, limits)))),
    };
    Some((len, derive_request(buf, len, &req, limits)))
}

/// What a complete request head means: method, target, version, framing, connection.
#[inline]
fn derive_request(
    buf: &[u8],
    len: usize,
    req: &httparse::Request<'_, '_>,
    limits: &Limits,
) -> Result<ParsedRequest, Http1Error> {
    let version = version_of(req.version)?;
    let method = Method::from_token(req.method.unwrap_or_default().as_bytes());
    let path = req.path.unwrap_or_default();
    if path.is_empty() {
        return Err(Http1Error::Malformed("empty request target"));
    }
    let target = offset_in(buf, path.as_bytes());
    let info = scan_fields(req.headers)?;
    let fields = field_range(buf.get(..len).unwrap_or_default(), req.headers);
    finish_request(method, target, version, info, fields, limits)
}

/// The checks and decisions that follow from the framing-relevant fields.
// Always: `#[inline]` left it a call from the quick parser, and passing the method, the field
// summary and the result through memory cost ~55 instructions per request (callgrind).
#[inline(always)]
pub(super) fn finish_request(
    method: Method,
    target: (usize, usize),
    version: Version,
    info: FieldInfo,
    (fields_start, fields): (usize, usize),
    limits: &Limits,
) -> Result<ParsedRequest, Http1Error> {
    let mut framing = info.framing(version, limits)?;
    if framing == Framing::CloseDelimited {
        // Only responses may be delimited by close; a request without framing has no body.
        framing = Framing::None;
    }
    if (version == Version::Http11 && info.hosts != 1) || info.hosts > 1 {
        return Err(Http1Error::InvalidHost);
    }
    if info.bad_expect && version == Version::Http11 {
        return Err(Http1Error::ExpectationFailed);
    }
    let keep_alive = match version {
        Version::Http11 => !info.close,
        Version::Http10 => info.keep_alive && !info.close,
    };
    let expect_continue =
        info.expect_continue && version == Version::Http11 && framing != Framing::None;
    Ok(ParsedRequest {
        method,
        target,
        version,
        fields_start,
        fields,
        framing,
        keep_alive,
        expect_continue,
    })
}

/// Parses the request head at the start of `buf` in one pass, if it is whole and the scanner
/// need not judge it (see [`parse_request_in`] with `fast`); `None` sends it to the scanner.
#[inline]
pub(crate) fn parse_request_fast(
    buf: &[u8],
    limits: &Limits,
) -> Option<(usize, Result<ParsedRequest, Http1Error>)> {
    let quick = quick_request(buf, limits);
    #[cfg(debug_assertions)]
    if let Some(q) = &quick {
        // Every parse in tests, property tests and fuzzing checks the quick path against
        // httparse and the scanner's rules.
        let general = parse_request_in(buf, limits, true);
        assert_eq!(
            general.as_ref(),
            Some(q),
            "quick parse differs from httparse"
        );
    }
    quick.or_else(|| parse_request_in(buf, limits, true))
}

/// Parses a complete request head (as found by [`HeadScanner`]).
#[cfg(test)]
pub(crate) fn parse_request(head: Bytes, limits: &Limits) -> Result<RequestHead, Http1Error> {
    match parse_request_in(&head, limits, false) {
        Some((_, Ok(p))) => Ok(p.build(head)),
        Some((_, Err(e))) => Err(e),
        None => Err(Http1Error::Malformed("incomplete head")),
    }
}

/// Parses a complete response head. `head_request` says whether it answers a HEAD request
/// (then it has no body whatever its headers say).
pub(crate) fn parse_response(
    head: Bytes,
    limits: &Limits,
    head_request: bool,
) -> Result<ResponseHead, Http1Error> {
    // httparse's Response has no uninit variant; the response side is off the server hot path.
    let mut slots = vec![httparse::EMPTY_HEADER; header_slots(limits)];
    let mut res = httparse::Response::new(&mut slots);
    match res.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Http1Error::Malformed("incomplete head")),
        Err(e) => return Err(map_httparse(e, limits)),
    }
    let version = version_of(res.version)?;
    let status = res.code.unwrap_or(0);
    if !(100..=999).contains(&status) {
        return Err(Http1Error::Malformed("invalid status"));
    }
    let reason = res.reason.unwrap_or_default();
    let (rs, re) = offset_in(&head, reason.as_bytes());
    let info = scan_fields(res.headers)?;
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::None
    } else {
        match info.framing(version, limits) {
            // RFC 9112 6.3: a response whose final coding is not chunked is read until close.
            Err(Http1Error::UnsupportedTransferEncoding) => Framing::CloseDelimited,
            other => other?,
        }
    };
    let keep_alive = framing != Framing::CloseDelimited
        && match version {
            Version::Http11 => !info.close,
            Version::Http10 => info.keep_alive && !info.close,
        };
    let (fields_start, fields) = field_range(&head, res.headers);
    let reason = if reason.is_empty() {
        Bytes::new()
    } else {
        head.slice(rs..re)
    };
    Ok(ResponseHead {
        status,
        reason,
        version,
        headers: Headers::from_parsed(head, fields_start, fields),
        framing,
        keep_alive,
    })
}

/// What the framing-relevant header fields say, gathered in one pass.
#[derive(Default)]
pub(super) struct FieldInfo {
    content_length: Option<u64>,
    te_present: bool,
    te_chunked: usize,
    te_other: bool,
    te_chunked_last: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    bad_expect: bool,
    hosts: usize,
}

fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

fn scan_fields(headers: &[httparse::Header<'_>]) -> Result<FieldInfo, Http1Error> {
    let mut info = FieldInfo::default();
    for h in headers {
        info.add(h.name.as_bytes(), h.value)?;
    }
    Ok(info)
}

/// `name` is `host` in any case. Every request has one, so it is one 4-byte compare rather
/// than a byte-wise case fold: setting bit 0x20 lowercases a letter and turns no other byte
/// into one.
#[inline]
fn is_host(name: &[u8]) -> bool {
    <[u8; 4]>::try_from(name)
        .is_ok_and(|b| u32::from_le_bytes(b) | 0x2020_2020 == u32::from_le_bytes(*b"host"))
}

impl FieldInfo {
    /// Counts the field if it is a Host field (what `add` would do with it, whatever its
    /// value); false for any other field, which `add` must see.
    #[inline(always)]
    pub(super) fn add_if_host(&mut self, name: &[u8]) -> bool {
        let host = is_host(name);
        self.hosts += usize::from(host);
        host
    }

    /// Takes one field into account.
    #[inline]
    pub(super) fn add(&mut self, name: &[u8], value: &[u8]) -> Result<(), Http1Error> {
        // Dispatch on length first: most fields are none of these and cost one compare.
        match name.len() {
            4 if is_host(name) => self.hosts += 1,
            6 if name.eq_ignore_ascii_case(b"expect") => {
                if value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                    self.expect_continue = true;
                } else {
                    self.bad_expect = true;
                }
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for t in tokens(value) {
                    if t.eq_ignore_ascii_case(b"close") {
                        self.close = true;
                    } else if t.eq_ignore_ascii_case(b"keep-alive") {
                        self.keep_alive = true;
                    }
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                // A list ("5, 5") or repeated field is fine only if every value agrees.
                let mut any = false;
                for t in value.split(|&b| b == b',').map(|t| t.trim_ascii()) {
                    any = true;
                    let n = parse_decimal(t)?;
                    match self.content_length {
                        Some(prev) if prev != n => {
                            return Err(Http1Error::ConflictingContentLength)
                        }
                        _ => self.content_length = Some(n),
                    }
                }
                if !any {
                    return Err(Http1Error::InvalidContentLength);
                }
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                self.te_present = true;
                for t in tokens(value) {
                    if t.eq_ignore_ascii_case(b"chunked") {
                        self.te_chunked += 1;
                        self.te_chunked_last = true;
                    } else {
                        self.te_other = true;
                        self.te_chunked_last = false;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn framing(&self, version: Version, limits: &Limits) -> Result<Framing, Http1Error> {
        if self.te_present {
            if self.content_length.is_some() {
                return Err(Http1Error::ContentLengthWithTransferEncoding);
            }
            if version == Version::Http10 {
                return Err(Http1Error::InvalidTransferEncoding);
            }
            if self.te_chunked == 1 && self.te_chunked_last && !self.te_other {
                return Ok(Framing::Chunked);
            }
            if self.te_other {
                // Requests: 501. Responses: an unknown coding without final chunked is read
                // until close by the client (see `parse_response`), handled by the caller.
                return Err(Http1Error::UnsupportedTransferEncoding);
            }
            return Err(Http1Error::InvalidTransferEncoding);
        }
        match self.content_length {
            Some(n) if n > limits.max_body_size => Err(Http1Error::BodyTooLarge {
                limit: limits.max_body_size,
            }),
            Some(0) => Ok(Framing::None),
            Some(n) => Ok(Framing::Length(n)),
            None => Ok(Framing::CloseDelimited),
        }
    }
}

/// Parses 1*DIGIT into a u64, rejecting signs, spaces inside, empty input and overflow.
pub(crate) fn parse_decimal(t: &[u8]) -> Result<u64, Http1Error> {
    if t.is_empty() {
        return Err(Http1Error::InvalidContentLength);
    }
    let mut n: u64 = 0;
    for &b in t {
        if !b.is_ascii_digit() {
            return Err(Http1Error::InvalidContentLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(Http1Error::InvalidContentLength)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8], limits: &Limits) -> Result<Option<usize>, Http1Error> {
        HeadScanner::default().scan(input, limits, HeadKind::Request)
    }

    fn req(input: &'static [u8]) -> Result<RequestHead, Http1Error> {
        let limits = Limits::default();
        let len = scan_all(input, &limits)?.expect("complete head");
        parse_request(Bytes::from_static(input).slice(..len), &limits)
    }

    /// The 4-byte compare agrees with the byte-wise case fold for every byte in every place
    /// (and for names of other lengths).
    #[test]
    fn host_compare_matches_case_folding() {
        for at in 0..4 {
            for b in 0..=255u8 {
                for base in [*b"host", *b"HOST", *b"HoSt"] {
                    let mut name = base;
                    name[at] = b;
                    assert_eq!(
                        is_host(&name),
                        name.eq_ignore_ascii_case(b"host"),
                        "{name:?}"
                    );
                }
            }
        }
        assert!(!is_host(b"hos"));
        assert!(!is_host(b"hosts"));
        assert!(!is_host(b""));
    }

    #[test]
    fn scanner_finds_head_end_incrementally() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        let limits = Limits::default();
        let mut s = HeadScanner::default();
        for i in 0..input.len() {
            let r = s.scan(&input[..i], &limits, HeadKind::Request).unwrap();
            if i < 27 {
                assert_eq!(r, None, "at {i}");
            } else {
                assert_eq!(r, Some(27));
                return;
            }
        }
    }

    #[test]
    fn scanner_limits() {
        let limits = Limits {
            max_request_line: 16,
            max_head_size: 40,
            ..Limits::default()
        };
        assert_eq!(
            scan_all(b"GET /aaaaaaaaaaaaaaaaaaaaa", &limits),
            Err(Http1Error::RequestLineTooLong { limit: 16 })
        );
        assert_eq!(
            scan_all(
                b"GET / HTTP/1.1\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                &limits
            ),
            Err(Http1Error::HeadTooLarge { limit: 40 })
        );
        assert_eq!(
            scan_all(b"GET / HTTP/1.1\nHost: a\r\n\r\n", &limits),
            Err(Http1Error::BareLf)
        );
        assert_eq!(
            scan_all(b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", &limits),
            Err(Http1Error::ObsFold)
        );
        let lax = Limits {
            line_endings: LineEndingPolicy::AllowBareLf,
            ..limits
        };
        assert_eq!(scan_all(b"GET / HTTP/1.1\nHost: a\n\n", &lax), Ok(Some(24)));
    }

    #[test]
    fn parses_request_and_framing() {
        let r = req(b"POST /x?y HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(r.request.method, Method::Post);
        assert_eq!(r.request.target(), b"/x?y");
        assert_eq!(r.framing, Framing::Length(5));
        assert!(r.keep_alive);
        assert_eq!(r.request.headers().get("content-length"), Some(&b"5"[..]));
        let r = req(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert!(r.keep_alive);
        assert_eq!(r.framing, Framing::None);
        let r = req(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!r.keep_alive);
        let r = req(b"PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(r.framing, Framing::Chunked);
        let r =
            req(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n")
                .unwrap();
        assert_eq!(r.framing, Framing::Length(3));
    }

    #[test]
    fn rejects_bad_framing() {
        let cases: &[(&'static [u8], Http1Error)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", Http1Error::ConflictingContentLength),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", Http1Error::InvalidContentLength),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", Http1Error::InvalidContentLength),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", Http1Error::ContentLengthWithTransferEncoding),
            (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Http1Error::UnsupportedTransferEncoding),
            (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", Http1Error::InvalidTransferEncoding),
            (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Http1Error::InvalidTransferEncoding),
            (b"GET / HTTP/1.1\r\n\r\n", Http1Error::InvalidHost),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Http1Error::InvalidHost),
            (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", Http1Error::ExpectationFailed),
            (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999\r\n\r\n", Http1Error::BodyTooLarge { limit: 16 * 1024 * 1024 }),
        ];
        for (input, want) in cases {
            assert_eq!(
                req(input).unwrap_err(),
                *want,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn response_framing() {
        let limits = Limits::default();
        let parse = |s: &'static [u8], head: bool| {
            parse_response(Bytes::from_static(s), &limits, head).unwrap()
        };
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false).framing,
            Framing::Length(3)
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true).framing,
            Framing::None
        );
        assert_eq!(
            parse(b"HTTP/1.1 204 No Content\r\n\r\n", false).framing,
            Framing::None
        );
        let r = parse(b"HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!(r.framing, Framing::CloseDelimited);
        assert!(!r.keep_alive);
        assert_eq!(&r.reason[..], b"OK");
    }

    proptest::proptest! {
        /// Reading fields back from the head agrees with httparse (asserted inside
        /// `field_range` in debug builds) whatever the whitespace, colons and line endings.
        #[test]
        fn fields_read_back_as_httparse_saw_them(
            fields in proptest::collection::vec(
                ("[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,8}", "[ \t]{0,3}[ \t:a-z,;éü]{0,12}[ \t]{0,3}", proptest::bool::ANY),
                0..12,
            ),
        ) {
            let mut head = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
            for (name, value, crlf) in &fields {
                head.extend_from_slice(name.as_bytes());
                head.push(b':');
                head.extend_from_slice(value.as_bytes());
                head.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
            }
            head.extend_from_slice(b"\r\n");
            let limits = Limits { line_endings: LineEndingPolicy::AllowBareLf, ..Limits::default() };
            if let Ok(r) = parse_request(Bytes::from(head), &limits) {
                let h = r.request.headers();
                proptest::prop_assert_eq!(h.iter().count(), h.len());
            }
        }
    }
}
