//! A typed Redis client over RESP client connections.
//!
//! Many callers share few connections: each connection pipelines every caller's command and
//! answers them from its FIFO of reply addresses, so concurrency comes from pipelining rather
//! than from more sockets. Commands go round-robin over the client's connections, or through a
//! [`Pool`] (breaker, reconnects, retries) with [`RedisClient::pooled`].
//!
//! Pub/sub needs a connection of its own ([`RedisClient::subscriber`]): its deliveries arrive
//! at a recipient you choose, and [`Message::from_push`] reads them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sinew_actors::{
    Addr, Placement, Recipient, ReplyError, ReplyTo, SendError, SpawnError, SpawnOptions,
    SystemHandle,
};
use sinew_protocols::protocol::ProtocolTimeouts;
use sinew_protocols::resp::{Command, Resp, Value};

use crate::client::{ClientConn, ClientError, ClientMsg};
use crate::pool::{Pool, PoolError, PoolMsg};

/// Why a Redis call failed.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum RedisError {
    /// The server answered with an error reply (`-ERR ...`); the connection is fine.
    #[error("server error: {0}")]
    Server(String),
    /// The connection failed, timed out or refused the command.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The pool refused or failed the call.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The reply had an unexpected shape for the typed call.
    #[error("unexpected reply: {0}")]
    UnexpectedReply(String),
    /// The connection actor is gone or full.
    #[error("client unavailable: {0}")]
    Unavailable(&'static str),
}

impl RedisError {
    /// True when the same call may succeed later (connection trouble, timeouts, an open
    /// circuit); false for answers the server gave on purpose.
    pub fn is_transient(&self) -> bool {
        match self {
            RedisError::Client(e) => e.is_transient(),
            RedisError::Pool(e) => e.is_transient(),
            RedisError::Unavailable(_) => true,
            RedisError::Server(_) | RedisError::UnexpectedReply(_) => false,
        }
    }
}

/// A call's raw answer, as a reply address receives it.
pub type RedisResult = Result<Value, RedisError>;

/// Client settings.
#[derive(Debug, Clone)]
pub struct RedisClientConfig {
    /// Connections opened (callers are spread over them round-robin).
    pub connections: usize,
    /// Workers the connections live on, round-robin; empty means the caller's choice of the
    /// system's default placement.
    pub workers: Vec<usize>,
    /// RESP settings: protocol version to negotiate (HELLO 3), limits.
    pub resp: Resp,
    /// Connect timeout.
    pub connect_timeout: Option<Duration>,
    /// Response timeout (fails every call in flight on that connection, which then closes).
    pub response_timeout: Option<Duration>,
}

impl Default for RedisClientConfig {
    fn default() -> Self {
        RedisClientConfig {
            connections: 1,
            workers: Vec::new(),
            resp: Resp::default(),
            connect_timeout: Some(Duration::from_secs(5)),
            response_timeout: Some(Duration::from_secs(30)),
        }
    }
}

impl RedisClientConfig {
    fn protocol(&self) -> Resp {
        let mut resp = self.resp;
        resp.timeouts = ProtocolTimeouts {
            request_read: self.connect_timeout,
            response: self.response_timeout,
            ..resp.timeouts
        };
        resp
    }
}

#[derive(Clone)]
enum Via {
    Conns(Arc<[Addr<ClientConn<Resp>>]>),
    Pool(Addr<Pool<Resp>>),
}

/// A Redis client: typed commands over pipelined connections. Cheap to clone; clones share
/// the connections.
#[derive(Clone)]
pub struct RedisClient {
    via: Via,
    next: Arc<AtomicUsize>,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let via = match &self.via {
            Via::Conns(c) => format!("{} connections", c.len()),
            Via::Pool(_) => "pool".into(),
        };
        f.debug_struct("RedisClient").field("via", &via).finish()
    }
}

fn spawn_conn(
    system: &SystemHandle,
    conn: ClientConn<Resp>,
    config: &RedisClientConfig,
    i: usize,
) -> Result<Addr<ClientConn<Resp>>, SpawnError> {
    match config.workers.get(i % config.workers.len().max(1)) {
        Some(&w) => system.spawn_with(
            conn,
            SpawnOptions::default().placement(Placement::Worker(w)),
        ),
        None => system.spawn(conn),
    }
}

impl RedisClient {
    /// Opens `config.connections` connections to `addr` (on workers with an I/O driver).
    pub fn connect(
        system: &SystemHandle,
        addr: SocketAddr,
        config: RedisClientConfig,
    ) -> Result<RedisClient, SpawnError> {
        let conns = (0..config.connections.max(1))
            .map(|i| spawn_conn(system, ClientConn::new(config.protocol(), addr), &config, i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RedisClient {
            via: Via::Conns(conns.into()),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Calls through a pool of RESP connections (breaker, reconnects, retries).
    pub fn pooled(pool: Addr<Pool<Resp>>) -> RedisClient {
        RedisClient {
            via: Via::Pool(pool),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Opens a dedicated pub/sub connection whose deliveries (`Value::Push` frames, RESP2 or
    /// RESP3) go to `pushes`. Send SUBSCRIBE / PSUBSCRIBE through the returned client.
    pub fn subscriber(
        system: &SystemHandle,
        addr: SocketAddr,
        config: RedisClientConfig,
        pushes: Recipient<Value>,
    ) -> Result<RedisClient, SpawnError> {
        let conn = ClientConn::new(config.protocol(), addr).with_pushes(pushes);
        let conn = spawn_conn(system, conn, &config, 0)?;
        Ok(RedisClient {
            via: Via::Conns(vec![conn].into()),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Sends `cmd`; the raw answer (server errors included, as `Err(Server)`) goes to
    /// `reply`. The actor-friendly form: no future, the answer arrives as a message.
    pub fn call(&self, cmd: Command, reply: ReplyTo<RedisResult>) {
        match &self.via {
            Via::Conns(conns) => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % conns.len();
                let call = ReplyTo::from_fn(move |r: Result<Result<Value, ClientError>, _>| {
                    reply.send(flatten(r.map(|r| r.map_err(RedisError::from))));
                });
                if let Err(e) = conns[i].try_send(ClientMsg::Call(cmd, call)) {
                    if let ClientMsg::Call(_, call) = unsent(e) {
                        call.send(Err(ClientError::Connection(
                            "client connection unavailable".into(),
                        )));
                    }
                }
            }
            Via::Pool(pool) => {
                let call = ReplyTo::from_fn(move |r: Result<Result<Value, PoolError>, _>| {
                    reply.send(flatten(r.map(|r| r.map_err(RedisError::from))));
                });
                if let Err(e) = pool.try_send(PoolMsg::Call(cmd, call)) {
                    if let PoolMsg::Call(_, call) = unsent(e) {
                        call.send(Err(PoolError::Saturated));
                    }
                }
            }
        }
    }

    /// Sends `cmd` and waits for the raw answer.
    pub async fn cmd(&self, cmd: Command) -> RedisResult {
        let (reply, answer) = ReplyTo::channel();
        self.call(cmd, reply);
        flatten(answer.await)
    }

    /// `GET key`.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>, RedisError> {
        match self.cmd(Command::new("GET").arg(key)).await? {
            Value::Null => Ok(None),
            Value::Bulk(b) => Ok(Some(b)),
            other => Err(unexpected(&other)),
        }
    }

    /// `SET key value`.
    pub async fn set(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), RedisError> {
        ok(self.cmd(Command::new("SET").arg(key).arg(value)).await?)
    }

    /// `SET key value PX ttl`.
    pub async fn set_ex(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        ttl: Duration,
    ) -> Result<(), RedisError> {
        let ms = ttl.as_millis().max(1).to_string();
        ok(self
            .cmd(Command::new("SET").arg(key).arg(value).arg("PX").arg(ms))
            .await?)
    }

    /// `DEL key...`: how many existed.
    pub async fn del<K: Into<Bytes>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<i64, RedisError> {
        int(self.cmd(with_args(Command::new("DEL"), keys)).await?)
    }

    /// `EXISTS key...`: how many exist.
    pub async fn exists<K: Into<Bytes>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<i64, RedisError> {
        int(self.cmd(with_args(Command::new("EXISTS"), keys)).await?)
    }

    /// `INCRBY key by`.
    pub async fn incr_by(&self, key: impl Into<Bytes>, by: i64) -> Result<i64, RedisError> {
        int(self
            .cmd(Command::new("INCRBY").arg(key).arg(by.to_string()))
            .await?)
    }

    /// `MGET key...`.
    pub async fn mget<K: Into<Bytes>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Option<Bytes>>, RedisError> {
        match self.cmd(with_args(Command::new("MGET"), keys)).await? {
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::Null => Ok(None),
                    Value::Bulk(b) => Ok(Some(b)),
                    other => Err(unexpected(&other)),
                })
                .collect(),
            other => Err(unexpected(&other)),
        }
    }

    /// `MSET key value ...`.
    pub async fn mset<K: Into<Bytes>, V: Into<Bytes>>(
        &self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), RedisError> {
        let mut cmd = Command::new("MSET");
        for (k, v) in pairs {
            cmd = cmd.arg(k).arg(v);
        }
        ok(self.cmd(cmd).await?)
    }

    /// `PEXPIRE key ttl`: whether the key exists.
    pub async fn expire(&self, key: impl Into<Bytes>, ttl: Duration) -> Result<bool, RedisError> {
        let ms = ttl.as_millis().to_string();
        Ok(int(self.cmd(Command::new("PEXPIRE").arg(key).arg(ms)).await?)? == 1)
    }

    /// `PTTL key`: `None` for a missing key, `Some(None)` for one without expiry.
    pub async fn ttl(&self, key: impl Into<Bytes>) -> Result<Option<Option<Duration>>, RedisError> {
        Ok(match int(self.cmd(Command::new("PTTL").arg(key)).await?)? {
            -2 => None,
            -1 => Some(None),
            ms => Some(Some(Duration::from_millis(ms.max(0) as u64))),
        })
    }

    /// `PUBLISH channel message`: how many subscribers received it.
    pub async fn publish(
        &self,
        channel: impl Into<Bytes>,
        message: impl Into<Bytes>,
    ) -> Result<i64, RedisError> {
        int(self
            .cmd(Command::new("PUBLISH").arg(channel).arg(message))
            .await?)
    }

    /// `SUBSCRIBE channel...` on a [`RedisClient::subscriber`]: the first confirmation; the
    /// others arrive as pushes.
    pub async fn subscribe<K: Into<Bytes>>(
        &self,
        channels: impl IntoIterator<Item = K>,
    ) -> Result<Value, RedisError> {
        self.cmd(with_args(Command::new("SUBSCRIBE"), channels))
            .await
    }

    /// `PSUBSCRIBE pattern...` on a [`RedisClient::subscriber`].
    pub async fn psubscribe<K: Into<Bytes>>(
        &self,
        patterns: impl IntoIterator<Item = K>,
    ) -> Result<Value, RedisError> {
        self.cmd(with_args(Command::new("PSUBSCRIBE"), patterns))
            .await
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), RedisError> {
        match self.cmd(Command::new("PING")).await? {
            Value::Simple(s) if &s[..] == b"PONG" => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

/// A pub/sub delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The pattern that matched, for PSUBSCRIBE deliveries.
    pub pattern: Option<Bytes>,
    /// The channel it was published on.
    pub channel: Bytes,
    /// The payload.
    pub payload: Bytes,
}

impl Message {
    /// Reads a `message` or `pmessage` push; `None` for anything else (confirmations).
    pub fn from_push(v: &Value) -> Option<Message> {
        let items = match v {
            Value::Push(items) | Value::Array(items) => items,
            _ => return None,
        };
        let text = |i: usize| match items.get(i) {
            Some(Value::Bulk(b)) | Some(Value::Simple(b)) => Some(b.clone()),
            _ => None,
        };
        let kind = text(0)?;
        match (&kind[..], items.len()) {
            (b"message", 3) => Some(Message {
                pattern: None,
                channel: text(1)?,
                payload: text(2)?,
            }),
            (b"pmessage", 4) => Some(Message {
                pattern: Some(text(1)?),
                channel: text(2)?,
                payload: text(3)?,
            }),
            _ => None,
        }
    }
}

fn unsent<M>(e: SendError<M>) -> M {
    match e {
        SendError::Full(m) | SendError::Closed(m) => m,
    }
}

fn flatten(r: Result<RedisResult, ReplyError>) -> RedisResult {
    match r {
        Ok(Ok(Value::Error(e))) => {
            Err(RedisError::Server(String::from_utf8_lossy(&e).into_owned()))
        }
        Ok(other) => other,
        Err(ReplyError::Timeout) => Err(RedisError::Client(ClientError::Timeout)),
        Err(_) => Err(RedisError::Unavailable("the connection dropped the call")),
    }
}

fn with_args<K: Into<Bytes>>(mut cmd: Command, args: impl IntoIterator<Item = K>) -> Command {
    for a in args {
        cmd = cmd.arg(a);
    }
    cmd
}

fn unexpected(v: &Value) -> RedisError {
    RedisError::UnexpectedReply(format!("{v:?}"))
}

fn ok(v: Value) -> Result<(), RedisError> {
    match v {
        Value::Simple(_) => Ok(()),
        other => Err(unexpected(&other)),
    }
}

fn int(v: Value) -> Result<i64, RedisError> {
    match v {
        Value::Integer(n) => Ok(n),
        other => Err(unexpected(&other)),
    }
}
