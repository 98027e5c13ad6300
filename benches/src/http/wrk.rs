//! Running `wrk` pinned to the client core and reading its report.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One wrk invocation.
pub struct Spec<'a> {
    /// The wrk binary.
    pub wrk: &'a Path,
    /// The taskset binary (wrk runs as `taskset -c CPU wrk ...`).
    pub taskset: &'a Path,
    /// Core index wrk is pinned to.
    pub core: usize,
    /// Connections (`-c`); wrk runs one thread (`-t1`).
    pub connections: usize,
    /// Run length (`-d`, whole seconds, at least 1).
    pub duration: Duration,
    /// Target URL.
    pub url: String,
    /// Pipelining: the Lua script and the requests per write passed to it.
    pub pipeline: Option<(&'a Path, usize)>,
}

/// What one wrk run reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Report {
    /// Responses received (`N requests in ...`).
    pub requests: u64,
    /// `Requests/sec`.
    pub rps: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// Connect, read, write and timeout errors added up.
    pub socket_errors: u64,
    /// `Non-2xx or 3xx responses`.
    pub non_2xx: u64,
}

/// Runs wrk to completion and parses its report. wrk stops by itself after the duration;
/// it is killed if it has not finished 30 s later.
pub fn run(spec: &Spec<'_>) -> Result<Report, String> {
    let secs = spec.duration.as_secs().max(1);
    let cpu = crate::actors::core(spec.core)
        .map(|c| c.id)
        .unwrap_or(spec.core);
    let mut cmd = Command::new(spec.taskset);
    cmd.arg("-c")
        .arg(cpu.to_string())
        .arg(spec.wrk)
        .arg("-t1")
        .arg(format!("-c{}", spec.connections))
        .arg(format!("-d{secs}s"))
        .arg("--latency");
    if let Some((script, _)) = spec.pipeline {
        cmd.arg("-s").arg(script);
    }
    cmd.arg(&spec.url);
    if let Some((_, depth)) = spec.pipeline {
        cmd.arg("--").arg(depth.to_string());
    }
    let mut child = super::launch::tied(&mut cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn wrk: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("wrk stdout not piped")?;
    let mut stderr = child.stderr.take().ok_or("wrk stderr not piped")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(secs + 30);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("wrk did not finish in time".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("wait for wrk: {e}")),
        }
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("wrk exited with {status}: {}", err.trim()));
    }
    parse(&out).map_err(|e| format!("{e}; wrk said: {}{}", out.trim(), err.trim()))
}

/// Parses a wrk duration such as `180.12us`, `1.20ms`, `2.00s` or `1.00m` into microseconds.
fn parse_us(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(v * scale)
}

/// Parses wrk's `--latency` report.
pub fn parse(out: &str) -> Result<Report, String> {
    let mut requests = None;
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut socket_errors = 0;
    let mut non_2xx = 0;
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = line.strip_prefix("50%") {
            p50 = parse_us(v.trim());
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = parse_us(v.trim());
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // `connect 0, read 0, write 0, timeout 0`
            socket_errors = v
                .split(',')
                .filter_map(|kv| kv.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        } else if let Some((n, _)) = line.split_once(" requests in ") {
            requests = n.trim().parse::<u64>().ok();
        }
    }
    Ok(Report {
        requests: requests.ok_or("no `N requests in` line")?,
        rps: rps.ok_or("no `Requests/sec:` line")?,
        p50_us: p50.ok_or("no 50% latency line")?,
        p99_us: p99.ok_or("no 99% latency line")?,
        socket_errors,
        non_2xx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "Running 5s test @ http://127.0.0.1:40000/plaintext
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   310.45us  120.11us   4.12ms   90.00%
    Req/Sec   101.23k     2.10k  105.00k    70.00%
  Latency Distribution
     50%  290.00us
     75%  340.00us
     90%  400.00us
     99%    1.20ms
  503412 requests in 5.00s, 62.40MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec: 100682.40
Transfer/sec:     12.48MB
";

    #[test]
    fn parses_report() {
        let r = parse(OUT).expect("parsed");
        assert_eq!(r.requests, 503_412);
        assert_eq!(r.rps, 100_682.40);
        assert_eq!(r.p50_us, 290.0);
        assert_eq!(r.p99_us, 1200.0);
        assert_eq!(r.socket_errors, 3);
        assert_eq!(r.non_2xx, 4);
    }

    #[test]
    fn units() {
        assert_eq!(parse_us("2.00s"), Some(2e6));
        assert_eq!(parse_us("1.5m"), Some(90e6));
        assert_eq!(parse_us("12"), None);
    }

    #[test]
    fn missing_lines_are_errors() {
        assert!(parse("unable to connect to 127.0.0.1:1 Connection refused").is_err());
    }
}
