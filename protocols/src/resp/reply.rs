//! The client's reply decoder: an iterative scan that bounds a reply, then an iterative
//! build of its value.
//!
//! The scan walks the next reply without recursion (a small stack of element counts),
//! checks every length against the limits when it meets it (before waiting for the data it
//! announces), the nesting depth and the line terminators, and resumes where it stopped when
//! the reply arrives in pieces, so a large reply is scanned once. Only a complete, bounded
//! reply is split off the buffer (zero-copy) and built into a [`Value`], again with an
//! explicit stack: no nesting depth can exhaust a thread's stack.
//!
//! redis-protocol's decoder is not used here, although it was the first plan: it recurses
//! once per nesting level with about 22 KiB of stack per level in debug builds (1.5 MiB at
//! depth 64, an overflow of a 2 MiB thread at 128), it takes RESP2 nulls (`$-1`, `*-1`)
//! for streamed RESP3 aggregates, refuses error replies that are not UTF-8 and maps whose
//! keys are aggregates, and merges duplicate map keys. It serves as the oracle of the
//! differential tests instead.

use bytes::{Bytes, BytesMut};
use memchr::memchr;

use super::command::{length_line, parse_i64};
use super::error::RespError;
use super::limits::RespLimits;
use super::value::Value;

/// Longest numeric line (integer, double, boolean, null) in a reply.
const MAX_NUMBER_LINE: usize = 512;

/// One open aggregate: elements still to come, and whether it is an attribute (which
/// prefixes the next element instead of being one).
#[derive(Debug, Clone, Copy)]
struct Level {
    remaining: usize,
    attribute: bool,
}

/// The pre-scan's state between calls (it resumes where it stopped).
#[derive(Debug, Default)]
pub(crate) struct ReplyScanner {
    pos: usize,
    /// How far the current line has been searched for its CR without finding it.
    line_searched: usize,
    stack: Vec<Level>,
}

impl ReplyScanner {
    /// Whether part of a reply has been scanned.
    #[cfg(test)]
    pub(crate) fn in_progress(&self) -> bool {
        self.pos > 0
    }

    /// Finds the length of the next reply at the front of `buf`. `Ok(None)`: more input is
    /// needed (the caller only appends to `buf` before calling again).
    pub(crate) fn scan(
        &mut self,
        buf: &[u8],
        limits: &RespLimits,
    ) -> Result<Option<usize>, RespError> {
        loop {
            let Some(&t) = buf.get(self.pos) else {
                return Ok(None);
            };
            let next = match t {
                b'+' | b'-' | b'(' => match self.line(buf, limits.max_bulk_len)? {
                    Some(next) => next,
                    None => return Ok(None),
                },
                b':' | b',' | b'#' | b'_' => match self.line(buf, MAX_NUMBER_LINE)? {
                    Some(next) => next,
                    None => return Ok(None),
                },
                b'$' | b'!' | b'=' => {
                    let Some((len, data)) = header(buf, self.pos, RespError::InvalidBulkLength)?
                    else {
                        return Ok(None);
                    };
                    if len == -1 && t == b'$' {
                        data
                    } else {
                        let end = usize::try_from(len)
                            .ok()
                            .filter(|&len| len <= limits.max_bulk_len)
                            .and_then(|len| data.checked_add(len))
                            .ok_or(RespError::InvalidBulkLength)?;
                        match buf.get(end..end.saturating_add(2)) {
                            Some(b"\r\n") => end + 2,
                            Some(_) => return Err(RespError::BadTerminator),
                            None => return Ok(None),
                        }
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let Some((n, next)) = header(buf, self.pos, RespError::InvalidMultibulkLength)?
                    else {
                        return Ok(None);
                    };
                    if n == -1 && t == b'*' {
                        next
                    } else {
                        let n = usize::try_from(n)
                            .ok()
                            .filter(|&n| n <= limits.max_array_len)
                            .ok_or(RespError::InvalidMultibulkLength)?;
                        let paired = t == b'%' || t == b'|';
                        let elements = if paired { n * 2 } else { n };
                        if elements > 0 {
                            if self.stack.len() >= limits.depth() {
                                return Err(RespError::TooDeep {
                                    limit: limits.depth(),
                                });
                            }
                            self.stack.push(Level {
                                remaining: elements,
                                attribute: t == b'|',
                            });
                            self.pos = next;
                            continue;
                        }
                        if t == b'|' {
                            // An empty attribute: still prefixes the next element.
                            self.pos = next;
                            continue;
                        }
                        next
                    }
                }
                byte => return Err(RespError::InvalidType { byte }),
            };
            self.pos = next;
            self.line_searched = 0;
            if self.element_done() {
                let len = self.pos;
                self.pos = 0;
                self.line_searched = 0;
                return Ok(Some(len));
            }
        }
    }

    /// Counts one finished element; returns whether the whole reply is complete.
    fn element_done(&mut self) -> bool {
        while let Some(top) = self.stack.last_mut() {
            top.remaining -= 1;
            if top.remaining > 0 {
                return false;
            }
            let attribute = top.attribute;
            self.stack.pop();
            if attribute {
                // The attribute is complete; the element it describes follows.
                return false;
            }
        }
        true
    }

    /// The end (after CRLF) of the line whose type byte is at `pos`, if complete.
    fn line(&mut self, buf: &[u8], max: usize) -> Result<Option<usize>, RespError> {
        let from = self.pos + 1 + self.line_searched;
        let limit_end = (self.pos + 1).saturating_add(max).saturating_add(1);
        let window = buf.get(from..buf.len().min(limit_end)).unwrap_or_default();
        match memchr(b'\r', window) {
            None => {
                if from + window.len() >= limit_end {
                    return Err(RespError::LineTooLong { limit: max });
                }
                self.line_searched += window.len();
                Ok(None)
            }
            Some(i) => match buf.get(from + i + 1) {
                None => {
                    self.line_searched += i;
                    Ok(None)
                }
                Some(b'\n') => Ok(Some(from + i + 2)),
                Some(_) => Err(RespError::Malformed("CR without LF in a line".into())),
            },
        }
    }
}

/// The number after the type byte at `pos`; `?` (a streamed aggregate) is refused.
fn header(buf: &[u8], pos: usize, err: RespError) -> Result<Option<(i64, usize)>, RespError> {
    if buf.get(pos + 1) == Some(&b'?') {
        return Err(RespError::Malformed(
            "streamed aggregates are not supported".into(),
        ));
    }
    length_line(buf, pos + 1, err)
}

/// Decodes one complete reply from the front of `buf` (RESP2 or RESP3 syntax, whatever the
/// connection's version) and splits it off; `Ok(None)` if the reply is not complete yet,
/// leaving `buf` untouched. Limits apply as in [`RespClientCodec`](super::RespClientCodec),
/// which decodes incrementally instead of rescanning from the start on every call.
///
/// ```
/// use bytes::BytesMut;
/// use sinew_protocols::resp::{decode_value, RespLimits, Value};
///
/// let mut buf = BytesMut::from(&b"*2\r\n$1\r\na\r\n_\r\n+next"[..]);
/// let v = decode_value(&mut buf, &RespLimits::default()).unwrap();
/// assert_eq!(v, Some(Value::array(vec![Value::bulk("a"), Value::Null])));
/// assert_eq!(&buf[..], b"+next");
/// ```
pub fn decode_value(buf: &mut BytesMut, limits: &RespLimits) -> Result<Option<Value>, RespError> {
    match ReplyScanner::default().scan(buf, limits)? {
        Some(len) => decode(&buf.split_to(len).freeze()).map(Some),
        None => Ok(None),
    }
}

fn malformed(what: &str) -> RespError {
    RespError::Malformed(what.to_owned())
}

/// An aggregate being built.
struct Open {
    /// The type byte: `*`, `~`, `>`, `%` or `|` (an attribute, dropped when complete).
    kind: u8,
    items: Vec<Value>,
    remaining: usize,
}

impl Open {
    fn finish(self) -> Value {
        match self.kind {
            b'~' => Value::Set(self.items),
            b'>' => Value::Push(self.items),
            b'%' => {
                let mut pairs = Vec::with_capacity(self.items.len() / 2);
                let mut it = self.items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                Value::Map(pairs)
            }
            _ => Value::Array(self.items),
        }
    }
}

/// Builds the value of a complete reply that [`ReplyScanner::scan`] delimited (`frame` is
/// exactly that reply). Iterative, with an explicit stack: no recursion, whatever the
/// nesting; every slice is a zero-copy view of `frame`.
pub(crate) fn decode(frame: &Bytes) -> Result<Value, RespError> {
    let mut stack: Vec<Open> = Vec::new();
    let mut pos = 0;
    loop {
        let t = *frame.get(pos).ok_or_else(|| malformed("truncated frame"))?;
        let cr = memchr(b'\r', frame.get(pos + 1..).unwrap_or_default())
            .map(|i| pos + 1 + i)
            .ok_or_else(|| malformed("truncated frame"))?;
        let line_start = pos + 1;
        let line = &frame[line_start..cr];
        let text = || std::str::from_utf8(line).ok();
        pos = cr + 2;
        let mut value = match t {
            b'+' => Value::Simple(frame.slice(line_start..cr)),
            b'-' => Value::Error(frame.slice(line_start..cr)),
            b'(' => Value::BigNumber(frame.slice(line_start..cr)),
            b':' => Value::Integer(parse_i64(line).ok_or_else(|| malformed("invalid integer"))?),
            b',' => Value::Double(
                text()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| malformed("invalid double"))?,
            ),
            b'#' => match line {
                b"t" => Value::Boolean(true),
                b"f" => Value::Boolean(false),
                _ => return Err(malformed("invalid boolean")),
            },
            b'_' if line.is_empty() => Value::Null,
            b'$' if line == b"-1" => Value::Null,
            b'*' if line == b"-1" => Value::Null,
            b'$' | b'!' | b'=' => {
                let len = parse_i64(line)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or(RespError::InvalidBulkLength)?;
                let end = pos.saturating_add(len);
                if frame.get(end..end.saturating_add(2)) != Some(&b"\r\n"[..]) {
                    return Err(RespError::BadTerminator);
                }
                let data = frame.slice(pos..end);
                pos = end + 2;
                match t {
                    b'$' => Value::Bulk(data),
                    b'!' => Value::Error(data),
                    _ => match (data.get(..3), data.get(3)) {
                        (Some(&[a, b, c]), Some(b':')) => Value::Verbatim {
                            format: [a, b, c],
                            text: data.slice(4..),
                        },
                        _ => return Err(malformed("invalid verbatim string")),
                    },
                }
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = parse_i64(line)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or(RespError::InvalidMultibulkLength)?;
                let count = if t == b'%' || t == b'|' {
                    n.saturating_mul(2)
                } else {
                    n
                };
                if count > 0 {
                    // The whole frame is here and was bounded by the scan, so this
                    // reservation is backed by bytes actually received.
                    let items = Vec::with_capacity(count.min(frame.len()));
                    stack.push(Open {
                        kind: t,
                        items,
                        remaining: count,
                    });
                    continue;
                }
                if t == b'|' {
                    continue; // an empty attribute
                }
                Open {
                    kind: t,
                    items: Vec::new(),
                    remaining: 0,
                }
                .finish()
            }
            b'_' => return Err(malformed("null with content")),
            byte => return Err(RespError::InvalidType { byte }),
        };
        // Attach the finished value to its parent, finishing parents as they fill up.
        loop {
            let Some(top) = stack.last_mut() else {
                return if pos == frame.len() {
                    Ok(value)
                } else {
                    Err(malformed("trailing bytes after the reply"))
                };
            };
            top.items.push(value);
            top.remaining -= 1;
            if top.remaining > 0 {
                break;
            }
            let Some(done) = stack.pop() else { break };
            if done.kind == b'|' {
                break; // the attribute is dropped; the element it describes follows
            }
            value = done.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8]) -> Result<Option<usize>, RespError> {
        ReplyScanner::default().scan(input, &RespLimits::default())
    }

    #[test]
    fn scan_finds_frame_ends() {
        assert_eq!(scan_all(b"+OK\r\n+next"), Ok(Some(5)));
        assert_eq!(scan_all(b"*2\r\n$-1\r\n:1\r\nrest"), Ok(Some(13)));
        assert_eq!(
            scan_all(b"%1\r\n+a\r\n|1\r\n+k\r\n+v\r\n#t\r\n"),
            Ok(Some(24))
        );
        assert_eq!(scan_all(b"*2\r\n:1\r\n"), Ok(None));
        assert_eq!(scan_all(b"$5\r\nab"), Ok(None));
        assert_eq!(scan_all(b"*0\r\n"), Ok(Some(4)));
    }

    #[test]
    fn scan_resumes_byte_by_byte() {
        let input = b"*3\r\n$3\r\nfoo\r\n%1\r\n+k\r\n,1.5\r\n*-1\r\n";
        let limits = RespLimits::default();
        let mut s = ReplyScanner::default();
        for n in 1..input.len() {
            assert_eq!(s.scan(&input[..n], &limits).unwrap(), None, "at {n}");
        }
        assert_eq!(s.scan(input, &limits), Ok(Some(input.len())));
        assert!(!s.in_progress());
    }

    #[test]
    fn scan_rejects_early() {
        assert_eq!(
            scan_all(b"$4294967296\r\n"),
            Err(RespError::InvalidBulkLength)
        );
        assert_eq!(
            scan_all(b"*99999999\r\n"),
            Err(RespError::InvalidMultibulkLength)
        );
        assert_eq!(scan_all(b"$3\r\nabcd\r\n"), Err(RespError::BadTerminator));
        assert_eq!(
            scan_all(b"?x\r\n"),
            Err(RespError::InvalidType { byte: b'?' })
        );
        assert!(matches!(scan_all(b"*?\r\n"), Err(RespError::Malformed(_))));
        let deep = b"*1\r\n".repeat(100_000);
        assert_eq!(scan_all(&deep), Err(RespError::TooDeep { limit: 64 }));
        let long = [b":".as_slice(), &[b'1'; 600]].concat();
        assert_eq!(
            scan_all(&long),
            Err(RespError::LineTooLong {
                limit: MAX_NUMBER_LINE
            })
        );
    }
}
