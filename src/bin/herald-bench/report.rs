//! The one table herald-bench prints, and the formatting of its numbers.

use std::future::Future;
use std::time::Duration;

/// One line of the table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Which scenario of issue 4 ("2 fan-out").
    pub scenario: String,
    /// What was measured at what size.
    pub size: String,
    /// The measurement.
    pub result: String,
    /// Latency p50 / p99 / max, where one was measured.
    pub latency: String,
    /// The target and whether this run met it.
    pub target: String,
    /// Something broke (events lost, a request failed): the run exits non-zero.
    pub failed: bool,
}

impl Row {
    pub fn new(scenario: &str, size: impl Into<String>, result: impl Into<String>) -> Row {
        Row {
            scenario: scenario.to_owned(),
            size: size.into(),
            result: result.into(),
            ..Row::default()
        }
    }

    pub fn latency(mut self, latency: impl Into<String>) -> Row {
        self.latency = latency.into();
        self
    }

    pub fn target(mut self, target: impl Into<String>) -> Row {
        self.target = target.into();
        self
    }

    /// Marks the row as broken: the run will exit non-zero.
    pub fn broken(mut self) -> Row {
        self.failed = true;
        self
    }

    pub fn skipped(scenario: &str, why: &str) -> Row {
        Row::new(scenario, "–", why)
    }
}

/// The rows so far, and whether anything broke.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
    failed: bool,
}

impl Report {
    /// Runs one scenario; a failure becomes a FAILED row (and a non-zero exit) instead of
    /// ending the run, so the other scenarios still report.
    pub async fn run<T>(
        &mut self,
        scenario: &str,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> Option<T> {
        eprintln!("== {scenario}");
        match work.await {
            Ok(value) => Some(value),
            Err(err) => {
                eprintln!("{scenario}: FAILED: {err:#}");
                let message = format!("{err:#}").replace('|', "/").replace('\n', " ");
                self.push(Row::new(scenario, "–", format!("FAILED: {message}")).broken());
                None
            }
        }
    }

    pub fn push(&mut self, row: Row) {
        self.failed |= row.failed;
        self.rows.push(row);
    }

    pub fn extend(&mut self, rows: Vec<Row>) {
        for row in rows {
            self.push(row);
        }
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The markdown table.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| scenario | size | result | latency p50 / p99 / max | target |\n|---|---|---|---|---|\n",
        );
        for row in &self.rows {
            let cell = |text: &str| {
                if text.is_empty() {
                    "–".to_owned()
                } else {
                    text.replace('|', "/")
                }
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                cell(&row.scenario),
                cell(&row.size),
                cell(&row.result),
                cell(&row.latency),
                cell(&row.target)
            ));
        }
        out
    }
}

/// 1234567 → "1,234,567".
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate, rounded to whole units.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        0.0
    } else {
        count as f64 / seconds
    }
}

/// A rate as "12,345 things/s".
pub fn per_second(value: f64, unit: &str) -> String {
    let value = thousands(value.round() as u64);
    if unit.is_empty() {
        format!("{value}/s")
    } else {
        format!("{value} {unit}/s")
    }
}

/// A duration for the table: µs below a millisecond, ms below a second, else seconds.
pub fn duration(value: Duration) -> String {
    let micros = value.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.1} ms", micros / 1000.0)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// Bytes as MiB with one decimal.
pub fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// "met" or "missed" for a target.
/// A share as whole percent, rounded down: `0.879` is `87`.
pub fn percent(share: f64) -> String {
    format!("{:.0}", (share * 100.0).floor())
}

pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(duration(Duration::from_micros(250)), "250 µs");
        assert_eq!(duration(Duration::from_micros(2500)), "2.5 ms");
        assert_eq!(duration(Duration::from_millis(6050)), "6.05 s");
    }

    #[test]
    fn percent_rounds_down() {
        assert_eq!(percent(0.879), "87");
        assert_eq!(percent(1.0), "100");
        assert_eq!(percent(0.0), "0");
    }

    #[test]
    fn the_table_escapes_pipes() {
        let mut report = Report::default();
        report.push(Row::new("1", "a|b", "c"));
        assert!(report.markdown().contains("| 1 | a/b | c | – | – |"));
    }
}
