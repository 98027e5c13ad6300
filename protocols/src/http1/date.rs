//! The `Date` header value (IMF-fixdate), formatted at most once per second.
//!
//! Formatting a date per response is measurable at millions of responses per second, and the
//! value only changes once a second, so the connection keeps the formatted bytes and the second
//! they belong to. The caller supplies the wall-clock time: the codec never reads a clock, which
//! keeps it deterministic under simulation.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const DATE_LEN: usize = 29;

/// A cached, formatted HTTP-date.
#[derive(Debug, Clone)]
pub struct DateCache {
    secs: u64,
    buf: [u8; DATE_LEN],
    /// When the cached second ends by the monotonic clock ([`DateCache::update_at`]), so a
    /// caller need not read the wall clock before then.
    refresh_at: Option<Instant>,
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache::new(UNIX_EPOCH)
    }
}

impl DateCache {
    /// A cache holding the date for `now`.
    pub fn new(now: SystemTime) -> Self {
        let secs = unix_secs(now);
        let mut buf = [0u8; DATE_LEN];
        format(secs, &mut buf);
        DateCache {
            secs,
            buf,
            refresh_at: None,
        }
    }

    /// Refresh for `now`; formats only if the second changed. Returns whether it did.
    pub fn update(&mut self, now: SystemTime) -> bool {
        let secs = unix_secs(now);
        if secs == self.secs {
            return false;
        }
        self.secs = secs;
        format(secs, &mut self.buf);
        true
    }

    /// [`DateCache::update`] with `wall` read at monotonic time `now`: the value then holds
    /// until that second ends, and [`DateCache::is_due`] says when to read the wall clock again.
    pub fn update_at(&mut self, wall: SystemTime, now: Instant) -> bool {
        let changed = self.update(wall);
        let into_second = wall
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let left = Duration::from_nanos(u64::from(1_000_000_000 - into_second.min(999_999_999)));
        self.refresh_at = now.checked_add(left);
        changed
    }

    /// Whether the wall clock must be read again at monotonic time `now`: always before the
    /// first [`DateCache::update_at`], then once the second it saw has ended.
    pub fn is_due(&self, now: Instant) -> bool {
        self.refresh_at.is_none_or(|at| now >= at)
    }

    /// The formatted value.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The formatted value as a fixed-size array, so the encoder copies it without a call.
    pub(crate) fn as_array(&self) -> &[u8; DATE_LEN] {
        &self.buf
    }

    /// The second the value shows (seconds since the Unix epoch): equal seconds, equal bytes.
    pub(crate) fn secs(&self) -> u64 {
        self.secs
    }
}

fn unix_secs(now: SystemTime) -> u64 {
    // Times before 1970 cannot be sent as an HTTP-date; clamp instead of panicking.
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn format(secs: u64, out: &mut [u8; DATE_LEN]) {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    // Clamp to year 9999 so the fixed-width layout always holds.
    let secs = secs.min(253_402_300_799);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let (h, m, s) = (rem / 3600, (rem / 60) % 60, rem % 60);

    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[3..5].copy_from_slice(b", ");
    two(&mut out[5..7], day as u64);
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    out[11] = b' ';
    let y = year as u64;
    two(&mut out[12..14], y / 100);
    two(&mut out[14..16], y % 100);
    out[16] = b' ';
    two(&mut out[17..19], h);
    out[19] = b':';
    two(&mut out[20..22], m);
    out[22] = b':';
    two(&mut out[23..25], s);
    out[25..].copy_from_slice(b" GMT");
}

fn two(out: &mut [u8], v: u64) {
    out[0] = b'0' + (v / 10 % 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn formats_rfc_example() {
        let d = DateCache::new(at(784_111_777));
        assert_eq!(d.as_bytes(), b"Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn formats_epoch_leap_day_and_far_future() {
        assert_eq!(
            DateCache::new(at(0)).as_bytes(),
            b"Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(
            DateCache::new(at(951_782_400)).as_bytes(),
            b"Tue, 29 Feb 2000 00:00:00 GMT"
        );
        assert_eq!(
            DateCache::new(at(1 << 40)).as_bytes(),
            b"Fri, 31 Dec 9999 23:59:59 GMT"
        );
    }

    #[test]
    fn recomputes_at_most_once_per_second() {
        let mut d = DateCache::new(at(100));
        assert!(!d.update(at(100) + Duration::from_millis(999)));
        assert!(d.update(at(101)));
        assert!(!d.update(at(101)));
    }
}
