//! Running `redis-benchmark` pinned to the client core and reading its report.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One redis-benchmark invocation (one test: `SET` or `GET`).
pub struct Spec<'a> {
    /// The redis-benchmark binary.
    pub bin: &'a Path,
    /// The taskset binary (redis-benchmark runs as `taskset -c CPU redis-benchmark ...`).
    pub taskset: &'a Path,
    /// Core index redis-benchmark is pinned to.
    pub core: usize,
    /// Server port on 127.0.0.1.
    pub port: u16,
    /// The test (`-t`): `set` or `get`.
    pub test: &'a str,
    /// Requests pipelined per connection (`-P`).
    pub pipeline: usize,
    /// Parallel connections (`-c`).
    pub clients: usize,
    /// Total requests (`-n`).
    pub requests: u64,
    /// Random keys `key:000000000000 .. keyspace - 1` (`-r`).
    pub keyspace: u64,
    /// Kill it if it has not finished by then.
    pub timeout: Duration,
}

/// Runs redis-benchmark to completion (`--csv`) and returns the requests per second of the
/// test.
pub fn run(spec: &Spec<'_>) -> Result<f64, String> {
    let mut cmd = Command::new(spec.taskset);
    cmd.arg("-c")
        .arg(super::launch::cpu_id(spec.core).to_string())
        .arg(spec.bin)
        .arg("-h")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(spec.port.to_string())
        .arg("-t")
        .arg(spec.test)
        .arg("-P")
        .arg(spec.pipeline.to_string())
        .arg("-c")
        .arg(spec.clients.to_string())
        .arg("-n")
        .arg(spec.requests.to_string())
        .arg("-r")
        .arg(spec.keyspace.to_string())
        .arg("--csv");
    let done = super::launch::run_to_end(
        super::launch::tied(&mut cmd),
        "redis-benchmark",
        spec.timeout,
    )?;
    if !done.success {
        return Err(format!(
            "redis-benchmark exited with {}: {}{}",
            done.status,
            done.stdout.trim(),
            done.stderr.trim()
        ));
    }
    parse(&done.stdout, spec.test).map_err(|e| {
        format!(
            "{e}; redis-benchmark said: {}{}",
            done.stdout.trim(),
            done.stderr.trim()
        )
    })
}

/// The fields of one CSV line, quotes removed (redis-benchmark never quotes a comma).
fn csv_fields(line: &str) -> Vec<&str> {
    line.split(',')
        .map(|f| f.trim().trim_matches('"'))
        .collect()
}

/// Reads the requests per second of `test` (case-insensitive) from redis-benchmark's output:
/// the `--csv` form (with the `"test","rps",...` header of Redis 6+, or without one as
/// older versions print it), or else the `-q` form, where progress updates share one line
/// separated by `\r` and the final figure is the text after the last `\r`
/// (`SET: 512032.78 requests per second, p50=0.815 msec`).
pub fn parse(out: &str, test: &str) -> Result<f64, String> {
    let test = test.to_ascii_uppercase();
    let mut rps_col = 1;
    for line in out.lines() {
        let line = line.rsplit('\r').next().unwrap_or(line).trim();
        if line.is_empty() {
            continue;
        }
        let fields = csv_fields(line);
        if fields.len() >= 2 && fields[0] == "test" {
            rps_col = fields
                .iter()
                .position(|f| *f == "rps")
                .ok_or("CSV header without an `rps` column")?;
            continue;
        }
        if fields.len() > rps_col && fields[0].eq_ignore_ascii_case(&test) {
            return fields[rps_col]
                .parse::<f64>()
                .map_err(|e| format!("rps {:?}: {e}", fields[rps_col]));
        }
        if let Some(rest) = line
            .strip_prefix(test.as_str())
            .and_then(|r| r.strip_prefix(':'))
        {
            if let Some((n, _)) = rest.split_once("requests per second") {
                return n
                    .trim()
                    .parse::<f64>()
                    .map_err(|e| format!("rps {:?}: {e}", n.trim()));
            }
        }
    }
    Err(format!("no {test} result in the output"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_csv_with_header() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\
                   \"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"SET\",\"44130.62\",\"0.634\",\"0.096\",\"0.303\",\"4.271\",\"8.335\",\"12.375\"\n\
                   \"GET\",\"56561.09\",\"0.475\",\"0.056\",\"0.287\",\"0.487\",\"4.567\",\"13.831\"\n";
        assert_eq!(parse(out, "set"), Ok(44130.62));
        assert_eq!(parse(out, "get"), Ok(56561.09));
    }

    #[test]
    fn parses_old_csv_without_header() {
        assert_eq!(parse("\"GET\",\"81234.56\"\n", "GET"), Ok(81234.56));
    }

    #[test]
    fn header_column_order_is_respected() {
        let out = "\"test\",\"avg\",\"rps\"\n\"SET\",\"0.5\",\"1000.5\"\n";
        assert_eq!(parse(out, "set"), Ok(1000.5));
    }

    #[test]
    fn parses_quiet_output_after_last_carriage_return() {
        let out = "SET: rps=0.0 (overall: -nan) avg_msec=-nan (overall: -nan)\r  \
                   SET: rps=431301.6 (overall: 431301.6) avg_msec=1.727 (overall: 1.727)\r\
                   SET: 512032.78 requests per second, p50=0.815 msec    \n";
        assert_eq!(parse(out, "set"), Ok(512032.78));
    }

    #[test]
    fn missing_or_bad_results_are_errors() {
        assert!(parse(
            "Could not connect to Redis at 127.0.0.1:1: Connection refused\n",
            "set"
        )
        .is_err());
        assert!(parse("\"SET\",\"fast\"\n", "set").is_err());
        assert!(parse("\"GET\",\"1.0\"\n", "set").is_err());
    }
}
