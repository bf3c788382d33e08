//! Margin against the operator's cost book. A month's over its billing subscriptions (all, or a
//! page): each statement brought up to date (a final one stays as it is) by one statement pass,
//! the rows the pass read for it past the cost book, and the core's margin tally over both. One
//! statement's: its billing subscription's rows of the month (read through the store's index).
//! What `azs-usage margin`, `azs-usage statement show --margin` and the webhook's `/margin` routes
//! call.

use crate::rating::StatementService;
use crate::statement_pass::{self, Covered, Kept, PassListener, PassMonth};
use anyhow::{Context, Result};
use azs_core::rating::margin::{MarginReport, MarginTally, StatementMargin, statement_margin};
use azs_core::rating::{Month, PriceBooks, RatableRow, Statement};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A month's margin over the billing subscriptions one pass covered: the whole month (the CLI), or
/// a page of them (the webhook), which the caller adds up line by line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoveredMargin {
    /// The first and last billing subscription counted, in billing subscription order (null when
    /// none was mapped there).
    pub first_billing_subscription_id: Option<String>,
    pub last_billing_subscription_id: Option<String>,
    /// How many billing subscriptions were counted.
    pub billing_subscriptions: usize,
    #[serde(flatten)]
    pub report: MarginReport,
    /// Mapped billing subscriptions follow the last one counted (a page that is not the last).
    #[serde(skip)]
    pub more: bool,
}

/// The margin of `month` as of `now` over the billing subscriptions `covered`: their statements
/// brought up to date by one statement pass (a final one stays as it is) are the revenue, and the
/// rows the pass read for them, at the cost book, the cost. Revenue and cost are then of the same
/// billing subscriptions, page or month, and each row is read once.
pub async fn month_margin(
    service: &StatementService,
    month: Month,
    covered: &Covered,
    now: DateTime<Utc>,
) -> Result<CoveredMargin> {
    let books = PriceBooks::new(service.rating.price_books().await?);
    let mut counted = Counted { tally: MarginTally::new(month, &books)?, failed: Ok(()), subscriptions: 0 };
    let months = [PassMonth { month, finalise: false }];
    let end = statement_pass::keep_all(service, &months, covered, now, None, &mut counted).await?;
    counted.failed?;
    Ok(CoveredMargin {
        first_billing_subscription_id: end.first,
        last_billing_subscription_id: end.last,
        billing_subscriptions: counted.subscriptions,
        report: counted.tally.report(),
        more: end.more,
    })
}

/// The margin tally as a pass hears of statements and rows; the first failure is kept.
struct Counted<'a> {
    tally: MarginTally<'a>,
    failed: Result<()>,
    subscriptions: usize,
}

impl PassListener for &mut Counted<'_> {
    fn kept(&mut self, _: &str, _: Month, kept: Kept) {
        // The pass is of one month: one statement per billing subscription.
        self.subscriptions += 1;
        let added = match kept {
            Kept::Draft(s) | Kept::AlreadyFinal(s) | Kept::Finalised(s) | Kept::Blocked(s, _) => {
                self.tally.add_statement(&s).map_err(anyhow::Error::from)
            }
            Kept::Failed(e) => Err(e),
        };
        if self.failed.is_ok() {
            self.failed = added;
        }
    }

    fn rows(&mut self, _: &str, rows: &[RatableRow]) {
        // The tally counts only the rows with usage in its month.
        for row in rows {
            if self.failed.is_err() {
                return;
            }
            self.failed = self.tally.add_row(row).map_err(anyhow::Error::from);
        }
    }
}

/// The margin of `statement` (as `StatementService::refresh` answered it): the operator's view,
/// with cost and margin per meter and stamp.
pub async fn margin_of_statement(
    service: &StatementService,
    statement: &Statement,
) -> Result<StatementMargin> {
    let books = PriceBooks::new(service.rating.price_books().await?);
    // Usage is reported after it happens: rows with usage in the month are reported from its start.
    let month = statement.month;
    let mut rows =
        crate::rating::read_rows(service.store.as_ref(), &statement.billing_subscription_id, month.start())
            .await
            .context("reading the statement's usage rows")?;
    rows.retain(|r| month.contains(r.row.usage_start));
    Ok(statement_margin(statement, &rows, &books)?)
}
