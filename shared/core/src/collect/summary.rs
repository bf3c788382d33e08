//! What a run reports: per stamp ([`StampSummary`], also what a reprocess reports) and for the whole
//! run ([`RunSummary`], which the functions turn into metrics and the CLI into a table).

use crate::stamp::StampId;
use crate::status::{DriftCounts, RunOutcome};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What one run did for one stamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StampSummary {
    pub stamp_id: StampId,
    pub name: String,
    pub outcome: RunOutcome,
    pub windows_planned: usize,
    pub windows_committed: usize,
    pub rows_written: u64,
    pub duplicates: u64,
    pub unmapped_rows: u64,
    /// Rows this run put in quarantine (the store cannot hold them; see [`crate::quarantine`]).
    pub quarantined: u64,
    pub watermark: Option<DateTime<Utc>>,
    /// What this run's scheduled verify found; `None` when it verified nothing (not due, off, out of
    /// budget, or the verify itself failed: see the log).
    pub drift: Option<DriftCounts>,
    pub error: Option<String>,
    /// The run's time budget ran out in the middle of a window (the error says which): nothing of that
    /// window was committed, and a run with a fresh budget can still complete it.
    #[serde(skip)]
    pub budget_ran_out: bool,
}

impl StampSummary {
    /// Before anything is done: failed until shown otherwise, so that a summary cut short says so.
    pub(super) fn starting(stamp_id: StampId, name: String) -> Self {
        Self {
            stamp_id,
            name,
            outcome: RunOutcome::Failed,
            windows_planned: 0,
            windows_committed: 0,
            rows_written: 0,
            duplicates: 0,
            unmapped_rows: 0,
            quarantined: 0,
            watermark: None,
            drift: None,
            error: None,
            budget_ran_out: false,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub stamps: Vec<StampSummary>,
}

impl RunSummary {
    pub fn failed(&self) -> impl Iterator<Item = &StampSummary> {
        self.stamps.iter().filter(|s| s.outcome == RunOutcome::Failed)
    }

    pub fn any_failed(&self) -> bool {
        self.failed().next().is_some()
    }

    pub fn rows_written(&self) -> u64 {
        self.stamps.iter().map(|s| s.rows_written).sum()
    }

    pub fn quarantined(&self) -> u64 {
        self.stamps.iter().map(|s| s.quarantined).sum()
    }
}
