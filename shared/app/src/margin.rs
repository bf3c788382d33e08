//! Margin against the operator's cost book. The month's over every billing subscription: each
//! statement brought up to date (a final one stays as it is) by one statement pass, the month's
//! mapped rows streamed once past the cost book, and the core's margin tally over both. One
//! statement's: its billing subscription's rows of the month (read through the store's index).
//! What `azs-usage margin`, `azs-usage statement show --margin` and the webhook's `/margin` routes
//! call.

use crate::rating::StatementService;
use crate::statement_pass::{self, Kept, PassMonth};
use anyhow::{Context, Result};
use azs_core::ports::ExportFilter;
use azs_core::rating::margin::{MarginReport, MarginTally, StatementMargin, statement_margin};
use azs_core::rating::{Month, PriceBooks, RatableRow, Statement};
use chrono::{DateTime, Utc};

/// The margin of `month` as of `now`.
pub async fn month_margin(
    service: &StatementService,
    month: Month,
    now: DateTime<Utc>,
) -> Result<MarginReport> {
    let books = PriceBooks::new(service.rating.price_books().await?);
    let mut tally = MarginTally::new(month, &books)?;
    let mut failed = Ok(());
    let months = [PassMonth { month, finalise: false }];
    statement_pass::keep_all(service, &months, now, None, |_, _, kept| match kept {
        Kept::Draft(s) | Kept::AlreadyFinal(s) | Kept::Finalised(s) | Kept::Blocked(s, _) => {
            if failed.is_ok() {
                failed = tally.add_statement(&s).map_err(anyhow::Error::from);
            }
        }
        Kept::Failed(e) => {
            if failed.is_ok() {
                failed = Err(e);
            }
        }
    })
    .await?;
    failed?;
    // Usage is reported after it happens: rows with usage in the month are reported from its start.
    let filter = ExportFilter { stamps: Vec::new(), from: Some(month.start()), to: None };
    service
        .store
        .export_rows(&filter, &mut |stored| {
            let Some(billing_subscription_id) = stored.billing_subscription_id else { return Ok(()) };
            let row = RatableRow {
                stamp_id: stored.stamp_id,
                reported_start: stored.window.start,
                billing_subscription_id,
                row: stored.row,
            };
            tally.add_row(&row).map_err(|e| e.to_string())
        })
        .await
        .context("reading the month's usage rows")?;
    Ok(tally.report())
}

/// The margin of `statement` (as `StatementService::refresh` answered it): the operator's view,
/// with cost and margin per meter and stamp.
pub async fn margin_of_statement(
    service: &StatementService,
    statement: &Statement,
) -> Result<StatementMargin> {
    let books = PriceBooks::new(service.rating.price_books().await?);
    // Usage is reported after it happens: rows with usage in the month are reported from its start.
    let mut rows = Vec::new();
    let month = statement.month;
    service
        .store
        .billing_rows(&statement.billing_subscription_id, month.start(), None, &mut |stored| {
            if month.contains(stored.row.usage_start) {
                rows.push(RatableRow {
                    stamp_id: stored.stamp_id,
                    reported_start: stored.window.start,
                    billing_subscription_id: statement.billing_subscription_id.clone(),
                    row: stored.row,
                });
            }
            Ok(())
        })
        .await
        .context("reading the statement's usage rows")?;
    Ok(statement_margin(statement, &rows, &books)?)
}
