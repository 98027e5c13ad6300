//! The RESP client against a real redis-server 7 started by the test: typed commands, many
//! callers pipelined over one connection, RESP3 negotiation, pub/sub, pooling, and timeouts.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use futures::executor::block_on;
use sinew::io_actors::{
    io_driver, Message, Pool, PoolConfig, RedisClient, RedisClientConfig, RedisError,
};
use sinew::prelude::*;
use sinew::protocols::resp::{Command, Resp, RespVersion, Value};
use sinew::transports::Backend;
use support::RealRedis;

fn system() -> System {
    System::builder()
        .workers(2)
        .try_driver(io_driver(Backend::Auto))
        .build()
        .expect("system")
}

fn client(system: &System, addr: SocketAddr, config: RedisClientConfig) -> RedisClient {
    RedisClient::connect(&system.handle(), addr, config).expect("client")
}

#[test]
fn typed_commands_against_redis_server() {
    let redis = RealRedis::start();
    let system = system();
    let c = client(&system, redis.addr, RedisClientConfig::default());
    block_on(async {
        c.ping().await.unwrap();
        c.set("k", "v").await.unwrap();
        assert_eq!(c.get("k").await.unwrap(), Some(Bytes::from("v")));
        assert_eq!(c.get("missing").await.unwrap(), None);
        c.mset([("a", "1"), ("b", "2")]).await.unwrap();
        assert_eq!(
            c.mget(["a", "zz", "b"]).await.unwrap(),
            vec![Some(Bytes::from("1")), None, Some(Bytes::from("2"))]
        );
        assert_eq!(c.incr_by("n", 5).await.unwrap(), 5);
        assert_eq!(c.exists(["a", "b", "zz"]).await.unwrap(), 2);
        assert_eq!(c.del(["a", "zz"]).await.unwrap(), 1);
        c.set_ex("t", "x", Duration::from_secs(100)).await.unwrap();
        let ttl = c.ttl("t").await.unwrap().flatten().expect("has a ttl");
        assert!(ttl > Duration::from_secs(90) && ttl <= Duration::from_secs(100));
        assert_eq!(c.ttl("k").await.unwrap(), Some(None));
        assert_eq!(c.ttl("zz").await.unwrap(), None);
        // A server error is an error the caller sees, and the connection carries on.
        let err = c.incr_by("k", 1).await.unwrap_err();
        assert!(
            matches!(&err, RedisError::Server(m) if m.starts_with("ERR value is not an integer")),
            "{err:?}"
        );
        assert!(!err.is_transient());
        c.ping().await.unwrap();
    });
    system.shutdown(Duration::from_secs(5));
}

/// Many concurrent callers over one connection: every caller gets its own answer.
#[test]
fn many_callers_pipeline_over_one_connection() {
    let redis = RealRedis::start();
    let system = system();
    let c = client(&system, redis.addr, RedisClientConfig::default());
    let (tx, rx) = mpsc::channel();
    const CALLERS: usize = 16;
    const EACH: usize = 200;
    for t in 0..CALLERS {
        let (c, tx) = (c.clone(), tx.clone());
        std::thread::spawn(move || {
            let r = block_on(async {
                for i in 0..EACH {
                    let key = format!("caller{t}:{i}");
                    c.set(key.clone(), i.to_string()).await?;
                    let got = c.get(key).await?;
                    if got != Some(Bytes::from(i.to_string())) {
                        return Err(RedisError::UnexpectedReply(format!("{got:?} for {i}")));
                    }
                }
                Ok::<_, RedisError>(())
            });
            let _ = tx.send(r);
        });
    }
    drop(tx);
    let results: Vec<_> = rx.iter().collect();
    assert_eq!(results.len(), CALLERS);
    for r in results {
        r.unwrap();
    }
    let keys = block_on(c.cmd(Command::new("DBSIZE"))).unwrap();
    assert_eq!(keys, Value::Integer((CALLERS * EACH) as i64));
    system.shutdown(Duration::from_secs(5));
}

#[test]
fn resp3_negotiation_gives_resp3_types() {
    let redis = RealRedis::start();
    let system = system();
    let config = RedisClientConfig {
        resp: Resp {
            version: RespVersion::Resp3,
            ..Resp::default()
        },
        ..RedisClientConfig::default()
    };
    let c = client(&system, redis.addr, config);
    block_on(async {
        c.set("k", "v").await.unwrap();
        // CONFIG GET answers with a map in RESP3 and a flat array in RESP2.
        let v = c
            .cmd(Command::new("CONFIG").arg("GET").arg("appendonly"))
            .await
            .unwrap();
        assert!(matches!(v, Value::Map(_)), "{v:?}");
        assert_eq!(c.get("k").await.unwrap(), Some(Bytes::from("v")));
    });
    system.shutdown(Duration::from_secs(5));
}

/// An actor that collects pub/sub deliveries.
struct Inbox(mpsc::Sender<Value>);

impl Actor for Inbox {
    type Msg = Value;
    fn handle(&mut self, v: Value, _ctx: &mut Context<Self>) {
        let _ = self.0.send(v);
    }
}

#[test]
fn pubsub_deliveries_reach_the_subscriber() {
    let redis = RealRedis::start();
    let system = system();
    let (tx, rx) = mpsc::channel();
    let inbox = system.spawn(Inbox(tx)).unwrap();
    for (round, version) in [RespVersion::Resp2, RespVersion::Resp3]
        .into_iter()
        .enumerate()
    {
        // Each round its own channels: the first round's subscriber is still subscribed.
        let (news, pattern) = (format!("news{round}"), format!("news{round}*"));
        let config = RedisClientConfig {
            resp: Resp {
                version,
                ..Resp::default()
            },
            ..RedisClientConfig::default()
        };
        let sub = RedisClient::subscriber(&system.handle(), redis.addr, config, inbox.recipient())
            .unwrap();
        let publisher = client(&system, redis.addr, RedisClientConfig::default());
        block_on(async {
            sub.subscribe([news.clone(), "sport".to_string()])
                .await
                .unwrap();
            sub.psubscribe([pattern.clone()]).await.unwrap();
            // The second channel's and the pattern's confirmations are pushes, not answers.
            assert_eq!(publisher.publish(news.clone(), "hello").await.unwrap(), 2);
        });
        let mut got = Vec::new();
        while got.len() < 2 {
            let v = rx.recv_timeout(Duration::from_secs(10)).expect("delivery");
            if let Some(m) = Message::from_push(&v) {
                got.push(m);
            }
        }
        got.sort_by_key(|m| m.pattern.is_some());
        assert_eq!(got[0].channel, Bytes::from(news.clone()));
        assert_eq!(got[0].payload, Bytes::from("hello"));
        assert_eq!(got[1].pattern, Some(Bytes::from(pattern)));
        while rx.try_recv().is_ok() {}
    }
    system.shutdown(Duration::from_secs(5));
}

#[test]
fn pooled_client_works_and_fails_fast_when_down() {
    let redis = RealRedis::start();
    let system = system();
    let pool = system
        .spawn(Pool::new(redis.addr, Resp::default, PoolConfig::default()))
        .unwrap();
    let c = RedisClient::pooled(pool);
    block_on(async {
        c.set("pooled", "yes").await.unwrap();
        assert_eq!(c.get("pooled").await.unwrap(), Some(Bytes::from("yes")));
    });
    system.shutdown(Duration::from_secs(5));
}

#[test]
fn a_silent_server_times_out_instead_of_hanging() {
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let system = system();
    let config = RedisClientConfig {
        response_timeout: Some(Duration::from_millis(200)),
        ..RedisClientConfig::default()
    };
    let c = client(&system, addr, config);
    let err = block_on(c.get("k")).unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(matches!(err, RedisError::Client(_)), "{err:?}");
    drop(silent);
    system.shutdown(Duration::from_secs(5));
}
