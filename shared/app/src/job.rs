//! The timer and the worker as every platform runs them. A platform's entry point only translates: its
//! payload in (the time it allows, the queue it writes through, the delivery it was handed), the
//! answer below out (Lambda's result or batch response, the Functions host's `Outputs`/`Logs`).
//!
//! - [`timer`]: with `AZS_USAGE_FAN_OUT=queue`, one message per enabled stamp and nothing collected;
//!   otherwise one collection over every enabled stamp within the budget.
//! - [`work`]: one queued stamp collected within the budget (the fan-out worker; it needs only the
//!   fan-out, so a test can give it one with its own settings).
//! - [`keep_statements`]: after the timer's collection (or fan-out), in what is left of its budget,
//!   every billing subscription's draft of this month and last is brought up to date and last
//!   month's is made final when it is proven complete. It runs in the timer rather than on its own
//!   schedule: a draft is only worth rebuilding after usage may have arrived, and one timer means no
//!   second schedule to configure on either platform. With queue fan-out, the drafts show what the
//!   previous firing's workers committed.

use crate::config::{FanOut, TimeBudget};
use crate::rating::StatementService;
use crate::statement_pass::{self, Covered, Kept, PassMonth};
use crate::wiring::Services;
use azs_core::collect::{RunRequest, RunSummary, Silent, StampSummary};
use azs_core::fan_out::{Delivery, FanOutError, StampFanOut, WorkReport, WorkResult};
use azs_core::ports::{StampQueue, StoreError};
use azs_core::rating::statement::NotComplete;
use azs_core::rating::{Month, StatementSettings};
use azs_core::stamp::StampId;
use chrono::{DateTime, Utc};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{error, info, warn};

/// How long this run may take: the operator's fixed `AZS_USAGE_TIME_BUDGET`, or what the platform
/// allows (`platform`).
pub fn budget(configured: TimeBudget, platform: Duration) -> Duration {
    match configured {
        TimeBudget::Fixed(fixed) => fixed,
        TimeBudget::Platform => platform,
    }
}

/// What one firing of the timer did.
#[derive(Debug)]
pub enum TimerOutcome {
    /// Queue fan-out: these stamps were enqueued, one message each.
    Enqueued(Vec<StampId>),
    /// In-process: every enabled stamp was collected (or tried).
    Collected(RunSummary),
}

/// Why the timer could not do its job at all (a failed stamp is not this: see [`failure_message`]).
#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    #[error("the stamps could not be listed: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    FanOut(#[from] FanOutError),
    #[error(
        "AZS_USAGE_FAN_OUT=queue needs a stamp queue (AZS_USAGE_STAMP_QUEUE_URL and AZS_USAGE_DEAD_LETTER_QUEUE_URL on AWS)"
    )]
    NoQueue,
}

/// One firing of the timer. `queue` is where the platform sends stamp work (Lambda: SQS; Azure: the
/// invocation's output binding); only queue fan-out needs it.
pub async fn timer(
    services: &Services,
    queue: Option<&dyn StampQueue>,
    budget: Duration,
) -> Result<TimerOutcome, TimerError> {
    let deadline = Instant::now() + budget;
    if services.config.fan_out == FanOut::Queue {
        let queue = queue.ok_or(TimerError::NoQueue)?;
        let stamps = services.fan_out.enqueue_enabled(queue).await?;
        info!(stamps = stamps.len(), "stamp work enqueued");
        statements_after_collection(services, deadline).await;
        return Ok(TimerOutcome::Enqueued(stamps));
    }
    info!(budget_s = budget.as_secs(), "collection starting");
    let request = RunRequest { stamps: Vec::new(), deadline: Some(deadline) };
    let summary = services.collector.run(request, Arc::new(Silent)).await?;
    for line in outcome_lines(&summary) {
        info!(outcome = %line, "stamp outcome");
    }
    if let Some(message) = failure_message(&summary) {
        error!(%message, "invocation failed");
    }
    statements_after_collection(services, deadline).await;
    Ok(TimerOutcome::Collected(summary))
}

/// The timer's statement step: never fails the firing (collection is its job; a statement that
/// could not be kept now is kept by the next firing), but says what it did in the log.
async fn statements_after_collection(services: &Services, deadline: Instant) {
    // Opened once with the services (their start-up log says why when it could not be).
    let Some(rating) = services.rating.clone() else {
        info!(reason = "no rating store on this database", "statements not kept");
        return;
    };
    let service =
        StatementService { store: services.store.clone(), rating, settings: StatementSettings::default() };
    let report = keep_statements(&service, Utc::now(), deadline).await;
    for line in &report.lines {
        info!(outcome = %line, "statement outcome");
    }
    info!(outcome = %report.summary(), "statements kept");
}

/// What the statement step did in one firing, counted, with a line for each statement that needs
/// the operator's eye (blocked from finalising, or failed) and each one made final.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StatementsReport {
    /// Made final by this firing.
    pub finalised: usize,
    /// Final before this firing (left untouched).
    pub already_final: usize,
    /// Drafts of the current month, brought up to date.
    pub drafts: usize,
    /// Drafts of the previous month that are not proven complete yet.
    pub blocked: usize,
    pub failed: usize,
    /// Statements the budget left for the next firing.
    pub deferred: usize,
    /// `false` when no price book is imported: rating is not in use, nothing was built.
    pub rating_in_use: bool,
    /// `cust-a 2026-11: final, total 12.34 EUR`, `cust-b 2026-11: draft, not final: ...`.
    pub lines: Vec<String>,
}

impl StatementsReport {
    /// The one line the timer logs for its statement step.
    pub fn summary(&self) -> String {
        if !self.rating_in_use {
            return "no price book imported: no statements built".into();
        }
        let mut line = format!(
            "statements: {} finalised, {} already final, {} current drafts, {} blocked, {} failed",
            self.finalised, self.already_final, self.drafts, self.blocked, self.failed
        );
        if self.deferred > 0 {
            let _ = write!(line, ", {} left for the next firing (budget)", self.deferred);
        }
        line
    }
}

/// Keeps every mapped billing subscription's statements current at `now`: the current month's draft
/// rebuilt, the previous month's rebuilt and made final when proven complete (a final one is never
/// touched). One pass ([`statement_pass::keep_all`]) reads what they share once and each billing
/// subscription's rows once for both months. Stops starting new statements at `deadline`. One
/// statement's failure is counted and named, never stops the others.
pub async fn keep_statements(
    service: &StatementService,
    now: DateTime<Utc>,
    deadline: Instant,
) -> StatementsReport {
    let mut report = StatementsReport::default();
    match service.rating.price_books().await {
        Ok(books) if books.is_empty() => return report,
        Ok(_) => report.rating_in_use = true,
        Err(e) => {
            report.rating_in_use = true;
            report.failed += 1;
            report.lines.push(format!("price books could not be read: {e}"));
            return report;
        }
    }
    let current = Month::of(now);
    let previous = Month::of(current.start() - chrono::Duration::hours(1));
    let months =
        [PassMonth { month: previous, finalise: true }, PassMonth { month: current, finalise: false }];
    let pass = statement_pass::keep_all(
        service,
        &months,
        &Covered::Every,
        now,
        Some(deadline),
        |subscription: &str, month: Month, kept: Kept| {
            let label = format!("{subscription} {month}");
            match kept {
                Kept::Draft(_) => report.drafts += 1,
                // This month's final statement (a month made final early by hand) is its current one.
                Kept::AlreadyFinal(_) if month == current => report.drafts += 1,
                Kept::AlreadyFinal(_) => report.already_final += 1,
                Kept::Finalised(statement) => {
                    report.finalised += 1;
                    report.lines.push(format!(
                        "{label}: final, total {}{}",
                        statement.total,
                        statement.currency.map(|c| format!(" {}", c.code)).unwrap_or_default()
                    ));
                }
                Kept::Blocked(_, NotComplete { blockers, .. }) => {
                    report.blocked += 1;
                    let why: Vec<String> = blockers.iter().map(ToString::to_string).collect();
                    report.lines.push(format!("{label}: draft, not final: {}", why.join("; ")));
                }
                Kept::Failed(e) => {
                    report.failed += 1;
                    report.lines.push(format!("{label}: not kept: {e:#}"));
                }
            }
        },
    )
    .await;
    match pass {
        Ok(end) => report.deferred = end.deferred,
        Err(e) => {
            report.failed += 1;
            report.lines.push(format!("the statements' inputs could not be read: {e:#}"));
        }
    }
    report
}

/// One queued stamp: collected within `budget`, continued, skipped or dead-lettered ([`WorkResult::Done`],
/// the message is finished), or left for redelivery ([`WorkResult::Retry`]). Logged either way.
pub async fn work(
    fan_out: &StampFanOut,
    queue: &dyn StampQueue,
    delivery: Delivery<'_>,
    budget: Duration,
) -> WorkResult {
    let result = fan_out.work(queue, delivery, Some(Instant::now() + budget)).await;
    match &result {
        WorkResult::Done(report) => info!(outcome = %work_line(report), "stamp work done"),
        WorkResult::Retry { stamp_id, error } => {
            warn!(stamp_id = ?stamp_id.as_ref().map(|s| s.to_string()), %error, "stamp work to be retried")
        }
    }
    result
}

/// `stamp 3f2a…: succeeded, continuation enqueued`: what one queued stamp's work came to.
pub fn work_line(report: &WorkReport) -> String {
    let mut line = format!(
        "stamp {}: {}",
        report.stamp_id.as_ref().map(|s| s.to_string()).unwrap_or_else(|| "?".into()),
        report.summary.as_ref().map(|s| s.outcome.to_string()).unwrap_or_else(|| "not collected".into()),
    );
    if report.continued {
        line.push_str(", continuation enqueued");
    }
    if let Some(letter) = &report.dead_letter {
        let _ = write!(line, ", dead-lettered: {}", letter.error);
    }
    line
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

    #[test]
    fn a_work_line_names_the_stamp_its_outcome_and_what_was_queued() {
        let done = WorkReport {
            stamp_id: Some(StampId("id-eu-1".into())),
            summary: Some(stamp("eu-1", RunOutcome::Partial, None)),
            continued: true,
            dead_letter: None,
        };
        assert_eq!(work_line(&done), "stamp id-eu-1: partial, continuation enqueued");
        let unreadable = WorkReport { stamp_id: None, summary: None, continued: false, dead_letter: None };
        assert_eq!(work_line(&unreadable), "stamp ?: not collected");
    }
}
