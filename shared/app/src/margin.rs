//! Margin against the operator's cost book: the month's over every billing subscription (each
//! statement brought up to date, a final one as it is), or one statement's; the month's mapped rows
//! read once, and the core's `margin` over both. What `azs-usage margin` and `azs-usage statement
//! show --margin` call, and the webhook's `/margin` routes.

use crate::rating::StatementService;
use anyhow::{Context, Result};
use azs_core::ports::ExportFilter;
use azs_core::rating::margin::{MarginReport, StatementMargin, margin, statement_margin};
use azs_core::rating::{Month, PriceBooks, RatableRow, Statement};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

/// The margin of `month` as of `now`.
pub async fn month_margin(
    service: &StatementService,
    month: Month,
    now: DateTime<Utc>,
) -> Result<MarginReport> {
    let subscriptions: BTreeSet<String> =
        service.store.list_mappings(None).await?.into_iter().map(|m| m.billing_subscription_id).collect();
    let mut statements = Vec::with_capacity(subscriptions.len());
    for subscription in &subscriptions {
        statements.push(service.refresh(subscription, month, now).await?);
    }
    let rows = month_rows(service, month, None).await?;
    let books = PriceBooks::new(service.rating.price_books().await?);
    Ok(margin(month, &statements, &rows, &books)?)
}

/// The margin of `statement` (as `StatementService::refresh` answered it): the operator's view,
/// with cost and margin per meter and stamp.
pub async fn margin_of_statement(
    service: &StatementService,
    statement: &Statement,
) -> Result<StatementMargin> {
    let rows = month_rows(service, statement.month, Some(&statement.billing_subscription_id)).await?;
    let books = PriceBooks::new(service.rating.price_books().await?);
    Ok(statement_margin(statement, &rows, &books)?)
}

/// The mapped rows with usage in `month` (of one billing subscription, or all).
async fn month_rows(
    service: &StatementService,
    month: Month,
    billing_subscription_id: Option<&str>,
) -> Result<Vec<RatableRow>> {
    // Usage is reported after it happens: rows with usage in the month are reported from its start.
    let mut rows = Vec::new();
    let filter = ExportFilter { stamps: Vec::new(), from: Some(month.start()), to: None };
    service
        .store
        .export_rows(&filter, &mut |stored| {
            if let Some(billing) = stored.billing_subscription_id
                && billing_subscription_id.is_none_or(|wanted| wanted == billing)
                && month.contains(stored.row.usage_start)
            {
                rows.push(RatableRow {
                    stamp_id: stored.stamp_id,
                    reported_start: stored.window.start,
                    billing_subscription_id: billing,
                    row: stored.row,
                });
            }
            Ok(())
        })
        .await
        .context("reading the month's usage rows")?;
    Ok(rows)
}
