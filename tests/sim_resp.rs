//! Seeded simulations of the Redis client against `sinew::redis` (the facade's server, on a
//! simulated host) under partitions and resets, and of a `PoolGroup` with hedging under link
//! latency and jitter faults. 100 seeds each (`SINEW_SEEDS` overrides; a failing seed prints
//! `SINEW_SEED=<n>`); the harness checks no reply address is left unanswered.
//!
//! Every answer is checked against the call that asked for it: a pipelined connection that
//! answered one caller with another's reply would show here as a "wrong" outcome.

mod support;

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sinew::io_actors::{
    HedgePolicy, IncomingFor, Layout, Pool, PoolConfig, PoolError, PoolGroup, PoolScope,
    RedisClient, RedisClientConfig, RedisResult, Role, ServerConfig, Slot,
};
use sinew::prelude::*;
use sinew::protocols::http1::{Body, Http1, Method, Request, Response};
use sinew::protocols::protocol::ProtocolTimeouts;
use sinew::protocols::resp::{Command, Resp, Value};
use sinew::redis::{RedisConfig, RedisServer};
use sinew::supervision::resilience::retry::{RetryBudget, RetryPolicy};
use sinew::supervision::Backoff;
use sinew::testkit::{LinkConfig, NetFault, RandomFaults, SimHost, SimRng, SimRun, Simulation};

use support::sim::{http1, ip, pool_config, random_link, report, Load, A, B};

// ---- RESP: the client against the facade's server ----------------------------------------------

/// Keys written before the faults start; GETs check their values.
const KEYS: u64 = 8;

/// Starts `sinew::redis` on port 6379 of `host`.
fn redis_server(run: &SimRun, host: &SimHost, shards: usize) -> Result<SocketAddr, String> {
    let handle = host.handle();
    let addr = host.addr(6379);
    let config = RedisConfig {
        shards,
        shard_workers: Vec::new(),
        resp: Resp::default(),
        server: ServerConfig::default(),
    };
    // `start` waits for its listener: it runs beside the hosts, like `SimHost::serve`.
    run.blocking(move || RedisServer::start(&handle, addr, 0..1, config))
        .map(|s| s.addr())
        .map_err(|e| e.to_string())
}

/// RESP with connect and response deadlines (none by default: a call on a connection stuck
/// in a partition would wait for it to heal).
fn resp() -> Resp {
    Resp {
        timeouts: ProtocolTimeouts {
            request_read: Some(Duration::from_secs(1)),
            response: Some(Duration::from_secs(1)),
            ..ProtocolTimeouts::default()
        },
        ..Resp::default()
    }
}

/// Call `id`'s command and the bulk reply it must get.
fn command_for(id: u32) -> (Command, Bytes) {
    if id % 2 == 0 {
        let text = Bytes::from(format!("echo-{id}"));
        (Command::new("ECHO").arg(text.clone()), text)
    } else {
        let k = u64::from(id) % KEYS;
        (
            Command::new("GET").arg(format!("key-{k}")),
            Bytes::from(format!("value-{k}")),
        )
    }
}

fn classify_resp(id: u32, answer: &RedisResult) -> String {
    let (_, want) = command_for(id);
    match answer {
        Ok(Value::Bulk(b)) if *b == want => "ok".into(),
        Ok(other) => format!("wrong reply for call {id}: {other:?}"),
        Err(e) if e.is_transient() => format!("failed: {e}"),
        Err(e) => format!("wrong error: {e}"),
    }
}

#[test]
fn redis_calls_under_partitions_and_resets_get_their_own_replies() {
    // Answers that were the right value, and seeds with at least one.
    let succeeded = Cell::new((0u64, 0u64));
    Simulation::new("RESP client vs sinew::redis under partitions and resets")
        .seeds(100)
        .run(|run| {
            let (a, b) = (run.host(A), run.host(B));
            let link = random_link(run);
            run.net().set_link_both(ip(A), ip(B), link);
            let shards = 1 + run.rng().below(2) as usize;
            let dest = redis_server(run, &a, shards)?;

            // Half the seeds call over plain pipelined connections, half through a pool
            // (which reconnects, so it must recover once the faults end).
            let pooled = run.rng().chance(0.5);
            let client = if pooled {
                let pool = b
                    .spawn(Pool::new(dest, resp, pool_config()))
                    .map_err(|e| e.to_string())?;
                RedisClient::pooled(pool)
            } else {
                let config = RedisClientConfig {
                    connections: 2,
                    resp: Resp::default(),
                    connect_timeout: Some(Duration::from_secs(1)),
                    response_timeout: Some(Duration::from_secs(1)),
                    ..RedisClientConfig::default()
                };
                RedisClient::connect(&b.handle(), dest, config).map_err(|e| e.to_string())?
            };
            for k in 0..KEYS {
                run.block_on(client.set(format!("key-{k}"), format!("value-{k}")))?
                    .map_err(|e| format!("SET before the faults: {e}"))?;
            }

            // Calls stream while partitions, clogs and resets come and go.
            let total = 150;
            let every = Duration::from_millis(5 + run.rng().below(15));
            let caller = client.clone();
            let issue = Box::new(move |id: u32, reply: ReplyTo<RedisResult>| {
                caller.call(command_for(id).0, reply);
            });
            let load = b
                .spawn(Load::new(issue, Box::new(classify_resp), every, total))
                .map_err(|e| e.to_string())?;
            let net = run.net();
            let span = every * total;
            net.random_faults(
                &[ip(A), ip(B)],
                span,
                RandomFaults {
                    partitions: 2,
                    clogs: 1,
                    resets: 2,
                    slow_links: 0,
                    ..RandomFaults::default()
                },
            );
            let reset_at =
                net.now() + Duration::from_millis(run.rng().below(span.as_millis() as u64));
            net.at(reset_at, NetFault::Reset(ip(A), ip(B)));
            run.advance(span + Duration::from_secs(3));

            let r = report(run, &load)?;
            r.check("redis load", total)?;
            // A plain connection reset early stays dead (no reconnects): count successes
            // over the seeds instead of requiring some in each.
            let (n, ok) = succeeded.get();
            succeeded.set((
                n + u64::from(r.count("ok")),
                ok + u64::from(r.count("ok") > 0),
            ));
            if pooled {
                let mut tries = 0;
                while run.block_on(client.cmd(command_for(0).0))?.is_err() {
                    tries += 1;
                    if tries > 100 {
                        return Err("the pooled client did not recover".into());
                    }
                    run.advance(Duration::from_millis(50));
                }
            }
            Ok(())
        });
    let (answers, seeds) = succeeded.get();
    assert!(
        seeds >= 50,
        "only {seeds} seeds had a successful call ({answers} answers)"
    );
}

// ---- PoolGroup and hedging under latency and jitter ------------------------------------------

/// A backend that answers `GET /<n>` with `<n>`, usually at once and sometimes late (a GC
/// pause, a slow disk): the calls hedging is for.
struct Jittery {
    rng: SimRng,
}

enum JitteryMsg {
    Request(Box<IncomingFor<Http1>>),
    Answer(ReplyTo<Response>, Bytes),
}

impl Actor for Jittery {
    type Msg = JitteryMsg;
    fn handle(&mut self, msg: JitteryMsg, ctx: &mut Context<Self>) {
        match msg {
            JitteryMsg::Request(inc) => {
                let body = inc.request.target_bytes().slice(1..);
                let delay = if self.rng.chance(0.2) {
                    Duration::from_millis(30 + self.rng.below(100))
                } else {
                    Duration::from_millis(self.rng.below(3))
                };
                ctx.send_after(delay, JitteryMsg::Answer(inc.reply, body));
            }
            JitteryMsg::Answer(reply, body) => {
                reply.send(Response::new(200).with_body(Body::Full(body)));
            }
        }
    }
}

fn numbered(id: u32) -> Request {
    Request::new(Method::Get, format!("/{id}")).header("host", "backend")
}

fn classify_http(id: u32, answer: &Result<Response, PoolError>) -> String {
    match answer {
        Ok(r) if r.status == 200 => match &r.body {
            Body::Full(b) if b[..] == *id.to_string().as_bytes() => "ok".into(),
            other => format!("wrong body for call {id}: {other:?}"),
        },
        Ok(r) => format!("wrong status {}", r.status),
        Err(e) if e.is_transient() => format!("failed: {e}"),
        Err(e) => format!("wrong error: {e}"),
    }
}

/// Two NUMA nodes on the host's one worker: a group of two pools, both on that worker.
fn two_node_layout() -> Layout {
    let slot = |node, cpu| Slot {
        worker: 0,
        node,
        cpu,
        role: Role::ClientIo,
    };
    Layout {
        slots: vec![slot(0, 0), slot(1, 1)],
    }
}

#[test]
fn pool_group_hedging_under_jitter_first_answer_wins_and_late_answers_free_connections() {
    let hedged = Cell::new(0u64);
    Simulation::new("PoolGroup + hedging under latency and jitter")
        .seeds(100)
        .run(|run| {
            let (a, b) = (run.host(A), run.host(B));
            let jitter = |run: &mut SimRun| LinkConfig {
                latency: Duration::from_micros(100 + run.rng().below(3_000)),
                jitter: Duration::from_micros(run.rng().below(20_000)),
                ..LinkConfig::default()
            };
            let link = jitter(run);
            run.net().set_link_both(ip(A), ip(B), link);
            let rng = SimRng::new(run.rng().next_u64());
            let app = a.spawn(Jittery { rng }).map_err(|e| e.to_string())?;
            let dest = a
                .serve(
                    http1(),
                    80,
                    app.recipient_map(|inc| JitteryMsg::Request(Box::new(inc))),
                    ServerConfig::default(),
                )
                .map_err(|e| e.to_string())?;

            let config = PoolConfig {
                max_size: 4,
                call_timeout: Duration::from_secs(2),
                hedge: Some(HedgePolicy {
                    delay: Duration::from_millis(10 + run.rng().below(20)),
                    max_extra: 1 + run.rng().below(2) as u32,
                }),
                ..pool_config()
            };
            let group =
                PoolGroup::start_with(&b.handle(), PoolScope::PerNode(two_node_layout()), |_| {
                    Pool::new(dest, http1, config.clone()).retries(
                        // One attempt: every extra request is a hedge.
                        RetryPolicy::new(1, Backoff::none(), 1),
                        RetryBudget::new(0.5, 50, Duration::from_secs(10)),
                        |r: &Request| (r.method == Method::Get).then(|| r.clone()),
                    )
                })
                .map_err(|e| e.to_string())?;
            if group.pools().len() != 2 {
                return Err(format!("{} pools", group.pools().len()));
            }

            // Latency and jitter change while the calls stream.
            let net = run.net();
            for k in 1..=3u64 {
                let link = jitter(run);
                let at = net.now() + Duration::from_millis(300 * k);
                net.at(
                    at,
                    NetFault::Link {
                        from: ip(A),
                        to: ip(B),
                        link,
                    },
                );
                net.at(
                    at,
                    NetFault::Link {
                        from: ip(B),
                        to: ip(A),
                        link,
                    },
                );
            }
            let total = 120;
            let every = Duration::from_millis(2 + run.rng().below(10));
            let calls = group.clone();
            let issue = Box::new(move |id: u32, reply| {
                let _ = calls
                    .any()
                    .try_send(sinew::io_actors::PoolMsg::Call(numbered(id), reply));
            });
            let load = b
                .spawn(Load::new(issue, Box::new(classify_http), every, total))
                .map_err(|e| e.to_string())?;
            run.advance(every * total + Duration::from_secs(3));

            // Each call answered once, by its own response.
            let r = report(run, &load)?;
            r.check("group load", total)?;
            if r.count("ok") != total {
                return Err(format!("a healthy if jittery network failed calls: {r:?}"));
            }
            // Every answer is in, the late ones too: they freed their connections.
            let m = run.block_on(group.metrics())?.map_err(|e| e.to_string())?;
            if m.in_flight != 0 || m.waiters != 0 || m.size > 8 {
                return Err(format!("connections still busy after the calls: {m:?}"));
            }
            if m.hedge_wins > m.hedges {
                return Err(format!("more hedge wins than hedges: {m:?}"));
            }
            hedged.set(hedged.get() + m.hedges);
            Ok(())
        });
    assert!(hedged.get() > 0, "no call was ever hedged");
}
