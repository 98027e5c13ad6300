//! Header field grammar shared by the message types and the encoder: which bytes may appear in
//! a field name or value, and which fields the encoder treats specially.

/// `CLASS[b] & TCHAR`: `b` may appear in a token (RFC 9110 5.6.2); `CLASS[b] & FORBIDDEN`: `b`
/// may not appear in a field value (CR, LF, NUL: they would split the message). One table load
/// per byte is what makes validating every outgoing field affordable on the hot path.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if is_tchar(c) {
            t[b] |= TCHAR;
        }
        if matches!(c, b'\r' | b'\n' | 0) {
            t[b] |= FORBIDDEN;
        }
        b += 1;
    }
    t
};

/// Whether `c` may appear in a token (RFC 9110 5.6.2: field names, methods). For building
/// lookup tables; at run time read a table.
pub(crate) const fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}
const TCHAR: u8 = 1;
const FORBIDDEN: u8 = 2;

pub(crate) fn valid_token(t: &[u8]) -> bool {
    // No early exit: names are short and almost always valid, so a branch per byte costs more
    // than finishing the loop on the rare bad one.
    !t.is_empty() && t.iter().fold(TCHAR, |ok, &b| ok & CLASS[b as usize]) != 0
}

pub(crate) fn valid_value(v: &[u8]) -> bool {
    // Eight bytes at a time: a byte of `x` is zero iff the classic `(x - 0x01..) & !x & 0x80..`
    // sets its high bit (exact when asking only whether any byte is zero).
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const fn has_zero(x: u64) -> bool {
        x.wrapping_sub(ONES) & !x & HIGHS != 0
    }
    let mut words = v.chunks_exact(8);
    for w in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(w);
        let x = u64::from_ne_bytes(bytes);
        if has_zero(x)
            || has_zero(x ^ (ONES * u64::from(b'\r')))
            || has_zero(x ^ (ONES * u64::from(b'\n')))
        {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .fold(0, |bad, &b| bad | CLASS[b as usize])
        & FORBIDDEN
        == 0
}

/// What the encoder does with a field, decided by name (length first: most names match none).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldRole {
    /// Written as is.
    Plain,
    /// `Date`: written as is, and the encoder does not add its own.
    Date,
    /// `Content-Length`, `Transfer-Encoding`: the encoder writes these itself.
    Owned,
    /// `Connection`: the encoder writes it itself, and a `close` token in it is honoured.
    Connection,
}

pub(crate) fn field_role(name: &[u8]) -> FieldRole {
    match name.len() {
        4 if name.eq_ignore_ascii_case(b"date") => FieldRole::Date,
        10 if name.eq_ignore_ascii_case(b"connection") => FieldRole::Connection,
        14 if name.eq_ignore_ascii_case(b"content-length") => FieldRole::Owned,
        17 if name.eq_ignore_ascii_case(b"transfer-encoding") => FieldRole::Owned,
        _ => FieldRole::Plain,
    }
}

pub(crate) fn has_close_token(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_check_finds_forbidden_bytes_at_every_position() {
        for len in 0..40 {
            for at in 0..len {
                for bad in [b'\r', b'\n', 0] {
                    for fill in [b'a', 0x80, 0xff, 0x01, b'\t'] {
                        let mut v = vec![fill; len];
                        assert!(valid_value(&v));
                        v[at] = bad;
                        assert!(!valid_value(&v), "{len} {at} {bad} {fill}");
                    }
                }
            }
        }
    }

    #[test]
    fn token_table_matches_the_grammar() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(valid_token(&[b]), want, "{b}");
            assert_eq!(
                valid_value(&[b'a', b]),
                !matches!(b, b'\r' | b'\n' | 0),
                "{b}"
            );
        }
    }
}
