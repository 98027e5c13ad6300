//! A small supervision tree that injects crashes and prints what the tree did.
//!
//! ```text
//! app (one_for_one, 5 restarts / 10 s)
//! ├── cache          worker, permanent, reached through a stable address (holds 64 while down)
//! └── ingest         supervisor (rest_for_one, exponential backoff 20 ms .. 200 ms)
//!     ├── reader     worker, permanent
//!     └── parser     worker, transient
//! ```
//!
//! The example crashes the cache (one-for-one: only it restarts; a request queued behind the
//! crash fails fast, and the same stable address reaches the new incarnation), then the reader
//! (rest-for-one: the parser after it restarts too, after a backoff), then shuts the tree down
//! (right to left).
//!
//! Run: `cargo run --example supervision_tree`

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

use sinew::prelude::*;
use sinew::supervision::{
    Backoff, ChildSpec, DownPolicy, Restart, Strategy, SupervisionEvent, SupervisorBuilder,
};

/// A key-value cache that can be told to crash.
#[derive(Default)]
struct Cache {
    data: HashMap<String, String>,
}

enum CacheMsg {
    Put(String, String),
    Get(String, ReplyTo<Option<String>>),
    Crash,
}

impl Actor for Cache {
    type Msg = CacheMsg;
    fn handle(&mut self, msg: CacheMsg, _ctx: &mut Context<Self>) {
        match msg {
            CacheMsg::Put(k, v) => {
                self.data.insert(k, v);
            }
            CacheMsg::Get(k, reply) => {
                reply.send(self.data.get(&k).cloned());
            }
            CacheMsg::Crash => panic!("cache corrupted (injected)"),
        }
    }
}

/// A pipeline stage that can be told to crash.
struct Stage;

impl Actor for Stage {
    type Msg = bool;
    fn handle(&mut self, crash: bool, _ctx: &mut Context<Self>) {
        assert!(!crash, "stage failed (injected)");
    }
}

fn describe(e: &SupervisionEvent) -> String {
    match e {
        SupervisionEvent::ChildStarted { child, actor, .. } => {
            format!("started   {child} as {actor}")
        }
        SupervisionEvent::ChildExited { child, reason, .. } => {
            format!("exited    {child}: {reason}")
        }
        SupervisionEvent::ChildRestarting {
            child,
            attempt,
            delay,
            ..
        } => {
            format!("restarting {child} (attempt {attempt}) in {delay:?}")
        }
        SupervisionEvent::StartFailed { child, error, .. } => {
            format!("start failed {child}: {error}")
        }
        SupervisionEvent::IntensityExceeded {
            restarts, within, ..
        } => {
            format!("intensity exceeded: {restarts} restarts within {within:?}")
        }
        SupervisionEvent::Escalated { name, reason, .. } => format!("{name} escalates: {reason}"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,sinew_supervision=off,sinew_actors=off".into()),
        )
        .init();
    // The crashes are injected; the runtime reports each through tracing.
    std::panic::set_hook(Box::new(|info| tracing::debug!(%info, "panic")));

    let (events_tx, events) = mpsc::channel::<(String, SupervisionEvent)>();
    let observer = |tree: &'static str| {
        let tx = std::sync::Mutex::new(events_tx.clone());
        move |e: &SupervisionEvent| {
            let _ = tx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .send((tree.to_string(), e.clone()));
        }
    };

    let (cache_spec, cache) = ChildSpec::with_addr("cache", Cache::default, DownPolicy::Hold(64));
    let (reader_spec, reader) = ChildSpec::with_addr("reader", || Stage, DownPolicy::FailFast);
    let (parser_spec, parser) = ChildSpec::with_addr("parser", || Stage, DownPolicy::FailFast);
    let ingest = SupervisorBuilder::new("ingest")
        .strategy(Strategy::RestForOne)
        .intensity(3, Duration::from_secs(10))
        .backoff(Backoff::exponential(
            Duration::from_millis(20),
            Duration::from_millis(200),
        ))
        .child(reader_spec)
        .child(parser_spec.restart(Restart::Transient))
        .observe(observer("ingest"));
    let app = SupervisorBuilder::new("app")
        .strategy(Strategy::OneForOne)
        .intensity(5, Duration::from_secs(10))
        .child(cache_spec)
        .child(ChildSpec::supervisor("ingest", ingest))
        .observe(observer("app"));
    drop(events_tx);

    let system = System::builder().workers(2).build()?;
    let root = app.spawn_root(&system.handle())?;
    // Events arrive from two supervisors in any order: keep the unconsumed ones.
    let history = std::cell::RefCell::new(Vec::<(String, SupervisionEvent)>::new());
    let wait_for = |tree: &str, pred: &dyn Fn(&SupervisionEvent) -> bool| -> Result<(), String> {
        loop {
            {
                let mut h = history.borrow_mut();
                if let Some(i) = h.iter().position(|(t, e)| t == tree && pred(e)) {
                    h.remove(i);
                    return Ok(());
                }
            }
            let (t, e) = events
                .recv_timeout(Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            println!("[{t:>6}] {}", describe(&e));
            history.borrow_mut().push((t, e));
        }
    };
    let started = |name: &'static str| move |e: &SupervisionEvent| matches!(e, SupervisionEvent::ChildStarted { child, .. } if child == name);

    println!("-- starting the tree");
    wait_for("ingest", &started("parser"))?;
    wait_for("app", &started("ingest"))?;

    println!("-- crash the cache: only it restarts (one_for_one)");
    cache
        .try_send(CacheMsg::Put("k".into(), "v".into()))
        .map_err(|e| e.to_string())?;
    cache.try_send(CacheMsg::Crash).map_err(|e| e.to_string())?;
    // Queued behind the crash, in the failing incarnation: answered with an error, no hang.
    let queued = futures::executor::block_on(cache.ask(|r| CacheMsg::Get("k".into(), r)));
    println!("   get(k) queued behind the crash -> {queued:?}");
    wait_for("app", &started("cache"))?;
    let after = futures::executor::block_on(cache.ask(|r| CacheMsg::Get("k".into(), r)));
    println!("   get(k) through the same stable address after the restart -> {after:?}");

    println!("-- crash the reader: reader and parser restart (rest_for_one), after a backoff");
    reader.try_send(true).map_err(|e| e.to_string())?;
    wait_for("ingest", &started("parser"))?;
    assert!(reader.current().is_some() && parser.current().is_some());

    println!("-- shut the tree down (children right to left)");
    let children = futures::executor::block_on(root.children())?;
    println!(
        "   app children: {:?}",
        children
            .iter()
            .map(|c| (&c.id, c.restarts))
            .collect::<Vec<_>>()
    );
    let report = system.shutdown(Duration::from_secs(5));
    for (t, e) in events.try_iter() {
        println!("[{t:>6}] {}", describe(&e));
    }
    println!(
        "-- stopped: clean = {}, in {:?}",
        report.clean, report.elapsed
    );
    if !report.clean {
        return Err("shutdown was not clean".into());
    }
    Ok(())
}
