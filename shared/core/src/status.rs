//! Per-stamp processing status: the seed's `AzsHubUsageRecordProcessingStatusData`.

use crate::stamp::StampId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunOutcome {
    /// Never run.
    Pending,
    Running,
    /// Every planned window committed.
    Succeeded,
    /// Some windows committed, then the time budget ran out; the next run resumes.
    Partial,
    /// A window failed; the watermark stops before it and the next run retries it.
    Failed,
    /// Another run holds this stamp's lease.
    Skipped,
}

impl RunOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunOutcome::Pending => "pending",
            RunOutcome::Running => "running",
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Partial => "partial",
            RunOutcome::Failed => "failed",
            RunOutcome::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => RunOutcome::Pending,
            "running" => RunOutcome::Running,
            "succeeded" => RunOutcome::Succeeded,
            "partial" => RunOutcome::Partial,
            "failed" => RunOutcome::Failed,
            "skipped" => RunOutcome::Skipped,
            _ => return None,
        })
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessingStatus {
    pub stamp_id: StampId,
    /// Everything reported before this instant is committed; the next window starts here.
    pub watermark: DateTime<Utc>,
    pub last_run_started: Option<DateTime<Utc>>,
    pub last_run_finished: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    /// Rows written by the last run.
    pub rows_written: u64,
    /// Rows written by the last run that had no mapping.
    pub unmapped_rows: u64,
    /// Rows of this stamp held in quarantine (all runs): rows the stamp sent that the store cannot
    /// hold; `azs-usage quarantine list` shows them.
    pub quarantined_rows: u64,
    /// Exact duplicate rows the stamp sent and the store dropped (a row repeated within its window),
    /// over all runs: a stamp that repeats itself shows here instead of only in a log line.
    pub duplicate_rows: u64,
    pub last_error: Option<String>,
}

/// What a finished run records for one stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub outcome: RunOutcome,
    pub finished: DateTime<Utc>,
    pub rows_written: u64,
    pub unmapped_rows: u64,
    /// Exact duplicates the run's windows dropped; added to [`ProcessingStatus::duplicate_rows`].
    pub duplicates: u64,
    pub last_error: Option<String>,
}
