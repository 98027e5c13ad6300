//! Shared report format for every `sinew-bench` suite.
//!
//! Every suite produces [`Row`]s (one per suite, case, system and metric, holding the
//! median over the repeats). They are printed either as a human table grouped by case
//! ([`print_table`]) or as one JSON array on stdout ([`print_json`]).

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

/// One reported measurement: the median of a metric for one system in one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Suite name, e.g. `actors`.
    pub suite: String,
    /// Case within the suite, e.g. `pingpong-same-core`.
    pub case: String,
    /// System measured, e.g. `actix` or `sinew`.
    pub system: String,
    /// Metric name, e.g. `round_trip`.
    pub metric: String,
    /// Median value over the repeats.
    pub value: f64,
    /// Unit of `value`, e.g. `ns`, `msg/s`, `B`.
    pub unit: String,
    /// Whether a higher value is better (throughput) or a lower one (latency, bytes).
    pub higher_is_better: bool,
}

/// Which systems a table compares against.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec<'a> {
    /// Systems that count as peers for the "x best peer" column. When empty, every
    /// system that is neither the subject nor a baseline counts as a peer.
    pub peers: &'a [&'a str],
    /// Reference systems (floors / references), in order of preference: the table adds
    /// an "x baseline" column against the first one present in each case.
    pub baselines: &'a [&'a str],
    /// The system under test (e.g. `sinew`); never counted as its own peer.
    pub subject: &'a str,
}

/// Median of a slice of samples (the mean of the two middle values for even lengths).
/// Returns `None` for an empty slice. NaNs are sorted last.
pub fn median(samples: &[f64]) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// How many times better `value` is than `reference`: above 1 means better,
/// whichever direction the metric goes.
pub fn goodness_ratio(value: f64, reference: f64, higher_is_better: bool) -> f64 {
    if higher_is_better {
        value / reference
    } else {
        reference / value
    }
}

/// Picks the best row among `candidates` (max or min by `higher_is_better`).
fn best<'r>(candidates: impl Iterator<Item = &'r Row>) -> Option<&'r Row> {
    candidates.fold(None, |acc: Option<&Row>, r| match acc {
        None => Some(r),
        Some(b) => {
            let better = if r.higher_is_better {
                r.value > b.value
            } else {
                r.value < b.value
            };
            Some(if better { r } else { b })
        }
    })
}

/// Formats a value with a thousands-friendly precision for the table.
fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Writes the human table to `out`, grouped by (suite, case, metric) in first-seen order.
pub fn write_table(out: &mut impl Write, rows: &[Row], spec: &TableSpec<'_>) -> io::Result<()> {
    // Group while keeping first-seen order of groups and of systems within a group.
    let mut order: Vec<(String, String, String)> = Vec::new();
    let mut groups: BTreeMap<(String, String, String), Vec<&Row>> = BTreeMap::new();
    for r in rows {
        let key = (r.suite.clone(), r.case.clone(), r.metric.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(r);
    }

    for key in &order {
        let group = &groups[key];
        let is_peer = |r: &&Row| {
            r.system != spec.subject
                && if spec.peers.is_empty() {
                    !spec.baselines.contains(&r.system.as_str())
                } else {
                    spec.peers.contains(&r.system.as_str())
                }
        };
        let best_peer = best(group.iter().copied().filter(|r| is_peer(r)));
        let baseline = spec
            .baselines
            .iter()
            .find_map(|b| group.iter().find(|r| r.system == *b));
        let dir = if group[0].higher_is_better {
            "higher is better"
        } else {
            "lower is better"
        };
        // The longest name sets the column, so every row lines up.
        let name_width = group
            .iter()
            .map(|r| r.system.len())
            .max()
            .unwrap_or(0)
            .max(12);
        writeln!(out)?;
        writeln!(out, "{} / {}  ({}, {})", key.0, key.1, key.2, dir)?;
        let base_label = baseline
            .map(|b| format!("x {}", b.system))
            .unwrap_or_default();
        writeln!(
            out,
            "  {:<w$} {:>12} {:<6} {:>12} {:>14}",
            "system",
            "median",
            "unit",
            "x best peer",
            base_label,
            w = name_width
        )?;
        for r in group {
            let vs_peer = best_peer
                .map(|b| {
                    format!(
                        "{:.2}x",
                        goodness_ratio(r.value, b.value, r.higher_is_better)
                    )
                })
                .unwrap_or_else(|| "-".into());
            let vs_base = baseline
                .map(|b| {
                    format!(
                        "{:.2}x",
                        goodness_ratio(r.value, b.value, r.higher_is_better)
                    )
                })
                .unwrap_or_default();
            let mark = match best_peer {
                Some(b) if std::ptr::eq(*r, b) => " (best peer)",
                _ => "",
            };
            writeln!(
                out,
                "  {:<w$} {:>12} {:<6} {:>12} {:>14}{}",
                r.system,
                fmt_value(r.value),
                r.unit,
                vs_peer,
                vs_base,
                mark,
                w = name_width
            )?;
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "ratios: above 1.00x means better than the reference, whichever way the metric goes"
    )?;
    Ok(())
}

/// Prints the human table to stdout.
pub fn print_table(rows: &[Row], spec: &TableSpec<'_>) {
    let stdout = io::stdout();
    let mut lock = stdout.lock();
    write_table(&mut lock, rows, spec).expect("write table to stdout");
}

/// Prints the rows as ONE JSON array on stdout (and nothing else).
pub fn print_json(rows: &[Row]) {
    let s = serde_json::to_string_pretty(rows).expect("serialize rows");
    println!("{s}");
}

/// Warns on stderr when the machine is visibly busy (1-minute load average >= 0.5): on 2 shared
/// cores another process's build skews every figure of `suite`.
pub fn warn_if_busy(suite: &str) {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
    if let Some(l) = load.filter(|l| *l >= 0.5) {
        eprintln!("[{suite}] warning: 1-minute load average is {l:.2}; figures may be skewed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(system: &str, value: f64, hib: bool) -> Row {
        Row {
            suite: "s".into(),
            case: "c".into(),
            system: system.into(),
            metric: "m".into(),
            value,
            unit: "ns".into(),
            higher_is_better: hib,
        }
    }

    #[test]
    fn median_odd_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn ratio_direction() {
        assert_eq!(goodness_ratio(50.0, 100.0, false), 2.0);
        assert_eq!(goodness_ratio(200.0, 100.0, true), 2.0);
    }

    #[test]
    fn table_picks_best_peer() {
        let rows = vec![
            row("a", 100.0, false),
            row("b", 50.0, false),
            row("sinew", 25.0, false),
            row("floor", 10.0, false),
        ];
        let spec = TableSpec {
            peers: &[],
            baselines: &["floor"],
            subject: "sinew",
        };
        let mut out = Vec::new();
        write_table(&mut out, &rows, &spec).unwrap();
        let s = String::from_utf8(out).unwrap();
        let sinew_line = s
            .lines()
            .find(|l| l.trim_start().starts_with("sinew"))
            .unwrap();
        assert!(sinew_line.contains("2.00x"), "{s}");
        let b_line = s
            .lines()
            .find(|l| l.trim_start().starts_with("b "))
            .unwrap();
        assert!(b_line.contains("(best peer)"), "{s}");
    }

    #[test]
    fn json_is_array() {
        let rows = vec![row("a", 1.0, true)];
        let s = serde_json::to_string(&rows).unwrap();
        assert!(s.starts_with('[') && s.contains("\"higher_is_better\":true"));
    }
}
