//! The I/O actors' buggify fault points, on: client connections refuse to connect, hold
//! responses back past their deadline and find idle connections closed by the peer; pools see
//! health checks fail. Over 100 seeds the guarantees hold anyway: every call is answered once,
//! by a response or a typed error, and the pool serves again once the faults stop mattering.
//! Across the seeds, every fault point must have fired (they exist and reach callers).

mod support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use sinew::io_actors::{Pool, PoolConfig, PoolError, PoolMsg};
use sinew::prelude::*;
use sinew::protocols::http1::Response;
use sinew::testkit::Simulation;

use support::sim::{get, http1, ip, pool_config, random_link, report, serve_hello, Load, A, B};

type Answer = Result<Response, PoolError>;

/// Names an answer: "ok", or the typed error it is.
fn kind(a: &Answer) -> String {
    match a {
        Ok(r) if r.status == 200 => "ok".into(),
        Ok(r) => format!("wrong status {}", r.status),
        Err(PoolError::Client(e)) if e.is_transient() => format!("client: {e}"),
        Err(e) if e.is_transient() => format!("pool: {e}"),
        Err(e) => format!("wrong error: {e}"),
    }
}

#[test]
fn buggified_connections_and_pools_still_answer_every_call() {
    // Outcomes over every seed, to show each fault point fired somewhere.
    let seen: RefCell<BTreeMap<String, u64>> = RefCell::new(BTreeMap::new());
    Simulation::new("buggify in client connections and pools")
        .seeds(100)
        .buggify(true)
        .run(|run| {
            let (a, b) = (run.host(A), run.host(B));
            let link = random_link(run);
            run.net().set_link_both(ip(A), ip(B), link);
            let dest = serve_hello(&a)?;
            let config = PoolConfig {
                // Probes while the load pauses, so health checks (and their fault point) run.
                health_check_interval: Some(Duration::from_millis(100)),
                ..pool_config()
            };
            let pool = b
                .spawn(Pool::new(dest, http1, config).health_request(get))
                .map_err(|e| e.to_string())?;

            // Bursts of calls with pauses between them: idle connections, probes, then calls.
            let total = 120;
            let every = Duration::from_millis(5 + run.rng().below(60));
            let target = pool.clone();
            let issue = Box::new(move |_id: u32, reply: ReplyTo<Answer>| {
                let _ = target.try_send(PoolMsg::Call(get(), reply));
            });
            let load = b
                .spawn(Load::new(issue, Box::new(|_, a| kind(a)), every, total))
                .map_err(|e| e.to_string())?;
            run.advance(every * total + Duration::from_secs(3));
            let r = report(run, &load)?;
            r.check("load", total)?;
            if r.count("ok") == 0 {
                return Err(format!("no call succeeded: {r:?}"));
            }

            // The faults are rare: a call soon succeeds again (the breaker may be open).
            let mut tries = 0;
            loop {
                match run.block_on(pool.ask(|r| PoolMsg::Call(get(), r)))? {
                    Ok(Ok(resp)) if resp.status == 200 => break,
                    Ok(Err(e)) if e.is_transient() && tries < 100 => {
                        tries += 1;
                        run.advance(Duration::from_millis(50));
                    }
                    other => return Err(format!("no recovery: {other:?}")),
                }
            }
            let m = run
                .block_on(pool.ask(PoolMsg::Metrics))?
                .map_err(|e| e.to_string())?;
            let mut seen = seen.borrow_mut();
            for (k, n) in r.outcomes {
                *seen.entry(k).or_insert(0) += u64::from(n);
            }
            *seen.entry("retired by health check".into()).or_insert(0) += m.retired_health;
            // Health checks run forever: without this the run never goes quiet, and the
            // no-hang check at the end would catch a probe in flight.
            pool.stop();
            Ok(())
        });
    let seen = seen.into_inner();
    for point in [
        "client: connection failed: connection refused",
        "client: connection failed: peer closed",
        "client: response timed out",
        "retired by health check",
    ] {
        assert!(
            seen.get(point).is_some_and(|&n| n > 0),
            "fault point never reached a caller: {point}; outcomes: {seen:?}"
        );
    }
}

#[test]
fn buggify_is_deterministic() {
    Simulation::new("buggify determinism")
        .seeds(100)
        .buggify(true)
        .check_determinism(true)
        .run(|run| {
            let (a, b) = (run.host(A), run.host(B));
            let dest = serve_hello(&a)?;
            let pool = b
                .spawn(Pool::new(dest, http1, pool_config()))
                .map_err(|e| e.to_string())?;
            let target = pool.clone();
            let issue = Box::new(move |_id: u32, reply: ReplyTo<Answer>| {
                let _ = target.try_send(PoolMsg::Call(get(), reply));
            });
            let load = b
                .spawn(Load::new(
                    issue,
                    Box::new(|_, a| kind(a)),
                    Duration::from_millis(10),
                    60,
                ))
                .map_err(|e| e.to_string())?;
            run.advance(Duration::from_secs(3));
            report(run, &load)?.check("load", 60)
        });
}
