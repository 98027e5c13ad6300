//! The `actors` suite: ping-pong (same core and cross core), fan-in, spawn cost and idle
//! actor memory, for sinew and its peers.
//!
//! Each system lives in its own module and exposes the same five functions (see
//! [`Case`]); each returns `None` when the case does not apply to that system.
//!
//! Every single measurement runs in a fresh child process (the current executable
//! re-invoked with the hidden `__actors-one` subcommand), so no framework's global state
//! (actix's `System`, registries, allocator high-water marks) leaks from one measurement
//! into the next, and the allocation counter of the memory case sees only that case.
//! Repeats are interleaved across systems (repeat 1 of every system, then repeat 2, …) so
//! that slow drift of a noisy machine spreads over all systems instead of one.
//!
//! Conventions every system module follows:
//! - "same core" means everything on ONE OS thread pinned to core 0 ([`on_pinned_thread`]);
//!   "cross core" puts actor A on a thread pinned to core 0 and actor B on one pinned to
//!   core 1.
//! - ping-pong runs `warmup_iters` untimed round trips before the timed `*_iters`.
//! - `spawn` times from the first spawn until all `spawn_count` actors are spawned AND
//!   running (their start hook has run / their task has been polled once), so frameworks
//!   that start actors lazily are not credited for work they defer; stopping is untimed.
//! - `idle-actor-memory` is `(live_after - live_before) / idle_count` with the counting
//!   allocator ([`crate::alloc::live_bytes`]), taken once every actor has started; the
//!   `Vec` holding the handles is reserved before `live_before`.
//! - actor state is one `u64` for every framework.
//! - pin through [`pin_current`] / [`spawn_pinned`] (core ids are read once from the
//!   unpinned main thread: see [`init_cores`]); allocation counting is on only in the
//!   memory child, so the timed cases do not pay for it.

pub mod actix;
pub mod crossbeam;
pub mod kameo;
pub mod ractor;
pub mod sinew;
pub mod tokio_mpsc;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::report::{median, Row, TableSpec};

/// Suite name used in every row.
pub const SUITE: &str = "actors";

/// Messages a fan-in sender pushes before yielding to the scheduler when its mailbox
/// send is synchronous/unbounded (so the receiver interleaves and queues stay short).
pub const FANIN_BATCH: u64 = 256;

/// Iteration counts shared by every system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Timed round trips for `pingpong-same-core`.
    pub pingpong_iters: u64,
    /// Timed round trips for `pingpong-cross-core`.
    pub cross_iters: u64,
    /// Untimed round trips before the timed ones (both ping-pong cases).
    pub warmup_iters: u64,
    /// Messages each sender sends in `fan-in`.
    pub fanin_per_sender: u64,
    /// Number of senders in `fan-in`.
    pub senders: u64,
    /// Actors spawned in `spawn`.
    pub spawn_count: u64,
    /// Actors spawned in `idle-actor-memory`.
    pub idle_count: u64,
}

impl Params {
    /// Counts for the full suite.
    pub fn full() -> Self {
        Params {
            pingpong_iters: 200_000,
            cross_iters: 20_000,
            warmup_iters: 2_000,
            fanin_per_sender: 500_000,
            senders: 4,
            spawn_count: 100_000,
            idle_count: 100_000,
        }
    }

    /// Small counts for a smoke test (`--quick`).
    pub fn quick() -> Self {
        Params {
            pingpong_iters: 20_000,
            cross_iters: 2_000,
            warmup_iters: 200,
            fanin_per_sender: 50_000,
            senders: 4,
            spawn_count: 10_000,
            idle_count: 10_000,
        }
    }
}

/// The systems compared, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// actix 0.13.
    Actix,
    /// ractor 0.16.
    Ractor,
    /// kameo 0.22.
    Kameo,
    /// Plain tokio tasks and `tokio::sync::mpsc` (reference).
    TokioMpsc,
    /// Raw crossbeam-channel pair between OS threads (the floor).
    Crossbeam,
    /// Sinew.
    Sinew,
}

impl System {
    /// Every system, in table order.
    pub const ALL: [System; 6] = [
        System::Actix,
        System::Ractor,
        System::Kameo,
        System::TokioMpsc,
        System::Crossbeam,
        System::Sinew,
    ];

    /// Name used in rows and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            System::Actix => "actix",
            System::Ractor => "ractor",
            System::Kameo => "kameo",
            System::TokioMpsc => "tokio-mpsc",
            System::Crossbeam => "crossbeam",
            System::Sinew => "sinew",
        }
    }
}

/// The cases of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    /// A and B ping-pong on one thread pinned to core 0; ns per round trip.
    PingpongSameCore,
    /// A on core 0, B on core 1; ns per round trip.
    PingpongCrossCore,
    /// `senders` senders and one receiver on one pinned thread; messages per second.
    FanIn,
    /// Time per spawn (spawned and running) of idle actors; ns.
    Spawn,
    /// Live heap bytes per idle actor.
    IdleActorMemory,
}

impl Case {
    /// Every case, in table order.
    pub const ALL: [Case; 5] = [
        Case::PingpongSameCore,
        Case::PingpongCrossCore,
        Case::FanIn,
        Case::Spawn,
        Case::IdleActorMemory,
    ];

    /// Case name used in rows.
    pub fn name(self) -> &'static str {
        match self {
            Case::PingpongSameCore => "pingpong-same-core",
            Case::PingpongCrossCore => "pingpong-cross-core",
            Case::FanIn => "fan-in",
            Case::Spawn => "spawn",
            Case::IdleActorMemory => "idle-actor-memory",
        }
    }

    /// (metric, unit, higher_is_better) of the case.
    pub fn metric(self) -> (&'static str, &'static str, bool) {
        match self {
            Case::PingpongSameCore | Case::PingpongCrossCore => ("round_trip", "ns", false),
            Case::FanIn => ("throughput", "msg/s", true),
            Case::Spawn => ("per_spawn", "ns", false),
            Case::IdleActorMemory => ("bytes_per_actor", "B", false),
        }
    }
}

/// Runs one measurement of `case` for `system` in the current process. Call it from
/// the main thread of a fresh process (the `__actors-one` child): it records the core
/// ids and, for the memory case, turns allocation counting on before anything else.
pub fn measure(system: System, case: Case, p: &Params) -> Option<f64> {
    if case == Case::IdleActorMemory {
        crate::alloc::enable_counting();
    }
    init_cores();
    macro_rules! dispatch {
        ($m:ident) => {
            match case {
                Case::PingpongSameCore => $m::pingpong_same(p),
                Case::PingpongCrossCore => $m::pingpong_cross(p),
                Case::FanIn => $m::fan_in(p),
                Case::Spawn => $m::spawn(p),
                Case::IdleActorMemory => $m::idle_memory(p),
            }
        };
    }
    match system {
        System::Actix => dispatch!(actix),
        System::Ractor => dispatch!(ractor),
        System::Kameo => dispatch!(kameo),
        System::TokioMpsc => dispatch!(tokio_mpsc),
        System::Crossbeam => dispatch!(crossbeam),
        System::Sinew => dispatch!(sinew),
    }
}

/// Options of the `actors` subcommand.
#[derive(Debug, Clone)]
pub struct Options {
    /// Iteration counts.
    pub params: Params,
    /// Repeats per measurement; the median is reported.
    pub repeats: usize,
    /// Systems to run (all when empty).
    pub systems: Vec<System>,
    /// Cases to run (all when empty).
    pub cases: Vec<Case>,
    /// Kill a child measurement that runs longer than this.
    pub timeout: Duration,
}

/// Outcome of one child measurement.
enum Outcome {
    Value(f64),
    NotApplicable,
    Failed(String),
}

/// Runs one measurement in a fresh child process.
fn run_child(system: System, case: Case, p: &Params, timeout: Duration) -> Outcome {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return Outcome::Failed(format!("current_exe: {e}")),
    };
    let params = serde_json::to_string(p).expect("serialize params");
    let spawned = Command::new(exe)
        .arg("__actors-one")
        .arg("--system")
        .arg(
            clap::ValueEnum::to_possible_value(&system)
                .expect("value")
                .get_name(),
        )
        .arg("--case")
        .arg(
            clap::ValueEnum::to_possible_value(&case)
                .expect("value")
                .get_name(),
        )
        .arg("--params")
        .arg(params)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("spawn child: {e}")),
    };
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::Failed(format!("timed out after {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Outcome::Failed(format!("wait: {e}")),
        }
    };
    let mut out = String::new();
    if let Some(mut so) = child.stdout.take() {
        let _ = so.read_to_string(&mut out);
    }
    if !status.success() {
        return Outcome::Failed(format!("child exited with {status}"));
    }
    parse_child_output(&out)
}

/// Line the child prints for a value.
pub fn format_child_output(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("value {v}"),
        None => "na".to_string(),
    }
}

fn parse_child_output(out: &str) -> Outcome {
    let line = out.lines().last().unwrap_or("").trim();
    if line == "na" {
        return Outcome::NotApplicable;
    }
    match line.strip_prefix("value ").map(str::parse::<f64>) {
        Some(Ok(v)) if v.is_finite() => Outcome::Value(v),
        Some(Ok(v)) => Outcome::Failed(format!(
            "non-finite value {v} (a memory figure taken with allocation counting off?)"
        )),
        _ => Outcome::Failed(format!("unexpected child output {out:?}")),
    }
}

/// Runs the suite and returns one row per (case, system) with the median over repeats.
pub fn run(opts: &Options) -> Vec<Row> {
    crate::report::warn_if_busy("actors");
    let systems: Vec<System> = if opts.systems.is_empty() {
        System::ALL.to_vec()
    } else {
        opts.systems.clone()
    };
    let cases: Vec<Case> = if opts.cases.is_empty() {
        Case::ALL.to_vec()
    } else {
        opts.cases.clone()
    };
    let mut rows = Vec::new();
    for &case in &cases {
        let (metric, unit, hib) = case.metric();
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); systems.len()];
        let mut skip = vec![false; systems.len()];
        for rep in 0..opts.repeats {
            for (i, &system) in systems.iter().enumerate() {
                if skip[i] {
                    continue;
                }
                let t = Instant::now();
                match run_child(system, case, &opts.params, opts.timeout) {
                    Outcome::Value(v) => {
                        eprintln!(
                            "[actors] {:<20} {:<11} rep {}/{}: {:>14.1} {} ({:.2}s)",
                            case.name(),
                            system.name(),
                            rep + 1,
                            opts.repeats,
                            v,
                            unit,
                            t.elapsed().as_secs_f64()
                        );
                        samples[i].push(v);
                    }
                    Outcome::NotApplicable => skip[i] = true,
                    Outcome::Failed(why) => {
                        eprintln!(
                            "[actors] {} {} rep {}: FAILED: {why}",
                            case.name(),
                            system.name(),
                            rep + 1
                        );
                    }
                }
            }
        }
        for (i, &system) in systems.iter().enumerate() {
            if let Some(m) = median(&samples[i]) {
                rows.push(Row {
                    suite: SUITE.into(),
                    case: case.name().into(),
                    system: system.name().into(),
                    metric: metric.into(),
                    value: m,
                    unit: unit.into(),
                    higher_is_better: hib,
                });
            }
        }
    }
    rows
}

/// How the actors table compares: sinew against the best of actix/ractor/kameo, with
/// crossbeam (the floor) or else tokio-mpsc as the baseline column.
pub const TABLE: TableSpec<'static> = TableSpec {
    peers: &["actix", "ractor", "kameo"],
    baselines: &["crossbeam", "tokio-mpsc"],
    subject: "sinew",
};

// ---------------------------------------------------------------------------------
// Helpers shared by the system modules.
// ---------------------------------------------------------------------------------

/// Core ids as seen by the unpinned main thread (see [`init_cores`]).
static CORES: OnceLock<Vec<core_affinity::CoreId>> = OnceLock::new();

/// Reads the machine's core ids once. Call it from the main thread before pinning
/// anything: `core_affinity::get_core_ids()` lists only the cores in the CALLING
/// thread's affinity mask, so a thread spawned from a thread pinned to core 0 would see
/// a single core and "core 1" would silently wrap to core 0.
pub fn init_cores() {
    CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
}

/// The `i`-th core id (wrapping when the machine has fewer cores).
pub fn core(i: usize) -> Option<core_affinity::CoreId> {
    let ids = CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default());
    if ids.is_empty() {
        return None;
    }
    Some(ids[i % ids.len()])
}

/// Pins the calling thread to core `i`; warns on stderr when pinning is impossible.
pub fn pin_current(i: usize) {
    let ok = core(i).map(core_affinity::set_for_current).unwrap_or(false);
    if !ok {
        eprintln!("[actors] warning: could not pin thread to core {i}");
    }
}

/// Spawns an OS thread pinned to core `i` running `f`.
pub fn spawn_pinned<T, F>(i: usize, name: &str, f: F) -> std::thread::JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            pin_current(i);
            f()
        })
        .expect("spawn thread")
}

/// Runs `f` on a fresh OS thread pinned to core `i` and returns its result.
pub fn on_pinned_thread<T, F>(i: usize, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    spawn_pinned(i, "bench", f)
        .join()
        .expect("bench thread panicked")
}

/// A current-thread tokio runtime with every driver enabled.
pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build tokio runtime")
}

/// Nanoseconds per operation.
pub fn ns_per(elapsed: Duration, ops: u64) -> f64 {
    elapsed.as_nanos() as f64 / ops.max(1) as f64
}

/// Operations per second.
pub fn per_sec(elapsed: Duration, ops: u64) -> f64 {
    ops as f64 / elapsed.as_secs_f64()
}

/// Bytes per actor from two readings of [`crate::alloc::live_bytes`]; NaN when
/// allocation counting is off (any case but `idle-actor-memory`), so a memory figure
/// taken without counting can never pass for a real one (the driver rejects NaN).
pub fn bytes_per(before: usize, after: usize, count: u64) -> f64 {
    if !crate::alloc::counting_enabled() {
        return f64::NAN;
    }
    crate::alloc::bytes_between(before, after) as f64 / count.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_output_roundtrip() {
        match parse_child_output(&format_child_output(Some(12.5))) {
            Outcome::Value(v) => assert_eq!(v, 12.5),
            _ => panic!("expected value"),
        }
        assert!(matches!(
            parse_child_output(&format_child_output(None)),
            Outcome::NotApplicable
        ));
        assert!(matches!(parse_child_output("garbage"), Outcome::Failed(_)));
    }

    #[test]
    fn every_system_and_case_has_a_name() {
        for s in System::ALL {
            assert!(!s.name().is_empty());
        }
        for c in Case::ALL {
            assert!(!c.name().is_empty());
        }
    }
}
