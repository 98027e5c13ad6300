//! A hand-written one-pass parser for request heads of the common shape: `token SP target SP
//! HTTP/1.x`, field lines `token ":" OWS value`, every line ending in CRLF, an ASCII target,
//! the whole head in the buffer and within the limits.
//!
//! It exists because httparse costs more than this shape needs: it validates the request
//! target as UTF-8 (about 106 instructions per request), and together with our `HeadScanner`
//! every head was scanned twice. Parsing the common shape here in one pass took
//! `ServerConnection::poll_event` from ~1,396 to ~944 instructions per request (callgrind) and
//! the criterion parse-only median from 2.94/2.15 µs to 1.88/1.82 µs per 16 requests.
//!
//! Everything outside that shape (bare LF, obs-fold, non-ASCII targets, a head in pieces,
//! anything over a limit, any grammar error) returns `None` and goes to httparse and the
//! scanner, which give the exact answer or error; so this parser only ever has to be right
//! about heads it accepts. Debug builds check every quick parse against httparse and the
//! scanner's rules (in `parse_request_fast`), so tests, property tests and fuzzing compare the
//! two on every input.

use super::error::Http1Error;
use super::field::is_tchar;
use super::limits::Limits;
use super::message::{Method, Version};
use super::parse::{finish_request, header_slots, FieldInfo, ParsedRequest};

/// What each byte may be, for [`quick_request`]: a token byte (method, field name), an ASCII
/// request-target byte, a field-value byte. These are httparse's classes, except that the
/// target takes no byte above 0x7e (httparse accepts those, then checks UTF-8; such targets
/// go the general way).
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let token = is_tchar(b);
        let target = b >= 0x21 && b <= 0x7e;
        let value = b == b'\t' || (b >= 0x20 && b != 0x7f);
        t[i] = (token as u8) | ((target as u8) << 1) | ((value as u8) << 2);
        i += 1;
    }
    t
};
const TOKEN: u8 = 1;
const TARGET: u8 = 2;
const VALUE: u8 = 4;

/// Index of the first byte at or after `i` not of class `class` (or `buf.len()`).
#[inline(always)]
fn skip_class(buf: &[u8], mut i: usize, class: u8) -> usize {
    while let Some(&b) = buf.get(i) {
        if CLASS[usize::from(b)] & class == 0 {
            break;
        }
        i += 1;
    }
    i
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `x` that is below `n` (`n <= 0x80`). Only the lowest flagged
/// byte is exact (a borrow may flag bytes above it), which is all the callers use.
#[inline(always)]
fn bytes_below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS
}

/// High bit set in each byte of `x` equal to `b`; as [`bytes_below`], only the lowest is exact.
#[inline(always)]
fn bytes_equal(x: u64, b: u8) -> u64 {
    bytes_below(x ^ (ONES * u64::from(b)), 1)
}

/// [`skip_class`] for [`TARGET`] or [`VALUE`], eight bytes at a time. The lowest flagged byte
/// of each mask is exact, so the lowest of their union is the first byte out of the class.
#[inline(always)]
fn skip_run(buf: &[u8], mut i: usize, class: u8) -> usize {
    loop {
        let Some(Ok(word)) = buf.get(i..i + 8).map(<[u8; 8]>::try_from) else {
            return skip_class(buf, i, class);
        };
        let x = u64::from_le_bytes(word);
        let out = if class == TARGET {
            bytes_below(x, 0x21) | bytes_equal(x, 0x7f) | (x & HIGHS)
        } else {
            bytes_below(x, 0x20) | bytes_equal(x, 0x7f)
        };
        if out == 0 {
            i += 8;
            continue;
        }
        let at = i + (out.trailing_zeros() / 8) as usize;
        if class == VALUE && buf.get(at) == Some(&b'\t') {
            i = at + 1;
            continue;
        }
        return at;
    }
}

/// One pass over a whole request head of the common shape: `token SP target SP HTTP/1.x`,
/// field lines `token ":" OWS value`, every line ending in CRLF, an ASCII target, within the
/// limits and header slots. Gives exactly what [`parse_request_in`] gives for such a head (in
/// debug builds every call checks that), without httparse, the target's UTF-8 check or the
/// scanner. `None` for anything else (including a partial head): the caller goes the general
/// way, which gives the exact answer or error.
///
/// [`parse_request_in`]: super::parse::parse_request_in
#[inline]
pub(super) fn quick_request(
    buf: &[u8],
    limits: &Limits,
) -> Option<(usize, Result<ParsedRequest, Http1Error>)> {
    // Most requests are GETs: one 4-byte compare instead of a token scan and a lookup.
    let (get, method_end) = match buf.get(..4) {
        Some(b"GET ") => (true, 3),
        _ => (false, skip_class(buf, 0, TOKEN)),
    };
    if method_end == 0 || buf.get(method_end) != Some(&b' ') {
        return None;
    }
    let target_start = method_end + 1;
    let target_end = skip_run(buf, target_start, TARGET);
    if target_end == target_start || buf.get(target_end) != Some(&b' ') {
        return None;
    }
    let line_len = target_end + 9;
    // The ten bytes as a word and a line end: two compares instead of two ten-byte ones.
    let end: &[u8; 10] = buf.get(target_end + 1..line_len + 2)?.try_into().ok()?;
    let [word @ .., b'\r', b'\n'] = *end else {
        return None;
    };
    let word = u64::from_le_bytes(word);
    let version = if word == u64::from_le_bytes(*b"HTTP/1.1") {
        Version::Http11
    } else if word == u64::from_le_bytes(*b"HTTP/1.0") {
        Version::Http10
    } else {
        return None;
    };
    if line_len > limits.max_request_line {
        return None;
    }
    let slots = header_slots(limits);
    let fields_start = line_len + 2;
    let mut i = fields_start;
    let mut fields = 0;
    // scan_fields stops at the first field error, but only once the whole head is seen.
    let mut info = Ok(FieldInfo::default());
    loop {
        if i > limits.max_head_size {
            return None;
        }
        if *buf.get(i)? == b'\r' {
            if *buf.get(i + 1)? != b'\n' {
                return None;
            }
            i += 2;
            break;
        }
        let name_end = skip_class(buf, i, TOKEN);
        if name_end == i || buf.get(name_end) != Some(&b':') {
            return None;
        }
        let mut value_start = name_end + 1;
        while matches!(buf.get(value_start), Some(b' ' | b'\t')) {
            value_start += 1;
        }
        let cr = skip_run(buf, value_start, VALUE);
        if buf.get(cr..cr + 2)? != b"\r\n" {
            return None;
        }
        fields += 1;
        if fields > slots {
            return None;
        }
        if let Ok(fi) = &mut info {
            let name = buf.get(i..name_end).unwrap_or_default();
            // Every request has a Host field, and its value decides nothing here: counted
            // without trimming the value or calling `add`.
            if !fi.add_if_host(name) {
                let value = buf.get(value_start..cr).unwrap_or_default();
                let value = match value.iter().rposition(|&b| b != b' ' && b != b'\t') {
                    Some(last) => value.get(..=last).unwrap_or_default(),
                    None => &[][..],
                };
                if let Err(e) = fi.add(name, value) {
                    info = Err(e);
                }
            }
        }
        i = cr + 2;
    }
    if i > limits.max_head_size {
        return None;
    }
    let method = if get {
        Method::Get
    } else {
        Method::from_token(buf.get(..method_end).unwrap_or_default())
    };
    let fields_start = if fields == 0 { i } else { fields_start };
    let result = info.and_then(|info| {
        finish_request(
            method,
            (target_start, target_end),
            version,
            info,
            (fields_start, fields),
            limits,
        )
    });
    Some((i, result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::limits::LineEndingPolicy;
    use crate::http1::parse::parse_request_in;

    /// Mostly one of `good`, sometimes one of `bad`.
    fn pick(
        good: &'static [&'static [u8]],
        bad: &'static [&'static [u8]],
    ) -> impl proptest::strategy::Strategy<Value = &'static [u8]> {
        proptest::prop_oneof![
            30 => proptest::sample::select(good),
            1 => proptest::sample::select(bad),
        ]
    }

    #[test]
    fn quick_path_limits_are_the_scanners_to_the_byte() {
        let head = b"GET /abc HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\n";
        let line = 17;
        for max_request_line in line - 1..=line + 1 {
            for max_head_size in head.len() - 1..=head.len() + 1 {
                for max_headers in 1..=3 {
                    let limits = Limits {
                        max_request_line,
                        max_head_size,
                        max_headers,
                        ..Limits::default()
                    };
                    let quick = quick_request(head, &limits);
                    let general = parse_request_in(head, &limits, true);
                    let fits =
                        max_request_line >= line && max_head_size >= head.len() && max_headers >= 2;
                    assert_eq!(quick.is_some(), fits, "{limits:?}");
                    assert_eq!(general.is_some(), fits, "{limits:?}");
                    if fits {
                        assert_eq!(quick, general);
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// The eight-at-a-time run skip stops where the byte-at-a-time one does.
        #[test]
        fn skip_run_matches_skip_class(
            buf in proptest::collection::vec(
                proptest::prop_oneof![
                    8 => 0x21u8..0x7f,
                    1 => proptest::prelude::any::<u8>(),
                    1 => proptest::sample::select(vec![b' ', b'\t', 0x7f, 0x80, 0x1f, 0x20, 0x21, 0xff, 0]),
                ],
                0..40,
            ),
            start in 0usize..8,
        ) {
            for class in [TARGET, VALUE] {
                proptest::prop_assert_eq!(skip_run(&buf, start, class), skip_class(&buf, start, class).max(start));
            }
        }
    }

    #[test]
    fn quick_path_on_the_benchmark_request() {
        let buf = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\nGET";
        let quick = quick_request(buf, &Limits::default()).expect("quick path");
        assert_eq!(quick.0, buf.len() - 3);
        assert_eq!(Some(quick), parse_request_in(buf, &Limits::default(), true));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 4096, ..Default::default() })]

        /// Whatever the quick path accepts (or rejects after seeing the whole head), the
        /// general path (httparse, then the scanner's rules) gives exactly the same.
        #[test]
        fn quick_path_agrees_with_httparse(
            method in pick(&[b"GET", b"POST", b"X-y"], &[b"", b"G@T"]),
            sep in pick(&[b" "], &[b"  ", b"\t"]),
            target in proptest::collection::vec(
                pick(&[b"/", b"a", b"?b=c", b"*"], &[b"\x7f", b"\x80", b"\xc3\xa9", b" ", b"\0"]),
                0..5,
            ),
            version in pick(&[b"HTTP/1.1", b"HTTP/1.0"], &[b"HTTP/1.2", b"HTTP/1.1 "]),
            fields in proptest::collection::vec(
                (
                    pick(
                        &[b"Host", b"host", b"x", b"Content-Length", b"Transfer-Encoding",
                            b"Connection", b"Expect", b"X-y"],
                        &[b"a b", b"@", b" x", b"", b"\tx"],
                    ),
                    pick(&[b":", b": ", b":\t", b":  "], &[b" :", b""]),
                    proptest::collection::vec(
                        pick(
                            &[b"x", b"5", b"0, 0", b"chunked", b"close", b"keep-alive",
                                b"100-continue", b" ", b"\t", b"\x80", b"\xc3\xa9", b"a b", b","],
                            &[b"\x7f", b"\0", b"\r", b"\n"],
                        ),
                        0..4,
                    ),
                ),
                0..6,
            ),
            eols in proptest::collection::vec(pick(&[b"\r\n"], &[b"\n", b"\r", b"\r\r\n"]), 8),
            tail in pick(&[b"", b"GET / HTTP/1.1\r\n"], &[b"\r\n", b" x\r\n"]),
            small in proptest::bool::ANY,
            max_request_line in 4usize..60,
            max_head_size in 8usize..200,
            max_headers in 1usize..5,
            bare_lf in proptest::bool::ANY,
        ) {
            let mut buf = [method, sep].concat();
            buf.extend(target.concat());
            buf.extend_from_slice(sep);
            buf.extend_from_slice(version);
            buf.extend_from_slice(eols[0]);
            for (i, (name, colon, value)) in fields.iter().enumerate() {
                buf.extend_from_slice(name);
                buf.extend_from_slice(colon);
                buf.extend(value.concat());
                buf.extend_from_slice(eols[(i + 1) % eols.len()]);
            }
            buf.extend_from_slice(eols[7]);
            buf.extend_from_slice(tail);
            let limits = Limits {
                max_request_line: if small { max_request_line } else { 8192 },
                max_head_size: if small { max_head_size } else { 65536 },
                max_headers: if small { max_headers } else { 100 },
                line_endings: if bare_lf {
                    LineEndingPolicy::AllowBareLf
                } else {
                    LineEndingPolicy::RequireCrlf
                },
                ..Limits::default()
            };
            if let Some(quick) = quick_request(&buf, &limits) {
                proptest::prop_assert_eq!(Some(quick), parse_request_in(&buf, &limits, true));
            }
        }
    }
}
