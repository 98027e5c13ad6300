//! Encoding heads and bodies into the outgoing byte queue.
//!
//! Heads are written into one `BytesMut`, so a burst of pipelined responses leaves as a single
//! buffer; large body `Bytes` are queued as their own parts instead of being copied, so the
//! transport can send them vectored (and zero-copy where it can). Every caller-supplied field is
//! validated as it is written: a CR or LF in a header value would let the caller's input split
//! the response, so it is an error, never escaped.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::Http1Error;
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

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub(crate) fn valid_token(t: &[u8]) -> bool {
    !t.is_empty() && t.iter().all(|&b| is_tchar(b))
}

fn valid_value(v: &[u8]) -> bool {
    !v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

/// Whether `headers` carry a `Connection: close` token.
pub(crate) fn wants_close(headers: &Headers) -> bool {
    headers.get_all("connection").any(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// Writes header fields, skipping those the encoder owns. Returns whether `Date` was present.
fn put_fields(out: &mut BytesMut, headers: &Headers) -> Result<bool, Http1Error> {
    let mut has_date = false;
    for (name, value) in headers.iter() {
        if !valid_token(name) || !valid_value(value) {
            return Err(Http1Error::InvalidHeader);
        }
        let owned = name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"connection");
        if owned {
            continue;
        }
        has_date |= name.eq_ignore_ascii_case(b"date");
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    Ok(has_date)
}

fn put_framing(out: &mut BytesMut, framing: OutFraming, conn: ConnHeader) {
    match framing {
        OutFraming::None => {}
        OutFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            put_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        OutFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    match conn {
        ConnHeader::None => {}
        ConnHeader::Close => out.extend_from_slice(b"connection: close\r\n"),
        ConnHeader::KeepAlive => out.extend_from_slice(b"connection: keep-alive\r\n"),
    }
}

/// Runs `write` and truncates `out` back if it fails, so a rejected message leaves no trace.
fn atomically(
    out: &mut BytesMut,
    write: impl FnOnce(&mut BytesMut) -> Result<(), Http1Error>,
) -> Result<(), Http1Error> {
    let mark = out.len();
    let r = write(out);
    if r.is_err() {
        out.truncate(mark);
    }
    r
}

/// Encodes a status line and header section.
pub(crate) fn response_head(
    out: &mut BytesMut,
    status: u16,
    reason: &[u8],
    headers: &Headers,
    framing: OutFraming,
    conn: ConnHeader,
    date: Option<&[u8]>,
) -> Result<(), Http1Error> {
    if !(100..=999).contains(&status) || !valid_value(reason) {
        return Err(Http1Error::InvalidStartLine);
    }
    atomically(out, |out| {
        out.extend_from_slice(b"HTTP/1.1 ");
        put_decimal(out, u64::from(status));
        out.put_u8(b' ');
        if reason.is_empty() {
            out.extend_from_slice(reason_phrase(status).as_bytes());
        } else {
            out.extend_from_slice(reason);
        }
        out.extend_from_slice(b"\r\n");
        let has_date = put_fields(out, headers)?;
        put_framing(out, framing, conn);
        if let (Some(d), false) = (date, has_date) {
            out.extend_from_slice(b"date: ");
            out.extend_from_slice(d);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    })
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
        put_fields(out, headers)?;
        put_framing(out, framing, conn);
        out.extend_from_slice(b"\r\n");
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

fn put_decimal(out: &mut BytesMut, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

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
            Some(b"D"),
        )
        .unwrap();
        assert_eq!(
            &out[..],
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\ndate: D\r\n\r\n"
        );
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
        put_decimal(&mut out, u64::MAX);
        assert_eq!(&out[..], b"18446744073709551615");
    }
}
