//! A shard: the actor owning the keys that hash to it. Nothing is shared between shards; a
//! multi-key command starts on the shard of its first key, which runs its own part and
//! gathers the other shards' parts through their mailboxes (reply addresses, no locks).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sinew_actors::{Actor, Addr, Context, ReplyError, ReplyTo};
use sinew_io_actors::IncomingFor;
use sinew_protocols::resp::{Command, Resp, Value};

use super::commands::{execute, lower_name, multi_keys, shard_of};
use super::keyspace::Keyspace;

/// How often expired keys are collected, and how many at most per round.
const EXPIRE_EVERY: Duration = Duration::from_millis(100);
const EXPIRE_BUDGET: usize = 1000;

/// Messages of a shard.
pub enum ShardMsg {
    /// A client's command.
    Client(IncomingFor<Resp>),
    /// Another shard's (or the control actor's) sub-command on keys that live here.
    Part(Command, ReplyTo<Value>),
    /// A part this shard asked for came back.
    Gathered(u64, usize, Result<Value, ReplyError>),
    /// The addresses of every shard, indexed by shard number (sent once at start).
    Peers(Vec<Addr<Shard>>),
    /// Time to collect expired keys.
    ExpireTick,
}

/// A multi-key command waiting for other shards' parts.
struct Gather {
    /// Lowercase command name (decides how parts merge).
    name: &'static [u8],
    /// For MGET: the positions in the reply that each part's values fill, per part.
    positions: Vec<Vec<usize>>,
    values: Vec<Value>,
    sum: i64,
    remaining: usize,
    failed: bool,
    reply: ReplyTo<Value>,
}

/// One shard of the keyspace.
pub struct Shard {
    index: usize,
    keys: Keyspace,
    peers: Vec<Addr<Shard>>,
    gathers: HashMap<u64, Gather>,
    next_gather: u64,
    /// The clock as read once per run of messages (Redis likewise caches time per event-loop
    /// iteration): a batch of sixteen GETs costs one clock read, not sixteen.
    now: Option<Instant>,
}

impl Shard {
    /// Shard number `index`.
    pub fn new(index: usize) -> Self {
        Shard {
            index,
            keys: Keyspace::new(),
            peers: Vec::new(),
            gathers: HashMap::new(),
            next_gather: 0,
            now: None,
        }
    }

    fn now(&mut self, ctx: &Context<Self>) -> Instant {
        *self.now.get_or_insert_with(|| ctx.now())
    }

    fn client(&mut self, cmd: &Command, ctx: &mut Context<Self>) -> Option<Value> {
        let now = self.now(ctx);
        let mut buf = [0u8; 16];
        let name = lower_name(cmd, &mut buf);
        match name {
            b"ping" => {
                return Some(match cmd.len() {
                    1 => Value::simple("PONG"),
                    2 => Value::Bulk(cmd.args()[1].clone()),
                    _ => super::commands::arity_error(b"ping"),
                })
            }
            b"echo" => {
                return Some(match cmd.len() {
                    2 => Value::Bulk(cmd.args()[1].clone()),
                    _ => super::commands::arity_error(b"echo"),
                })
            }
            _ => {}
        }
        let shards = self.peers.len().max(1);
        if let Some(stride) = multi_keys(name) {
            let arity_ok = cmd.len() > stride && (cmd.len() - 1) % stride == 0;
            let remote = arity_ok
                && cmd.args()[1..]
                    .iter()
                    .step_by(stride)
                    .any(|k| shard_of(k, shards) != self.index);
            if remote {
                return None;
            }
        }
        Some(execute(&mut self.keys, name, cmd, now))
    }

    /// Splits a multi-key command by shard, runs the local part, and asks the others.
    fn scatter(&mut self, cmd: Command, reply: ReplyTo<Value>, ctx: &mut Context<Self>) {
        let mut buf = [0u8; 16];
        let name: &'static [u8] = match lower_name(&cmd, &mut buf) {
            b"del" => b"del",
            b"unlink" => b"unlink",
            b"exists" => b"exists",
            b"mget" => b"mget",
            _ => b"mset",
        };
        let stride = multi_keys(name).unwrap_or(1);
        let shards = self.peers.len().max(1);
        let mut parts: Vec<Option<(Command, Vec<usize>)>> = vec![None; shards];
        for (pos, chunk) in cmd.args()[1..].chunks_exact(stride).enumerate() {
            let s = shard_of(&chunk[0], shards);
            let part = parts[s]
                .get_or_insert_with(|| (Command::new(Bytes::from_static(name)), Vec::new()));
            for a in chunk {
                part.0.push_arg(a.clone());
            }
            part.1.push(pos);
        }
        let id = self.next_gather;
        self.next_gather += 1;
        let nkeys = (cmd.len() - 1) / stride;
        let mut gather = Gather {
            name,
            positions: vec![Vec::new(); shards],
            values: if name == b"mget" {
                vec![Value::Null; nkeys]
            } else {
                Vec::new()
            },
            sum: 0,
            remaining: 0,
            failed: false,
            reply,
        };
        let now = self.now(ctx);
        let mut local = None;
        for (s, part) in parts.into_iter().enumerate() {
            let Some((sub, positions)) = part else {
                continue;
            };
            gather.positions[s] = positions;
            if s == self.index {
                local = Some(execute(&mut self.keys, name, &sub, now));
            } else {
                gather.remaining += 1;
                let r = ctx.reply_to(move |r| ShardMsg::Gathered(id, s, r));
                // Parts bypass mailbox capacity: they are bounded by the client requests that
                // caused them, and refusing one would strand the whole command.
                if let Err(e) = self.peers[s].send_reply(ShardMsg::Part(sub, r)) {
                    drop(e);
                }
            }
        }
        if let Some(v) = local {
            merge(&mut gather, self.index, v);
        }
        if gather.remaining == 0 {
            finish(gather);
        } else {
            self.gathers.insert(id, gather);
        }
    }
}

fn merge(g: &mut Gather, shard: usize, v: Value) {
    match v {
        Value::Integer(n) => g.sum += n,
        Value::Array(items) if g.name == b"mget" => {
            for (pos, item) in g.positions[shard].iter().zip(items) {
                if let Some(slot) = g.values.get_mut(*pos) {
                    *slot = item;
                }
            }
        }
        Value::Simple(_) => {}
        _ => g.failed = true,
    }
}

fn finish(g: Gather) {
    let answer = if g.failed {
        Value::error("ERR a shard did not answer")
    } else {
        match g.name {
            b"mget" => Value::Array(g.values),
            b"mset" => Value::ok(),
            _ => Value::Integer(g.sum),
        }
    };
    g.reply.send(answer);
}

impl Actor for Shard {
    type Msg = ShardMsg;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.send_interval(EXPIRE_EVERY, || ShardMsg::ExpireTick);
    }

    fn handled_batch(&mut self, _ctx: &mut Context<Self>) {
        self.now = None;
    }

    fn handle(&mut self, msg: ShardMsg, ctx: &mut Context<Self>) {
        match msg {
            ShardMsg::Client(inc) => match self.client(&inc.request, ctx) {
                Some(v) => {
                    inc.reply.send(v);
                }
                None => self.scatter(inc.request, inc.reply, ctx),
            },
            ShardMsg::Part(cmd, reply) => {
                let now = self.now(ctx);
                let mut buf = [0u8; 16];
                let name = lower_name(&cmd, &mut buf);
                let v = match name {
                    b"dbsize" => Value::Integer(self.keys.len() as i64),
                    b"flushall" => {
                        self.keys.clear();
                        Value::ok()
                    }
                    _ => execute(&mut self.keys, name, &cmd, now),
                };
                reply.send(v);
            }
            ShardMsg::Gathered(id, shard, result) => {
                let Some(g) = self.gathers.get_mut(&id) else {
                    return;
                };
                match result {
                    Ok(v) => merge(g, shard, v),
                    Err(_) => g.failed = true,
                }
                g.remaining -= 1;
                if g.remaining == 0 {
                    if let Some(g) = self.gathers.remove(&id) {
                        finish(g);
                    }
                }
            }
            ShardMsg::Peers(peers) => self.peers = peers,
            ShardMsg::ExpireTick => {
                let now = self.now(ctx);
                self.keys.expire_due(now, EXPIRE_BUDGET);
            }
        }
    }
}
