//! 10,000 concurrent idle keep-alive connections held by the Sinew HTTP/1.1 server, with the
//! server's memory growth per connection measured and bounded, and every connection closed
//! cleanly (FIN, not reset) at shutdown.
//!
//! The server runs in this test process; the 10,000 client sockets live in a helper process
//! (this same test binary re-run as the ignored test `idle_holder`), because one process here
//! may hold at most 20,000 descriptors (`ulimit -Hn`) and both ends together need more. The
//! two talk over a small control connection. The measured figure goes to
//! `$CARGO_TARGET_TMPDIR/idle_connections.json`, to the `tracing` log, and into the
//! assertion messages.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sinew_actors::{Actor, Context, System};
use sinew_io_actors::{io_driver, serve, IncomingFor, ServerConfig};
use sinew_protocols::http1::{Body, Http1, Response};
use sinew_transports::Backend;

const CONNECTIONS: usize = 10_000;
/// One connection in `SAMPLE_EVERY` makes a request to prove it is live.
const SAMPLE_EVERY: usize = 100;
/// Generous bound on the server's memory growth per idle connection.
const MAX_BYTES_PER_CONNECTION: u64 = 64 * 1024;

/// Raises the soft descriptor limit to the hard one.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(got, 0, "getrlimit");
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid rlimit; raising the soft limit up to the hard one is allowed.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(set, 0, "setrlimit");
    lim.rlim_cur
}

/// A field of /proc/self/status in bytes (`VmRSS`, `VmData`).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| panic!("{field} missing from /proc/self/status"))
}

/// Open sockets of this process.
fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .map(|p| p.to_string_lossy().starts_with("socket:"))
                .unwrap_or(false)
        })
        .count()
}

struct Ok200;

impl Actor for Ok200 {
    type Msg = IncomingFor<Http1>;
    fn handle(&mut self, inc: IncomingFor<Http1>, _ctx: &mut Context<Self>) {
        inc.reply
            .send(Response::new(200).with_body(Body::Full(Bytes::from_static(b"live"))));
    }
}

/// Kills the helper process if the test fails before it exits.
struct Helper(Child);

impl Drop for Helper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

fn read_line(r: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    r.read_line(&mut line).expect("a line from the helper");
    line.trim().to_string()
}

/// Polls `cond` until it holds or `within` passes.
fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn ten_thousand_idle_keep_alive_connections() {
    let limit = raise_nofile();
    assert!(
        limit as usize > CONNECTIONS + 256,
        "RLIMIT_NOFILE hard limit {limit} is too low for {CONNECTIONS} connections"
    );
    let sys = System::builder()
        .workers(2)
        .try_driver(io_driver(Backend::Auto))
        .build()
        .expect("system");
    let app = sys.spawn(Ok200).expect("app");
    // Idle connections that never sent a request must outlive the test's few seconds: the
    // header-read timer runs from connection start.
    let mut http = Http1::default();
    http.server.timeouts.header_read = Some(Duration::from_secs(120));
    http.server.timeouts.idle = Some(Duration::from_secs(120));
    let addr = serve(
        &sys.handle(),
        http,
        "127.0.0.1:0".parse().expect("addr"),
        0..2,
        app.recipient(),
        ServerConfig::default(),
    )
    .expect("serve");

    // Warm up (first connections allocate per-worker structures), then take the baseline.
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    let base_sockets = open_sockets();
    let rss0 = status_bytes("VmRSS");
    let data0 = status_bytes("VmData");

    let control = TcpListener::bind("127.0.0.1:0").expect("control listener");
    let exe = std::env::current_exe().expect("test binary");
    let mut helper = Helper(
        Command::new(exe)
            .args(["idle_holder", "--exact", "--ignored", "--test-threads", "1"])
            .env(
                "SINEW_IDLE_CONTROL",
                control.local_addr().expect("addr").to_string(),
            )
            .env("SINEW_IDLE_TARGET", addr.to_string())
            .env("SINEW_IDLE_CONNECTIONS", CONNECTIONS.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the helper"),
    );
    control.set_nonblocking(true).expect("nonblocking");
    let mut ctl = None;
    assert!(
        eventually(Duration::from_secs(10), || {
            if let Ok(Some(status)) = helper.0.try_wait() {
                panic!("helper exited early: {status}");
            }
            ctl = control.accept().ok().map(|(s, _)| s);
            ctl.is_some()
        }),
        "helper did not connect"
    );
    let ctl = ctl.expect("control connection");
    ctl.set_nonblocking(false).expect("blocking");
    ctl.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut ctl_w = ctl.try_clone().expect("clone");
    let mut ctl_r = BufReader::new(ctl);

    let ready = read_line(&mut ctl_r);
    let nums: Vec<usize> = ready
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    let samples = CONNECTIONS / SAMPLE_EVERY;
    assert_eq!(
        nums,
        vec![CONNECTIONS, samples],
        "helper: opened / live samples ({ready})"
    );
    // Every connection is held by the server (accepted and owned by a connection actor).
    assert!(
        eventually(Duration::from_secs(10), || open_sockets()
            >= base_sockets + CONNECTIONS),
        "server holds {} sockets, expected at least {}",
        open_sockets(),
        base_sockets + CONNECTIONS
    );
    let rss1 = status_bytes("VmRSS");
    let data1 = status_bytes("VmData");
    let rss_per = rss1.saturating_sub(rss0) / CONNECTIONS as u64;
    let data_per = data1.saturating_sub(data0) / CONNECTIONS as u64;
    let report = format!(
        "{{\"connections\":{CONNECTIONS},\"backend\":\"{}\",\"rss_bytes_per_connection\":{rss_per},\"vmdata_bytes_per_connection\":{data_per},\"rss_before\":{rss0},\"rss_after\":{rss1}}}\n",
        std::env::var("SINEW_TRANSPORT").unwrap_or_else(|_| Backend::Auto.to_string())
    );
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("idle_connections.json");
    std::fs::write(&out, &report).expect("write the report");
    tracing::info!(rss_per, data_per, "idle keep-alive connections held");
    assert!(
        rss_per < MAX_BYTES_PER_CONNECTION && data_per < MAX_BYTES_PER_CONNECTION,
        "memory per idle connection too high: {report}"
    );

    // Shutdown closes every connection cleanly: the helper sees EOF on each, no reset.
    let shut = sys.shutdown(Duration::from_secs(10));
    assert!(shut.clean, "shutdown not clean: {shut:?} ({report})");
    ctl_w.write_all(b"check\n").expect("tell the helper");
    let closed = read_line(&mut ctl_r);
    assert_eq!(
        closed,
        format!("closed {CONNECTIONS} 0"),
        "helper: clean EOFs / other outcomes ({report})"
    );
    // The baseline counted the server's listeners; with the control sockets gone too, no
    // socket of ours is left.
    drop((ctl_r, ctl_w, control));
    assert!(
        eventually(Duration::from_secs(10), || open_sockets() + 2
            <= base_sockets),
        "server sockets left open after shutdown: {} (baseline {base_sockets})",
        open_sockets()
    );
    let status = helper.0.wait().expect("helper exit");
    assert!(status.success(), "helper failed: {status}");
}

/// The helper: holds the client sockets. Does nothing unless run by the test above.
#[test]
#[ignore = "helper process for ten_thousand_idle_keep_alive_connections"]
fn idle_holder() {
    let (Ok(control), Ok(target), Ok(n)) = (
        std::env::var("SINEW_IDLE_CONTROL"),
        std::env::var("SINEW_IDLE_TARGET"),
        std::env::var("SINEW_IDLE_CONNECTIONS"),
    ) else {
        return;
    };
    let target: SocketAddr = target.parse().expect("target");
    let n: usize = n.parse().expect("count");
    raise_nofile();
    let mut ctl = TcpStream::connect(control).expect("control");
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(TcpStream::connect(target).expect("connect to the server"));
    }
    let mut live = 0;
    for s in conns.iter_mut().step_by(SAMPLE_EVERY) {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("request");
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !got.ends_with(b"live") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
        }
        if got.starts_with(b"HTTP/1.1 200") && got.ends_with(b"live") {
            live += 1;
        }
    }
    writeln!(ctl, "ready {} {live}", conns.len()).expect("report");
    let mut line = String::new();
    BufReader::new(ctl.try_clone().expect("clone"))
        .read_line(&mut line)
        .expect("command");
    assert_eq!(line.trim(), "check");
    let (mut eof, mut other) = (0, 0);
    let mut buf = [0u8; 64];
    for s in &mut conns {
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => eof += 1,
            _ => other += 1,
        }
    }
    writeln!(ctl, "closed {eof} {other}").expect("report");
}
