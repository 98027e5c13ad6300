//! Encoding heads and bodies into the outgoing byte queue.
//!
//! Heads are written into one `BytesMut`, so a burst of pipelined responses leaves as a single
//! buffer; large body `Bytes` are queued as their own parts instead of being copied, so the
//! transport can send them vectored (and zero-copy where it can). Every caller-supplied field is
//! validated as it is written: a CR or LF in a header value would let the caller's input split
//! the response, so it is an error, never escaped.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use super::date::{DateCache, DATE_LEN};
use super::error::Http1Error;
use super::field::{field_role, has_close_token, valid_token, valid_value, FieldRole};
use super::message::{reason_phrase, Headers, Version};

/// Bodies up to this size are copied next to their head: one buffer beats an extra iovec.
const COPY_THRESHOLD: usize = 1024;

/// An ordered queue of outgoing bytes: a coalescing buffer plus large parts kept as-is.
#[derive(Debug, Default)]
pub(crate) struct WireBuf {
    /// Parts ready to send, in order, before `buf`.
    parts: VecDeque<Bytes>,
    parts_len: usize,
    /// Bytes still being coalesced (after every part in `parts`).
    buf: BytesMut,
}

impl WireBuf {
    pub(crate) fn len(&self) -> usize {
        self.parts_len + self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Queues `data`, copying it only when small.
    pub(crate) fn put_bytes(&mut self, data: Bytes) {
        if data.len() <= COPY_THRESHOLD {
            self.buf.extend_from_slice(&data);
        } else {
            self.flush_buf();
            self.parts_len += data.len();
            self.parts.push_back(data);
        }
    }

    fn flush_buf(&mut self) {
        if !self.buf.is_empty() {
            let b = self.buf.split().freeze();
            self.parts_len += b.len();
            self.parts.push_back(b);
        }
    }

    /// Moves everything queued in `other` to the end of `self`, keeping order.
    pub(crate) fn append(&mut self, other: &mut WireBuf) {
        if other.is_empty() {
            return;
        }
        if !other.parts.is_empty() {
            self.flush_buf();
            self.parts_len += other.parts_len;
            self.parts.append(&mut other.parts);
            other.parts_len = 0;
        }
        self.buf.extend_from_slice(&other.buf);
        other.buf.clear();
    }

    /// The next bytes to send, in order.
    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        if let Some(p) = self.parts.pop_front() {
            self.parts_len -= p.len();
            return Some(p);
        }
        if self.buf.is_empty() {
            None
        } else {
            Some(self.buf.split().freeze())
        }
    }
}

/// How the encoder frames a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutFraming {
    /// No framing field: no body (1xx, 204, 304, bodiless request) or close-delimited.
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Connection-management field the encoder writes (it owns `Connection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnHeader {
    None,
    Close,
    KeepAlive,
}

/// Whether `headers` carry a `Connection: close` token.
pub(crate) fn wants_close(headers: &Headers) -> bool {
    headers
        .iter()
        .any(|(n, v)| field_role(n) == FieldRole::Connection && has_close_token(v))
}

/// What [`put_fields`] saw besides the fields it wrote.
#[derive(Default)]
struct Seen {
    date: bool,
    close: bool,
}

/// Writes header fields, skipping those the encoder owns, and notes `Date` and
/// `Connection: close`. A shared [`FieldBlock`](super::FieldBlock) and appended fields were
/// validated when built and usually go out as one copy each; parsed ones (a proxy forwarding
/// what it received) are checked again here. On an invalid field the caller truncates `out` back to where its
/// message began, so a rejected message leaves no trace.
fn put_fields(out: &mut BytesMut, headers: &Headers) -> Result<Seen, Http1Error> {
    let block = headers.appended_block()?;
    let mut seen = Seen::default();
    match headers.shared_block() {
        Some(shared) => out.extend_from_slice(shared),
        None => {
            for (name, value) in headers.parsed_fields() {
                if !valid_token(name) || !valid_value(value) {
                    return Err(Http1Error::InvalidHeader);
                }
                put_field(out, name, value, &mut seen);
            }
        }
    }
    match block {
        Some(encoded) => out.extend_from_slice(encoded),
        None => {
            for (name, value) in headers.appended_fields() {
                put_field(out, name, value, &mut seen);
            }
        }
    }
    Ok(seen)
}

/// Writes one valid field unless the encoder writes it itself.
fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8], seen: &mut Seen) {
    match field_role(name) {
        FieldRole::Owned => return,
        FieldRole::Connection => {
            seen.close |= has_close_token(value);
            return;
        }
        FieldRole::Date => seen.date = true,
        FieldRole::Plain => {}
    }
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Runs `write` and truncates `out` back if it fails, so a rejected message leaves no trace.
fn atomically<T>(
    out: &mut BytesMut,
    write: impl FnOnce(&mut BytesMut) -> Result<T, Http1Error>,
) -> Result<T, Http1Error> {
    let mark = out.len();
    let r = write(out);
    if r.is_err() {
        out.truncate(mark);
    }
    r
}

/// Room for the longest tail: `content-length: ` and 20 digits, `connection: keep-alive`,
/// a `date` line and the final empty line, each with its CRLF.
const TAIL_MAX: usize = 18 + 20 + 24 + 8 + DATE_LEN + 2;

/// The framing, connection and date fields and the empty line ending the head. Written piece by
/// piece after one reservation: every piece but the length's digits has a constant size, so
/// each is a few stores, not a `memcpy` call (and the digits go byte by byte for the same
/// reason: a copy of a variable length is a call).
fn put_tail(
    out: &mut BytesMut,
    framing: OutFraming,
    conn: ConnHeader,
    date: Option<&[u8; DATE_LEN]>,
) {
    out.reserve(TAIL_MAX);
    match framing {
        OutFraming::None => {}
        OutFraming::Length(len) => {
            out.extend_from_slice(b"content-length: ");
            for &digit in itoa::Buffer::new().format(len).as_bytes() {
                out.put_u8(digit);
            }
            out.extend_from_slice(b"\r\n");
        }
        OutFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    match conn {
        ConnHeader::None => {}
        ConnHeader::Close => out.extend_from_slice(b"connection: close\r\n"),
        ConnHeader::KeepAlive => out.extend_from_slice(b"connection: keep-alive\r\n"),
    }
    if let Some(d) = date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(d);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The whole status line for common statuses sent with their canonical phrase.
fn status_line(status: u16) -> Option<&'static [u8]> {
    Some(match status {
        200 => b"HTTP/1.1 200 OK\r\n",
        201 => b"HTTP/1.1 201 Created\r\n",
        204 => b"HTTP/1.1 204 No Content\r\n",
        301 => b"HTTP/1.1 301 Moved Permanently\r\n",
        302 => b"HTTP/1.1 302 Found\r\n",
        304 => b"HTTP/1.1 304 Not Modified\r\n",
        400 => b"HTTP/1.1 400 Bad Request\r\n",
        404 => b"HTTP/1.1 404 Not Found\r\n",
        500 => b"HTTP/1.1 500 Internal Server Error\r\n",
        503 => b"HTTP/1.1 503 Service Unavailable\r\n",
        _ => return None,
    })
}

/// Encodes a status line and header section. With `honour_close`, a `Connection: close` among
/// `headers` makes `conn` [`ConnHeader::Close`]; returns whether there was one (found while
/// writing the fields rather than by another walk over them).
#[allow(clippy::too_many_arguments)]
pub(crate) fn response_head(
    out: &mut BytesMut,
    status: u16,
    reason: &[u8],
    headers: &Headers,
    framing: OutFraming,
    conn: ConnHeader,
    honour_close: bool,
    date: Option<&[u8; DATE_LEN]>,
) -> Result<bool, Http1Error> {
    if !(100..=999).contains(&status) || !valid_value(reason) {
        return Err(Http1Error::InvalidStartLine);
    }
    // Room for a typical head at once; fields reserve more if they need it.
    out.reserve(64 + reason.len() + 128 + TAIL_MAX);
    atomically(out, |out| {
        match status_line(status).filter(|_| reason.is_empty()) {
            Some(line) => out.extend_from_slice(line),
            None => {
                let reason = if reason.is_empty() {
                    reason_phrase(status).as_bytes()
                } else {
                    reason
                };
                // 100..=999: always three digits.
                let digits = [
                    b'0' + (status / 100) as u8,
                    b'0' + (status / 10 % 10) as u8,
                    b'0' + (status % 10) as u8,
                ];
                out.extend_from_slice(b"HTTP/1.1 ");
                out.extend_from_slice(&digits);
                out.put_u8(b' ');
                out.extend_from_slice(reason);
                out.extend_from_slice(b"\r\n");
            }
        }
        let seen = put_fields(out, headers)?;
        let conn = if honour_close && seen.close {
            ConnHeader::Close
        } else {
            conn
        };
        put_tail(out, framing, conn, date.filter(|_| !seen.date));
        Ok(seen.close)
    })
}

/// The whole head of the last plain answer, and what it was built from. A server mostly sends
/// the same kind of answer again (same status, same shared fields, a body of the same length,
/// within the same second), and then the head is one copy instead of a status-line lookup, two
/// blocks, the length's digits, the date and their capacity checks (~250 instructions a
/// response with callgrind on the plaintext benchmark).
#[derive(Debug, Default)]
pub(crate) struct PlainHeadCache {
    /// Status, body length and the second of the `Date` (`None`: no `Date`) the head was
    /// built for; `None` before the first.
    key: Option<(u16, usize, Option<u64>)>,
    /// The shared field block the head was built from. Held, not just compared: while held,
    /// its storage cannot be freed and reused, so the same address and length mean the same
    /// bytes (they are immutable).
    block: Option<Bytes>,
    head: BytesMut,
}

impl PlainHeadCache {
    /// Whether the cached head is the one for these parts.
    // Always: `#[inline]` left it a call on every answer (~18 instructions more, callgrind).
    #[inline(always)]
    fn holds(&self, key: (u16, usize, Option<u64>), block: Option<&Bytes>) -> bool {
        self.key == Some(key)
            && match (&self.block, block) {
                (None, None) => true,
                (Some(a), Some(b)) => a.as_ptr() == b.as_ptr() && a.len() == b.len(),
                _ => false,
            }
    }

    /// Builds the head as [`plain_response`]'s general way writes it.
    #[cold]
    #[inline(never)]
    fn rebuild(
        &mut self,
        line: &[u8],
        block: Option<&Bytes>,
        key: (u16, usize, Option<u64>),
        date: Option<&DateCache>,
    ) {
        self.head.clear();
        self.head.extend_from_slice(line);
        if let Some(b) = block {
            self.head.extend_from_slice(b);
        }
        put_tail(
            &mut self.head,
            OutFraming::Length(key.1 as u64),
            ConnHeader::None,
            date.map(DateCache::as_array),
        );
        self.block = block.cloned();
        self.key = Some(key);
    }
}

/// Writes a whole response whose parts need no checks (see
/// [`Headers::plain_blocks`](super::Headers)): status line, the two field blocks,
/// `Content-Length`, `Date`, the empty line and the body, after one reservation. `None` when the
/// response is not of that kind (a status without a canonical line or one that has no body, a
/// reason phrase, a large body, fields to check); the caller then takes the general way, which
/// writes the same bytes for these responses. An answer whose fields are one shared block (or
/// none) takes its head from `cache`.
#[inline]
pub(crate) fn plain_response(
    out: &mut BytesMut,
    cache: &mut PlainHeadCache,
    status: u16,
    reason: &[u8],
    headers: &Headers,
    body: &[u8],
    date: Option<&DateCache>,
) -> Option<()> {
    if !reason.is_empty() || body.len() > COPY_THRESHOLD || matches!(status, 204 | 304) {
        return None;
    }
    if let Some(block) = headers.sole_block() {
        let key = (status, body.len(), date.map(DateCache::secs));
        if !cache.holds(key, block) {
            cache.rebuild(status_line(status)?, block, key, date);
        }
        out.reserve(cache.head.len() + body.len());
        out.extend_from_slice(&cache.head);
        out.extend_from_slice(body);
        return Some(());
    }
    let date = date.map(DateCache::as_array);
    let line = status_line(status)?;
    let (leading, added) = headers.plain_blocks()?;
    out.reserve(line.len() + leading.len() + added.len() + TAIL_MAX + body.len());
    out.extend_from_slice(line);
    out.extend_from_slice(leading);
    // Usually empty (the fields are a shared block): a copy of a variable length is a call.
    if !added.is_empty() {
        out.extend_from_slice(added);
    }
    put_tail(
        out,
        OutFraming::Length(body.len() as u64),
        ConnHeader::None,
        date,
    );
    out.extend_from_slice(body);
    Some(())
}

/// Encodes a request line and header section.
pub(crate) fn request_head(
    out: &mut BytesMut,
    method: &[u8],
    target: &[u8],
    version: Version,
    headers: &Headers,
    framing: OutFraming,
    conn: ConnHeader,
) -> Result<(), Http1Error> {
    let target_ok = !target.is_empty() && target.iter().all(|&b| b > b' ' && b != 0x7f);
    if !valid_token(method) || !target_ok {
        return Err(Http1Error::InvalidStartLine);
    }
    atomically(out, |out| {
        out.extend_from_slice(method);
        out.put_u8(b' ');
        out.extend_from_slice(target);
        out.put_u8(b' ');
        out.extend_from_slice(version.as_bytes());
        out.extend_from_slice(b"\r\n");
        // The client decided `conn` from the fields already (see `wants_close`).
        put_fields(out, headers)?;
        put_tail(out, framing, conn, None);
        Ok(())
    })
}

/// Encodes one chunk (`data` must be non-empty: an empty chunk would end the body, so empty
/// data is silently skipped).
pub(crate) fn chunk(out: &mut WireBuf, data: Bytes) {
    if data.is_empty() {
        return;
    }
    put_hex(out.buf_mut(), data.len() as u64);
    out.buf_mut().extend_from_slice(b"\r\n");
    out.put_bytes(data);
    out.buf_mut().extend_from_slice(b"\r\n");
}

/// Encodes the last chunk and optional trailer fields.
pub(crate) fn last_chunk(out: &mut BytesMut, trailers: Option<&Headers>) -> Result<(), Http1Error> {
    atomically(out, |out| {
        out.extend_from_slice(b"0\r\n");
        if let Some(t) = trailers {
            put_fields(out, t)?;
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    })
}

/// The interim response sent for `Expect: 100-continue`.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

fn put_hex(out: &mut BytesMut, mut n: u64) {
    let mut tmp = [0u8; 16];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8; DATE_LEN] = b"Sun, 06 Nov 1994 08:49:37 GMT";

    #[test]
    fn response_head_with_framing_and_date() {
        let mut out = BytesMut::new();
        let mut h = Headers::new();
        h.append("content-type", "text/plain");
        h.append("Content-Length", "999");
        response_head(
            &mut out,
            200,
            b"",
            &h,
            OutFraming::Length(5),
            ConnHeader::Close,
            true,
            Some(DATE),
        )
        .unwrap();
        assert_eq!(
            &out[..],
            &b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"[..]
        );
    }

    #[test]
    fn a_shared_field_block_encodes_like_appended_fields() {
        use super::super::FieldBlock;
        let encode = |h: &Headers| {
            let mut out = BytesMut::new();
            let close = response_head(
                &mut out,
                200,
                b"",
                h,
                OutFraming::Length(2),
                ConnHeader::None,
                true,
                Some(DATE),
            );
            (close, out)
        };
        for fields in [
            vec![("server", "sinew"), ("content-type", "text/plain")],
            vec![("Date", "Mon, 07 Nov 1994 08:49:37 GMT"), ("x", "y")],
            vec![("connection", "close"), ("content-length", "99")],
        ] {
            let block = FieldBlock::new(fields.iter().copied()).expect("valid");
            let mut appended = Headers::new();
            for (n, v) in &fields {
                appended.append(n, v);
            }
            assert_eq!(
                encode(&Headers::from_block(&block)),
                encode(&appended),
                "{fields:?}"
            );
            // A block moved to static memory is the same block.
            let leaked = block.clone().into_static();
            assert!(leaked == block);
            assert_eq!(
                encode(&Headers::from_block(&leaked)),
                encode(&appended),
                "static {fields:?}"
            );
        }
    }

    #[test]
    fn status_lines_match_the_general_form() {
        for status in 100..=999 {
            for reason in [&b""[..], b"Custom"] {
                let mut out = BytesMut::new();
                let none = Headers::new();
                response_head(
                    &mut out,
                    status,
                    reason,
                    &none,
                    OutFraming::None,
                    ConnHeader::None,
                    true,
                    None,
                )
                .unwrap();
                let phrase = if reason.is_empty() {
                    reason_phrase(status).as_bytes()
                } else {
                    reason
                };
                let mut want = format!("HTTP/1.1 {status} ").into_bytes();
                want.extend_from_slice(phrase);
                want.extend_from_slice(b"\r\n\r\n");
                assert_eq!(&out[..], &want[..]);
            }
        }
    }

    #[test]
    fn rejects_response_splitting_and_leaves_no_trace() {
        let mut out = BytesMut::from(&b"prev"[..]);
        let mut h = Headers::new();
        h.append("x", "a\r\nSet-Cookie: evil");
        let r = response_head(
            &mut out,
            200,
            b"",
            &h,
            OutFraming::None,
            ConnHeader::None,
            true,
            None,
        );
        assert_eq!(r, Err(Http1Error::InvalidHeader));
        assert_eq!(&out[..], b"prev");
        let mut h = Headers::new();
        h.append("bad name", "v");
        assert!(request_head(
            &mut out,
            b"GET",
            b"/",
            Version::Http11,
            &h,
            OutFraming::None,
            ConnHeader::None
        )
        .is_err());
        assert!(request_head(
            &mut out,
            b"GET",
            b"/a b",
            Version::Http11,
            &Headers::new(),
            OutFraming::None,
            ConnHeader::None
        )
        .is_err());
        assert!(response_head(
            &mut out,
            1000,
            b"",
            &Headers::new(),
            OutFraming::None,
            ConnHeader::None,
            true,
            None
        )
        .is_err());
    }

    #[test]
    fn chunks_and_numbers() {
        let mut w = WireBuf::default();
        chunk(&mut w, Bytes::from_static(b"hello"));
        chunk(&mut w, Bytes::new());
        let big = Bytes::from(vec![b'x'; 3000]);
        chunk(&mut w, big.clone());
        last_chunk(w.buf_mut(), None).unwrap();
        let mut all = Vec::new();
        while let Some(p) = w.pop() {
            all.extend_from_slice(&p);
        }
        let mut want = b"5\r\nhello\r\nbb8\r\n".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(all, want);
        let mut out = BytesMut::new();
        put_tail(
            &mut out,
            OutFraming::Length(u64::MAX),
            ConnHeader::KeepAlive,
            Some(DATE),
        );
        assert_eq!(
            &out[..],
            &b"content-length: 18446744073709551615\r\nconnection: keep-alive\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"[..]
        );
    }
}
