//! Connection and server commands: HELLO, CLIENT, SELECT, INFO, COMMAND, CONFIG, DBSIZE,
//! FLUSHALL. Per-connection state (client names) is keyed by the connection's identity, which
//! the RESP server hands over with these commands; keyspace-wide commands ask every shard.

use std::collections::HashMap;

use bytes::Bytes;
use sinew_actors::{Actor, ActorId, Addr, Context, ReplyError, ReplyTo};
use sinew_io_actors::{IncomingFor, Pusher};
use sinew_protocols::resp::{Command, Resp, Value};

use super::commands::{arity_error, lower_name, unknown_command};
use super::shard::{Shard, ShardMsg};

/// The version string reported by HELLO and INFO: the Redis feature level implemented.
const REDIS_VERSION: &str = "7.0.0";

/// Commands COMMAND reports: name, arity (negative: at least), first key, last key, step.
const TABLE: &[(&str, i64, i64, i64, i64)] = &[
    ("get", 2, 1, 1, 1),
    ("set", -3, 1, 1, 1),
    ("setnx", 3, 1, 1, 1),
    ("setex", 4, 1, 1, 1),
    ("psetex", 4, 1, 1, 1),
    ("getset", 3, 1, 1, 1),
    ("getdel", 2, 1, 1, 1),
    ("append", 3, 1, 1, 1),
    ("strlen", 2, 1, 1, 1),
    ("type", 2, 1, 1, 1),
    ("del", -2, 1, -1, 1),
    ("unlink", -2, 1, -1, 1),
    ("exists", -2, 1, -1, 1),
    ("incr", 2, 1, 1, 1),
    ("decr", 2, 1, 1, 1),
    ("incrby", 3, 1, 1, 1),
    ("decrby", 3, 1, 1, 1),
    ("mget", -2, 1, -1, 1),
    ("mset", -3, 1, -1, 2),
    ("expire", -3, 1, 1, 1),
    ("pexpire", -3, 1, 1, 1),
    ("ttl", 2, 1, 1, 1),
    ("pttl", 2, 1, 1, 1),
    ("persist", 2, 1, 1, 1),
    ("ping", -1, 0, 0, 0),
    ("echo", 2, 0, 0, 0),
    ("hello", -1, 0, 0, 0),
    ("select", 2, 0, 0, 0),
    ("dbsize", 1, 0, 0, 0),
    ("flushall", -1, 0, 0, 0),
    ("flushdb", -1, 0, 0, 0),
    ("info", -1, 0, 0, 0),
    ("command", -1, 0, 0, 0),
    ("config", -2, 0, 0, 0),
    ("client", -2, 0, 0, 0),
    ("subscribe", -2, 0, 0, 0),
    ("unsubscribe", -1, 0, 0, 0),
    ("psubscribe", -2, 0, 0, 0),
    ("punsubscribe", -1, 0, 0, 0),
    ("publish", 3, 0, 0, 0),
    ("quit", -1, 0, 0, 0),
];

/// Messages of the control actor.
pub enum ControlMsg {
    /// A client's command.
    Client(IncomingFor<Resp>),
    /// A shard answered a keyspace-wide request.
    Part(u64, Result<Value, ReplyError>),
}

struct Fanout {
    sum: i64,
    remaining: usize,
    failed: bool,
    /// DBSIZE sums; FLUSHALL answers +OK.
    count: bool,
    reply: ReplyTo<Value>,
}

/// The control actor.
pub struct Control {
    shards: Vec<Addr<Shard>>,
    names: HashMap<ActorId, (Pusher<Value>, Bytes)>,
    fanouts: HashMap<u64, Fanout>,
    next: u64,
}

impl Control {
    /// Control over `shards`.
    pub fn new(shards: Vec<Addr<Shard>>) -> Self {
        Control {
            shards,
            names: HashMap::new(),
            fanouts: HashMap::new(),
            next: 0,
        }
    }

    fn fan_out(
        &mut self,
        op: &'static [u8],
        count: bool,
        reply: ReplyTo<Value>,
        ctx: &mut Context<Self>,
    ) {
        let id = self.next;
        self.next += 1;
        for shard in &self.shards {
            let r = ctx.reply_to(move |r| ControlMsg::Part(id, r));
            let _ = shard.send_reply(ShardMsg::Part(Command::new(Bytes::from_static(op)), r));
        }
        self.fanouts.insert(
            id,
            Fanout {
                sum: 0,
                remaining: self.shards.len(),
                failed: false,
                count,
                reply,
            },
        );
    }

    fn hello(&mut self, cmd: &Command, conn: Option<&Pusher<Value>>) -> Value {
        let mut proto = 2;
        let mut i = 1;
        if let Some(v) = cmd.get(1) {
            match std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            {
                Some(p @ 2..=3) => proto = p,
                Some(_) => return Value::error("NOPROTO unsupported protocol version"),
                None => {
                    return Value::error("ERR Protocol version is not an integer or out of range")
                }
            }
            i = 2;
        }
        while i < cmd.len() {
            let opt = cmd.args()[i].to_ascii_lowercase();
            match &opt[..] {
                // No password is configured: the default user accepts any.
                b"auth" if i + 2 < cmd.len() => i += 3,
                b"setname" if i + 1 < cmd.len() => {
                    if let Err(e) = self.set_name(conn, cmd.args()[i + 1].clone()) {
                        return e;
                    }
                    i += 2;
                }
                _ => {
                    return Value::error(format!(
                        "ERR Syntax error in HELLO option '{}'",
                        String::from_utf8_lossy(&opt)
                    ))
                }
            }
        }
        let id = conn.map_or(0, |c| c.connection().as_u64() as i64);
        Value::Map(vec![
            (Value::bulk("server"), Value::bulk("redis")),
            (Value::bulk("version"), Value::bulk(REDIS_VERSION)),
            (Value::bulk("proto"), Value::Integer(proto)),
            (Value::bulk("id"), Value::Integer(id)),
            (Value::bulk("mode"), Value::bulk("standalone")),
            (Value::bulk("role"), Value::bulk("master")),
            (Value::bulk("modules"), Value::Array(Vec::new())),
        ])
    }

    fn set_name(&mut self, conn: Option<&Pusher<Value>>, name: Bytes) -> Result<(), Value> {
        if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
            return Err(Value::error(
                "ERR Client names cannot contain spaces, newlines or special characters.",
            ));
        }
        let Some(conn) = conn else {
            return Ok(());
        };
        // Forget names of closed connections once they could dominate the map.
        if self.names.len() >= 1024 && self.names.len().is_power_of_two() {
            self.names.retain(|_, (p, _)| p.is_alive());
        }
        if name.is_empty() {
            self.names.remove(&conn.connection());
        } else {
            self.names.insert(conn.connection(), (conn.clone(), name));
        }
        Ok(())
    }

    fn client(&mut self, cmd: &Command, conn: Option<&Pusher<Value>>) -> Value {
        let Some(sub) = cmd.get(1).map(|s| s.to_ascii_lowercase()) else {
            return arity_error(b"client");
        };
        match (&sub[..], cmd.len()) {
            (b"setname", 3) => match self.set_name(conn, cmd.args()[2].clone()) {
                Ok(()) => Value::ok(),
                Err(e) => e,
            },
            (b"getname", 2) => conn
                .and_then(|c| self.names.get(&c.connection()))
                .map_or(Value::Null, |(_, n)| Value::Bulk(n.clone())),
            (b"id", 2) => Value::Integer(conn.map_or(0, |c| c.connection().as_u64() as i64)),
            (b"setinfo", 4) => Value::ok(),
            _ => Value::error(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
                String::from_utf8_lossy(&sub)
            )),
        }
    }

    fn command_info(name: &str, arity: i64, first: i64, last: i64, step: i64) -> Value {
        Value::Array(vec![
            Value::bulk(name.to_string()),
            Value::Integer(arity),
            Value::Set(Vec::new()),
            Value::Integer(first),
            Value::Integer(last),
            Value::Integer(step),
        ])
    }

    fn command(cmd: &Command) -> Value {
        let sub = cmd.get(1).map(|s| s.to_ascii_lowercase());
        match sub.as_deref() {
            None => Value::Array(
                TABLE
                    .iter()
                    .map(|&(n, a, f, l, s)| Self::command_info(n, a, f, l, s))
                    .collect(),
            ),
            Some(b"count") => Value::Integer(TABLE.len() as i64),
            // redis-cli asks for docs to offer hints; having none is a valid answer.
            Some(b"docs") => Value::Map(Vec::new()),
            Some(b"info") => Value::Array(
                cmd.args()[2..]
                    .iter()
                    .map(|want| {
                        let want = want.to_ascii_lowercase();
                        TABLE
                            .iter()
                            .find(|(n, ..)| n.as_bytes() == &want[..])
                            .map_or(Value::Null, |&(n, a, f, l, s)| {
                                Self::command_info(n, a, f, l, s)
                            })
                    })
                    .collect(),
            ),
            Some(other) => Value::error(format!(
                "ERR unknown subcommand '{}'. Try COMMAND HELP.",
                String::from_utf8_lossy(other)
            )),
        }
    }

    fn info(&self) -> Value {
        let text = format!(
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\n\
             sinew_shards:{}\r\n\r\n# Clients\r\nnamed_clients:{}\r\n",
            self.shards.len(),
            self.names.len()
        );
        Value::Bulk(Bytes::from(text))
    }

    fn config(cmd: &Command) -> Value {
        let sub = cmd.get(1).map(|s| s.to_ascii_lowercase());
        match sub.as_deref() {
            // Benchmarks and tools ask for persistence settings: there is no persistence.
            Some(b"get") if cmd.len() >= 3 => {
                let mut out = Vec::new();
                for p in &cmd.args()[2..] {
                    let p = p.to_ascii_lowercase();
                    let v = match &p[..] {
                        b"save" => "",
                        b"appendonly" => "no",
                        b"databases" => "1",
                        _ => continue,
                    };
                    out.push(Value::Bulk(Bytes::from(p)));
                    out.push(Value::bulk(v));
                }
                Value::Array(out)
            }
            Some(b"resetstat") => Value::ok(),
            _ => Value::error("ERR CONFIG subcommand not supported"),
        }
    }
}

impl Actor for Control {
    type Msg = ControlMsg;

    fn handle(&mut self, msg: ControlMsg, ctx: &mut Context<Self>) {
        match msg {
            ControlMsg::Client(inc) => {
                let cmd = &inc.request;
                let mut buf = [0u8; 16];
                let name = lower_name(cmd, &mut buf);
                let conn = inc.push.as_ref();
                let answer = match name {
                    b"hello" => self.hello(cmd, conn),
                    b"client" => self.client(cmd, conn),
                    b"select" if cmd.len() == 2 => match &cmd.args()[1][..] {
                        b"0" => Value::ok(),
                        _ => Value::error("ERR DB index is out of range"),
                    },
                    b"info" => self.info(),
                    b"command" => Self::command(cmd),
                    b"config" => Self::config(cmd),
                    b"quit" | b"reset" => Value::ok(),
                    b"dbsize" if cmd.len() == 1 => {
                        return self.fan_out(b"dbsize", true, inc.reply, ctx);
                    }
                    b"flushall" | b"flushdb" => {
                        return self.fan_out(b"flushall", false, inc.reply, ctx);
                    }
                    b"select" | b"dbsize" => arity_error(name),
                    _ => unknown_command(cmd),
                };
                inc.reply.send(answer);
            }
            ControlMsg::Part(id, result) => {
                let Some(f) = self.fanouts.get_mut(&id) else {
                    return;
                };
                match result {
                    Ok(Value::Integer(n)) => f.sum += n,
                    Ok(_) => {}
                    Err(_) => f.failed = true,
                }
                f.remaining -= 1;
                if f.remaining == 0 {
                    if let Some(f) = self.fanouts.remove(&id) {
                        f.reply.send(match (f.failed, f.count) {
                            (true, _) => Value::error("ERR a shard did not answer"),
                            (false, true) => Value::Integer(f.sum),
                            (false, false) => Value::ok(),
                        });
                    }
                }
            }
        }
    }
}
