//! One shard's keys: string values with optional expiry. Plain data, no actors and no clock
//! of its own (callers pass `now`), so it is tested directly and stays deterministic in
//! simulation.
//!
//! Expiry is lazy (a read of an expired key deletes it) plus active: [`Keyspace::expire_due`]
//! pops due deadlines from a heap, a bounded number per call, as Redis's active expire cycle
//! does. Heap entries go stale when a key is overwritten; they carry the deadline they were
//! pushed with and are skipped unless it still matches.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;

use hashbrown::hash_table::{Entry as Slot, HashTable};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// A key or value as stored: short ones inline in the table slot, long ones on the heap.
/// The keyspace is memory-bound; a pointer to chase is a cache miss, and most keys and values
/// are short (Redis embeds strings up to 44 bytes for the same reason).
#[derive(Clone)]
enum Stored {
    Inline {
        len: u8,
        data: [u8; INLINE],
    },
    /// Boxed so the enum stays 24 bytes: a key, its value and its expiry fill one cache line.
    Heap(Box<Bytes>),
}

const INLINE: usize = 22;

/// One table slot, cache-line sized and aligned: a lookup touches one line.
#[repr(align(64))]
struct Pair(Stored, Entry);

impl Stored {
    fn new(b: &[u8]) -> Stored {
        if b.len() <= INLINE {
            let mut data = [0u8; INLINE];
            data[..b.len()].copy_from_slice(b);
            Stored::Inline {
                len: b.len() as u8,
                data,
            }
        } else {
            Stored::Heap(Box::new(Bytes::copy_from_slice(b)))
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Stored::Inline { len, data } => &data[..usize::from(*len)],
            Stored::Heap(b) => b,
        }
    }

    fn to_bytes(&self) -> Bytes {
        match self {
            Stored::Inline { .. } => Bytes::copy_from_slice(self.as_slice()),
            Stored::Heap(b) => Bytes::clone(b),
        }
    }
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

#[derive(Debug, Clone)]
struct Entry {
    value: Stored,
    expires_at: Option<Instant>,
}

/// Why an arithmetic command failed (Redis's wording is in [`ArithError::message`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithError {
    /// The stored value is not a decimal 64-bit integer.
    NotInteger,
    /// The result does not fit in 64 bits.
    Overflow,
}

impl ArithError {
    /// The error reply Redis sends.
    pub fn message(self) -> &'static str {
        match self {
            ArithError::NotInteger => "ERR value is not an integer or out of range",
            ArithError::Overflow => "ERR increment or decrement would overflow",
        }
    }
}

/// What `SET` does with an existing key and its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetOptions {
    /// Only set if the key does not exist (`NX`).
    pub only_if_absent: bool,
    /// Only set if the key exists (`XX`).
    pub only_if_present: bool,
    /// Absolute expiry (`EX`/`PX`), or `None`.
    pub expires_at: Option<Instant>,
    /// Keep the key's current expiry (`KEEPTTL`).
    pub keep_ttl: bool,
    /// Return the previous value (`GET`, `GETSET`); otherwise it is dropped unread.
    pub return_old: bool,
}

/// When `EXPIRE` applies (its `NX`/`XX`/`GT`/`LT` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpireCondition {
    /// Always.
    #[default]
    Always,
    /// Only when the key has no expiry.
    NoExpiry,
    /// Only when the key has an expiry.
    HasExpiry,
    /// Only when the new expiry is later than the current one (no expiry counts as infinite).
    Greater,
    /// Only when the new expiry is earlier than the current one.
    Less,
}

/// Remaining time to live of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// No such key.
    Missing,
    /// The key never expires.
    Persistent,
    /// Time left.
    Left(Duration),
}

/// Key to entry, hashed once per operation: the raw table lets a lookup that turns into an
/// insert or a removal reuse its probe (the keyspace is memory-bound: every extra probe is a
/// cache miss). The hasher is randomly seeded, so clients cannot choose colliding keys.
#[derive(Default)]
struct Map {
    table: HashTable<Pair>,
    hasher: foldhash::fast::RandomState,
}

impl Map {
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.table
            .find(self.hash(key), |Pair(k, _)| k.as_slice() == key)
            .map(|Pair(_, e)| e)
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let h = self.hash(key);
        self.table
            .find_entry(h, |Pair(k, _)| k.as_slice() == key)
            .ok()
            .map(|o| o.remove().0 .1)
    }

    fn slot(&mut self, key: &[u8]) -> Slot<'_, Pair> {
        let h = self.hash(key);
        let hasher = &self.hasher;
        self.table.entry(
            h,
            |Pair(k, _)| k.as_slice() == key,
            |Pair(k, _)| hasher.hash_one(k.as_slice()),
        )
    }

    fn clear(&mut self) {
        self.table.clear();
    }
}

impl std::fmt::Debug for Map {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Map").field("len", &self.len()).finish()
    }
}

/// The keys of one shard.
#[derive(Debug, Default)]
pub struct Keyspace {
    map: Map,
    deadlines: Deadlines,
}

/// Expiry deadlines, earliest first (entries go stale when a key's deadline changes).
type Deadlines = BinaryHeap<Reverse<(Instant, Bytes)>>;

impl Keyspace {
    /// An empty keyspace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Live keys (expired keys not yet collected are counted until collected).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    fn live(&mut self, key: &[u8], now: Instant) -> Option<&mut Entry> {
        match self.map.slot(key) {
            Slot::Occupied(o) if o.get().1.expires_at.is_some_and(|t| t <= now) => {
                o.remove();
                None
            }
            Slot::Occupied(o) => Some(&mut o.into_mut().1),
            Slot::Vacant(_) => None,
        }
    }

    /// Remembers `key`'s deadline for active expiry. A free function over the heap so it can
    /// run while a table slot is borrowed.
    fn track(deadlines: &mut Deadlines, key: &[u8], at: Option<Instant>) {
        if let Some(at) = at {
            deadlines.push(Reverse((at, Bytes::copy_from_slice(key))));
        }
    }

    /// The value of `key`.
    pub fn get(&mut self, key: &[u8], now: Instant) -> Option<Bytes> {
        self.live(key, now).map(|e| e.value.to_bytes())
    }

    /// Calls `f` with the value of `key`, without copying it out.
    pub fn with_value<R>(
        &mut self,
        key: &[u8],
        now: Instant,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Option<R> {
        self.live(key, now).map(|e| f(e.value.as_slice()))
    }

    /// Whether `key` exists.
    pub fn exists(&mut self, key: &[u8], now: Instant) -> bool {
        self.live(key, now).is_some()
    }

    /// `SET`: returns whether the value was stored, and the previous value (for `GET`).
    pub fn set(
        &mut self,
        key: Bytes,
        value: Bytes,
        opts: SetOptions,
        now: Instant,
    ) -> (bool, Option<Bytes>) {
        // Keys and values arrive as slices of a connection's receive buffer; stored as they
        // are, one small value would pin that whole buffer for its lifetime. Copy them out.
        match self.map.slot(&key) {
            Slot::Occupied(mut o) => {
                let Pair(k, e) = o.get_mut();
                let expired = e.expires_at.is_some_and(|t| t <= now);
                if expired {
                    if opts.only_if_present {
                        o.remove();
                        return (false, None);
                    }
                } else if opts.only_if_absent {
                    return (false, opts.return_old.then(|| e.value.to_bytes()));
                }
                let expires_at = match (opts.keep_ttl, expired) {
                    (true, false) => e.expires_at,
                    (true, true) => None,
                    (false, _) => opts.expires_at,
                };
                if expires_at != e.expires_at {
                    Self::track(&mut self.deadlines, k.as_slice(), expires_at);
                }
                e.expires_at = expires_at;
                let old = std::mem::replace(&mut e.value, Stored::new(&value));
                (true, (opts.return_old && !expired).then(|| old.to_bytes()))
            }
            Slot::Vacant(v) => {
                if opts.only_if_present {
                    return (false, None);
                }
                Self::track(&mut self.deadlines, &key, opts.expires_at);
                let entry = Entry {
                    value: Stored::new(&value),
                    expires_at: opts.expires_at,
                };
                v.insert(Pair(Stored::new(&key), entry));
                (true, None)
            }
        }
    }

    /// Deletes `key`; returns whether it existed.
    pub fn del(&mut self, key: &[u8], now: Instant) -> bool {
        self.live(key, now).is_some() && self.map.remove(key).is_some()
    }

    /// `INCRBY`: adds `by` to the integer at `key` (0 if missing), keeping its expiry.
    pub fn incr_by(&mut self, key: &Bytes, by: i64, now: Instant) -> Result<i64, ArithError> {
        let (current, expires_at) = match self.live(key, now) {
            Some(e) => (
                parse_i64(e.value.as_slice()).ok_or(ArithError::NotInteger)?,
                e.expires_at,
            ),
            None => (0, None),
        };
        let next = current.checked_add(by).ok_or(ArithError::Overflow)?;
        let mut digits = itoa::Buffer::new();
        let value = Stored::new(digits.format(next).as_bytes());
        match self.map.slot(key) {
            Slot::Occupied(mut o) => o.get_mut().1.value = value,
            Slot::Vacant(v) => {
                v.insert(Pair(Stored::new(key), Entry { value, expires_at }));
            }
        }
        Ok(next)
    }

    /// `EXPIRE`-family: sets an absolute deadline. A deadline at or before `now` deletes the
    /// key. Returns whether the key existed and the condition held.
    pub fn expire_at(
        &mut self,
        key: &[u8],
        at: Instant,
        cond: ExpireCondition,
        now: Instant,
    ) -> bool {
        let Some(e) = self.live(key, now) else {
            return false;
        };
        let ok = match (cond, e.expires_at) {
            (ExpireCondition::Always, _) => true,
            (ExpireCondition::NoExpiry, cur) => cur.is_none(),
            (ExpireCondition::HasExpiry, cur) => cur.is_some(),
            (ExpireCondition::Greater, Some(cur)) => at > cur,
            (ExpireCondition::Greater, None) => false,
            (ExpireCondition::Less, Some(cur)) => at < cur,
            (ExpireCondition::Less, None) => true,
        };
        if !ok {
            return false;
        }
        if at <= now {
            self.map.remove(key);
            return true;
        }
        e.expires_at = Some(at);
        Self::track(&mut self.deadlines, key, Some(at));
        true
    }

    /// `PERSIST`: removes the expiry; returns whether there was one.
    pub fn persist(&mut self, key: &[u8], now: Instant) -> bool {
        match self.live(key, now) {
            Some(e) => e.expires_at.take().is_some(),
            None => false,
        }
    }

    /// Time to live of `key`.
    pub fn ttl(&mut self, key: &[u8], now: Instant) -> Ttl {
        match self.live(key, now) {
            None => Ttl::Missing,
            Some(Entry {
                expires_at: None, ..
            }) => Ttl::Persistent,
            Some(Entry {
                expires_at: Some(t),
                ..
            }) => Ttl::Left(t.saturating_duration_since(now)),
        }
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.map.clear();
        self.deadlines.clear();
    }

    /// Deletes up to `budget` keys whose deadline passed; returns how many were deleted.
    pub fn expire_due(&mut self, now: Instant, budget: usize) -> usize {
        let mut deleted = 0;
        let mut examined = 0;
        while examined < budget {
            let due = matches!(self.deadlines.peek(), Some(Reverse((t, _))) if *t <= now);
            if !due {
                break;
            }
            let Some(Reverse((at, key))) = self.deadlines.pop() else {
                break;
            };
            examined += 1;
            // Only the deadline the key still has counts; older heap entries are stale.
            if matches!(self.map.get(&key), Some(e) if e.expires_at == Some(at)) {
                self.map.remove(&key);
                deleted += 1;
            }
        }
        // Overwrites leave stale deadlines behind; rebuild when they dominate the heap.
        if self.deadlines.len() > 1024 && self.deadlines.len() > 4 * self.map.len() {
            let map = &self.map;
            let live: Vec<_> = self
                .deadlines
                .drain()
                .filter(|Reverse((t, k))| map.get(k).is_some_and(|e| e.expires_at == Some(*t)))
                .collect();
            self.deadlines = live.into();
        }
        deleted
    }
}

/// Parses a Redis integer argument or value: optional `-`, decimal digits, no spaces, no `+`,
/// no leading zeros (except `0` itself), within `i64`.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    if neg && digits == b"0" {
        return None;
    }
    let mut v: i128 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i128::from(c - b'0');
    }
    if neg {
        v = -v;
    }
    i64::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn a_slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Stored>(), 24);
        assert_eq!(std::mem::size_of::<Pair>(), 64);
    }

    #[test]
    fn set_get_and_conditions() {
        let now = Instant::now();
        let mut ks = Keyspace::new();
        assert_eq!(ks.get(b"a", now), None);
        assert!(ks.set(k("a"), k("1"), SetOptions::default(), now).0);
        assert_eq!(ks.get(b"a", now), Some(k("1")));
        let nx = SetOptions {
            only_if_absent: true,
            return_old: true,
            ..Default::default()
        };
        assert_eq!(ks.set(k("a"), k("2"), nx, now), (false, Some(k("1"))));
        let xx = SetOptions {
            only_if_present: true,
            return_old: true,
            ..Default::default()
        };
        assert!(!ks.set(k("b"), k("2"), xx, now).0);
        assert!(!ks.exists(b"b", now));
        assert_eq!(ks.set(k("a"), k("3"), xx, now), (true, Some(k("1"))));
    }

    #[test]
    fn short_and_long_keys_and_values_round_trip() {
        let now = Instant::now();
        let mut ks = Keyspace::new();
        for len in [0usize, 1, 21, 22, 23, 64, 4096] {
            let key = Bytes::from(vec![b'k'; len.max(1)]);
            let value = Bytes::from((0..len).map(|i| i as u8).collect::<Vec<_>>());
            ks.set(key.clone(), value.clone(), SetOptions::default(), now);
            assert_eq!(ks.get(&key, now), Some(value.clone()), "len {len}");
            assert_eq!(ks.with_value(&key, now, |v| v.len()), Some(len));
        }
        assert_eq!(ks.len(), 6, "lengths 0 and 1 share the key \"k\"");
    }

    #[test]
    fn expiry_is_lazy_and_active() {
        let now = Instant::now();
        let mut ks = Keyspace::new();
        let ex = SetOptions {
            expires_at: Some(now + Duration::from_secs(10)),
            ..Default::default()
        };
        ks.set(k("a"), k("1"), ex, now);
        ks.set(k("b"), k("1"), ex, now);
        assert_eq!(ks.ttl(b"a", now), Ttl::Left(Duration::from_secs(10)));
        let later = now + Duration::from_secs(11);
        assert_eq!(ks.get(b"a", later), None, "lazy expiry on read");
        assert_eq!(ks.len(), 1);
        assert_eq!(ks.expire_due(later, 100), 1, "active expiry collects b");
        assert!(ks.is_empty());
    }

    #[test]
    fn overwrite_drops_old_deadline_and_keepttl_keeps_it() {
        let now = Instant::now();
        let mut ks = Keyspace::new();
        let ex = SetOptions {
            expires_at: Some(now + Duration::from_secs(1)),
            ..Default::default()
        };
        ks.set(k("a"), k("1"), ex, now);
        ks.set(k("a"), k("2"), SetOptions::default(), now);
        let later = now + Duration::from_secs(2);
        assert_eq!(ks.expire_due(later, 100), 0, "stale deadline skipped");
        assert_eq!(ks.ttl(b"a", later), Ttl::Persistent);
        ks.expire_at(
            b"a",
            later + Duration::from_secs(5),
            ExpireCondition::Always,
            later,
        );
        let keep = SetOptions {
            keep_ttl: true,
            ..Default::default()
        };
        ks.set(k("a"), k("3"), keep, later);
        assert_eq!(ks.ttl(b"a", later), Ttl::Left(Duration::from_secs(5)));
    }

    #[test]
    fn incr_keeps_expiry_and_checks_overflow() {
        let now = Instant::now();
        let mut ks = Keyspace::new();
        assert_eq!(ks.incr_by(&k("n"), 5, now), Ok(5));
        assert_eq!(ks.incr_by(&k("n"), -7, now), Ok(-2));
        ks.set(k("n"), k(&i64::MAX.to_string()), SetOptions::default(), now);
        assert_eq!(ks.incr_by(&k("n"), 1, now), Err(ArithError::Overflow));
        ks.set(k("s"), k("abc"), SetOptions::default(), now);
        assert_eq!(ks.incr_by(&k("s"), 1, now), Err(ArithError::NotInteger));
    }

    #[test]
    fn expire_conditions() {
        let now = Instant::now();
        let mut ks = Keyspace::new();
        ks.set(k("a"), k("1"), SetOptions::default(), now);
        let t = now + Duration::from_secs(5);
        assert!(!ks.expire_at(b"a", t, ExpireCondition::HasExpiry, now));
        assert!(!ks.expire_at(b"a", t, ExpireCondition::Greater, now));
        assert!(ks.expire_at(b"a", t, ExpireCondition::NoExpiry, now));
        assert!(!ks.expire_at(
            b"a",
            t - Duration::from_secs(1),
            ExpireCondition::Greater,
            now
        ));
        assert!(ks.expire_at(b"a", t - Duration::from_secs(1), ExpireCondition::Less, now));
        assert!(ks.persist(b"a", now));
        assert!(ks.expire_at(b"a", now, ExpireCondition::Always, now));
        assert!(!ks.exists(b"a", now), "a past deadline deletes");
        assert!(!ks.expire_at(b"missing", t, ExpireCondition::Always, now));
    }

    #[test]
    fn integers_parse_like_redis() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"01",
            b"-0",
            b"1.5",
            b"9223372036854775808",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
