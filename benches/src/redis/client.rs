//! The client cases: one client library, in a process of its own pinned to the client core,
//! drives `concurrency` callers against a redis-server on the server core for a fixed time.
//!
//! Workload, identical for every client: caller `i` alternates `SET bench:i <16 bytes>` and
//! `GET bench:i` on its own key, starting with the SET (so every GET hits and its value is
//! checked), issuing the next command as soon as the previous answer arrived. Every client
//! uses ONE connection, which all callers share by pipelining. Counted: commands completed
//! (a SET or a GET is one op) during the timed window, after an untimed warm-up; the
//! process's own CPU time (`getrusage`, every thread) over the same window.
//!
//! - `sinew-uring`, `sinew-mio`: `sinew_io_actors::RedisClient` (1 connection) on a system
//!   of one pinned worker parked in an io_uring / epoll reactor; the callers are actors on
//!   that worker, each sending `client.call(cmd, ctx.reply_to(..))` and issuing the next
//!   call from the handler of the reply;
//! - `redis-rs`: `redis` 1.x, one `MultiplexedConnection` (tokio), callers are tasks on a
//!   current-thread runtime sharing clones of it;
//! - `fred`: `fred` 10, one `Client` (auto-pipelined), callers are tasks on a
//!   current-thread runtime sharing clones of it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::System;
use crate::process::own_cpu_seconds;

/// The value every SET writes (and every GET must read back).
pub const VALUE: &[u8; 16] = b"sinew-bench-0123";

/// Whether command number `n` of a caller is a SET (even) rather than a GET (odd).
pub fn is_set(n: u64) -> bool {
    n.is_multiple_of(2)
}

/// The key of caller `i`.
pub fn key(i: usize) -> Bytes {
    Bytes::from(format!("bench:{i}"))
}

/// What a client process measured, printed as one JSON line on its stdout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClientReport {
    /// Commands completed in the timed window.
    pub ops: u64,
    /// Length of the timed window, seconds.
    pub secs: f64,
    /// CPU time the client process used in the window (user + system), seconds.
    pub cpu_secs: f64,
    /// Failed commands (wrong answers, error replies, connection errors) over the whole run.
    pub errors: u64,
}

impl ClientReport {
    /// Commands per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }

    /// Commands per CPU-second of the client process.
    pub fn ops_per_cpu_sec(&self) -> f64 {
        self.ops as f64 / self.cpu_secs
    }
}

/// Reads the report from a client process's stdout: its last line that is a JSON object.
pub fn parse_report(out: &str) -> Result<ClientReport, String> {
    let line = out
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .ok_or("no report line")?;
    serde_json::from_str(line).map_err(|e| format!("report {line:?}: {e}"))
}

/// The timing of one client run.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Untimed warm-up after the callers start.
    pub warmup: Duration,
    /// The timed window.
    pub duration: Duration,
}

/// One caller's progress: written only by the caller (plain stores, no read-modify-write),
/// read by the measuring thread or task.
#[derive(Debug, Default)]
struct Counter {
    done: AtomicU64,
    errors: AtomicU64,
}

/// The callers' progress and the flag that stops them.
#[derive(Debug, Clone)]
struct Progress {
    counters: Arc<[Counter]>,
    stop: Arc<AtomicBool>,
}

impl Progress {
    fn new(concurrency: usize) -> Progress {
        Progress {
            counters: (0..concurrency).map(|_| Counter::default()).collect(),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// (ops, errors, cpu seconds, instant) now.
    fn snapshot(&self) -> Result<(u64, u64, f64, Instant), String> {
        let (mut ops, mut errors) = (0, 0);
        for c in self.counters.iter() {
            ops += c.done.load(Ordering::Relaxed);
            errors += c.errors.load(Ordering::Relaxed);
        }
        Ok((ops, errors, own_cpu_seconds()?, Instant::now()))
    }

    fn report(
        a: (u64, u64, f64, Instant),
        b: (u64, u64, f64, Instant),
    ) -> Result<ClientReport, String> {
        Ok(ClientReport {
            ops: b.0.saturating_sub(a.0),
            secs: b.3.duration_since(a.3).as_secs_f64(),
            cpu_secs: b.2 - a.2,
            errors: b.1,
        })
    }
}

/// Entry point of the hidden `__redis-client` subcommand: runs `system`'s client against
/// `addr` and returns what it measured.
pub fn client_main(
    system: System,
    addr: SocketAddr,
    concurrency: usize,
    window: Window,
) -> Result<ClientReport, String> {
    let concurrency = concurrency.max(1);
    match system {
        System::SinewUring => {
            sinew::run(sinew_transports::Backend::Uring, addr, concurrency, window)
        }
        System::SinewMio => sinew::run(sinew_transports::Backend::Mio, addr, concurrency, window),
        System::RedisRs => tokio_run(redis_rs::run(addr, concurrency, window)),
        System::Fred => tokio_run(fred::run(addr, concurrency, window)),
        System::RedisServer => Err("redis-server is a server, not a client".into()),
    }
}

/// Runs `f` on a current-thread tokio runtime (the peers' callers and connection tasks all
/// share this one thread).
fn tokio_run(
    f: impl std::future::Future<Output = Result<ClientReport, String>>,
) -> Result<ClientReport, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?
        .block_on(f)
}

/// Waits out the warm-up and the window on a tokio runtime, then stops the callers.
async fn tokio_measure(progress: &Progress, window: Window) -> Result<ClientReport, String> {
    tokio::time::sleep(window.warmup).await;
    let a = progress.snapshot()?;
    tokio::time::sleep(window.duration).await;
    let b = progress.snapshot()?;
    progress.stop.store(true, Ordering::Relaxed);
    Progress::report(a, b)
}

/// Sinew's `RedisClient`, driven by caller actors.
mod sinew {
    use super::*;

    use sinew_actors::{Actor, Context, ReplyError, ReplyTo, System as ActorSystem};
    use sinew_io_actors::{io_driver, RedisClient, RedisClientConfig, RedisResult};
    use sinew_protocols::resp::{Command, Value};
    use sinew_transports::Backend;

    /// A caller: one command in flight, the next one issued from the reply's handler.
    struct Caller {
        client: RedisClient,
        key: Bytes,
        value: Bytes,
        progress: Progress,
        index: usize,
        /// Commands completed so far (mirrored into the shared counter).
        done: u64,
    }

    /// What a caller receives: the answer to its command.
    enum CallerMsg {
        Reply(Result<RedisResult, ReplyError>),
    }

    impl Caller {
        fn issue(&mut self, ctx: &mut Context<Self>) {
            let cmd = if is_set(self.done) {
                Command::new("SET")
                    .arg(self.key.clone())
                    .arg(self.value.clone())
            } else {
                Command::new("GET").arg(self.key.clone())
            };
            self.client.call(cmd, ctx.reply_to(CallerMsg::Reply));
        }

        /// Whether the answer to command number `self.done` is right.
        fn check(&self, r: &Result<RedisResult, ReplyError>) -> bool {
            match r {
                Ok(Ok(Value::Simple(s))) if is_set(self.done) => &s[..] == b"OK",
                Ok(Ok(Value::Bulk(b))) if !is_set(self.done) => *b == self.value,
                _ => false,
            }
        }
    }

    impl Actor for Caller {
        type Msg = CallerMsg;

        fn started(&mut self, ctx: &mut Context<Self>) {
            self.issue(ctx);
        }

        fn handle(&mut self, msg: CallerMsg, ctx: &mut Context<Self>) {
            let CallerMsg::Reply(r) = msg;
            let counter = &self.progress.counters[self.index];
            if !self.check(&r) {
                // Stop this caller: a broken connection would otherwise fail every call at
                // once in a hot loop. The parent reports the run as failed.
                counter.errors.store(1, Ordering::Relaxed);
                eprintln!(
                    "[redis] sinew caller {}: unexpected answer {r:?}",
                    self.index
                );
                return;
            }
            self.done += 1;
            counter.done.store(self.done, Ordering::Relaxed);
            if !self.progress.stop.load(Ordering::Relaxed) {
                self.issue(ctx);
            }
        }
    }

    /// Builds the client system, checks the connection with a PING, runs the callers.
    pub fn run(
        backend: Backend,
        addr: SocketAddr,
        concurrency: usize,
        window: Window,
    ) -> Result<ClientReport, String> {
        let system = ActorSystem::builder()
            .workers(1)
            .pin_to(vec![super::super::server::first_allowed_cpu()?])
            .try_driver(io_driver(backend))
            .build()
            .map_err(|e| format!("sinew system on {backend}: {e}"))?;
        let result = run_on(&system, addr, concurrency, window);
        let report = system.shutdown(Duration::from_secs(2));
        if result.is_ok() && !report.clean {
            eprintln!("[redis] sinew client shutdown: {report:?}");
        }
        result
    }

    fn run_on(
        system: &ActorSystem,
        addr: SocketAddr,
        concurrency: usize,
        window: Window,
    ) -> Result<ClientReport, String> {
        let client = RedisClient::connect(
            &system.handle(),
            addr,
            RedisClientConfig {
                connections: 1,
                ..RedisClientConfig::default()
            },
        )
        .map_err(|e| format!("connect the sinew client: {e}"))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        client.call(
            Command::new("PING"),
            ReplyTo::from_fn(move |r| {
                let _ = tx.send(r);
            }),
        );
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(Ok(Value::Simple(s)))) if &s[..] == b"PONG" => {}
            Ok(other) => return Err(format!("PING answered {other:?}")),
            Err(e) => return Err(format!("PING: no answer ({e})")),
        }
        let progress = Progress::new(concurrency);
        let value = Bytes::from_static(VALUE);
        for index in 0..concurrency {
            system
                .spawn(Caller {
                    client: client.clone(),
                    key: key(index),
                    value: value.clone(),
                    progress: progress.clone(),
                    index,
                    done: 0,
                })
                .map_err(|e| format!("spawn caller {index}: {e}"))?;
        }
        std::thread::sleep(window.warmup);
        let a = progress.snapshot()?;
        std::thread::sleep(window.duration);
        let b = progress.snapshot()?;
        progress.stop.store(true, Ordering::Relaxed);
        Progress::report(a, b)
    }
}

/// redis-rs: one multiplexed connection shared by the caller tasks.
mod redis_rs {
    use super::*;

    use ::redis::AsyncCommands;

    /// Connects, checks with a PING, runs the callers, measures.
    pub async fn run(
        addr: SocketAddr,
        concurrency: usize,
        window: Window,
    ) -> Result<ClientReport, String> {
        let client = ::redis::Client::open(format!("redis://{addr}/"))
            .map_err(|e| format!("redis-rs client: {e}"))?;
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| format!("redis-rs connect: {e}"))?;
        let pong: String = ::redis::cmd("PING")
            .query_async(&mut con)
            .await
            .map_err(|e| format!("redis-rs PING: {e}"))?;
        if pong != "PONG" {
            return Err(format!("PING answered {pong:?}"));
        }
        let progress = Progress::new(concurrency);
        for index in 0..concurrency {
            let mut con = con.clone();
            let progress = progress.clone();
            tokio::spawn(async move {
                let key = key(index);
                let counter = &progress.counters[index];
                let mut done = 0u64;
                while !progress.stop.load(Ordering::Relaxed) {
                    let ok = if is_set(done) {
                        con.set::<&[u8], &[u8], ()>(&key, VALUE).await.is_ok()
                    } else {
                        matches!(con.get::<&[u8], Vec<u8>>(&key).await, Ok(v) if v == VALUE)
                    };
                    if !ok {
                        counter.errors.store(1, Ordering::Relaxed);
                        eprintln!("[redis] redis-rs caller {index}: command {done} failed");
                        return;
                    }
                    done += 1;
                    counter.done.store(done, Ordering::Relaxed);
                }
            });
        }
        tokio_measure(&progress, window).await
    }
}

/// fred: one client (one auto-pipelined connection) shared by the caller tasks.
mod fred {
    use super::*;

    use ::fred::prelude::{Builder, ClientLike, Config, KeysInterface};

    /// Connects, checks with a PING, runs the callers, measures.
    pub async fn run(
        addr: SocketAddr,
        concurrency: usize,
        window: Window,
    ) -> Result<ClientReport, String> {
        let config = Config::from_url(&format!("redis://{addr}"))
            .map_err(|e| format!("fred config: {e}"))?;
        let client = Builder::from_config(config)
            .build()
            .map_err(|e| format!("fred client: {e}"))?;
        client
            .init()
            .await
            .map_err(|e| format!("fred connect: {e}"))?;
        let pong: String = client
            .ping(None)
            .await
            .map_err(|e| format!("fred PING: {e}"))?;
        if pong != "PONG" {
            return Err(format!("PING answered {pong:?}"));
        }
        let progress = Progress::new(concurrency);
        let value = Bytes::from_static(VALUE);
        for index in 0..concurrency {
            let client = client.clone();
            let progress = progress.clone();
            let value = value.clone();
            tokio::spawn(async move {
                let key = key(index);
                let counter = &progress.counters[index];
                let mut done = 0u64;
                while !progress.stop.load(Ordering::Relaxed) {
                    let ok = if is_set(done) {
                        client
                            .set::<(), _, _>(key.clone(), value.clone(), None, None, false)
                            .await
                            .is_ok()
                    } else {
                        matches!(client.get::<Bytes, _>(key.clone()).await, Ok(v) if v == value)
                    };
                    if !ok {
                        counter.errors.store(1, Ordering::Relaxed);
                        eprintln!("[redis] fred caller {index}: command {done} failed");
                        return;
                    }
                    done += 1;
                    counter.done.store(done, Ordering::Relaxed);
                }
            });
        }
        let report = tokio_measure(&progress, window).await;
        let _ = client.quit().await;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_and_is_found_among_other_lines() {
        let r = ClientReport {
            ops: 1000,
            secs: 2.0,
            cpu_secs: 0.5,
            errors: 0,
        };
        let out = format!(
            "log line\n{}\n",
            serde_json::to_string(&r).expect("serialize")
        );
        let back = parse_report(&out).expect("parsed");
        assert_eq!(back, r);
        assert_eq!(back.ops_per_sec(), 500.0);
        assert_eq!(back.ops_per_cpu_sec(), 2000.0);
    }

    #[test]
    fn bad_reports_are_errors() {
        assert!(parse_report("").is_err());
        assert!(parse_report("{\"ops\": 1}").is_err());
    }

    #[test]
    fn window_report_takes_differences() {
        let t = Instant::now();
        let a = (100, 0, 1.0, t);
        let b = (400, 0, 1.5, t + Duration::from_secs(2));
        let r = Progress::report(a, b).expect("report");
        assert_eq!(r.ops, 300);
        assert_eq!(r.secs, 2.0);
        assert_eq!(r.cpu_secs, 0.5);
    }
}
