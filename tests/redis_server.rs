//! The Redis-compatible server against real Redis tools: redis-cli and redis-benchmark work
//! unmodified, answers are byte-identical to redis-server's for the same commands (multi-key
//! commands across shards included), pub/sub works in RESP2 and RESP3, and bad input gets an
//! error reply and a close while the server carries on.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use sinew::io_actors::io_driver;
use sinew::prelude::*;
use sinew::redis::{RedisConfig, RedisServer};
use sinew::transports::Backend;
use support::{RawConn, RealRedis};

/// A Sinew Redis server on a free port with 4 shards over 2 workers.
fn sinew_redis() -> (System, SocketAddr) {
    let system = System::builder()
        .workers(2)
        .try_driver(io_driver(Backend::Auto))
        .build()
        .expect("system");
    let server = RedisServer::start(
        &system.handle(),
        ([127, 0, 0, 1], 0).into(),
        0..2,
        RedisConfig {
            shards: 4,
            ..RedisConfig::default()
        },
    )
    .expect("server starts");
    (system, server.addr())
}

fn redis_cli(addr: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args(args)
        .output()
        .expect("redis-cli is installed by .ci/run (apt: redis-tools)");
    assert!(out.status.success(), "redis-cli {args:?} failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn redis_cli_works_unmodified() {
    let (system, addr) = sinew_redis();
    assert_eq!(redis_cli(addr, &["ping"]), "PONG");
    assert_eq!(redis_cli(addr, &["set", "greeting", "hello world"]), "OK");
    assert_eq!(redis_cli(addr, &["get", "greeting"]), "hello world");
    assert_eq!(
        redis_cli(addr, &["mset", "a", "1", "b", "2", "c", "3"]),
        "OK"
    );
    assert_eq!(
        redis_cli(addr, &["mget", "a", "b", "nope", "c"]),
        "1\n2\n\n3"
    );
    assert_eq!(redis_cli(addr, &["incrby", "a", "41"]), "42");
    assert_eq!(redis_cli(addr, &["dbsize"]), "4");
    assert_eq!(redis_cli(addr, &["del", "a", "b", "nope"]), "2");
    assert_eq!(redis_cli(addr, &["set", "t", "x", "EX", "100"]), "OK");
    assert_eq!(redis_cli(addr, &["ttl", "t"]), "100");
    assert_eq!(redis_cli(addr, &["client", "setname", "tester"]), "OK");
    // RESP3 through redis-cli's own HELLO negotiation.
    assert_eq!(redis_cli(addr, &["-3", "get", "greeting"]), "hello world");
    assert_eq!(
        redis_cli(addr, &["select", "1"]),
        "ERR DB index is out of range"
    );
    assert!(redis_cli(addr, &["info"]).contains("redis_version:"));
    assert_eq!(redis_cli(addr, &["flushall"]), "OK");
    assert_eq!(redis_cli(addr, &["dbsize"]), "0");
    system.shutdown(Duration::from_secs(5));
}

#[test]
fn redis_benchmark_runs_against_it() {
    let (system, addr) = sinew_redis();
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
        .args([
            "-t", "set,get", "-n", "20000", "-P", "16", "-c", "20", "-r", "1000", "-q",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("redis-benchmark is installed by .ci/run (apt: redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "redis-benchmark failed: {out:?}");
    for test in ["SET", "GET"] {
        // Progress updates share the line, separated by carriage returns: the last is final.
        let line = text
            .lines()
            .filter_map(|l| l.rsplit('\r').next())
            .find(|l| l.trim_start().starts_with(&format!("{test}: ")))
            .unwrap_or_else(|| panic!("no {test} result in {text}"));
        let rps: f64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unparsable {line}"));
        assert!(rps > 0.0, "{line}");
    }
    // The random keys landed: between 1 and 1000 distinct keys, reported by DBSIZE across shards.
    let keys: i64 = redis_cli(addr, &["dbsize"]).parse().expect("integer");
    assert!((1..=1000).contains(&keys), "dbsize {keys}");
    system.shutdown(Duration::from_secs(5));
}

/// Commands whose replies must match redis-server's byte for byte.
const SCRIPT: &[&[&str]] = &[
    &["PING"],
    &["PING", "hi"],
    &["ECHO", "echo me"],
    &["SELECT", "0"],
    &["GET", "missing"],
    &["SET", "k1", "v1"],
    &["GET", "k1"],
    &["SET", "k1", "v2", "NX"],
    &["SET", "k1", "v2", "XX", "GET"],
    &["SET", "k2", "v", "NX", "XX"],
    &["SET", "k3", "v", "EX", "0"],
    &["SET", "k3", "v", "EX", "abc"],
    &["SET", "k3", "v", "PX", "100000"],
    &["TTL", "k3"],
    &["TTL", "k1"],
    &["TTL", "missing"],
    &["PERSIST", "k3"],
    &["TTL", "k3"],
    &["EXPIRE", "k3", "100", "XX"],
    &["EXPIRE", "k3", "100", "NX"],
    &["EXPIRE", "k3", "50", "GT"],
    &["EXPIRE", "k3", "50", "LT"],
    &["TTL", "k3"],
    &["EXPIRE", "missing", "10"],
    &[
        "MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", "6", "g", "7", "h", "8",
    ],
    &["MGET", "h", "a", "zz", "b", "c", "d", "e", "f", "g"],
    &["EXISTS", "a", "b", "zz", "a", "h"],
    &["DEL", "a", "b", "zz", "h"],
    &["MGET", "a", "b", "c", "h"],
    &["MSET", "a", "1", "b"],
    &["INCR", "counter"],
    &["INCRBY", "counter", "41"],
    &["DECR", "counter"],
    &["DECRBY", "counter", "10"],
    &["INCR", "k1"],
    &["INCRBY", "counter", "notanumber"],
    &["SET", "big", "9223372036854775807"],
    &["INCR", "big"],
    &["APPEND", "k1", "-tail"],
    &["STRLEN", "k1"],
    &["GETDEL", "k1"],
    &["GET", "k1"],
    &["SETNX", "k1", "again"],
    &["SETNX", "k1", "again"],
    &["TYPE", "k1"],
    &["TYPE", "missing"],
    &["GET"],
    &["SET", "onlykey"],
    &["DBSIZE"],
    &["EXPIRE", "c", "-1"],
    &["EXISTS", "c"],
    &["PUBLISH", "nobody", "hello"],
    &["FLUSHALL"],
    &["DBSIZE"],
];

#[test]
fn answers_match_redis_server_byte_for_byte() {
    let real = RealRedis::start();
    let (system, addr) = sinew_redis();
    let mut theirs = RawConn::connect(real.addr).expect("connect redis-server");
    let mut ours = RawConn::connect(addr).expect("connect sinew");
    for cmd in SCRIPT {
        let want = theirs.call(cmd).expect("redis-server answers");
        let got = ours.call(cmd).expect("sinew answers");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "reply to {cmd:?}"
        );
    }
    system.shutdown(Duration::from_secs(5));
}

#[test]
fn pipelined_replies_come_back_in_order_across_shards() {
    let (system, addr) = sinew_redis();
    let mut c = RawConn::connect(addr).expect("connect");
    let mut wire = Vec::new();
    for i in 0..500 {
        wire.extend(RawConn::encode(&[
            "SET",
            &format!("key:{i}"),
            &i.to_string(),
        ]));
        wire.extend(RawConn::encode(&["GET", &format!("key:{i}")]));
        wire.extend(RawConn::encode(&["MGET", &format!("key:{i}"), "key:0"]));
    }
    c.send_raw(&wire).expect("send");
    for i in 0..500 {
        assert_eq!(c.reply().expect("set"), b"+OK\r\n");
        let v = i.to_string();
        assert_eq!(
            c.reply().expect("get"),
            format!("${}\r\n{v}\r\n", v.len()).into_bytes()
        );
        assert_eq!(
            c.reply().expect("mget"),
            format!("*2\r\n${}\r\n{v}\r\n$1\r\n0\r\n", v.len()).into_bytes()
        );
    }
    system.shutdown(Duration::from_secs(5));
}

#[test]
fn pubsub_in_resp2_and_resp3() {
    let (system, addr) = sinew_redis();
    let mut sub2 = RawConn::connect(addr).expect("connect");
    assert_eq!(
        sub2.call(&["SUBSCRIBE", "news", "sport"])
            .expect("subscribe"),
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    assert_eq!(
        sub2.reply().expect("second confirmation"),
        b"*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n"
    );
    let mut sub3 = RawConn::connect(addr).expect("connect");
    let hello = sub3.call(&["HELLO", "3"]).expect("hello");
    assert!(
        hello.starts_with(b"%7\r\n"),
        "{}",
        String::from_utf8_lossy(&hello)
    );
    assert_eq!(
        sub3.call(&["PSUBSCRIBE", "n*"]).expect("psubscribe"),
        b">3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:1\r\n"
    );
    let mut publisher = RawConn::connect(addr).expect("connect");
    assert_eq!(
        publisher.call(&["PUBLISH", "news", "hi"]).expect("publish"),
        b":2\r\n"
    );
    assert_eq!(
        sub2.reply().expect("message"),
        b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
    );
    assert_eq!(
        sub3.reply().expect("pmessage"),
        b">4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
    );
    assert_eq!(
        publisher
            .call(&["PUBLISH", "sport", "goal"])
            .expect("publish"),
        b":1\r\n"
    );
    assert_eq!(
        sub2.call(&["UNSUBSCRIBE", "news"]).expect("unsubscribe"),
        b"*3\r\n$7\r\nmessage\r\n$5\r\nsport\r\n$4\r\ngoal\r\n"
    );
    assert_eq!(
        sub2.reply().expect("unsubscribe confirmation"),
        b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    // A closed subscriber no longer counts.
    drop(sub3);
    let mut n = Vec::new();
    for _ in 0..1000 {
        n = publisher
            .call(&["PUBLISH", "news", "again"])
            .expect("publish");
        if n == b":0\r\n" {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(n, b":0\r\n");
    system.shutdown(Duration::from_secs(5));
}

#[test]
fn bad_input_gets_an_error_and_a_close_and_nothing_else_breaks() {
    let (system, addr) = sinew_redis();
    let cases: &[(&[u8], &str)] = &[
        (
            b"*1\r\n$4294967296\r\n",
            "-ERR Protocol error: invalid bulk length",
        ),
        (
            b"*99999999999\r\n",
            "-ERR Protocol error: invalid multibulk length",
        ),
        (
            b"*1\r\nxyz\r\n",
            "-ERR Protocol error: expected '$', got 'x'",
        ),
        (
            b"SET \"unterminated\r\n",
            "-ERR Protocol error: unbalanced quotes in request",
        ),
    ];
    for (input, want) in cases {
        let mut c = RawConn::connect(addr).expect("connect");
        c.send_raw(input).expect("send");
        let got = c.read_to_close().expect("server closes");
        assert_eq!(
            String::from_utf8_lossy(&got).trim_end(),
            *want,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
    // Deep nesting is not a command: rejected at the first nested header.
    let mut c = RawConn::connect(addr).expect("connect");
    c.send_raw(&b"*1\r\n".repeat(100_000)).expect("send");
    let got = c.read_to_close().expect("server closes");
    assert!(
        got.starts_with(b"-ERR Protocol error"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // An unterminated inline command past the inline limit.
    let mut c = RawConn::connect(addr).expect("connect");
    let _ = c.send_raw(&vec![b'a'; 200 * 1024]);
    let got = c.read_to_close().unwrap_or_default();
    assert!(
        got.starts_with(b"-ERR Protocol error: too big inline request"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // The server is fine.
    let mut c = RawConn::connect(addr).expect("connect");
    assert_eq!(c.call(&["PING"]).expect("ping"), b"+PONG\r\n");
    system.shutdown(Duration::from_secs(5));
}
