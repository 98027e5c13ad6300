//! Encoding values and commands.
//!
//! Written by hand straight into a `BytesMut` (integers with `itoa`, doubles with `ryu`):
//! building the crate's frames first would cost an allocation per element for no gain.
//! Large bulk strings are not copied: the output queue keeps them as their own `Bytes` parts,
//! so the transport can send them vectored.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use super::value::{Command, Value};
use super::RespVersion;

/// Bulk strings up to this size are copied next to their header: one buffer beats an iovec.
const COPY_THRESHOLD: usize = 1024;

/// The output buffer grows by at least this much at a time, so a burst of small replies
/// costs one allocation (and the buffer is reused once the transport released the last one).
const OUT_CHUNK: usize = 4096;

/// Where encoded bytes go.
pub(crate) trait Sink {
    /// The coalescing buffer.
    fn buf(&mut self) -> &mut BytesMut;
    /// A payload that may be kept as its own part instead of being copied.
    fn put_payload(&mut self, data: &Bytes) {
        self.buf().extend_from_slice(data);
    }
}

impl Sink for BytesMut {
    fn buf(&mut self) -> &mut BytesMut {
        self
    }
}

/// An ordered queue of outgoing bytes: a coalescing buffer plus large parts kept as they are.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    /// Parts ready to send, in order, before `buf`.
    parts: VecDeque<Bytes>,
    parts_len: usize,
    /// Bytes still being coalesced (after every part in `parts`).
    buf: BytesMut,
}

impl Wire {
    pub(crate) fn len(&self) -> usize {
        self.parts_len + self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next bytes to send: everything coalesced so far as one `Bytes`, or the next large
    /// part.
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

impl Sink for Wire {
    fn buf(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < 64 {
            self.buf.reserve(OUT_CHUNK);
        }
        &mut self.buf
    }

    fn put_payload(&mut self, data: &Bytes) {
        if data.len() <= COPY_THRESHOLD {
            self.buf.extend_from_slice(data);
            return;
        }
        if !self.buf.is_empty() {
            let b = self.buf.split().freeze();
            self.parts_len += b.len();
            self.parts.push_back(b);
        }
        self.parts_len += data.len();
        self.parts.push_back(data.clone());
    }
}

/// `<prefix><n>\r\n`.
fn header(out: &mut BytesMut, prefix: u8, n: impl itoa::Integer) {
    let mut num = itoa::Buffer::new();
    let digits = num.format(n).as_bytes();
    out.reserve(digits.len() + 3);
    out.put_u8(prefix);
    out.put_slice(digits);
    out.put_slice(b"\r\n");
}

/// `<prefix><text>\r\n`, with CR and LF in `text` replaced by spaces (a line cannot hold
/// them, and letting them through would let a value split the reply stream).
fn line(out: &mut BytesMut, prefix: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(prefix);
    if memchr::memchr2(b'\r', b'\n', text).is_none() {
        out.put_slice(text);
    } else {
        out.extend(
            text.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    }
    out.put_slice(b"\r\n");
}

fn bulk<S: Sink + ?Sized>(out: &mut S, data: &Bytes) {
    header(out.buf(), b'$', data.len());
    out.put_payload(data);
    out.buf().put_slice(b"\r\n");
}

/// A double's text: `inf`, `-inf`, `nan`, an integral value without a fraction (like redis's
/// `%.17g`), otherwise the shortest text that reads back to the same value.
fn double_text(d: f64, f: impl FnOnce(&[u8])) {
    if d.is_nan() {
        f(b"nan")
    } else if d.is_infinite() {
        f(if d > 0.0 { b"inf" } else { b"-inf" })
    } else if d.fract() == 0.0 && d.abs() < 1e17 {
        f(itoa::Buffer::new().format(d as i64).as_bytes())
    } else {
        f(ryu::Buffer::new().format_finite(d).as_bytes())
    }
}

/// Encodes `value` in `version` into `out`.
///
/// RESP2 has no RESP3 types, so they are downgraded the way redis-server does: `Null` ->
/// `$-1`, `Map` -> a flat array of keys and values, `Set` and `Push` -> an array, `Double`
/// and `BigNumber` -> a bulk string, `Boolean` -> the integer 1 or 0, `Verbatim` -> a bulk
/// string of its text. `Frames` writes each of its values in turn.
pub fn encode_value(value: &Value, version: RespVersion, out: &mut BytesMut) {
    encode_into(out, value, version, true);
}

pub(crate) fn encode_into<S: Sink + ?Sized>(
    out: &mut S,
    value: &Value,
    version: RespVersion,
    top: bool,
) {
    let v3 = version == RespVersion::Resp3;
    match value {
        Value::Simple(s) => line(out.buf(), b'+', s),
        Value::Error(s) => line(out.buf(), b'-', s),
        Value::Integer(n) => header(out.buf(), b':', *n),
        Value::Bulk(b) => bulk(out, b),
        Value::Null if v3 => out.buf().extend_from_slice(b"_\r\n"),
        Value::Null => out.buf().extend_from_slice(b"$-1\r\n"),
        Value::Array(items) => aggregate(out, b'*', items, version),
        Value::Set(items) => aggregate(out, if v3 { b'~' } else { b'*' }, items, version),
        Value::Push(items) => aggregate(out, if v3 { b'>' } else { b'*' }, items, version),
        Value::Frames(items) if top => {
            for item in items {
                encode_into(out, item, version, true);
            }
        }
        Value::Frames(items) => aggregate(out, b'*', items, version),
        Value::Map(pairs) => {
            if v3 {
                header(out.buf(), b'%', pairs.len());
            } else {
                header(out.buf(), b'*', pairs.len().saturating_mul(2));
            }
            for (k, v) in pairs {
                encode_into(out, k, version, false);
                encode_into(out, v, version, false);
            }
        }
        Value::Double(d) => double_text(*d, |text| {
            let buf = out.buf();
            if v3 {
                buf.reserve(text.len() + 3);
                buf.put_u8(b',');
                buf.put_slice(text);
                buf.put_slice(b"\r\n");
            } else {
                header(buf, b'$', text.len());
                buf.put_slice(text);
                buf.put_slice(b"\r\n");
            }
        }),
        Value::Boolean(b) if v3 => {
            out.buf()
                .extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" })
        }
        Value::Boolean(b) => out
            .buf()
            .extend_from_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
        Value::BigNumber(n) if v3 => line(out.buf(), b'(', n),
        Value::BigNumber(n) => bulk(out, n),
        Value::Verbatim { format, text } if v3 => {
            header(out.buf(), b'=', text.len() + 4);
            out.buf().put_slice(format);
            out.buf().put_u8(b':');
            out.put_payload(text);
            out.buf().put_slice(b"\r\n");
        }
        Value::Verbatim { text, .. } => bulk(out, text),
    }
}

fn aggregate<S: Sink + ?Sized>(out: &mut S, prefix: u8, items: &[Value], version: RespVersion) {
    header(out.buf(), prefix, items.len());
    for item in items {
        encode_into(out, item, version, false);
    }
}

/// Encodes `command` the way clients send commands: an array of bulk strings.
pub fn encode_command(command: &Command, out: &mut BytesMut) {
    encode_command_into(out, command);
}

pub(crate) fn encode_command_into<S: Sink + ?Sized>(out: &mut S, command: &Command) {
    header(out.buf(), b'*', command.len());
    for arg in command.args() {
        bulk(out, arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value, version: RespVersion) -> String {
        let mut out = BytesMut::new();
        encode_value(v, version, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn resp2_downgrades() {
        use RespVersion::Resp2;
        assert_eq!(enc(&Value::Null, Resp2), "$-1\r\n");
        let map = Value::Map(vec![(Value::bulk("a"), Value::int(1))]);
        assert_eq!(enc(&map, Resp2), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&Value::Set(vec![Value::int(1)]), Resp2), "*1\r\n:1\r\n");
        assert_eq!(enc(&Value::Double(1.5), Resp2), "$3\r\n1.5\r\n");
        assert_eq!(enc(&Value::Double(3.0), Resp2), "$1\r\n3\r\n");
        assert_eq!(enc(&Value::Boolean(true), Resp2), ":1\r\n");
        assert_eq!(enc(&Value::Boolean(false), Resp2), ":0\r\n");
        assert_eq!(
            enc(&Value::BigNumber(Bytes::from_static(b"12")), Resp2),
            "$2\r\n12\r\n"
        );
        let verbatim = Value::Verbatim {
            format: *b"txt",
            text: Bytes::from_static(b"hi"),
        };
        assert_eq!(enc(&verbatim, Resp2), "$2\r\nhi\r\n");
        assert_eq!(enc(&Value::push(vec![]), Resp2), "*0\r\n");
        let frames = Value::Frames(vec![Value::ok(), Value::int(2)]);
        assert_eq!(enc(&frames, Resp2), "+OK\r\n:2\r\n");
        assert_eq!(
            enc(&Value::array(vec![frames]), Resp2),
            "*1\r\n*2\r\n+OK\r\n:2\r\n"
        );
    }

    #[test]
    fn resp3_types() {
        use RespVersion::Resp3;
        assert_eq!(enc(&Value::Null, Resp3), "_\r\n");
        let map = Value::Map(vec![(Value::simple("a"), Value::Boolean(true))]);
        assert_eq!(enc(&map, Resp3), "%1\r\n+a\r\n#t\r\n");
        assert_eq!(enc(&Value::Set(vec![]), Resp3), "~0\r\n");
        assert_eq!(enc(&Value::Double(f64::INFINITY), Resp3), ",inf\r\n");
        assert_eq!(enc(&Value::Double(f64::NEG_INFINITY), Resp3), ",-inf\r\n");
        assert_eq!(enc(&Value::Double(f64::NAN), Resp3), ",nan\r\n");
        assert_eq!(enc(&Value::Double(-2.25), Resp3), ",-2.25\r\n");
        assert_eq!(
            enc(&Value::BigNumber(Bytes::from_static(b"-9")), Resp3),
            "(-9\r\n"
        );
        let verbatim = Value::Verbatim {
            format: *b"txt",
            text: Bytes::from_static(b"hi"),
        };
        assert_eq!(enc(&verbatim, Resp3), "=6\r\ntxt:hi\r\n");
        assert_eq!(
            enc(&Value::push(vec![Value::bulk("x")]), Resp3),
            ">1\r\n$1\r\nx\r\n"
        );
    }

    #[test]
    fn lines_cannot_split_the_stream() {
        let v = Value::error("ERR bad\r\n+OK");
        assert_eq!(enc(&v, RespVersion::Resp2), "-ERR bad  +OK\r\n");
        let v = Value::Simple(Bytes::from_static(b"a\nb"));
        assert_eq!(enc(&v, RespVersion::Resp3), "+a b\r\n");
    }

    #[test]
    fn commands_and_large_payloads() {
        let cmd = Command::new("SET")
            .arg("k")
            .arg(Bytes::from(vec![b'x'; 5000]));
        let mut flat = BytesMut::new();
        encode_command(&cmd, &mut flat);
        assert!(flat.starts_with(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5000\r\nxx"));
        let mut wire = Wire::default();
        encode_command_into(&mut wire, &cmd);
        assert_eq!(wire.len(), flat.len());
        let mut joined = Vec::new();
        let mut parts = 0;
        while let Some(p) = wire.pop() {
            joined.extend_from_slice(&p);
            parts += 1;
        }
        assert_eq!(parts, 3, "header, payload, trailer");
        assert_eq!(joined, flat.to_vec());
        assert!(wire.is_empty());
    }
}
