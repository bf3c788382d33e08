//! The timer job as every platform runs it: one collection over every enabled stamp within a time
//! budget, reported as one line per stamp. Platform-neutral so that the Azure custom handler shares it;
//! the Lambda entry point is [`lambda`] (feature `lambda`).

#[cfg(feature = "lambda")]
pub mod lambda;
pub mod sqs;

use azs_app::config::TimeBudget;
use azs_app::wiring::Services;
use azs_core::collect::{RunRequest, RunSummary, Silent, StampSummary};
use azs_core::ports::StoreError;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long this run may take: the operator's fixed `AZS_USAGE_TIME_BUDGET`, or what the platform
/// allows (`platform`).
pub fn budget(configured: TimeBudget, platform: Duration) -> Duration {
    match configured {
        TimeBudget::Fixed(fixed) => fixed,
        TimeBudget::Platform => platform,
    }
}

/// Runs one collection over every enabled stamp; no window starts that cannot finish within `budget`.
pub async fn collect_once(services: &Services, budget: Duration) -> Result<RunSummary, StoreError> {
    let request = RunRequest { stamps: Vec::new(), deadline: Some(Instant::now() + budget) };
    services.collector.run(request, Arc::new(Silent)).await
}

/// One line per stamp, for the platform's invocation log.
pub fn outcome_lines(summary: &RunSummary) -> Vec<String> {
    if summary.stamps.is_empty() {
        return vec!["no enabled stamps to collect".to_owned()];
    }
    summary.stamps.iter().map(outcome_line).collect()
}

/// `eu-1 (3f2a…): succeeded, 3/3 windows, 1200 rows (0 duplicates, 4 unmapped), watermark …`; rows
/// put in quarantine by this run are named when there are any (`..., 4 unmapped, 2 quarantined)`).
pub fn outcome_line(stamp: &StampSummary) -> String {
    let quarantined = match stamp.quarantined {
        0 => String::new(),
        n => format!(", {n} quarantined"),
    };
    let mut line = format!(
        "{} ({}): {}, {}/{} windows, {} rows ({} duplicates, {} unmapped{quarantined})",
        stamp.name,
        stamp.stamp_id,
        stamp.outcome,
        stamp.windows_committed,
        stamp.windows_planned,
        stamp.rows_written,
        stamp.duplicates,
        stamp.unmapped_rows,
    );
    if let Some(watermark) = stamp.watermark {
        let _ = write!(line, ", watermark {}", watermark.to_rfc3339());
    }
    // Collection errors name the stamp, window and stage, never a credential (see azs_core::collect).
    if let Some(error) = &stamp.error {
        let _ = write!(line, "; error: {error}");
    }
    line
}

/// `Some(message)` when a stamp failed: the invocation must fail so that the platform's retries and
/// alarms see it. The message names the failed stamps; their errors are in the log lines.
pub fn failure_message(summary: &RunSummary) -> Option<String> {
    let failed: Vec<String> = summary.failed().map(|s| format!("{} ({})", s.name, s.stamp_id)).collect();
    (!failed.is_empty()).then(|| {
        format!(
            "collection failed for {} of {} stamps: {}",
            failed.len(),
            summary.stamps.len(),
            failed.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use azs_core::stamp::StampId;
    use azs_core::status::RunOutcome;

    fn stamp(name: &str, outcome: RunOutcome, error: Option<&str>) -> StampSummary {
        StampSummary {
            stamp_id: StampId(format!("id-{name}")),
            name: name.to_owned(),
            outcome,
            windows_planned: 3,
            windows_committed: if outcome == RunOutcome::Failed { 1 } else { 3 },
            rows_written: 120,
            duplicates: 0,
            unmapped_rows: 4,
            quarantined: 0,
            watermark: None,
            drift: None,
            error: error.map(str::to_owned),
            budget_ran_out: false,
        }
    }

    #[test]
    fn each_stamp_gets_one_line_with_its_outcome_and_counts() {
        let line = outcome_line(&stamp("eu-1", RunOutcome::Succeeded, None));
        assert_eq!(line, "eu-1 (id-eu-1): succeeded, 3/3 windows, 120 rows (0 duplicates, 4 unmapped)");
        let line = outcome_line(&stamp("eu-2", RunOutcome::Failed, Some("stamp id-eu-2: token refused")));
        assert!(line.ends_with("; error: stamp id-eu-2: token refused"), "{line}");
        let line =
            outcome_line(&StampSummary { quarantined: 2, ..stamp("eu-3", RunOutcome::Succeeded, None) });
        assert_eq!(
            line,
            "eu-3 (id-eu-3): succeeded, 3/3 windows, 120 rows (0 duplicates, 4 unmapped, 2 quarantined)"
        );
    }

    #[test]
    fn a_run_without_stamps_says_so() {
        assert_eq!(outcome_lines(&RunSummary::default()), ["no enabled stamps to collect"]);
    }

    #[test]
    fn the_run_fails_when_any_stamp_failed_and_names_only_those() {
        let summary = RunSummary {
            stamps: vec![
                stamp("eu-1", RunOutcome::Succeeded, None),
                stamp("eu-2", RunOutcome::Failed, Some("boom")),
                stamp("eu-3", RunOutcome::Partial, None),
            ],
        };
        assert_eq!(failure_message(&summary).unwrap(), "collection failed for 1 of 3 stamps: eu-2 (id-eu-2)");
        assert_eq!(
            failure_message(&RunSummary { stamps: vec![stamp("eu-1", RunOutcome::Skipped, None)] }),
            None
        );
    }

    #[test]
    fn a_fixed_budget_overrides_the_platforms() {
        let platform = Duration::from_secs(270);
        assert_eq!(budget(TimeBudget::Platform, platform), platform);
        assert_eq!(budget(TimeBudget::Fixed(Duration::from_secs(60)), platform), Duration::from_secs(60));
    }
}
