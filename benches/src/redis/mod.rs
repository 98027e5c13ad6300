//! The `redis` suite: Sinew's Redis server against redis-server under `redis-benchmark`, and
//! Sinew's Redis client against redis-rs and fred in front of a redis-server, each side with
//! one core.
//!
//! **Server cases** (`set-p1`, `get-p1`, `set-p16`, `get-p16`): `redis-benchmark -t set|get
//! -P 1|16 -c 50 -r 100000 --csv`, pinned to core 1 with `taskset`, against
//! - `sinew-uring`, `sinew-mio`: `sinew::redis::RedisServer` (the server of
//!   `examples/redis_server.rs`) with one shard on one pinned worker parked in an io_uring /
//!   epoll reactor: the bench re-executes itself with the hidden `__redis-serve` subcommand;
//! - `redis-server`: the system's redis-server (`--save "" --appendonly no`),
//!
//! each server process pinned to core 0 (`sched_setaffinity` before `exec`, tied to the
//! bench with `PR_SET_PDEATHSIG`, killed by a drop guard). Per repeat and server: start it,
//! wait until it answers `PING`, fill the key space with an untimed `SET -P 16` run, then
//! one timed redis-benchmark run per case (`-n` sized for about `--duration-secs` at the
//! rate redis-server reaches here). ops/s is redis-benchmark's figure; ops per server
//! CPU-second is `-n` / the server's `utime + stime` (`/proc/<pid>/stat`) across the run.
//!
//! **Client cases** (`client-c1`, `client-c16`, `client-c256`): a redis-server pinned to
//! core 0; each client library runs in a process of its own pinned to core 1 (the hidden
//! `__redis-client` subcommand) with 1, 16 or 256 concurrent callers sharing one
//! connection, for an untimed warm-up and then a timed window; see [`client`] for the
//! workload. Systems: `sinew-uring`, `sinew-mio` (`sinew_io_actors::RedisClient` on one
//! worker), `redis-rs` (multiplexed tokio connection), `fred`. Metrics: ops/s and ops per
//! client CPU-second (the client process's `getrusage` over the window).
//!
//! Repeats alternate across systems; medians are reported.

mod benchmark;
pub mod client;
mod launch;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::report::{goodness_ratio, median, Row, TableSpec};

use launch::Server;

/// Suite name used in every row.
pub const SUITE: &str = "redis";

/// Core the server processes are pinned to (index into the machine's core list).
pub const SERVER_CORE: usize = 0;

/// Core redis-benchmark and the client processes are pinned to.
pub const CLIENT_CORE: usize = 1;

/// redis-benchmark connections (`-c`).
pub const BENCH_CONNECTIONS: usize = 50;

/// redis-benchmark's random key space (`-r`).
pub const KEYSPACE: u64 = 100_000;

/// Rates used to size redis-benchmark's `-n` (about redis-server's on this machine), ops/s,
/// without and with pipelining.
const EXPECTED_RATE: [f64; 2] = [50_000.0, 500_000.0];

/// The systems compared: servers, clients, or (Sinew) both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// Sinew on the io_uring backend: the Redis server, or the Redis client.
    SinewUring,
    /// Sinew on the mio (epoll) backend: the Redis server, or the Redis client.
    SinewMio,
    /// The system's redis-server (server cases only).
    RedisServer,
    /// redis-rs with a multiplexed tokio connection (client cases only).
    RedisRs,
    /// fred (client cases only).
    Fred,
}

impl System {
    /// Every system, in run order.
    pub const ALL: [System; 5] = [
        System::SinewUring,
        System::SinewMio,
        System::RedisServer,
        System::RedisRs,
        System::Fred,
    ];

    /// Name used in rows and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            System::SinewUring => "sinew-uring",
            System::SinewMio => "sinew-mio",
            System::RedisServer => "redis-server",
            System::RedisRs => "redis-rs",
            System::Fred => "fred",
        }
    }

    /// Whether it takes part in the server cases.
    pub fn is_server(self) -> bool {
        matches!(
            self,
            System::SinewUring | System::SinewMio | System::RedisServer
        )
    }

    /// Whether it takes part in the client cases.
    pub fn is_client(self) -> bool {
        !matches!(self, System::RedisServer)
    }
}

/// The cases of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    /// redis-benchmark SET, no pipelining.
    #[value(name = "set-p1")]
    SetP1,
    /// redis-benchmark GET, no pipelining.
    #[value(name = "get-p1")]
    GetP1,
    /// redis-benchmark SET, 16 commands pipelined per connection.
    #[value(name = "set-p16")]
    SetP16,
    /// redis-benchmark GET, 16 commands pipelined per connection.
    #[value(name = "get-p16")]
    GetP16,
    /// Client: 1 caller.
    #[value(name = "client-c1")]
    ClientC1,
    /// Client: 16 concurrent callers.
    #[value(name = "client-c16")]
    ClientC16,
    /// Client: 256 concurrent callers.
    #[value(name = "client-c256")]
    ClientC256,
}

/// What a case measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A redis-benchmark test against each server.
    Server {
        /// `set` or `get`.
        test: &'static str,
        /// `-P`.
        pipeline: usize,
    },
    /// Each client library with this many concurrent callers against redis-server.
    Client {
        /// Concurrent callers.
        concurrency: usize,
    },
}

impl Case {
    /// Every case, in table order (each SET case before its GET case, so the keys exist).
    pub const ALL: [Case; 7] = [
        Case::SetP1,
        Case::GetP1,
        Case::SetP16,
        Case::GetP16,
        Case::ClientC1,
        Case::ClientC16,
        Case::ClientC256,
    ];

    /// Case name used in rows.
    pub fn name(self) -> &'static str {
        match self {
            Case::SetP1 => "set-p1",
            Case::GetP1 => "get-p1",
            Case::SetP16 => "set-p16",
            Case::GetP16 => "get-p16",
            Case::ClientC1 => "client-c1",
            Case::ClientC16 => "client-c16",
            Case::ClientC256 => "client-c256",
        }
    }

    /// What the case measures.
    pub fn kind(self) -> Kind {
        match self {
            Case::SetP1 => Kind::Server {
                test: "set",
                pipeline: 1,
            },
            Case::GetP1 => Kind::Server {
                test: "get",
                pipeline: 1,
            },
            Case::SetP16 => Kind::Server {
                test: "set",
                pipeline: 16,
            },
            Case::GetP16 => Kind::Server {
                test: "get",
                pipeline: 16,
            },
            Case::ClientC1 => Kind::Client { concurrency: 1 },
            Case::ClientC16 => Kind::Client { concurrency: 16 },
            Case::ClientC256 => Kind::Client { concurrency: 256 },
        }
    }

    /// Whether `system` takes part in this case.
    pub fn has(self, system: System) -> bool {
        match self.kind() {
            Kind::Server { .. } => system.is_server(),
            Kind::Client { .. } => system.is_client(),
        }
    }
}

/// Options of the `redis` subcommand.
#[derive(Debug, Clone)]
pub struct Options {
    /// Length of each timed run: a client window, or about one redis-benchmark test.
    pub duration: Duration,
    /// Untimed warm-up of each client run.
    pub warmup: Duration,
    /// Repeats per measurement; the median is reported.
    pub repeats: usize,
    /// Systems to run (all when empty).
    pub systems: Vec<System>,
    /// Cases to run (all when empty).
    pub cases: Vec<Case>,
}

impl Options {
    /// The defaults: 5 s runs after 1 s of warm-up, or 1 s after 0.3 s with `quick`.
    pub fn new(quick: bool, repeats: usize) -> Options {
        Options {
            duration: Duration::from_secs(if quick { 1 } else { 5 }),
            warmup: Duration::from_millis(if quick { 300 } else { 1000 }),
            repeats,
            systems: Vec::new(),
            cases: Vec::new(),
        }
    }

    /// redis-benchmark's `-n` for a test with pipeline depth `pipeline`: about
    /// [`Options::duration`] at redis-server's rate here.
    pub fn requests(&self, pipeline: usize) -> u64 {
        let rate = EXPECTED_RATE[usize::from(pipeline > 1)];
        ((rate * self.duration.as_secs_f64()) as u64).max(10_000)
    }
}

/// One timed run of one system in one case.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    /// Commands per second.
    ops_per_sec: f64,
    /// Commands per CPU-second of the measured process (the server, or the client).
    per_cpu: f64,
}

/// Metric names, units and directions, in table order.
const METRICS: [(&str, &str, bool); 2] = [
    ("throughput", "ops/s", true),
    ("ops_per_cpu_sec", "ops/cpu-s", true),
];

impl Sample {
    /// The value of the `i`-th entry of [`METRICS`].
    fn metric(&self, i: usize) -> f64 {
        match i {
            0 => self.ops_per_sec,
            _ => self.per_cpu,
        }
    }
}

/// Entry point of the hidden `__redis-serve` subcommand: serves Sinew's Redis server on
/// `addr` in this process until killed.
pub fn serve_main(system: System, addr: SocketAddr) -> Result<(), String> {
    match system {
        System::SinewUring => server::serve(sinew_transports::Backend::Uring, addr),
        System::SinewMio => server::serve(sinew_transports::Backend::Mio, addr),
        other => Err(format!(
            "{} is not served through __redis-serve",
            other.name()
        )),
    }
}

/// Tools the suite runs.
struct Tools {
    redis_server: PathBuf,
    redis_benchmark: Option<PathBuf>,
    taskset: PathBuf,
}

/// Finds `name` on `PATH` (or in `/usr/sbin`).
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Per case, the sample or why it failed.
type CaseResults = Vec<(Case, Result<Sample, String>)>;

/// Per case and client, the sample or why it failed.
type ClientResults = Vec<(Case, System, Result<Sample, String>)>;

/// Starts `system` as a server and waits until it answers PING.
fn start_server(system: System, tools: &Tools) -> Result<Server, String> {
    let mut server = Server::start(system, &tools.redis_server)?;
    server.wait_ready(Duration::from_secs(20))?;
    Ok(server)
}

/// Runs every server case against one started server: a key-filling warm-up, then one
/// timed redis-benchmark run per case.
fn measure_server(
    system: System,
    cases: &[Case],
    opts: &Options,
    tools: &Tools,
    bench: &std::path::Path,
) -> Result<CaseResults, String> {
    let server = start_server(system, tools)?;
    let timeout = Duration::from_secs(60) + opts.duration * 20;
    let spec = |test, pipeline, requests| benchmark::Spec {
        bin: bench,
        taskset: &tools.taskset,
        core: CLIENT_CORE,
        port: server.addr().port(),
        test,
        pipeline,
        clients: BENCH_CONNECTIONS,
        requests,
        keyspace: KEYSPACE,
        timeout,
    };
    // Fills ~95% of the key space, so every GET case reads mostly present keys.
    benchmark::run(&spec("set", 16, KEYSPACE * 3)).map_err(|e| format!("warm-up: {e}"))?;
    let mut out = Vec::new();
    for &case in cases {
        let Kind::Server { test, pipeline } = case.kind() else {
            continue;
        };
        let requests = opts.requests(pipeline);
        let sample = (|| {
            let before = server.cpu_seconds()?;
            let rps = benchmark::run(&spec(test, pipeline, requests))?;
            let cpu = server.cpu_seconds()? - before;
            if cpu <= 0.0 {
                return Err("the server used no measurable CPU time".to_string());
            }
            Ok(Sample {
                ops_per_sec: rps,
                per_cpu: requests as f64 / cpu,
            })
        })();
        out.push((case, sample));
    }
    drop(server);
    Ok(out)
}

/// Runs one client process (pinned to the client core) against the redis-server at `addr`.
fn measure_client(
    system: System,
    concurrency: usize,
    addr: SocketAddr,
    opts: &Options,
) -> Result<Sample, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("__redis-client")
        .arg("--system")
        .arg(system.name())
        .arg("--addr")
        .arg(addr.to_string())
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .arg("--warmup-ms")
        .arg(opts.warmup.as_millis().to_string())
        .arg("--duration-ms")
        .arg(opts.duration.as_millis().to_string());
    let timeout = opts.warmup + opts.duration + Duration::from_secs(60);
    let what = format!("{} client", system.name());
    let done = launch::run_to_end(launch::pinned(&mut cmd, CLIENT_CORE), &what, timeout)?;
    if !done.success {
        return Err(format!(
            "{what} exited with {}: {}",
            done.status,
            done.stderr.trim()
        ));
    }
    let r = client::parse_report(&done.stdout)
        .map_err(|e| format!("{what}: {e}; stderr: {}", done.stderr.trim()))?;
    if r.errors > 0 {
        return Err(format!(
            "{what}: {} failed commands: {}",
            r.errors,
            done.stderr.trim()
        ));
    }
    if r.ops == 0 || r.secs <= 0.0 || r.cpu_secs <= 0.0 {
        return Err(format!("{what}: nothing measured ({r:?})"));
    }
    Ok(Sample {
        ops_per_sec: r.ops_per_sec(),
        per_cpu: r.ops_per_cpu_sec(),
    })
}

/// Runs every client case with every client against one started redis-server.
fn measure_clients(
    systems: &[System],
    cases: &[Case],
    opts: &Options,
    tools: &Tools,
) -> Result<ClientResults, String> {
    let server = start_server(System::RedisServer, tools)?;
    let mut out = Vec::new();
    for &case in cases {
        let Kind::Client { concurrency } = case.kind() else {
            continue;
        };
        for &system in systems.iter().filter(|s| case.has(**s)) {
            out.push((
                case,
                system,
                measure_client(system, concurrency, server.addr(), opts),
            ));
        }
    }
    drop(server);
    Ok(out)
}

/// Samples per case and system: `samples[case][system]`.
type Samples = Vec<Vec<Vec<Sample>>>;

/// Logs one outcome and files the sample.
fn record(
    samples: &mut Samples,
    (ci, si): (usize, usize),
    (case, system): (Case, System),
    (rep, repeats): (usize, usize),
    result: Result<Sample, String>,
) {
    match result {
        Ok(s) => {
            eprintln!(
                "[redis] {:<11} {:<12} rep {}/{}: {:>10.0} ops/s {:>10.0} ops/cpu-s",
                case.name(),
                system.name(),
                rep + 1,
                repeats,
                s.ops_per_sec,
                s.per_cpu
            );
            samples[ci][si].push(s);
        }
        Err(why) => eprintln!(
            "[redis] {} {} rep {}/{}: FAILED: {why}",
            case.name(),
            system.name(),
            rep + 1,
            repeats
        ),
    }
}

/// Runs the suite and returns, per case, one row per (metric, system) with the median over
/// the repeats; within a case, systems are ranked by throughput.
pub fn run(opts: &Options) -> Result<Vec<Row>, String> {
    crate::report::warn_if_busy(SUITE);
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
    let tools = Tools {
        redis_server: which("redis-server")
            .ok_or("redis-server not found on PATH (apt-get install redis-server)")?,
        redis_benchmark: which("redis-benchmark"),
        taskset: which("taskset").ok_or("taskset not found on PATH (util-linux)")?,
    };
    let server_cases: Vec<Case> = cases
        .iter()
        .copied()
        .filter(|c| matches!(c.kind(), Kind::Server { .. }))
        .collect();
    let client_cases: Vec<Case> = cases
        .iter()
        .copied()
        .filter(|c| matches!(c.kind(), Kind::Client { .. }))
        .collect();
    if tools.redis_benchmark.is_none() && !server_cases.is_empty() {
        eprintln!(
            "[redis] warning: redis-benchmark not found; no server rows (apt-get install redis-tools)"
        );
    }
    let index = |case: Case, system: System| {
        (
            cases.iter().position(|c| *c == case).unwrap_or(0),
            systems.iter().position(|s| *s == system).unwrap_or(0),
        )
    };
    let mut samples: Samples = vec![vec![Vec::new(); systems.len()]; cases.len()];
    for rep in 0..opts.repeats {
        if let (Some(bench), false) = (&tools.redis_benchmark, server_cases.is_empty()) {
            for &system in systems.iter().filter(|s| s.is_server()) {
                let t = Instant::now();
                match measure_server(system, &server_cases, opts, &tools, bench) {
                    Ok(results) => {
                        for (case, result) in results {
                            let at = index(case, system);
                            record(
                                &mut samples,
                                at,
                                (case, system),
                                (rep, opts.repeats),
                                result,
                            );
                        }
                    }
                    Err(why) => eprintln!(
                        "[redis] {} server rep {}/{}: FAILED: {why}",
                        system.name(),
                        rep + 1,
                        opts.repeats
                    ),
                }
                eprintln!(
                    "[redis] {} server rep {}/{} took {:.1}s",
                    system.name(),
                    rep + 1,
                    opts.repeats,
                    t.elapsed().as_secs_f64()
                );
            }
        }
        if !client_cases.is_empty() && systems.iter().any(|s| s.is_client()) {
            let t = Instant::now();
            match measure_clients(&systems, &client_cases, opts, &tools) {
                Ok(results) => {
                    for (case, system, result) in results {
                        let at = index(case, system);
                        record(
                            &mut samples,
                            at,
                            (case, system),
                            (rep, opts.repeats),
                            result,
                        );
                    }
                }
                Err(why) => eprintln!(
                    "[redis] clients rep {}/{}: FAILED: {why}",
                    rep + 1,
                    opts.repeats
                ),
            }
            eprintln!(
                "[redis] clients rep {}/{} took {:.1}s",
                rep + 1,
                opts.repeats,
                t.elapsed().as_secs_f64()
            );
        }
    }
    Ok(rows(&cases, &systems, &samples))
}

/// Medians per (case, system, metric), systems ranked by throughput within each case.
fn rows(cases: &[Case], systems: &[System], samples: &[Vec<Vec<Sample>>]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        let mut medians: Vec<(System, [f64; METRICS.len()])> = Vec::new();
        for (si, &system) in systems.iter().enumerate() {
            let s = &samples[ci][si];
            if s.is_empty() {
                continue;
            }
            let mut m = [0.0; METRICS.len()];
            for (i, v) in m.iter_mut().enumerate() {
                let vs: Vec<f64> = s.iter().map(|x| x.metric(i)).collect();
                *v = median(&vs).unwrap_or(0.0);
            }
            medians.push((system, m));
        }
        medians.sort_by(|a, b| b.1[0].total_cmp(&a.1[0]));
        for (i, (metric, unit, hib)) in METRICS.iter().enumerate() {
            for (system, m) in &medians {
                rows.push(Row {
                    suite: SUITE.into(),
                    case: case.name().into(),
                    system: system.name().into(),
                    metric: (*metric).into(),
                    value: m[i],
                    unit: (*unit).into(),
                    higher_is_better: *hib,
                });
            }
        }
    }
    rows
}

/// How the table compares: Sinew on io_uring is the subject; redis-server is the server
/// cases' reference, redis-rs the client cases' (fred is the other client peer).
pub const TABLE: TableSpec<'static> = TableSpec {
    peers: &["redis-server", "redis-rs", "fred"],
    baselines: &["redis-server", "redis-rs"],
    subject: "sinew-uring",
};

/// The goals, one line per (case, Sinew backend, metric) present: the server at
/// least 1.2x redis-server, the client at least 1.3x redis-rs, in ops/s and per CPU-second.
pub fn goal_lines(rows: &[Row]) -> Vec<String> {
    let find = |case: &str, system: &str, metric: &str| {
        rows.iter()
            .find(|r| r.case == case && r.system == system && r.metric == metric)
    };
    let mut out = Vec::new();
    for case in Case::ALL {
        let (theirs, target) = match case.kind() {
            Kind::Server { .. } => ("redis-server", 1.2),
            Kind::Client { .. } => ("redis-rs", 1.3),
        };
        for ours in ["sinew-uring", "sinew-mio"] {
            for (metric, _, hib) in METRICS {
                if let (Some(a), Some(b)) = (
                    find(case.name(), ours, metric),
                    find(case.name(), theirs, metric),
                ) {
                    let ratio = goodness_ratio(a.value, b.value, hib);
                    out.push(format!(
                        "  {ours:<11} vs {theirs:<12} {:<11} {metric:<15} {ratio:>5.2}x \
                         (goal >= {target:.1}x)  {}",
                        case.name(),
                        if ratio >= target { "met" } else { "MISSED" }
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ops: f64) -> Sample {
        Sample {
            ops_per_sec: ops,
            per_cpu: ops * 2.0,
        }
    }

    #[test]
    fn rows_rank_by_throughput_and_take_medians() {
        let cases = [Case::GetP16];
        let systems = [System::RedisServer, System::SinewUring, System::SinewMio];
        let samples = vec![vec![
            vec![sample(100.0), sample(300.0), sample(200.0)],
            vec![sample(500.0)],
            vec![],
        ]];
        let rows = rows(&cases, &systems, &samples);
        assert_eq!(rows.len(), 2 * METRICS.len(), "no rows for sinew-mio");
        assert_eq!(rows[0].system, "sinew-uring");
        assert_eq!(rows[0].metric, "throughput");
        assert_eq!(rows[1].system, "redis-server");
        assert_eq!(rows[1].value, 200.0);
        assert_eq!(rows[3].metric, "ops_per_cpu_sec");
        assert!(rows[3].metric.contains("cpu"));
        assert_eq!(rows[3].value, 400.0);
    }

    #[test]
    fn goals_compare_with_the_right_reference() {
        let mk = |case: &str, system: &str, metric: &str, v: f64| Row {
            suite: SUITE.into(),
            case: case.into(),
            system: system.into(),
            metric: metric.into(),
            value: v,
            unit: "ops/s".into(),
            higher_is_better: true,
        };
        let rows = vec![
            mk("set-p1", "sinew-uring", "throughput", 130.0),
            mk("set-p1", "redis-server", "throughput", 100.0),
            mk("client-c16", "sinew-uring", "throughput", 125.0),
            mk("client-c16", "redis-rs", "throughput", 100.0),
            mk("client-c16", "fred", "throughput", 10.0),
        ];
        let lines = goal_lines(&rows);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("redis-server") && lines[0].contains("met"));
        assert!(lines[1].contains("redis-rs") && lines[1].contains("MISSED"));
    }

    #[test]
    fn cases_know_their_systems() {
        assert!(Case::SetP1.has(System::RedisServer));
        assert!(!Case::SetP1.has(System::Fred));
        assert!(Case::ClientC256.has(System::RedisRs));
        assert!(!Case::ClientC1.has(System::RedisServer));
        assert!(Case::ClientC1.has(System::SinewMio) && Case::GetP16.has(System::SinewMio));
        // Each GET case runs after a SET case of the same depth.
        let pos = |c: Case| Case::ALL.iter().position(|x| *x == c);
        assert!(pos(Case::SetP1) < pos(Case::GetP1));
        assert!(pos(Case::SetP16) < pos(Case::GetP16));
    }

    #[test]
    fn requests_scale_with_duration_and_depth() {
        let quick = Options::new(true, 1);
        let full = Options::new(false, 3);
        assert_eq!(quick.requests(1), 50_000);
        assert_eq!(quick.requests(16), 500_000);
        assert_eq!(full.requests(1), 250_000);
        let mut tiny = Options::new(true, 1);
        tiny.duration = Duration::from_millis(1);
        assert_eq!(tiny.requests(1), 10_000);
    }
}
