//! The command table: which actor a command goes to, and what the string commands do to one
//! shard's [`Keyspace`]. Replies and errors use Redis's own wording so clients written
//! against redis-server see the same answers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sinew_protocols::resp::{Command, Value};

use super::keyspace::{parse_i64, ExpireCondition, Keyspace, SetOptions, Ttl};

/// Where a command is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// On the shard owning the key at this argument index (multi-key commands start there and
    /// gather the other shards' parts).
    Key(usize),
    /// Connection and server commands (HELLO, CLIENT, INFO, DBSIZE, ...).
    Control,
    /// SUBSCRIBE, PUBLISH and friends.
    PubSub,
    /// Stateless (PING, ECHO) or unknown: any shard answers.
    Any,
}

/// The lowercase command name, for matching and for error messages. Names longer than the
/// buffer are not Redis commands and map to an empty name (unknown command).
pub(crate) fn lower_name<'a>(cmd: &Command, buf: &'a mut [u8; 16]) -> &'a [u8] {
    let name = cmd.name();
    if name.len() > buf.len() {
        return &[];
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    &buf[..name.len()]
}

/// Routes a command (see [`Route`]).
pub(crate) fn route_of(cmd: &Command) -> Route {
    let mut buf = [0u8; 16];
    match lower_name(cmd, &mut buf) {
        b"get" | b"set" | b"setnx" | b"setex" | b"psetex" | b"getset" | b"getdel" | b"incr"
        | b"decr" | b"incrby" | b"decrby" | b"expire" | b"pexpire" | b"ttl" | b"pttl"
        | b"persist" | b"strlen" | b"append" | b"type" | b"del" | b"unlink" | b"exists"
        | b"mget" | b"mset" | b"msetnx"
            if cmd.len() > 1 =>
        {
            Route::Key(1)
        }
        b"hello" | b"client" | b"select" | b"info" | b"command" | b"dbsize" | b"flushall"
        | b"flushdb" | b"config" | b"quit" | b"reset" => Route::Control,
        b"subscribe" | b"unsubscribe" | b"psubscribe" | b"punsubscribe" | b"publish" => {
            Route::PubSub
        }
        _ => Route::Any,
    }
}

/// The keys a multi-key command touches, with the stride between them (MSET's values sit
/// between its keys). `None` for single-key commands.
pub(crate) fn multi_keys(name: &[u8]) -> Option<usize> {
    match name {
        b"del" | b"unlink" | b"exists" | b"mget" => Some(1),
        b"mset" | b"msetnx" => Some(2),
        _ => None,
    }
}

/// `ERR wrong number of arguments for '<name>' command`.
pub(crate) fn arity_error(name: &[u8]) -> Value {
    Value::error(format!(
        "ERR wrong number of arguments for '{}' command",
        String::from_utf8_lossy(name)
    ))
}

/// `ERR unknown command '<name>', with args beginning with: ...`.
pub(crate) fn unknown_command(cmd: &Command) -> Value {
    let args: String = cmd
        .args()
        .iter()
        .skip(1)
        .map(|a| format!("'{}' ", String::from_utf8_lossy(a)))
        .collect();
    Value::error(format!(
        "ERR unknown command '{}', with args beginning with: {args}",
        String::from_utf8_lossy(cmd.name())
    ))
}

fn syntax_error() -> Value {
    Value::error("ERR syntax error")
}

fn not_integer() -> Value {
    Value::error("ERR value is not an integer or out of range")
}

fn int_arg(cmd: &Command, i: usize) -> Result<i64, Value> {
    cmd.get(i)
        .and_then(|a| parse_i64(a))
        .ok_or_else(not_integer)
}

fn invalid_expire(name: &[u8]) -> Value {
    Value::error(format!(
        "ERR invalid expire time in '{}' command",
        String::from_utf8_lossy(name)
    ))
}

/// A relative expiry in `unit` from `amount`, or Redis's error for a non-positive or
/// overflowing one.
fn relative_deadline(
    amount: i64,
    unit_ms: u64,
    now: Instant,
    name: &[u8],
) -> Result<Instant, Value> {
    if amount <= 0 {
        return Err(invalid_expire(name));
    }
    let ms = (amount as u64)
        .checked_mul(unit_ms)
        .ok_or_else(|| invalid_expire(name))?;
    now.checked_add(Duration::from_millis(ms))
        .ok_or_else(|| invalid_expire(name))
}

fn bulk_or_null(v: Option<Bytes>) -> Value {
    v.map_or(Value::Null, Value::Bulk)
}

/// Executes a single-shard command whose keys all live in `ks`. `name` is the lowercase
/// command name.
pub(crate) fn execute(ks: &mut Keyspace, name: &[u8], cmd: &Command, now: Instant) -> Value {
    match run(ks, name, cmd, now) {
        Ok(v) | Err(v) => v,
    }
}

fn key(cmd: &Command) -> Result<&Bytes, Value> {
    cmd.get(1).ok_or_else(|| arity_error(b"?"))
}

fn run(ks: &mut Keyspace, name: &[u8], cmd: &Command, now: Instant) -> Result<Value, Value> {
    let n = cmd.len();
    let need = |ok: bool| if ok { Ok(()) } else { Err(arity_error(name)) };
    Ok(match name {
        b"get" => {
            need(n == 2)?;
            bulk_or_null(ks.get(key(cmd)?, now))
        }
        b"set" => {
            need(n >= 3)?;
            return set(ks, cmd, now);
        }
        b"setnx" => {
            need(n == 3)?;
            let opts = SetOptions {
                only_if_absent: true,
                ..Default::default()
            };
            let (stored, _) = ks.set(key(cmd)?.clone(), cmd.args()[2].clone(), opts, now);
            Value::Integer(i64::from(stored))
        }
        b"setex" | b"psetex" => {
            need(n == 4)?;
            let unit = if name == b"setex" { 1000 } else { 1 };
            let at = relative_deadline(int_arg(cmd, 2)?, unit, now, name)?;
            let opts = SetOptions {
                expires_at: Some(at),
                ..Default::default()
            };
            ks.set(key(cmd)?.clone(), cmd.args()[3].clone(), opts, now);
            Value::ok()
        }
        b"getset" => {
            need(n == 3)?;
            let opts = SetOptions {
                return_old: true,
                ..Default::default()
            };
            let (_, old) = ks.set(key(cmd)?.clone(), cmd.args()[2].clone(), opts, now);
            bulk_or_null(old)
        }
        b"getdel" => {
            need(n == 2)?;
            let k = key(cmd)?;
            let v = ks.get(k, now);
            ks.del(k, now);
            bulk_or_null(v)
        }
        b"incr" | b"decr" => {
            need(n == 2)?;
            let by = if name == b"incr" { 1 } else { -1 };
            ks.incr_by(key(cmd)?, by, now)
                .map(Value::Integer)
                .map_err(|e| Value::error(e.message()))?
        }
        b"incrby" | b"decrby" => {
            need(n == 3)?;
            let by = int_arg(cmd, 2)?;
            let by = if name == b"incrby" {
                by
            } else {
                by.checked_neg()
                    .ok_or_else(|| Value::error("ERR decrement would overflow"))?
            };
            ks.incr_by(key(cmd)?, by, now)
                .map(Value::Integer)
                .map_err(|e| Value::error(e.message()))?
        }
        b"expire" | b"pexpire" => {
            need(n == 3 || n == 4)?;
            let amount = int_arg(cmd, 2)?;
            let cond = match cmd.get(3).map(|a| a.to_ascii_lowercase()) {
                None => ExpireCondition::Always,
                Some(f) if f == b"nx" => ExpireCondition::NoExpiry,
                Some(f) if f == b"xx" => ExpireCondition::HasExpiry,
                Some(f) if f == b"gt" => ExpireCondition::Greater,
                Some(f) if f == b"lt" => ExpireCondition::Less,
                Some(f) => {
                    return Err(Value::error(format!(
                        "ERR Unsupported option {}",
                        String::from_utf8_lossy(&f)
                    )))
                }
            };
            let unit: i64 = if name == b"expire" { 1000 } else { 1 };
            // A non-positive expiry deletes the key (deadline = now), as in Redis.
            let at = match amount.checked_mul(unit) {
                Some(ms) if ms <= 0 => now,
                Some(ms) => now
                    .checked_add(Duration::from_millis(ms as u64))
                    .ok_or_else(|| invalid_expire(name))?,
                None => return Err(invalid_expire(name)),
            };
            Value::Integer(i64::from(ks.expire_at(key(cmd)?, at, cond, now)))
        }
        b"ttl" | b"pttl" => {
            need(n == 2)?;
            Value::Integer(match ks.ttl(key(cmd)?, now) {
                Ttl::Missing => -2,
                Ttl::Persistent => -1,
                // Redis rounds TTL to the nearest second.
                Ttl::Left(d) if name == b"ttl" => ((d.as_millis() + 500) / 1000) as i64,
                Ttl::Left(d) => d.as_millis() as i64,
            })
        }
        b"persist" => {
            need(n == 2)?;
            Value::Integer(i64::from(ks.persist(key(cmd)?, now)))
        }
        b"strlen" => {
            need(n == 2)?;
            Value::Integer(
                ks.with_value(key(cmd)?, now, |v| v.len() as i64)
                    .unwrap_or(0),
            )
        }
        b"append" => {
            need(n == 3)?;
            let k = key(cmd)?.clone();
            let mut v = ks.get(&k, now).map(|b| b.to_vec()).unwrap_or_default();
            v.extend_from_slice(&cmd.args()[2]);
            let len = v.len() as i64;
            let opts = SetOptions {
                keep_ttl: true,
                ..Default::default()
            };
            ks.set(k, Bytes::from(v), opts, now);
            Value::Integer(len)
        }
        b"type" => {
            need(n == 2)?;
            Value::simple(if ks.exists(key(cmd)?, now) {
                "string"
            } else {
                "none"
            })
        }
        // Multi-key commands whose keys are all on this shard.
        b"del" | b"unlink" => {
            need(n >= 2)?;
            let gone = cmd.args()[1..].iter().filter(|k| ks.del(k, now)).count();
            Value::Integer(gone as i64)
        }
        b"exists" => {
            need(n >= 2)?;
            let found = cmd.args()[1..].iter().filter(|k| ks.exists(k, now)).count();
            Value::Integer(found as i64)
        }
        b"mget" => {
            need(n >= 2)?;
            Value::Array(
                cmd.args()[1..]
                    .iter()
                    .map(|k| bulk_or_null(ks.get(k, now)))
                    .collect(),
            )
        }
        b"mset" => {
            need(n >= 3 && n % 2 == 1)?;
            for kv in cmd.args()[1..].chunks_exact(2) {
                ks.set(kv[0].clone(), kv[1].clone(), SetOptions::default(), now);
            }
            Value::ok()
        }
        b"msetnx" => {
            need(n >= 3 && n % 2 == 1)?;
            let pairs = &cmd.args()[1..];
            if pairs.chunks_exact(2).any(|kv| ks.exists(&kv[0], now)) {
                Value::Integer(0)
            } else {
                for kv in pairs.chunks_exact(2) {
                    ks.set(kv[0].clone(), kv[1].clone(), SetOptions::default(), now);
                }
                Value::Integer(1)
            }
        }
        _ => unknown_command(cmd),
    })
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|KEEPTTL]`.
fn set(ks: &mut Keyspace, cmd: &Command, now: Instant) -> Result<Value, Value> {
    let mut opts = SetOptions::default();
    let mut get = false;
    let mut expiry_given = false;
    let mut i = 3;
    while i < cmd.len() {
        let flag = cmd.args()[i].to_ascii_lowercase();
        match &flag[..] {
            b"nx" if !opts.only_if_present => opts.only_if_absent = true,
            b"xx" if !opts.only_if_absent => opts.only_if_present = true,
            b"get" => {
                get = true;
                opts.return_old = true;
            }
            b"keepttl" if !expiry_given => {
                opts.keep_ttl = true;
                expiry_given = true;
            }
            b"ex" | b"px" if !expiry_given && i + 1 < cmd.len() => {
                let unit = if &flag[..] == b"ex" { 1000 } else { 1 };
                opts.expires_at = Some(relative_deadline(int_arg(cmd, i + 1)?, unit, now, b"set")?);
                expiry_given = true;
                i += 1;
            }
            _ => return Err(syntax_error()),
        }
        i += 1;
    }
    let (stored, old) = ks.set(cmd.args()[1].clone(), cmd.args()[2].clone(), opts, now);
    Ok(match (get, stored) {
        (true, _) => bulk_or_null(old),
        (false, true) => Value::ok(),
        (false, false) => Value::Null,
    })
}

/// The shard owning `key` among `shards`: FxHash-style multiply-rotate over 8-byte words,
/// cheap on the decode path and stable across processes.
pub fn shard_of(key: &[u8], shards: usize) -> usize {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h: u64 = 0;
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
    }
    // The high bits are the well-mixed ones.
    ((h >> 32) as usize) % shards.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(parts: &[&str]) -> Command {
        let mut c = Command::new(Bytes::copy_from_slice(parts[0].as_bytes()));
        for p in &parts[1..] {
            c = c.arg(Bytes::copy_from_slice(p.as_bytes()));
        }
        c
    }

    fn exec(ks: &mut Keyspace, parts: &[&str], now: Instant) -> Value {
        let c = cmd(parts);
        let mut buf = [0u8; 16];
        let name = lower_name(&c, &mut buf).to_vec();
        execute(ks, &name, &c, now)
    }

    #[test]
    fn set_options_match_redis() {
        let now = Instant::now();
        let mut ks = Keyspace::new();
        assert_eq!(exec(&mut ks, &["SET", "k", "v"], now), Value::ok());
        assert_eq!(exec(&mut ks, &["set", "k", "w", "NX"], now), Value::Null);
        assert_eq!(
            exec(&mut ks, &["set", "k", "w", "XX", "GET"], now),
            Value::Bulk("v".into())
        );
        assert_eq!(
            exec(&mut ks, &["set", "k", "w", "NX", "XX"], now),
            syntax_error()
        );
        assert_eq!(
            exec(&mut ks, &["set", "k", "w", "EX", "0"], now),
            invalid_expire(b"set")
        );
        assert_eq!(
            exec(&mut ks, &["set", "k", "w", "EX", "x"], now),
            not_integer()
        );
        assert_eq!(
            exec(&mut ks, &["set", "k", "w", "PX", "1500"], now),
            Value::ok()
        );
        assert_eq!(exec(&mut ks, &["pttl", "k"], now), Value::Integer(1500));
        assert_eq!(exec(&mut ks, &["ttl", "k"], now), Value::Integer(2));
        assert_eq!(
            exec(&mut ks, &["get", "k"], now + Duration::from_millis(1500)),
            Value::Null
        );
    }

    #[test]
    fn arity_and_unknown() {
        let now = Instant::now();
        let mut ks = Keyspace::new();
        assert_eq!(
            exec(&mut ks, &["GET"], now),
            Value::error("ERR wrong number of arguments for 'get' command")
        );
        assert_eq!(
            exec(&mut ks, &["mset", "a", "1", "b"], now),
            Value::error("ERR wrong number of arguments for 'mset' command")
        );
        assert!(matches!(
            exec(&mut ks, &["frob", "x"], now),
            Value::Error(_)
        ));
    }

    #[test]
    fn counters_and_multi_key_on_one_shard() {
        let now = Instant::now();
        let mut ks = Keyspace::new();
        assert_eq!(exec(&mut ks, &["incr", "n"], now), Value::Integer(1));
        assert_eq!(
            exec(&mut ks, &["incrby", "n", "10"], now),
            Value::Integer(11)
        );
        assert_eq!(exec(&mut ks, &["decrby", "n", "2"], now), Value::Integer(9));
        assert_eq!(exec(&mut ks, &["decr", "n"], now), Value::Integer(8));
        assert_eq!(
            exec(&mut ks, &["mset", "a", "1", "b", "2"], now),
            Value::ok()
        );
        assert_eq!(
            exec(&mut ks, &["mget", "a", "zz", "b"], now),
            Value::Array(vec![
                Value::Bulk("1".into()),
                Value::Null,
                Value::Bulk("2".into())
            ])
        );
        assert_eq!(
            exec(&mut ks, &["exists", "a", "a", "zz"], now),
            Value::Integer(2)
        );
        assert_eq!(
            exec(&mut ks, &["del", "a", "b", "zz"], now),
            Value::Integer(2)
        );
        assert_eq!(
            exec(&mut ks, &["expire", "n", "-1"], now),
            Value::Integer(1)
        );
        assert_eq!(exec(&mut ks, &["ttl", "n"], now), Value::Integer(-2));
    }

    #[test]
    fn routing() {
        assert_eq!(route_of(&cmd(&["GET", "k"])), Route::Key(1));
        assert_eq!(route_of(&cmd(&["GET"])), Route::Any);
        assert_eq!(route_of(&cmd(&["hello", "3"])), Route::Control);
        assert_eq!(route_of(&cmd(&["PUBLISH", "c", "m"])), Route::PubSub);
        assert_eq!(route_of(&cmd(&["PING"])), Route::Any);
        let spread: std::collections::HashSet<usize> = (0..1000)
            .map(|i| shard_of(format!("key:{i}").as_bytes(), 4))
            .collect();
        assert_eq!(spread.len(), 4, "keys spread over every shard");
    }
}
