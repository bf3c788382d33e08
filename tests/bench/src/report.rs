//! Repeated measurements as figures: the median and range of each, a table for people and one JSON line
//! for tools.

use crate::measure::Measurement;
use serde::Serialize;
use serde_json::{Map, Value, json};

/// The median and range of one figure over the repeated runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    /// `None` when there are no values.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Self { median, min: v[0], max: v[n - 1] })
    }
}

struct Figure {
    key: &'static str,
    label: &'static str,
    digits: usize,
    value: fn(&Measurement) -> Option<f64>,
}

const FIGURES: &[Figure] = &[
    Figure {
        key: "rows",
        label: "rows collected",
        digits: 0,
        value: |m| Some(m.collect.rows_written as f64),
    },
    Figure { key: "seconds", label: "end to end, seconds", digits: 2, value: |m| Some(m.collect.seconds) },
    Figure {
        key: "rowsPerSecond",
        label: "end to end, rows/s",
        digits: 0,
        value: |m| Some(m.rows_per_second()),
    },
    Figure {
        key: "peakRssMib",
        label: "collector peak RSS, MiB",
        digits: 1,
        value: |m| Some(m.peak_rss_mib()),
    },
    Figure {
        key: "pullPercent",
        label: "pull+parse share of stage time, %",
        digits: 1,
        value: |m| {
            let (p, w) = (m.collect.pulling.summed_seconds, m.collect.writing.summed_seconds);
            Some(100.0 * p / (p + w))
        },
    },
    Figure {
        key: "writePercent",
        label: "writing share of stage time, %",
        digits: 1,
        value: |m| {
            let (p, w) = (m.collect.pulling.summed_seconds, m.collect.writing.summed_seconds);
            Some(100.0 * w / (p + w))
        },
    },
    Figure {
        key: "pullBusyPercent",
        label: "wall time some window was pulling, %",
        digits: 1,
        value: |m| Some(100.0 * m.collect.pulling.busy_seconds / m.collect.seconds),
    },
    Figure {
        key: "writeBusyPercent",
        label: "wall time the store was committing, %",
        digits: 1,
        value: |m| Some(100.0 * m.collect.writing.busy_seconds / m.collect.seconds),
    },
    Figure {
        key: "collectorCpuSeconds",
        label: "collector CPU, s",
        digits: 2,
        value: |m| Some(m.collect.cpu_seconds),
    },
    Figure {
        key: "simulatorCpuSeconds",
        label: "simulator CPU, s",
        digits: 2,
        value: |m| Some(m.simulator_cpu_seconds),
    },
    Figure {
        key: "pullOnlyRowsPerSecond",
        label: "pull+parse alone, rows/s",
        digits: 0,
        value: |m| m.pull_only.as_ref().map(|s| s.rows_per_second()),
    },
    Figure {
        key: "writeOnlyRowsPerSecond",
        label: "write alone, rows/s",
        digits: 0,
        value: |m| m.write_only.as_ref().map(|s| s.rows_per_second()),
    },
    Figure {
        key: "pullOnlyPeakRssMib",
        label: "pull alone peak RSS, MiB",
        digits: 1,
        value: |m| m.pull_only.as_ref().map(|s| s.peak_rss_kib as f64 / 1024.0),
    },
    Figure {
        key: "endToEndOfSlowerStagePercent",
        label: "end to end / slower stage alone, %",
        digits: 1,
        value: |m| m.slower_stage_rows_per_second().map(|s| 100.0 * m.rows_per_second() / s),
    },
    Figure {
        key: "load1m",
        label: "load average (1 min) before",
        digits: 2,
        value: |m| Some(m.load_before.one),
    },
];

/// One scenario's repeated runs, summarised.
pub struct Summary {
    pub scenario: String,
    pub runs: Vec<Measurement>,
}

impl Summary {
    pub fn stat(&self, key: &str) -> Option<Stat> {
        let figure = FIGURES.iter().find(|f| f.key == key)?;
        Stat::of(&self.runs.iter().filter_map(|m| (figure.value)(m)).collect::<Vec<_>>())
    }

    pub fn verified(&self) -> bool {
        self.runs.iter().all(|m| m.verified)
    }

    /// The table for people.
    pub fn table(&self) -> String {
        let Some(first) = self.runs.first() else { return String::new() };
        let mut out = format!(
            "== {} ({} run{}): {}\n",
            self.scenario,
            self.runs.len(),
            if self.runs.len() == 1 { "" } else { "s" },
            first.workload.describe()
        );
        out += &format!("   {:<40} {:>12}   {}\n", "figure", "median", "range (min .. max)");
        for figure in FIGURES {
            let values: Vec<f64> = self.runs.iter().filter_map(|m| (figure.value)(m)).collect();
            if let Some(s) = Stat::of(&values) {
                let d = figure.digits;
                out += &format!(
                    "   {:<40} {:>12.d$}   {:.d$} .. {:.d$}\n",
                    figure.label, s.median, s.min, s.max
                );
            }
        }
        let truth: Vec<String> =
            self.runs.iter().map(|m| format!("{}/{}", m.stored_rows, m.truth_rows)).collect();
        out += &format!(
            "   verified: {} (stored/ground-truth rows per run: {})\n",
            if self.verified() { "yes" } else { "NO" },
            truth.join(", ")
        );
        out
    }

    /// The JSON line for tools.
    pub fn json(&self) -> Value {
        let mut figures = Map::new();
        for figure in FIGURES {
            let values: Vec<f64> = self.runs.iter().filter_map(|m| (figure.value)(m)).collect();
            if let Some(s) = Stat::of(&values) {
                let round = |x: f64| (x * 1000.0).round() / 1000.0;
                figures.insert(
                    figure.key.into(),
                    json!({"median": round(s.median), "min": round(s.min), "max": round(s.max)}),
                );
            }
        }
        json!({
            "scenario": self.scenario,
            "workload": self.runs.first().map(|m| &m.workload),
            "runs": self.runs.len(),
            "verified": self.verified(),
            "figures": figures,
            "loadBefore": self.runs.iter().map(|m| [m.load_before.one, m.load_before.five, m.load_before.fifteen]).collect::<Vec<_>>(),
            "loadAfter": self.runs.iter().map(|m| [m.load_after.one, m.load_after.five, m.load_after.fifteen]).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(Stat::of(&[4.0, 1.0, 3.0, 2.0]), Some(Stat { median: 2.5, min: 1.0, max: 4.0 }));
        assert_eq!(Stat::of(&[5.0, 1.0, 3.0]).map(|s| s.median), Some(3.0));
        assert_eq!(Stat::of(&[]), None);
    }
}
