//! Body decoding: Content-Length, chunked (with trailers) and close-delimited.
//!
//! Decoded data is split off the front of the caller's `BytesMut` and frozen, so body chunks
//! are zero-copy `Bytes` views of the receive buffer. Every line the decoder has to buffer
//! (chunk-size lines, trailers) is bounded by `Limits::max_chunk_line`, and the running body
//! total by `Limits::max_body_size`.

use bytes::{Buf, Bytes, BytesMut};

use super::error::Http1Error;
use super::limits::{Limits, LineEndingPolicy};
use super::message::Headers;
use super::parse::{field_range, line_content_end};

/// Most trailer fields accepted (trailers are rare and should be small).
const MAX_TRAILERS: usize = 32;

/// One step of body decoding.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Body bytes (never empty).
    Data(Bytes),
    /// The body is complete; chunked bodies may carry trailers.
    End(Option<Headers>),
    /// More input is needed.
    NeedMore,
}

#[derive(Debug)]
pub(crate) enum ChunkState {
    Size,
    Data { remaining: u64 },
    DataCrlf,
    Trailers,
    Done,
}

/// Incremental body decoder for one message.
#[derive(Debug)]
pub(crate) enum BodyDecoder {
    /// `remaining` bytes still to come.
    Length { remaining: u64 },
    /// Chunked transfer coding.
    Chunked {
        state: ChunkState,
        total: u64,
        scanned: usize,
        line_start: usize,
    },
    /// Everything until the peer closes (responses only).
    CloseDelimited { total: u64 },
}

impl BodyDecoder {
    pub(crate) fn length(n: u64) -> Self {
        BodyDecoder::Length { remaining: n }
    }

    pub(crate) fn chunked() -> Self {
        BodyDecoder::Chunked {
            state: ChunkState::Size,
            total: 0,
            scanned: 0,
            line_start: 0,
        }
    }

    pub(crate) fn close_delimited() -> Self {
        BodyDecoder::CloseDelimited { total: 0 }
    }

    /// Decodes the next piece from the front of `buf`.
    pub(crate) fn decode(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Decoded, Http1Error> {
        match self {
            BodyDecoder::Length { remaining } => {
                if *remaining == 0 {
                    return Ok(Decoded::End(None));
                }
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let n = take_len(*remaining, buf.len());
                *remaining -= n as u64;
                Ok(Decoded::Data(buf.split_to(n).freeze()))
            }
            BodyDecoder::CloseDelimited { total } => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                *total = total.saturating_add(buf.len() as u64);
                if *total > limits.max_body_size {
                    return Err(Http1Error::BodyTooLarge {
                        limit: limits.max_body_size,
                    });
                }
                Ok(Decoded::Data(buf.split().freeze()))
            }
            BodyDecoder::Chunked {
                state,
                total,
                scanned,
                line_start,
            } => decode_chunked(state, total, scanned, line_start, buf, limits),
        }
    }

    /// Whether the decoder needs the connection's end to finish (close-delimited).
    pub(crate) fn is_close_delimited(&self) -> bool {
        matches!(self, BodyDecoder::CloseDelimited { .. })
    }
}

fn take_len(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

fn decode_chunked(
    state: &mut ChunkState,
    total: &mut u64,
    scanned: &mut usize,
    line_start: &mut usize,
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Decoded, Http1Error> {
    loop {
        match state {
            ChunkState::Size => {
                let Some(off) = memchr::memchr(b'\n', buf.get(*scanned..).unwrap_or_default())
                else {
                    if buf.len() > limits.max_chunk_line {
                        return Err(Http1Error::InvalidChunkSize);
                    }
                    *scanned = buf.len();
                    return Ok(Decoded::NeedMore);
                };
                let lf = *scanned + off;
                if lf + 1 > limits.max_chunk_line {
                    return Err(Http1Error::InvalidChunkSize);
                }
                let end = line_content_end(buf, 0, lf, limits.line_endings)?;
                let size = parse_chunk_size(&buf[..end])?;
                buf.advance(lf + 1);
                *scanned = 0;
                if size == 0 {
                    *state = ChunkState::Trailers;
                    *line_start = 0;
                    continue;
                }
                *total = total
                    .checked_add(size)
                    .ok_or(Http1Error::InvalidChunkSize)?;
                if *total > limits.max_body_size {
                    return Err(Http1Error::BodyTooLarge {
                        limit: limits.max_body_size,
                    });
                }
                *state = ChunkState::Data { remaining: size };
            }
            ChunkState::Data { remaining } => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let n = take_len(*remaining, buf.len());
                *remaining -= n as u64;
                if *remaining == 0 {
                    *state = ChunkState::DataCrlf;
                }
                return Ok(Decoded::Data(buf.split_to(n).freeze()));
            }
            ChunkState::DataCrlf => match (buf.first(), buf.get(1)) {
                (None, _) | (Some(b'\r'), None) => return Ok(Decoded::NeedMore),
                (Some(b'\r'), Some(b'\n')) => {
                    buf.advance(2);
                    *state = ChunkState::Size;
                }
                (Some(b'\n'), _) if limits.line_endings == LineEndingPolicy::AllowBareLf => {
                    buf.advance(1);
                    *state = ChunkState::Size;
                }
                (Some(b'\n'), _) => return Err(Http1Error::BareLf),
                _ => return Err(Http1Error::InvalidChunkTerminator),
            },
            ChunkState::Trailers => {
                return decode_trailers(state, scanned, line_start, buf, limits)
            }
            ChunkState::Done => return Ok(Decoded::End(None)),
        }
    }
}

/// Parses `1*HEXDIG [ BWS ";" chunk-ext ]`, rejecting overflow and control characters.
fn parse_chunk_size(line: &[u8]) -> Result<u64, Http1Error> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(Http1Error::InvalidChunkSize);
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        if size >> 60 != 0 {
            return Err(Http1Error::InvalidChunkSize);
        }
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        size = (size << 4) | u64::from(d);
    }
    let rest = &line[digits..];
    let ext = rest.trim_ascii_start();
    if !(ext.is_empty() || ext[0] == b';') || (!rest.is_empty() && ext.is_empty()) {
        // Trailing junk, or whitespace with no extension after it.
        return Err(Http1Error::InvalidChunkSize);
    }
    if ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Http1Error::InvalidChunkSize);
    }
    Ok(size)
}

fn decode_trailers(
    state: &mut ChunkState,
    scanned: &mut usize,
    line_start: &mut usize,
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Decoded, Http1Error> {
    loop {
        let Some(off) = memchr::memchr(b'\n', buf.get(*scanned..).unwrap_or_default()) else {
            if buf.len() > limits.max_chunk_line {
                return Err(Http1Error::TrailersTooLarge);
            }
            *scanned = buf.len();
            return Ok(Decoded::NeedMore);
        };
        let lf = *scanned + off;
        if lf + 1 > limits.max_chunk_line {
            return Err(Http1Error::TrailersTooLarge);
        }
        let end = line_content_end(buf, *line_start, lf, limits.line_endings)?;
        let line = &buf[*line_start..end];
        *scanned = lf + 1;
        if line.is_empty() {
            let section = buf.split_to(lf + 1).freeze();
            *state = ChunkState::Done;
            *scanned = 0;
            if *line_start == 0 {
                return Ok(Decoded::End(None));
            }
            return parse_trailers(section).map(|h| Decoded::End(Some(h)));
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(Http1Error::ObsFold);
        }
        *line_start = lf + 1;
    }
}

fn parse_trailers(section: Bytes) -> Result<Headers, Http1Error> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    let fields = match httparse::parse_headers(&section, &mut slots) {
        Ok(httparse::Status::Complete((_, fields))) => fields,
        Ok(httparse::Status::Partial) => return Err(Http1Error::Malformed("incomplete trailers")),
        Err(httparse::Error::TooManyHeaders) => return Err(Http1Error::TrailersTooLarge),
        Err(_) => return Err(Http1Error::Malformed("invalid trailer field")),
    };
    let (start, count) = field_range(&section, fields);
    Ok(Headers::from_parsed(section, start, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(
        mut d: BodyDecoder,
        input: &[u8],
        limits: &Limits,
    ) -> Result<(Vec<u8>, Option<Headers>), Http1Error> {
        let mut buf = BytesMut::from(input);
        let mut body = Vec::new();
        loop {
            match d.decode(&mut buf, limits)? {
                Decoded::Data(b) => body.extend_from_slice(&b),
                Decoded::End(t) => return Ok((body, t)),
                Decoded::NeedMore => return Err(Http1Error::UnexpectedEof),
            }
        }
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let l = Limits::default();
        let (body, t) = decode_all(
            BodyDecoder::chunked(),
            b"5;ext=1\r\nhello\r\nA\r\n, world!!!\r\n0\r\nX-Sum: 1\r\n\r\n",
            &l,
        )
        .unwrap();
        assert_eq!(body, b"hello, world!!!");
        assert_eq!(t.unwrap().get("x-sum"), Some(&b"1"[..]));
    }

    #[test]
    fn chunked_byte_at_a_time() {
        let l = Limits::default();
        let input = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n";
        let mut d = BodyDecoder::chunked();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut trailers = None;
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            loop {
                match d.decode(&mut buf, &l).unwrap() {
                    Decoded::Data(x) => body.extend_from_slice(&x),
                    Decoded::End(t) => {
                        trailers = Some(t);
                        break;
                    }
                    Decoded::NeedMore => break,
                }
            }
        }
        assert_eq!(body, b"abc0123456789abcdef");
        assert!(trailers.unwrap().unwrap().contains("t"));
    }

    #[test]
    fn chunked_rejects_bad_sizes() {
        let l = Limits::default();
        for (input, want) in [
            (&b"x\r\n"[..], Http1Error::InvalidChunkSize),
            (b"\r\n", Http1Error::InvalidChunkSize),
            (b"-1\r\n", Http1Error::InvalidChunkSize),
            (b"1 2\r\n", Http1Error::InvalidChunkSize),
            (b"10000000000000000\r\n", Http1Error::InvalidChunkSize),
            (b"3\r\nabcX\r\n", Http1Error::InvalidChunkTerminator),
            (b"3\nabc\r\n", Http1Error::BareLf),
            (b"3\r\nabc\n", Http1Error::BareLf),
            (
                b"ffffffff\r\n",
                Http1Error::BodyTooLarge {
                    limit: l.max_body_size,
                },
            ),
            (b"0\r\nA: b\r\n c\r\n\r\n", Http1Error::ObsFold),
        ] {
            assert_eq!(
                decode_all(BodyDecoder::chunked(), input, &l).unwrap_err(),
                want,
                "{input:?}"
            );
        }
        let long = vec![b'0'; l.max_chunk_line + 1];
        assert_eq!(
            decode_all(BodyDecoder::chunked(), &long, &l).unwrap_err(),
            Http1Error::InvalidChunkSize
        );
    }

    #[test]
    fn length_and_close_delimited() {
        let l = Limits::default();
        let mut buf = BytesMut::from(&b"abcdef"[..]);
        let mut d = BodyDecoder::length(4);
        assert_eq!(
            d.decode(&mut buf, &l).unwrap(),
            Decoded::Data(Bytes::from_static(b"abcd"))
        );
        assert_eq!(d.decode(&mut buf, &l).unwrap(), Decoded::End(None));
        assert_eq!(&buf[..], b"ef");
        let mut d = BodyDecoder::close_delimited();
        assert!(d.is_close_delimited());
        assert_eq!(
            d.decode(&mut buf, &l).unwrap(),
            Decoded::Data(Bytes::from_static(b"ef"))
        );
        assert_eq!(d.decode(&mut buf, &l).unwrap(), Decoded::NeedMore);
    }
}
