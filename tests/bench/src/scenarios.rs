//! The named runs and the targets they are judged by (on the project's 2-core machine):
//! - `standard`: 4 stamps x 1,000 tenants x 10 meters x 24 h = 960,000 rows, with each stage alone;
//!   end to end >= 100,000 rows/s, >= 70 % of the slower stage alone, collector peak RSS <= 64 MiB;
//! - `stamps`: 1, 4, 16 and 64 stamps at equal total rows;
//! - `fan-out`: 16 stamps whose pages each take 250 ms more, concurrency 1 vs 16, and one stamp alone;
//!   concurrency 16 within 1.5x of one stamp alone;
//! - `windows`: one stamp over 24 and over 168 reported hours; peak RSS <= 64 MiB and flat;
//! - `mapped`: the standard workload with every tenant mapped first (reported, not judged).
//!
//! Runs of different workloads take turns (A B C A B C ...), so a change in the machine's load
//! spreads over all of them instead of landing on one.

use crate::measure::{Options, measure};
use crate::report::Summary;
use crate::workload::Workload;

/// A target, and whether the medians met it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

impl Verdict {
    pub fn line(&self) -> String {
        format!("[{}] {} -- measured {}", if self.met { "met" } else { "MISSED" }, self.target, self.measured)
    }
}

/// Measures each `(name, workload)` `repeat` times, taking turns.
pub async fn repeated(
    cases: Vec<(String, Workload, bool)>,
    repeat: usize,
    options: &Options,
) -> anyhow::Result<Vec<Summary>> {
    let mut summaries: Vec<Summary> =
        cases.iter().map(|(name, _, _)| Summary { scenario: name.clone(), runs: Vec::new() }).collect();
    for round in 0..repeat.max(1) {
        for ((name, workload, stages), summary) in cases.iter().zip(&mut summaries) {
            eprintln!(
                "azs-usage-bench: {name}, run {} of {}: {}",
                round + 1,
                repeat.max(1),
                workload.describe()
            );
            let options = Options { stages: *stages, ..options.clone() };
            let m = measure(workload, &options).await?;
            eprintln!(
                "azs-usage-bench:   {:.2} s, {:.0} rows/s, peak RSS {:.1} MiB, verified {}",
                m.collect.seconds,
                m.rows_per_second(),
                m.peak_rss_mib(),
                m.verified
            );
            summary.runs.push(m);
        }
    }
    Ok(summaries)
}

pub fn standard_cases() -> Vec<(String, Workload, bool)> {
    vec![("standard".into(), Workload::standard(), true)]
}

/// The standard workload with every tenant subscription mapped first: the steady state, where rows
/// carry their billing subscription and skip the index of unmapped rows.
pub fn mapped_cases() -> Vec<(String, Workload, bool)> {
    vec![("standard-mapped".into(), Workload { mapped: true, ..Workload::standard() }, true)]
}

pub fn standard_verdicts(s: &Summary) -> Vec<Verdict> {
    let mut v = Vec::new();
    if let Some(rate) = s.stat("rowsPerSecond") {
        v.push(Verdict {
            target: "standard: >= 100,000 rows/s end to end".into(),
            measured: format!("{:.0} rows/s (range {:.0} .. {:.0})", rate.median, rate.min, rate.max),
            met: rate.median >= 100_000.0,
        });
    }
    if let Some(share) = s.stat("endToEndOfSlowerStagePercent") {
        v.push(Verdict {
            target: "standard: end to end >= 70 % of the slower stage alone".into(),
            measured: format!("{:.1} % (range {:.1} .. {:.1})", share.median, share.min, share.max),
            met: share.median >= 70.0,
        });
    }
    if let Some(rss) = s.stat("peakRssMib") {
        v.push(rss_verdict("standard", rss));
    }
    v
}

fn rss_verdict(what: &str, rss: crate::report::Stat) -> Verdict {
    Verdict {
        target: format!("{what}: collector peak RSS <= 64 MiB"),
        measured: format!("{:.1} MiB (range {:.1} .. {:.1})", rss.median, rss.min, rss.max),
        met: rss.max <= 64.0,
    }
}

/// 960,000 rows over 1, 4, 16 and 64 stamps (64 stamps: 125 tenants x 5 meters, since 4,000 tenants
/// do not split into 64 equal stamps of 10 meters).
pub fn stamps_cases() -> Vec<(String, Workload, bool)> {
    [(1, 4000, 10), (4, 1000, 10), (16, 250, 10), (64, 125, 5)]
        .into_iter()
        .map(|(stamps, tenants, meters)| {
            let w = Workload { stamps, tenants, meters, ..Workload::standard() };
            (format!("stamps-{stamps}"), w, false)
        })
        .collect()
}

/// 16 slow stamps (250 ms per page of 100 rows, 2 h x 200 tenants x 5 meters each) with concurrency
/// 1 and 16, and one such stamp alone.
pub fn fan_out_cases() -> Vec<(String, Workload, bool)> {
    let slow = Workload {
        stamps: 16,
        tenants: 200,
        meters: 5,
        hours: 2,
        page_size: 100,
        page_delay_ms: 250,
        concurrency: 16,
        seed: 42,
        mapped: false,
        subscriber_concurrency: 0,
    };
    vec![
        ("fan-out-alone".into(), Workload { stamps: 1, concurrency: 1, ..slow.clone() }, false),
        ("fan-out-bound-1".into(), Workload { concurrency: 1, ..slow.clone() }, false),
        ("fan-out-bound-16".into(), slow, false),
    ]
}

pub fn fan_out_verdicts(summaries: &[Summary]) -> Vec<Verdict> {
    let find = |name: &str| summaries.iter().find(|s| s.scenario == name).and_then(|s| s.stat("seconds"));
    match (find("fan-out-alone"), find("fan-out-bound-16"), find("fan-out-bound-1")) {
        (Some(alone), Some(sixteen), bound1) => vec![Verdict {
            target: "fan-out: 16 stamps with bound 16 within 1.5x of one stamp alone".into(),
            measured: format!(
                "{:.2} s vs {:.2} s alone = {:.2}x (bound 1: {})",
                sixteen.median,
                alone.median,
                sixteen.median / alone.median,
                bound1.map_or("-".into(), |b| format!("{:.2} s", b.median))
            ),
            met: sixteen.median <= 1.5 * alone.median,
        }],
        _ => Vec::new(),
    }
}

/// One per-subscriber stamp with 2,000 tenant subscriptions (one meter each), 200 ms per query, one
/// reported hour, at subscriber concurrency 8 and 16; concurrency 1 on a 200-subscription sample
/// (the whole stamp would take ~400 s one query after another), scaled to 2,000 in the verdict.
pub fn scale_cases() -> Vec<(String, Workload, bool)> {
    let large = Workload {
        stamps: 1,
        tenants: 2000,
        meters: 1,
        hours: 1,
        page_size: 1000,
        page_delay_ms: 200,
        concurrency: 1,
        seed: 42,
        mapped: false,
        subscriber_concurrency: 8,
    };
    vec![
        (
            "scale-1-sample-200".into(),
            Workload { tenants: 200, subscriber_concurrency: 1, ..large.clone() },
            false,
        ),
        ("scale-8".into(), large.clone(), false),
        ("scale-16".into(), Workload { subscriber_concurrency: 16, ..large }, false),
    ]
}

pub fn scale_verdicts(summaries: &[Summary]) -> Vec<Verdict> {
    let find = |name: &str| summaries.iter().find(|s| s.scenario == name).and_then(|s| s.stat("seconds"));
    let mut v = Vec::new();
    if let Some(eight) = find("scale-8") {
        v.push(Verdict {
            target: "scale: a 2,000-subscriber stamp at 200 ms per query collects an hour in under 60 s at concurrency 8".into(),
            measured: format!(
                "{:.1} s per hour at 8, {} at 16, {} at 1 (200-subscription sample x 10)",
                eight.median,
                find("scale-16").map_or("-".into(), |s| format!("{:.1} s", s.median)),
                find("scale-1-sample-200").map_or("-".into(), |s| format!("~{:.0} s", s.median * 10.0)),
            ),
            met: eight.median < 60.0,
        });
    }
    v
}

/// One stamp of 10,000 rows an hour over a day and over a week.
pub fn windows_cases() -> Vec<(String, Workload, bool)> {
    [24, 168]
        .into_iter()
        .map(|hours| {
            let w = Workload { stamps: 1, hours, ..Workload::standard() };
            (format!("windows-{hours}"), w, false)
        })
        .collect()
}

pub fn windows_verdicts(summaries: &[Summary]) -> Vec<Verdict> {
    let find = |name: &str| summaries.iter().find(|s| s.scenario == name).and_then(|s| s.stat("peakRssMib"));
    let mut v = Vec::new();
    if let (Some(day), Some(week)) = (find("windows-24"), find("windows-168")) {
        v.push(rss_verdict("windows (168 h)", week));
        v.push(Verdict {
            target: "windows: peak RSS flat from 24 to 168 windows (within 10 %)".into(),
            measured: format!("{:.1} MiB at 24 h, {:.1} MiB at 168 h", day.median, week.median),
            met: week.median <= day.median * 1.10,
        });
    }
    v
}
