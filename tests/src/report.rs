//! The benchmark report's pure half: reading what each benchmark printed,
//! summarising repeated runs (median with spread) and laying out Markdown.
//! `bench-report` runs the benchmarks and writes the files.

use std::fmt::Write as _;

use serde_json::Value;

/// The JSON of a benchmark's last `RESULT {...}` line.
pub fn result_line(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|json| serde_json::from_str(json).ok())
}

/// The receiver's throughput in an iperf3 report, in Gbit/s (`-f g`);
/// NaN when there is none.
pub fn iperf_gbits(output: &str) -> f64 {
    output
        .lines()
        .find(|l| l.contains("receiver"))
        .and_then(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let unit = words.iter().position(|w| *w == "Gbits/sec")?;
            words.get(unit.checked_sub(1)?)?.parse().ok()
        })
        .unwrap_or(f64::NAN)
}

/// The numbers of a JSON array field; empty when absent.
pub fn numbers(v: &Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// Nearest-rank percentile of `samples` (any order), `per_mille` of 1000.
pub fn percentile(samples: &[f64], per_mille: usize) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let last = sorted.len().checked_sub(1)?;
    sorted.get(last * per_mille.min(1000) / 1000).copied()
}

/// A figure measured several times: its median and its spread.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub low: f64,
    pub high: f64,
    pub runs: usize,
}

impl Spread {
    /// Median, minimum and maximum of the runs' figures; `None` without any.
    pub fn of(runs: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = runs.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let (low, high) = (*sorted.first()?, *sorted.last()?);
        let mid = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            f64::midpoint(sorted[mid - 1], sorted[mid])
        } else {
            sorted[mid]
        };
        Some(Self {
            median,
            low,
            high,
            runs: sorted.len(),
        })
    }

    /// `1.23 (1.10–1.40)` with `unit` after each figure's digits; one run
    /// has no spread to show.
    pub fn show(&self, unit: &str) -> String {
        let figure = |v: f64| format!("{}{unit}", digits(v));
        if self.runs < 2 {
            return figure(self.median);
        }
        format!(
            "{} ({}–{})",
            figure(self.median),
            digits(self.low),
            digits(self.high)
        )
    }
}

/// Three significant digits at most, never in exponent form.
pub fn digits(v: f64) -> String {
    let magnitude = v.abs();
    if magnitude >= 100.0 {
        format!("{v:.0}")
    } else if magnitude >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `ours / theirs` as a ratio cell; blank when either is missing or zero.
pub fn ratio(ours: Option<Spread>, theirs: Option<Spread>) -> String {
    match (ours, theirs) {
        (Some(o), Some(t)) if t.median != 0.0 => format!("{:.2}", o.median / t.median),
        _ => String::new(),
    }
}

/// A Markdown table.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|&h| h.to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) -> &mut Self {
        self.rows.push(cells);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for i in 0..self.header.len() {
                let cell = cells.get(i).map_or("", String::as_str);
                let _ = write!(s, " {} |", cell.replace('|', "\\|"));
            }
            s.push('\n');
            s
        };
        let mut s = line(&self.header);
        s.push('|');
        s.push_str(&"---|".repeat(self.header.len()));
        s.push('\n');
        for row in &self.rows {
            s.push_str(&line(row));
        }
        s
    }
}

/// A row of `cluster-bench` from a build older than its `RESULT` line:
/// `  16 client(s):    6368 allocations/s, p50   2.07ms, p99   8.50ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LegacyRow {
    pub clients: usize,
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The rows and the failover time (ms) an older `cluster-bench` printed.
pub fn legacy_cluster_bench(stdout: &str) -> (Vec<LegacyRow>, Option<f64>) {
    let mut rows = Vec::new();
    let mut failover = None;
    for line in stdout.lines().map(str::trim) {
        if let Some((clients, rest)) = line.split_once(" client(s):") {
            let words: Vec<&str> = rest.split([' ', ',']).filter(|w| !w.is_empty()).collect();
            let after = |label: &str| {
                let i = words.iter().position(|w| *w == label)?;
                words.get(i + 1).copied()
            };
            let row = (|| {
                Some(LegacyRow {
                    clients: clients.trim().parse().ok()?,
                    rate: words.first()?.parse().ok()?,
                    p50_ms: duration_ms(after("p50")?)?,
                    p99_ms: duration_ms(after("p99")?)?,
                })
            })();
            rows.extend(row);
        } else if line.starts_with("failover:") {
            failover = line.split_whitespace().last().and_then(duration_ms);
        }
    }
    (rows, failover)
}

/// A duration as Rust's `{:?}` prints it (`850.00µs`, `2.07ms`, `1.20s`), in ms.
pub fn duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "ns" => 1e-6,
        "µs" | "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        _ => return None,
    };
    Some(number * scale)
}

/// Markdown of another report, nested under a section: its title dropped
/// and its headings one level deeper.
pub fn nest(markdown: &str) -> String {
    let mut s = String::new();
    for line in markdown.lines() {
        if line.starts_with("# ") {
            continue;
        }
        if line.starts_with('#') {
            s.push('#');
        }
        s.push_str(line);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iperf_reports_give_the_receivers_rate() {
        let out = "[  5]   0.00-5.00   sec  7.2 GBytes  12.4 Gbits/sec    0   sender\n\
                   [  5]   0.00-5.00   sec  7.2 GBytes  12.3 Gbits/sec         receiver\n";
        assert!((iperf_gbits(out) - 12.3).abs() < 1e-9);
        assert!(iperf_gbits("iperf3: error - unable to connect").is_nan());
    }

    #[test]
    fn the_last_result_line_is_read() {
        let out = "warming up\nRESULT {\"a\": [1]}\nnoise\nRESULT {\"a\": [2, 3.5]}\n";
        let v = result_line(out).unwrap();
        assert_eq!(numbers(&v, "a"), [2.0, 3.5]);
        assert!(numbers(&v, "missing").is_empty());
        assert!(result_line("no result\nRESULT not json").is_none());
    }

    #[test]
    fn spread_is_median_with_min_and_max() {
        let s = Spread::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!((s.median, s.low, s.high, s.runs), (3.0, 1.0, 5.0, 3));
        let even = Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert!((even.median - 2.5).abs() < 1e-9);
        assert_eq!(even.show(" ms"), "2.50 ms (1.00–4.00)");
        assert_eq!(Spread::of(&[1234.4]).unwrap().show("/s"), "1234/s");
        assert!(Spread::of(&[]).is_none());
        assert!(Spread::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&samples, 500), Some(50.0));
        assert_eq!(percentile(&samples, 990), Some(99.0));
        assert_eq!(percentile(&samples, 1000), Some(100.0));
        assert_eq!(percentile(&[], 500), None);
    }

    #[test]
    fn ratios_need_both_figures() {
        let (a, b) = (Spread::of(&[3.0]), Spread::of(&[2.0]));
        assert_eq!(ratio(a, b), "1.50");
        assert_eq!(ratio(a, None), "");
        assert_eq!(ratio(a, Spread::of(&[0.0])), "");
    }

    #[test]
    fn tables_render_as_markdown() {
        let mut t = Table::new(&["measure", "value"]);
        assert!(t.is_empty());
        t.row(vec!["a|b".into(), "1".into()])
            .row(vec!["short".into()]);
        assert_eq!(
            t.render(),
            "| measure | value |\n|---|---|\n| a\\|b | 1 |\n| short |  |\n"
        );
    }

    #[test]
    fn an_older_cluster_bench_is_read_from_its_lines() {
        let out = "3-node cluster on loopback gRPC, 3000 allocations per run\n\
                   \x20  1 client(s):     576 allocations/s, p50   1.60ms, p99 850.00µs\n\
                   \x20 16 client(s):    1093 allocations/s, p50  10.20ms, p99    1.07s\n\
                   \x20 garbage client(s): x\n\
                   \x20 failover: leader killed -> first successful allocation in 4.80s\n";
        let (rows, failover) = legacy_cluster_bench(out);
        assert_eq!(
            rows,
            [
                LegacyRow {
                    clients: 1,
                    rate: 576.0,
                    p50_ms: 1.6,
                    p99_ms: 0.85
                },
                LegacyRow {
                    clients: 16,
                    rate: 1093.0,
                    p50_ms: 10.2,
                    p99_ms: 1070.0
                },
            ]
        );
        assert_eq!(failover, Some(4800.0));
        assert_eq!(duration_ms("12ns"), Some(12e-6));
        assert_eq!(duration_ms("1.5m"), None);
    }

    #[test]
    fn nested_reports_lose_their_title() {
        assert_eq!(
            nest("# Title\n\ntext\n## Part\n| a |\n"),
            "\ntext\n### Part\n| a |\n"
        );
    }

    #[test]
    fn figures_keep_three_digits() {
        assert_eq!(digits(0.7712), "0.77");
        assert_eq!(digits(12.345), "12.3");
        assert_eq!(digits(10320.4), "10320");
    }
}
