//! Tables for an operator's terminal: the run summary and the stamps' status.

use crate::say;
use azs_app::registrar::StampView;
use azs_core::collect::RunSummary;

/// The run summary: one line per stamp.
pub fn print_summary(summary: &RunSummary) {
    say!(
        "{:<24} {:<10} {:>9} {:>10} {:>9} {:>11}  watermark / error",
        "stamp",
        "outcome",
        "windows",
        "rows",
        "unmapped",
        "quarantined"
    );
    for s in &summary.stamps {
        let tail = match (&s.error, s.watermark) {
            (Some(e), _) => e.clone(),
            (None, Some(w)) => w.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            (None, None) => String::new(),
        };
        say!(
            "{:<24} {:<10} {:>4}/{:<4} {:>10} {:>9} {:>11}  {tail}",
            truncate(&s.name, 24),
            s.outcome.as_str(),
            s.windows_committed,
            s.windows_planned,
            s.rows_written,
            s.unmapped_rows,
            s.quarantined
        );
    }
}

/// `status`: where each stamp's collection stands.
pub fn print_status(views: &[StampView]) {
    say!(
        "{:<36}  {:<20} {:<20} {:>8} {:<10} {:>8} {:>8} {:>11} {:>10} {:<17} {:>13}  last run / error",
        "id",
        "name",
        "watermark",
        "lag",
        "outcome",
        "rows",
        "unmapped",
        "quarantined",
        "duplicates",
        "verified",
        "drift m/e/c"
    );
    let now = chrono::Utc::now();
    for v in views {
        let Some(s) = &v.status else { continue };
        let last = s
            .last_run_finished
            .or(s.last_run_started)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| "never".into());
        // The same lag the functions publish for the alarms (azs_app::metrics).
        let lag = (now - s.watermark).num_seconds().max(0);
        say!(
            "{:<36}  {:<20} {:<20} {:>8} {:<10} {:>8} {:>8} {:>11} {:>10} {:<17} {:>13}  {}{}",
            v.stamp.id,
            truncate(&v.stamp.name, 20),
            s.watermark.format("%Y-%m-%dT%H:%M:%SZ"),
            format!("{}h{:02}m", lag / 3600, lag % 3600 / 60),
            s.outcome.as_str(),
            s.rows_written,
            s.unmapped_rows,
            s.quarantined_rows,
            s.duplicate_rows,
            s.last_verified
                .map(|v| v.at.format("%Y-%m-%dT%H:%MZ").to_string())
                .unwrap_or_else(|| "never".into()),
            s.drift.map(|d| format!("{}/{}/{}", d.missing, d.extra, d.changed)).unwrap_or_else(|| "-".into()),
            last,
            s.last_error.as_ref().map(|e| format!(" / {e}")).unwrap_or_default()
        );
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { s.chars().take(n - 1).chain(['…']).collect() }
}
