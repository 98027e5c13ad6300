//! Pub/sub: one hub actor holding channel and pattern subscriptions, keyed by the subscribing
//! connection. Deliveries go straight to each subscriber's connection through its push
//! handle; a subscriber that cannot keep up is disconnected, as Redis does past its pub/sub
//! output limit, so one slow reader never holds up a publisher.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use sinew_actors::{Actor, ActorId, Context};
use sinew_io_actors::{IncomingFor, PushError, Pusher};
use sinew_protocols::resp::{Command, Resp, Value};

use super::commands::{arity_error, lower_name, unknown_command};

/// How often subscriptions of closed connections are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Messages of the hub.
pub enum HubMsg {
    /// A client's pub/sub command.
    Client(IncomingFor<Resp>),
    /// Time to forget closed subscribers.
    Sweep,
}

struct Subscriber {
    pusher: Pusher<Value>,
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
}

impl Subscriber {
    fn count(&self) -> i64 {
        (self.channels.len() + self.patterns.len()) as i64
    }
}

/// The pub/sub hub.
#[derive(Default)]
pub struct Hub {
    subscribers: HashMap<ActorId, Subscriber>,
    channels: HashMap<Bytes, BTreeSet<ActorId>>,
    patterns: HashMap<Bytes, BTreeSet<ActorId>>,
}

fn confirmation(kind: &'static str, name: Option<Bytes>, count: i64) -> Value {
    Value::Push(vec![
        Value::Bulk(Bytes::from_static(kind.as_bytes())),
        name.map_or(Value::Null, Value::Bulk),
        Value::Integer(count),
    ])
}

impl Hub {
    fn subscribe(&mut self, cmd: &Command, pusher: Pusher<Value>, pattern: bool) -> Value {
        let id = pusher.connection();
        let sub = self.subscribers.entry(id).or_insert_with(|| Subscriber {
            pusher,
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
        });
        let (index, kind) = if pattern {
            (&mut self.patterns, "psubscribe")
        } else {
            (&mut self.channels, "subscribe")
        };
        let mut frames = Vec::with_capacity(cmd.len() - 1);
        for name in &cmd.args()[1..] {
            let mine = if pattern {
                &mut sub.patterns
            } else {
                &mut sub.channels
            };
            mine.insert(name.clone());
            index.entry(name.clone()).or_default().insert(id);
            frames.push(confirmation(kind, Some(name.clone()), sub.count()));
        }
        Value::Frames(frames)
    }

    fn unsubscribe(&mut self, cmd: &Command, conn: ActorId, pattern: bool) -> Value {
        let kind = if pattern {
            "punsubscribe"
        } else {
            "unsubscribe"
        };
        let Some(sub) = self.subscribers.get_mut(&conn) else {
            return Value::Frames(vec![confirmation(kind, None, 0)]);
        };
        let names: Vec<Bytes> = match (cmd.len() > 1, pattern) {
            (true, _) => cmd.args()[1..].to_vec(),
            (false, true) => sub.patterns.iter().cloned().collect(),
            (false, false) => sub.channels.iter().cloned().collect(),
        };
        let index = if pattern {
            &mut self.patterns
        } else {
            &mut self.channels
        };
        let mut frames = Vec::with_capacity(names.len().max(1));
        for name in names {
            if pattern {
                sub.patterns.remove(&name);
            } else {
                sub.channels.remove(&name);
            }
            if let Some(set) = index.get_mut(&name) {
                set.remove(&conn);
                if set.is_empty() {
                    index.remove(&name);
                }
            }
            frames.push(confirmation(kind, Some(name), sub.count()));
        }
        if frames.is_empty() {
            frames.push(confirmation(kind, None, sub.count()));
        }
        if sub.count() == 0 {
            self.subscribers.remove(&conn);
        }
        Value::Frames(frames)
    }

    fn publish(&mut self, channel: &Bytes, message: &Bytes) -> i64 {
        let mut targets: Vec<(ActorId, Value)> = Vec::new();
        if let Some(ids) = self.channels.get(channel) {
            for id in ids {
                targets.push((
                    *id,
                    Value::Push(vec![
                        Value::Bulk(Bytes::from_static(b"message")),
                        Value::Bulk(channel.clone()),
                        Value::Bulk(message.clone()),
                    ]),
                ));
            }
        }
        for (pattern, ids) in &self.patterns {
            if glob_match(pattern, channel) {
                for id in ids {
                    targets.push((
                        *id,
                        Value::Push(vec![
                            Value::Bulk(Bytes::from_static(b"pmessage")),
                            Value::Bulk(pattern.clone()),
                            Value::Bulk(channel.clone()),
                            Value::Bulk(message.clone()),
                        ]),
                    ));
                }
            }
        }
        let mut delivered = 0;
        let mut gone = Vec::new();
        for (id, push) in targets {
            let Some(sub) = self.subscribers.get(&id) else {
                continue;
            };
            match sub.pusher.push(push) {
                Ok(()) => delivered += 1,
                Err(PushError::Full) => {
                    tracing::warn!(?id, "disconnecting a subscriber that is not keeping up");
                    sub.pusher.disconnect();
                    gone.push(id);
                }
                Err(PushError::Closed) => gone.push(id),
            }
        }
        for id in gone {
            self.forget(id);
        }
        delivered
    }

    fn forget(&mut self, id: ActorId) {
        let Some(sub) = self.subscribers.remove(&id) else {
            return;
        };
        for (names, index) in [
            (&sub.channels, &mut self.channels),
            (&sub.patterns, &mut self.patterns),
        ] {
            for name in names {
                if let Some(set) = index.get_mut(name) {
                    set.remove(&id);
                    if set.is_empty() {
                        index.remove(name);
                    }
                }
            }
        }
    }

    // Kept boxed: the message arrives boxed, and unboxing it would only copy it.
    #[allow(clippy::boxed_local)]
    fn command(&mut self, inc: IncomingFor<Resp>) {
        let cmd = &inc.request;
        let mut buf = [0u8; 16];
        let name = lower_name(cmd, &mut buf);
        let answer = match (name, inc.push) {
            (b"publish", _) if cmd.len() == 3 => {
                Value::Integer(self.publish(&cmd.args()[1], &cmd.args()[2]))
            }
            (b"subscribe" | b"psubscribe", Some(p)) if cmd.len() >= 2 => {
                self.subscribe(cmd, p, name == b"psubscribe")
            }
            (b"unsubscribe" | b"punsubscribe", Some(p)) => {
                self.unsubscribe(cmd, p.connection(), name == b"punsubscribe")
            }
            (b"publish" | b"subscribe" | b"psubscribe", _) => arity_error(name),
            _ => unknown_command(cmd),
        };
        inc.reply.send(answer);
    }
}

impl Actor for Hub {
    type Msg = HubMsg;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.send_interval(SWEEP_EVERY, || HubMsg::Sweep);
    }

    fn handle(&mut self, msg: HubMsg, _ctx: &mut Context<Self>) {
        match msg {
            HubMsg::Client(inc) => self.command(inc),
            HubMsg::Sweep => {
                let dead: Vec<ActorId> = self
                    .subscribers
                    .iter()
                    .filter(|(_, s)| !s.pusher.is_alive())
                    .map(|(id, _)| *id)
                    .collect();
                for id in dead {
                    self.forget(id);
                }
            }
        }
    }
}

/// Redis's glob: `*`, `?`, `[abc]`, `[^a-z]`, and `\` escapes. Iterative with one backtrack
/// point, so a hostile pattern costs O(pattern × subject), never exponential time.
pub fn glob_match(pattern: &[u8], subject: &[u8]) -> bool {
    let (mut p, mut s) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while s < subject.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, s));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    s += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pattern, p, subject[s]) {
                        if matched {
                            p = next;
                            s += 1;
                            continue;
                        }
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == subject[s] {
                        p += 2;
                        s += 1;
                        continue;
                    }
                }
                c => {
                    if c == subject[s] {
                        p += 1;
                        s += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, ss)) => {
                p = sp + 1;
                s = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[start] == '['`; returns whether it
/// matched and the index after the class, or `None` for an unterminated class.
fn class_match(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (lo, hi) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    if i >= pattern.len() {
        return None;
    }
    Some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_like_redis() {
        let cases: &[(&str, &str, bool)] = &[
            ("news.*", "news.tech", true),
            ("news.*", "sport.tech", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("\\*x", "*x", true),
            ("\\*x", "ax", false),
            ("[abc", "a", false),
        ];
        for (p, s, want) in cases {
            assert_eq!(glob_match(p.as_bytes(), s.as_bytes()), *want, "{p} vs {s}");
        }
    }

    #[test]
    fn hostile_patterns_stay_linear() {
        let pattern = "*a".repeat(1000) + "b";
        let subject = "a".repeat(5000);
        // One backtrack point: this finishes in O(pattern x subject) steps; a naive
        // recursive matcher would not return in our lifetime.
        assert!(!glob_match(pattern.as_bytes(), subject.as_bytes()));
    }
}
