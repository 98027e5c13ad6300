//! The server's command decoder: multibulk (`*<n>\r\n$<len>\r\n<arg>\r\n...`) and inline
//! (`SET a "b c"\r\n`) commands.
//!
//! This is the server's hot path, so it is written by hand instead of going through
//! redis-protocol's generic frame decoder: that one would build a frame tree per command
//! (an allocation per element) that we would then convert into a [`Command`]. Here one
//! iterative pass over the buffer checks every limit as it meets the length that announces
//! it (nothing waits for, or reserves room for, more than the limits allow), remembers
//! argument ranges, and when the command is complete splits it off the buffer once
//! (`split_to(..).freeze()`) and slices each argument out of it without copying.
//!
//! The scan resumes where it stopped when a command arrives in pieces, so a large pipelined
//! command is scanned once, not once per read. The caller must only append to the buffer
//! between calls (the decoder alone consumes from its front).

use bytes::{Buf, Bytes, BytesMut};
use memchr::memchr;

use super::error::RespError;
use super::limits::RespLimits;
use super::value::Command;

/// Longest valid length line after its type byte: `-9223372036854775808` is 20 bytes.
const MAX_LEN_DIGITS: usize = 20;

/// Parses a length the way redis's `string2ll` does: an optional `-`, then `0` or a digit
/// string without a leading zero, no `+`, no spaces, fitting in an `i64`.
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] if !neg => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    if digits.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg {
        if v == 1u64 << 63 {
            Some(i64::MIN)
        } else {
            i64::try_from(v).ok().map(|v| -v)
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// Reads the number on the line starting at `start` (just after a type byte). `Ok(None)`:
/// the line is not complete yet. A line that cannot hold a valid number (too long, not
/// CRLF-terminated, not a number) is `err` at once, so a peer cannot make us buffer it.
#[inline]
pub(crate) fn length_line(
    buf: &[u8],
    start: usize,
    err: RespError,
) -> Result<Option<(i64, usize)>, RespError> {
    match short_length(buf, start) {
        Some(found) => Ok(Some(found)),
        None => length_line_general(buf, start, err),
    }
}

/// A length of one or two digits and its CRLF, or `None` for anything else (which
/// [`length_line_general`] then reads). Nearly every length in a command is this short (the
/// argument count, a command name's, a key's), and reading them here costs a third of the
/// search and the general parse (~100 instructions a `SET` with callgrind).
#[inline(always)]
fn short_length(buf: &[u8], start: usize) -> Option<(i64, usize)> {
    let w = buf.get(start..start.checked_add(3)?)?;
    let d0 = w[0].wrapping_sub(b'0');
    if d0 > 9 {
        return None;
    }
    if w[1] == b'\r' && w[2] == b'\n' {
        return Some((i64::from(d0), start + 3));
    }
    let d1 = w[1].wrapping_sub(b'0');
    // No leading zero, as `parse_i64`.
    if d0 == 0 || d1 > 9 || w[2] != b'\r' || buf.get(start + 3) != Some(&b'\n') {
        return None;
    }
    Some((i64::from(d0 * 10 + d1), start + 4))
}

/// [`length_line`] for any line.
fn length_line_general(
    buf: &[u8],
    start: usize,
    err: RespError,
) -> Result<Option<(i64, usize)>, RespError> {
    // A byte loop rather than memchr: the line is a handful of digits, and a vectorised
    // search's set-up cost more than the scan (~250 instructions a command, callgrind).
    let window = buf.get(start..).unwrap_or_default();
    let window = &window[..window.len().min(MAX_LEN_DIGITS + 1)];
    let Some(i) = window.iter().position(|&b| b == b'\r') else {
        return if window.len() > MAX_LEN_DIGITS {
            Err(err)
        } else {
            Ok(None)
        };
    };
    let cr = start + i;
    match buf.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => match parse_i64(&window[..i]) {
            Some(n) => Ok(Some((n, cr + 2))),
            None => Err(err),
        },
        Some(_) => Err(err),
    }
}

/// The command decoder's state between calls.
#[derive(Debug, Default)]
pub(crate) struct CommandDecoder {
    /// A multibulk header has been read and `remaining` arguments are still to come.
    in_multibulk: bool,
    remaining: usize,
    /// Where scanning resumes (offset into the buffer).
    pos: usize,
    /// Argument ranges found so far (offsets into the buffer).
    ranges: Vec<(usize, usize)>,
}

impl CommandDecoder {
    /// Decodes the next command from the front of `buf`, skipping empty ones (`*0`, `*-1`,
    /// blank inline lines, like redis). `Ok(None)`: more input is needed.
    pub(crate) fn decode(
        &mut self,
        buf: &mut BytesMut,
        limits: &RespLimits,
    ) -> Result<Option<Command>, RespError> {
        loop {
            if !self.in_multibulk {
                let Some(&first) = buf.first() else {
                    return Ok(None);
                };
                if first != b'*' {
                    match inline(buf, limits)? {
                        Some(cmd) if cmd.is_empty() => continue,
                        other => return Ok(other),
                    }
                }
                let Some((n, next)) = length_line(buf, 1, RespError::InvalidMultibulkLength)?
                else {
                    return Ok(None);
                };
                if n <= 0 {
                    buf.advance(next);
                    continue;
                }
                let n = usize::try_from(n)
                    .ok()
                    .filter(|&n| n <= limits.max_array_len)
                    .ok_or(RespError::InvalidMultibulkLength)?;
                self.in_multibulk = true;
                self.remaining = n;
                self.pos = next;
                self.ranges.clear();
                // Never reserve by the peer's count: the ranges grow as arguments arrive.
                self.ranges.reserve(n.min(16));
            }
            while self.remaining > 0 {
                let Some(&t) = buf.get(self.pos) else {
                    return Ok(None);
                };
                if t != b'$' {
                    return Err(RespError::ExpectedBulk { got: t });
                }
                let Some((len, data)) =
                    length_line(buf, self.pos + 1, RespError::InvalidBulkLength)?
                else {
                    return Ok(None);
                };
                let end = usize::try_from(len)
                    .ok()
                    .filter(|&len| len <= limits.max_bulk_len)
                    .and_then(|len| data.checked_add(len))
                    .ok_or(RespError::InvalidBulkLength)?;
                match buf.get(end..end.saturating_add(2)) {
                    Some(b"\r\n") => {}
                    Some(_) => return Err(RespError::BadTerminator),
                    None => return Ok(None),
                }
                self.ranges.push((data, end));
                self.remaining -= 1;
                self.pos = end + 2;
            }
            let frame = buf.split_to(self.pos).freeze();
            let args = self
                .ranges
                .iter()
                .map(|&(s, e)| frame.slice(s..e))
                .collect();
            self.in_multibulk = false;
            self.pos = 0;
            return Ok(Some(Command::from_args(args)));
        }
    }
}

/// An inline command: one line, split into arguments with redis's rules (`sdssplitargs`).
/// Returns an empty command for a blank line.
fn inline(buf: &mut BytesMut, limits: &RespLimits) -> Result<Option<Command>, RespError> {
    let window = &buf[..buf.len().min(limits.max_inline_len.saturating_add(2))];
    let Some(nl) = memchr(b'\n', window) else {
        // Refused as soon as the line is known to be too long, even unterminated.
        let content = window.len() - usize::from(window.last() == Some(&b'\r'));
        return if content > limits.max_inline_len {
            Err(RespError::InlineTooLong)
        } else {
            Ok(None)
        };
    };
    let end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    if end > limits.max_inline_len {
        return Err(RespError::InlineTooLong);
    }
    let line = buf.split_to(nl + 1).freeze();
    split_args(&line.slice(..end)).map(|args| Some(Command::from_args(args)))
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0)
}

/// Splits an inline command line into arguments the way redis's `sdssplitargs` does:
/// whitespace separates arguments; `"..."` quotes with `\n \r \t \b \a \\ \"` and `\xHH`
/// escapes; `'...'` quotes with `\'`; a closing quote must be followed by whitespace or the
/// end of the line. Unquoted arguments are zero-copy slices of `line`.
pub(crate) fn split_args(line: &Bytes) -> Result<Vec<Bytes>, RespError> {
    let s = &line[..];
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < s.len() && is_space(s[i]) {
            i += 1;
        }
        if i == s.len() {
            return Ok(args);
        }
        let start = i;
        while i < s.len() && !is_space(s[i]) && s[i] != b'"' && s[i] != b'\'' {
            i += 1;
        }
        if i == s.len() || is_space(s[i]) {
            args.push(line.slice(start..i));
            continue;
        }
        // A quote: build this argument byte by byte.
        let mut arg = s[start..i].to_vec();
        i = quoted_arg(s, i, &mut arg)?;
        args.push(Bytes::from(arg));
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Continues an argument at `i` (a quote or more of the argument); returns the index after it.
fn quoted_arg(s: &[u8], mut i: usize, arg: &mut Vec<u8>) -> Result<usize, RespError> {
    let (mut inq, mut insq) = (false, false);
    loop {
        let at = |k: usize| s.get(k).copied();
        if inq {
            let c = at(i).ok_or(RespError::UnbalancedQuotes)?;
            match (c, at(i + 1)) {
                (b'\\', Some(b'x')) => {
                    if let (Some(h), Some(l)) = (at(i + 2).and_then(hex), at(i + 3).and_then(hex)) {
                        arg.push(h * 16 + l);
                        i += 3;
                    } else {
                        i += 1;
                        arg.push(b'x');
                    }
                }
                (b'\\', Some(e)) => {
                    i += 1;
                    arg.push(match e {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                }
                (b'"', next) => {
                    if next.is_some_and(|n| !is_space(n)) {
                        return Err(RespError::UnbalancedQuotes);
                    }
                    return Ok(i + 1);
                }
                (c, _) => arg.push(c),
            }
        } else if insq {
            let c = at(i).ok_or(RespError::UnbalancedQuotes)?;
            match (c, at(i + 1)) {
                (b'\\', Some(b'\'')) => {
                    i += 1;
                    arg.push(b'\'');
                }
                (b'\'', next) => {
                    if next.is_some_and(|n| !is_space(n)) {
                        return Err(RespError::UnbalancedQuotes);
                    }
                    return Ok(i + 1);
                }
                (c, _) => arg.push(c),
            }
        } else {
            match at(i) {
                None => return Ok(i),
                Some(c) if is_space(c) => return Ok(i + 1),
                Some(b'"') => inq = true,
                Some(b'\'') => insq = true,
                Some(c) => arg.push(c),
            }
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Result<Vec<String>, RespError> {
        split_args(&Bytes::copy_from_slice(s.as_bytes())).map(|v| {
            v.iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect()
        })
    }

    #[test]
    fn numbers_like_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"12"), Some(12));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"9223372036854775808",
            b"99999999999999999999",
            b"1a",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn inline_splitting_follows_sdssplitargs() {
        assert_eq!(split("set a b").unwrap(), ["set", "a", "b"]);
        assert_eq!(split("  PING  \t ").unwrap(), ["PING"]);
        assert_eq!(split("").unwrap(), Vec::<String>::new());
        assert_eq!(split(r#"set "a b" c"#).unwrap(), ["set", "a b", "c"]);
        assert_eq!(split(r#"set k"ey" v"#).unwrap(), ["set", "key", "v"]);
        assert_eq!(split(r#"x "\x41\n\t\\\"z""#).unwrap(), ["x", "A\n\t\\\"z"]);
        assert_eq!(split(r#"x "\xZZ""#).unwrap(), ["x", "xZZ"]);
        assert_eq!(split(r"x 'it\'s' ''").unwrap(), ["x", "it's", ""]);
        assert_eq!(split(r#"x 'a\nb'"#).unwrap(), ["x", r"a\nb"]);
        assert_eq!(split(r#"x """#).unwrap(), ["x", ""]);
        for bad in [r#"x "abc"#, r#"x "a"b"#, "x 'abc", "x 'a'b", r#"x "\"#] {
            assert_eq!(split(bad), Err(RespError::UnbalancedQuotes), "{bad}");
        }
    }

    proptest::proptest! {
        /// The short-length path reads exactly what the general one reads, wherever it
        /// answers: lines made of digits, signs, CR, LF and other bytes, cut anywhere.
        #[test]
        fn short_lengths_read_as_the_general_path(
            bytes in proptest::collection::vec(
                proptest::sample::select(b"0123456789-\r\n+ a".to_vec()), 0..8),
            start in 0usize..3,
        ) {
            let err = RespError::InvalidBulkLength;
            let general = length_line_general(&bytes, start, err.clone());
            if let Some(short) = short_length(&bytes, start) {
                proptest::prop_assert_eq!(Ok(Some(short)), general.clone());
            }
            proptest::prop_assert_eq!(length_line(&bytes, start, err), general);
        }
    }

    #[test]
    fn short_lengths_are_taken_the_short_way() {
        assert_eq!(short_length(b"3\r\n", 0), Some((3, 3)));
        assert_eq!(short_length(b"$16\r\nkey", 1), Some((16, 5)));
        assert_eq!(short_length(b"0\r\n", 0), Some((0, 3)));
        // Left to the general path: a leading zero, a sign, three digits, an unfinished line.
        for line in [&b"05\r\n"[..], b"-1\r\n", b"100\r\n", b"12\r", b"1\r"] {
            assert_eq!(
                short_length(line, 0),
                None,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn unquoted_arguments_are_zero_copy() {
        let line = Bytes::from_static(b"GET key");
        let args = split_args(&line).unwrap();
        assert_eq!(args[1].as_ptr(), line[4..].as_ptr());
    }
}
