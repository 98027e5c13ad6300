//! The `transports` suite: 64-byte TCP ping-pong and bulk streaming over loopback, for
//! Sinew's two production backends (io_uring and mio/epoll, driven through
//! `sinew_transports::Reactor` directly) beside tokio and monoio (io_uring and its legacy
//! epoll driver), plus syscalls per request counted by the kernel.
//!
//! Every system runs the SAME workload with the same connection counts and buffer sizes:
//! - a server thread pinned to core 0 (one reactor / one current-thread runtime) accepts
//!   the connections and either echoes what it reads (ping-pong) or reads and counts
//!   (bulk), answering one byte once it has the whole stream;
//! - a client thread pinned to core 1 (its own reactor / runtime) opens the connections
//!   (`TCP_NODELAY` on both ends) and drives them;
//! - ping-pong: each connection sends a 64-byte request and waits for the 64-byte echo
//!   before the next one; `warmup_per_conn` untimed round trips come first. Cases:
//!   `pingpong-64b` (1 connection: median round trip and requests/s) and
//!   `pingpong-64b-c16` (16 connections at once: requests/s in total) and
//!   `pingpong-64b-1core` (1 connection, client and server threads both on core 0: this
//!   VM halts an idle vCPU and waking it costs ~22 us each way, which dominates the
//!   cross-core round trip; on one core the round trip is the CPU cost per request);
//! - bulk: one connection streams `bulk_bytes` in 256 KiB writes; the server reads into a
//!   64 KiB buffer; the time runs from the first write until the server's one-byte
//!   acknowledgement of the last byte arrives; GiB/s, and GiB per CPU-second of the
//!   measuring process (server and client threads together, `getrusage`).
//!
//! Every measurement runs in a fresh child process (the executable re-invoked with the
//! hidden `__transports-one` subcommand), so no runtime's global state survives into the
//! next; repeats are interleaved across systems and the median is reported.
//!
//! Syscalls per request: `pingpong-64b` and `pingpong-64b-c16` run again with a gate:
//! the child does its setup and warmup, says `ready` on stdout and waits; the parent
//! attaches `perf stat -e raw_syscalls:sys_enter --per-thread -p <child>` (a kernel
//! tracepoint: exact counts at negligible cost), lets the timed phase run, and stops perf
//! when the child says `done`. So only the timed requests are counted, on both threads
//! (`syscalls_per_request`) and on the server thread alone
//! (`server_syscalls_per_request`). Without perf, `strace -c -f -p` is used instead
//! (whole process only; ptrace slows every syscall, so its counts are a rougher guide).

pub mod monoio;
pub mod sinew;
pub mod tokio;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::actors::spawn_pinned;
use crate::report::{goodness_ratio, median, Row, TableSpec};

/// Suite name used in every row.
pub const SUITE: &str = "transports";

/// Bytes in one ping-pong request (and its echo).
pub const REQ: usize = 64;
/// The request payload.
pub static REQ_BYTES: [u8; REQ] = [0x5a; REQ];
/// Receive buffer of the echo server and of ping-pong clients.
pub const ECHO_BUF: usize = 4096;
/// Size of each write of the bulk client.
pub const BULK_CHUNK: usize = 256 * 1024;
/// Receive buffer of the bulk server.
pub const BULK_RECV_BUF: usize = 64 * 1024;
/// Bulk writes a completion-based client keeps submitted at once.
pub const BULK_WINDOW: usize = 2;
/// Connections of `pingpong-64b-c16`.
pub const MANY_CONNS: usize = 16;
/// Thread names (seen by `perf --per-thread`; at most 15 bytes).
pub const SERVER_THREAD: &str = "tp-server";
/// See [`SERVER_THREAD`].
pub const CLIENT_THREAD: &str = "tp-client";

/// Iteration counts shared by every system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Timed round trips of `pingpong-64b`.
    pub pingpong_iters: u64,
    /// Timed round trips of `pingpong-64b-c16`, over all connections.
    pub many_iters: u64,
    /// Untimed round trips per connection before the timed ones.
    pub warmup_per_conn: u64,
    /// Bytes streamed by `bulk`.
    pub bulk_bytes: u64,
    /// Timed round trips of the syscall-counting runs (`pingpong-64b` and `-c16`).
    pub syscall_iters: u64,
}

impl Params {
    /// Counts for the full suite.
    pub fn full() -> Self {
        Params {
            pingpong_iters: 20_000,
            many_iters: 160_000,
            warmup_per_conn: 500,
            // 256 MiB took 35-90 ms and measured connection start-up (TCP window growth,
            // first-touch pages) more than streaming: tokio read 2x sinew-mio there and
            // 1.04x its inverse at 2 GiB.
            bulk_bytes: 2048 << 20,
            syscall_iters: 10_000,
        }
    }

    /// Small counts for a smoke test (`--quick`).
    pub fn quick() -> Self {
        Params {
            pingpong_iters: 2_000,
            many_iters: 16_000,
            warmup_per_conn: 100,
            bulk_bytes: 32 << 20,
            syscall_iters: 3_200,
        }
    }
}

/// The systems compared, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// Sinew's io_uring backend (`Reactor` on `Backend::Uring`).
    SinewUring,
    /// Sinew's mio (epoll) backend (`Reactor` on `Backend::Mio`).
    SinewMio,
    /// monoio 0.2 on its io_uring driver.
    Monoio,
    /// monoio 0.2 on its legacy (mio/epoll) driver.
    MonoioEpoll,
    /// tokio 1 (epoll), one current-thread runtime per thread.
    Tokio,
}

impl System {
    /// Every system, in table order.
    pub const ALL: [System; 5] = [
        System::SinewUring,
        System::SinewMio,
        System::Monoio,
        System::MonoioEpoll,
        System::Tokio,
    ];

    /// Name used in rows and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            System::SinewUring => "sinew-uring",
            System::SinewMio => "sinew-mio",
            System::Monoio => "monoio",
            System::MonoioEpoll => "monoio-epoll",
            System::Tokio => "tokio",
        }
    }

    fn arg(self) -> String {
        value_name(&self)
    }
}

/// The cases of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    /// One connection, 64-byte request/echo; round trip (ns) and requests/s.
    #[value(name = "pingpong-64b")]
    Pingpong64b,
    /// 16 connections ping-ponging at once; requests/s in total.
    #[value(name = "pingpong-64b-c16")]
    Pingpong64bC16,
    /// `pingpong-64b` with server and client threads both on core 0: no idle vCPU to
    /// wake, so the round trip shows the per-request CPU cost instead of wake-up latency.
    #[value(name = "pingpong-64b-1core")]
    Pingpong64bOneCore,
    /// One connection streaming `bulk_bytes` one way; GiB/s.
    Bulk,
}

impl Case {
    /// Every case, in table order.
    pub const ALL: [Case; 4] = [
        Case::Pingpong64b,
        Case::Pingpong64bC16,
        Case::Pingpong64bOneCore,
        Case::Bulk,
    ];

    /// Case name used in rows.
    pub fn name(self) -> &'static str {
        match self {
            Case::Pingpong64b => "pingpong-64b",
            Case::Pingpong64bC16 => "pingpong-64b-c16",
            Case::Pingpong64bOneCore => "pingpong-64b-1core",
            Case::Bulk => "bulk",
        }
    }

    fn arg(self) -> String {
        value_name(&self)
    }

    /// The ping-pong shape of the case (`None` for bulk).
    fn ping_spec(self, p: &Params, syscalls: bool) -> Option<PingSpec> {
        let conns = match self {
            Case::Pingpong64b | Case::Pingpong64bOneCore => 1,
            Case::Pingpong64bC16 => MANY_CONNS,
            Case::Bulk => return None,
        };
        let total = match (syscalls, self) {
            (true, _) => p.syscall_iters,
            (false, Case::Pingpong64b | Case::Pingpong64bOneCore) => p.pingpong_iters,
            (false, _) => p.many_iters,
        };
        Some(PingSpec {
            conns,
            warmup_per_conn: p.warmup_per_conn,
            iters_per_conn: (total / conns as u64).max(1),
        })
    }
}

fn value_name<T: clap::ValueEnum>(v: &T) -> String {
    v.to_possible_value().expect("value").get_name().to_string()
}

/// (metric, unit, higher_is_better) of every metric the suite reports.
fn metric_meta(metric: &str) -> (&'static str, bool) {
    match metric {
        "round_trip" => ("ns", false),
        "throughput" => ("req/s", true),
        "bulk_throughput" => ("GiB/s", true),
        "bulk_per_cpu" => ("GiB/cpu-s", true),
        "syscalls_per_request" | "server_syscalls_per_request" => ("calls", false),
        _ => ("", true),
    }
}

/// What the server does with each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMode {
    /// Write back whatever arrives.
    Echo,
    /// Read and count; once this many bytes arrived, write one byte back.
    Sink(u64),
}

/// One ping-pong run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingSpec {
    /// Connections driven at once.
    pub conns: usize,
    /// Untimed round trips per connection first.
    pub warmup_per_conn: u64,
    /// Timed round trips per connection.
    pub iters_per_conn: u64,
}

/// Synchronises the client's timed phase with the parent (syscall-counting runs): the
/// client calls [`Gate::start`] after its warmup and [`Gate::end`] after the timed phase;
/// both block until the main thread lets them go. A no-op when not gated.
pub struct Gate {
    inner: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>,
}

impl Gate {
    /// A gate that never blocks.
    pub fn open() -> Gate {
        Gate { inner: None }
    }

    /// A gate and the main thread's ends: (signals from the client, releases to it).
    fn pair() -> (Gate, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (to_main, from_client) = mpsc::channel();
        let (release, from_main) = mpsc::channel();
        (
            Gate {
                inner: Some((to_main, from_main)),
            },
            from_client,
            release,
        )
    }

    fn pass(&self) {
        if let Some((tx, rx)) = &self.inner {
            tx.send(()).expect("main thread alive");
            rx.recv().expect("main thread alive");
        }
    }

    /// Before the timed phase.
    pub fn start(&self) {
        self.pass()
    }

    /// After the timed phase.
    pub fn end(&self) {
        self.pass()
    }
}

/// `127.0.0.1:0`.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Runs one case of one system in this process: the server on a thread pinned to core 0,
/// the client on one pinned to core 1 (also core 0 for `pingpong-64b-1core`). Returns (metric, value) pairs. With `gate`, the
/// client waits at the gate before and after its timed phase.
fn measure_with(
    system: System,
    case: Case,
    p: &Params,
    syscalls: bool,
    gate: Gate,
) -> Vec<(String, f64)> {
    let conns = match case.ping_spec(p, syscalls) {
        Some(s) => s.conns,
        None => 1,
    };
    let mode = match case {
        Case::Bulk => ServerMode::Sink(p.bulk_bytes),
        _ => ServerMode::Echo,
    };
    let (addr_tx, addr_rx) = mpsc::channel();
    let server = spawn_pinned(0, SERVER_THREAD, move || match system {
        System::SinewUring => sinew::server(sinew::URING, mode, conns, addr_tx),
        System::SinewMio => sinew::server(sinew::MIO, mode, conns, addr_tx),
        System::Monoio => monoio::server(monoio::Flavor::Uring, mode, conns, addr_tx),
        System::MonoioEpoll => monoio::server(monoio::Flavor::Legacy, mode, conns, addr_tx),
        System::Tokio => tokio::server(mode, conns, addr_tx),
    });
    let addr: SocketAddr = addr_rx.recv().expect("server started");
    let spec = case.ping_spec(p, syscalls);
    let bulk = p.bulk_bytes;
    let client_core = if case == Case::Pingpong64bOneCore {
        0
    } else {
        1
    };
    let client = spawn_pinned(client_core, CLIENT_THREAD, move || match spec {
        Some(spec) => {
            let el = match system {
                System::SinewUring => sinew::client_pingpong(sinew::URING, addr, &spec, &gate),
                System::SinewMio => sinew::client_pingpong(sinew::MIO, addr, &spec, &gate),
                System::Monoio => {
                    monoio::client_pingpong(monoio::Flavor::Uring, addr, &spec, &gate)
                }
                System::MonoioEpoll => {
                    monoio::client_pingpong(monoio::Flavor::Legacy, addr, &spec, &gate)
                }
                System::Tokio => tokio::client_pingpong(addr, &spec, &gate),
            };
            let requests = spec.conns as u64 * spec.iters_per_conn;
            let mut out = vec![("throughput".to_string(), requests as f64 / el.as_secs_f64())];
            if spec.conns == 1 {
                out.push((
                    "round_trip".to_string(),
                    el.as_nanos() as f64 / requests as f64,
                ));
            }
            out
        }
        None => {
            // Both threads' CPU (this process runs only the server and this client), so
            // bytes per CPU-second compares the two ends' total cost: steadier than wall
            // time on this VM, where a descheduled vCPU stalls the stream.
            let cpu0 = crate::process::own_cpu_seconds().expect("getrusage");
            let el = match system {
                System::SinewUring => sinew::client_bulk(sinew::URING, addr, bulk),
                System::SinewMio => sinew::client_bulk(sinew::MIO, addr, bulk),
                System::Monoio => monoio::client_bulk(monoio::Flavor::Uring, addr, bulk),
                System::MonoioEpoll => monoio::client_bulk(monoio::Flavor::Legacy, addr, bulk),
                System::Tokio => tokio::client_bulk(addr, bulk),
            };
            let cpu = crate::process::own_cpu_seconds().expect("getrusage") - cpu0;
            let gib = bulk as f64 / f64::from(1u32 << 30);
            vec![
                ("bulk_throughput".to_string(), gib / el.as_secs_f64()),
                ("bulk_per_cpu".to_string(), gib / cpu),
            ]
        }
    });
    let out = client.join().expect("client thread panicked");
    server.join().expect("server thread panicked");
    out
}

/// The child's entry point (`__transports-one`): measures and prints `metric NAME VALUE`
/// lines on stdout. With `syscalls`, runs the gated handshake on stdin/stdout first
/// (`ready` / `go`, `done` / `exit`) and prints the request count instead.
pub fn child_main(system: System, case: Case, p: &Params, syscalls: bool) {
    crate::actors::init_cores();
    if !syscalls {
        for (m, v) in measure_with(system, case, p, false, Gate::open()) {
            println!("metric {m} {v}");
        }
        return;
    }
    let spec = case
        .ping_spec(p, true)
        .expect("syscalls are counted on ping-pong cases");
    let (gate, from_client, release) = Gate::pair();
    let p = *p;
    let worker = std::thread::spawn(move || measure_with(system, case, &p, true, gate));
    let stdin = std::io::stdin();
    let mut line = String::new();
    for (say, expect) in [("ready", "go"), ("done", "exit")] {
        from_client.recv().expect("client reached the gate");
        println!("{say}");
        std::io::stdout().flush().expect("flush");
        line.clear();
        stdin.lock().read_line(&mut line).expect("read stdin");
        assert_eq!(line.trim(), expect, "unexpected command from the parent");
        release.send(()).expect("client alive");
    }
    worker.join().expect("measurement panicked");
    println!(
        "metric requests {}",
        spec.conns as u64 * spec.iters_per_conn
    );
}

// ---------------------------------------------------------------------------------
// The parent: children, syscall counting, rows.
// ---------------------------------------------------------------------------------

/// Options of the `transports` subcommand.
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
    /// Syscall-counting runs per (case, system); 0 skips them. Syscall counts barely
    /// move between runs, so fewer than `repeats` are needed.
    pub syscall_repeats: usize,
    /// Kill a child measurement that runs longer than this.
    pub timeout: Duration,
}

fn child_command(system: System, case: Case, p: &Params, syscalls: bool) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.arg("__transports-one")
        .arg("--system")
        .arg(system.arg())
        .arg("--case")
        .arg(case.arg())
        .arg("--params")
        .arg(serde_json::to_string(p).expect("serialize params"));
    if syscalls {
        cmd.arg("--syscalls");
    }
    cmd
}

/// Waits for `child` with a deadline; kills it when the deadline passes.
fn wait_deadline(child: &mut Child, deadline: Instant) -> Result<(), String> {
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return Ok(()),
            Ok(Some(s)) => return Err(format!("child exited with {s}")),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("timed out".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("wait: {e}")),
        }
    }
}

fn parse_metrics(out: &str) -> Vec<(String, f64)> {
    out.lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("metric ")?.split_whitespace();
            let name = it.next()?.to_string();
            let v = it.next()?.parse::<f64>().ok()?;
            v.is_finite().then_some((name, v))
        })
        .collect()
}

/// Runs one timed measurement in a fresh child.
fn run_child(
    system: System,
    case: Case,
    p: &Params,
    timeout: Duration,
) -> Result<Vec<(String, f64)>, String> {
    let mut child = child_command(system, case, p, false)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn child: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    wait_deadline(&mut child, Instant::now() + timeout)?;
    let out = reader.join().unwrap_or_default();
    let m = parse_metrics(&out);
    if m.is_empty() {
        return Err(format!("no metrics in child output {out:?}"));
    }
    Ok(m)
}

/// The syscall counter available here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    Perf,
    Strace,
}

/// Probes for a working counter: perf with the `raw_syscalls:sys_enter` tracepoint
/// first, then strace.
fn find_counter() -> Option<Counter> {
    let ok = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if ok(Command::new("perf").args(["stat", "-e", "raw_syscalls:sys_enter", "--", "true"])) {
        return Some(Counter::Perf);
    }
    if ok(Command::new("strace").args(["-c", "-o", "/dev/null", "--", "true"])) {
        return Some(Counter::Strace);
    }
    None
}

/// Syscall counts of the timed window: (all threads, server thread if known).
struct SyscallCount {
    total: f64,
    server: Option<f64>,
}

/// Parses `perf stat -x, --per-thread` output: `comm-tid,count,unit,event,...`.
fn parse_perf(out: &str) -> Option<SyscallCount> {
    let mut total = 0.0;
    let mut server = None;
    let mut seen = false;
    for line in out.lines() {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 4 || !f.iter().any(|x| x.contains("raw_syscalls:sys_enter")) {
            continue;
        }
        let Ok(v) = f[1].trim().parse::<f64>() else {
            continue;
        };
        seen = true;
        total += v;
        if f[0].starts_with(SERVER_THREAD) {
            server = Some(server.unwrap_or(0.0) + v);
        }
    }
    seen.then_some(SyscallCount { total, server })
}

/// Parses the `total` line of `strace -c` output.
fn parse_strace(out: &str) -> Option<SyscallCount> {
    let line = out.lines().rev().find(|l| l.contains("total"))?;
    // `100.00    0.123456     1     12345     67 total`: calls is the 4th column.
    let cols: Vec<&str> = line.split_whitespace().collect();
    let calls = cols.get(3)?.parse::<f64>().ok()?;
    Some(SyscallCount {
        total: calls,
        server: None,
    })
}

/// Waits until `counter` (pid `ctr`) watches every thread of `target`: perf holds one
/// `perf_event` descriptor per thread, strace is the tracer of every thread. A short
/// grace period follows (perf enables its counters right after opening them).
fn wait_attached(counter: Counter, ctr: u32, target: u32, deadline: Instant) -> Result<(), String> {
    let threads = |pid: u32| -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    loop {
        let tids = threads(target);
        let attached = match counter {
            Counter::Perf => {
                let events = std::fs::read_dir(format!("/proc/{ctr}/fd"))
                    .map(|d| {
                        d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                            .filter(|l| l.to_string_lossy().contains("perf_event"))
                            .count()
                    })
                    .unwrap_or(0);
                !tids.is_empty() && events >= tids.len()
            }
            Counter::Strace => {
                !tids.is_empty()
                    && tids.iter().all(|t| {
                        std::fs::read_to_string(format!("/proc/{target}/task/{t}/status"))
                            .ok()
                            .and_then(|st| {
                                st.lines()
                                    .find_map(|l| l.strip_prefix("TracerPid:"))
                                    .map(|v| v.trim() == ctr.to_string())
                            })
                            .unwrap_or(false)
                    })
            }
        };
        if attached {
            std::thread::sleep(Duration::from_millis(50));
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{counter:?} did not attach"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs one gated ping-pong child and counts the syscalls of its timed phase.
fn count_syscalls(
    counter: Counter,
    system: System,
    case: Case,
    p: &Params,
    timeout: Duration,
) -> Result<Vec<(String, f64)>, String> {
    let deadline = Instant::now() + timeout;
    let mut child = child_command(system, case, p, true)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn child: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let (line_tx, line_rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let wait_line = |want: &str, lines: &mut Vec<String>| -> Result<(), String> {
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or("timed out")?;
            let l = line_rx
                .recv_timeout(left)
                .map_err(|_| format!("child did not say {want}"))?;
            if l == want {
                return Ok(());
            }
            lines.push(l);
        }
    };
    let result = (|| {
        wait_line("ready", &mut lines)?;
        let out_file = std::env::temp_dir().join(format!(
            "sinew-bench-syscalls-{}-{}.txt",
            std::process::id(),
            child.id()
        ));
        let pid = child.id().to_string();
        let mut counter_cmd = match counter {
            Counter::Perf => {
                let mut c = Command::new("perf");
                c.args([
                    "stat",
                    "-x,",
                    "--per-thread",
                    "-e",
                    "raw_syscalls:sys_enter",
                ])
                .args(["-p", &pid, "-o"])
                .arg(&out_file);
                c
            }
            Counter::Strace => {
                let mut c = Command::new("strace");
                c.args(["-c", "-f", "-p", &pid, "-o"]).arg(&out_file);
                c
            }
        };
        let mut ctr = counter_cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {counter:?}: {e}"))?;
        // Neither tool says when it is attached: watch /proc until it is (the child idles).
        wait_attached(counter, ctr.id(), child.id(), deadline)?;
        writeln!(stdin, "go").map_err(|e| format!("write go: {e}"))?;
        stdin.flush().map_err(|e| format!("flush: {e}"))?;
        wait_line("done", &mut lines)?;
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(ctr.id() as libc::pid_t, libc::SIGINT) };
        // Both exit through the signal (perf re-raises it); only a hang is an error.
        match wait_deadline(&mut ctr, deadline) {
            Err(e) if e == "timed out" => return Err(format!("{counter:?} did not stop")),
            _ => {}
        }
        writeln!(stdin, "exit").map_err(|e| format!("write exit: {e}"))?;
        stdin.flush().map_err(|e| format!("flush: {e}"))?;
        let text = std::fs::read_to_string(&out_file).unwrap_or_default();
        let _ = std::fs::remove_file(&out_file);
        let counts = match counter {
            Counter::Perf => parse_perf(&text),
            Counter::Strace => parse_strace(&text),
        }
        .ok_or_else(|| format!("cannot parse {counter:?} output {text:?}"))?;
        Ok::<_, String>(counts)
    })();
    let counts = match result {
        Ok(c) => c,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    wait_deadline(&mut child, deadline)?;
    // The rest of the child's stdout (its request count) arrives before the channel closes.
    while let Ok(l) = line_rx.recv_timeout(Duration::from_secs(1)) {
        lines.push(l);
    }
    let requests = parse_metrics(&lines.join("\n"))
        .into_iter()
        .find(|(m, _)| m == "requests")
        .map(|(_, v)| v)
        .ok_or("child did not report its request count")?;
    let mut out = vec![("syscalls_per_request".to_string(), counts.total / requests)];
    if let Some(s) = counts.server {
        out.push(("server_syscalls_per_request".to_string(), s / requests));
    }
    Ok(out)
}

/// Runs the suite and returns one row per (case, system, metric) with the median over
/// repeats.
pub fn run(opts: &Options) -> Vec<Row> {
    crate::report::warn_if_busy("transports");
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
    let counter = if opts.syscall_repeats == 0 {
        None
    } else {
        let c = find_counter();
        match c {
            Some(c) => eprintln!("[transports] counting syscalls with {c:?}"),
            None => eprintln!(
                "[transports] warning: neither perf (raw_syscalls tracepoint) nor strace works \
                 here; no syscall rows"
            ),
        }
        c
    };
    let syscall_repeats = opts.syscall_repeats;
    let mut rows = Vec::new();
    for &case in &cases {
        // samples[system][metric] in first-seen metric order.
        let mut samples: Vec<Vec<(String, Vec<f64>)>> = vec![Vec::new(); systems.len()];
        let mut record =
            |i: usize, m: String, v: f64| match samples[i].iter_mut().find(|(n, _)| *n == m) {
                Some((_, vs)) => vs.push(v),
                None => samples[i].push((m, vec![v])),
            };
        for rep in 0..opts.repeats {
            for (i, &system) in systems.iter().enumerate() {
                let t = Instant::now();
                match run_child(system, case, &opts.params, opts.timeout) {
                    Ok(ms) => {
                        let shown: Vec<String> =
                            ms.iter().map(|(m, v)| format!("{m}={v:.1}")).collect();
                        eprintln!(
                            "[transports] {:<17} {:<12} rep {}/{}: {} ({:.2}s)",
                            case.name(),
                            system.name(),
                            rep + 1,
                            opts.repeats,
                            shown.join(" "),
                            t.elapsed().as_secs_f64()
                        );
                        for (m, v) in ms {
                            record(i, m, v);
                        }
                    }
                    Err(why) => eprintln!(
                        "[transports] {} {} rep {}: FAILED: {why}",
                        case.name(),
                        system.name(),
                        rep + 1
                    ),
                }
            }
        }
        let counted = matches!(case, Case::Pingpong64b | Case::Pingpong64bC16);
        if let (Some(counter), true) = (counter, counted) {
            for rep in 0..syscall_repeats {
                for (i, &system) in systems.iter().enumerate() {
                    match count_syscalls(counter, system, case, &opts.params, opts.timeout) {
                        Ok(ms) => {
                            let shown: Vec<String> =
                                ms.iter().map(|(m, v)| format!("{m}={v:.2}")).collect();
                            eprintln!(
                                "[transports] {:<17} {:<12} syscalls {}/{}: {}",
                                case.name(),
                                system.name(),
                                rep + 1,
                                syscall_repeats,
                                shown.join(" ")
                            );
                            for (m, v) in ms {
                                record(i, m, v);
                            }
                        }
                        Err(why) => eprintln!(
                            "[transports] {} {} syscalls: FAILED: {why}",
                            case.name(),
                            system.name()
                        ),
                    }
                }
            }
        }
        // Rows grouped by metric, systems in table order.
        let mut metrics: Vec<String> = Vec::new();
        for per in &samples {
            for (m, _) in per {
                if !metrics.contains(m) {
                    metrics.push(m.clone());
                }
            }
        }
        for m in &metrics {
            let (unit, hib) = metric_meta(m);
            for (i, &system) in systems.iter().enumerate() {
                let Some((_, vs)) = samples[i].iter().find(|(n, _)| n == m) else {
                    continue;
                };
                if let Some(v) = median(vs) {
                    rows.push(Row {
                        suite: SUITE.into(),
                        case: case.name().into(),
                        system: system.name().into(),
                        metric: m.clone(),
                        value: v,
                        unit: unit.into(),
                        higher_is_better: hib,
                    });
                }
            }
        }
    }
    rows
}

/// The goals, one line per (case, metric) present: sinew-uring against monoio and
/// sinew-mio against tokio, as "how many times better" ratios.
pub fn goal_lines(rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        if !keys.contains(&(r.case.as_str(), r.metric.as_str())) {
            keys.push((r.case.as_str(), r.metric.as_str()));
        }
    }
    for (ours, theirs) in [("sinew-uring", "monoio"), ("sinew-mio", "tokio")] {
        for &(case, metric) in &keys {
            let find = |s: &str| {
                rows.iter()
                    .find(|r| r.case == case && r.metric == metric && r.system == s)
            };
            if let (Some(a), Some(b)) = (find(ours), find(theirs)) {
                let ratio = goodness_ratio(a.value, b.value, a.higher_is_better);
                out.push(format!(
                    "  {ours:<11} vs {theirs:<6} {case:<18} {metric:<27} {ratio:>5.2}x  {}",
                    if ratio >= 1.0 {
                        "met"
                    } else if ratio >= 0.97 {
                        "missed by < 3% (within this machine's noise)"
                    } else {
                        "MISSED"
                    }
                ));
            }
        }
    }
    out
}

/// How the transports table compares: every row against the best of the crates.io
/// runtimes, with monoio (the io_uring goal) as the baseline column; the goals for
/// sinew-mio against tokio are printed by [`goal_lines`].
pub const TABLE: TableSpec<'static> = TableSpec {
    peers: &["monoio", "monoio-epoll", "tokio"],
    baselines: &["monoio", "tokio"],
    subject: "sinew-uring",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_perf_per_thread() {
        let out = "# started on x\n\n\
                   tp-server-101,40000,,raw_syscalls:sys_enter,1000,100.00,,\n\
                   tp-client-102,40010,,raw_syscalls:sys_enter,1000,100.00,,\n\
                   sinew-bench-100,4,,raw_syscalls:sys_enter,1000,100.00,,\n";
        let c = parse_perf(out).expect("parsed");
        assert_eq!(c.total, 80014.0);
        assert_eq!(c.server, Some(40000.0));
    }

    #[test]
    fn parses_strace_total() {
        let out = "% time     seconds  usecs/call     calls    errors syscall\n\
                   ------ ----------- ----------- --------- --------- ----------------\n\
                   100.00    0.100000           2     40000           io_uring_enter\n\
                   ------ ----------- ----------- --------- --------- ----------------\n\
                   100.00    0.100000           2     40000         3 total\n";
        assert_eq!(parse_strace(out).expect("parsed").total, 40000.0);
    }

    #[test]
    fn metrics_roundtrip() {
        let m = parse_metrics("noise\nmetric throughput 12.5\nmetric round_trip 3\n");
        assert_eq!(
            m,
            vec![
                ("throughput".to_string(), 12.5),
                ("round_trip".to_string(), 3.0)
            ]
        );
    }

    #[test]
    fn specs_split_iterations_over_connections() {
        let p = Params::full();
        let s = Case::Pingpong64bC16.ping_spec(&p, false).expect("ping");
        assert_eq!(s.conns, MANY_CONNS);
        assert_eq!(s.iters_per_conn * s.conns as u64, p.many_iters);
        assert!(Case::Bulk.ping_spec(&p, false).is_none());
    }
}
