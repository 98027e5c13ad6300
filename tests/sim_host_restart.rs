//! Simulated hosts that crash and restart: a server host dies (its actors, its connections,
//! its listener) and comes back on the same address with its boot closure run again. A client
//! pool with a circuit breaker on another host must answer every call, open the breaker while
//! the host is down, and recover once it is back. 100 seeds each (`SINEW_SEEDS` overrides; a
//! failing seed prints `SINEW_SEED=<n>`); the harness checks no reply address is left
//! unanswered.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sinew::io_actors::{IncomingFor, Pool, PoolError, PoolMsg, ServerConfig};
use sinew::prelude::*;
use sinew::protocols::http1::{Body, Http1, Response};
use sinew::testkit::{NetFault, RandomCrashes, SimHost, SimRun, Simulation};

use support::sim::{
    get, http1, ip, pool_config, random_link, report, serve_hello, Load, LoadReport, A, B,
};

type Answer = Result<Response, PoolError>;

fn spawn_pool(host: &SimHost) -> Result<Addr<Pool<Http1>>, String> {
    let dest = std::net::SocketAddr::new(ip(A), 80);
    host.spawn(Pool::new(dest, http1, pool_config()))
        .map_err(|e| e.to_string())
}

/// One call through the pool; `Err` when the pool never answered.
fn call(run: &SimRun, pool: &Addr<Pool<Http1>>) -> Result<Answer, String> {
    run.block_on(pool.ask(|r| PoolMsg::Call(get(), r)))?
        .map_err(|e| format!("the pool dropped a call: {e}"))
}

/// A load generator on `host` calling `pool` every `every`, `total` times.
fn spawn_load(
    host: &SimHost,
    pool: &Addr<Pool<Http1>>,
    every: Duration,
    total: u32,
) -> Result<Addr<Load<Answer>>, String> {
    let pool = pool.clone();
    let issue = Box::new(move |_id: u32, reply: ReplyTo<Answer>| {
        // A refusal drops the message and its reply address: that answer arrives too.
        let _ = pool.try_send(PoolMsg::Call(get(), reply));
    });
    let classify = Box::new(|_id: u32, a: &Answer| match a {
        Ok(r) if r.status == 200 => "ok".to_string(),
        Ok(r) => format!("wrong status {}", r.status),
        Err(e) if e.is_transient() => format!("failed: {e}"),
        Err(e) => format!("wrong error: {e}"),
    });
    host.spawn(Load::new(issue, classify, every, total))
        .map_err(|e| e.to_string())
}

#[test]
fn a_crashed_server_opens_the_breaker_and_the_pool_recovers_after_restart() {
    Simulation::new("pool + breaker across a server crash and restart")
        .seeds(100)
        .run(|run| {
            let (a, b) = (run.host(A), run.host(B));
            let link = random_link(run);
            run.net().set_link_both(ip(A), ip(B), link);
            a.boot(|h| serve_hello(h).map(|_| ()))?;
            let pool = spawn_pool(&b)?;
            for _ in 0..5 {
                match call(run, &pool)? {
                    Ok(r) if r.status == 200 => {}
                    other => return Err(format!("before the crash: {other:?}")),
                }
            }

            // A stream of calls across the crash, besides the calls made below.
            let load = spawn_load(&b, &pool, Duration::from_millis(25), 200)?;

            // The crash at a seeded moment; the restart 2 to 4 s later.
            let net = run.net();
            let crash_at = net.now() + Duration::from_millis(run.rng().below(500));
            let back_at = crash_at + Duration::from_millis(2_000 + run.rng().below(2_000));
            net.at(crash_at, NetFault::CrashHost(ip(A)));
            net.at(back_at, NetFault::RestartHost(ip(A)));

            // While it is down: no call succeeds, failures are typed, and the breaker opens.
            let (mut open, mut refused) = (0, 0);
            while net.now() < back_at {
                let was_down = !a.is_up();
                let answer = call(run, &pool)?;
                if was_down && !a.is_up() {
                    match answer {
                        Err(PoolError::CircuitOpen) => open += 1,
                        Err(PoolError::Client(e)) if e.to_string().contains("refused") => {
                            refused += 1
                        }
                        Err(e) if e.is_transient() => {}
                        other => return Err(format!("host down, unexpected answer: {other:?}")),
                    }
                }
                run.advance(Duration::from_millis(50));
            }
            // The stream's calls may be the ones that meet the refused connects.
            let stream = report(run, &load)?;
            refused += stream.count("failed: connection failed: connection refused");
            if open == 0 || refused == 0 {
                return Err(format!(
                    "host down: {open} fail-fast answers, {refused} refused connects; {stream:?}"
                ));
            }

            // Back: the listener is there again (a fresh server), the breaker lets a trial
            // through and calls succeed again.
            if !a.is_up() || a.lives() != 2 {
                return Err(format!("up {}, lives {}", a.is_up(), a.lives()));
            }
            let mut tries = 0;
            loop {
                match call(run, &pool)? {
                    Ok(r) if r.status == 200 => break,
                    Err(e) if e.is_transient() => run.advance(Duration::from_millis(50)),
                    other => return Err(format!("after the restart: {other:?}")),
                }
                tries += 1;
                if tries > 200 {
                    return Err("10 s after the restart, calls still fail".into());
                }
            }
            for _ in 0..10 {
                match call(run, &pool)? {
                    Ok(r) if r.status == 200 => {}
                    other => return Err(format!("after recovery: {other:?}")),
                }
            }

            // Every call of the stream was answered exactly once, some of them successfully
            // on each side of the crash.
            run.advance(Duration::from_secs(3));
            let r: LoadReport = report(run, &load)?;
            r.check("load", 200)?;
            if r.count("ok") == 0 || r.count("ok") == 200 {
                return Err(format!("the crash did not show in the stream: {r:?}"));
            }
            Ok(())
        });
}

/// Counts requests and answers the count; starts from what `disk` holds, and writes each
/// new count there when it has one.
struct Counter {
    count: u64,
    disk: Option<Arc<AtomicU64>>,
}

impl Actor for Counter {
    type Msg = IncomingFor<Http1>;
    fn handle(&mut self, inc: IncomingFor<Http1>, _ctx: &mut Context<Self>) {
        self.count += 1;
        if let Some(d) = &self.disk {
            d.store(self.count, Ordering::Relaxed);
        }
        let body = Body::Full(Bytes::from(self.count.to_string()));
        inc.reply.send(Response::new(200).with_body(body));
    }
}

fn count_of(answer: Answer) -> Result<u64, String> {
    match answer {
        Ok(r) if r.status == 200 => {
            let bytes = match r.body {
                Body::Full(b) => b,
                other => return Err(format!("unexpected body {other:?}")),
            };
            std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("not a count: {bytes:?}"))
        }
        other => Err(format!("call failed: {other:?}")),
    }
}

#[test]
fn a_restart_loses_state_unless_the_boot_closure_restores_it() {
    Simulation::new("state across a restart")
        .seeds(100)
        .run(|run| {
            let (a, b) = (run.host(A), run.host(B));
            let persist = run.rng().chance(0.5);
            let disk = Arc::new(AtomicU64::new(0));
            let saved = disk.clone();
            a.boot(move |h| {
                let disk = persist.then(|| saved.clone());
                let count = disk.as_ref().map_or(0, |d| d.load(Ordering::Relaxed));
                let app = h
                    .spawn(Counter { count, disk })
                    .map_err(|e| e.to_string())?;
                h.serve(http1(), 80, app.recipient(), ServerConfig::default())
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })?;
            let pool = spawn_pool(&b)?;
            let n = 1 + run.rng().below(10);
            for i in 1..=n {
                let got = count_of(call(run, &pool)?)?;
                if got != i {
                    return Err(format!("call {i} counted {got}"));
                }
            }
            a.crash();
            if a.is_up() || a.system().live_actors() != 0 {
                return Err("the crashed host still runs actors".into());
            }
            let down = Duration::from_millis(run.rng().below(1_000));
            run.advance(down);
            a.restart();
            // The pool's connection died with the server: the first calls may fail.
            let mut tries = 0;
            let got = loop {
                match call(run, &pool)? {
                    Err(e) if e.is_transient() && tries < 100 => {
                        tries += 1;
                        run.advance(Duration::from_millis(50));
                    }
                    answer => break count_of(answer)?,
                }
            };
            let want = if persist { n + 1 } else { 1 };
            if got != want {
                return Err(format!(
                    "persist {persist}: after {n} calls and a restart, {got}"
                ));
            }
            Ok(())
        });
}

/// Seeded random crashes of the server while calls stream; run twice per seed by the
/// determinism check.
#[test]
fn random_crashes_replay_the_same_trace() {
    Simulation::new("random crashes, determinism")
        .seeds(100)
        .check_determinism(true)
        .run(|run| {
            let (a, b) = (run.host(A), run.host(B));
            let link = random_link(run);
            run.net().set_link_both(ip(A), ip(B), link);
            a.boot(|h| serve_hello(h).map(|_| ()))?;
            let pool = spawn_pool(&b)?;
            let load = spawn_load(&b, &pool, Duration::from_millis(20), 100)?;
            let crashes = run.net().random_crashes(
                &[ip(A)],
                Duration::from_secs(2),
                RandomCrashes {
                    mean_up: Duration::from_millis(400),
                    min_down: Duration::from_millis(50),
                    max_down: Duration::from_millis(600),
                },
            );
            run.advance(Duration::from_secs(4));
            report(run, &load)?.check("load", 100)?;
            if !a.is_up() || a.lives() != 1 + crashes as u32 {
                return Err(format!(
                    "{crashes} crashes scheduled; up {}, lives {}",
                    a.is_up(),
                    a.lives()
                ));
            }
            Ok(())
        });
}

#[test]
fn a_failing_boot_at_restart_fails_the_run() {
    let outcome = Simulation::new("failing boot").seeds(1).try_run(|run| {
        let a = run.host(A);
        let boots = std::cell::Cell::new(0);
        a.boot(move |_| {
            boots.set(boots.get() + 1);
            if boots.get() > 1 {
                Err("the disk is corrupt".into())
            } else {
                Ok(())
            }
        })?;
        run.net()
            .at(Duration::from_secs(1), NetFault::CrashHost(ip(A)));
        run.net()
            .at(Duration::from_secs(2), NetFault::RestartHost(ip(A)));
        run.advance(Duration::from_secs(3));
        Ok(())
    });
    let failure = outcome.expect_err("a failed boot went unnoticed");
    assert!(
        failure.message.contains("the disk is corrupt"),
        "{}",
        failure.message
    );
}
