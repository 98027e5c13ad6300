//! The `http` suite: `wrk` on loopback against Sinew's HTTP/1.1 server (on io_uring and on
//! mio) and its peers, all with the same core budget, ranked by requests per server
//! CPU-second.
//!
//! Systems (each a server process of its own, one worker / one thread of work):
//! - `sinew-uring`, `sinew-mio`: the `examples/http_hello.rs` application (an actor answering
//!   `GET /plaintext` and `GET /json`) behind `sinew_io_actors::serve` with `Http1`, one
//!   pinned worker parked in an io_uring / epoll reactor;
//! - `sinew-uring-inline`, `sinew-mio-inline`: the same answers given on the connection's own
//!   turn (`Routes::answer_inline`), with no actor message, handler turn or reply address:
//!   what the per-request actor hop of the reference path costs;
//! - `hyper`: hyper 1 `http1` connections on a current-thread tokio runtime;
//! - `actix-web`: actix-web 4 with 1 worker;
//! - `may-minihttp`: may_minihttp on 1 may worker;
//! - `nginx`: the system nginx, 1 process (`master_process off`), `return 200` locations, a
//!   config generated in a temporary directory;
//! - `canned`: a hand-written io_uring server that counts requests by their `\r\n\r\n` and
//!   writes as many canned responses; no parsing, no routing, no allocation per request: the
//!   practical upper bound on this machine.
//!
//! Every server answers `/plaintext` with `Hello, World!` (`text/plain`) and `/json` with
//! the static body `{"message":"Hello, World!"}` (`application/json`), with a `Date` header.
//!
//! Method, per repeat and system: the bench re-executes itself with the hidden
//! `__http-serve --system S --addr A` subcommand (nginx is started directly), pinned to core
//! 0 with `sched_setaffinity` before `exec` and tied to the bench with `PR_SET_PDEATHSIG`;
//! it waits until the port accepts connections, checks one response of each endpoint, runs
//! one untimed warm-up `wrk`, then one timed `taskset -c 1 wrk -t1 -c32 --latency` per case.
//! Around each timed run it reads the server's `utime + stime` from `/proc/<pid>/stat`;
//! requests per server CPU-second = wrk's total requests / that CPU time. Repeats alternate
//! across systems; medians are reported. The server is always killed (a drop guard), also
//! when a step fails.
//!
//! Cases: `plaintext` and `json` (one request in flight per connection) and
//! `plaintext-pipelined` (16 requests per write, from a Lua script written at run time).

mod actix;
mod canned;
mod hyper;
mod launch;
mod may;
mod nginx;
mod sinew;
mod wrk;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::report::{goodness_ratio, median, Row, TableSpec};

use launch::{Server, TempDir};

/// Suite name used in every row.
pub const SUITE: &str = "http";

/// Connections wrk keeps open (`-c`): enough to keep one server core busy in every case
/// (wrk's single thread on core 1 is not the bottleneck at this count), few enough that
/// p99 latency stays meaningful.
pub const CONNECTIONS: usize = 32;

/// Requests per write in `plaintext-pipelined`.
pub const PIPELINE_DEPTH: usize = 16;

/// Core the server process is pinned to (index into the machine's core list).
pub const SERVER_CORE: usize = 0;

/// Core wrk is pinned to.
pub const CLIENT_CORE: usize = 1;

/// Body of `/plaintext`.
pub const PLAINTEXT_BODY: &str = "Hello, World!";

/// Body of `/json` (static: no server serializes per request).
pub const JSON_BODY: &str = r#"{"message":"Hello, World!"}"#;

/// The servers compared, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// Sinew's HTTP/1.1 server on the io_uring backend.
    SinewUring,
    /// Sinew's HTTP/1.1 server on the mio (epoll) backend.
    SinewMio,
    /// Sinew on io_uring, answering on the connection's turn (`Routes::answer_inline`).
    SinewUringInline,
    /// Sinew on mio, answering on the connection's turn (`Routes::answer_inline`).
    SinewMioInline,
    /// hyper 1 on a current-thread tokio runtime.
    Hyper,
    /// actix-web 4 with one worker.
    ActixWeb,
    /// may_minihttp with one may worker.
    MayMinihttp,
    /// nginx with one process and `return 200` locations.
    Nginx,
    /// A canned-response io_uring server: the practical upper bound.
    Canned,
}

impl System {
    /// Every system, in run order.
    pub const ALL: [System; 9] = [
        System::SinewUring,
        System::SinewMio,
        System::SinewUringInline,
        System::SinewMioInline,
        System::Hyper,
        System::ActixWeb,
        System::MayMinihttp,
        System::Nginx,
        System::Canned,
    ];

    /// Name used in rows and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            System::SinewUring => "sinew-uring",
            System::SinewMio => "sinew-mio",
            System::SinewUringInline => "sinew-uring-inline",
            System::SinewMioInline => "sinew-mio-inline",
            System::Hyper => "hyper",
            System::ActixWeb => "actix-web",
            System::MayMinihttp => "may-minihttp",
            System::Nginx => "nginx",
            System::Canned => "canned",
        }
    }
}

/// The cases of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    /// `GET /plaintext`, one request in flight per connection.
    Plaintext,
    /// `GET /plaintext`, 16 requests pipelined per write.
    #[value(name = "plaintext-pipelined")]
    PlaintextPipelined,
    /// `GET /json`, one request in flight per connection.
    Json,
}

impl Case {
    /// Every case, in table order.
    pub const ALL: [Case; 3] = [Case::Plaintext, Case::PlaintextPipelined, Case::Json];

    /// Case name used in rows.
    pub fn name(self) -> &'static str {
        match self {
            Case::Plaintext => "plaintext",
            Case::PlaintextPipelined => "plaintext-pipelined",
            Case::Json => "json",
        }
    }

    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Case::Plaintext | Case::PlaintextPipelined => "/plaintext",
            Case::Json => "/json",
        }
    }

    /// Requests per write (1 without pipelining).
    pub fn depth(self) -> usize {
        match self {
            Case::PlaintextPipelined => PIPELINE_DEPTH,
            Case::Plaintext | Case::Json => 1,
        }
    }

    /// Whether wrk's latency percentiles mean anything here: with pipelining wrk (4.1)
    /// records one sample per batch of responses and prints 0 for most percentiles, so the
    /// pipelined case reports no latency.
    pub fn latency(self) -> bool {
        self.depth() == 1
    }
}

/// Options of the `http` subcommand.
#[derive(Debug, Clone)]
pub struct Options {
    /// Length of each timed wrk run.
    pub duration: Duration,
    /// Length of the untimed warm-up run after each server start.
    pub warmup: Duration,
    /// Repeats per measurement; the median is reported.
    pub repeats: usize,
    /// Systems to run (all when empty).
    pub systems: Vec<System>,
    /// Cases to run (all when empty).
    pub cases: Vec<Case>,
    /// wrk connections.
    pub connections: usize,
}

impl Options {
    /// The defaults: 5 s runs, or 1 s with `quick`.
    pub fn new(quick: bool, repeats: usize) -> Options {
        Options {
            duration: Duration::from_secs(if quick { 1 } else { 5 }),
            warmup: Duration::from_secs(1),
            repeats,
            systems: Vec::new(),
            cases: Vec::new(),
            connections: CONNECTIONS,
        }
    }
}

/// One timed wrk run against one server.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    /// Requests per second (wrk's `Requests/sec`).
    rps: f64,
    /// Requests per CPU-second of the server process.
    per_cpu: f64,
    /// Median latency, microseconds (`None` with pipelining: see [`Case::latency`]).
    p50_us: Option<f64>,
    /// 99th percentile latency, microseconds (`None` with pipelining).
    p99_us: Option<f64>,
}

/// Metric names, units and directions, in table order (efficiency first: it is the focus).
const METRICS: [(&str, &str, bool); 4] = [
    ("req_per_cpu_sec", "req/cpu-s", true),
    ("throughput", "req/s", true),
    ("latency_p50", "us", false),
    ("latency_p99", "us", false),
];

impl Sample {
    /// The value of the `i`-th entry of [`METRICS`], if measured.
    fn metric(&self, i: usize) -> Option<f64> {
        match i {
            0 => Some(self.per_cpu),
            1 => Some(self.rps),
            2 => self.p50_us,
            _ => self.p99_us,
        }
    }
}

/// Entry point of the hidden `__http-serve` subcommand: serves `system` on `addr` in this
/// process until killed.
pub fn serve_main(system: System, addr: SocketAddr) -> Result<(), String> {
    match system {
        System::SinewUring => sinew::serve(sinew_transports::Backend::Uring, addr, false),
        System::SinewMio => sinew::serve(sinew_transports::Backend::Mio, addr, false),
        System::SinewUringInline => sinew::serve(sinew_transports::Backend::Uring, addr, true),
        System::SinewMioInline => sinew::serve(sinew_transports::Backend::Mio, addr, true),
        System::Hyper => hyper::serve(addr),
        System::ActixWeb => actix::serve(addr),
        System::MayMinihttp => may::serve(addr),
        System::Canned => canned::serve(addr),
        System::Nginx => Err("nginx is started directly, not through __http-serve".into()),
    }
}

/// The wrk Lua script of `plaintext-pipelined`: every write carries `depth` requests
/// (wrk counts each response it parses, so requests/s counts requests, not writes).
const PIPELINE_LUA: &str = include_str!("pipeline.lua");

/// Tools the suite runs.
struct Tools {
    wrk: PathBuf,
    taskset: PathBuf,
    nginx: Option<PathBuf>,
    /// The pipelining script.
    script: PathBuf,
}

/// Finds `name` on `PATH` (or in `/usr/sbin`, where nginx lives).
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Per case, the sample or why it failed.
type CaseResults = Vec<(Case, Result<Sample, String>)>;

/// Runs every timed case against one started, checked and warmed-up server.
fn measure_system(
    system: System,
    cases: &[Case],
    opts: &Options,
    tools: &Tools,
) -> Result<CaseResults, String> {
    let mut server = Server::start(system, tools.nginx.as_deref())?;
    server.wait_ready(Duration::from_secs(20))?;
    for case in [Case::Plaintext, Case::Json] {
        let body = match case {
            Case::Json => JSON_BODY,
            _ => PLAINTEXT_BODY,
        };
        server
            .check(case.path(), body)
            .map_err(|e| format!("GET {}: {e}", case.path()))?;
    }
    let run = |case: Case, duration: Duration| {
        wrk::run(&wrk::Spec {
            wrk: &tools.wrk,
            taskset: &tools.taskset,
            core: CLIENT_CORE,
            connections: opts.connections,
            duration,
            url: format!("http://{}{}", server.addr(), case.path()),
            pipeline: (case.depth() > 1).then(|| (tools.script.as_path(), case.depth())),
        })
    };
    run(Case::Plaintext, opts.warmup).map_err(|e| format!("warm-up: {e}"))?;
    let mut out = Vec::new();
    for &case in cases {
        let sample = (|| {
            let before = server.cpu_seconds()?;
            let w = run(case, opts.duration)?;
            let cpu = server.cpu_seconds()? - before;
            if w.non_2xx > 0 {
                return Err(format!("{} non-2xx responses", w.non_2xx));
            }
            if w.socket_errors > 0 {
                eprintln!(
                    "[http] warning: {} {}: {} socket errors",
                    case.name(),
                    system.name(),
                    w.socket_errors
                );
            }
            if cpu <= 0.0 {
                return Err("the server used no measurable CPU time".into());
            }
            Ok(Sample {
                rps: w.rps,
                per_cpu: w.requests as f64 / cpu,
                p50_us: case.latency().then_some(w.p50_us),
                p99_us: case.latency().then_some(w.p99_us),
            })
        })();
        out.push((case, sample));
    }
    drop(server);
    Ok(out)
}

/// Runs the suite and returns, per case, one row per (metric, system) with the median over
/// the repeats; within a case, systems are ranked by requests per server CPU-second.
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
    let dir = TempDir::new("run").map_err(|e| format!("temporary directory: {e}"))?;
    let script = dir.path().join("pipeline.lua");
    std::fs::write(&script, PIPELINE_LUA)
        .map_err(|e| format!("write {}: {e}", script.display()))?;
    let tools = Tools {
        wrk: which("wrk").ok_or("wrk not found on PATH (apt-get install wrk)")?,
        taskset: which("taskset").ok_or("taskset not found on PATH (util-linux)")?,
        nginx: which("nginx"),
        script,
    };
    if tools.nginx.is_none() && systems.contains(&System::Nginx) {
        eprintln!("[http] warning: nginx not found; no nginx rows (apt-get install nginx)");
    }
    // samples[case][system]
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); systems.len()]; cases.len()];
    for rep in 0..opts.repeats {
        for (si, &system) in systems.iter().enumerate() {
            if system == System::Nginx && tools.nginx.is_none() {
                continue;
            }
            let t = Instant::now();
            let results = match measure_system(system, &cases, opts, &tools) {
                Ok(r) => r,
                Err(why) => {
                    eprintln!(
                        "[http] {} rep {}/{}: FAILED: {why}",
                        system.name(),
                        rep + 1,
                        opts.repeats
                    );
                    continue;
                }
            };
            for (case, result) in results {
                let ci = cases.iter().position(|c| *c == case).unwrap_or(0);
                match result {
                    Ok(s) => {
                        let us = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}us"));
                        eprintln!(
                            "[http] {:<19} {:<12} rep {}/{}: {:>9.0} req/cpu-s {:>9.0} req/s \
                             p50 {:>8} p99 {:>9}",
                            case.name(),
                            system.name(),
                            rep + 1,
                            opts.repeats,
                            s.per_cpu,
                            s.rps,
                            us(s.p50_us),
                            us(s.p99_us)
                        );
                        samples[ci][si].push(s);
                    }
                    Err(why) => eprintln!(
                        "[http] {} {} rep {}/{}: FAILED: {why}",
                        case.name(),
                        system.name(),
                        rep + 1,
                        opts.repeats
                    ),
                }
            }
            eprintln!(
                "[http] {} rep {}/{} took {:.1}s",
                system.name(),
                rep + 1,
                opts.repeats,
                t.elapsed().as_secs_f64()
            );
        }
    }
    drop(dir);
    Ok(rows(&cases, &systems, &samples))
}

/// Medians per (case, system, metric), systems ranked by efficiency within each case.
fn rows(cases: &[Case], systems: &[System], samples: &[Vec<Vec<Sample>>]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        // medians[system] = per metric, for systems with at least one sample.
        let mut medians: Vec<(System, [Option<f64>; METRICS.len()])> = Vec::new();
        for (si, &system) in systems.iter().enumerate() {
            let s = &samples[ci][si];
            if s.is_empty() {
                continue;
            }
            let mut m = [None; METRICS.len()];
            for (i, v) in m.iter_mut().enumerate() {
                let vs: Vec<f64> = s.iter().filter_map(|x| x.metric(i)).collect();
                *v = median(&vs);
            }
            medians.push((system, m));
        }
        let efficiency = |m: &[Option<f64>; METRICS.len()]| m[0].unwrap_or(0.0);
        medians.sort_by(|a, b| efficiency(&b.1).total_cmp(&efficiency(&a.1)));
        for (i, (metric, unit, hib)) in METRICS.iter().enumerate() {
            for (system, m) in &medians {
                let Some(value) = m[i] else { continue };
                rows.push(Row {
                    suite: SUITE.into(),
                    case: case.name().into(),
                    system: system.name().into(),
                    metric: (*metric).into(),
                    value,
                    unit: (*unit).into(),
                    higher_is_better: *hib,
                });
            }
        }
    }
    rows
}

/// How the table compares: Sinew on io_uring is the subject, the crates.io servers and nginx
/// are the peers, the canned server is the baseline (the practical limit).
pub const TABLE: TableSpec<'static> = TableSpec {
    peers: &["hyper", "actix-web", "may-minihttp", "nginx"],
    baselines: &["canned"],
    subject: "sinew-uring",
};

/// Sinew's rows: the reference path (each request an actor message) on each backend, then
/// the inline answers.
const SINEW: [&str; 4] = [
    "sinew-uring",
    "sinew-mio",
    "sinew-uring-inline",
    "sinew-mio-inline",
];

/// The issue's goals on requests per server CPU-second, one line per (goal, case, Sinew
/// backend) present: >= may-minihttp in every case, >= 1.5x hyper pipelined, within 10% of
/// the canned server.
pub fn goal_lines(rows: &[Row]) -> Vec<String> {
    let find = |case: &str, system: &str| {
        rows.iter()
            .find(|r| r.case == case && r.system == system && r.metric == METRICS[0].0)
    };
    let mut out = Vec::new();
    let goals: [(&str, f64, Option<Case>); 3] = [
        ("may-minihttp", 1.0, None),
        ("hyper", 1.5, Some(Case::PlaintextPipelined)),
        ("canned", 0.9, None),
    ];
    for (theirs, target, only) in goals {
        for case in Case::ALL {
            if only.is_some_and(|c| c != case) {
                continue;
            }
            for ours in SINEW {
                if let (Some(a), Some(b)) = (find(case.name(), ours), find(case.name(), theirs)) {
                    let ratio = goodness_ratio(a.value, b.value, true);
                    out.push(format!(
                        "  {ours:<18} vs {theirs:<12} {:<19} {ratio:>5.2}x (goal >= {target:.2}x)  {}",
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

    fn sample(per_cpu: f64) -> Sample {
        Sample {
            rps: per_cpu / 2.0,
            per_cpu,
            p50_us: Some(10.0),
            p99_us: None,
        }
    }

    #[test]
    fn rows_rank_by_efficiency_and_take_medians() {
        let cases = [Case::Plaintext];
        let systems = [System::Hyper, System::SinewUring];
        let samples = vec![vec![
            vec![sample(100.0), sample(300.0), sample(200.0)],
            vec![sample(500.0)],
        ]];
        let rows = rows(&cases, &systems, &samples);
        // No p99 samples: no p99 rows.
        assert_eq!(rows.len(), 2 * (METRICS.len() - 1));
        assert_eq!(rows[0].system, "sinew-uring");
        assert_eq!(rows[0].metric, "req_per_cpu_sec");
        assert!(rows[0].metric.contains("cpu"));
        assert_eq!(rows[1].system, "hyper");
        assert_eq!(rows[1].value, 200.0);
        assert_eq!(rows[3].value, 100.0, "hyper throughput median");
    }

    #[test]
    fn goals_cover_every_comparison() {
        let mk = |case: &str, system: &str, v: f64| Row {
            suite: SUITE.into(),
            case: case.into(),
            system: system.into(),
            metric: METRICS[0].0.into(),
            value: v,
            unit: METRICS[0].1.into(),
            higher_is_better: true,
        };
        let rows = vec![
            mk("plaintext-pipelined", "sinew-uring", 150.0),
            mk("plaintext-pipelined", "hyper", 100.0),
            mk("plaintext-pipelined", "may-minihttp", 160.0),
            mk("plaintext-pipelined", "canned", 160.0),
        ];
        let lines = goal_lines(&rows);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].contains("MISSED"), "{lines:?}");
        assert!(lines[1].contains("met"), "{lines:?}");
        assert!(lines[2].contains("met"), "{lines:?}");
    }
}
