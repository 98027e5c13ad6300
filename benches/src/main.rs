//! `sinew-bench`: comparative benchmarks of Sinew against its peers.
//!
//! Each suite is a subcommand (`actors`, `transports`, `http`, `redis`) that
//! produces [`report::Row`]s, printed as a human table or, with `--json`, as ONE JSON
//! array on stdout (diagnostics go to stderr).
//!
//! ```text
//! sinew-bench actors [--json] [--quick] [--repeats N] [--system S]... [--case C]...
//! sinew-bench transports [--json] [--quick] [--repeats N] [--system S]... [--case C]...
//!     [--no-syscalls]
//! sinew-bench http [--json] [--quick] [--repeats N] [--system S]... [--case C]...
//!     [--connections N] [--duration-secs N]
//! sinew-bench redis [--json] [--quick] [--repeats N] [--system S]... [--case C]...
//!     [--duration-secs N]
//! ```

mod actors;
mod alloc;
mod http;
mod process;
mod redis;
mod report;
mod transports;

use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

/// Counts live heap bytes (used by the memory cases).
#[global_allocator]
static GLOBAL: alloc::CountingAlloc = alloc::CountingAlloc;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "sinew-bench", about = "Sinew comparative benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Options every suite accepts.
#[derive(Debug, Clone, Args)]
struct CommonArgs {
    /// Print one JSON array of rows on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Small iteration counts and 3 repeats: a smoke test that finishes in seconds.
    #[arg(long)]
    quick: bool,
    /// Repeats per measurement (the median is reported); default 5, or 3 with --quick
    /// (`http` and `redis`: 3, or 1 with --quick).
    #[arg(long)]
    repeats: Option<usize>,
}

impl CommonArgs {
    /// Repeats after applying the `--quick` default.
    fn repeats(&self) -> usize {
        self.repeats
            .unwrap_or(if self.quick { 3 } else { 5 })
            .max(1)
    }

    /// Repeats of the `http` and `redis` suites (their runs take seconds each): 3, or 1
    /// with `--quick`.
    fn http_repeats(&self) -> usize {
        self.repeats
            .unwrap_or(if self.quick { 1 } else { 3 })
            .max(1)
    }
}

/// Subcommands, one per suite (plus hidden helpers).
#[derive(Debug, Subcommand)]
enum Cmd {
    /// Actor runtimes: ping-pong, fan-in, spawn and idle memory vs actix, ractor, kameo,
    /// tokio mpsc and a raw crossbeam pair.
    Actors(ActorsArgs),
    /// Internal: run ONE actors measurement in this process and print it.
    #[command(name = "__actors-one", hide = true)]
    ActorsOne {
        /// System to measure.
        #[arg(long, value_enum)]
        system: actors::System,
        /// Case to measure.
        #[arg(long, value_enum)]
        case: actors::Case,
        /// `actors::Params` as JSON.
        #[arg(long)]
        params: String,
    },
    /// TCP transports: 64-byte ping-pong (1 and 16 connections) and bulk streaming over
    /// loopback for Sinew's io_uring and mio backends vs monoio and tokio, plus syscalls
    /// per request.
    Transports(TransportsArgs),
    /// Internal: run ONE transports measurement in this process and print it.
    #[command(name = "__transports-one", hide = true)]
    TransportsOne {
        /// System to measure.
        #[arg(long, value_enum)]
        system: transports::System,
        /// Case to measure.
        #[arg(long, value_enum)]
        case: transports::Case,
        /// `transports::Params` as JSON.
        #[arg(long)]
        params: String,
        /// Gate the timed phase on stdin/stdout so the parent can count its syscalls.
        #[arg(long)]
        syscalls: bool,
    },
    /// HTTP/1.1 servers under wrk (plaintext, 16-deep pipelined plaintext, json): Sinew on
    /// io_uring and mio vs hyper, actix-web, may-minihttp, nginx and a canned-response
    /// io_uring server, one server core each, ranked by requests per server CPU-second.
    Http(HttpArgs),
    /// Internal: serve HTTP as one system in this process until killed.
    #[command(name = "__http-serve", hide = true)]
    HttpServe {
        /// System to serve as (not nginx, which is started directly).
        #[arg(long, value_enum)]
        system: http::System,
        /// Address to listen on.
        #[arg(long)]
        addr: std::net::SocketAddr,
    },
    /// Redis: Sinew's server (io_uring and mio) vs redis-server under redis-benchmark
    /// (SET and GET, without and with 16-deep pipelining), and Sinew's client vs redis-rs
    /// and fred against redis-server at 1, 16 and 256 concurrent callers; one core each
    /// side, ops/s and ops per CPU-second.
    Redis(RedisArgs),
    /// Internal: serve Sinew's Redis server in this process until killed.
    #[command(name = "__redis-serve", hide = true)]
    RedisServe {
        /// Backend to serve on (`sinew-uring` or `sinew-mio`).
        #[arg(long, value_enum)]
        system: redis::System,
        /// Address to listen on.
        #[arg(long)]
        addr: std::net::SocketAddr,
    },
    /// Internal: run ONE client measurement in this process and print its JSON report.
    #[command(name = "__redis-client", hide = true)]
    RedisClient {
        /// Client to run (`sinew-uring`, `sinew-mio`, `redis-rs` or `fred`).
        #[arg(long, value_enum)]
        system: redis::System,
        /// The redis-server to call.
        #[arg(long)]
        addr: std::net::SocketAddr,
        /// Concurrent callers.
        #[arg(long)]
        concurrency: usize,
        /// Untimed warm-up, milliseconds.
        #[arg(long)]
        warmup_ms: u64,
        /// Timed window, milliseconds.
        #[arg(long)]
        duration_ms: u64,
    },
}

/// Options of `redis`.
#[derive(Debug, Args)]
struct RedisArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Only these systems (repeatable; default all).
    #[arg(long = "system", value_enum)]
    systems: Vec<redis::System>,
    /// Only these cases (repeatable; default all).
    #[arg(long = "case", value_enum)]
    cases: Vec<redis::Case>,
    /// Seconds per timed run: each client window, and about each redis-benchmark test
    /// (default 5, or 1 with --quick).
    #[arg(long)]
    duration_secs: Option<u64>,
}

/// Options of `http`.
#[derive(Debug, Args)]
struct HttpArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Only these systems (repeatable; default all).
    #[arg(long = "system", value_enum)]
    systems: Vec<http::System>,
    /// Only these cases (repeatable; default all).
    #[arg(long = "case", value_enum)]
    cases: Vec<http::Case>,
    /// wrk connections (`-c`).
    #[arg(long, default_value_t = http::CONNECTIONS)]
    connections: usize,
    /// Seconds per timed wrk run (default 5, or 1 with --quick).
    #[arg(long)]
    duration_secs: Option<u64>,
}

/// Options of `transports`.
#[derive(Debug, Args)]
struct TransportsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Only these systems (repeatable; default all).
    #[arg(long = "system", value_enum)]
    systems: Vec<transports::System>,
    /// Only these cases (repeatable; default all).
    #[arg(long = "case", value_enum)]
    cases: Vec<transports::Case>,
    /// Skip the syscall-counting runs (perf or strace).
    #[arg(long)]
    no_syscalls: bool,
    /// Kill a single measurement that runs longer than this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

/// Options of `actors`.
#[derive(Debug, Args)]
struct ActorsArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Only these systems (repeatable; default all).
    #[arg(long = "system", value_enum)]
    systems: Vec<actors::System>,
    /// Only these cases (repeatable; default all).
    #[arg(long = "case", value_enum)]
    cases: Vec<actors::Case>,
    /// Kill a single measurement that runs longer than this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

fn main() {
    actors::init_cores();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Actors(args) => {
            let params = if args.common.quick {
                actors::Params::quick()
            } else {
                actors::Params::full()
            };
            let opts = actors::Options {
                params,
                repeats: args.common.repeats(),
                systems: args.systems,
                cases: args.cases,
                timeout: Duration::from_secs(args.timeout_secs),
            };
            let t = Instant::now();
            let rows = actors::run(&opts);
            eprintln!(
                "[actors] done in {:.1}s ({} repeats)",
                t.elapsed().as_secs_f64(),
                opts.repeats
            );
            emit(&rows, &args.common, &actors::TABLE);
        }
        Cmd::ActorsOne {
            system,
            case,
            params,
        } => {
            let p: actors::Params = serde_json::from_str(&params).expect("--params is JSON Params");
            let v = actors::measure(system, case, &p);
            println!("{}", actors::format_child_output(v));
        }
        Cmd::Transports(args) => {
            let params = if args.common.quick {
                transports::Params::quick()
            } else {
                transports::Params::full()
            };
            let opts = transports::Options {
                params,
                repeats: args.common.repeats(),
                systems: args.systems,
                cases: args.cases,
                // The counts barely move between runs: one run for --quick, else up to 3.
                syscall_repeats: match (args.no_syscalls, args.common.quick) {
                    (true, _) => 0,
                    (false, true) => 1,
                    (false, false) => args.common.repeats().min(3),
                },
                timeout: Duration::from_secs(args.timeout_secs),
            };
            let t = Instant::now();
            let rows = transports::run(&opts);
            eprintln!(
                "[transports] done in {:.1}s ({} repeats)",
                t.elapsed().as_secs_f64(),
                opts.repeats
            );
            emit(&rows, &args.common, &transports::TABLE);
            if !args.common.json {
                println!("\ngoals (io_uring >= monoio, mio >= tokio):");
                for line in transports::goal_lines(&rows) {
                    println!("{line}");
                }
            }
        }
        Cmd::TransportsOne {
            system,
            case,
            params,
            syscalls,
        } => {
            let p: transports::Params =
                serde_json::from_str(&params).expect("--params is JSON Params");
            transports::child_main(system, case, &p, syscalls);
        }
        Cmd::Http(args) => {
            let mut opts = http::Options::new(args.common.quick, args.common.http_repeats());
            opts.systems = args.systems;
            opts.cases = args.cases;
            opts.connections = args.connections.max(1);
            if let Some(s) = args.duration_secs {
                opts.duration = Duration::from_secs(s.max(1));
            }
            let t = Instant::now();
            let rows = match http::run(&opts) {
                Ok(rows) => rows,
                Err(e) => {
                    eprintln!("[http] error: {e}");
                    std::process::exit(1);
                }
            };
            eprintln!(
                "[http] done in {:.1}s ({} repeats of {}s)",
                t.elapsed().as_secs_f64(),
                opts.repeats,
                opts.duration.as_secs()
            );
            emit(&rows, &args.common, &http::TABLE);
            if !args.common.json {
                println!(
                    "\ngoals (requests per server CPU-second: >= may-minihttp, \
                     >= 1.5x hyper pipelined, within 10% of canned):"
                );
                for line in http::goal_lines(&rows) {
                    println!("{line}");
                }
            }
        }
        Cmd::HttpServe { system, addr } => {
            if let Err(e) = http::serve_main(system, addr) {
                eprintln!("[http] {} server: {e}", system.name());
                std::process::exit(1);
            }
        }
        Cmd::Redis(args) => {
            let mut opts = redis::Options::new(args.common.quick, args.common.http_repeats());
            opts.systems = args.systems;
            opts.cases = args.cases;
            if let Some(s) = args.duration_secs {
                opts.duration = Duration::from_secs(s.max(1));
            }
            let t = Instant::now();
            let rows = match redis::run(&opts) {
                Ok(rows) => rows,
                Err(e) => {
                    eprintln!("[redis] error: {e}");
                    std::process::exit(1);
                }
            };
            eprintln!(
                "[redis] done in {:.1}s ({} repeats of {}s)",
                t.elapsed().as_secs_f64(),
                opts.repeats,
                opts.duration.as_secs()
            );
            emit(&rows, &args.common, &redis::TABLE);
            if !args.common.json {
                println!(
                    "\ngoals (server >= 1.2x redis-server, client >= 1.3x redis-rs; \
                     ops/s and ops per CPU-second):"
                );
                for line in redis::goal_lines(&rows) {
                    println!("{line}");
                }
            }
        }
        Cmd::RedisServe { system, addr } => {
            if let Err(e) = redis::serve_main(system, addr) {
                eprintln!("[redis] {} server: {e}", system.name());
                std::process::exit(1);
            }
        }
        Cmd::RedisClient {
            system,
            addr,
            concurrency,
            warmup_ms,
            duration_ms,
        } => {
            let window = redis::client::Window {
                warmup: Duration::from_millis(warmup_ms),
                duration: Duration::from_millis(duration_ms.max(1)),
            };
            match redis::client::client_main(system, addr, concurrency, window) {
                Ok(report) => match serde_json::to_string(&report) {
                    Ok(line) => println!("{line}"),
                    Err(e) => {
                        eprintln!(
                            "[redis] {} client: serialize the report: {e}",
                            system.name()
                        );
                        std::process::exit(1);
                    }
                },
                Err(e) => {
                    eprintln!("[redis] {} client: {e}", system.name());
                    std::process::exit(1);
                }
            }
        }
    }
}

/// Prints rows as JSON or as a table, per the common options.
fn emit(rows: &[report::Row], common: &CommonArgs, spec: &report::TableSpec<'_>) {
    if common.json {
        report::print_json(rows);
    } else {
        report::print_table(rows, spec);
    }
}
