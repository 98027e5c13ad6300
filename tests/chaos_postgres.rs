//! The chaos proxy between real PostgreSQL clients (`psql`, `pgbench`) and a real PostgreSQL
//! server: latency shows in round trips, a reset fails the session but not the server, a
//! blackhole makes connects time out, 1-byte writes still carry correct results, and pgbench
//! completes through a bandwidth cap.
//!
//! Each test starts its own throwaway cluster (see `support::postgres`). Without PostgreSQL
//! installed the tests fail, unless `SINEW_SKIP_POSTGRES=1`.

mod support;

use std::io::Write;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sinew::testkit::chaos::{ChaosProxy, Faults};
use support::postgres::{pg_bin, text, PgServer};

/// How long any one client may take before the test calls it hung.
const CLIENT_DEADLINE: Duration = Duration::from_secs(60);

fn server() -> Option<PgServer> {
    pg_bin().map(|bin| PgServer::start(&bin))
}

fn proxy(pg: &PgServer, faults: Faults) -> ChaosProxy {
    ChaosProxy::start(pg.addr, faults).expect("start the chaos proxy")
}

/// Waits for a spawned client with a deadline (a hung client fails the test, it does not hang
/// it).
fn finish(child: std::process::Child) -> Output {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(CLIENT_DEADLINE)
        .expect("the client did not finish in time")
        .expect("wait for the client")
}

/// Other sessions than the asking one (client backends only).
fn other_sessions(pg: &PgServer) -> u64 {
    pg.query(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )
    .parse()
    .expect("a count")
}

/// `n` statements, each its own round trip (psql sends the lines of a script one by one).
fn select_ones(n: usize) -> String {
    "SELECT 1;\n".repeat(n)
}

/// Runs a script of `n` `SELECT 1`s through `addr`; how long the whole session took.
fn timed_session(pg: &PgServer, addr: std::net::SocketAddr, n: usize) -> Duration {
    let start = Instant::now();
    let mut child = pg
        .psql(addr, "connect_timeout=10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start psql");
    child
        .stdin
        .take()
        .expect("psql's stdin")
        .write_all(select_ones(n).as_bytes())
        .expect("write the script");
    let out = finish(child);
    let took = start.elapsed();
    assert!(out.status.success(), "psql failed: {}", text(&out));
    let ones = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == "1")
        .count();
    assert_eq!(ones, n, "every statement answered: {}", text(&out));
    took
}

#[test]
fn latency_adds_at_least_two_one_way_delays_per_statement() {
    let Some(pg) = server() else { return };
    let latency = Duration::from_millis(20);
    let p = proxy(
        &pg,
        Faults {
            latency,
            ..Faults::default()
        },
    );
    let n = 20;
    let direct = timed_session(&pg, pg.addr, n);
    let proxied = timed_session(&pg, p.addr(), n);
    // Each statement crosses the proxy twice, each way delayed by `latency`; connection
    // setup adds more. A lower bound the fault itself sets, not a speed figure.
    let floor = latency * 2 * n as u32;
    assert!(
        proxied >= floor,
        "{n} statements through a {latency:?} proxy took {proxied:?} (< {floor:?}); direct {direct:?}"
    );
}

#[test]
fn a_reset_fails_the_session_and_leaves_the_server_healthy() {
    let Some(pg) = server() else { return };
    let p = proxy(&pg, Faults::default());
    let mut child = pg
        .psql(p.addr(), "connect_timeout=10 application_name=chaos")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start psql");
    let mut stdin = child.stdin.take().expect("psql's stdin");
    stdin
        .write_all(b"SELECT 1;\n")
        .expect("write the first statement");
    stdin.flush().expect("flush");
    // The session is up and idle once the server lists it, having run the first statement.
    let deadline = Instant::now() + CLIENT_DEADLINE;
    loop {
        let state = pg.query(
            "SELECT state || ':' || query FROM pg_stat_activity WHERE application_name = 'chaos'",
        );
        if state == "idle:SELECT 1;" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session never ran: {state:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p.update(|f| f.reset = true);
    // The next statement carries data through the proxy, which resets both sides.
    let _ = stdin.write_all(b"SELECT 2;\n");
    drop(stdin);
    let out = finish(child);
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        !out.status.success() && stderr.contains("connection"),
        "psql should fail with a connection error: {}",
        text(&out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains('2'),
        "the statement after the reset did not run: {}",
        text(&out)
    );
    // The server is fine: direct connections work, and the reset session's backend goes.
    assert_eq!(pg.query("SELECT 41 + 1"), "42");
    let deadline = Instant::now() + Duration::from_secs(30);
    while other_sessions(&pg) != 0 {
        assert!(
            Instant::now() < deadline,
            "a backend outlived its reset connection: {}",
            pg.query("SELECT string_agg(pid || ' ' || state, ', ') FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_blackhole_makes_the_connect_time_out() {
    let Some(pg) = server() else { return };
    let p = proxy(
        &pg,
        Faults {
            blackhole: true,
            ..Faults::default()
        },
    );
    let start = Instant::now();
    let child = pg
        .psql(p.addr(), "connect_timeout=1")
        .args(["-c", "SELECT 1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start psql");
    let out = finish(child);
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        !out.status.success() && stderr.contains("timeout"),
        "the connect should time out: {}",
        text(&out)
    );
    assert!(
        took >= Duration::from_secs(1),
        "timed out before its timeout: {took:?}"
    );
    // The proxy's swallowing hurt nobody else.
    assert_eq!(pg.query("SELECT 1"), "1");
}

#[test]
fn one_byte_writes_still_give_correct_results() {
    let Some(pg) = server() else { return };
    let p = proxy(
        &pg,
        Faults {
            slice: Some(1),
            ..Faults::default()
        },
    );
    let sql = "SELECT string_agg(i::text, ',' ORDER BY i) || ' ' || md5(repeat('sinew', 500)) \
               FROM generate_series(1, 300) i";
    let want = pg.query(sql);
    assert!(want.starts_with("1,2,3,"), "direct: {want}");
    let out = pg
        .psql(p.addr(), "connect_timeout=10")
        .args(["-c", sql])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "psql failed: {}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
}

#[test]
fn pgbench_through_a_bandwidth_cap_has_no_failed_transactions() {
    let Some(pg) = server() else { return };
    let init = pg
        .client("pgbench")
        .args(["-i", "-q", "-s", "1", "-h", "127.0.0.1", "-U", "postgres"])
        .args(["-p", &pg.addr.port().to_string(), "postgres"])
        .output()
        .expect("run pgbench -i");
    assert!(init.status.success(), "pgbench -i failed: {}", text(&init));
    let p = proxy(
        &pg,
        Faults {
            bandwidth: Some(256 * 1024),
            ..Faults::default()
        },
    );
    let child = pg
        .client("pgbench")
        .args(["-n", "-t", "50", "-c", "2", "-j", "1", "-h", "127.0.0.1"])
        .args([
            "-U",
            "postgres",
            "-p",
            &p.addr().port().to_string(),
            "postgres",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pgbench");
    let out = finish(child);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pgbench failed: {}", text(&out));
    assert!(
        report.contains("number of transactions actually processed: 100/100"),
        "{report}"
    );
    assert!(
        report.contains("number of failed transactions: 0 "),
        "{report}"
    );
}
