//! One window: pulled page by page under the stamp's lease (renewed while the pull runs) and the
//! run's time budget, each row checked against what the store can hold (the rest quarantined, up to a
//! cap), then committed with the watermark in one fenced transaction.

use super::{CollectErrorKind, Collector, DEFAULT_MAX_QUARANTINED_PER_WINDOW};
use crate::ports::{
    CommitReceipt, LimitExceeded, PageRows, PullError, PullSummary, StampSession, WindowCommit, WindowWrite,
};
use crate::quarantine::{QuarantinedRow, RowLimits, reconstructed_json};
use crate::stamp::Stamp;
use crate::usage::{RowKey, UsageRow};
use crate::window::ReportedWindow;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

impl Collector {
    /// Drives one window's pull while keeping the stamp's lease (renewed every third of its time to
    /// live, so a long pull never lets it lapse to another run) and watching the run's time budget (a
    /// pull still going when only the commit reserve is left is abandoned: dropping it drops its rows).
    async fn pull_under_lease(
        &self,
        pull: &Pull<'_>,
        work: impl std::future::Future<Output = Result<PullSummary, PullError>>,
    ) -> Result<PullSummary, CollectErrorKind> {
        tokio::pin!(work);
        let every = (self.settings.lease_ttl / 3).max(Duration::from_millis(50));
        let mut renew_at = Instant::now() + every;
        let cutoff = pull.deadline.map(|d| d.checked_sub(self.settings.commit_reserve).unwrap_or(d));
        loop {
            tokio::select! {
                done = &mut work => return Ok(done?),
                _ = tokio::time::sleep_until(renew_at) => {
                    self.renew_lease(&pull.stamp.id, pull.owner).await?;
                    renew_at = Instant::now() + every;
                }
                _ = tokio::time::sleep_until(cutoff.unwrap_or(renew_at)), if cutoff.is_some() => {
                    return Err(CollectErrorKind::TimeBudget {
                        reserve_secs: self.settings.commit_reserve.as_secs(),
                    });
                }
            }
        }
    }

    /// One window's rows, pulled under the run's lease and budget (see [`Self::pull_under_lease`]).
    pub(super) async fn pull_rows(
        &self,
        pull: &Pull<'_>,
        session: &dyn StampSession,
        window: ReportedWindow,
        rows_hint: &mut usize,
        watch_repeats: bool,
    ) -> Result<(PulledWindow, PullSummary), CollectErrorKind> {
        let mut pulled_window = PulledWindow::new(self.ledger.row_limits(), *rows_hint);
        pulled_window.max_quarantined = self.settings.max_quarantined_per_window;
        pulled_window.watch_repeats = watch_repeats;
        let pulled = self
            .pull_under_lease(
                pull,
                session.pull_pages(window, pull.also, &mut |page| pulled_window.take(page)),
            )
            .await?;
        *rows_hint = pulled_window.rows.len();
        let limit = self.settings.max_quarantined_per_window;
        if pulled_window.quarantine_overflow > 0 {
            let rows = pulled_window.quarantined.len() as u64 + pulled_window.quarantine_overflow;
            return Err(PullError::limit(LimitExceeded::Quarantined { rows, limit }).into());
        }
        Ok((pulled_window, pulled))
    }

    pub(super) async fn commit_rows(
        &self,
        pull: &Pull<'_>,
        window: ReportedWindow,
        rows: PulledWindow,
        pulled: PullSummary,
    ) -> Result<CommitReceipt, CollectErrorKind> {
        if !rows.quarantined.is_empty() {
            for q in &rows.quarantined {
                warn!(reason = %q.reason, "a row the store cannot hold is quarantined with its window");
            }
        }
        let receipt = self
            .ledger
            .commit_window(WindowCommit {
                stamp: &pull.stamp.id,
                window,
                lease_owner: pull.owner,
                write: pull.write,
                rows: rows.rows,
                quarantined: rows.quarantined,
            })
            .await?;
        info!(
            pages = pulled.pages,
            rows = pulled.rows,
            retries = pulled.retries,
            written = receipt.rows_written,
            duplicates = receipt.duplicates,
            unmapped = receipt.unmapped_rows,
            quarantined = receipt.quarantined,
            "window committed"
        );
        Ok(receipt)
    }
}

/// Who pulls a window, for whom, until when, and how its rows meet what is stored.
pub(super) struct Pull<'a> {
    pub(super) stamp: &'a Stamp,
    pub(super) owner: &'a str,
    pub(super) deadline: Option<Instant>,
    pub(super) write: WindowWrite,
    /// Subscriptions seen on the stamp recently, asked for in per-subscriber mode beside its list.
    pub(super) also: &'a [String],
}

/// One window's rows as pulled, split by what the store can hold: `rows` go to the ledger,
/// `quarantined` (verbatim, with the reason) to the quarantine, in the same commit.
pub(super) struct PulledWindow {
    limits: RowLimits,
    pub(super) rows: Vec<UsageRow>,
    pub(super) quarantined: Vec<QuarantinedRow>,
    /// Whether to look for rows equal to another row of the window (spans only, see `take`).
    watch_repeats: bool,
    /// Most rows `quarantined` keeps; the window fails past it (see `CollectSettings`).
    max_quarantined: u64,
    /// Rows past that cap: counted, not kept (a hostile stamp's verbatim rows never pile up).
    quarantine_overflow: u64,
    /// The page each row key was first seen on (only while `watch_repeats`).
    first_seen: HashMap<RowKey, u64>,
    pages: u64,
    /// Rows equal to an earlier row of the window (only while `watch_repeats`).
    pub(super) equal_rows: u64,
    /// Of those, the ones that look like the stamp repeating the previous page's last rows: leading
    /// rows of a page, first seen on the page before.
    pub(super) boundary_repeats: u64,
}

impl PulledWindow {
    fn new(limits: RowLimits, rows_hint: usize) -> Self {
        Self {
            limits,
            rows: Vec::with_capacity(rows_hint),
            quarantined: Vec::new(),
            watch_repeats: false,
            max_quarantined: DEFAULT_MAX_QUARANTINED_PER_WINDOW,
            quarantine_overflow: 0,
            first_seen: HashMap::new(),
            pages: 0,
            equal_rows: 0,
            boundary_repeats: 0,
        }
    }

    /// Takes a page: each row is checked against the store's limits here, in the core, so every
    /// store and every session quarantines by the same rule.
    fn take(&mut self, page: PageRows<'_>) {
        for row in page.unreadable {
            self.quarantine(row);
        }
        self.pages += 1;
        // Within an hour, a row equal to another is stored once: a page repeating the previous page's
        // last rows is a known paging artefact, and nothing else tells two equal rows apart. Within a
        // span, two equal rows may also be two reports of different hours (an on-time and a late row
        // alike in every field), which hourly windows keep apart by their reported hour, and no
        // position on the pages tells the two cases apart (a late row may follow its on-time twin
        // across a page boundary exactly like a repeat). So a span holding any two equal rows is
        // refused and pulled hour by hour; see `SpanRefusal`.
        let mut leading = true;
        for (index, row) in page.rows.into_iter().enumerate() {
            if self.watch_repeats {
                match self.first_seen.entry(row.key()) {
                    std::collections::hash_map::Entry::Vacant(first) => {
                        first.insert(self.pages);
                        leading = false;
                    }
                    std::collections::hash_map::Entry::Occupied(seen) => {
                        self.equal_rows += 1;
                        if leading && *seen.get() + 1 == self.pages {
                            self.boundary_repeats += 1;
                        }
                    }
                }
            }
            match self.limits.check(&row) {
                Ok(()) => self.rows.push(row),
                Err(why) => {
                    if self.quarantined.len() as u64 >= self.max_quarantined {
                        self.quarantine_overflow += 1;
                        continue;
                    }
                    let raw = (page.verbatim)(index).unwrap_or_else(|| reconstructed_json(&row));
                    self.quarantine(QuarantinedRow::new(raw, &why));
                }
            }
        }
    }

    /// Keeps a row for the quarantine while under the cap; past it, only counts it.
    fn quarantine(&mut self, row: QuarantinedRow) {
        if self.quarantined.len() as u64 >= self.max_quarantined {
            self.quarantine_overflow += 1;
        } else {
            self.quarantined.push(row);
        }
    }
}
